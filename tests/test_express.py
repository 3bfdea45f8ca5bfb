"""Lab 02's Express replica (stack/shop-node) keeps the user service's contract, on a solved lab 02
stack with ``express-1`` beside the three FastAPI replicas (local; compose under ``-m compose``;
kind in ``make test-kind``).

* The contract it publishes is the FastAPI service's own document cut to its paths
  (tools/node_contract.py), and is not stale.
* schemathesis against it, every check and phase, with a fixed and a drawn seed (as
  test_contract.py does for the FastAPI services).
* The same requests to ``users-1`` and ``express-1``: the same status, error code, problem
  locations and the headers a client acts on (Allow, WWW-Authenticate, Cache-Control).
* Every bad token lab 02's exercise refuses, Express refuses too; a token and a password hash
  made by either kind work on the other (lab02.across_languages).
* Scaled in and out, nginx follows; without Node the scale-out is one line naming the fix.
"""

import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from scalelab import binaries, fuzz
from scalelab.errors import RuntimeUnavailable
from scalelab.labs import lab02

from conftest import completed_stack

ROOT = Path(__file__).resolve().parents[1]
MAX_EXAMPLES = 10
FIXED_SEED = 20
DRAWN_SEED = int(os.environ.get("SCALELAB_FUZZ_SEED") or secrets.randbelow(2**31))
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module", params=["local", pytest.param("compose", marks=pytest.mark.compose),
                                        pytest.param("kind", marks=[pytest.mark.kind, pytest.mark.kind_sweep])])
def lab2(request, tmp_path_factory):
    stack = completed_stack(tmp_path_factory.mktemp(f"express-{request.param}"), 2, request.param)
    stack.scale("express", 1)
    yield stack
    stack.down(purge=True)


def new_account(stack) -> dict:
    """A user with a password, made through nginx, and a token for them."""
    email, password = f"node-{uuid.uuid4().hex[:8]}@example.com", "contract-password"
    created = httpx.post(f"{stack.url('users')}/users", json={"email": email, "name": "Node", "password": password},
                         timeout=10)
    assert created.status_code == 201, created.text
    token = httpx.post(f"{stack.url('users')}/auth/token", json={"email": email, "password": password},
                       timeout=10).json()["access_token"]
    return {**created.json(), "password": password, "token": token}


@pytest.fixture(scope="module")
def account(lab2) -> dict:
    """The account the comparisons use: never user 1, which the cases name as "another user"."""
    first = new_account(lab2)
    found = new_account(lab2)
    assert first["id"] < found["id"] and found["id"] != 1
    return found


