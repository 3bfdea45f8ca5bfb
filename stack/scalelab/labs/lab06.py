"""Lab 06 — containers and Kubernetes: a Deployment written as YAML, and the HPA's algorithm.

On ``local`` and ``compose`` there is no Kubernetes: the Deployment is validated (schema and
the lab's rules) but not applied, and the autoscaler that scales the replicas is the
driver's MODEL of the HPA controller (``scalelab.autoscaler.ModelAutoscaler``) running the
learner's ``desired_replicas``. On ``kind`` the real HPA scales and its decisions are
compared with the learner's function on the same metrics.
"""

import numbers
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd

from scalelab import aio, kube_schema
from scalelab.autoscaler import HpaSpec
from scalelab.closedloop import Background
from scalelab.closedloop import closed_loop as _closed_loop
from scalelab.exercise import CheckFailed, Exercise, NotAttempted
from scalelab.labs import rollout

WORK_PATH = "/work?ms=20"      # each request spends 20 ms of CPU in the replica that serves it
STUB_MARK = "YOUR CODE HERE"

# The live part of the hpa check: windows shortened so the lab finishes in minutes (the
# HPA's defaults are a 15 s sync and a 300 s scale-down window).
CHECK_SPEC = HpaSpec(service="users", min_replicas=1, max_replicas=4, target_cpu_utilization=50,
                     cpu_request_millicores=200, tolerance=0.1, scale_down_stabilization_s=10, period_s=2.0)
CHECK_LOAD: dict[str, Any] = {"users": 8, "duration": 20.0}
# How much longer the load may go on for the real HPA to add a replica (metrics-server's window).
HPA_SCALE_OUT_WAIT_S = 150.0

# What the last live autoscaling run measured (the notebook plots it).
last_scaling: dict = {}


# -- helpers the notebook uses too --------------------------------------------------------------
def during_load(url: str, action, before_s: float = 1.0, after_s: float = 3.0, concurrency: int = 8,
                timeout: float = 4.0, max_s: float = 120.0, attempts: int = 1) -> dict:
    """Send a steady closed-loop GET load to ``url``; once it has flowed for ``before_s`` seconds
    (and at least 20 answers came back) call ``action()``;
    keep the load on ``after_s`` seconds after the action returned, then stop it (bounded by
    ``max_s`` in all). Returns ``frame`` (one row per request: t_s sent, ms, status — 0 when no
    answer came —, instance), ``action_at_s``/``action_s`` (when it ran, how long), ``load_s``,
    ``requests`` and ``failed`` (no answer, or a status outside 2xx/3xx).

    With ``attempts`` > 1, a run in which requests failed *before* the action began (the stack was
    failing already: a machine too busy to serve the load) is set aside and the whole run made
    again, ``attempts`` runs at most; ``failed_before`` is the returned run's, ``set_aside`` counts
    the others. Only for an action that can run twice (a rolling restart, not a kill)."""
    set_aside = 0
    while True:
        run = _one_run_during_load(url, action, before_s, after_s, concurrency, timeout, max_s)
        frame = run["frame"]
        run["failed_before"] = int((~frame[frame.t_s < run["action_at_s"]].status.between(200, 399)).sum())
        if not run["failed_before"] or set_aside + 1 >= attempts:
            return {**run, "set_aside": set_aside}
        set_aside += 1
        time.sleep(2.0)                  # a moment for the busy machine before the next run


def _one_run_during_load(url: str, action, before_s: float, after_s: float, concurrency: int, timeout: float,
                         max_s: float) -> dict:
    with Background(url, concurrency, timeout, max_s) as load:
        while load.rows and load.now_s() < before_s:
            time.sleep(0.02)             # the load flows; the action comes before_s into it
        started = load.now_s()
        try:
            action()
        finally:
            took = load.now_s() - started
        time.sleep(max(0.0, min(after_s, max_s - load.now_s())))   # the load goes on for after_s
    frame = load.frame()
    if not len(frame):
        raise CheckFailed(f"no request to {url} got an answer: is the stack up? (stack.status())")
    return {"frame": frame, "action_at_s": started, "action_s": took, "load_s": float(frame.t_s.max()),
            "requests": len(frame), "failed": int((~frame.status.between(200, 399)).sum())}


