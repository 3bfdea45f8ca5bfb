"""Tests for the exercise tooling (tools/make_labs.py) and the notebooks it manages.

Unit tests run the script on tiny synthetic notebooks in tmp_path; repository
tests check the real solutions/ and labs/ directories.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "make_labs.py"
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
LABS = sorted((ROOT / "labs").glob("*.ipynb"))
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def make_labs(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the script as a learner/CI would."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- unit tests

SOLVED_FUNCTION = """\
import math

def area(r):
    ### BEGIN SOLUTION
    return math.pi * r ** 2
    ### END SOLUTION

### BEGIN SOLUTION
TOTAL = area(1) + area(2)
### END SOLUTION
print(TOTAL)"""

LAB_FUNCTION = """\
import math

def area(r):
    # YOUR CODE HERE
    raise NotImplementedError()

# YOUR CODE HERE
raise NotImplementedError()
print(TOTAL)"""


def synthetic_notebook() -> nbformat.NotebookNode:
    nb = new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "widgets": {"application/vnd.jupyter.widget-state+json": {}},
        "papermill": {"duration": 1.5, "parameters": {"FAST": True}},
    })
    nb.cells = [
        new_markdown_cell("# Lab 0"),
        new_code_cell('RUNTIME = "local"\nFAST = False', metadata={"tags": ["parameters"]}),
        new_code_cell(SOLVED_FUNCTION, execution_count=7,
                      outputs=[new_output("stream", name="stdout", text="15.7\n")],
                      metadata={"execution": {"iopub.execute_input": "2024-01-01T00:00:00"}}),
        new_code_cell("%%writefile nginx.conf\nhttp {\n    ### BEGIN SOLUTION\n"
                      "    upstream api { server 127.0.0.1:8000; }\n    ### END SOLUTION\n}"),
        new_code_cell("%%writefile -a app.py\ndef handler():\n    ### BEGIN SOLUTION\n"
                      "    return 'ok'\n    ### END SOLUTION"),
        new_code_cell("secret = 42", metadata={"tags": ["solution", "keep-me"]}),
        new_markdown_cell("Because caches are shared.", metadata={"tags": ["solution"]}),
        new_code_cell("assert area(1) > 3  # grader check", metadata={"tags": ["solution-only"]}),
        new_markdown_cell("The end."),
    ]
    return nb


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "solutions").mkdir()
    nbformat.write(synthetic_notebook(), tmp_path / "solutions" / "00-demo.ipynb")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_labs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run(script, capsys):
    """Call the script's main() in-process (fast) on ./solutions and ./labs."""
    def run(*args: str) -> subprocess.CompletedProcess:
        code = script.main(["--solutions", "solutions", "--labs", "labs", *args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
    return run


def test_generates_lab_from_markers_and_tags(repo: Path, run) -> None:
    solution_ids = [c["id"] for c in read_json(repo / "solutions" / "00-demo.ipynb")["cells"]]
    result = run()
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["wrote labs/00-demo.ipynb",
                                                  "wrote solutions/00-demo.ipynb"]

    lab = read_json(repo / "labs" / "00-demo.ipynb")
    cells = lab["cells"]
    assert [c["id"] for c in cells] == solution_ids[:7] + solution_ids[8:]  # solution-only dropped
    assert source(cells[1]) == 'RUNTIME = "local"\nFAST = False'
    assert tags(cells[1]) == ["parameters"]
    assert source(cells[2]) == LAB_FUNCTION
    assert source(cells[3]) == "%%writefile nginx.conf\nhttp {\n    # YOUR CODE HERE\n}"
    assert source(cells[4]) == ("%%writefile -a app.py\ndef handler():\n"
                                "    # YOUR CODE HERE\n    raise NotImplementedError()")
    assert source(cells[5]) == STUB and tags(cells[5]) == ["keep-me"]
    assert cells[6]["cell_type"] == "markdown"
    assert source(cells[6]) == "*Your answer here.*" and "solution" not in tags(cells[6])
    assert not any("grader check" in source(c) for c in cells)
    assert "widgets" not in lab["metadata"] and "papermill" not in lab["metadata"]
    assert lab["metadata"]["kernelspec"]["name"] == "python3"

    for path in (repo / "labs" / "00-demo.ipynb", repo / "solutions" / "00-demo.ipynb"):
        nb = read_json(path)
        for cell in nb["cells"]:
            assert "execution" not in cell["metadata"]
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None
        assert "papermill" not in nb["metadata"]
    solution = read_json(repo / "solutions" / "00-demo.ipynb")
    assert source(solution["cells"][2]) == SOLVED_FUNCTION  # the solution keeps its answers
    assert len(solution["cells"]) == 9


def test_output_is_deterministic(repo: Path, run) -> None:
    lab, sol = repo / "labs" / "00-demo.ipynb", repo / "solutions" / "00-demo.ipynb"
    assert run().returncode == 0
    first = lab.read_bytes(), sol.read_bytes()
    assert first[0].endswith(b"}\n") and first[1].endswith(b"}\n")

    again = run()
    assert again.returncode == 0 and again.stdout == ""  # nothing to write
    lab.unlink()
    assert run().returncode == 0
    assert (lab.read_bytes(), sol.read_bytes()) == first


def test_missing_cell_ids_get_stable_ids(tmp_path: Path, script, capsys) -> None:
    raw = json.loads(nbformat.writes(synthetic_notebook()))
    for cell in raw["cells"]:
        del cell["id"]  # nbformat would otherwise invent random ids on every read
    outputs = []
    for name in ("a", "b"):
        (tmp_path / name / "solutions").mkdir(parents=True)
        (tmp_path / name / "solutions" / "00-demo.ipynb").write_text(json.dumps(raw))
        args = ["--solutions", str(tmp_path / name / "solutions"), "--labs", str(tmp_path / name / "labs")]
        assert script.main(args) == 0
        outputs.append((tmp_path / name / "labs" / "00-demo.ipynb").read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("cell_source, problem", [
    ("x = 1\n### BEGIN SOLUTION\nx = 2", "without '### END SOLUTION'"),
    ("### BEGIN SOLUTION\n    ### BEGIN SOLUTION\nx = 2\n### END SOLUTION", "nested"),
    ("x = 1\n### END SOLUTION", "without BEGIN"),
])
def test_unbalanced_markers_are_rejected(repo: Path, run, cell_source: str, problem: str) -> None:
    nb = synthetic_notebook()
    nb.cells[3].source = cell_source
    nbformat.write(nb, repo / "solutions" / "00-demo.ipynb")
    for extra in ([], ["--check"]):
        result = run(*extra)
        assert result.returncode == 1
        assert "solutions/00-demo.ipynb cell 3" in result.stderr and problem in result.stderr
    assert not (repo / "labs").exists()


def test_unbalanced_markers_exit_1_without_traceback(repo: Path) -> None:
    nb = synthetic_notebook()
    nb.cells[2].source = "def f():\n    ### BEGIN SOLUTION\n    return 1"
    nbformat.write(nb, repo / "solutions" / "00-demo.ipynb")
    result = make_labs("--solutions", "solutions", "--labs", "labs", cwd=repo)
    assert result.returncode == 1
    assert result.stderr.startswith("error: solutions/00-demo.ipynb cell 2:"), result.stderr
    assert "Traceback" not in result.stderr


def test_check_detects_stale_missing_and_extra_labs(repo: Path, run) -> None:
    missing = run("--check")
    assert missing.returncode == 1 and "labs/00-demo.ipynb: missing" in missing.stderr
    assert "solutions/00-demo.ipynb: has outputs" in missing.stderr
    assert not (repo / "labs").exists(), "--check must not write"

    assert run().returncode == 0
    fresh = run("--check")
    assert fresh.returncode == 0, fresh.stderr

    nb = synthetic_notebook()
    nb.cells[0].source = "# Lab 0, revised"
    nbformat.write(nb, repo / "solutions" / "00-demo.ipynb")
    stale = run("--check")
    assert stale.returncode == 1
    assert "labs/00-demo.ipynb: stale" in stale.stderr and "make labs" in stale.stderr

    assert run().returncode == 0
    (repo / "labs" / "99-orphan.ipynb").write_text("{}")
    extra = run("--check")
    assert extra.returncode == 1 and "99-orphan.ipynb" in extra.stderr


# --------------------------------------------------------------------- repository tests

def test_labs_are_up_to_date() -> None:
    result = make_labs("--check", cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_solution_notebooks_exist() -> None:
    assert SOLUTIONS, "no notebooks in solutions/ yet"


def test_notebooks_are_stored_without_outputs() -> None:
    dirty = [f"{path.relative_to(ROOT)} cell {i}"
             for path in SOLUTIONS + LABS
             for i, cell in enumerate(read_json(path)["cells"])
             if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))]
    assert not dirty, "outputs/execution counts stored (run `make labs` to strip):\n" + "\n".join(dirty)


def assigned_names(code: str) -> set[str]:
    return {node.id for node in ast.walk(ast.parse(code))
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}


def test_solutions_have_one_parameters_cell_setting_runtime_and_fast() -> None:
    problems = []
    for path in SOLUTIONS:
        cells = [c for c in read_json(path)["cells"] if "parameters" in tags(c)]
        if len(cells) != 1:
            problems.append(f"{path.name}: {len(cells)} cells tagged 'parameters', expected 1")
            continue
        try:
            missing = {"RUNTIME", "FAST"} - assigned_names(source(cells[0]))
        except SyntaxError as exc:
            missing = {f"(parameters cell does not parse: {exc})"}
        if missing:
            problems.append(f"{path.name}: parameters cell does not set {', '.join(sorted(missing))}")
    assert not problems, "\n".join(problems)


def test_solutions_have_exercises() -> None:
    def has_exercise(cell: dict) -> bool:
        return "solution" in tags(cell) or (
            cell["cell_type"] == "code"
            and any(line.strip() == "### BEGIN SOLUTION" for line in source(cell).splitlines()))

    without = [p.name for p in SOLUTIONS if not any(map(has_exercise, read_json(p)["cells"]))]
    assert not without, f"solution notebooks without any exercise marker: {without}"
