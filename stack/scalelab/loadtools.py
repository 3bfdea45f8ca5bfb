"""Run the real command-line load tools against a URL: ApacheBench (``ab``) and Vegeta.

    from scalelab import loadtools
    r = loadtools.ab("http://127.0.0.1:8000/users/1", requests=10_000, concurrency=100)
    v = loadtools.vegeta("http://127.0.0.1:8000", ["/users/1", "/users/2"], rate=200, seconds=5)
    r.summary      # one row: label, tool, model, load, requests, failures, rps, p50/p95/p99/max ms, duration_s
    r.latencies    # one row per request: start_s (since the first request), latency_ms, status
    loadtools.table(locust_result, r, v)   # their numbers side by side

The two tools load a service in the two ways there are:

* ``ab`` is a **closed loop**, like Locust's users: ``-c`` clients, each sends a request, waits
  for the answer, sends the next. When the service stalls, the clients wait with it and send
  nothing: a stall delays at most ``-c`` requests, whatever its length.
* ``vegeta attack`` is an **open model**: it sends ``rate`` requests per second whatever the
  answers take (a new connection when every open one is busy), as independent users arrive.
  Every request that arrives during a stall waits for it, and is recorded so.

The numbers come from the tools: ab's report (its percentiles are whole milliseconds) and
per-request times (``-g``: whole-second start times); ``vegeta report --type json`` and, per
request, ``vegeta encode --to csv``. Each tool is looked for in the tools cache first
(``$SCALELAB_TOOLS_CACHE/bin``, default ``~/.cache/scalelab/tools/bin``, where
``make tools-lab1`` builds Vegeta), then on ``PATH``; a missing one is said in one line.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scalelab.errors import RuntimeUnavailable
from scalelab.load import LoadError, LoadResult, SummaryRow

SUMMARY_COLUMNS = ["label", "tool", "model", "load", "requests", "failures", "rps",
                   "p50_ms", "p95_ms", "p99_ms", "max_ms", "duration_s"]
LATENCY_COLUMNS = ["start_s", "latency_ms", "status"]
TABLE_COLUMNS = ["label", "tool", "model", "load", "requests", "rps", "p50_ms", "p95_ms", "p99_ms", "failures"]
HARD_TIMEOUT_MARGIN_S = 60.0   # a run is killed after its own bound + this, whatever happens ...
REQUESTS_BOUND_LIMIT_S = 480.0   # ... and a run bounded by its number of requests after this
REQUEST_TIMEOUT_S = 30         # per request (both tools' default)
INSTALL = {
    "ab": "run `make tools-lab1` (as root on Debian it installs apache2-utils; macOS ships ab)",
    "vegeta": "run `make tools-lab1` (it builds Vegeta with `go install github.com/tsenart/vegeta/v12@v12.13.0`; "
              "needs Go), or `brew install vegeta`",
}


class LoadToolMissing(RuntimeUnavailable):
    """A load tool is not installed; the message names the install."""


def cache_bin() -> Path:
    """Where ``make tools-lab1`` puts the tools it builds."""
    root = os.environ.get("SCALELAB_TOOLS_CACHE") or Path.home() / ".cache" / "scalelab" / "tools"
    return Path(root) / "bin"


def find(tool: str) -> str:
    """The tool's path: the tools cache first, then PATH; ``LoadToolMissing`` naming the fix."""
    cached = cache_bin() / tool
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    found = shutil.which(tool)
    if found:
        return found
    raise LoadToolMissing(f"{tool} not found in {cache_bin()} or on PATH — {INSTALL.get(tool, 'install it')}")


