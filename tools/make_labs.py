#!/usr/bin/env python3
"""Generate learner notebooks in labs/ from the solution notebooks in solutions/.

solutions/*.ipynb is the single source; labs/<same name>.ipynb is derived from it:

* In code cells, every region between a line ``### BEGIN SOLUTION`` and a line
  ``### END SOLUTION`` (only leading/trailing whitespace allowed around the
  marker; regions may not nest) is replaced, at the BEGIN marker's indentation, by
      # YOUR CODE HERE
      raise NotImplementedError()
  In a ``%%writefile`` cell whose target does not end in ``.py`` (nginx conf,
  YAML, ...) only ``# YOUR CODE HERE`` is written.
* A code cell tagged ``solution`` becomes ``# YOUR CODE HERE`` /
  ``raise NotImplementedError()``; a markdown (or raw) cell tagged ``solution``
  becomes ``*Your answer here.*``. The ``solution`` tag is dropped, other tags
  and the cell id are kept.
* Cells tagged ``solution-only`` are left out of the lab.
* Outputs, execution counts and run metadata (``widgets``, ``papermill``, cell
  ``execution`` timings) are removed from the lab, and from the solution itself
  (rewritten only when that changes something; ``--no-strip`` disables it).

Output is deterministic, so ``git diff`` stays empty when nothing changed.

Usage: python tools/make_labs.py [--check] [--solutions DIR] [--labs DIR]
  --check   write nothing; exit 1 listing stale/missing/extra labs and
            solutions that still hold outputs.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
BEGIN = re.compile(r"^(\s*)### BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*### END SOLUTION\s*$")
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
ANSWER = "*Your answer here.*"
NB_RUN_KEYS = ("widgets", "papermill")
CELL_RUN_KEYS = ("execution", "papermill", "ExecuteTime")


class LabError(Exception):
    """A problem in a solution notebook, reported without a traceback."""


def load(path: Path) -> tuple[nbformat.NotebookNode, bool]:
    """Read a notebook; missing/duplicate cell ids get stable ids (-> True)."""
    fixed = False
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if (raw["nbformat"], raw.get("nbformat_minor", 0)) >= (4, 5):
            seen: set[str] = set()
            for i, cell in enumerate(raw["cells"]):
                if not cell.get("id") or cell["id"] in seen:  # nbformat would pick random ids
                    cell["id"] = hashlib.sha1(f"{path.stem}:{i}".encode()).hexdigest()[:12]
                    fixed = True
                seen.add(cell["id"])
        return nbformat.reads(json.dumps(raw), as_version=nbformat.NO_CONVERT), fixed
    except Exception as exc:  # unreadable file, bad JSON, not a notebook
        raise LabError(f"{show(path)}: cannot read notebook: {exc!r}") from None


def dump(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb, version=nbformat.NO_CONVERT) + "\n"


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Copy of nb without outputs, execution counts and run metadata."""
    nb = copy.deepcopy(nb)
    for key in NB_RUN_KEYS:
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        for key in CELL_RUN_KEYS:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def blank_regions(source: str, where: str) -> str:
    """Replace every BEGIN/END SOLUTION region of a code cell by a stub."""
    lines = source.split("\n")
    first = lines[0].split()
    plain = bool(first) and first[0] == "%%writefile" and not first[-1].endswith(".py")
    stub = STUB.split("\n")[:1] if plain else STUB.split("\n")
    out: list[str] = []
    indent = None  # indentation of the open BEGIN marker, None outside a region
    for line in lines:
        if m := BEGIN.match(line):
            if indent is not None:
                raise LabError(f"{where}: nested '### BEGIN SOLUTION'")
            indent = m.group(1)
            out.extend(indent + s for s in stub)
        elif END.match(line):
            if indent is None:
                raise LabError(f"{where}: '### END SOLUTION' without BEGIN")
            indent = None
        elif indent is None:
            out.append(line)
    if indent is not None:
        raise LabError(f"{where}: '### BEGIN SOLUTION' without '### END SOLUTION'")
    return "\n".join(out)


def make_lab(solution: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """Learner version of an (already stripped) solution notebook."""
    lab = copy.deepcopy(solution)
    cells = []
    for index, cell in enumerate(lab.cells):
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code":
            cell.source = blank_regions(cell.source, f"{name} cell {index}")
        if "solution-only" in tags:
            continue
        if "solution" in tags:
            cell.source = STUB if cell.cell_type == "code" else ANSWER
            cell.metadata.tags = [t for t in tags if t != "solution"]
            if not cell.metadata.tags:
                del cell.metadata["tags"]
        cells.append(cell)
    lab.cells = cells
    return lab


def show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run(solutions: Path, labs: Path, check: bool, strip_solutions: bool) -> int:
    problems: list[str] = []  # what --check reports
    writes: list[tuple[Path, str]] = []  # every notebook is processed before anything is written
    sources = sorted(solutions.glob("*.ipynb"))
    for src in sources:
        nb, ids_fixed = load(src)
        clean = strip(nb)
        if ids_fixed or clean != nb:
            problems.append(f"{show(src)}: has outputs, execution counts or run metadata")
            if strip_solutions:
                writes.append((src, dump(clean)))
        target, text = labs / src.name, dump(make_lab(clean, show(src)))
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current != text:
            problems.append(f"{show(target)}: {'missing' if current is None else 'stale'}")
            writes.append((target, text))
    names = {src.name for src in sources}
    extras = [f"{show(lab)}: no solution notebook of that name; delete it"
              for lab in sorted(labs.glob("*.ipynb")) if lab.name not in names]
    if check:
        if problems or extras:
            print("\n".join(problems + extras), file=sys.stderr)
            print("labs/ is out of date: run `make labs` (python tools/make_labs.py)", file=sys.stderr)
        return 1 if problems or extras else 0
    for path, text in writes:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {show(path)}")
    for line in extras:
        print(f"warning: {line}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing, exit 1 if labs/ is stale")
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions", metavar="DIR")
    parser.add_argument("--labs", type=Path, default=ROOT / "labs", metavar="DIR")
    parser.add_argument("--strip", action=argparse.BooleanOptionalAction, default=True,
                        help="also strip outputs from the solution notebooks (default)")
    args = parser.parse_args(argv)
    try:
        return run(args.solutions, args.labs, args.check, args.strip)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
