"""Fixtures that start real servers (Postgres, the user service) once per session."""

import os
import uuid
from datetime import date
from pathlib import Path

import httpx
import pytest

from scalelab import Stack, broker
from scalelab.errors import RuntimeUnavailable
from scalelab.references import solve

REQUIRED = {"compose": "SCALELAB_REQUIRE_COMPOSE", "kind": "SCALELAB_REQUIRE_KIND"}


LABS_COUNT = 8
# Their solution notebooks run on local in tests/test_lab_sequence.py, on top of a lab 05 whose
# broker was killed, instead of fresh in tests/test_notebooks.py.
LABS_AFTER_LAB05_CRASH = (7, 8)


def labs_in_turn(count: int, today: date | None = None) -> list[int]:
    """``count`` labs spread evenly over the eight, starting from today's turn: each lab comes
    round every ``8 / count`` days."""
    first = (today or date.today()).toordinal() % LABS_COUNT
    return sorted({(first + i * LABS_COUNT // count) % LABS_COUNT + 1 for i in range(count)})


def chosen_labs(variable: str, count: int, today: date | None = None) -> list[int]:
    """The labs ``variable`` names ("all", or numbers such as "1,4"), else ``count`` in turn."""
    chosen = os.environ.get(variable, "").strip()
    if chosen == "all":
        return list(range(1, LABS_COUNT + 1))
    if chosen:
        return sorted({int(n) for n in chosen.split(",") if n.strip()})
    return labs_in_turn(count, today)


def full_labs(today: date | None = None) -> list[int]:
    """The labs whose solution runs with its default parameters (FAST=False, what a learner runs)
    in this run, instead of with FAST: one a day in turn (all eight take over half an hour on a
    2-core machine), or SCALELAB_FULL_LABS."""
    return chosen_labs("SCALELAB_FULL_LABS", 1, today)


def compose_labs(today: date | None = None) -> list[int]:
    """The labs whose solution notebook runs on compose in this run: two a day in turn (every lab
    every four days; all eight take ~17 min), or SCALELAB_COMPOSE_LABS (make test-compose: all)."""
    return chosen_labs("SCALELAB_COMPOSE_LABS", 2, today)


def pytest_report_header(config):
    def named(labs):
        return ", ".join(f"{n:02d}" for n in labs)
    return (f"in turn this run: lab {named(full_labs())} with its default parameters (FAST=False) on local, "
            f"solution notebooks of labs {named(compose_labs())} on compose — SCALELAB_FULL_LABS=all and "
            "SCALELAB_COMPOSE_LABS=all run every one")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``last`` run after all the others (stable order otherwise)."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


def unavailable(runtime: str, exc: Exception | str):
    """Skip, saying why — or fail where the runtime must be there (make test: compose; make test-kind: kind)."""
    required = os.environ.get(REQUIRED.get(runtime, ""))
    (pytest.fail if required else pytest.skip)(f"runtime {runtime!r} unavailable: {exc}")


def completed_stack(state_dir: Path, lab: int = 1, runtime: str = "local") -> Stack:
    """A stack whose workspace holds the reference solutions, as a learner who finished would."""
    try:
        stack = Stack(lab=lab, runtime=runtime, state_dir=state_dir)
    except RuntimeUnavailable as exc:
        unavailable(runtime, exc)
    solve(stack)
    return stack.up()


def solved_stack(lab: int, runtime: str = "local", scope: str = "module"):
    """A fixture: lab N's stack on ``runtime``, its exercises done from the reference, up once per
    ``scope`` and purged after. Assign it to the fixture's name: ``lab5 = solved_stack(5)``."""
    @pytest.fixture(scope=scope)
    def fixture(tmp_path_factory):
        stack = completed_stack(tmp_path_factory.mktemp(f"state-lab{lab}-{runtime}"), lab, runtime)
        yield stack
        stack.down(purge=True)
    return fixture


def broker_kill_loses_no_accepted_order(stack, before: int = 20, after: int = 10) -> dict:
    """The promise of a solved stack (labs 05, 07, 08): clients place orders while the workers run,
    the broker gets SIGKILL and is started again; every accepted order (202) ends done."""
    drill = broker.crash_drill(stack, before=before, after=after, stop_workers=False)
    assert drill["member"] == "rabbitmq-1" and drill["waiting_at_kill"] > 0, "messages waited in the broker it killed"
    assert drill["accepted"] >= before + after
    assert drill["lost"] == 0, f"accepted orders never done: {drill['lost_ids']} ({drill['statuses']})"
    return drill


stack = solved_stack(1, scope="session")
lab2 = solved_stack(2, scope="session")   # Postgres, 3 users replicas, nginx
lab3 = solved_stack(3, scope="session")   # Postgres, Redis, 3 users replicas, nginx


@pytest.fixture
def api(stack):
    with httpx.Client(base_url=stack.url("users"), timeout=10) as client:
        yield client


@pytest.fixture
def new_email():
    return lambda: f"u-{uuid.uuid4().hex[:10]}@example.com"
