"""``make bench``: the stack's performance against its ceilings, side by side, in one run.

Request-path ladder at one concurrency for a bounded time (wrk; Locust if wrk is missing):
  1. bare uvicorn "hello" (the framework's ceiling here)   2. GET /users/{id} on one process
  2f/2e. the same on one FastAPI and on one Express replica of lab 02 (the contract in two languages)
  3. the same through nginx over 2 replicas                 4. the same with the Redis cache warm
  5. the stores' ceilings: redis-benchmark GET and pgbench -S on the same servers
Rungs 1-4 run twice: at concurrency 64 (throughput: on a saturated 2-core machine a closed
loop of 64 clients waits in queues, so p50 there is about 64/rps and says little about one
request) and at concurrency 1 (latency: nothing queues, so p50 is the service time of one
request: what "the cache makes a read N times faster" means). The hit-vs-DB latency target
compares rungs 3 and 4 at concurrency 1 (same nginx, same replicas, only the store differs).
Lab economics: cold/warm ``up()``, ``down()``, memory (PSS) of each lab's stack (every lab
that runs locally), and the wall time of the solution notebooks of labs 01-03 with FAST on
(``--notebook-labs all`` times every lab's; later labs take minutes each, past bench's 10).
Durability (bench/durability.py): accepted orders/s of lab 05's POST /orders on each broker
setting (Redis in memory, AOF everysec, AOF always, RabbitMQ without and with confirms), the
median of repeated bursts. Results: bench/results/<date>.{json,md,png};
the README's table is replaced with the latest. Nothing here is asserted: it reports ratios
and says which of issue 7's targets the run met.
"""

import argparse
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import httpx
import pandas as pd
import psutil

from bench.durability import durability
from scalelab import Stack, db, load
from scalelab.errors import RuntimeUnavailable
from scalelab.plans import PLANS
from scalelab.ports import free_port
from scalelab.process import ProcessRecord
from scalelab.references import solve

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
CONCURRENCY = 64          # the throughput rungs
LATENCY_CONCURRENCY = 1   # the latency rungs: one request at a time, p50 = service time


# -- load generators ----------------------------------------------------------------

def md_table(frame, floatfmt: str) -> str:
    """A results table in Markdown: a cell with nothing measured is "—", not "nan"."""
    return frame.astype(object).where(frame.notna(), None).to_markdown(index=False, floatfmt=floatfmt,
                                                                        missingval="—")

def _pinning() -> list[str]:
    """Pin the load generator to the last core when there are cores to spare (>= 4)."""
    cores = os.cpu_count() or 1
    return ["taskset", "-c", str(cores - 1)] if cores >= 4 and shutil.which("taskset") else []


