"""Lab 07, part 1 — observability: metrics, request ids in JSON logs, Prometheus, alert rules.

The exercise: ``alert_rules`` (a YAML file of Prometheus alerting rules, the seed's table:
CPU over half a core, p95 latency over 200 ms, 5xx over 1 %). Its check validates the
file with ``promtool``, loads it into the stack's Prometheus, watches a quiet stack raise
nothing, then injects each fault for real and waits for each alert to reach ``firing``.
"""

import json
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import yaml

from scalelab.errors import ScalelabError
from scalelab.exercise import CheckFailed, Exercise, NotAttempted
from scalelab.promql import Prometheus

STUB_MARK = "YOUR CODE HERE"
ALERTS = ("HighCpu", "HighLatency", "HighErrorRate")
MAX_FOR_S = 15          # a `for:` longer than this cannot fire within the check
SCRAPE_S = 1            # runtimes/{local,compose}/prometheus.py scrape and evaluate every second
# One replica burning CPU in pure Python holds at most one core (the GIL); on a busy machine it
# takes a while to average over half of one in a 10 s window: wait for it, bounded.
CPU_WAIT_S = 90

# The PromQL the notebook plots and stack/deploy/grafana/dashboards/shop.json charts (a test
# runs every panel's expression against a real Prometheus).
EXPRS = {
    "p95 latency (s)": 'histogram_quantile(0.95, sum by (service, le) ('
                       'rate(http_request_duration_seconds_bucket{job="shop", '
                       'route!~"/metrics|/health|/ready"}[10s])))',
    "5xx share": 'sum by (service) (rate(http_requests_total{job="shop", route!~"/metrics|/health|/ready", '
                 'status=~"5.."}[10s]))'
                 ' / sum by (service) (rate(http_requests_total{job="shop", route!~"/metrics|/health|/ready"}[10s]))',
    "CPU (cores)": 'rate(process_cpu_seconds_total{job="shop"}[10s])',
    "requests/s": 'sum by (service) (rate(http_requests_total{job="shop", route!~"/metrics|/health|/ready"}[10s]))',
    "DB pool in use": 'sum by (instance) (db_pool_connections{job="shop", state="in_use"})',
    "queue depth": 'orders_queue_depth{job="shop"}',
    # 3 scrapes: shorter than a burst's drain
    "tasks/s": 'sum by (outcome) (rate(celery_tasks_total{job="shop"}[3s]))',
    "cache hit ratio": 'sum(rate(cache_requests_total{job="shop", result="hit"}[30s]))'
                       ' / sum(rate(cache_requests_total{job="shop", result=~"hit|miss"}[30s]))',
}

# What the last passing check did, for the notebook's plots: phase -> (start, end) epoch seconds,
# and when each alert was first seen firing.
drill: dict = {}


# -- helpers the checks and the notebook share ----------------------------------------------------
def prometheus(stack) -> Prometheus:
    return Prometheus(stack.url("prometheus"))


def metric_lines(stack, member: str, *names: str) -> list[str]:
    """The lines of ``member``'s /metrics whose metric name starts with one of ``names``."""
    text = httpx.get(f"{stack.member_url(member)}/metrics", timeout=10).text
    return [line for line in text.splitlines() if line.startswith(names) and "_created" not in line]


def json_lines(stack, member: str, request_id: str, tail: int = 2000) -> list[dict]:
    """``member``'s JSON log lines that carry ``request_id``."""
    found = []
    for line in stack.logs(member, tail).splitlines():
        if request_id in line and line.lstrip().startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


class Load:
    """``threads`` loops of ``method`` ``url`` until stopped: a bounded background load (one row per
    answer). ``body()``, when given, makes each request's JSON body."""

    def __init__(self, url: str, threads: int = 4, pause_s: float = 0.0, timeout: float = 10.0,
                 method: str = "GET", body=None):
        self.url, self.threads, self.pause_s, self.timeout = url, threads, pause_s, timeout
        self.method, self.body = method, body
        self.rows: list[dict] = []
        self._stop = threading.Event()
        self._pool: ThreadPoolExecutor | None = None

    def _loop(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    status = client.request(self.method, self.url,
                                            json=self.body() if self.body else None).status_code
                except httpx.HTTPError:
                    status = 0   # no answer at all (connection refused, timeout)
                self.rows.append({"t": time.time(), "status": status, "ms": (time.perf_counter() - start) * 1000})
                if self.pause_s:
                    self._stop.wait(self.pause_s)

    def __enter__(self) -> "Load":
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="lab07-load")
        for _ in range(self.threads):
            self._pool.submit(self._loop)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        assert self._pool is not None   # set by __enter__
        self._pool.shutdown(wait=True)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["t", "status", "ms"])


def new_user() -> dict:
    """A sign-up body with a fresh email (a write: it needs the primary)."""
    return {"email": f"load-{uuid.uuid4().hex[:12]}@example.com", "name": "Load Test", "password": uuid.uuid4().hex}


