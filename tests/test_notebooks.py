"""Execute every notebook with papermill, one at a time, against a real stack.

* every ``solutions/*.ipynb`` must run to the end: every live check passes;
* every generated ``labs/*.ipynb`` (exercises not filled in) must stop at its FIRST
  check with "not attempted yet" and a hint — proof that the checks can fail.

Executed notebooks are kept under ``build/notebooks/`` for CI to archive.
"""

import json
import os
import re
from pathlib import Path

import papermill as pm
import pytest

from scalelab import Stack
from scalelab.errors import RuntimeUnavailable
from scalelab.plans import plan_for

from conftest import LABS_AFTER_LAB05_CRASH, compose_labs, full_labs, unavailable

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "notebooks"
SOLUTIONS = sorted((REPO / "solutions").glob("*.ipynb"))
LABS = sorted((REPO / "labs").glob("*.ipynb"))

pytestmark = pytest.mark.notebook
KIND_NOTEBOOK_TIMEOUT_S = 2700
# Each cell has papermill's 10 min; a whole notebook may take longer than pytest's default for
# one test (lab 05's six broker crash drills alone take ~5 min on a busy 2-core machine).
NOTEBOOK_TIMEOUT_S = 1800
# Solutions run on every runtime the machine has; compose ones only under `-m compose`.
RUNTIMES = [pytest.param("local", id="local", marks=pytest.mark.timeout(NOTEBOOK_TIMEOUT_S)),
            pytest.param("compose", id="compose", marks=[pytest.mark.compose, pytest.mark.timeout(NOTEBOOK_TIMEOUT_S)]),
            pytest.param("kind", id="kind", marks=[pytest.mark.kind, pytest.mark.timeout(KIND_NOTEBOOK_TIMEOUT_S)])]
# Lab 06 (the real HPA: its load goes on until Kubernetes added a replica, a fresh cluster's
# metrics come late), solution and unfilled, is the kind smoke set `make test` runs (~3 and ~1 min;
# each other lab's solution ~4 min); `make test-kind` runs every lab (`kind_sweep`: the others, an
# hour or more on a busy 2-core machine).
KIND_SMOKE_LABS = {6}
# kind ones only under `-m kind` (make test-kind). On kind a lab's stack starts in minutes and
# every single-member call goes through the API server: a notebook takes several times as long.





def execute(path: Path, kind: str, state_dir: Path, monkeypatch, runtime: str = "local", fast: bool = True):
    """Run ``path`` with FAST on (or its defaults) and its own state dir; always tear its stack down after."""
    monkeypatch.setenv("SCALELAB_HOME", str(state_dir))
    BUILD.mkdir(parents=True, exist_ok=True)
    output = BUILD / (f"{kind}-{path.name}" if runtime == "local" else f"{kind}-{runtime}-{path.name}")
    if not fast:
        output = output.with_name(f"full-{output.name}")
    try:
        pm.execute_notebook(
            str(path), str(output), parameters={"RUNTIME": runtime, "FAST": fast},
            kernel_name="python3", cwd=str(path.parent), progress_bar=False,
            execution_timeout=600, start_timeout=120,
        )
    finally:
        Stack(lab=lab_number_of(path), runtime=runtime, state_dir=state_dir).down(purge=True)
    return output


def first_check_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return next("".join(c["source"]) for c in cells
                if c["cell_type"] == "code" and ".check(stack)" in "".join(c["source"]))


def lab_number_of(path: Path) -> int:
    return int(re.match(r"(\d+)-", path.name).group(1))


# Each solution on every runtime its lab's plan supports (a lab that runs on `local` only
# is not listed for compose at all: Stack(runtime="compose") refuses it in one line, tested below).
def marks(nb: Path, rt) -> list:
    """The runtime's marks; on kind, the labs beyond the smoke set are also ``kind_sweep``."""
    if rt.values[0] == "kind" and lab_number_of(nb) not in KIND_SMOKE_LABS:
        return [*rt.marks, pytest.mark.kind_sweep]
    return list(rt.marks)


# On local, today's full lab runs with its defaults instead (below), and labs 07 and 08 run in
# tests/test_lab_sequence.py, on top of what a lab 05 whose broker was killed left in the database
# (a harder start than a fresh one). On compose, two labs a day in turn (conftest.compose_labs).
def runs_here(lab: int, runtime: str) -> bool:
    if runtime == "local":
        return lab not in full_labs() and lab not in LABS_AFTER_LAB05_CRASH
    return runtime != "compose" or lab in compose_labs()


SOLUTION_RUNS = [pytest.param(nb, rt.values[0], id=f"{nb.stem}-{rt.id}", marks=marks(nb, rt))
                 for nb in SOLUTIONS for rt in RUNTIMES if rt.values[0] in plan_for(lab_number_of(nb)).runtimes
                 and runs_here(lab_number_of(nb), rt.values[0])]