def cpu_seconds(pids) -> float:
    """CPU time (user + system) used so far by these processes and their children."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(int(pid))
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def http_load(url: str, paths: list[str], seconds: float, label: str, server_pids=(),
              concurrency: int | None = None) -> dict:
    """One rung; with ``server_pids``, also the servers' CPU ms per request — a figure that,
    unlike rps, barely moves when something else shares the machine."""
    server_pids = [int(pid) for pid in server_pids if pid == pid and pid is not None]  # drop stopped (NaN)
    cpu_before = cpu_seconds(server_pids)
    row = _http_load(url, paths, seconds, label, concurrency or CONCURRENCY)
    if server_pids:
        row["server CPU ms/req"] = 1000 * (cpu_seconds(server_pids) - cpu_before) / max(row["requests"], 1)
    return row


def _http_load(url: str, paths: list[str], seconds: float, label: str, concurrency: int) -> dict:
    if shutil.which("wrk"):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(paths))
        out = subprocess.run(
            [*_pinning(), "wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{int(seconds)}s", "--timeout", "5s",
             "-s", str(HERE / "wrk_report.lua"), url],
            capture_output=True, text=True, env={**os.environ, "WRK_PATHS": f.name}, timeout=seconds + 30)
        os.unlink(f.name)
        report = json.loads(out.stdout.strip().splitlines()[-1])
        report["rps"] = report["requests"] / report["duration_s"]
        return {"rung": label, "loadgen": "wrk", **report}
    result = load.run(url, paths, users=concurrency, duration=seconds, label=label)
    row = result.summary.iloc[0].to_dict()
    return {"rung": label, "loadgen": "locust", **{k: row[k] for k in
            ("requests", "duration_s", "failures", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms")}}


@contextmanager
def hello_server(workdir: Path):
    port = free_port()
    rec = ProcessRecord(name="hello", log=str(workdir / "hello.log"), port=port, argv=[
        sys.executable, "-m", "uvicorn", "bench.hello_app:app", "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning"], env={"PYTHONPATH": str(REPO)})
    rec.start()
    try:
        rec.wait_ready(lambda: httpx.get(f"http://127.0.0.1:{port}/hello").status_code == 200)
        yield rec
    finally:
        rec.stop()


def user_paths(stack, n: int = 1000) -> list[str]:
    dsn = stack.database_url()
    db.fetch(dsn, "INSERT INTO users (email, name) SELECT 'bench-' || g || '@example.com', 'Bench ' || g "
                  "FROM generate_series(1, $1) g ON CONFLICT ((lower(email))) DO NOTHING", n)
    return [f"/users/{r['id']}" for r in db.fetch(dsn, "SELECT id FROM users ORDER BY id LIMIT $1", n)]


def pgbench_select(stack, seconds: float) -> dict:
    pg_bin = Path(stack.runtime.pg.bin_dir)
    admin = stack.database_url("admin")
    if not db.fetchval(admin, "SELECT 1 FROM pg_database WHERE datname = 'pgbench'"):
        db.fetch(admin, "CREATE DATABASE pgbench")
    bench_dsn = admin.rsplit("/", 1)[0] + "/pgbench"
    subprocess.run([str(pg_bin / "pgbench"), "-i", "-q", "-s", "1", bench_dsn], check=True, capture_output=True)
    out = subprocess.run([*_pinning(), str(pg_bin / "pgbench"), "-S", "-n", "-c", str(CONCURRENCY), "-j", "2",
                          "-T", str(int(seconds)), bench_dsn], capture_output=True, text=True, check=True)
    tps = float(re.search(r"tps = ([\d.]+)", out.stdout).group(1))
    mean = float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1))
    return {"rung": "pgbench -S (Postgres ceiling)", "loadgen": "pgbench", "rps": tps, "mean_ms": mean,
            "requests": int(re.search(r"number of transactions actually processed: (\d+)", out.stdout).group(1)),
            "failures": 0, "duration_s": seconds}


def redis_get(stack, seconds: float) -> dict | None:
    url = getattr(stack, "redis_url", None)
    if url is None or not shutil.which("redis-benchmark"):
        return None
    parsed = httpx.URL(url())
    argv = [*_pinning(), "redis-benchmark", "-h", parsed.host, "-p", str(parsed.port), "-t", "get",
            "-c", str(CONCURRENCY), "-n", str(int(40_000 * seconds)), "--csv"]
    if parsed.password:
        argv += ["-a", parsed.password]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds * 10 + 30)
    if out.returncode != 0:
        print(f"bench: redis-benchmark failed, rung skipped: {(out.stderr or out.stdout).strip()[-300:]}")
        return None
    row = pd.read_csv(io.StringIO(out.stdout)).iloc[0].to_dict()
    return {"rung": "redis-benchmark GET (Redis ceiling)", "loadgen": "redis-benchmark", "rps": row["rps"],
            "p50_ms": row["p50_latency_ms"], "p95_ms": row["p95_latency_ms"], "p99_ms": row["p99_latency_ms"],
            "max_ms": row["max_latency_ms"], "mean_ms": row["avg_latency_ms"], "failures": 0}


# -- the ladder -----------------------------------------------------------------------
def rung_pair(url: str, paths: list[str], seconds: float, label: str, server_pids) -> list[dict]:
    """The same rung at the throughput concurrency, then at the latency concurrency (half as long)."""
    rows = []
    for concurrency, secs in ((CONCURRENCY, seconds), (LATENCY_CONCURRENCY, max(3.0, seconds / 2))):
        row = http_load(url, paths, secs, label, server_pids=server_pids, concurrency=concurrency)
        rows.append({**row, "concurrency": concurrency})
    return rows


def cache_hits(stack) -> dict[str, float]:
    """cache_requests_total{cache="user"} by result, summed over the user replicas' /metrics."""
    totals: dict[str, float] = {}
    status = stack.status()
    for rec in status[status.member.str.startswith("users-")].itertuples():
        text = httpx.get(f"http://127.0.0.1:{int(rec.port)}/metrics", timeout=5).text
        for result, value in re.findall(r'^cache_requests_total\{cache="user",result="(\w+)"\} (\S+)$', text, re.M):
            totals[result] = totals.get(result, 0.0) + float(value)
    return totals


