"""Generate HTTP load against a running service and measure it.

    from scalelab import load
    r = load.run("http://127.0.0.1:8000", ["/health"], users=32, duration=10)
    r.summary          # one row: requests, failures, rps, p50/p95/p99 ...
    r.timeline         # one row per second
    r.instances        # which replica served how many requests (X-Instance header)

Under the hood this uses `Locust <https://locust.io>`_ as a library.  Every
number (counts, requests per second, percentiles) comes from Locust's own
statistics; nothing here re-implements them.  Locust runs in a child process
(see ``_locust_run.py``) so it cannot disturb the notebook kernel.

"Users" are simulated clients in a *closed loop*: each one sends a request,
waits for the answer, and immediately sends the next one.  More users = more
requests in flight at the same time (concurrency), not a fixed request rate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scalelab.errors import ScalelabError

SUMMARY_COLUMNS = [
    "label", "users", "requests", "failures", "failure_rate", "rps",
    "p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms", "duration_s",
]  # fmt: skip
TIMELINE_COLUMNS = ["t_s", "rps", "failures_per_s", "p50_ms", "p95_ms", "users"]
HARD_TIMEOUT_MARGIN_S = 30.0  # a run is killed after duration + this many seconds, whatever happens


class LoadError(ScalelabError):
    """The load generator itself failed (not the service under test)."""


class SummaryRow:
    """Attribute access to a run's one-row ``summary`` frame, the same for every load tool."""

    summary: pd.DataFrame

    def _get(self, column):
        return self.summary[column].iloc[0]

    label = property(lambda self: self._get("label"), doc="Name of this run (tables, plots).")
    requests = property(lambda self: int(self._get("requests")), doc="Requests completed.")
    failures = property(lambda self: int(self._get("failures")), doc="Requests counted as failed.")
    rps = property(lambda self: float(self._get("rps")), doc="Requests per second (throughput).")
    p50 = property(lambda self: self._get("p50_ms"), doc="Median latency in ms.")
    p95 = property(lambda self: self._get("p95_ms"), doc="95th percentile latency in ms.")
    p99 = property(lambda self: self._get("p99_ms"), doc="99th percentile latency in ms.")


@dataclass
class LoadResult(SummaryRow):
    """Everything measured during one load run.

    summary         one-row DataFrame: label, users, requests, failures, failure_rate,
                    rps, p50_ms, p95_ms, p99_ms, max_ms, mean_ms, duration_s
    status_counts   {"200": 950, "503": 50, "error": 3}  ("error" = no HTTP response at all)
    instances       {"shop-1": 480, "shop-2": 470}  from the X-Instance response header
    response_times  {rounded ms: count}, Locust's latency histogram over all requests
    timeline        DataFrame, one row per second: t_s, rps, failures_per_s, p50_ms, p95_ms, users
    by_path         DataFrame, Locust's numbers per requested path
    errors          {"GET /x: HTTPError(...)": count}, Locust's failure messages
    """

    summary: pd.DataFrame
    status_counts: dict[str, int]
    instances: dict[str, int]
    response_times: dict[int, int]
    timeline: pd.DataFrame
    by_path: pd.DataFrame = field(default_factory=pd.DataFrame)
    errors: dict[str, int] = field(default_factory=dict)
    started_at: float | None = None   # time.time() of the load's first and last request
    ended_at: float | None = None

    def __repr__(self):
        return (
            f"<LoadResult {self.label!r}: {self.requests} requests, {self.failures} failed, "
            f"{self.rps:.1f} rps, p50={self.p50} ms, p95={self.p95} ms, p99={self.p99} ms>"
        )

    def _repr_html_(self):  # Jupyter shows the summary table
        return self.summary.to_html(index=False)


def _check_args(base_url, paths, weights, users, duration, requests, timeout):
    """Raise ValueError naming the first problem with the arguments."""
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
    if not paths:
        raise ValueError("paths must list at least one path, e.g. ['/health']")
    for p in paths:
        if not isinstance(p, str) or not p.startswith(("/", "http://", "https://")):
            raise ValueError(f"each path must start with '/', got {p!r}")
    if weights is not None:
        if len(weights) != len(paths):
            raise ValueError(f"weights has {len(weights)} entries but paths has {len(paths)}")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("weights must be >= 0 and not all zero")
    if not isinstance(users, int) or users < 1:
        raise ValueError(f"users must be an integer >= 1, got {users!r}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration!r}")
    if requests is not None and (not isinstance(requests, int) or requests < 1):
        raise ValueError(f"requests must be None or an integer >= 1, got {requests!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")