def test_the_published_contract_is_the_fastapi_services_own_cut_to_its_paths():
    out = subprocess.run([sys.executable, "tools/node_contract.py", "--check"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("seed, phases", [pytest.param(FIXED_SEED, fuzz.PHASES, id=f"fixed-seed-{FIXED_SEED}"),
                                          pytest.param(DRAWN_SEED, ("fuzzing", "stateful"),
                                                       id=f"drawn-seed-{DRAWN_SEED}")])
def test_schemathesis_finds_no_failure_in_the_express_replica(lab2, seed, phases):
    fuzzer = new_account(lab2)   # its own: the stateful phase may delete it
    run = fuzz.run(lab2.member_url("express-1"), seed=seed, phases=phases, max_examples=MAX_EXAMPLES,
                   headers={"Authorization": f"Bearer {fuzzer['token']}"})
    print(f"express-1: {run.summary()}")
    assert run.passed, f"{run.summary()}\n{run.failures.to_string()}\n{run.details()}"
    assert run.generated >= 50, f"too few requests to mean anything: {run.summary()}"


# -- the same request to both kinds ----------------------------------------------------------
def cases(account: dict) -> dict[str, tuple]:
    """name -> (method, path, body bytes or None, headers); ``{id}`` is the account's id."""
    bearer = {"authorization": f"Bearer {account['token']}"}
    login = {"email": account["email"], "password": account["password"]}
    return {
        "health": ("GET", "/health", None, {}),
        "read": ("GET", "/users/{id}", None, {}),
        "missing user": ("GET", "/users/999999999", None, {}),
        "id zero": ("GET", "/users/0", None, {}),
        "id not a number": ("GET", "/users/abc", None, {}),
        "id over bigint": ("GET", "/users/9223372036854775808", None, {}),
        "id with a leading zero": ("GET", "/users/0{id}", None, {}),
        "page": ("GET", "/users?limit=2&offset=0", None, {}),
        "page too large": ("GET", "/users?limit=101", None, {}),
        "page limit not a number": ("GET", "/users?limit=x&offset=-1", None, {}),
        "sign up, duplicate email": ("POST", "/users", {"email": account["email"], "name": "Twin"}, {}),
        "sign up, bad fields": ("POST", "/users", {"email": "not-an-email", "name": "", "password": "short"}, {}),
        "sign up, control character": ("POST", "/users", {"email": "c@example.com", "name": "a\u0007b"}, {}),
        "sign up, extra field": ("POST", "/users", {"email": "e@example.com", "name": "E", "admin": True}, {}),
        "sign up, wrong types": ("POST", "/users", {"email": 5, "name": None}, {}),
        "sign up, no body": ("POST", "/users", b"", {}),
        "sign up, a list": ("POST", "/users", b"[]", {}),
        "sign up, null": ("POST", "/users", b"null", {}),
        "sign up, broken JSON": ("POST", "/users", b"{bad", {}),
        "sign up, not UTF-8": ("POST", "/users", b'{"email":"u@example.com","name":"\xff"}', {}),
        "sign up, not JSON": ("POST", "/users", b"{}", {"content-type": "text/plain"}),
        "sign up, too large": ("POST", "/users", b'{"name":"' + b"x" * 70_000 + b'"}', {}),
        "log in, wrong password": ("POST", "/auth/token", {**login, "password": "not-the-password"}, {}),
        "log in, unknown email": ("POST", "/auth/token", {**login, "email": "nobody-here@example.com"}, {}),
        "log in, ttl as a float": ("POST", "/auth/token", {**login, "ttl_s": 60.0}, {}),
        "log in, ttl as a bool": ("POST", "/auth/token", {**login, "ttl_s": True}, {}),
        "log in, ttl zero": ("POST", "/auth/token", {**login, "ttl_s": 0}, {}),
        "log in": ("POST", "/auth/token", {**login, "ttl_s": 60}, {}),
        "patch, no token": ("PATCH", "/users/{id}", {"name": "X"}, {}),
        "patch, not Bearer": ("PATCH", "/users/{id}", {"name": "X"}, {"authorization": "Basic abc"}),
        "patch, garbage token": ("PATCH", "/users/{id}", {"name": "X"}, {"authorization": "Bearer a.b.c"}),
        "patch, bad field with no token": ("PATCH", "/users/{id}", {"name": 5}, {}),
        "patch, broken JSON with no token": ("PATCH", "/users/{id}", b"{bad", {}),
        "patch, bad id with no token": ("PATCH", "/users/abc", {"name": "X"}, {}),
        "patch, another user": ("PATCH", "/users/1", {"name": "X"}, bearer),
        "patch, bad field": ("PATCH", "/users/{id}", {"name": ""}, bearer),
        "patch, nothing": ("PATCH", "/users/{id}", {}, bearer),
        "delete, no token": ("DELETE", "/users/{id}", None, {}),
        "delete, another user": ("DELETE", "/users/1", None, bearer),
        "method not allowed": ("PUT", "/users/{id}", None, {}),
        "HEAD": ("HEAD", "/users/{id}", None, {}),
        "OPTIONS": ("OPTIONS", "/users", None, {}),
        "unknown path": ("GET", "/nope", None, {}),
        "unknown path, POST": ("POST", "/nope", {}, {}),
    }


def answer(base: str, method: str, path: str, body, headers: dict, user_id: int) -> dict:
    content = body if isinstance(body, bytes) else (None if body is None else httpx.Request(
        "POST", "/", json=body).content)
    r = httpx.request(method, f"{base}{path.replace('{id}', str(user_id))}", content=content,
                      headers={**JSON, **headers}, timeout=10)
    parsed = r.json() if r.content and "json" in r.headers.get("content-type", "") else None
    problems = [(tuple(p["loc"]), p["type"]) for p in parsed["detail"]] if (
        isinstance(parsed, dict) and isinstance(parsed.get("detail"), list)) else None
    return {"status": r.status_code, "error": parsed.get("error") if isinstance(parsed, dict) else None,
            "problems": sorted(set(problems)) if problems else None,   # FastAPI repeats a path problem
            "allow": r.headers.get("allow"), "challenge": r.headers.get("www-authenticate", "")[:30],
            "cache-control": r.headers.get("cache-control"),
            "keys": sorted(parsed) if isinstance(parsed, dict) and r.status_code < 300 else None}


def test_both_kinds_answer_every_request_alike(lab2, account):
    python, node = lab2.member_url("users-1"), lab2.member_url("express-1")
    differences = {}
    for name, (method, path, body, headers) in cases(account).items():
        theirs, ours = (answer(base, method, path, body, headers, account["id"]) for base in (python, node))
        if theirs != ours:
            differences[name] = {key: (theirs[key], ours[key]) for key in theirs if theirs[key] != ours[key]}
    assert not differences, "FastAPI vs Express:\n" + "\n".join(f"{k}: {v}" for k, v in differences.items())


def test_a_user_read_from_either_kind_is_the_same_json(lab2, account):
    reads = [httpx.get(f"{lab2.member_url(m)}/users/{account['id']}", timeout=10) for m in ("users-1", "express-1")]
    assert [r.status_code for r in reads] == [200, 200]
    assert reads[0].content == reads[1].content   # byte for byte: id, email, name, created_at (microseconds)


def test_every_bad_token_of_lab_02_is_refused_by_express(lab2, account):
    for what, token in lab02.bad_tokens(jwt_secret(lab2), sub=str(account["id"])).items():
        r = httpx.patch(f"{lab2.member_url('express-1')}/users/{account['id']}", json={"name": "Mallory"},
                        headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 401 and r.json()["error"] in ("invalid_token", "token_expired"), (what, r.text)


def jwt_secret(stack) -> str:
    if stack.runtime_name == "local":
        from scalelab.runtimes.local import users as local_users
        return local_users.jwt_secret(stack.runtime)
    from scalelab.runtimes.compose import env as compose_env   # the kubernetes runtimes keep theirs there too
    return compose_env.passwords(stack.runtime.home)["jwt"]


def test_tokens_and_password_hashes_cross_between_the_kinds(lab2):
    table = lab02.across_languages(lab2)
    assert "steps, every answer as the contract says" in lab02.check_across_languages(table)
    assert set(table["served by"]) == {"express-1", *lab2.members("users")}


def test_the_check_names_a_step_that_answered_wrong():
    import pandas as pd
    table = pd.DataFrame([{"step": "log in", "served by": "express-1", "status": 500, "expected": 200, "ok": False,
                           "error": "internal_error"},
                          {"step": "read back", "served by": "express-1", "status": 200, "expected": 200, "ok": False,
                           "error": "name is 'Ada': the last PATCH was lost"}])
    with pytest.raises(lab02.CheckFailed, match="log in on express-1: 500 internal_error .*; read back on express-1: "
                                                "200 name is 'Ada': the last PATCH was lost"):
        lab02.check_across_languages(table)


def test_scaled_out_and_in_nginx_follows(lab2):
    lab2.scale("express", 2)
    try:
        seen = lab02.spread(lab2.url("users"), "/health", requests=50)
        assert set(seen.index) == {*lab2.members("users"), "express-1", "express-2"}, dict(seen)
    finally:
        lab2.scale("express", 1)
    seen = lab02.spread(lab2.url("users"), "/health", requests=40)
    assert set(seen.index) == {*lab2.members("users"), "express-1"}, dict(seen)


def test_without_node_scaling_out_is_one_line_naming_the_fix(lab2, monkeypatch, tmp_path):
    if lab2.runtime_name != "local":
        pytest.skip("compose and kind run Node from the image: the host needs none")
    fake = tmp_path / "node"
    fake.write_text("#!/bin/sh\necho v16.20.0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("NODE_BIN", str(fake))
    with pytest.raises(RuntimeUnavailable, match=r"node 16\.20\.0 .* too old .* install Node\.js >= 18"):
        lab2.scale("express", 2)
    assert lab2.members("express") == ["express-1"]
    monkeypatch.delenv("NODE_BIN")
    assert binaries.node().version().startswith("v")
