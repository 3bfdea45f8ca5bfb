"""Lab 06: the HPA's algorithm, the driver's model autoscaler on a real local stack, the
CPU-bound /work endpoint, and the Deployment exercise's rules."""

import time

import httpx
import pytest

from scalelab.autoscaler import HpaSpec, ModelAutoscaler, stabilized
from scalelab.exercise import CheckFailed, NotAttempted
from scalelab.labs import lab06
from shop.reference.hpa import desired_replicas

from conftest import solved_stack


# -- the algorithm (no stack) ------------------------------------------------------------------
@pytest.mark.parametrize("args, expected, about", lab06.CASES, ids=[c[2][:40] for c in lab06.CASES])
def test_reference_desired_replicas_follows_the_kubernetes_docs(args, expected, about):
    assert lab06._call(desired_replicas, args) == expected, about


def test_the_docs_worked_example():
    # kubernetes.io HPA docs: "if the current metric value is 200m, and the desired value is 100m,
    # the number of replicas will be doubled ... if the current value is instead 50m, you'll halve it"
    assert desired_replicas(4, 200, 100) == 8
    assert desired_replicas(4, 50, 100) == 2


def test_scale_down_waits_for_the_highest_recommendation_in_the_window():
    recent = [(0.0, 4), (5.0, 2)]
    assert stabilized(4, 1, recent, now=8.0, window_s=10) == 4      # 4 recommended 8 s ago: hold
    assert stabilized(4, 1, recent, now=12.0, window_s=10) == 2     # 4 left the window; 2 did not
    assert stabilized(4, 1, recent, now=16.0, window_s=10) == 1
    assert stabilized(2, 3, recent, now=1.0, window_s=10) == 3      # scale up at once


def test_hpa_spec_refuses_impossible_bounds():
    with pytest.raises(ValueError):
        HpaSpec(min_replicas=3, max_replicas=2)


class FakeRuntime:
    """members/cpu_seconds/scale recorded in memory: the loop's arithmetic, not a stack."""

    def __init__(self, busy_cores: float):
        self.n, self.busy, self.cpu, self.t, self.scaled = 2, busy_cores, {}, time.monotonic(), []

    def members(self, service):
        return [f"{service}-{i}" for i in range(1, self.n + 1)]

    def cpu_seconds(self, member):
        return self.busy * (time.monotonic() - self.t)

    def scale(self, service, n):
        self.scaled.append(n)
        self.n = n


def test_model_turns_cpu_time_into_utilization_of_the_request_and_scales():
    runtime = FakeRuntime(busy_cores=0.2)      # each member burns 0.2 CPU = 100 % of a 200m request
    spec = HpaSpec(min_replicas=1, max_replicas=5, target_cpu_utilization=50, period_s=0.2)
    scaler = ModelAutoscaler(runtime, spec, desired_replicas).start()
    time.sleep(0.3)
    scaler.stop()
    row = scaler.history().iloc[0]
    assert 80 <= row.cpu_utilization <= 120 and row.desired_by_you == 4 and row.decided == 4
    assert runtime.scaled[0] == 4


def test_model_records_an_error_of_the_learners_function_and_keeps_running():
    def broken(*args):
        raise ZeroDivisionError("oops")
    scaler = ModelAutoscaler(FakeRuntime(0.1), HpaSpec(period_s=0.1), broken).start()
    time.sleep(0.35)
    scaler.stop()
    assert scaler.errors and "ZeroDivisionError" in scaler.errors[0] and len(scaler.history()) >= 2


def test_a_scale_in_that_never_came_shows_the_last_readings_and_answers():
    import pandas as pd
    history = pd.DataFrame([{"t_s": 1, "replicas": 2, "cpu_utilization": None, "desired_by_you": None},
                            {"t_s": 3, "replicas": 2, "cpu_utilization": 31.0, "desired_by_you": 2},
                            {"t_s": 5, "replicas": 2, "cpu_utilization": 28.5, "desired_by_you": 2}])
    assert lab06._last_syncs(history) == "its last syncs read CPU → your function's answer: 31 % → 2, 28.5 % → 2"
    assert lab06._last_syncs(history.iloc[:1]) == "no CPU reading in its last syncs"


# -- the exercises' stubs -------------------------------------------------------------------------
class WorkspaceOnly:
    def __init__(self, workspace):
        self.workspace = workspace


def test_untouched_hpa_stub_is_not_attempted(tmp_path):
    (tmp_path / "hpa.py").write_text("def desired_replicas(current_replicas, current_metric, target, tolerance=0.1,"
                                     " min_replicas=1, max_replicas=10):\n    # YOUR CODE HERE\n"
                                     "    raise NotImplementedError()\n")
    with pytest.raises(NotAttempted, match=r"(?s)not attempted yet.*lab06.hpa.hint"):
        lab06.hpa.check(WorkspaceOnly(tmp_path))


