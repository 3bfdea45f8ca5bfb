"""``make bench-kind``: how long each lab's stack takes to come up on an existing kind cluster.

For every lab whose plan runs on kind, with its reference solutions: ``up()`` once (``first up
s``: may build and ``kind load`` images the cluster lacks), ``down(purge=True)``, then ``up()``
again (``warm up s``: the cluster and its images are there; a new namespace, every pod ready
and told its member name) and ``down(purge=True)`` (``down s``: until the namespace is gone).
Issue 14's target: warm ``up()`` under 60 s for every lab. Nothing is asserted; results go to
bench/results/kind-<date>.{json,md}. Needs the kind runtime (``make kind-offline`` here).
"""

import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd

from scalelab import Stack
from scalelab.errors import RuntimeUnavailable
from scalelab.plans import PLANS
from scalelab.references import solve

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_S = 60.0


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def lab_times(lab: int, workdir: Path) -> dict:
    stack = Stack(lab=lab, runtime="kind", state_dir=workdir / f"lab{lab}")
    solve(stack)
    first = _timed(stack.up)
    _timed(lambda: stack.down(purge=True))
    solve(stack)
    warm = _timed(stack.up)
    down = _timed(lambda: stack.down(purge=True))
    return {"lab": lab, "first up s": first, "warm up s": warm, "down s": down,
            "warm under target": "yes" if warm < TARGET_S else "no"}


def write(rows: list[dict]) -> str:
    """The results so far (after each lab: an interrupted run keeps what it measured)."""
    table = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"kind-{date.today().isoformat()}"
    stem.with_suffix(".json").write_text(json.dumps({"date": date.today().isoformat(), "target_s": TARGET_S,
                                                     "labs": table.to_dict("records")}, indent=1))
    md = (f"# kind: up() per lab on an existing cluster ({date.today().isoformat()})\n\n"
          f"Target: warm up() under {TARGET_S:.0f} s.\n\n" + table.to_markdown(index=False, floatfmt=".1f") + "\n")
    stem.with_suffix(".md").write_text(md)
    return md


def main() -> int:
    labs = [lab for lab, plan in sorted(PLANS.items()) if "kind" in plan.runtimes]
    rows = []
    with tempfile.TemporaryDirectory(prefix="scalelab-bench-kind-") as tmp:
        for lab in labs:
            try:
                rows.append(lab_times(lab, Path(tmp)))
            except RuntimeUnavailable as exc:
                print(f"bench-kind: {exc}", file=sys.stderr)
                return 1
            print(f"bench-kind: lab {lab:02d}: {rows[-1]}", flush=True)
            md = write(rows)
    print(md)
    print(f"written: {RESULTS}/kind-{date.today().isoformat()}.json, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