def _firing(prom: Prometheus, names) -> dict[str, str]:
    frame = prom.alerts()
    frame = frame[frame.alert.isin(names) & (frame.state == "firing")]
    return dict(zip(frame.alert, frame.instance, strict=True))


def _wait_firing(prom: Prometheus, names: tuple[str, ...], timeout: float) -> dict[str, float]:
    """Wait until every alert in ``names`` fires (bounded): name -> seconds it took."""
    start = time.monotonic()
    seen: dict[str, float] = {}
    while time.monotonic() - start < timeout and len(seen) < len(names):
        for name in _firing(prom, names):
            seen.setdefault(name, round(time.monotonic() - start, 1))
        time.sleep(0.5)   # polling Prometheus' rule evaluation (every second)
    return seen


# -- the exercise: alert rules ----------------------------------------------------------------------
def _rules(exercise, stack) -> tuple[Path, dict]:
    path = stack.workspace / "alert_rules.yaml"
    if not path.exists():
        raise NotAttempted(f"run the exercise cell: it writes {path.name} into {path.parent}")
    text = path.read_text()
    if STUB_MARK in text:
        raise NotAttempted(f"{path.name} is still the stub: write the three alerting rules")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CheckFailed(f"{path.name} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        raise CheckFailed(f"{path.name} must hold a mapping with a `groups:` list (Prometheus' rule file format)")
    return path, doc


def _check_alert_rules(stack, exercise) -> str:
    path, doc = _rules(exercise, stack)
    if (problem := stack.check_alert_rules(path)) is not None:
        raise CheckFailed(f"promtool rejects {path.name}: {problem}")
    rules = {r.get("alert"): r for g in doc["groups"] for r in (g.get("rules") or []) if "alert" in r}
    missing = [name for name in ALERTS if name not in rules]
    if missing:
        raise CheckFailed(f"no alert named {', '.join(missing)} in {path.name} "
                          f"(found: {', '.join(map(str, rules)) or 'none'})")
    for name in ALERTS:
        hold = str(rules[name].get("for", "0s"))
        seconds = pd.Timedelta(hold).total_seconds() if hold[-1:] in "smh" else None
        if seconds is None or seconds > MAX_FOR_S:
            raise CheckFailed(f"{name} has `for: {hold}`: keep it at most {MAX_FOR_S}s in this lab "
                              "(Prometheus scrapes every second here; production waits minutes)")
    # An average also fires under this check's all-slow load, yet looks fine while 5 % of requests wait seconds.
    if not re.search(r"histogram_quantile\s*\(\s*0?\.950*\s*,", str(rules["HighLatency"].get("expr", ""))):
        raise CheckFailed("HighLatency's expr takes no 95th percentile: an average (or a max of one scrape) looks "
                          "fine while 5 % of requests wait seconds — histogram_quantile(0.95, ...) over the "
                          "request-duration histogram's buckets")

    for name in ALERTS:
        if bare := bare_counters(str(rules[name].get("expr", ""))):
            raise CheckFailed(f"{name} compares the counter {bare[0]} itself: a counter only grows from the "
                              "process' start, so the alert fires once enough has ever been counted (on a quiet "
                              f"stack too) and never resolves — compare its rate: rate({bare[0]}[10s])")

    prom = prometheus(stack)
    try:
        stack.install_alert_rules(path)
    except ScalelabError as exc:   # no promtool here: Prometheus' own reload reports the problem
        raise CheckFailed(str(exc)) from None

    def evaluated(p: Prometheus) -> pd.DataFrame | None:
        mine = p.rules().loc[lambda f: f.name.isin(ALERTS)]
        done = len(mine) == len(ALERTS) and mine.health.isin(["ok", "err"]).all()
        return mine if done else None

    loaded = prom.wait_for(evaluated, timeout=20, what="Prometheus to load and evaluate the three rules")
    if (bad := loaded[loaded.health == "err"]).shape[0]:
        raise CheckFailed(f"Prometheus cannot evaluate {bad.name.iloc[0]}: {bad.last_error.iloc[0]}")

    # 1. A quiet stack: nothing may fire (a rule that always fires is no alert).
    time.sleep(6 * SCRAPE_S)   # a few evaluations with fresh scrapes; Prometheus holds the state
    quiet = prom.alerts()
    noisy = quiet[quiet.alert.isin(ALERTS)]
    if not noisy.empty:
        row = noisy.iloc[0]
        raise CheckFailed(f"on a quiet stack {row.alert} is already {row.state} ({row.instance or 'no instance'}, "
                          f"value {row.value}): its threshold must stay quiet when nothing is wrong"
                          f"{_quiet_traffic(prom)}")
    drill.clear()
    drill["phases"] = {}
    users_1 = stack.member_url(stack.members("users")[0])

    # 2. CPU and latency: every request burns 200 ms of CPU (lab 06's /work endpoint).
    start = time.time()
    with Load(f"{users_1}/work?ms=200", threads=3):
        took = _wait_firing(prom, ("HighCpu", "HighLatency"), timeout=CPU_WAIT_S)
    drill["phases"]["CPU load (/work?ms=200)"] = (start, time.time())
    for name in ("HighCpu", "HighLatency"):
        if name not in took:
            cpu = prom.query(EXPRS["CPU (cores)"]).pipe(
                lambda f: dict(zip(f.get("instance", []), f.value.round(2), strict=False)))
            p95 = prom.query(EXPRS["p95 latency (s)"]).pipe(
                lambda f: dict(zip(f.get("service", []), f.value.round(3), strict=False)))
            raise CheckFailed(f"{name} did not fire within {CPU_WAIT_S} s of a CPU-bound load (CPU cores per member "
                              f"now {cpu}, p95 per service {p95} s): check its expression and threshold")

    # 3. Errors: the primary killed; sign-ups (writes: the standby cannot take them) answer 503.
    stack.kill("postgres")
    start = time.time()
    try:
        with Load(f"{stack.url('users')}/users", threads=2, pause_s=0.05, method="POST", body=new_user) as load:
            took.update(_wait_firing(prom, ("HighErrorRate",), timeout=45))
    finally:
        stack.start("postgres")
    drill["phases"]["Postgres killed"] = (start, time.time())
    codes = load.frame().status.value_counts().to_dict()
    if "HighErrorRate" not in took:
        share = prom.query(EXPRS["5xx share"]).pipe(
            lambda f: dict(zip(f.get("service", []), f.value.round(3), strict=False)))
        raise CheckFailed(f"HighErrorRate did not fire within 45 s with Postgres down (answers {codes}; "
                          f"5xx share per service now {share}): check its expression")
    drill["took_s"] = took
    return (f"promtool accepts {path.name}; quiet stack: no alert; CPU-bound load → HighCpu firing after "
            f"{took['HighCpu']} s, HighLatency after {took['HighLatency']} s; Postgres killed ({codes.get(503, 0)} "
            f"× 503 of {sum(codes.values())}) → HighErrorRate after {took['HighErrorRate']} s")


_COUNTER = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*_(?:total|bucket|count|sum)\b(?!\s*\()")
_PER_SECOND = re.compile(r"\b(?:rate|irate|increase|resets)\s*\(")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')


def bare_counters(expr: str) -> list[str]:
    """The counters (Prometheus' naming: ``_total``, ``_bucket``, ``_count``, ``_sum``) that ``expr``
    uses outside ``rate``/``irate``/``increase``: values that only grow, compared as they are."""
    text = _STRING.sub('""', expr)
    while found := _PER_SECOND.search(text):
        depth, end = 0, found.end() - 1
        for end in range(found.end() - 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        text = text[:found.start()] + text[end + 1:]
    return _COUNTER.findall(text)


def _quiet_traffic(prom: Prometheus) -> str:
    """What a quiet stack was answering anyway (health probes, scrapes): part of a quiet-stack message."""
    try:
        seen = prom.query('sum by (service, route) (rate(http_requests_total{job="shop"}[10s])) > 0')
    except Exception:   # a hint, never a second failure
        return ""
    if seen.empty:
        return ""
    routes = ", ".join(f"{r.route} ({r.service})" for r in seen.itertuples())
    return (f" — requests it answered meanwhile: {routes}; probes and scrapes are not customers' requests: "
            "leave them out of the rule (route!~...)")


alert_rules = Exercise(
    name="alert_rules",
    title="Exercise 1 · alert rules: CPU, p95 latency, error rate",
    checker=_check_alert_rules,
    hints=[
        "One group, three rules: `- alert: HighCpu` / `expr:` / `for: 3s`. CPU: "
        "`rate(process_cpu_seconds_total{job=\"shop\"}[10s]) > 0.5` (seconds of CPU per second = cores).",
        "p95: `histogram_quantile(0.95, sum by (service, le) (rate(http_request_duration_seconds_bucket"
        "{job=\"shop\", route!~\"/metrics|/health|/ready\"}[10s]))) > 0.2` — keep `le` in the `by`, "
        "or there is no histogram left.",
        "Error rate: 5xx per second over all per second, per service: "
        "`sum by (service) (rate(http_requests_total{...status=~\"5..\"}[10s])) / sum by (service) "
        "(rate(http_requests_total{...}[10s])) > 0.01`.",
    ],
    reference="stack/shop/reference/alert_rules.yaml",
    handle="lab07.alert_rules",
)


# Part 2 of the lab (timeouts, retries, the circuit breaker, the bulkhead, the chaos drill)
# lives in its own module (the notebook imports it as `resilience`); its exercise is lab07's too.
