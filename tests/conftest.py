"""Fixtures that start real servers (Postgres, the user service) once per session."""

import shutil
import uuid
from pathlib import Path

import httpx
import pytest

from scalelab import Stack

REFERENCE = Path(__file__).resolve().parents[1] / "stack/shop/reference"


def completed_stack(state_dir: Path, lab: int = 1) -> Stack:
    """A stack whose workspace holds the reference solutions, as a learner who finished would."""
    stack = Stack(lab=lab, state_dir=state_dir)
    for name in stack.plan.exercises:
        shutil.copy(REFERENCE / f"{name}.py", stack.workspace / f"{name}.py")
    return stack.up()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    stack = completed_stack(tmp_path_factory.mktemp("state"))
    yield stack
    stack.down()


@pytest.fixture(scope="session")
def lab3(tmp_path_factory):
    """Lab 03's stack (Postgres, Redis, users replicas), its exercises done from the reference."""
    stack = completed_stack(tmp_path_factory.mktemp("state-lab3"), lab=3)
    yield stack
    stack.down()


@pytest.fixture
def api(stack):
    with httpx.Client(base_url=stack.url("users"), timeout=10) as client:
        yield client


@pytest.fixture
def new_email():
    return lambda: f"u-{uuid.uuid4().hex[:10]}@example.com"