def rung_hello(workdir: Path, seconds: float) -> list[dict]:
    """Rung 1: a bare uvicorn "hello" — the framework's ceiling on this machine."""
    with hello_server(workdir) as hello:
        return rung_pair(f"http://127.0.0.1:{hello.port}", ["/hello"], seconds, "1 bare uvicorn hello",
                         server_pids=[hello.pid])


def rung_one_process(workdir: Path, seconds: float) -> list[dict]:
    """Rung 2: GET /users/{id} on one process (lab 01), then pgbench -S on its Postgres (the ceiling)."""
    with solved_stack(1, workdir / "lab1") as stack:
        paths = user_paths(stack)
        rows = rung_pair(stack.url("users"), paths, seconds, "2 GET /users/{id}, one process",
                         server_pids=stack.status().pid)
        return rows + [pgbench_select(stack, seconds)]


def member_pids(stack, member: str) -> list:
    status = stack.status()
    return list(status.loc[status.member == member, "pid"])


def rung_nginx(workdir: Path, seconds: float) -> list[dict]:
    """Rungs 2f/2e: GET /users/{id} on one FastAPI and on one Express replica of lab 02, each asked
    directly, side by side on the same database (the same contract in two languages); then rung 3:
    the same through nginx over 2 FastAPI replicas."""
    if 2 not in PLANS:
        return []
    with solved_stack(2, workdir / "lab2") as stack:
        paths = user_paths(stack)
        rows = []
        if express_runs(stack):
            for member, label in (("users-1", "2f one FastAPI replica (lab 02)"),
                                  ("express-1", "2e one Express replica (lab 02)")):
                rows += rung_pair(stack.member_url(member), paths, seconds, label,
                                  server_pids=member_pids(stack, member))
            stack.scale("express", 0)
        stack.scale("users", 2)
        return rows + rung_pair(stack.url("users"), paths, seconds, "3 via nginx, 2 replicas",
                                server_pids=stack.status().pid)


def express_runs(stack) -> bool:
    """The Express replica up beside the FastAPI ones; False (said) where Node is missing."""
    try:
        stack.scale("express", 1)
        return True
    except RuntimeUnavailable as exc:
        print(f"bench: no Express rung: {exc}")
        return False


def rung_cache(workdir: Path, seconds: float) -> list[dict]:
    """Rung 4: the same with the Redis cache warm (lab 03), with how warm the replicas counted it;
    then redis-benchmark GET on its Redis (the ceiling)."""
    if 3 not in PLANS:
        return []
    with solved_stack(3, workdir / "lab3") as stack:
        stack.scale("users", 2)
        paths = user_paths(stack)
        http_load(stack.url("users"), paths, min(seconds, 3), "warm-up")  # fills the cache
        before = cache_hits(stack)
        rows = rung_pair(stack.url("users"), paths, seconds, "4 via nginx, cache warm",
                         server_pids=stack.status().pid)
        after = cache_hits(stack)
        counted = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        for row in rows:   # how warm "warm" was, as the replicas counted it (both rungs together)
            row["cache hit %"] = 100 * counted.get("hit", 0) / max(sum(counted.values()), 1)
        if (redis := redis_get(stack, seconds)) is not None:
            rows.append(redis)
        return rows