@dataclass
class ToolResult(SummaryRow):
    """One run of a load tool.

    summary    one-row DataFrame (SUMMARY_COLUMNS), the tool's own numbers
    latencies  one row per request (LATENCY_COLUMNS): start_s (seconds after the first request;
               whole seconds for ab), latency_ms, status (the HTTP status; ab records none: <NA>)
    output     what the tool printed (ab's report, vegeta's text report)
    argv       the command that ran
    started_at time.time() of the first request (ab: to the whole second)
    during     what the ``during`` action returned, if one ran
    """

    summary: pd.DataFrame
    latencies: pd.DataFrame
    output: str
    argv: list[str]
    started_at: float
    during: object = None

    max_ms = property(lambda self: float(self.latencies.latency_ms.max()), doc="Slowest request, ms.")

    @property
    def command(self) -> str:
        """The command that ran, as one would type it: the tool's name, its scratch files by name."""
        scratch = re.compile(r"/[^\s=]*?/scalelab-(?:ab|vegeta)-[^/\s]+/")
        return " ".join([Path(self.argv[0]).name, *(scratch.sub("", arg) for arg in self.argv[1:])])

    @property
    def keepalive_requests(self) -> int | None:
        """ab -k: how many requests went over a kept connection (ab's own count); None elsewhere."""
        match = re.search(r"^Keep-Alive requests:\s+(\d+)", self.output, re.MULTILINE)
        return int(match.group(1)) if match else None

    @property
    def response_times(self) -> dict[int, int]:
        """{rounded ms: count}, the same shape as Locust's histogram (``plot.latency_cdf`` draws both)."""
        return self.latencies.latency_ms.round().astype(int).value_counts().sort_index().to_dict()

    def slower_than(self, ms: float) -> int:
        """How many requests took longer than ``ms``."""
        return int((self.latencies.latency_ms > ms).sum())

    def __repr__(self):
        return (f"<ToolResult {self.label!r}: {self.requests} requests, {self.failures} failed, {self.rps:.1f} rps, "
                f"p50={self.p50} ms, p95={self.p95} ms, p99={self.p99} ms>")

    def _repr_html_(self):
        return self.summary.to_html(index=False)


# -- ApacheBench --------------------------------------------------------------------------
def ab(url: str, requests: int = 10_000, concurrency: int = 100, *, keepalive: bool = False,
       seconds: float | None = None, label: str | None = None,
       during: Callable[[], object] | None = None, at_s: float = 1.0) -> ToolResult:
    """``ab -n requests -c concurrency [-k] url``: a closed loop of ``concurrency`` clients.

    seconds   stop after this long instead (``ab -t``; ``requests`` stays the upper bound)
    keepalive ``-k``: ask to keep connections open (ab speaks HTTP/1.0: a server that closes
              HTTP/1.0 connections, as uvicorn does, answers it with a new connection each time;
              ab's "Keep-Alive requests" line, in ``output``, says how many were kept)
    during    called ``at_s`` seconds into the run (e.g. freeze a member), its value kept in ``.during``
    """
    if not url.startswith(("http://", "https://")) or url.count("/") < 3:
        raise ValueError(f"ab needs a full URL with a path, e.g. http://127.0.0.1:8000/users/1 — got {url!r}")
    bound = ["-t", str(max(1, round(seconds)))] if seconds else []
    with tempfile.TemporaryDirectory(prefix="scalelab-ab-") as scratch:
        per_request = Path(scratch) / "requests.tsv"
        # -t first: it resets -n to 50,000; -r: a socket error is a failed request, not the end of ab
        argv = [find("ab"), *bound, "-n", str(requests), "-c", str(concurrency), *(["-k"] if keepalive else []),
                "-r", "-s", str(REQUEST_TIMEOUT_S), "-g", str(per_request), url]
        limit = seconds + HARD_TIMEOUT_MARGIN_S if seconds else REQUESTS_BOUND_LIMIT_S
        output, during_value = _run(argv, limit, during, at_s)
        tsv = per_request.read_text() if per_request.exists() else ""
    load = f"{concurrency} clients" + (", keep-alive" if keepalive else "")
    summary, latencies, started_at = parse_ab(output, tsv)
    row = {"label": label or f"ab -c {concurrency}" + (" -k" if keepalive else ""), "tool": "ab",
           "model": "closed", "load": load, **summary}
    return ToolResult(pd.DataFrame([row], columns=SUMMARY_COLUMNS), latencies, output, argv, started_at, during_value)


