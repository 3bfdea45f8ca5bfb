"""Hostile requests get a 4xx JSON answer, or a closed connection — never a hang, never a 5xx.

Oversized bodies, wrong content types, malformed JSON, deep nesting and slow clients, sent to
one replica directly (uvicorn and the app) and through nginx, on a solved lab 02 stack: on
``local``, and on ``compose`` under ``-m compose``. The limits (documented in the OpenAPI
document's description and in stack/deploy/nginx/nginx.conf.template): a replica takes a body
of at most ``SHOP_MAX_BODY_BYTES`` (64 KiB) within ``SHOP_BODY_TIMEOUT_S`` (10 s) of headers
that arrived within ``SHOP_HEADERS_TIMEOUT_S`` (10 s); nginx at most 1 MB, each read within 10 s.
"""

import json
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest

from scalelab import db

from conftest import completed_stack

REPLICA_LIMIT = 64 * 1024
NGINX_LIMIT = 1024 * 1024
HANG_S = 60   # far above every server timeout (10 s): a socket still silent by then is held for good


@pytest.fixture(scope="module", params=["local", pytest.param("compose", marks=pytest.mark.compose)])
def lab(request, tmp_path_factory):
    if request.param == "local":
        yield request.getfixturevalue("lab2")   # the session's lab 02 stack (conftest)
        return
    stack = completed_stack(tmp_path_factory.mktemp("hostile-compose"), 2, "compose")
    yield stack
    stack.down(purge=True)


@pytest.fixture(params=["replica", "nginx"])
def entry(request, lab) -> str:
    """Where the request goes: straight to users-1, or to nginx in front of the replicas."""
    return lab.member_url("users-1") if request.param == "replica" else lab.url("users")


def users_count(lab) -> int:
    return db.fetchval(lab.database_url(), "SELECT count(*) FROM users")


def assert_json_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    assert set(response.json()) == {"error", "detail"} and response.json()["error"] == code, response.text[:300]


def post_users(entry: str, content, content_type: str | None = "application/json") -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    return httpx.post(f"{entry}/users", content=content, headers=headers, timeout=30)


def a_user(name: str = "Hostile") -> bytes:
    return json.dumps({"email": f"h-{uuid.uuid4().hex[:10]}@example.com", "name": name}).encode()


# -- oversized bodies --------------------------------------------------------------------
def test_a_body_over_the_replica_limit_is_413_json_and_stores_nothing(lab, entry):
    before = users_count(lab)
    big = a_user("x" * 50).replace(b'"name"', b'"padding": "' + b"p" * REPLICA_LIMIT + b'", "name"')
    assert REPLICA_LIMIT < len(big) < NGINX_LIMIT
    for _ in range(5):   # through nginx: a replica that closed on an unread body made some of these a 502
        assert_json_error(post_users(entry, big), 413, "payload_too_large")
    assert users_count(lab) == before


