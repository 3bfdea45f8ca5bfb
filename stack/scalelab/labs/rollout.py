"""Lab 06, deploys: blue-green and canary releases of the user service, under load.

Two colours of the user service run side by side: blue (``users-1``, ...) and green
(``green-1``, ...), the same code with the release in the workspace's ``green.json``
(``release``: a planted error rate, for a bad release). nginx splits the requests between them
(``Stack.route``: weights in its upstream, reloaded gracefully).

* ``switch(stack, url, timeline)``: blue-green — the routes of ``timeline`` one after another under
  a steady load; one row per request, the colour that answered.
* ``rollout(stack, url, gate)``: a canary — green's share raised step by step (``STEPS``); while a
  step runs, the learner's ``gate(stable, canary)`` judges green's requests against blue's, once a
  second: ``"promote"`` (next step), ``"hold"`` (judge again), ``"rollback"`` (all back to blue).
* ``canary_gate``: that gate, the exercise; its check runs a good and a bad release through it.
"""

import json
import time
from dataclasses import dataclass

import pandas as pd

from scalelab.closedloop import Background
from scalelab.errors import ScalelabError
from scalelab.exercise import CheckFailed, Exercise

RELEASE_FILE = "green.json"       # the shop reads it (shop/release.py); green's members run it
BLUE, GREEN = "users", "green"    # the services of the two colours
STEPS = (10, 50, 100)             # green's share of the requests, step by step
MIN_REQUESTS = 50                 # what the notebook asks of the gate: fewer canary requests → hold
MARGIN = 0.02                     # ... and more than this many points above blue's error rate → rollback
JUDGE_EVERY_S = 1.0
MAX_HOLD_S = 20.0                 # a step the gate holds longer is rolled back
TAIL_S = 1.5                      # the load goes on this long after the last route
DECISIONS = ("promote", "hold", "rollback")
BAD_RELEASE_ERROR_RATE = 0.2      # the check's bad release: one answer in five a 500
SWITCH_FAILURES = (0, 502, 503, 504)   # no answer, or nginx found no replica: what a switch must never cause

# What the last check's two rollouts measured (the notebook shows and plots them).
last_rollouts: dict = {}


# -- the release green runs -------------------------------------------------------------------
def release(stack, planted_error_rate: float = 0.0) -> float:
    """Write green's release (``green.json``) and deploy it: a rolling restart of green's members
    (none yet: the file is read when they start). Returns the seconds the deploy took."""
    (stack.workspace / RELEASE_FILE).write_text(json.dumps({"planted_error_rate": planted_error_rate}) + "\n")
    started = time.monotonic()
    if stack.members(GREEN):
        stack.restart(GREEN)
    return time.monotonic() - started


def split(green_share: int) -> dict[str, int]:
    """The route for green's share: ``{"users": 90, "green": 10}``."""
    return {BLUE: 100 - green_share, GREEN: green_share}


def colour(instance) -> str:
    """Which colour answered, from its X-Instance (a failed request has none)."""
    name = str(instance or "")
    return "green" if name.startswith(GREEN) else "blue" if name.startswith(BLUE) else "none"


