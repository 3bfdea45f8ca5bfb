"""Without a Docker engine the compose runtime says what to do, in one line (runs everywhere)."""

import pytest

from scalelab import Stack
from scalelab.errors import RuntimeUnavailable
from scalelab.plans import PLANS


def test_without_an_engine_the_runtime_says_how_to_fix_it_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(RuntimeUnavailable) as failed:
        Stack(lab=1, runtime="compose", state_dir=tmp_path)
    message = str(failed.value)
    assert "docker engine not reachable" in message and 'runtime="local"' in message and "\n" not in message


@pytest.mark.parametrize("lab", [p.lab for p in PLANS.values() if "compose" not in p.runtimes] or [None])
def test_a_lab_not_yet_on_a_runtime_is_refused_in_one_line_before_anything_starts(lab, tmp_path):
    if lab is None:
        pytest.skip("every lab runs on compose")
    with pytest.raises(RuntimeUnavailable) as failed:
        Stack(lab=lab, runtime="compose", state_dir=tmp_path)
    message = str(failed.value)
    assert f"lab {lab}" in message and 'runtime="local"' in message and "\n" not in message
    assert not (tmp_path / "compose").exists(), "nothing was created for a refused runtime"
