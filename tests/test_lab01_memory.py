"""Lab 01's memory leak, on a real lab 1 stack (local): GET /debug/memory answers the process's RSS
and tracemalloc's top sites in a fixed schema (bad input: a JSON 422, no baseline: a JSON 409); it
exists only where the setting mounts it; a leaky avatar memo grows the service's RSS and tracemalloc
leads to its line, which the exercise's live measure rejects; GET /avatar is deterministic."""

import httpx
import pytest

from conftest import solved_stack
from scalelab.labs import lab01
from scalelab.references import solve
from shop.config import Settings
from shop.main import create_app

LEAKY = """_rendered = {}


def cached_avatar(name, render):
    if name not in _rendered:
        _rendered[name] = render(name)
    return _rendered[name]
"""
LEAK_LINE = 6

lab1 = solved_stack(1)


@pytest.fixture
def leaky(lab1):
    (lab1.workspace / "avatar_cache.py").write_text(LEAKY)
    lab1.restart("users")
    yield lab1
    solve(lab1)
    lab1.restart("users")


def test_debug_memory_answers_rss_from_proc_in_its_schema(lab1):
    state = httpx.get(f"{lab1.url('users')}/debug/memory", timeout=10).json()
    assert set(state) == {"instance", "rss_bytes", "rss_source", "tracing", "frames", "traced_bytes",
                          "traced_peak_bytes", "baseline"}
    assert state["instance"] == "users-1" and state["rss_source"] == "/proc/self/status VmRSS"
    assert 20e6 < state["rss_bytes"] < 2e9 and state["tracing"] is False and state["traced_bytes"] is None


@pytest.mark.parametrize("method, path, params", [
    ("GET", "/debug/memory/top", {"group_by": "function"}),
    ("GET", "/debug/memory/top", {"limit": 0}),
    ("GET", "/debug/memory/top", {"limit": "many"}),
    ("POST", "/debug/memory/baseline", {"frames": 0}),
    ("POST", "/debug/memory/baseline", {"frames": 51}),
    ("GET", "/avatar", {}),
    ("GET", "/avatar", {"name": ""}),
    ("GET", "/avatar", {"name": "x" * 101}),
])
def test_bad_input_to_the_memory_and_avatar_routes_is_a_json_422(lab1, method, path, params):
    answer = httpx.request(method, f"{lab1.url('users')}{path}", params=params, timeout=10)
    assert answer.status_code == 422 and answer.json()["error"] == "validation_error", answer.text


def test_top_without_a_baseline_is_a_json_409_naming_the_call_to_make(lab1):
    httpx.delete(f"{lab1.url('users')}/debug/memory/baseline", timeout=10)
    answer = httpx.get(f"{lab1.url('users')}/debug/memory/top", timeout=10)
    assert answer.status_code == 409 and answer.json()["error"] == "conflict"
    assert "POST /debug/memory/baseline" in answer.json()["detail"]


def test_the_debug_routes_exist_only_when_the_setting_mounts_them():
    def paths(settings: Settings) -> set[str]:
        return set(create_app(settings).openapi()["paths"])   # the published contract: every route
    assert "/avatar" in paths(Settings()) and not any(p.startswith("/debug") for p in paths(Settings()))
    assert {"/debug/memory", "/debug/memory/top", "/debug/memory/baseline"} <= paths(Settings(debug_memory=True))


def test_an_avatar_is_the_same_svg_for_the_same_name_and_another_for_another(lab1):
    get = lambda name: httpx.get(f"{lab1.url('users')}/avatar", params={"name": name}, timeout=10)   # noqa: E731
    ada, again, grace = get("Ada Lovelace"), get("Ada Lovelace"), get("Grace Hopper")
    assert ada.status_code == again.status_code == grace.status_code == 200
    assert ada.json() == again.json() and ada.json()["svg"] != grace.json()["svg"]
    assert ada.json()["svg"].startswith("<svg") and len(ada.json()["svg"]) > 10_000


def test_tracemalloc_leads_from_the_top_site_to_the_line_of_the_leaky_memo(leaky):
    state = lab01.baseline(leaky, frames=4)
    try:
        assert state["tracing"] and state["frames"] == 4 and state["baseline"]
        lab01.send_new_names(leaky, 200, label="traced")
        top = lab01.top_allocations(leaky, limit=3)
    finally:
        lab01.stop_tracing(leaky)
    first = top["top"][0]
    frames = [f"{f['file'].rsplit('/', 1)[-1]}:{f['line']}" for f in first["traceback"]]
    assert first["where"].rsplit("/", 1)[-1].startswith("avatars.py:") and f"avatar_cache.py:{LEAK_LINE}" in frames
    assert first["size_diff_bytes"] > 200 * 10_000 and first["count_diff"] >= 150, first
    assert lab01.memory(leaky)["tracing"] is False


def test_the_live_measure_of_the_check_rejects_the_leak_and_passes_the_reference(leaky):
    _, leaked_mb = lab01.rss_growth(leaky, lab01.LIVE_WARMUP, lab01.LIVE_NAMES)
    solve(leaky)
    leaky.restart("users")
    _, bounded_mb = lab01.rss_growth(leaky, lab01.LIVE_WARMUP, lab01.LIVE_NAMES)
    assert leaked_mb > 2 * lab01.LIVE_GROWTH_LIMIT_MB > 4 * bounded_mb, (leaked_mb, bounded_mb)


def test_growth_per_1000_is_the_median_slope_and_shrugs_off_one_outlier():
    import pandas as pd

    class Run:
        rps = 500.0
    t = [i * 0.2 for i in range(30)]
    mb = [100 + 1.0 * x for x in t]            # 1 MB per second at 500 requests/s: 2 MB per 1,000
    mb[17] += 80                               # one sample read mid-spike
    assert lab01.growth_per_1000(pd.DataFrame({"t_s": t, "rss_mb": mb}), Run()) == pytest.approx(2.0, rel=0.05)