@dataclass
class SteadyLoad:
    """What a closed-loop load measured: one row per request in ``frame``."""
    frame: pd.DataFrame
    seconds: float

    requests = property(lambda self: len(self.frame))
    failures = property(lambda self: int((~self.frame.status.between(200, 399)).sum()))
    rps = property(lambda self: self.requests / self.seconds if self.seconds else 0.0)
    status_counts = property(lambda self: {("error" if s == 0 else str(s)): int(n)
                                           for s, n in self.frame.status.value_counts().items()})

    def __repr__(self):
        return f"<SteadyLoad: {self.requests} requests, {self.failures} failed, {self.rps:.1f} rps>"


def steady_load(url: str, seconds: float, concurrency: int = 8, timeout: float = 10.0,
                until=None, max_seconds: float | None = None) -> SteadyLoad:
    """``concurrency`` closed-loop clients GET ``url`` for ``seconds`` (a new connection per request).
    With ``until`` (a function), the load goes on past ``seconds`` until it returns true, and at
    most ``max_seconds`` in all."""
    rows: list = []
    stop = threading.Event()
    started = time.monotonic()
    cap = max(seconds, max_seconds or seconds)

    def stop_when_due():
        while not stop.wait(0.25):
            elapsed = time.monotonic() - started
            if elapsed >= cap or (elapsed >= seconds and (until is None or until())):
                stop.set()

    timer = threading.Thread(target=stop_when_due, daemon=True)
    timer.start()
    try:
        aio.run(_closed_loop(url, stop, concurrency, timeout, rows))
    finally:
        stop.set()
        timer.join(timeout=5)
    frame = pd.DataFrame(rows, columns=["sent", "done", "status", "instance"])
    return SteadyLoad(frame.assign(t_s=frame.sent - started, ms=(frame.done - frame.sent) * 1000),
                      time.monotonic() - started)


def plot_served_by(run: dict, title: str):
    """Requests answered per second, by the replica that answered (failures in red)."""
    from scalelab.plot import Figure, legend_outside
    frame = run["frame"].assign(second=lambda f: f.t_s.astype(int))
    ok = frame[frame.status.between(200, 399)]
    per = ok.pivot_table(index="second", columns="instance", values="ms", aggfunc="count").fillna(0)
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.stackplot(per.index, per.T.values, labels=per.columns, alpha=0.8, step="post")
    failed = frame[~frame.status.between(200, 399)].groupby("second").size()
    if len(failed):
        ax.bar(failed.index, failed.values, color="red", width=0.8, label="failed")
    ax.axvspan(run["action_at_s"], run["action_at_s"] + run["action_s"], color="grey", alpha=0.15,
               label=f"action ({run['action_s']:.1f} s)")
    ax.set(xlabel="seconds since the load started", ylabel="answers / s", title=title)
    legend_outside(ax)
    ax.grid(True, alpha=0.3)
    return fig


def scale_in_bound_s(spec: HpaSpec, is_model: bool) -> float:
    """How long after the load stops the replicas must be back at min_replicas.

    Model: the window (the highest recommendation of its last seconds holds), plus up to two
    periods before the recommendation falls (the first one still measures part of the load),
    one more before the decision, and 20 s to stop replicas and reload nginx. The real HPA
    also waits for metrics-server, which averages CPU over its own window: 60 s more."""
    return spec.scale_down_stabilization_s + 3 * spec.period_s + 20 + (0 if is_model else 60)