RUNGS = (rung_hello, rung_one_process, rung_nginx, rung_cache)


def ladder(workdir: Path, seconds: float) -> list[dict]:
    return [row for rung in RUNGS for row in rung(workdir, seconds)]


@contextmanager
def solved_stack(lab: int, state_dir: Path):
    stack = Stack(lab=lab, state_dir=state_dir)
    solve(stack)
    stack.up()
    try:
        yield stack
    finally:
        stack.down(purge=True)


def ratios(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    if "concurrency" not in table:
        table["concurrency"] = None
    table["concurrency"] = table["concurrency"].fillna(CONCURRENCY).astype(int)   # the stores' tools: 64
    hello = {row.concurrency: row.rps for row in table[table.rung.str.startswith("1 ")].itertuples()}
    table["x hello"] = [row.rps / hello[row.concurrency] if row.concurrency in hello else None
                        for row in table.itertuples()]
    stores = {"pg": table.loc[table.rung.str.startswith("pgbench"), "rps"],
              "redis": table.loc[table.rung.str.startswith("redis"), "rps"]}
    ceiling = {"2 ": "pg", "3 ": "pg", "4 ": "redis"}
    table["x store ceiling"] = [
        row.rps / stores[ceiling[row.rung[:2]]].iloc[0]
        if row.rung[:2] in ceiling and row.concurrency == CONCURRENCY and len(stores[ceiling[row.rung[:2]]]) else None
        for row in table.itertuples()]
    return table


def _value(table: pd.DataFrame, rung: str, concurrency: int, column: str) -> float | None:
    found = table[table.rung.str.startswith(rung) & (table.concurrency == concurrency)]
    return float(found[column].iloc[0]) if len(found) and column in found else None


def targets(table: pd.DataFrame, econ: pd.DataFrame, wall_s: float | None) -> pd.DataFrame:
    """Issue 7's targets, each as the ratio this run measured and whether it met it."""
    rows = []

    def add(target, measured, goal, met, how):
        rows.append({"target": target, "measured": measured, "goal": goal,
                     "met": None if met is None else ("yes" if met else "no"), "how it is measured": how})

    hit, hello = _value(table, "4 ", CONCURRENCY, "rps"), _value(table, "1 ", CONCURRENCY, "rps")
    share = hit / hello if hit and hello else None
    add("(a) cached GET via nginx / bare uvicorn rps", share, 0.5, None if share is None else share >= 0.5,
        f"rung 4 rps / rung 1 rps, both at concurrency {CONCURRENCY}")
    for concurrency, how in ((LATENCY_CONCURRENCY, "service time: nothing queues"),
                             (CONCURRENCY, f"queueing: p50 ~ {CONCURRENCY}/rps, i.e. a throughput ratio")):
        db_p50, hit_p50 = _value(table, "3 ", concurrency, "p50_ms"), _value(table, "4 ", concurrency, "p50_ms")
        speedup = db_p50 / hit_p50 if db_p50 and hit_p50 else None
        primary = concurrency == LATENCY_CONCURRENCY
        add(f"(b) DB-path p50 / cache-hit p50, concurrency {concurrency}", speedup, 3.0 if primary else None,
            (speedup >= 3.0 if speedup is not None else None) if primary else None,
            f"rung 3 p50 / rung 4 p50 at concurrency {concurrency} ({how})"
            + ("" if primary else "; shown, not the target"))
    warm = econ.loc[econ.lab.isin([1, 2, 3]), "warm up s"] if len(econ) else pd.Series(dtype=float)
    add("(c) warm up() s, labs 01-03 (worst)", float(warm.max()) if len(warm) else None, 5.0,
        bool(warm.max() <= 5.0) if len(warm) else None, "lab economics table, max over labs 1-3")
    add("(d) make bench wall time, minutes", None if wall_s is None else wall_s / 60, 10.0,
        None if wall_s is None else wall_s < 600, "this run of bench.run, start to end (tools already installed)")
    return pd.DataFrame(rows)


# -- lab economics ------------------------------------------------------------------------
def stack_memory_mib(stack) -> float:
    total = 0
    for pid in stack.status().pid.dropna():
        try:
            root = psutil.Process(int(pid))
            for proc in [root, *root.children(recursive=True)]:
                total += proc.memory_full_info().pss
        except psutil.Error:
            continue
    return total / 2**20


NOTEBOOK_LABS = (1, 2, 3)   # FAST notebooks timed by default (later labs' take minutes each)


def economics(workdir: Path, notebook_labs=NOTEBOOK_LABS) -> list[dict]:
    rows = []
    for lab in sorted(lab for lab, plan in PLANS.items() if "local" in plan.runtimes):
        stack = Stack(lab=lab, state_dir=workdir / f"econ{lab}")
        solve(stack)
        started = time.perf_counter()
        stack.up()
        cold = time.perf_counter() - started
        memory = stack_memory_mib(stack)
        started = time.perf_counter()
        stack.down()
        down = time.perf_counter() - started
        started = time.perf_counter()
        stack.up()
        warm = time.perf_counter() - started
        stack.down(purge=True)
        row = {"lab": lab, "cold up s": cold, "warm up s": warm, "down s": down, "memory MiB (PSS)": memory}
        if lab in notebook_labs:
            row["notebook s (FAST)"] = notebook_seconds(lab, workdir / f"nb{lab}")
        rows.append(row)
    return rows


def notebook_seconds(lab: int, state_dir: Path) -> float | None:
    import papermill as pm
    found = sorted((REPO / "solutions").glob(f"{lab:02d}-*.ipynb"))
    if not found:
        return None
    state_dir.mkdir(parents=True, exist_ok=True)
    os.environ["SCALELAB_HOME"] = str(state_dir)
    started = time.perf_counter()
    try:
        pm.execute_notebook(str(found[0]), str(state_dir / "out.ipynb"), parameters={"FAST": True},
                            kernel_name="python3", cwd=str(found[0].parent), progress_bar=False,
                            execution_timeout=600)
    finally:
        Stack(lab=lab, state_dir=state_dir).down(purge=True)
        os.environ.pop("SCALELAB_HOME")
    return time.perf_counter() - started


# -- reporting ----------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def markdown(table: pd.DataFrame, econ: pd.DataFrame, goals: pd.DataFrame, meta: dict,
             durable: pd.DataFrame | None = None) -> str:
    cols = ["rung", "concurrency", "loadgen", "rps", "p50_ms", "p95_ms", "p99_ms", "failures", "server CPU ms/req",
            "cache hit %", "x hello", "x store ceiling"]
    return "\n".join([
        f"Measured {meta['date']} on {meta['machine']}; each rung at concurrency {CONCURRENCY} for {meta['seconds']} s "
        f"(throughput; p50 there is mostly queueing, ~{CONCURRENCY}/rps) and at concurrency {LATENCY_CONCURRENCY} "
        f"for half that (latency; p50 = service time), load generator "
        f"{'pinned to the last core' if meta['pinned'] else 'not pinned (fewer than 4 cores: it shares them with the servers)'}. "
        "\"server CPU ms/req\": CPU time of every process of the stack under test (nginx, replicas, stores) per request.",
        "", md_table(table[[c for c in cols if c in table]], ".2f"),
        "", md_table(econ, ".2f"),
        *(["", "What durability costs: lab 05's POST /orders, 4 clients, no worker running, each setting's median "
           "burst (the losses when the broker is SIGKILLed are the notebook's, step 11):", "",
           md_table(durable, ".1f")] if durable is not None and len(durable) else []),
        "", md_table(goals, ".2f"), ""])


