"""Lab 04's hot standby on the compose runtime: a container made by pg_basebackup from the
primary over the Compose network, admitted by the exercise's pg_hba line (runtimes/compose/standby.py)."""

import ipaddress
import time

import httpx
import pytest

from scalelab import db
from scalelab.exercise import CheckFailed
from scalelab.labs import lab04
from scalelab.references import reference_file, solve

from conftest import solved_stack

pytestmark = pytest.mark.compose


c4 = solved_stack(4, "compose")


def write_replication(stack, old: str | None = None, new: str | None = None) -> None:
    text = reference_file(lab04.replication).read_text()
    if old is not None:
        assert old in text
        text = text.replace(old, new)
    (stack.workspace / "replication.py").write_text(text)


def test_the_standby_is_a_container_streaming_from_the_primary_over_the_network(c4):
    assert c4.members("standby") == ["standby-1"]
    assert db.fetchval(c4.database_url("admin", member="standby-1"), "SELECT pg_is_in_recovery()") is True
    status = lab04.replication_status(c4)
    assert status.to_dict("records")[0] | {"lag_bytes": 0, "replay_lag_s": 0} == {
        "application_name": "standby-1", "usename": "replicator", "state": "streaming", "sync_state": "async",
        "lag_bytes": 0, "replay_lag_s": 0}
    # It connects from its address on the Compose network, which the pg_hba line admits.
    client_addr = db.fetchval(c4.database_url("admin"), "SELECT client_addr::text FROM pg_stat_replication")
    assert client_addr.split("/")[0] == c4.runtime.address("standby-1")
    network = ipaddress.ip_network(lab04_range(c4))
    assert ipaddress.ip_address(client_addr.split("/")[0]) in network


def lab04_range(stack) -> str:
    from scalelab.runtimes.compose import standby as compose_standby
    return compose_standby.network_range(stack.runtime)


def test_a_loopback_only_hba_line_cannot_admit_the_standby_and_the_check_says_why(c4):
    write_replication(c4, "{standby_address}", "127.0.0.1/32")
    try:
        with pytest.raises(CheckFailed, match="(?s)could not be made with your configuration.*no pg_hba.conf entry for replication connection"):
            lab04.replication.check(c4)
    finally:
        write_replication(c4)
        lab04.replication.check(c4)          # the reference makes the standby again
    assert "made by pg_basebackup as 'replicator'" in lab04.replication.last_result


def test_reads_fall_back_to_the_primary_while_the_standby_is_killed(c4):
    solve(c4)
    c4.restart("users")
    with httpx.Client(base_url=c4.url("users"), timeout=10) as api:
        assert api.get("/users?limit=1").headers["x-db-node"] == "replica"
        c4.kill("standby-1")
        try:
            answers = [api.get("/users?limit=1") for _ in range(10)]
        finally:
            c4.start("standby-1")
        assert [(a.status_code, a.headers["x-db-node"]) for a in answers] == [(200, "primary")] * 10
        lab04.wait_replayed(c4)
        deadline = time.monotonic() + 15      # the replica pool reconnects on its next read
        while api.get("/users?limit=1").headers["x-db-node"] != "replica":
            assert time.monotonic() < deadline, "reads never went back to the restarted standby"
            time.sleep(0.2)