def _ab_number(output: str, name: str, default: float | None = None) -> float:
    match = re.search(rf"^{re.escape(name)}:\s+([\d.]+)", output, re.MULTILINE)
    if match:
        return float(match.group(1))
    if default is None:
        raise LoadError(f"ab's report has no '{name}' line:\n{output[-1500:]}")
    return default


def parse_ab(output: str, gnuplot_tsv: str) -> tuple[dict, pd.DataFrame, float]:
    """ab's report and its ``-g`` file → (summary numbers, per-request frame, first start time)."""
    percentiles = {int(p): float(ms) for p, ms in re.findall(r"^\s*(\d+)%\s+(\d+)", output, re.MULTILINE)}
    if not {50, 95, 99, 100} <= set(percentiles):
        raise LoadError(f"ab printed no latency percentiles:\n{output[-1500:]}")
    summary = {
        "requests": int(_ab_number(output, "Complete requests")),
        "failures": int(_ab_number(output, "Failed requests") + _ab_number(output, "Non-2xx responses", 0)),
        "rps": _ab_number(output, "Requests per second"),
        "p50_ms": percentiles[50], "p95_ms": percentiles[95], "p99_ms": percentiles[99], "max_ms": percentiles[100],
        "duration_s": _ab_number(output, "Time taken for tests"),
    }
    frame = pd.read_csv(io.StringIO(gnuplot_tsv), sep="\t") if gnuplot_tsv.strip() else pd.DataFrame()
    if frame.empty or not {"seconds", "ttime"} <= set(frame.columns):
        raise LoadError("ab wrote no per-request times (-g)")
    frame = frame.sort_values("seconds", kind="stable")
    started_at = float(frame.seconds.iloc[0])
    latencies = pd.DataFrame({"start_s": (frame.seconds - started_at).astype(float).to_numpy(),
                              "latency_ms": frame.ttime.astype(float).to_numpy(),
                              "status": pd.array([pd.NA] * len(frame), dtype="Int64")})
    return summary, latencies, started_at


# -- Vegeta -------------------------------------------------------------------------------
def vegeta(base_url: str, paths: Sequence[str] = ("/health",), *, rate: int = 100, seconds: float = 5.0,
           label: str | None = None, during: Callable[[], object] | None = None, at_s: float = 1.0) -> ToolResult:
    """``vegeta attack -rate rate/s -duration seconds``: an open model, ``rate`` requests a second
    whatever the answers take; ``paths`` in turn (round robin). ``during`` as for ``ab``."""
    if not isinstance(rate, int) or rate < 1:
        raise ValueError(f"rate must be an integer >= 1 (requests per second), got {rate!r}")
    if isinstance(paths, str):
        paths = [paths]
    vegeta_bin = find("vegeta")
    with tempfile.TemporaryDirectory(prefix="scalelab-vegeta-") as scratch:
        targets, results = Path(scratch) / "targets.txt", Path(scratch) / "results.bin"
        targets.write_text("".join(f"GET {base_url.rstrip('/')}{p}\n" for p in paths))
        argv = [vegeta_bin, "attack", f"-rate={rate}/s", f"-duration={seconds}s", f"-timeout={REQUEST_TIMEOUT_S}s",
                f"-targets={targets}", f"-output={results}"]
        _, during_value = _run(argv, seconds + REQUEST_TIMEOUT_S + HARD_TIMEOUT_MARGIN_S, during, at_s)
        report = _tool_output([vegeta_bin, "report", "-type=json", str(results)])
        text = _tool_output([vegeta_bin, "report", str(results)])
        csv = _tool_output([vegeta_bin, "encode", "--to", "csv", str(results)])
    summary, latencies, started_at = parse_vegeta(report, csv)
    row = {"label": label or f"vegeta {rate}/s", "tool": "vegeta", "model": "open", "load": f"{rate} req/s", **summary}
    return ToolResult(pd.DataFrame([row], columns=SUMMARY_COLUMNS), latencies, text, argv, started_at, during_value)


