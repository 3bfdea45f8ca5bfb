"""The repository's contracts: layout, README commands, CI entry, kind config, references."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_repo_has_the_design_cards_layout():
    for path in ["labs", "solutions", "stack/shop", "stack/scalelab", "stack/deploy", "kind-config.yaml",
                 "Makefile", "tests", "README.md", "pyproject.toml", ".ci/run"]:
        assert (REPO / path).exists(), path


def test_pyproject_pins_every_package_the_design_names_to_a_range():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    all_deps = deps["dependencies"] + deps["optional-dependencies"]["test"]
    for package in ["jupyterlab", "papermill", "docker", "kubernetes", "fastapi", "redis", "asyncpg",
                    "celery", "pytest-notebook"]:
        spec = next((d for d in all_deps if re.match(rf"{package}(\[.*\])?[<>=]", d)), None)
        assert spec and ">=" in spec and "<" in spec, f"{package} must be pinned to a range, got {spec}"


def test_readme_states_the_two_commands_first():
    text = (REPO / "README.md").read_text()
    commands = re.findall(r"^\s*(make [\w-]+)", text, flags=re.M)
    assert commands[:2] == ["make lab-1", "make test"], commands[:4]


def test_readme_lists_every_lab_notebook_with_the_runtimes_its_plan_runs_on():
    from scalelab.plans import plan_for
    text = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| (\d\d) \| `labs/([\w.-]+)` \|.*\| ([a-z, ]+) \|$", text, flags=re.M)
    listed = {name: runtimes for _, name, runtimes in rows}
    for notebook in sorted((REPO / "labs").glob("*.ipynb")):
        assert notebook.name in listed, f"README's labs table misses {notebook.name}"
        plan = plan_for(int(notebook.name[:2]))
        assert listed[notebook.name].split(", ") == list(plan.runtimes), \
            f"README says {notebook.name} runs on {listed[notebook.name]}; its plan says {', '.join(plan.runtimes)}"


def test_ci_runs_exactly_the_readme_test_command():
    lines = [l for l in (REPO / ".ci/run").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert lines[-1].strip() == "exec make test"


def test_kind_config_is_a_valid_multi_node_cluster_with_a_loopback_port_mapping():
    config = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [node["role"] for node in config["nodes"]]
    assert roles.count("control-plane") == 1 and roles.count("worker") >= 1
    assert set(roles) <= {"control-plane", "worker"}
    mappings = [m for node in config["nodes"] for m in node.get("extraPortMappings", [])]
    assert mappings, "the lab's ingress port must be mapped"
    for m in mappings:
        assert set(m) <= {"containerPort", "hostPort", "listenAddress", "protocol"}
        assert 30000 <= m["containerPort"] <= 32767, "a NodePort"
        assert m["listenAddress"] == "127.0.0.1" and m["protocol"] in ("TCP", "UDP", "SCTP")


WRITEFILE = re.compile(r"^%%writefile\s+\{WORKSPACE\}/(?P<name>[\w.]+)\s*$")


def solution_exercise_files():
    import json
    for notebook in sorted((REPO / "solutions").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            lines = "".join(cell["source"]).splitlines()
            if cell["cell_type"] == "code" and lines and (m := WRITEFILE.match(lines[0])):
                body = [l for l in lines[1:] if l.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")]
                yield notebook.name, m["name"], "\n".join(body).strip() + "\n"


@pytest.mark.parametrize("notebook, name, code", list(solution_exercise_files()),
                         ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "")
def test_reference_solutions_equal_the_solution_cells(notebook, name, code):
    """Later labs run earlier exercises from the reference: it must be what the solution teaches."""
    from scalelab.plans import PLANS
    from scalelab.references import exercises, reference_file
    # The same lookup solve() uses: each lab's Exercise names its reference.
    known = {reference_file(e).name: reference_file(e) for lab in PLANS for e in exercises(lab) if e.reference}
    reference = known.get(name)
    assert reference is not None, f"{notebook}: no exercise of scalelab.labs names a reference for {name}"
    assert reference.read_text().strip() + "\n" == code, f"{reference} differs from the cell in {notebook}"


def _makefile_recipe(target: str) -> str:
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    match = re.search(rf"^{target}:[^\n]*\n((?:\t[^\n]*\n)+)", text, flags=re.M)
    assert match, f"Makefile has no {target} target"
    return match[1]


def test_make_jupyter_serves_the_repo_root_and_opens_lab_01():
    recipe = _makefile_recipe("jupyter")
    assert "--ServerApp.root_dir=$(CURDIR)" in recipe, recipe
    url = re.search(r"--LabApp\.default_url=/lab/tree/(\S+)", recipe)
    assert url, f"make jupyter opens no notebook: {recipe}"
    assert url[1] == "labs/01-stateless-api.ipynb" and (REPO / url[1]).is_file(), url[1]
    assert not re.search(r"\slabs/\s*$", recipe), "a path argument would override the default URL"


LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|\b(?:href|src)=\"([^\"]+)\"")


def notebook_links():
    import json
    for notebook in sorted([*(REPO / "labs").glob("*.ipynb"), *(REPO / "solutions").glob("*.ipynb")]):
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                for m in LINK.finditer("".join(cell["source"])):
                    yield notebook, m[1] or m[2]


def test_notebooks_have_relative_links_to_check():
    relative = [link for _, link in notebook_links() if not re.match(r"[a-z]+:|#", link)]
    assert relative, "the link pattern finds no relative link (lab 01 links ../README.md)"


@pytest.mark.parametrize("notebook, link", [(n, l) for n, l in notebook_links() if not re.match(r"[a-z]+:|#", l)],
                         ids=lambda v: v.name if isinstance(v, Path) else v)
def test_every_relative_link_in_a_notebook_resolves_from_the_notebooks_folder(notebook, link):
    """JupyterLab serves the repo root (`make jupyter`), so a link resolves as on disk."""
    target = (notebook.parent / link.split("#")[0]).resolve()
    assert target.is_relative_to(REPO), f"{notebook.name}: {link} points outside the repo, which JupyterLab does not serve"
    assert target.exists(), f"{notebook.name}: {link} does not exist"


FAST_SWITCH = re.compile(r"([^=\n]+?)\s+if FAST else\s+([^#\n]+)")


@pytest.mark.parametrize("notebook", sorted((REPO / "solutions").glob("*.ipynb")), ids=lambda p: p.stem)
def test_each_lab_opens_with_its_measured_time_and_every_value_fast_changes(notebook):
    import json
    cells = json.loads(notebook.read_text())["cells"]
    intro = "".join(cells[0]["source"])
    assert re.search(r"\*\*Time\.\*\* Running every cell took \d+(–\d+)? s here", intro), \
        f"{notebook.name}: the first cell states no measured time"
    assert re.search(r"With the default `FAST = False` it took \d+(–\d+)? s", intro), \
        f"{notebook.name}: the first cell does not say how long a learner's run (FAST = False) took"
    assert "**`FAST`**" in intro, f"{notebook.name}: the first cell does not say what FAST changes"
    said = intro.replace(",", "").replace("_", "")
    switches = [m for c in cells if c["cell_type"] == "code" for m in FAST_SWITCH.finditer("".join(c["source"]))]
    assert switches, f"{notebook.name}: no `x if FAST else y` found"
    for m in switches:
        fast, default = (re.findall(r"\d[\d_]*", side.split("=")[-1].replace("_", "")) for side in m.groups())
        for full, short in zip(default, fast):
            assert f"{full} → {short}" in said, f"{notebook.name}: the first cell does not say FAST turns {full} into {short}"


@pytest.mark.parametrize("notebook", sorted((REPO / "solutions").glob("*.ipynb")), ids=lambda p: p.stem)
def test_each_lab_says_in_its_first_cell_what_state_it_starts_from_and_how_to_start_clean(notebook):
    import json
    intro = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
    lab = int(notebook.name[:2])
    assert "**State.**" in intro and f"make lab-{lab}-reset" in intro, f"{notebook.name}: no word on its starting state"
    for test_file in re.findall(r"`(tests/[\w/]+\.py)`", intro):
        assert (REPO / test_file).is_file(), f"{notebook.name} names {test_file}, which does not exist"


def test_the_readme_names_every_make_target_that_make_help_lists():
    import re
    makefile = (REPO / "Makefile").read_text()
    documented = {m.group(1).replace("%", "N") for m in re.finditer(r"^([a-zA-Z0-9_%-]+):.*## ", makefile, re.M)}
    readme = (REPO / "README.md").read_text()
    missing = sorted(t for t in documented if f"`make {t}`" not in readme)
    assert not missing, f"README's commands table lacks {missing}"
