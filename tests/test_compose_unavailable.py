"""Without a Docker engine the compose runtime says what to do, in one line; a lab asked for a runtime
it does not run on yet is refused in one line (runs everywhere)."""

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


REFUSED = [(p.lab, runtime) for p in PLANS.values() for runtime in ("local", "compose", "kind")
           if runtime not in p.runtimes]


def test_some_lab_is_not_on_every_runtime():
    assert REFUSED, "every lab runs everywhere: the refusal below has nothing left to prove"


@pytest.mark.parametrize("lab,runtime", REFUSED)
def test_a_lab_not_yet_on_a_runtime_is_refused_in_one_line_before_anything_starts(lab, runtime, tmp_path):
    with pytest.raises(RuntimeUnavailable) as failed:
        Stack(lab=lab, runtime=runtime, state_dir=tmp_path)
    message = str(failed.value)
    assert f"lab {lab}" in message and 'runtime="local"' in message and "\n" not in message
    assert not (tmp_path / runtime).exists(), "nothing was created for a refused runtime"