VEGETA_CSV = ["timestamp_ns", "code", "latency_ns", "bytes_out", "bytes_in", "error"]


def parse_vegeta(report_json: str, csv_text: str) -> tuple[dict, pd.DataFrame, float]:
    """``vegeta report --type json`` and ``vegeta encode --to csv`` → (summary, per-request frame, first start)."""
    try:
        report = json.loads(report_json)
    except json.JSONDecodeError as exc:
        raise LoadError(f"vegeta's report is not JSON:\n{report_json[-1500:]}") from exc
    requests = int(report["requests"])
    if requests == 0:
        raise LoadError("vegeta sent no request")
    latency = report["latencies"]
    wall_s = (report["duration"] + report["wait"]) / 1e9
    summary = {
        "requests": requests,
        "failures": requests - round(report["success"] * requests),
        "rps": round(requests / wall_s, 2),
        "p50_ms": round(latency["50th"] / 1e6, 2), "p95_ms": round(latency["95th"] / 1e6, 2),
        "p99_ms": round(latency["99th"] / 1e6, 2), "max_ms": round(latency["max"] / 1e6, 2),
        "duration_s": round(wall_s, 3),
    }
    frame = pd.read_csv(io.StringIO(csv_text), header=None, usecols=range(len(VEGETA_CSV)), names=VEGETA_CSV,
                        keep_default_na=False)
    if len(frame) != requests:
        raise LoadError(f"vegeta's report counts {requests} requests, its csv {len(frame)}")
    frame = frame.sort_values("timestamp_ns", kind="stable")
    first_ns = int(frame.timestamp_ns.iloc[0])
    latencies = pd.DataFrame({"start_s": ((frame.timestamp_ns - first_ns) / 1e9).to_numpy(),
                              "latency_ms": (frame.latency_ns / 1e6).to_numpy(),
                              "status": frame.code.astype("Int64").to_numpy()})
    return summary, latencies, first_ns / 1e9


# -- running a tool ---------------------------------------------------------------------
def _run(argv: list[str], limit: float, during: Callable[[], object] | None, at_s: float) -> tuple[str, object]:
    """Run ``argv`` to its end (killed after ``limit`` s); ``during()`` ``at_s`` s after it started."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    during_value = None
    try:
        if during is not None:
            time.sleep(at_s)   # when the action happens, mid-run (not a readiness wait)
            if proc.poll() is not None:
                early = proc.stdout.read() if proc.stdout else ""
                raise LoadError(f"{Path(argv[0]).name} ended before {at_s} s, before the action:\n{early[-1500:]}")
            during_value = during()
        output, _ = proc.communicate(timeout=max(1.0, limit - (time.monotonic() - started)))
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"{Path(argv[0]).name} did not finish within {limit:.0f} s and was killed") from exc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise LoadError(f"{Path(argv[0]).name} failed (exit status {proc.returncode}):\n{output[-1500:]}")
    return output, during_value


def _tool_output(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise LoadError(f"{' '.join(argv[1:3])} failed (exit status {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return proc.stdout


# -- side by side ---------------------------------------------------------------------------
def table(*results: LoadResult | ToolResult) -> pd.DataFrame:
    """One row per run — Locust's (``load.run``) and the tools' — in TABLE_COLUMNS."""
    rows = []
    for result in results:
        if isinstance(result, LoadResult):
            row = result.summary.iloc[0].to_dict()
            row.update(tool="locust", model="closed", load=f"{row['users']} users")
        else:
            row = result.summary.iloc[0].to_dict()
        rows.append({column: row[column] for column in TABLE_COLUMNS})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)
