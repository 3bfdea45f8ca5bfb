"""Lab 04's double-spend race through the real service: the naive debit overspends, the fixes never do."""

import shutil

import pytest

from scalelab.labs.lab04 import shards as lab04_sharding
from scalelab.labs.lab04.shards import new_account, queries, race, reset_queries


def test_the_naive_debit_overspends_under_concurrency(stack):
    """Bounded: the race is real, so it is given three tries to show itself (it shows on the first here)."""
    for _ in range(3):
        result = race(stack, "naive")
        if result["succeeded"] > 10:
            break
    assert result["succeeded"] > 10, result
    assert result["charged"] > result["balance fell by"]    # money created: lost updates


@pytest.mark.parametrize("strategy", ["atomic", "optimistic"])
def test_the_fixed_debit_never_overspends_and_conserves_money(stack, strategy):
    result = race(stack, strategy)
    frame = result.pop("frame")
    assert set(frame.status) == {200, 409}, frame.status.value_counts()
    assert result["succeeded"] == 10 and result["final balance"] == 0
    assert result["balance fell by"] == result["charged"] == 100
    assert sorted(frame[frame.status == 200].balance) == list(range(0, 100, 10))   # each balance reported once
    assert set(frame[frame.status == 409].error) == {"insufficient_funds"}


def test_account_errors_are_json_with_a_stable_code(api):
    account = new_account(api, 20)
    url = f"/accounts/{account['id']}/debit"
    too_much = api.post(url, json={"amount": 21})
    assert too_much.status_code == 409 and too_much.json()["error"] == "insufficient_funds"
    assert "20" in too_much.json()["detail"]
    assert api.get(f"/accounts/{account['id']}").json()["balance"] == 20
    for strategy in ("naive", "atomic", "optimistic"):
        missing = api.post("/accounts/987654321/debit", params={"strategy": strategy}, json={"amount": 1})
        assert missing.status_code == 404 and missing.json()["error"] == "not_found", strategy
    for bad in ({"amount": 0}, {"amount": -5}, {"amount": "10"}, {"amount": 1.5}, {}, {"amount": 1, "x": 1}):
        got = api.post(url, json=bad)
        assert got.status_code == 422 and got.json()["error"] == "validation_error", bad
    assert api.post(url, params={"strategy": "yolo"}, json={"amount": 1}).status_code == 422
    assert api.post(url, content=b"not json", headers={"content-type": "application/json"}).status_code == 422
    assert api.get("/accounts/0").status_code == 422
    assert api.get("/accounts/987654321").json()["error"] == "not_found"
    nobody = api.post("/accounts", json={"owner_id": 987654321, "balance": 5})
    assert nobody.status_code == 404 and nobody.json()["error"] == "not_found"
    assert api.post("/accounts", json={"owner_id": 1, "balance": -1}).status_code == 422
    assert api.get(f"/accounts/{account['id']}").json() == {**account, "balance": 20}


def test_the_n_plus_1_listing_runs_one_query_per_row_and_the_join_one_query(stack, api):
    for _ in range(25):
        new_account(api, 5)
    pages = {}
    counted = {}
    for strategy in ("n_plus_1", "join"):
        reset_queries(stack)
        got = api.get("/accounts", params={"limit": 20, "strategy": strategy})
        counted[strategy] = queries(stack)
        assert got.status_code == 200
        pages[strategy] = got.json()["items"]
    assert len(pages["join"]) == 20 and pages["join"] == pages["n_plus_1"]
    assert counted == {"n_plus_1": 21, "join": 1}


def test_the_debit_check_passes_with_the_reference(stack):
    from shop.reference import debit
    shutil.copy(debit.__file__, stack.workspace / "debit.py")
    lab04_sharding.debit.check(stack)
    assert "10 succeeded" in lab04_sharding.debit.last_result


def test_a_new_account_starts_at_version_0_and_each_debit_moves_it_on(api):
    account = new_account(api, 50)
    assert account["version"] == 0 and account["balance"] == 50
    for expected, strategy in zip((40, 30, 20), ("naive", "atomic", "optimistic")):
        got = api.post(f"/accounts/{account['id']}/debit", params={"strategy": strategy}, json={"amount": 10})
        assert got.json() == {"id": account["id"], "balance": expected, "strategy": strategy}
    assert api.get(f"/accounts/{account['id']}").json()["version"] == 3


def test_the_race_check_names_the_lost_update_when_debits_are_naive(stack):
    from scalelab.exercise import CheckFailed
    for _ in range(3):   # bounded, as above: the race has to show itself
        try:
            lab04_sharding._check_race(stack, "naive")
        except CheckFailed as exc:
            assert "lost update" in str(exc)
            return
    pytest.fail("the naive debit passed the race check three times")


@pytest.mark.parametrize("body, status, error", [
    ("async def debit(conn, account_id, amount):\n    raise NotImplementedError()\n", 501, "exercise_not_done"),
    ("async def debit(conn, account_id, amount):\n"
     "    return await conn.fetchrow('SELECT balance FROM accounts WHERE id = $1', account_id)\n", 500, "exercise_error"),
    ("async def debit(conn, account_id, amount):\n    return 1 / 0\n", 500, "exercise_error"),
], ids=["stub", "returns-a-record", "raises"])
def test_learner_debit_problems_are_json_errors_not_tracebacks(stack, api, tmp_path, body, status, error):
    from fastapi.testclient import TestClient
    from shop.config import Settings
    from shop.main import create_app
    account = new_account(api, 10)
    (tmp_path / "debit.py").write_text(body)
    settings = Settings(database_url=stack.database_url(), workspace=tmp_path, exercises=["debit"], instance="test")
    with TestClient(create_app(settings)) as client:
        got = client.post(f"/accounts/{account['id']}/debit", json={"amount": 1})
    assert got.status_code == status and got.json()["error"] == error, got.text
    assert api.get(f"/accounts/{account['id']}").json()["balance"] == 10