def coloured(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(colour=frame.instance.map(colour))


# -- blue-green ---------------------------------------------------------------------------------
def switch(stack, url: str, timeline: list[tuple[float, dict[str, int]]], concurrency: int = 8,
           tail_s: float = TAIL_S) -> dict:
    """A steady load on ``url``; for each ``(wait_s, route)`` of ``timeline`` in turn, wait
    ``wait_s`` seconds (after the load flows, or after the last route was done), then route.
    Returns ``frame`` (t_s, ms, status, instance, colour),
    ``events`` (t_s, action, took_s: one per route) and ``failed`` (no answer, or a status outside 2xx/3xx)."""
    events = []
    with Background(url, concurrency) as load:
        for wait_s, route in timeline:
            time.sleep(wait_s)
            began = load.now_s()
            stack.route(route)
            events.append({"t_s": began, "action": f"route: {_describe(route)}", "took_s": load.now_s() - began})
        time.sleep(tail_s)
    frame = coloured(load.frame())
    return {"frame": frame, "events": pd.DataFrame(events), "requests": len(frame),
            "failed": int((~frame.status.between(200, 399)).sum())}


# -- blue-green as Kubernetes does it: a Service's selector (kind) ------------------------------
LIVE = "live"                     # the Service (components/green): NodePort 30081, one colour's pods
SELECTOR_KEY = "app.kubernetes.io/name"
SETTLE_BOUND_S = 10.0             # kube-proxy rewrites each node's rules within this after a patch
READ_PATH = "/users?limit=5"      # the load's request: a real read, a replica → Postgres


def selector_switch(stack, timeline: list[tuple[float, str]], concurrency: int = 8, tail_s: float = 3.0) -> dict:
    """Blue-green without a proxy: a steady load on the Service ``live`` (through its NodePort, so
    through kube-proxy), and for each ``(wait_s, service)`` of ``timeline`` in turn its selector
    moved to that colour's pods with ``kubectl patch``. Returns what ``switch`` returns, each event
    with ``settled_s``: from the patch to the last request *sent* that the old colour still answered
    (the endpoints controller and kube-proxy at work; NaN when none did), and how many requests
    sent after that the new colour answered (``new_after``) and anything else (``others_after``)."""
    try:
        url = stack.url(LIVE)
    except ScalelabError as exc:
        raise CheckFailed(f"{exc} — the selector switch runs on the kind runtime (RUNTIME=\"kind\"); elsewhere "
                          "nginx's upstream is the switch") from None
    events = []
    with Background(f"{url}{READ_PATH}", concurrency) as load:
        for wait_s, service in timeline:
            time.sleep(wait_s)
            began = load.now_s()
            patched = stack.tool("kubectl", "patch", "service", LIVE, "--type", "merge",
                                 "-p", json.dumps({"spec": {"selector": {SELECTOR_KEY: service}}}))
            if patched.returncode != 0:
                raise CheckFailed(f"kubectl patch service {LIVE} failed: {patched.output.strip()[-300:]}")
            events.append({"t_s": began, "action": f"route: selector {SELECTOR_KEY}={service}",
                           "took_s": load.now_s() - began, "to": colour(f"{service}-")})
        time.sleep(tail_s)
    frame = coloured(load.frame())
    events_frame = pd.DataFrame(events)
    ends = [*events_frame.t_s[1:], float("inf")]
    settled, new_after, others_after = [], [], []
    for (began, to), end in zip(events_frame[["t_s", "to"]].itertuples(index=False), ends, strict=True):
        window = frame[(frame.t_s >= began) & (frame.t_s < end)]
        old = window[(window.colour != to) & (window.colour != "none")]
        settled.append(float(old.t_s.max() - began) if len(old) else float("nan"))
        after = window[window.t_s > (old.t_s.max() if len(old) else began)]
        new_after.append(int((after.colour == to).sum()))
        others_after.append(int((after.colour != to).sum()))
    events_frame["settled_s"] = settled            # the old colour's last request, after the patch
    events_frame["new_after"] = new_after          # requests sent after that, by the new colour ...
    events_frame["others_after"] = others_after    # ... and by anything else (the old one, none)
    return {"frame": frame, "events": events_frame, "requests": len(frame),
            "failed": int((~frame.status.between(200, 399)).sum())}


def served_between(run: dict, start_s: float, end_s: float) -> dict[str, int]:
    """Requests sent in [start_s, end_s) by the colour that answered: ``{"blue": 310, "green": 0}``."""
    frame = run["frame"]
    sent = frame[(frame.t_s >= start_s) & (frame.t_s < end_s)]
    return {c: int((sent.colour == c).sum()) for c in ("blue", "green", "none")}


def _describe(route: dict[str, int] | None) -> str:
    if route is None:
        return "every member alike"
    return " / ".join(f"{'blue' if s == BLUE else s} {p} %" for s, p in route.items())


# -- a canary, judged by a gate -------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """What one colour answered in a step so far: requests, errors (5xx or no answer), p95."""
    requests: int
    errors: int
    p95_ms: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def __str__(self) -> str:
        return f"{self.errors}/{self.requests} errors ({self.error_rate:.1%})"


def windows(frame: pd.DataFrame, since_s: float) -> tuple[Window, Window]:
    """Blue's and green's windows over the requests sent since ``since_s``."""
    sent = coloured(frame[frame.t_s >= since_s])
    failed = (sent.status >= 500) | (sent.status == 0)

    def window(name: str) -> Window:
        mine = sent.colour == name
        return Window(int(mine.sum()), int((mine & failed).sum()),
                      float(sent[mine].ms.quantile(0.95)) if mine.any() else 0.0)
    return window("blue"), window("green")


class GateFailed(CheckFailed):
    """The learner's gate raised or returned something else than a decision."""


def ask(gate, stable: Window, canary: Window) -> str:
    """The gate's decision, or GateFailed naming what it did instead."""
    try:
        decision = gate(stable, canary)
    except Exception as exc:     # noqa: BLE001 — learner code: name the failure
        raise GateFailed(f"gate(stable={stable}, canary={canary}) raised {type(exc).__name__}: {exc}") from None
    if decision not in DECISIONS:
        raise GateFailed(f"gate(stable={stable}, canary={canary}) returned {decision!r}: a decision is one of "
                         f"{', '.join(map(repr, DECISIONS))}")
    return decision


def rollout(stack, url: str, gate, steps: tuple[int, ...] = STEPS, concurrency: int = 8,
            judge_every_s: float = JUDGE_EVERY_S, max_hold_s: float = MAX_HOLD_S) -> dict:
    """A canary under a steady load on ``url``: for each green share of ``steps``, route it, then
    judge once per ``judge_every_s`` until ``gate`` promotes (next share) or rolls back (every
    request to blue again, the rollout ends); a step held over ``max_hold_s`` is rolled back.
    Returns ``frame`` (one row per request, with its colour), ``events`` (one row per route and per
    judgement, with both windows), ``outcome`` ("promoted" or "rolled back") and ``reached`` (the
    highest share green had). Whatever happens, blue has every request when it returns unpromoted."""
    events: list[dict] = []
    outcome, reached = "rolled back", 0
    with Background(url, concurrency) as load:
        try:
            for share in steps:
                began = load.now_s()
                stack.route(split(share) if share < 100 else {GREEN: 100})
                routed = load.now_s()
                reached = share
                events.append({"t_s": began, "action": f"route: green {share} %", "took_s": routed - began})
                if share >= 100:
                    outcome = "promoted"
                    break
                decision = "hold"
                while decision == "hold":
                    time.sleep(judge_every_s)
                    stable, canary = windows(load.frame(), routed)
                    decision = ask(gate, stable, canary)
                    held_too_long = decision == "hold" and load.now_s() - routed > max_hold_s
                    events.append({"t_s": load.now_s(), "action": f"gate: {decision}"
                                   + (f" for {max_hold_s:g} s: rolled back" if held_too_long else ""),
                                   "green_share": share, "blue": str(stable), "green": str(canary),
                                   "blue_rate": stable.error_rate, "green_rate": canary.error_rate,
                                   "green_requests": canary.requests})
                    if held_too_long:
                        decision = "rollback"
                if decision == "rollback":
                    break
        finally:
            if outcome != "promoted":
                began = load.now_s()
                stack.route({BLUE: 100})
                events.append({"t_s": began, "action": "route: blue 100 % (rollback)", "took_s": load.now_s() - began})
            time.sleep(TAIL_S)
    frame = coloured(load.frame())
    return {"frame": frame, "events": pd.DataFrame(events), "outcome": outcome, "reached": reached,
            "requests": len(frame), "switch_failures": int(frame.status.isin(SWITCH_FAILURES).sum()),
            "planted": int(((frame.status == 500) & (frame.colour == "green")).sum()),
            "blue_errors": int(((frame.status >= 500) & (frame.colour == "blue")).sum())}


# -- plots ------------------------------------------------------------------------------------
def plot(run: dict, title: str):
    """Answers per half second by colour (errors in red), the routes and the gate's decisions."""
    from scalelab.plot import Figure, legend_outside
    frame = run["frame"].assign(bin=lambda f: (f.t_s // 0.5) * 0.5)
    frame = frame[frame.bin < frame.bin.max()]          # the last half second is cut short
    kind = frame.colour.where(frame.status.between(200, 399), "error")
    counts = pd.crosstab(frame.bin, kind).reindex(columns=["blue", "green", "error"], fill_value=0) * 2
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.stackplot(counts.index, counts.T.values, labels=["blue answered", "green answered", "5xx or no answer"],
                 colors=["tab:blue", "tab:green", "tab:red"], alpha=0.8, step="post")
    events = run["events"]
    for at, action in events[events.action.str.startswith("route")][["t_s", "action"]].itertuples(index=False):
        ax.axvline(at, color="black", lw=0.8, ls="--")
        ax.annotate(str(action).removeprefix("route: "), (at, ax.get_ylim()[1]), rotation=90, va="top", ha="right",
                    fontsize=7)
    ax.set(xlabel="seconds since the load started", ylabel="answers / s", title=title)
    legend_outside(ax)
    ax.grid(True, alpha=0.3)
    return fig


# -- the exercise: the canary's gate ---------------------------------------------------------------
# (stable, canary) -> the decision, and what the case is about
CASES = [
    ((Window(900, 0), Window(100, 0)), "promote", "a clean canary with 100 requests, a clean blue"),
    ((Window(900, 1), Window(20, 5)), "hold", "20 canary requests (5 errors): too few to judge yet"),
    ((Window(0, 0), Window(0, 0)), "hold", "no request yet on either colour"),
    ((Window(900, 0), Window(100, 20)), "rollback", "20 % errors on the canary, none on blue"),
    ((Window(900, 0), Window(50, 10)), "rollback", "exactly 50 canary requests, 10 errors: enough to judge"),
    ((Window(1800, 90), Window(200, 40)), "rollback",
     "20 % errors on the canary against 5 % on blue — fewer errors in number (40 < 90): compare rates"),
    ((Window(1800, 9), Window(200, 1)), "promote", "1 error in 200 on the canary (0.5 %), as often as on blue"),
    ((Window(1800, 90), Window(200, 12)), "promote",
     "6 % errors on the canary, 5 % on blue (the database is flaky for both): within 2 points of blue"),
]


def _check_gate(stack, exercise) -> str:
    gate = exercise.function(stack, "gate")
    for (stable, canary), expected, about in CASES:
        got = ask(gate, stable, canary)
        if got != expected:
            raise CheckFailed(f"gate(stable={stable}, canary={canary}) returned {got!r}, "
                              f"expected {expected!r}: {about}")
    # Live: a good release and a bad one, each through a canary under load.
    url = f"{stack.url(BLUE)}/users?limit=5"
    if len(stack.members(GREEN)) < 2:
        stack.scale(GREEN, 2)
    runs = {}
    for name, rate in (("good", 0.0), ("bad", BAD_RELEASE_ERROR_RATE)):
        stack.route({BLUE: 100})      # blue is the stable colour each time; green gets the release
        release(stack, rate)
        runs[name] = rollout(stack, url, gate)
    last_rollouts.clear()
    last_rollouts.update(runs)
    good, bad = runs["good"], runs["bad"]
    for name, run in runs.items():
        if run["switch_failures"] or run["blue_errors"]:
            raise CheckFailed(f"during the {name} release's rollout {run['switch_failures']} requests got no answer "
                              f"or a 502-504 and blue answered {run['blue_errors']} 5xx, of {run['requests']}: "
                              "a switch must cost no request (is the stack healthy? stack.status())")
    if good["outcome"] != "promoted":
        last = good["events"].dropna(subset=["green"]).tail(1)
        raise CheckFailed(f"your gate rolled back a good release (no planted errors) at green {good['reached']} %: "
                          f"{last.to_dict('records')}")
    if bad["planted"] == 0:
        raise CheckFailed("the bad release answered no 500 while it had a share: the drill did not happen "
                          f"({bad['requests']} requests, green reached {bad['reached']} %); run the check again")
    if bad["outcome"] == "promoted" or bad["reached"] > STEPS[0]:
        raise CheckFailed(f"your gate let a release with {BAD_RELEASE_ERROR_RATE:.0%} errors reach green "
                          f"{bad['reached']} %: it must roll back at the first step")
    judged = bad["events"].dropna(subset=["green"])
    verdict = judged.iloc[-1]
    return (f"{len(CASES)} cases right; live: the good release promoted 10 → 50 → 100 % with "
            f"{good['switch_failures']} failed of {good['requests']} requests; the bad one rolled back at 10 % "
            f"after {int(verdict.green_requests)} canary requests ({verdict.green}, blue {verdict.blue}), "
            f"its {bad['planted']} planted 500s the only errors of {bad['requests']} requests")


canary_gate = Exercise(
    name="canary_gate",
    title="Exercise 3 · the canary's gate",
    checker=_check_gate,
    hints=[
        f"Decide in order: too few canary requests (fewer than {MIN_REQUESTS}) → 'hold'; a canary error rate more "
        f"than {MARGIN:.0%} points above blue's → 'rollback'; else 'promote'.",
        "Compare rates, not counts: the canary gets a tenth of the requests, so it has fewer errors in number even "
        "when it fails far more often. Window.error_rate is errors / requests.",
        f"The rule in one line: canary.error_rate > stable.error_rate + {MARGIN} → 'rollback'. Blue's rate is the "
        "baseline: a flaky database fails both colours alike and is no reason to roll back.",
    ],
    reference="shop.reference.canary_gate",
    handle="lab06.canary_gate",
)
