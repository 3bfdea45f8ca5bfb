"""scalelab.loadtools: ab's and Vegeta's output parsed (recorded samples), a missing tool said in one
line, and both tools run for real against lab 01's service — a freeze showing coordinated omission."""

import time

import httpx
import pandas as pd
import pytest

from scalelab import loadtools, plot
from scalelab.errors import RuntimeUnavailable
from scalelab.load import LoadError

from conftest import solved_stack

# `ab -n 2000 -c 100 -g requests.tsv http://127.0.0.1:31976/users/1` (ab 2.3, Debian's apache2-utils)
AB_REPORT = """\
This is ApacheBench, Version 2.3 <$Revision$>
Benchmarking 127.0.0.1 (be patient)
Completed 200 requests
Finished 2000 requests


Server Software:        uvicorn
Server Hostname:        127.0.0.1
Server Port:            31976

Document Path:          /users/1
Document Length:        87 bytes

Concurrency Level:      100
Time taken for tests:   1.492 seconds
Complete requests:      2000
Failed requests:        0
Total transferred:      640000 bytes
HTML transferred:       174000 bytes
Requests per second:    1340.55 [#/sec] (mean)
Time per request:       74.596 [ms] (mean)
Time per request:       0.746 [ms] (mean, across all concurrent requests)
Transfer rate:          418.92 [Kbytes/sec] received

Connection Times (ms)
              min  mean[+/-sd] median   max
Connect:        0    0   0.6      0       4
Processing:     7   72  17.9     68     164
Waiting:        1   72  17.8     68     163
Total:          8   73  18.1     68     167

Percentage of the requests served within a certain time (ms)
  50%     68
  66%     73
  75%     80
  80%     84
  90%     98
  95%    106
  98%    124
  99%    147
 100%    167 (longest request)
"""
AB_TSV = """\
starttime\tseconds\tctime\tdtime\tttime\twait
Thu Dec 03 08:08:16 2026\t1796285296\t0\t167\t167\t166
Thu Dec 03 08:08:15 2026\t1796285295\t1\t7\t8\t1
Thu Dec 03 08:08:15 2026\t1796285295\t0\t14\t14\t13
"""
# `ab -n 5 -c 2 http://127.0.0.1:31976/users/abc`: every answer a 422 — only the "Non-2xx" line says so
AB_NON_2XX = AB_REPORT.replace("Failed requests:        0\n", "Failed requests:        1\nNon-2xx responses:      5\n")

# `vegeta attack -rate=3/s -duration=1s` on /users/1, /users/abc and a closed port (v12.13.0)
VEGETA_JSON = (
    '{"latencies":{"total":21623673,"mean":7207891,"50th":2803068,"90th":18287685,"95th":18287685,'
    '"99th":18287685,"max":18287685,"min":532920},"bytes_in":{"total":252,"mean":84},"bytes_out":{"total":0,'
    '"mean":0},"earliest":"2026-12-03T08:12:37.924933791Z","latest":"2026-12-03T08:12:38.590776238Z",'
    '"end":"2026-12-03T08:12:38.591309158Z","duration":665842447,"wait":532920,"requests":3,'
    '"rate":4.505570369562216,"throughput":1.5006557107624898,"success":0.3333333333333333,'
    '"status_codes":{"0":1,"200":1,"422":1},"errors":["422 Unprocessable Entity","Get \\"http://127.0.0.1:1/x\\": '
    'dial tcp 0.0.0.0:0-\\u003e127.0.0.1:1: connect: connection refused"]}'
)
VEGETA_CSV = """\
1796285557924933791,200,2803068,0,87,,eyJpZCI6MX0=,,0,GET,http://127.0.0.1:31976/users/1,Q29udGVudC1MZW5ndGg6IDg3DQo=
1796285558258138366,422,18287685,0,165,422 Unprocessable Entity,eyJlcnJvciI6InZhbGlkYXRpb25fZXJyb3IifQ==,,1,GET,http://127.0.0.1:31976/users/abc,Q29udGVudC1MZW5ndGg6IDE2NQ0K
1796285558590776238,0,532920,0,0,"Get ""http://127.0.0.1:1/x"": dial tcp 0.0.0.0:0->127.0.0.1:1: connect: connection refused",,,2,GET,http://127.0.0.1:1/x,
"""


def test_ab_report_gives_the_summary_and_per_request_times():
    summary, latencies, started_at = loadtools.parse_ab(AB_REPORT, AB_TSV)
    assert summary == {"requests": 2000, "failures": 0, "rps": 1340.55, "p50_ms": 68.0, "p95_ms": 106.0,
                       "p99_ms": 147.0, "max_ms": 167.0, "duration_s": 1.492}
    assert started_at == 1796285295.0
    assert list(latencies.columns) == loadtools.LATENCY_COLUMNS
    assert latencies.start_s.tolist() == [0.0, 0.0, 1.0]           # sorted by start, whole seconds
    assert latencies.latency_ms.tolist() == [8.0, 14.0, 167.0]     # ttime: connect + processing
    assert latencies.status.isna().all()                           # ab records no status per request


def test_ab_counts_non_2xx_answers_as_failures():
    summary, _, _ = loadtools.parse_ab(AB_NON_2XX, AB_TSV)
    assert summary["failures"] == 1 + 5


