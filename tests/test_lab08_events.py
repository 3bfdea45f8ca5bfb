"""Lab 08 on a real stack: the transactional outbox, the fold, the projector's consumer group
(idempotent under redelivery, catch-up after SIGKILL, replay from zero); the CI workflow."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import httpx
import pytest
import yaml

from scalelab import aio, db
from scalelab.exercise import CheckFailed, NotAttempted
from scalelab.labs import lab05, lab08

from conftest import broker_kill_loses_no_accepted_order, solved_stack

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github/workflows/ci.yml"


lab8 = solved_stack(8)   # Postgres, Redis, users, orders, a worker, the relay, the projector


def _events_of(stack, order_id) -> list[dict]:
    return db.fetch(stack.database_url(), "SELECT type, data->>'status' AS status FROM order_events "
                    "WHERE order_id = $1 ORDER BY seq", order_id)


def test_a_committed_change_appends_its_event_and_a_rolled_back_one_appends_none(lab8):
    user = lab05.new_user(lab8)

    async def go():
        conn = await asyncpg.connect(lab8.database_url())
        try:
            committed = await conn.fetchval("INSERT INTO orders (user_id, items, total_cents, request_hash) "
                                            "VALUES ($1, '[]', 500, 't') RETURNING id", user)
            await conn.execute("UPDATE orders SET attempts = attempts + 1 WHERE id = $1", committed)  # not a state change
            rolled_back = None
            try:
                async with conn.transaction():
                    rolled_back = await conn.fetchval("INSERT INTO orders (user_id, items, total_cents, request_hash) "
                                                      "VALUES ($1, '[]', 700, 't') RETURNING id", user)
                    await conn.execute("UPDATE orders SET status = 'processing' WHERE id = $1", rolled_back)
                    raise RuntimeError("the transaction fails after the state changes")
            except RuntimeError:
                pass
            async with conn.transaction():   # a failed change to an existing order leaves no event either
                await conn.execute("SAVEPOINT s")
                await conn.execute("UPDATE orders SET status = 'done' WHERE id = $1", committed)
                await conn.execute("ROLLBACK TO SAVEPOINT s")
            return committed, rolled_back
        finally:
            await conn.close()

    committed, rolled_back = aio.run(go())
    assert _events_of(lab8, committed) == [{"type": "created", "status": "pending"}]
    assert rolled_back is not None and _events_of(lab8, rolled_back) == []
    assert db.fetchval(lab8.database_url(), "SELECT count(*) FROM orders WHERE id = $1", rolled_back) == 0


def test_the_event_log_is_append_only(lab8):
    seq = db.fetchval(lab8.database_url(), "SELECT min(seq) FROM order_events")
    for sql in ["UPDATE order_events SET data = '{}' WHERE seq = $1", "DELETE FROM order_events WHERE seq = $1"]:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            db.fetch(lab8.database_url(), sql, seq)


def test_every_order_rebuilt_from_its_events_equals_its_row(lab8):
    ids = lab08.place_orders(lab8, 15, fail_every=4)
    with httpx.Client(base_url=lab8.url("orders"), timeout=10) as api:
        dead = lab05.place(api, lab05.new_user(lab8), fail_first=50)["id"]
    frame = lab08.wait_orders(lab8, ids + [dead])
    assert set(frame.status) == {"done", "dead"}
    assert [e["status"] for e in _events_of(lab8, dead)][-1] == "dead"
    retried = _events_of(lab8, ids[3])
    assert [e["status"] for e in retried] == ["pending", "processing", "retrying", "processing", "done"]
    result = lab08.fold_check(lab8)          # every order of the run, not only these
    assert result["orders"] >= 16 and result["events"] >= 16 * 3


def test_the_fold_refuses_a_broken_log():
    from shop.events import fold
    created = {"seq": 1, "order_id": 7, "type": "created", "data": {"user_id": 1, "status": "pending", "total_cents": 5}}
    done = {"seq": 2, "order_id": 7, "type": "status", "data": {"user_id": 1, "status": "done", "total_cents": 5}}
    assert fold([created, done])["status"] == "done" and fold([]) is None
    with pytest.raises(ValueError, match="starts with"):
        fold([done])
    with pytest.raises(ValueError, match="out of order"):
        fold([created, {**done, "seq": 1}])


def test_the_reference_projector_passes_its_check_live(lab8, capsys):
    lab08.projector.check(lab8)
    assert "✓" in capsys.readouterr().out


def test_a_stub_projector_is_not_attempted_and_a_non_idempotent_one_fails(lab8, tmp_path):
    fake = SimpleNamespace(workspace=tmp_path)
    (tmp_path / "projector.py").write_text("def apply(event, redis):\n    raise NotImplementedError()\n")
    with pytest.raises(NotAttempted, match="not attempted yet"):
        lab08.projector.check(fake)
    # A projector without the sequence check: the check's redelivery catches it.
    (tmp_path / "projector.py").write_text(
        "def apply(event, redis):\n"
        "    o, u = f\"rm:order:{event['order_id']}\", f\"rm:user:{event['user_id']}\"\n"
        "    redis.hset(o, mapping={'status': event['status'], 'user_id': event['user_id'],\n"
        "               'total_cents': event['total_cents'], 'seq': event['seq']})\n"
        "    redis.hincrby(o, 'events', 1)\n"
        "    if event['type'] == 'created':\n"
        "        redis.hincrby(u, 'orders', 1); redis.zadd(u + ':orders', {event['order_id']: event['order_id']})\n"
        "    return True\n")
    fake.redis_url = lab8.redis_url
    with pytest.raises(CheckFailed, match="redelivered"):
        lab08.projector.check(fake)


def test_the_projector_catches_up_after_a_kill_with_no_event_lost_or_applied_twice(lab8):
    result = lab08.kill_drill(lab8, n=30)
    # wait_caught_up inside the drill already asserted: read model == projection of Postgres
    # (per-order seq and event counters, per-user orders/done/spent_cents, the order sets).
    assert result["crashed_consumer_held"] == 5 and result["reclaimed"] >= 5
    assert result["republished"] == 10 and result["skipped"] >= 10
    assert result["backlog_at_restart"]["undelivered"] > 0
    assert result["catch_up_s"] < 30
    left = lab08.backlog(lab8)
    assert (left["unpublished"], left["undelivered"], left["pending"]) == (0, 0, 0), left
    model = lab08.dump_read_model(lab8)
    events = db.fetchval(lab8.database_url(), "SELECT count(*) FROM order_events")
    assert lab08.totals(model)["events"] == events      # each event applied exactly once


def test_a_killed_relay_loses_no_event_its_outbox_rows_wait_in_postgres(lab8):
    result = lab08.relay_drill(lab8, n=15)
    assert result["waiting_in_outbox"] > 0 and result["missing"] == 0
    assert result["stream_entries"] >= result["log"]


def test_replay_from_zero_rebuilds_the_same_read_model(lab8):
    result = lab08.replay(lab8)
    assert result["keys_after_delete"] == 0 and result["keys"] > 0
    assert result["entries_replayed"] >= result["keys"] // 3


def test_a_projector_without_the_sequence_check_double_counts_redeliveries(lab8):
    lab08.wait_caught_up(lab8)
    result = lab08.redelivery_drill(lab8, lab08.naive_apply, "naive", redeliver=20)
    assert result["spent_cents"] > result["spent_true"] or result["orders"] > result["orders_true"]


# -- CI/CD: the workflow file -----------------------------------------------------------
def _validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)


def test_the_ci_workflow_validates_against_the_github_workflow_schema():
    result = _validate(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    text = WORKFLOW.read_text()
    assert "    runs-on: ubuntu-24.04\n" in text
    (tmp_path / "ci.yml").write_text(text.replace("    runs-on: ubuntu-24.04\n", "", 1))   # a job with no runner
    assert _validate(tmp_path / "ci.yml").returncode != 0


def test_the_ci_workflow_runs_exactly_make_test_on_python_311_with_a_pip_cache():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = workflow["jobs"]["test"]["steps"]
    runs = [s["run"].strip() for s in steps if "run" in s]
    assert runs == ["make test"], runs
    setup = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "3.11" and setup["with"]["cache"] == "pip"
    assert steps[0]["uses"].startswith("actions/checkout@")
    kind = workflow["jobs"]["test-kind"]
    assert [s["run"].strip() for s in kind["steps"] if "run" in s] == ["make test-kind"]
    assert "workflow_dispatch" in kind["if"]
    ci_run = [l for l in (REPO / ".ci/run").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert ci_run[-1].strip() == "exec make test"


def test_the_broker_killed_under_load_loses_no_accepted_order_and_the_read_model_catches_up(lab8):
    drill = broker_kill_loses_no_accepted_order(lab8)
    lab08.wait_relayed(lab8)
    lab08.wait_caught_up(lab8)   # every order's events reached the read model: done counted once each
    accepted = sorted(set(drill["requests"].query("status == 202").order_id.astype(int)))
    assert lab08.fold_check(lab8, accepted)["orders"] == len(accepted)   # each one's log rebuilds its row
