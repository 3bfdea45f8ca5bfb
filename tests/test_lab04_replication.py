"""Lab 04, part 1: a real hot standby made by pg_basebackup, and the service's read/write split."""

import time
import uuid

import httpx
import pytest

from scalelab import Stack, db
from scalelab.errors import ScalelabError
from scalelab.exercise import CheckFailed, NotAttempted
from scalelab.labs import lab04
from scalelab.labs.lab04 import replicas
from scalelab.references import reference_file, solve

from conftest import solved_stack


lab4 = solved_stack(4)


@pytest.fixture
def api(lab4):
    with httpx.Client(base_url=lab4.url("users"), timeout=10) as client:
        yield client


def write_exercise(stack, name: str, old: str | None = None, new: str | None = None) -> None:
    """Put exercise ``name``'s reference into the workspace, with ``old`` replaced by ``new``."""
    text = reference_file(getattr(lab04, name)).read_text()
    if old is not None:
        assert old in text
        text = text.replace(old, new)
    (stack.workspace / f"{name}.py").write_text(text)


def test_standby_is_a_streaming_hot_standby_of_the_primary(lab4):
    assert db.fetchval(lab4.database_url("admin", member="standby-1"), "SELECT pg_is_in_recovery()") is True
    assert db.fetchval(lab4.database_url("admin"), "SELECT pg_is_in_recovery()") is False
    status = lab04.replication_status(lab4)
    assert status.to_dict("records")[0] | {"lag_bytes": 0, "replay_lag_s": 0} == {
        "application_name": "standby-1", "usename": "replicator", "state": "streaming", "sync_state": "async",
        "lag_bytes": 0, "replay_lag_s": 0}


def test_a_row_written_on_the_primary_appears_on_the_standby(lab4):
    user_id, ms = lab04.propagation_ms(lab4, timeout=10)
    assert lab04.seen_on(lab4.database_url(member="standby-1"), user_id) and ms < 10_000


def test_the_standby_refuses_writes_with_postgres_read_only_error(lab4):
    assert lab04.standby_write_error(lab4) == "cannot execute INSERT in a read-only transaction"


def test_the_service_answers_json_503_when_its_database_is_a_standby(lab4):
    from fastapi.testclient import TestClient

    from shop.config import Settings
    from shop.main import create_app
    app = create_app(Settings(database_url=lab4.database_url(member="standby-1"), instance="misrouted"))
    with TestClient(app) as client:
        got = client.post("/users", json={"email": f"x-{uuid.uuid4().hex[:8]}@example.com", "name": "X"})
    assert got.status_code == 503
    assert got.json()["error"] == "read_only_database"
    assert "cannot execute INSERT in a read-only transaction" in got.json()["detail"]


def test_reads_go_to_the_replica_and_writes_to_the_primary(lab4, api):
    created = api.post("/users", json={"email": f"rw-{uuid.uuid4().hex[:8]}@example.com", "name": "RW"})
    assert created.status_code == 201 and created.headers["x-db-node"] == "primary"
    assert "shop_write_lsn" in created.cookies
    lab04.wait_replayed(lab4)
    with httpx.Client(base_url=lab4.url("users"), timeout=10) as stranger:
        for path in (f"/users/{created.json()['id']}", "/users?limit=5"):
            got = stranger.get(path)
            assert (got.status_code, got.headers.get("x-db-node")) == (200, "replica"), (path, got.text[:200])


def test_read_your_writes_holds_while_the_replica_is_frozen(lab4, api):
    with lab04.replay_paused(lab4), httpx.Client(base_url=lab4.url("users"), timeout=10) as stranger:
        results = []
        for i in range(10):
            made = api.post("/users", json={"email": f"ryw-{uuid.uuid4().hex[:8]}@example.com", "name": f"R{i}"})
            own, theirs = api.get(f"/users/{made.json()['id']}"), stranger.get(f"/users/{made.json()['id']}")
            results.append((own.status_code, own.headers["x-db-node"], theirs.status_code, theirs.headers["x-db-node"]))
    assert set(results) == {(200, "primary", 404, "replica")}


def test_a_malformed_write_lsn_cookie_is_a_json_400(lab4):
    got = httpx.get(f"{lab4.url('users')}/users?limit=1", cookies={"shop_write_lsn": "'; DROP TABLE users"})
    assert got.status_code == 400 and got.json()["error"] == "bad_request"


def test_reads_fall_back_to_the_primary_while_the_standby_is_down(lab4, api):
    lab4.kill("standby-1")
    try:
        got = [api.get("/users?limit=1") for _ in range(10)]
        assert [(r.status_code, r.headers.get("x-db-node"), r.text[:80]) for r in got] == [(200, "primary", got[0].text[:80])] * 10
    finally:
        lab4.start("standby-1")
    deadline = time.monotonic() + 15
    while (probe := api.get("/users?limit=1")).headers.get("x-db-node") != "replica":
        assert probe.status_code == 200, probe.text
        assert time.monotonic() < deadline, "reads never returned to the restarted standby"
        time.sleep(0.1)