def run_autoscaling(stack, spec: HpaSpec, desired_replicas, users: int = 8, duration: float = 20.0,
                    path: str = WORK_PATH, settle_timeout: float | None = None) -> dict:
    """Scale ``spec.service`` to min_replicas, start the autoscaler, send a CPU-bound load for
    ``duration`` s, then wait (bounded) until it is back at min_replicas. Returns what happened:
    ``history`` (one row per sync), ``load`` (a SteadyLoad), ``scale_out_s`` (load start →
    replicas first above min), ``scale_in_s`` (load end → back at min, or None), ``bound_s``."""
    stack.scale(spec.service, spec.min_replicas)
    scaler = stack.autoscale(spec, desired_replicas)
    result: dict = {"spec": spec, "is_model": scaler.is_model}
    replicas_seen: list[tuple[float, int]] = []
    watching = threading.Event()

    def watch():    # the replica count the runtime reports, twice a second (independent of the scaler)
        while not watching.wait(0.5):
            try:
                replicas_seen.append((time.monotonic(), len(stack.members(spec.service))))
            except Exception:   # noqa: BLE001 — a member list read mid-scale: next reading
                pass

    scaler_started = time.monotonic()      # the origin of history's t_s
    scaler.start()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        started = time.monotonic()
        # The model acts on its own 2 s samples; the real HPA sees CPU only through the kubelet's
        # stats and metrics-server's 10 s scrapes (tens of seconds on a fresh cluster): its load
        # goes on until a replica was added, bounded.
        scaled_out = ((lambda: any(n > spec.min_replicas for t, n in replicas_seen if t >= started))
                      if not scaler.is_model else None)
        result["load"] = steady_load(f"{stack.url(spec.service)}{path}", duration, concurrency=users,
                                     until=scaled_out, max_seconds=duration + HPA_SCALE_OUT_WAIT_S)
        ended = time.monotonic()
        bound = scale_in_bound_s(spec, scaler.is_model)
        deadline = ended + (settle_timeout if settle_timeout is not None else bound + 10)
        while time.monotonic() < deadline:
            if replicas_seen and replicas_seen[-1][0] > ended and replicas_seen[-1][1] <= spec.min_replicas:
                break
            time.sleep(0.25)
    finally:
        watching.set()
        watcher.join(timeout=5)
        scaler.stop()
    history = scaler.history()
    seen = pd.DataFrame([(t - started, n) for t, n in replicas_seen], columns=["t_s", "replicas"])
    out = seen[(seen.t_s >= 0) & (seen.replicas > spec.min_replicas)]
    back = seen[(seen.t_s >= ended - started) & (seen.replicas <= spec.min_replicas)]
    result.update(history=history, replicas_seen=seen, load_s=ended - started, bound_s=bound,
                  peak=int(seen.replicas.max()) if len(seen) else None,
                  scale_out_s=float(out.t_s.iloc[0]) if len(out) else None,
                  scale_in_s=float(back.t_s.iloc[0] - (ended - started)) if len(back) else None,
                  errors=list(getattr(scaler, "errors", [])), history_shift_s=started - scaler_started)
    last_scaling.clear()
    last_scaling.update(result)
    return result


def plot_scaling(run: dict):
    """Replicas (as the runtime reported them) and CPU utilization (as the autoscaler measured
    it) over time, with the load's span, the target and the window."""
    from scalelab.plot import Figure, legend_outside
    spec, history, seen = run["spec"], run["history"], run["replicas_seen"]
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.step(seen.t_s, seen.replicas, where="post", color="tab:blue", lw=2, label="replicas running")
    ax.axvspan(0, run["load_s"], color="tab:orange", alpha=0.12, label=f"load ({run['load_s']:.0f} s)")
    ax.set(xlabel="seconds since the load started", ylabel="replicas", ylim=(0, spec.max_replicas + 0.5),
           title=f"{'Model autoscaler' if run['is_model'] else 'Kubernetes HPA'}: target "
                 f"{spec.target_cpu_utilization} % of {spec.cpu_request_millicores}m, window "
                 f"{spec.scale_down_stabilization_s} s")
    ax.set_yticks(range(0, spec.max_replicas + 1))
    ax2 = ax.twinx()
    # history's t_s counts from the autoscaler's start, a moment before the load started
    shift = run.get("history_shift_s", 0.0)
    util = history.dropna(subset=["cpu_utilization"])
    ax2.plot(util.t_s - shift, util.cpu_utilization, "o-", color="tab:red", ms=3,
             label="CPU utilization (% of request)")
    ax2.axhline(spec.target_cpu_utilization, color="tab:red", ls=":", lw=1, label="target")
    ax2.set_ylabel("CPU utilization, % of the request", color="tab:red")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    legend_outside(ax, handles=handles)
    ax.grid(True, alpha=0.3)
    return fig