def test_a_wrong_formula_fails_on_the_case_table_before_any_load(tmp_path):
    (tmp_path / "hpa.py").write_text("def desired_replicas(c, m, t, tolerance=0.1, min_replicas=1, max_replicas=10):\n"
                                     "    return c if m is None else max(min_replicas, min(max_replicas, round(c * m / t)))\n")
    with pytest.raises(CheckFailed, match=r"returned 3, expected 4"):
        lab06.hpa.check(WorkspaceOnly(tmp_path))


def test_untouched_deployment_stub_is_not_attempted(tmp_path):
    (tmp_path / "deployment.yaml").write_text("# YOUR CODE HERE\n")
    with pytest.raises(NotAttempted, match="not attempted yet"):
        lab06.deployment.check(WorkspaceOnly(tmp_path))


# -- on a real local stack ---------------------------------------------------------------------------
lab6 = solved_stack(6)


def test_work_endpoint_spends_cpu_and_refuses_too_much(lab6):
    ok = httpx.get(f"{lab6.url('users')}/work?ms=30", timeout=10)
    assert ok.status_code == 200 and ok.json()["cpu_ms"] >= 30
    for bad in ("ms=201", "ms=0", "ms=abc"):
        refused = httpx.get(f"{lab6.url('users')}/work?{bad}", timeout=10)
        assert refused.status_code == 422 and refused.json()["error"] == "validation_error"


def test_cpu_seconds_grow_with_the_work_a_member_does(lab6):
    member = lab6.members("users")[0]
    before = lab6.runtime.cpu_seconds(member)
    for _ in range(10):
        httpx.get(f"{lab6.member_url(member)}/work?ms=50", timeout=10)
    assert lab6.runtime.cpu_seconds(member) - before >= 0.45


def test_reference_deployment_passes_the_check(lab6):
    lab06.deployment.check(lab6)
    assert "validated only" in lab06.deployment.last_result


def test_deployment_with_a_liveness_probe_on_ready_is_refused(lab6):
    path = lab6.workspace / "deployment.yaml"
    good = path.read_text()
    try:
        path.write_text(good.replace("httpGet: {path: /health, port: http}", "httpGet: {path: /ready, port: http}"))
        with pytest.raises(CheckFailed, match="livenessProbe"):
            lab06.deployment.check(lab6)
        path.write_text(good.replace("requests: {cpu: 200m, memory: 128Mi}", "requests: {memory: 128Mi}"))
        with pytest.raises(CheckFailed, match="requests"):
            lab06.deployment.check(lab6)
        path.write_text(good.replace("contianers", "x").replace("containers:", "contianers:"))
        with pytest.raises(CheckFailed, match="schema"):
            lab06.deployment.check(lab6)
    finally:
        path.write_text(good)


def test_model_autoscaler_scales_out_under_cpu_load_and_back_in_after(lab6):
    """The whole loop on real processes: real CPU time, real scale(), nginx in front."""
    lab06.hpa.check(lab6)
    run = lab06.last_scaling
    spec = run["spec"]
    assert run["is_model"] and run["peak"] > spec.min_replicas
    assert run["scale_out_s"] < run["load_s"]
    assert run["scale_in_s"] is not None and run["scale_in_s"] <= run["bound_s"]
    assert run["load"].failures <= 0.01 * run["load"].requests
    assert len(lab6.members("users")) == spec.min_replicas
    print(f"\nscale-out {run['scale_out_s']:.1f} s into the load, peak {run['peak']}, "
          f"scale-in {run['scale_in_s']:.1f} s after it (bound {run['bound_s']:.0f} s)")


def test_on_kind_the_learners_objects_are_applied_beside_the_stacks_own():
    import yaml
    from scalelab import kube_schema
    from scalelab.paths import REPO
    docs = list(yaml.safe_load_all((REPO / "stack/shop/reference/deployment.yaml").read_text()))
    copies = lab06._beside_the_stack(docs, "scalelab-x", "abc123")
    assert [c["metadata"]["name"] for c in copies] == ["users-yours", "users-yours"]
    assert all(c["metadata"]["namespace"] == "scalelab-x" for c in copies)
    dep, svc = copies
    assert dep["spec"]["selector"]["matchLabels"]["scalelab.dev/copy"] == "yours"
    assert svc["spec"]["selector"] == dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "scalelab/shop:abc123"
    assert kube_schema.validate(copies) == [] and docs[0]["metadata"]["name"] == "users"   # the original is untouched


def test_a_numpy_integer_is_a_replica_count_but_a_float_is_not(tmp_path):
    import numpy as np
    scaler = ModelAutoscaler(FakeRuntime(0.2), HpaSpec(period_s=0.1), lambda *a: np.int64(3))
    scaler.sync()
    assert scaler.history().decided.iloc[0] == 3
    (tmp_path / "hpa.py").write_text("import math\ndef desired_replicas(c, m, t, tolerance=0.1, min_replicas=1,"
                                     " max_replicas=10):\n    return float(c)\n")
    with pytest.raises(CheckFailed, match="is an int"):
        lab06.hpa.check(WorkspaceOnly(tmp_path))
