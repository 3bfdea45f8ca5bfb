"""Lab 03's checks can fail: an untouched stub or a missing file is "not attempted yet".
(That its reference files equal the solution cells is tests/test_repo.py's job, for every lab.)"""

import importlib.util
import json
from pathlib import Path

import pytest

from scalelab.exercise import NotAttempted
from scalelab.labs import lab03

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "solutions" / "03-redis-cache.ipynb"


def writefile_cell(filename: str) -> str:
    """The source of the ``%%writefile {WORKSPACE}/<filename>`` cell, magic line included."""
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.split("\n", 1)[0] == f"%%writefile {{WORKSPACE}}/{filename}":
            return source
    raise AssertionError(f"no %%writefile cell for {filename} in {NOTEBOOK.name}")


def make_labs():
    spec = importlib.util.spec_from_file_location("make_labs", REPO / "tools" / "make_labs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class WorkspaceOnly:
    """Just enough of a Stack for a check's first step: a workspace directory."""

    def __init__(self, workspace: Path):
        self.workspace = workspace


@pytest.mark.parametrize("exercise, function", [(lab03.user_cache, "get_user"), (lab03.rate_limit, "allow")],
                         ids=["user_cache", "rate_limit"])
def test_the_learners_untouched_stub_is_not_attempted_with_a_hint(exercise, function, tmp_path):
    stub = make_labs().blank_regions(writefile_cell(f"{exercise.name}.py"), "test").split("\n", 1)[1]
    (tmp_path / f"{exercise.name}.py").write_text(stub)
    with pytest.raises(NotAttempted) as failed:
        exercise.check(WorkspaceOnly(tmp_path))
    message = str(failed.value)
    assert "not attempted yet" in message and f"{function}()" in message and f"{exercise.handle}.hint(1)" in message


def test_a_missing_workspace_file_is_not_attempted(tmp_path):
    with pytest.raises(NotAttempted, match="run the exercise cell"):
        lab03.rate_limit.check(WorkspaceOnly(tmp_path))