# -- exercise 1: a Deployment and a Service, as YAML ---------------------------------------------
DEPLOYMENT_FILE = "deployment.yaml"
IMAGE = "scalelab/shop"       # what the image build produces (stack/deploy/shop/Dockerfile)


YOURS = "-yours"               # on kind, the learner's objects run beside the stack's own


def _beside_the_stack(objects: list[dict], namespace: str | None, tag: str | None) -> list[dict]:
    """Copies renamed ``<name>-yours`` in the stack's namespace, with one more label in every
    selector, so applying them never takes over the stack's own Deployment, Service or pods;
    the image tag is the one the runtime loaded into the cluster."""
    import copy
    extra = {"scalelab.dev/copy": "yours"}
    out = []
    for obj in copy.deepcopy(objects):
        obj["metadata"]["name"] += YOURS
        if namespace:
            obj["metadata"]["namespace"] = namespace
        if obj["kind"] == "Deployment":
            if tag:
                for c in obj["spec"]["template"]["spec"]["containers"]:
                    c["image"] = f"{IMAGE}:{tag}"
            obj["spec"]["selector"].setdefault("matchLabels", {}).update(extra)
            obj["spec"]["template"]["metadata"].setdefault("labels", {}).update(extra)
            obj["spec"]["replicas"] = 1
        else:
            obj["spec"]["selector"] = {**obj["spec"]["selector"], **extra}
        out.append(obj)
    return out


def _probe_path(container: dict, kind: str) -> str | None:
    return (((container.get(kind) or {}).get("httpGet") or {}).get("path"))


def _probe_answer(url: str) -> str:
    """What a probe path answers: "200 <status>" for the service's own JSON {"status": ...}, else its
    status and the start of its body (something else answering 200 is not the user service)."""
    r = httpx.get(url, timeout=5)
    try:
        if r.status_code == 200 and isinstance(status := r.json().get("status"), str):
            return f"200 {status}"
    except (ValueError, AttributeError):
        pass
    return f"{r.status_code} {r.text[:60]!r}"