def test_ab_output_without_percentiles_is_a_load_error_not_a_keyerror():
    with pytest.raises(LoadError, match="no latency percentiles"):
        loadtools.parse_ab("apr_socket_recv: Connection refused (111)\n", "")
    with pytest.raises(LoadError, match="per-request"):
        loadtools.parse_ab(AB_REPORT, "")


def test_vegeta_report_and_csv_give_the_summary_and_every_request():
    summary, latencies, started_at = loadtools.parse_vegeta(VEGETA_JSON, VEGETA_CSV)
    assert summary["requests"] == 3 and summary["failures"] == 2     # a 422 and a refused connection
    assert summary["p50_ms"] == 2.8 and summary["max_ms"] == 18.29
    assert summary["rps"] == round(3 / ((665842447 + 532920) / 1e9), 2) and summary["duration_s"] == 0.666
    assert started_at == pytest.approx(1796285557.924933791)
    assert latencies.status.tolist() == [200, 422, 0]                # 0: no answer at all
    assert latencies.latency_ms.round(3).tolist() == [2.803, 18.288, 0.533]
    assert latencies.start_s.round(3).tolist() == [0.0, 0.333, 0.666]


def test_vegeta_report_and_csv_that_disagree_are_refused():
    with pytest.raises(LoadError, match="3 requests, its csv 2"):
        loadtools.parse_vegeta(VEGETA_JSON, "".join(VEGETA_CSV.splitlines(keepends=True)[:2]))


def test_a_missing_tool_is_one_line_naming_make_tools_lab1(monkeypatch, tmp_path):
    monkeypatch.setenv("SCALELAB_TOOLS_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeUnavailable, match=r"vegeta not found .*`make tools-lab1`") as missing:
        loadtools.vegeta("http://127.0.0.1:1", ["/"], rate=1, seconds=1)
    assert "\n" not in str(missing.value)


def test_the_tools_cache_comes_before_path(monkeypatch, tmp_path):
    cached = tmp_path / "bin" / "ab"
    cached.parent.mkdir()
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    monkeypatch.setenv("SCALELAB_TOOLS_CACHE", str(tmp_path))
    assert loadtools.find("ab") == str(cached)


# -- live: lab 01's service on the local runtime -----------------------------------------------
lab1 = solved_stack(1)
STALL_S = 1.0
SLOW_MS = 250


@pytest.fixture(scope="module")
def user_path(lab1):
    user = httpx.post(f"{lab1.url('users')}/users", json={"email": "loadtools@example.com", "name": "Load"}, timeout=10)
    assert user.status_code == 201, user.text
    return f"/users/{user.json()['id']}"


def _need(tool):
    try:
        loadtools.find(tool)
    except RuntimeUnavailable as exc:
        pytest.skip(f"{exc} (make test installs it first)")


def test_ab_and_vegeta_measure_the_live_service_side_by_side(lab1, user_path):
    _need("ab")
    _need("vegeta")
    closed = loadtools.ab(lab1.url("users") + user_path, requests=500, concurrency=20)
    opened = loadtools.vegeta(lab1.url("users"), [user_path], rate=100, seconds=2)
    assert closed.requests == 500 and closed.failures == 0 and len(closed.latencies) == 500
    assert closed.command.startswith("ab -n 500 -c 20 ") and closed.keepalive_requests is None
    assert closed.command.endswith(f" -g requests.tsv {lab1.url('users')}{user_path}"), closed.command
    assert opened.requests == 200 and opened.failures == 0 and (opened.latencies.status == 200).all()
    assert opened.rps == pytest.approx(100, rel=0.2)                    # the rate asked for, not more
    side_by_side = loadtools.table(closed, opened)
    assert side_by_side.model.tolist() == ["closed", "open"] and list(side_by_side.columns) == loadtools.TABLE_COLUMNS
    assert plot.latency_cdf({"ab": closed, "vegeta": opened}) is not None


def test_a_freeze_delays_c_requests_of_a_closed_loop_but_every_arrival_of_an_open_model(lab1, user_path):
    """Coordinated omission: ab's 5 clients wait with the frozen service and send nothing, so it records
    ~5 slow requests; Vegeta keeps sending 100 a second, and records every one sent during the freeze."""
    _need("ab")
    _need("vegeta")
    member = lab1.members("users")[0]

    def freeze():
        frozen_at = time.time()
        lab1.kill(member, "STOP")
        try:
            time.sleep(STALL_S)    # the stall itself (not a wait for readiness)
        finally:
            lab1.kill(member, "CONT")
        return frozen_at, time.time()

    closed = loadtools.ab(lab1.url("users") + user_path, requests=10**6, concurrency=5, seconds=4,
                          during=freeze, at_s=1.0)
    opened = loadtools.vegeta(lab1.url("users"), [user_path], rate=100, seconds=4, during=freeze, at_s=1.0)
    for run in (closed, opened):
        assert run.failures == 0, run
        assert run.max_ms >= 0.8 * STALL_S * 1000, f"{run.label} saw no stall (slowest {run.max_ms:.0f} ms)"
    assert closed.slower_than(SLOW_MS) <= 3 * 5, closed.latencies.latency_ms.nlargest(20).tolist()
    assert opened.slower_than(SLOW_MS) >= 0.5 * STALL_S * 100
    share = pd.Series({r.label: r.slower_than(SLOW_MS) / r.requests for r in (closed, opened)})
    assert share.iloc[1] >= 5 * share.iloc[0], share
    assert plot.around_stall({"ab": closed, "vegeta": opened}, slow_ms=SLOW_MS) is not None