def test_a_body_over_nginx_limit_is_413_json_from_whoever_sees_it_first(lab, entry):
    before = users_count(lab)
    assert_json_error(post_users(entry, b"x" * (2 * NGINX_LIMIT)), 413, "payload_too_large")

    def chunks():   # no Content-Length: the limit holds for a chunked body too
        for _ in range(2 * NGINX_LIMIT // 65536):
            yield b"y" * 65536

    assert_json_error(post_users(entry, chunks()), 413, "payload_too_large")
    assert users_count(lab) == before


# -- content types -----------------------------------------------------------------------
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml"])
def test_a_body_that_is_not_declared_json_is_415_json_and_stores_nothing(lab, entry, content_type):
    before = users_count(lab)
    assert_json_error(post_users(entry, a_user(), content_type), 415, "unsupported_media_type")
    assert users_count(lab) == before


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge-patch+json"])
def test_json_with_parameters_or_a_json_suffix_is_json(entry, content_type):
    assert post_users(entry, a_user(), content_type).status_code == 201


# -- malformed JSON ----------------------------------------------------------------------
@pytest.mark.parametrize("raw, status, code", [
    (b'{"email": ', 422, "validation_error"),
    (b'{"email": "a@example.com", "name": "A"} trailing', 422, "validation_error"),
    (b'{"email": "u@example.com", "name": "\xc3\x28"}', 400, "bad_request"),
    (b'{"email": "s@example.com", "name": "lone \\ud800 surrogate"}', 422, "validation_error"),
    (b'{"email": "n@example.com", "name": NaN}', 422, "validation_error"),
], ids=["truncated", "trailing-garbage", "not-utf8", "lone-surrogate", "nan"])
def test_malformed_json_is_a_4xx_json_answer_and_stores_nothing(lab, entry, raw, status, code):
    before = users_count(lab)
    assert_json_error(post_users(entry, raw), status, code)
    assert users_count(lab) == before


# -- deep nesting ------------------------------------------------------------------------
def test_json_nested_too_deep_to_parse_is_400_json(lab, entry):
    depth = 30_000   # 60 KB: under the body limit, far over what the JSON parser recurses into
    before = users_count(lab)
    assert_json_error(post_users(entry, b"[" * depth + b"]" * depth), 400, "bad_request")
    assert users_count(lab) == before


def test_json_nested_deep_inside_a_field_is_422_json(entry):
    nested = b"[" * 900 + b"]" * 900
    raw = b'{"email": "deep@example.com", "name": ' + nested + b"}"
    assert_json_error(post_users(entry, raw), 422, "validation_error")


# -- slow clients and broken HTTP --------------------------------------------------------
def stall(url: str, request: bytes) -> bytes:
    """Send an incomplete ``request`` and stop; return what the server sends before it closes
    the connection (b"" = closed without an answer). Fails if it is still open after HANG_S."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=HANG_S) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except socket.timeout:
            pytest.fail(f"{url} held a stalled client for {HANG_S} s without answering or closing")
        except ConnectionResetError:
            pass
    return answer


SLOW_HEADERS = b"GET /health HTTP/1.1\r\nHost: lab\r\nX-Drip: "
SLOW_BODY = (b"POST /users HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
             b'{"email": ')


def test_a_client_that_stalls_is_cut_off_with_a_408_json_or_a_close_never_held(request, entry):
    with ThreadPoolExecutor(2) as pool:   # both stalls at once: one wait
        headers, body = pool.map(lambda raw: stall(entry, raw), [SLOW_HEADERS, SLOW_BODY])
    assert headers == b"", headers[:300]                     # headers never completed: closed
    if request.node.callspec.params["entry"] == "replica":   # the replica answers a stalled body ...
        head, _, payload = body.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and json.loads(payload)["error"] == "request_timeout", body[:300]
    else:                                                    # ... nginx (which buffers bodies) closes
        assert body == b"", body[:300]                       # the connection, as it does for headers


def test_bytes_that_are_not_http_get_a_400_json(entry):
    answer = stall(entry, b"THIS IS NOT HTTP\r\n\r\n")
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"application/json" in head.lower() and json.loads(payload)["error"] == "bad_request", answer[:300]


# -- nginx's own errors --------------------------------------------------------------------
def test_with_every_replica_down_nginx_answers_502_or_504_json(lab):
    replicas = lab.members("users")
    for member in replicas:
        lab.kill(member)
    try:
        answer = httpx.get(f"{lab.url('users')}/users/1", timeout=30)
    finally:
        for member in replicas:
            lab.start(member)
    # A refused connection (local: nothing listens on the port) is a 502; a replica whose address
    # no longer answers at all (compose: the killed container's IP) is a connect timeout, 504.
    expected = {502: "bad_gateway", 504: "gateway_timeout"}
    assert answer.status_code in expected, answer.text[:300]
    assert_json_error(answer, answer.status_code, expected[answer.status_code])
    assert httpx.get(f"{lab.url('users')}/health", timeout=10).status_code == 200