def _check_deployment(stack, exercise) -> str:
    path = stack.workspace / DEPLOYMENT_FILE
    if not path.exists():
        raise NotAttempted(f"run the exercise cell: it writes {path.name} into {path.parent}")
    text = path.read_text()
    if STUB_MARK in text:
        raise NotAttempted(f"{path.name} still holds `# {STUB_MARK}`: write the Deployment and the Service")
    problems = kube_schema.validate(text)
    if problems:
        shown = "\n    ".join(problems[:3])
        raise CheckFailed(f"the Kubernetes {kube_schema.KUBERNETES_VERSION} schema rejects {path.name}:\n    {shown}"
                          + (f"\n    (+{len(problems) - 3} more)" if len(problems) > 3 else ""))
    docs = kube_schema.documents(text)
    kinds = sorted(d["kind"] for d in docs)
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    services = [d for d in docs if d["kind"] == "Service"]
    if len(deployments) != 1 or len(services) != 1:
        raise CheckFailed(f"{path.name} holds {kinds}: write one Deployment and one Service, separated by `---`")
    dep, svc = deployments[0], services[0]
    spec = dep["spec"]
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector:
        raise CheckFailed("the Deployment's spec.selector.matchLabels is empty: it must pick the pods it owns")
    if any(labels.get(k) != v for k, v in selector.items()):
        raise CheckFailed(f"the selector {selector} does not match the pod template's labels {labels}: the "
                          "Deployment would own no pod (the API server refuses it)")
    containers = spec["template"]["spec"]["containers"]
    if len(containers) != 1:
        raise CheckFailed(f"the pod has {len(containers)} containers: this lab's pod runs one, the user service")
    c = containers[0]
    image = c.get("image", "")
    if not image.split(":")[0].endswith(IMAGE):
        raise CheckFailed(f"image {image!r}: the user service's image is {IMAGE} (built from stack/deploy/shop)")
    if image.endswith(":latest"):
        raise CheckFailed(f"image {image!r}: never :latest — a tag that moves makes a rollout unrepeatable "
                          "(and kind would try to pull it from a registry)")
    if c.get("imagePullPolicy") != "IfNotPresent":
        raise CheckFailed(f"imagePullPolicy is {c.get('imagePullPolicy')!r}: kind loads the image into its nodes, "
                          "there is no registry to pull from — use IfNotPresent")
    requests = (c.get("resources") or {}).get("requests") or {}
    if "cpu" not in requests or "memory" not in requests:
        raise CheckFailed(f"resources.requests is {requests}: set cpu and memory — the scheduler places pods by "
                          "their requests, and the HPA computes CPU utilization as a percentage of the cpu request")
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    if 8000 not in ports.values():
        raise CheckFailed(f"the container's ports are {ports}: the service listens on 8000 (the Dockerfile's EXPOSE)")
    ready_path, live_path = _probe_path(c, "readinessProbe"), _probe_path(c, "livenessProbe")
    if ready_path != "/ready":
        raise CheckFailed(f"readinessProbe path is {ready_path!r}: readiness must ask whether the pod can serve "
                          "real requests — which endpoint checks the database?")
    if live_path != "/health":
        raise CheckFailed(f"livenessProbe path is {live_path!r}: liveness must not depend on the database (a "
                          "database outage would restart every pod) — which endpoint touches nothing else?")
    if svc["spec"].get("selector") != labels and any(labels.get(k) != v
                                                     for k, v in (svc["spec"].get("selector") or {}).items()):
        raise CheckFailed(f"the Service selects {svc['spec'].get('selector')}, the pods carry {labels}: it would "
                          "have no endpoints")
    if not svc["spec"].get("selector"):
        raise CheckFailed("the Service has no selector: it would send traffic nowhere")
    targets = [p.get("targetPort", p.get("port")) for p in svc["spec"].get("ports") or []]
    if not any(t == 8000 or (isinstance(t, str) and ports.get(t) == 8000) for t in targets):
        raise CheckFailed(f"the Service's targetPort is {targets}: it must reach the container's port 8000 "
                          f"(by number, or by the port's name {list(k for k in ports if k)})")
    # The probe paths exist in the running service and mean what they should.
    member = stack.members("users")[0]
    answers = {p: _probe_answer(f"{stack.member_url(member)}{p}") for p in ("/ready", "/health")}
    if answers != {"/ready": "200 ready", "/health": "200 ok"}:
        raise CheckFailed(f"the live replica {member} answered {answers}: is the stack healthy? (stack.status())")
    if stack.supports("apply"):                       # runtimes with a Kubernetes API (kind)
        stack.apply(_beside_the_stack(deployments + services, stack.namespace, stack.image_tag))
        where = (f"applied to the {stack.runtime_name} cluster as Deployment {dep['metadata']['name']}{YOURS} and "
                 f"Service {svc['metadata']['name']}{YOURS} (the API server accepted them), beside the stack's own")
    else:
        where = f"validated only: the {stack.runtime_name} runtime has no Kubernetes to apply it to"
    return (f"{path.name}: {', '.join(kinds)} valid against the Kubernetes {kube_schema.KUBERNETES_VERSION} schema; "
            f"requests {requests}; readiness {ready_path}, liveness {live_path} (both 200 on {member}); "
            f"selector {selector} matches; image {image} — {where}")