def test_standby_dsn_on_a_runtime_without_standbys_is_one_clear_error(tmp_path):
    stack = Stack(lab=1, state_dir=tmp_path)
    stack.runtime = type("NoStandbys", (), {"name": "compose"})()
    with pytest.raises(ScalelabError, match="no standby on the compose runtime"):
        stack.database_url(member="standby-1")


# -- the exercises' checks can fail, and say what is wrong --------------------------------
def test_replication_check_names_wal_level_minimal(lab4):
    write_exercise(lab4, "replication", '"wal_level": "replica"', '"wal_level": "minimal"')
    with pytest.raises(CheckFailed, match="wal_level 'minimal'"):
        lab04.replication.check(lab4)


def test_replication_check_names_a_role_without_replication(lab4):
    write_exercise(lab4, "replication", "WITH REPLICATION LOGIN", "WITH LOGIN")
    try:
        with pytest.raises(CheckFailed, match="no REPLICATION attribute"):
            lab04.replication.check(lab4)
    finally:
        write_exercise(lab4, "replication")
        lab04.replication.check(lab4)          # the reference makes the standby again


def test_replication_check_names_an_hba_line_for_all_databases(lab4):
    write_exercise(lab4, "replication", "host replication {role}", "host all {role}")
    try:
        with pytest.raises(CheckFailed, match="keyword 'replication'"):
            lab04.replication.check(lab4)
    finally:
        write_exercise(lab4, "replication")
        lab04.replication.check(lab4)


def test_replication_check_names_the_call_when_hba_line_takes_the_old_signature(lab4):
    write_exercise(lab4, "replication", "def hba_line(role: str, standby_address: str)", "def hba_line(role: str)")
    try:
        with pytest.raises(CheckFailed, match=r"hba_line.*raised TypeError.*hba_line\(role, standby_address\)"):
            lab04.replication.check(lab4)
    finally:
        write_exercise(lab4, "replication")


def test_a_setting_read_only_at_server_start_restarts_the_primary_and_takes_effect(lab4):
    write_exercise(lab4, "replication", '"max_wal_senders": "10"', '"max_wal_senders": "6"')
    try:
        lab04.replication.check(lab4)
        assert lab04.replication.last_result.startswith("primary restarted: yes")
        assert db.fetchval(lab4.database_url("admin"), "SHOW max_wal_senders") == "6"
    finally:
        write_exercise(lab4, "replication")
        lab04.replication.check(lab4)


def test_replication_check_passes_with_the_reference_and_the_standby_streams(lab4):
    write_exercise(lab4, "replication")
    lab04.replication.check(lab4)
    assert "streaming" in lab04.replication.last_result
    assert lab04.replication_status(lab4).usename.tolist() == ["replicator"]


def test_read_routing_stub_is_not_attempted(lab4):
    write_exercise(lab4, "read_routing", 'if write_lsn is None:', 'raise NotImplementedError()\n    if write_lsn is None:')
    with pytest.raises(NotAttempted):
        lab04.read_routing.check(lab4)


def test_read_routing_check_catches_a_stale_read(lab4):
    write_exercise(lab4, "read_routing", "    if write_lsn is None:", "    return 'replica'\n    if write_lsn is None:")
    with pytest.raises(CheckFailed, match="stale read"):
        lab04.read_routing.check(lab4)


def test_read_routing_check_catches_everything_on_the_primary(lab4):
    write_exercise(lab4, "read_routing", "    if write_lsn is None:", "    return 'primary'\n    if write_lsn is None:")
    with pytest.raises(CheckFailed, match="client that wrote nothing was served by the primary"):
        lab04.read_routing.check(lab4)


def test_read_routing_check_passes_with_the_reference(lab4):
    write_exercise(lab4, "read_routing")
    lab04.read_routing.check(lab4)
    assert "0 stale" in lab04.read_routing.last_result


def test_down_purge_removes_the_standby_data(tmp_path):
    stack = Stack(lab=4, state_dir=tmp_path)
    solve(stack)
    stack.up()
    from scalelab.runtimes.local import standby as local_standby
    data = local_standby.data_dir(stack.runtime, "standby-1")
    assert (data / "standby.signal").exists()
    stack.down(purge=True)
    assert not data.exists() and not local_standby.home(stack.runtime).exists()


def test_a_standby_follows_a_primary_that_came_back_on_another_port(tmp_path):
    import socket
    stack = Stack(lab=4, state_dir=tmp_path)
    solve(stack)
    stack.up()
    try:
        old_port = stack.runtime.procs["postgres"].port
        stack.down()
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # the old port may be in TIME_WAIT
            squatter.bind(("127.0.0.1", old_port))
            squatter.listen()
            stack.up()
            assert stack.runtime.procs["postgres"].port != old_port
            replicas._wait_streaming(stack)
            user_id, _ = lab04.propagation_ms(stack)
            assert lab04.seen_on(stack.database_url(member="standby-1"), user_id)
    finally:
        stack.down(purge=True)
