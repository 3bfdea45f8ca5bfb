"""``scalelab`` — the command line over the same ``Stack`` API the notebooks use.

    scalelab up --lab 1        start (or re-use) lab 1's stack and leave it running
    scalelab status            what runs, where
    scalelab logs users-1      the tail of one member's log
    scalelab check --lab 1     run lab 1's exercise checks against the live stack
    scalelab reset --lab 1     back to the lab's starting state (data and workspace wiped)
    scalelab down              stop everything
    scalelab doctor            tools, binaries, ports, memory, CPU
"""

import argparse
import sys
from pathlib import Path

from scalelab import doctor, references
from scalelab.errors import ScalelabError
from scalelab.exercise import CheckFailed
from scalelab.paths import default_state_dir
from scalelab.plans import PLANS
from scalelab.runtimes import get_runtime
from scalelab.stack import Stack


def _stack(args) -> Stack:
    """The stack a command acts on: ``--lab``'s, else the lab that runs on this runtime now (down,
    status and logs need no --lab), else the first lab the runtime can run."""
    lab = args.lab
    if lab is None:
        state_dir = Path(args.state_dir) if args.state_dir else default_state_dir()
        lab = get_runtime(args.runtime, state_dir).running_lab()
    if lab is None:
        lab = next(n for n in sorted(PLANS) if args.runtime in PLANS[n].runtimes)
    return Stack(lab=lab, runtime=args.runtime, state_dir=args.state_dir, detach=True)


# The HTTP entry points a learner may open, in the order they are listed.
ENTRY_POINTS = ("users", "orders")


def _entry_points(stack: Stack) -> str:
    return ", ".join(f"{name} at {stack.url(name)}" for name in ENTRY_POINTS if stack.plan.has(name))


def cmd_up(args) -> int:
    args.lab = args.lab or 1
    stack = _stack(args)
    before = stack.runtime.running_lab()
    stack.up()
    print(stack.status().to_string(index=False))
    where = f"runtime={args.runtime!r}: {_entry_points(stack)}"
    if before == stack.lab:
        print(f"\nlab {stack.lab} was already up on {where} (re-used; a member that had stopped is started again)")
    elif before is not None:
        print(f"\nlab {stack.lab} is up on {where} — it replaced lab {before} (one lab runs at a time per runtime)")
    else:
        print(f"\nlab {stack.lab} is up on {where}")
    down = "make down" if args.runtime == "local" else f"make down RUNTIME={args.runtime}"
    print(f"open the notebook: `make jupyter`, then labs/{_notebook(stack.lab)}  ·  stop it: `{down}`")
    return 0


def cmd_down(args) -> int:
    stack = _stack(args)
    stack.down(purge=args.purge)
    print("stack stopped: every process it started has exited" + ("; its data is deleted" if args.purge else ""))
    return 0


def cmd_status(args) -> int:
    stack = _stack(args)
    table = stack.status()
    lab = stack.runtime.running_lab()
    print(table.to_string(index=False) if len(table) else "nothing running")
    if lab:
        print(f"\nlab {lab} is up on runtime={args.runtime!r}")
    return 0


def cmd_logs(args) -> int:
    print(_stack(args).logs(args.member, args.tail))
    return 0


def cmd_check(args) -> int:
    args.lab = args.lab or 1
    stack = _stack(args)
    if stack.runtime.running_lab() != stack.lab:
        print(f"lab {stack.lab} is not up: run `make lab-{stack.lab}` first", file=sys.stderr)
        return 1
    exercises = references.exercises(stack.lab)
    failed = 0
    for exercise in exercises:
        try:
            exercise.check(stack)
        except CheckFailed as exc:
            failed += 1
            print(f"✗ {exc}")
    print(f"\n{len(exercises) - failed} of {len(exercises)} checks pass")
    return 1 if failed else 0


def cmd_reset(args) -> int:
    args.lab = args.lab or 1
    stack = _stack(args).reset()
    print(f"lab {stack.lab} reset: fresh database, empty workspace; {_entry_points(stack)}")
    return 0


def cmd_doctor(args) -> int:
    return doctor.report(Path(args.state_dir) if args.state_dir else default_state_dir())


def _notebook(lab: int) -> str:
    from scalelab.paths import REPO
    found = sorted((REPO / "labs").glob(f"{lab:02d}-*.ipynb"))
    return found[0].name if found else f"{lab:02d}-*.ipynb"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scalelab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", default="local", choices=["local", "compose", "kind"])
    parser.add_argument("--state-dir", default=None, help="default: $SCALELAB_HOME or .scalelab/ in the repo")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in [("up", cmd_up), ("down", cmd_down), ("status", cmd_status), ("check", cmd_check),
                     ("reset", cmd_reset), ("doctor", cmd_doctor), ("logs", cmd_logs)]:
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        p.add_argument("--lab", type=int, default=None,
                       help="the lab (down, status, logs: the one running; up, check, reset: 1)")
        if name == "down":
            p.add_argument("--purge", action="store_true", help="also delete the database, logs and scratch dirs")
        if name == "logs":
            p.add_argument("member", help="e.g. users-1 or postgres")
            p.add_argument("--tail", type=int, default=40)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except (ScalelabError, ValueError) as exc:
        print(f"scalelab {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
