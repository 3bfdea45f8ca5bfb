"""Fuzz a service against its own OpenAPI document with `schemathesis <https://schemathesis.io>`_.

    from scalelab import fuzz
    run = fuzz.run(stack.url("users"), seed=20)   # every check; coverage, fuzzing and stateful phases
    run.failures        # a DataFrame, one row per kind of failure (empty when the contract holds)
    run.replay          # the command that sends the same requests again

schemathesis reads ``/openapi.json``, generates requests from it — valid ones, which the
service must accept, and invalid ones, which it must refuse with a 4xx — and checks every
answer against the document: no 5xx, only documented statuses, bodies that match their
schema, 405 with ``Allow`` for an undeclared method, a created resource readable, a deleted
one gone (the stateful phase chains calls through the links it infers).

It runs as its own CLI (``st run``), as you would run it by hand, in a scratch directory (its
example database stays out of the repository, so the seed alone decides the requests).
``seed=None`` draws a seed; either way the result, its ``replay`` and its one-line summary
name it, so any run can be repeated.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scalelab.errors import ScalelabError

PHASES = ("coverage", "fuzzing", "stateful")


@dataclass
class FuzzRun:
    url: str
    seed: int
    seconds: float
    generated: int                 # requests generated (test cases), over every phase
    phases: dict[str, str]         # phase -> passed / failed / skipped
    failures: pd.DataFrame         # code, title, operations, count
    errors: list[str]              # runs that could not test (a schema schemathesis cannot read, ...)
    replay: str                    # the command line of this very run
    report: str                    # what the CLI printed: each failure with the request that shows it

    @property
    def passed(self) -> bool:
        return self.generated > 0 and self.failures.empty and not self.errors

    def details(self, limit: int = 4000) -> str:
        """The part of the CLI's report that says what failed and how to reproduce it."""
        start, end = self.report.find("FAILURES"), self.report.find("SUMMARY")
        section = self.report[max(start, 0):end if end > start >= 0 else None]
        lines = [line for line in section.splitlines() if line.strip() and not line.startswith("=====")
                 and not line.strip().startswith("st replay")]   # its cache went with the scratch directory
        return "\n".join(lines)[:limit]

    def summary(self) -> str:
        if self.passed:
            verdict = "0 failures"
        elif not self.failures.empty:
            verdict = f"{int(self.failures['count'].sum())} failure(s)"
        else:   # nothing failed, yet nothing was shown to hold either
            verdict = "; ".join(self.errors) or "no request generated: nothing was tested"
        return (f"{self.generated} requests generated in {self.seconds:.0f} s, {verdict} "
                f"(seed {self.seed}: {self.replay})")


def run(base_url: str, *, seed: int | None = None, max_examples: int = 10, phases: tuple[str, ...] = PHASES,
        operations: str | None = None, headers: dict[str, str] | None = None, timeout_s: float = 600) -> FuzzRun:
    """One ``st run`` against ``base_url``: all checks, ``phases``, at most ``max_examples`` generated
    cases per operation and phase, one request at a time. ``operations`` (a regular expression)
    keeps those whose ``METHOD /path`` matches, e.g. ``"^(GET|POST) /users"``; ``headers`` go
    with every request (e.g. a Bearer token)."""
    seed = secrets.randbelow(2**31) if seed is None else seed
    options = ["--checks", "all", "--phases", ",".join(phases), "--seed", str(seed),
               "--max-examples", str(max_examples), "--workers", "1"]
    if operations:
        options += ["--include-name-regex", operations]
    sent = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    shown = [arg for name in (headers or {}) for arg in ("-H", f"{name}: …")]
    location = f"{base_url}/openapi.json"
    with tempfile.TemporaryDirectory(prefix="scalelab-fuzz-") as scratch:
        report = Path(scratch) / "report.json"
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "schemathesis.cli", "run", location, *options, *sent,
                              "--report", "json", "--report-json-path", str(report), "--report-dir", scratch],
                             capture_output=True, text=True, timeout=timeout_s, cwd=scratch,
                             env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"})
        seconds = time.monotonic() - started
        if not report.exists():
            raise ScalelabError(f"schemathesis wrote no report (exit {out.returncode}):\n{out.stdout[-2000:]}"
                                f"{out.stderr[-2000:]}")
        document = json.loads(report.read_text())
    failures = pd.DataFrame(document["failures"], columns=["code", "title", "operations", "count"])
    return FuzzRun(url=base_url, seed=seed, seconds=seconds, generated=document["test_cases"]["generated"],
                   phases={name: phase["status"] for name, phase in (document["phases"] or {}).items()},
                   failures=failures, errors=[f"{e['title']} ×{e['count']}" for e in document["errors"]],
                   replay=shlex.join(["st", "run", location, *options, *shown]), report=out.stdout)
