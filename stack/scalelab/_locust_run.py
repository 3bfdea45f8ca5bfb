"""Child process that runs one bounded Locust load test and prints the result as JSON.

You never call this yourself: ``scalelab.load.run`` starts it with
``python -P .../_locust_run.py``, writes a JSON *spec* to its stdin and reads a
JSON *result* from its stdout.

Why a separate process?  Locust is built on gevent, and importing locust
"monkey-patches" the whole Python process (sockets, threads, time.sleep, ...)
so that thousands of simulated users can share one thread.  That must not
happen inside a Jupyter kernel, so it happens here, in a short-lived child.
The script is started by file path (not ``-m scalelab...``) so that nothing
from the ``scalelab`` package is imported before gevent patches the process.
"""

import locust  # noqa: F401  -- must stay the first import: gevent patches the process here

# isort: split
import itertools
import json
import os
import random
import sys
import time
from collections import Counter
from typing import Any

import gevent
from gevent.event import Event
from locust import FastHttpUser, constant, task
from locust.env import Environment
from locust.exception import StopUser
from locust.stats import calculate_response_time_percentile, diff_response_time_dicts


def make_user_class(spec, shared):
    """Build the simulated user: it loops forever, each time requesting one of the paths."""
    paths, weights = spec["paths"], spec["weights"]
    expect = set(spec["expect_status"])
    budget = spec["requests"]  # None = no request-count bound

    class Visitor(FastHttpUser):
        host = spec["base_url"]
        wait_time = constant(0)  # closed loop: the next request starts when the previous one ends
        network_timeout = spec["timeout"]
        connection_timeout = spec["timeout"]

        @task
        def hit(self):
            if budget is not None and shared["issued"] >= budget:
                raise StopUser()  # the request budget is used up: this user retires
            shared["issued"] += 1
            path = random.choices(paths, weights)[0]
            with self.client.request(
                spec["method"], path, json=spec["json_body"], headers=spec["headers"], catch_response=True
            ) as resp:
                code = resp.status_code or 0  # 0 = no HTTP response at all (refused, timeout, ...)
                shared["status"]["error" if code == 0 else str(code)] += 1
                instance = resp.headers.get("X-Instance") if resp.headers else None
                if instance:
                    shared["instances"][instance] += 1
                if code in expect or 200 <= code < 400:
                    resp.success()
                # otherwise locust's default applies: 4xx/5xx and connection errors are failures

    return Visitor


def snapshot(env, runner):
    """What the aggregated ("Total") stats entry looks like right now."""
    total = env.stats.total  # re-read every time: locust replaces it when the test starts
    return {
        "time": time.time(),
        "start": total.start_time,
        "requests": total.num_requests,
        "timed": total.num_requests - total.num_none_requests,
        "failures": total.num_failures,
        "response_times": dict(total.response_times),
        "users": runner.user_count,
    }


def timeline_rows(samples):
    """Turn cumulative once-a-second snapshots into one row per interval."""
    rows = []
    for prev, cur in itertools.pairwise(samples):
        dt = cur["time"] - prev["time"]
        if dt < 0.1:  # a sliver of time at the very end would only add noise
            continue
        window = diff_response_time_dicts(cur["response_times"], prev["response_times"])
        timed = cur["timed"] - prev["timed"]

        def pct(p, window=window, timed=timed):
            return calculate_response_time_percentile(window, timed, p) if timed else None

        rows.append(
            {
                "t_s": round(cur["time"] - cur["start"], 2),
                "rps": round((cur["requests"] - prev["requests"]) / dt, 2),
                "failures_per_s": round((cur["failures"] - prev["failures"]) / dt, 2),
                "p50_ms": pct(0.5),
                "p95_ms": pct(0.95),
                "users": cur["users"],
            }
        )
    return rows


def entry_summary(entry):
    """Locust's own numbers for one stats entry (a path, or the aggregated total)."""
    timed = entry.num_requests - entry.num_none_requests

    def pct(p):  # like locust's own median: never report more than the slowest request seen
        return min(entry.get_response_time_percentile(p), round(entry.max_response_time)) if timed else None

    return {
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "failure_rate": round(entry.fail_ratio, 4),
        "rps": round(entry.total_rps, 2),
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "max_ms": round(entry.max_response_time, 1) if timed else None,
        "mean_ms": round(entry.avg_response_time, 1) if timed else None,
    }


def run_spec(spec):
    """Run the load described by ``spec`` and return a JSON-serialisable result."""
    shared: dict[str, Any] = {"issued": 0, "done": 0, "status": Counter(), "instances": Counter()}
    env = Environment(user_classes=[make_user_class(spec, shared)])
    runner = env.create_local_runner()

    budget_reached = Event()
    if spec["requests"] is not None:

        def count_request(**_kwargs):
            shared["done"] += 1
            if shared["done"] >= spec["requests"]:
                budget_reached.set()

        env.events.request.add_listener(count_request)

    samples = []

    def sampler():
        start = time.time()
        for second in range(1, 10**6):
            gevent.sleep(max(0.0, start + second - time.time()))
            samples.append(snapshot(env, runner))

    def stop_when_told():
        while not os.path.exists(spec["stop_file"]):
            gevent.sleep(0.05)
        budget_reached.set()

    if spec.get("stop_file"):   # the caller ends the load early by creating this file
        gevent.spawn(stop_when_told)

    users = spec["users"]
    runner.start(users, spawn_rate=users)  # everybody at once
    gevent.sleep(0)  # let locust reset its stats and spawn the users
    samples.append(snapshot(env, runner))
    ticker = gevent.spawn(sampler)
    if spec.get("started_file"):  # the caller waits for this before it acts "mid-load"
        with open(spec["started_file"] + ".tmp", "w") as f:
            f.write(str(time.time()))
        os.replace(spec["started_file"] + ".tmp", spec["started_file"])

    budget_reached.wait(timeout=spec["duration"])  # whichever comes first: the budget or the clock
    ticker.kill()
    samples.append(snapshot(env, runner))
    runner.quit()

    total = env.stats.total
    summary = entry_summary(total)
    summary["duration_s"] = round((total.last_request_timestamp or total.start_time) - total.start_time, 3)
    by_path = [{"path": e.name, "method": e.method, **entry_summary(e)} for e in env.stats.entries.values()]
    errors = {e.to_name(): e.occurrences for e in env.stats.errors.values()}
    for exc in runner.exceptions.values():  # exceptions raised inside the user code itself
        errors[f"exception: {exc['msg']}"] = exc["count"]
    if runner.cpu_warning_emitted:  # one core could not keep up: the *generator* limited the rps
        errors["warning: load generator CPU was above 90%, results may understate the service"] = 1
    return {
        "started_at": total.start_time,
        "ended_at": total.last_request_timestamp or total.start_time,
        "summary": summary,
        "status_counts": dict(shared["status"]),
        "instances": dict(shared["instances"]),
        "response_times": {str(k): v for k, v in sorted(total.response_times.items())},
        "timeline": timeline_rows(samples),
        "by_path": by_path,
        "errors": errors,
    }


def main():
    spec = json.loads(sys.stdin.read())
    real_stdout, sys.stdout = sys.stdout, sys.stderr  # stray prints must not corrupt the JSON
    result = run_spec(spec)
    real_stdout.write(json.dumps(result))
    real_stdout.flush()


if __name__ == "__main__":
    main()