deployment = Exercise(
    name="deployment",
    title="Exercise 1 · a Deployment and a Service (YAML)",
    checker=_check_deployment,
    hints=[
        "Two documents separated by `---`: `apiVersion: apps/v1`, `kind: Deployment` (spec.replicas, "
        "spec.selector.matchLabels, spec.template with metadata.labels and spec.containers) and `apiVersion: v1`, "
        "`kind: Service` (spec.selector, spec.ports).",
        "The container: `image: scalelab/shop:<tag>`, `imagePullPolicy: IfNotPresent`, `ports: [{name: http, "
        "containerPort: 8000}]`, `resources: {requests: {cpu: 200m, memory: 128Mi}}`.",
        "Probes are container fields: `readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 2}` "
        "and `livenessProbe: {httpGet: {path: /health, port: http}, ...}`. The Service's selector repeats the "
        "pod template's labels; its `targetPort: http` names the container port.",
    ],
    reference="stack/shop/reference/deployment.yaml",
    handle="lab06.deployment",
)


# -- exercise 2: the HPA's algorithm ------------------------------------------------------------
# (current_replicas, current_metric, target, kwargs) -> expected, and what the case is about
CASES = [
    ((1, 100, 50, {}), 2, "one replica at twice the target"),
    ((2, 90, 50, {}), 4, "2 replicas at 90 % of a 50 % target (round up: 3.6 → 4)"),
    ((4, 20, 50, {}), 2, "4 replicas at 20 % (scale down: 1.6 → 2)"),
    ((3, 54, 50, {}), 3, "3 replicas at 54 % of 50 % (ratio 1.08: inside the 0.1 tolerance)"),
    ((3, 46, 50, {}), 3, "3 replicas at 46 % of 50 % (ratio 0.92: inside the tolerance)"),
    ((3, 56, 50, {}), 4, "3 replicas at 56 % of 50 % (ratio 1.12: outside the tolerance)"),
    ((2, 50, 50, {}), 2, "exactly on target"),
    ((3, 58, 50, {"tolerance": 0.2}), 3, "a wider tolerance (0.2) passed in"),
    ((5, 500, 50, {"max_replicas": 10}), 10, "5 replicas at 10× the target (clamped to max_replicas=10)"),
    ((2, 400, 50, {"max_replicas": 4}), 4, "max_replicas=4 passed in"),
    ((3, 0, 50, {}), 1, "an idle service, 0 % (ceil(0) = 0, clamped to min_replicas=1)"),
    ((4, 10, 50, {"min_replicas": 2}), 2, "4 replicas at 10 % with min_replicas=2"),
    ((3, None, 50, {}), 3, "no metric yet (None): no decision, keep the current count"),
    ((0, 80, 50, {}), 0, "a Deployment scaled to 0 by hand: the HPA leaves it at 0"),
]


def _call(fn, args):
    current, metric, target, kwargs = args
    return fn(current, metric, target, **kwargs)


def _describe_call(args) -> str:
    current, metric, target, kwargs = args
    extra = "".join(f", {k}={v}" for k, v in kwargs.items())
    return f"desired_replicas({current}, {metric!r}, {target}{extra})"


def _last_syncs(history: pd.DataFrame, n: int = 4) -> str:
    """The autoscaler's last few readings and what the function made of them, in one clause."""
    rows = history.dropna(subset=["cpu_utilization"]).tail(n)
    if not len(rows):
        return "no CPU reading in its last syncs"
    pairs = ", ".join(f"{r.cpu_utilization:g} % → {r.desired_by_you:g}" for r in rows.itertuples())
    return f"its last syncs read CPU → your function's answer: {pairs}"


