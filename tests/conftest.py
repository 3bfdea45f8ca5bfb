"""Fixtures that start real servers (Postgres, the user service) once per session."""

import uuid
from pathlib import Path

import httpx
import pytest

from scalelab import Stack
from scalelab.references import solve


def completed_stack(state_dir: Path, lab: int = 1) -> Stack:
    """A stack whose workspace holds the reference solutions, as a learner who finished would."""
    stack = Stack(lab=lab, state_dir=state_dir)
    solve(stack)
    return stack.up()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    stack = completed_stack(tmp_path_factory.mktemp("state"))
    yield stack
    stack.down(purge=True)


@pytest.fixture(scope="session")
def lab2(tmp_path_factory):
    """Lab 02's stack (Postgres, 3 users replicas, nginx), its exercises done from the reference."""
    stack = completed_stack(tmp_path_factory.mktemp("state-lab2"), lab=2)
    yield stack
    stack.down(purge=True)


@pytest.fixture(scope="session")
def lab3(tmp_path_factory):
    """Lab 03's stack (Postgres, Redis, users replicas), its exercises done from the reference."""
    stack = completed_stack(tmp_path_factory.mktemp("state-lab3"), lab=3)
    yield stack
    stack.down(purge=True)


@pytest.fixture
def api(stack):
    with httpx.Client(base_url=stack.url("users"), timeout=10) as client:
        yield client


@pytest.fixture
def new_email():
    return lambda: f"u-{uuid.uuid4().hex[:10]}@example.com"