@pytest.mark.parametrize("notebook,runtime", SOLUTION_RUNS)
def test_solution_notebook_runs_and_every_check_passes(notebook, runtime, tmp_path, monkeypatch):
    try:
        Stack(lab=lab_number_of(notebook), runtime=runtime, state_dir=tmp_path / "state")
    except RuntimeUnavailable as exc:   # e.g. no Docker engine: skip, saying why (make test requires it)
        required = os.environ.get("SCALELAB_REQUIRE_COMPOSE" if runtime != "kind" else "SCALELAB_REQUIRE_KIND")
        (pytest.fail if required else pytest.skip)(f"{runtime!r} unavailable: {exc}")
    assert_every_check_passed(execute(notebook, "solutions", tmp_path / "state", monkeypatch, runtime))


def assert_every_check_passed(output: Path | dict) -> None:
    """An executed notebook (its file, or its JSON) ran with no error and every check cell printed
    its green line."""
    executed = json.loads(output.read_text()) if isinstance(output, Path) else output
    name = output.name if isinstance(output, Path) else "the notebook"
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"], f"{name}: a cell failed"
    passed = [o for o in outputs if o["output_type"] == "stream" and "✓" in "".join(o.get("text", ""))]
    checks = [c for c in executed["cells"] if c["cell_type"] == "code" and ".check(stack)" in "".join(c["source"])]
    assert checks and len(passed) == len(checks), f"{name}: {len(passed)} of {len(checks)} checks green"


# What a learner runs: FAST=False, on local. One lab per run in turn (the header says which), in
# place of its FAST run.
FULL_RUNS = [pytest.param(nb, id=nb.stem, marks=pytest.mark.timeout(2 * NOTEBOOK_TIMEOUT_S))
             for nb in SOLUTIONS if lab_number_of(nb) in full_labs()]


@pytest.mark.parametrize("notebook", FULL_RUNS)
def test_solution_notebook_passes_with_its_default_parameters(notebook, tmp_path, monkeypatch):
    assert_every_check_passed(execute(notebook, "solutions", tmp_path / "state", monkeypatch, fast=False))


def test_each_lab_takes_its_turn_at_default_parameters(monkeypatch):
    from datetime import date, timedelta
    monkeypatch.delenv("SCALELAB_FULL_LABS", raising=False)
    week = {full_labs(date(2026, 12, 3) + timedelta(days=i))[0] for i in range(len(SOLUTIONS))}
    assert week == {lab_number_of(nb) for nb in SOLUTIONS}, "eight days in a row run every lab once"
    monkeypatch.setenv("SCALELAB_FULL_LABS", "all")
    assert full_labs() == [lab_number_of(nb) for nb in SOLUTIONS]


def test_two_labs_a_day_take_their_turn_on_compose(monkeypatch):
    from datetime import date, timedelta
    monkeypatch.delenv("SCALELAB_COMPOSE_LABS", raising=False)
    days = [compose_labs(date(2026, 12, 3) + timedelta(days=i)) for i in range(4)]
    assert all(len(labs) == 2 for labs in days)
    assert sorted(n for labs in days for n in labs) == [lab_number_of(nb) for nb in SOLUTIONS], \
        "four days in a row run every lab once on compose"
    monkeypatch.setenv("SCALELAB_COMPOSE_LABS", "3, 5")
    assert compose_labs() == [3, 5]


# Each unfilled lab on local, and on kind where its plan runs there (under `-m kind`).
LAB_RUNS = [pytest.param(nb, rt.values[0], id=f"{nb.stem}-{rt.id}" if rt.id != "local" else nb.stem, marks=marks(nb, rt))
            for nb in LABS for rt in RUNTIMES
            if rt.values[0] in ("local", "kind") and rt.values[0] in plan_for(lab_number_of(nb)).runtimes]


@pytest.mark.parametrize("notebook,runtime", LAB_RUNS)
def test_unfilled_lab_stops_at_its_first_check_with_a_hint(notebook, runtime, tmp_path, monkeypatch):
    if runtime != "local":
        try:
            Stack(lab=lab_number_of(notebook), runtime=runtime, state_dir=tmp_path / "state")
        except RuntimeUnavailable as exc:
            unavailable(runtime, exc)
    with pytest.raises(pm.PapermillExecutionError) as failed:
        execute(notebook, "labs", tmp_path / "state", monkeypatch, runtime)
    error = failed.value
    assert error.ename == "NotAttempted", f"{error.ename}: {error.evalue}"
    assert "not attempted yet" in error.evalue and "hint" in error.evalue
    assert error.source.strip() == first_check_cell(notebook).strip()
