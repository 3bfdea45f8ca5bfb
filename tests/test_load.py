"""scalelab.load / scalelab.plot against a tiny real HTTP server (no mocks)."""

import asyncio
import socket
import sys
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Response
from matplotlib.figure import Figure

from scalelab import load, plot

app = FastAPI()


@app.get("/ok")
def ok():
    return Response("ok", headers={"X-Instance": "t1"})


@app.get("/fail")
def fail():
    return Response("boom", status_code=500)


@app.get("/limited")
def limited():
    return Response("slow down", status_code=429)


@app.get("/slow")
async def slow():
    await asyncio.sleep(0.05)
    return Response("zzz")


@pytest.fixture(scope="module")
def base_url():
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a background thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture(scope="module")
def ok_result(base_url):
    return load.run(base_url, ["/ok"], users=4, duration=1.5, label="ok")


def test_counts_rps_and_instances(ok_result):
    r = ok_result
    assert r.requests > 0 and r.rps > 0 and r.failures == 0
    assert list(r.summary.columns) == load.SUMMARY_COLUMNS
    assert r.summary.loc[0, "label"] == "ok" and r.summary.loc[0, "users"] == 4
    assert r.status_counts == {"200": r.requests}
    assert r.instances == {"t1": r.requests}  # from the X-Instance header
    assert sum(r.response_times.values()) == r.requests
    assert list(r.timeline.columns) == load.TIMELINE_COLUMNS and len(r.timeline) >= 1
    assert (r.timeline["rps"] > 0).all() and (r.timeline["users"] == 4).all()
    assert 1.0 <= r.summary.loc[0, "duration_s"] <= 2.5


def test_request_bound_stops_early(base_url):
    t0 = time.monotonic()
    r = load.run(base_url, ["/ok"], users=4, requests=60, duration=20)
    assert 60 <= r.requests <= 60 + 4
    assert time.monotonic() - t0 < 10  # nowhere near the 20 s duration bound


def test_failures_and_expected_status(base_url):
    r = load.run(base_url, ["/fail", "/limited"], users=4, requests=200, expect_status={429})
    assert r.status_counts["500"] > 0 and r.status_counts["429"] > 0
    assert r.failures == r.status_counts["500"]  # 429 was expected, so not a failure
    assert set(r.by_path["path"]) == {"/fail", "/limited"}

    r = load.run(base_url, ["/limited"], users=2, requests=20)
    assert r.failures == r.requests == r.status_counts["429"] == 20
    assert r.instances == {}  # /limited sets no X-Instance header


def test_weights_pick_paths(base_url):
    r = load.run(base_url, ["/ok", "/fail"], weights=[1, 0], users=2, requests=30)
    assert r.status_counts == {"200": r.requests} and r.failures == 0


def test_slow_latency_percentiles(base_url):
    r = load.run(base_url, ["/slow"], users=4, duration=1.5)
    assert r.p50 >= 50 and r.p95 >= 50 and r.p99 >= r.p95 >= r.p50
    assert r.timeline["p50_ms"].dropna().ge(50).all()


def test_connection_errors_are_failures():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = load.run(f"http://127.0.0.1:{port}", ["/ok"], users=2, requests=20, duration=5)
    assert r.failures == r.requests > 0 and set(r.status_counts) == {"error"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"users": 0}, "users"),
        ({"duration": 0}, "duration"),
        ({"paths": []}, "paths"),
        ({"paths": ["health"]}, "path must start with '/'"),
        ({"paths": ["/a", "/b"], "weights": [1]}, "weights"),
        ({"requests": 0}, "requests"),
        ({"base_url": "localhost:8000"}, "base_url"),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs = {"base_url": "http://127.0.0.1:1", "paths": ["/"], **kwargs}
    with pytest.raises(ValueError, match=message):
        load.run(**kwargs)


def test_child_failure_raises_load_error(monkeypatch):
    monkeypatch.setattr(load, "_child_command", lambda: [sys.executable, "-c", "import sys; sys.exit('kaboom')"])
    with pytest.raises(load.LoadError, match="kaboom"):
        load.run("http://127.0.0.1:1", ["/"], duration=1)


def test_hung_child_is_killed(monkeypatch):
    monkeypatch.setattr(load, "HARD_TIMEOUT_MARGIN_S", 0.5)
    monkeypatch.setattr(load, "_child_command", lambda: [sys.executable, "-c", "import time; time.sleep(30)"])
    t0 = time.monotonic()
    with pytest.raises(load.LoadError, match="did not finish"):
        load.run("http://127.0.0.1:1", ["/"], duration=0.5)
    assert time.monotonic() - t0 < 5


def test_ladder_and_plots(base_url, ok_result):
    df = load.ladder(base_url, ["/ok"], users_levels=(1, 4), duration=1)
    assert list(df["users"]) == [1, 4] and (df["rps"] > 0).all()
    slow = load.run(base_url, ["/slow"], users=2, requests=20, label="slow")
    figs = [
        plot.latency_cdf(ok_result),
        plot.latency_cdf({"ok": ok_result, "slow": slow}),
        plot.ladder(df),
        plot.timeline(ok_result),
        plot.timeline(ok_result.timeline, columns=("rps",)),
        plot.bars(df, "label", "rps", "Throughput"),
    ]
    for fig in figs:
        assert isinstance(fig, Figure)
        assert fig._repr_png_().startswith(b"\x89PNG")  # renders inline in Jupyter


def test_plot_legends_sit_beside_the_data_and_log_ms_axes_read_as_plain_numbers():
    import io

    import pandas as pd
    df = pd.DataFrame({"users": [1, 2, 4, 8], "rps": [100, 180, 250, 260], "p95_ms": [5, 8, 15, 40]})
    ladder = plot.ladder(df)                 # a twin axis: the legend is the figure's, right of both
    ladder.savefig(io.BytesIO(), format="png")
    renderer = ladder._get_renderer()
    right_edge = max(ax.get_tightbbox(renderer).x1 for ax in ladder.axes)
    (legend,) = ladder.legends
    assert legend.get_window_extent(renderer).x0 >= right_edge - 1, "the legend covers an axis"

    fig = plot.Figure(layout="constrained")
    ax = fig.subplots()
    ax.plot([0.8, 3, 40, 900], [0, 1, 2, 3], label="a series")
    ax.set_xscale("log")
    plot.plain_ms(ax.xaxis)
    plot.legend_outside(ax)
    fig.savefig(io.BytesIO(), format="png")
    renderer = fig._get_renderer()
    assert ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    labels = {t.get_text() for t in ax.get_xticklabels()}
    assert {"1", "10", "100"} <= labels and not any("10^" in l or "$" in l for l in labels), labels
