"""Lab 06's deploys, the parts that need no running stack: nginx's weights from a split, the split's
validation in ``Stack.route``, the release file green reads, and the planted bug's middleware.
(The switches under load run in lab 06's notebook on every runtime: tests/test_notebooks.py.)"""

import asyncio
import json

import pytest

from scalelab import Stack
from scalelab.errors import ScalelabError
from scalelab.runtimes.common import nginx
from shop import release


class Home:
    """What the split's helpers see of a runtime: its home directory."""

    def __init__(self, path):
        self.home = path


ADDRESSES = {"users": ["10.0.0.1:8000", "10.0.0.2:8000"], "express": [], "green": ["10.0.0.3:8000", "10.0.0.4:8000"]}


def test_without_a_split_every_member_is_a_server_alike(tmp_path):
    assert nginx.weighted(Home(tmp_path), ADDRESSES) == ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000",
                                                        "10.0.0.4:8000"]
    assert nginx.carries_traffic(Home(tmp_path), "green")


def test_a_split_weights_each_colour_by_its_share_over_its_members(tmp_path):
    home = Home(tmp_path)
    nginx.set_routes(home, {"users": 90, "green": 10})
    servers = nginx.weighted(home, ADDRESSES)
    weights = {server.split()[0]: int(server.split("weight=")[1]) for server in servers}
    assert weights == {"10.0.0.1:8000": 2700, "10.0.0.2:8000": 2700, "10.0.0.3:8000": 300, "10.0.0.4:8000": 300}
    assert sum(w for a, w in weights.items() if a in ADDRESSES["green"]) * 9 == sum(
        w for a, w in weights.items() if a in ADDRESSES["users"])


def test_a_colour_without_a_share_is_left_out_and_not_waited_for(tmp_path):
    home = Home(tmp_path)
    nginx.set_routes(home, {"green": 100})
    assert nginx.weighted(home, ADDRESSES) == ["10.0.0.3:8000 weight=3000", "10.0.0.4:8000 weight=3000"]
    assert not nginx.carries_traffic(home, "users") and nginx.carries_traffic(home, "green")
    nginx.set_routes(home, None)
    assert nginx.routes(home) is None and len(nginx.weighted(home, ADDRESSES)) == 4


def test_the_weighted_servers_fill_the_learners_server_line(tmp_path):
    home = Home(tmp_path)
    nginx.set_routes(home, {"users": 50, "green": 50})
    text = nginx.expand("upstream users {\n    server {address} max_fails=1 fail_timeout=2s;\n}",
                        nginx.weighted(home, ADDRESSES))
    assert "server 10.0.0.1:8000 weight=1500 max_fails=1 fail_timeout=2s;" in text
    assert "server 10.0.0.4:8000 weight=1500 max_fails=1 fail_timeout=2s;" in text


@pytest.mark.parametrize("shares, message", [
    ({"users": 90, "blue": 10}, r"'blue' is not behind this lab's nginx — the services are users, green"),
    ({"users": 90, "green": 20}, r"add up to 110 %"),
    ({"users": 95.5, "green": 4.5}, r"users's share must be a whole percent"),
    ({"users": True}, r"users's share must be a whole percent"),
    ({"users": -10, "green": 110}, r"whole percent from 0 to 100"),
    ({}, r"takes \{service: percent\}"),
    ([("users", 100)], r"takes \{service: percent\}"),
    ({"green": 100}, r"green has no members to send 100 % to — stack.scale\('green', 2\) first"),
])
def test_route_refuses_a_split_it_cannot_run_in_one_line(tmp_path, shares, message):
    stack = Stack(lab=6, runtime="local", state_dir=tmp_path)     # not up: the split is refused first
    with pytest.raises(ScalelabError, match=message):
        stack.route(shares)
    assert nginx.routes(stack.runtime) is None


def test_route_names_the_lab_without_nginx(tmp_path):
    with pytest.raises(ScalelabError, match="lab 1 has no nginx"):
        Stack(lab=1, runtime="local", state_dir=tmp_path).route({"users": 100})


# -- the release green runs ---------------------------------------------------------------------
def test_no_release_file_is_a_release_without_a_bug(tmp_path):
    assert release.load(tmp_path, "green.json") == release.Release(0.0)
    assert release.load(tmp_path, None) == release.Release(0.0)
    (tmp_path / "green.json").write_text(json.dumps({"planted_error_rate": 0.2}))
    assert release.load(tmp_path, "green.json").planted_error_rate == 0.2


@pytest.mark.parametrize("text, message", [
    ("{planted: 1}", "green.json is not valid JSON"),
    ('{"error_rate": 0.2}', "at most planted_error_rate"),
    ('{"planted_error_rate": 1.5}', "a number from 0 to 1, got 1.5"),
    ('{"planted_error_rate": true}', "a number from 0 to 1, got True"),
    ("[0.2]", "must be an object"),
])
def test_a_release_file_the_service_cannot_run_is_named(text, message):
    with pytest.raises(release.ReleaseError, match=message):
        release.parse(text, "green.json")


def _answer(middleware, path: str) -> tuple[int, dict]:
    sent = []

    async def send(message):
        sent.append(message)

    async def run():
        await middleware({"type": "http", "path": path, "method": "GET"}, None, send)
    asyncio.run(run())
    return sent[0]["status"], (json.loads(sent[1]["body"]) if len(sent) > 1 and sent[1].get("body") else {})


async def _ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_the_planted_bug_fails_api_requests_and_spares_the_probes():
    always = release.PlantedErrors(_ok, rate=0.2, draw=lambda: 0.1)    # every draw under the rate
    status, body = _answer(always, "/users/1")
    assert status == 500 and body["error"] == "internal_error" and "planted" in body["detail"]
    for probe in ("/health", "/ready", "/metrics"):
        assert _answer(always, probe)[0] == 200
    never = release.PlantedErrors(_ok, rate=0.2, draw=lambda: 0.5)
    assert _answer(never, "/users/1")[0] == 200