def _child_command() -> list[str]:
    """The command that starts the Locust child (``-P``: don't put scalelab/ on sys.path)."""
    return [sys.executable, "-P", str(Path(__file__).with_name("_locust_run.py"))]


def _run_child(spec: dict) -> dict:
    """Run the Locust child with ``spec``; return its parsed JSON result or raise LoadError."""
    limit = spec["duration"] + HARD_TIMEOUT_MARGIN_S
    try:
        proc = subprocess.run(
            _child_command(), input=json.dumps(spec), capture_output=True, text=True, timeout=limit
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"the load generator did not finish within {limit:.0f} s and was killed") from exc
    tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
    if proc.returncode != 0:
        raise LoadError(f"the load generator failed (exit code {proc.returncode}):\n{tail}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise LoadError(f"the load generator printed no result:\n{tail}") from exc


def run(
    base_url: str,
    paths: Sequence[str] = ("/health",),
    *,
    weights: Sequence[float] | None = None,
    users: int = 32,
    duration: float = 10.0,
    requests: int | None = None,
    method: str = "GET",
    json_body: dict | None = None,
    headers: dict | None = None,
    timeout: float = 10.0,
    expect_status: Collection[int] = (),
    label: str | None = None,
    stop_file: str | None = None,
    started_file: str | None = None,
) -> LoadResult:
    """Send load to ``base_url`` and return what Locust measured.

    base_url       e.g. "http://127.0.0.1:8000"
    paths          paths to request; each request picks one at random ...
    weights        ... with these relative weights (same length as paths), e.g. [9, 1]
    users          concurrent simulated users (all start at once, no think time)
    duration       stop after this many seconds ...
    requests       ... or after this many requests in total, whichever comes first
    method, json_body, headers   what each request sends
    timeout        per-request timeout in seconds (a timeout counts as a failure)
    expect_status  status codes that count as success even though they are >= 400,
                   e.g. {429} when the point of the exercise is rate limiting
    label          name for this run in tables and plots
    stop_file      the load also stops as soon as this file exists (``duration`` stays the bound)
    started_file   this file is written (with the start time) once the simulated users run

    A response counts as failed if its status is not 2xx/3xx (and not in
    ``expect_status``), or if no response arrived at all.
    """
    if isinstance(paths, str):  # run(url, "/health") means one path, not 7 characters
        paths = [paths]
    paths = list(paths)
    _check_args(base_url, paths, weights, users, duration, requests, timeout)
    spec = {
        "base_url": base_url.rstrip("/"),
        "paths": paths,
        "weights": list(weights) if weights is not None else None,
        "users": users,
        "duration": float(duration),
        "requests": requests,
        "method": method.upper(),
        "json_body": json_body,
        "headers": dict(headers or {}),
        "timeout": float(timeout),
        "expect_status": sorted(int(s) for s in expect_status),
        "stop_file": stop_file,
        "started_file": started_file,
    }
    out = _run_child(spec)
    label = label or f"{spec['method']} {_describe(paths)} x{users}"
    summary = pd.DataFrame([{"label": label, "users": users, **out["summary"]}], columns=SUMMARY_COLUMNS)
    return LoadResult(
        summary=summary,
        status_counts=out["status_counts"],
        instances=out["instances"],
        response_times={int(ms): n for ms, n in out["response_times"].items()},
        timeline=pd.DataFrame(out["timeline"], columns=TIMELINE_COLUMNS),
        by_path=pd.DataFrame(out["by_path"]),
        errors=out["errors"],
        started_at=out.get("started_at"),
        ended_at=out.get("ended_at"),
    )


def _describe(paths: list[str]) -> str:
    """A short name for a set of paths: '/a,/b' or '/users/1 … (+999 paths)'."""
    return ",".join(paths) if len(paths) <= 3 else f"{paths[0]} … (+{len(paths) - 1} paths)"


def ladder(
    base_url: str,
    paths: Sequence[str] = ("/health",),
    users_levels: Sequence[int] = (1, 8, 32, 64),
    duration: float = 5.0,
    **kw,
) -> pd.DataFrame:
    """Run the same load at increasing user counts; return one summary row per level.

    Plot it with ``scalelab.plot.ladder(df)`` to see where throughput stops
    growing and latency starts climbing (the system's saturation point).
    """
    label = kw.pop("label", None)
    rows = [
        run(base_url, paths, users=u, duration=duration,
            label=f"{label} x{u}" if label else f"{u} user{'s' * (u != 1)}", **kw).summary
        for u in users_levels
    ]
    return pd.concat(rows, ignore_index=True)