def plot(table: pd.DataFrame, path: Path, durable: pd.DataFrame | None = None) -> None:
    import matplotlib.pyplot as plt
    rungs = table[table.loadgen.isin(["wrk", "locust"])]
    fast, slow = rungs[rungs.concurrency == CONCURRENCY], rungs[rungs.concurrency == LATENCY_CONCURRENCY]
    panels = [(fast.rung, fast.rps, "rps", f"throughput: requests/s at concurrency {CONCURRENCY}"),
              (slow.rung, slow.p50_ms, "p50_ms", f"latency: p50 ms at concurrency {LATENCY_CONCURRENCY}")]
    if durable is not None and len(durable):
        panels.append((durable.setting, durable["orders/s"], "rps", "durability: accepted orders/s (lab 05)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5))
    for ax, (names, values, y, title) in zip(axes, panels):
        ax.bar(names.str.replace(", ", "\n"), values, color="tab:blue")
        ax.bar_label(ax.containers[0], fmt="%.0f" if y == "rps" else "%.3f", fontsize="small")
        ax.set(ylabel=y, title=title)
        ax.tick_params(axis="x", labelsize="small")
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")


def update_readme(md: str) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    block = f"<!-- bench:start -->\n{md}\n<!-- bench:end -->"
    if "<!-- bench:start -->" in text:
        text = re.sub(r"<!-- bench:start -->.*?<!-- bench:end -->", lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Benchmark (latest `make bench`)\n\n" + block + "\n"
    readme.write_text(text)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 10)))
    parser.add_argument("--no-notebooks", action="store_true", help="skip timing the solution notebooks")
    parser.add_argument("--notebook-labs", default=",".join(map(str, NOTEBOOK_LABS)),
                        help="labs whose FAST solution notebook is timed (default: %(default)s; 'all' for every lab)")
    parser.add_argument("--no-economics", action="store_true", help="the request ladder only (no up/down, notebooks)")
    parser.add_argument("--no-durability", action="store_true", help="skip the broker settings' orders/s")
    return parser.parse_args()


