"""A lab passes whatever state the learner's earlier work left: data is kept between labs on purpose.

The worst case known: lab 05's broker crash on the in-memory Redis broker leaves accepted orders
that no worker will ever see, `pending` in the database. Labs 07 and 08 then run, in the same
SCALELAB_HOME (same database), their solution notebooks with FAST — and must pass. These are the
local runs of those two solution notebooks (test_notebooks.py runs them fresh on compose).
"""

import json
from pathlib import Path

import httpx
import papermill as pm
import pytest

from conftest import LABS_AFTER_LAB05_CRASH, completed_stack
from scalelab import Stack, broker, db
from test_notebooks import assert_every_check_passed

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "notebooks"

pytestmark = pytest.mark.notebook


def run_notebook(name: str, state_dir: Path, monkeypatch) -> dict:
    monkeypatch.setenv("SCALELAB_HOME", str(state_dir))
    BUILD.mkdir(parents=True, exist_ok=True)
    output = BUILD / f"after-lab05-crash-{name}"
    pm.execute_notebook(str(REPO / "solutions" / name), str(output), parameters={"RUNTIME": "local", "FAST": True},
                        kernel_name="python3", cwd=str(REPO / "solutions"), progress_bar=False,
                        execution_timeout=600, start_timeout=120)
    return json.loads(output.read_text())


@pytest.mark.timeout(3600)
def test_labs_07_and_08_pass_after_a_lab_05_whose_in_memory_broker_was_killed_mid_load(tmp_path, monkeypatch):
    state = tmp_path / "state"
    lab5 = completed_stack(state, lab=5)
    try:
        (lab5.workspace / "broker.yaml").write_text("broker: redis\n")    # the in-memory broker of step 10
        broker.apply(lab5, workers=1)
        crash = broker.crash_drill(lab5, before=60, after=10, stop_workers=True)
        assert crash["lost"] > 0, "the in-memory broker lost nothing: no leftover state to run on"
        left = db.fetchval(lab5.database_url(), "SELECT count(*) FROM orders WHERE status <> 'done'")
        assert left >= crash["lost"], left
        orders = httpx.get(f"{lab5.url('orders')}/orders/{crash['lost_ids'][0]}", timeout=10).json()
        assert orders["status"] != "done"
    finally:
        lab5.down()                                   # data kept: the next labs start on top of it
    try:
        names = ("07-observability-resilience.ipynb", "08-events-cqrs.ipynb")
        assert tuple(int(name[:2]) for name in names) == LABS_AFTER_LAB05_CRASH, "test_notebooks.py skips these on local"
        for name in names:
            executed = run_notebook(name, state, monkeypatch)
            assert_every_check_passed(executed)
            Stack(lab=int(name[:2]), state_dir=state).down()
        still = db.fetchval(Stack(lab=8, state_dir=state).up().database_url(),
                            "SELECT count(*) FROM orders WHERE id = ANY($1::bigint[])", crash["lost_ids"])
        assert still == len(crash["lost_ids"]), "the leftover orders were still there: the labs ran on top of them"
    finally:
        Stack(lab=8, state_dir=state).down(purge=True)
