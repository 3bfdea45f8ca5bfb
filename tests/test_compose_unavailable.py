"""Without a Docker engine the compose runtime says what to do, in one line (a lab refusing a
runtime it does not run on: tests/test_driver.py, on a narrowed plan)."""

import pytest

from scalelab import Stack
from scalelab.errors import RuntimeUnavailable


def test_without_an_engine_the_runtime_says_how_to_fix_it_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(RuntimeUnavailable) as failed:
        Stack(lab=1, runtime="compose", state_dir=tmp_path)
    message = str(failed.value)
    assert "docker engine not reachable" in message and 'runtime="local"' in message and "\n" not in message