def _check_hpa(stack, exercise) -> str:
    fn = exercise.function(stack, "desired_replicas")
    for args, expected, about in CASES:
        try:
            got = _call(fn, args)
        except Exception as exc:     # noqa: BLE001 — learner code: name the failure
            raise CheckFailed(f"{_describe_call(args)} raised {type(exc).__name__}: {exc} — {about}") from None
        if not isinstance(got, numbers.Integral) or isinstance(got, bool):   # int, numpy ints
            raise CheckFailed(f"{_describe_call(args)} returned {got!r} ({type(got).__name__}): a replica count is "
                              "an int (math.ceil returns one)")
        if got != expected:
            raise CheckFailed(f"{_describe_call(args)} returned {got}, expected {expected}: {about}")
    # Live: the autoscaler runs this function against real CPU load.
    run = run_autoscaling(stack, CHECK_SPEC, fn, **CHECK_LOAD)
    spec, history, result = run["spec"], run["history"], run["load"]
    what = "the driver's model autoscaler" if run["is_model"] else "the Kubernetes HPA"
    if run["errors"]:
        raise CheckFailed(f"{what} could not use your function: {run['errors'][0]}")
    if run["peak"] is None or run["peak"] <= spec.min_replicas:
        busiest = history.cpu_utilization.max()
        raise CheckFailed(f"under {result.requests} CPU-bound requests in {run['load_s']:.0f} s the replicas never "
                          f"rose above {spec.min_replicas} (CPU utilization peaked at {busiest} % of the request, "
                          f"target {spec.target_cpu_utilization} %): what does your function return when the metric "
                          "is above the target?")
    failures = result.failures
    if failures > 0.01 * max(result.requests, 1):
        raise CheckFailed(f"{failures} of {result.requests} requests failed while the replicas scaled "
                          f"({result.status_counts}): scaling must not cost requests")
    if run["scale_in_s"] is None:
        raise CheckFailed(f"the load stopped, and {run['bound_s'] + 10:.0f} s later {what} still ran "
                          f"{int(run['replicas_seen'].replicas.iloc[-1])} replicas (min {spec.min_replicas}); "
                          f"{_last_syncs(history)}: what does your function return for an idle service?")
    if run["scale_in_s"] > run["bound_s"]:
        raise CheckFailed(f"back at {spec.min_replicas} replica(s) {run['scale_in_s']:.1f} s after the load stopped, "
                          f"over the {run['bound_s']:.0f} s the window and period allow")
    if not run["is_model"]:
        compared = history.dropna(subset=["desired_by_you", "decided"])
        agree = (compared.desired_by_you == compared.decided).mean() if len(compared) else float("nan")
        extra = f"; your function agreed with the HPA's desiredReplicas on {agree:.0%} of {len(compared)} syncs"
    else:
        extra = ""
    return (f"{len(CASES)} cases right; live under {result.requests} requests of {WORK_PATH} "
            f"({result.failures} failed), {what} scaled {spec.min_replicas} → {run['peak']} replicas "
            f"{run['scale_out_s']:.1f} s into the load and back to {spec.min_replicas} {run['scale_in_s']:.1f} s after "
            f"it stopped (bound {run['bound_s']:.0f} s: {spec.scale_down_stabilization_s} s window, "
            f"{spec.period_s:g} s period){extra}")


hpa = Exercise(
    name="hpa",
    title="Exercise 2 · the HPA's desired_replicas",
    checker=_check_hpa,
    hints=[
        "The documented rule: desiredReplicas = ceil(currentReplicas × currentMetricValue / desiredMetricValue). "
        "math.ceil rounds up and returns an int.",
        "Compute ratio = current_metric / target first. When abs(ratio - 1) <= tolerance keep current_replicas "
        "(no flapping around the target); otherwise ceil(current_replicas * ratio).",
        "Clamp last: max(min_replicas, min(max_replicas, desired)). Before anything, when current_metric is None "
        "or current_replicas is 0, return current_replicas unchanged (no metric, or autoscaling switched off).",
    ],
    reference="shop.reference.hpa",
    handle="lab06.hpa",
)


# -- exercise 3: the canary's gate (deploys: scalelab.labs.rollout) ----------------------------------
canary_gate = rollout.canary_gate   # after exercises 1 and 2: the notebook's order