def measure(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The ladder, the lab economics and the durability table, in a scratch state dir."""
    with tempfile.TemporaryDirectory(prefix="scalelab-bench-") as tmp:
        workdir = Path(tmp)
        table = ratios(ladder(workdir, args.seconds))
        notebook_labs = () if args.no_notebooks else (
            tuple(PLANS) if args.notebook_labs == "all" else tuple(int(n) for n in args.notebook_labs.split(",") if n))
        econ = pd.DataFrame([] if args.no_economics else economics(workdir, notebook_labs))
        durable = pd.DataFrame([] if args.no_durability else durability(workdir))
    return table, econ, durable


def report(table: pd.DataFrame, econ: pd.DataFrame, durable: pd.DataFrame, meta: dict, wall: float) -> None:
    """bench/results/<date>.{json,md,png}; the README's table too when the run was complete."""
    goals = targets(table, econ, wall if meta["complete"] else None)
    stem = RESULTS / meta["date"]
    stem.with_suffix(".json").write_text(json.dumps(
        {**meta, "wall_s": wall, "ladder": table.to_dict("records"), "economics": econ.to_dict("records"),
         "durability": durable.to_dict("records"), "targets": goals.to_dict("records")}, indent=1, default=str))
    md = markdown(table, econ, goals, meta, durable)
    stem.with_suffix(".md").write_text(md)
    plot(table, stem.with_suffix(".png"), durable)
    if meta["complete"]:
        update_readme(md)
    print(md)
    print(f"written: {stem}.json, .md, .png" + ("; README table updated" if meta["complete"] else
                                                  " (partial run: README left as it was)"))


def main() -> int:
    started = time.perf_counter()
    args = arguments()
    RESULTS.mkdir(parents=True, exist_ok=True)
    table, econ, durable = measure(args)
    meta = {"date": date.today().isoformat(), "machine": machine(), "seconds": args.seconds,
            "concurrency": CONCURRENCY, "latency_concurrency": LATENCY_CONCURRENCY, "pinned": bool(_pinning()),
            "complete": not (args.no_economics or args.no_notebooks or args.no_durability)}
    report(table, econ, durable, meta, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
