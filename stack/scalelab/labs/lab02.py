"""Lab 02 — nginx over replicas, failover, stateless auth: exercises and their live checks."""

import base64
import json
import os
import re
import secrets
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable

import httpx
import jwt
import pandas as pd

from scalelab import load
from scalelab.errors import ScalelabError
from scalelab.exercise import CheckFailed, Exercise, NotAttempted, expect_status

CLIENT_TIMEOUT_S = 4.0   # what a patient client waits before it gives up on a request
LOAD_START_TIMEOUT_S = 60.0  # the load generator (Locust) starts within this, even on a busy machine


# -- helpers the notebook uses too ---------------------------------------------------------
def load_during(base_url: str, action: Callable[[], object], at_s: float = 1.0, after_s: float | None = None,
                **load_kw) -> "load.LoadResult":
    """Run ``load.run(base_url, **load_kw)`` in a thread and call ``action()`` ``at_s`` seconds
    after the load's users started (e.g. kill a replica mid-load); return what the load measured.

    ``action`` runs in this thread. The load is bounded by its own ``duration``; with ``after_s``
    it also ends ``after_s`` seconds after ``action()`` returned (an action whose length varies,
    e.g. a rolling restart, is covered by the load however long it takes, up to ``duration``).
    """
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="scalelab-load-") as scratch:
        started_file = os.path.join(scratch, "started")
        stop_file = os.path.join(scratch, "stop") if after_s is not None else None
        runner = threading.Thread(target=lambda: result.setdefault(
            "load", load.run(base_url, stop_file=stop_file, started_file=started_file, **load_kw)))
        runner.start()
        try:
            deadline = time.monotonic() + LOAD_START_TIMEOUT_S
            while not os.path.exists(started_file) and runner.is_alive() and time.monotonic() < deadline:
                time.sleep(0.05)             # the load generator starting (bounded)
            if runner.is_alive():
                time.sleep(at_s)             # when the failure happens, mid-load (not a readiness wait)
                result["action"] = action()
                if stop_file:
                    assert after_s is not None   # stop_file is set only with after_s
                    time.sleep(after_s)      # the load goes on this long after the action
                    open(stop_file, "w").close()
        finally:
            runner.join()
    if "load" not in result:
        raise ScalelabError("the load run did not finish: see the cell's output above")
    if "action" not in result:
        raise ScalelabError("the load ended before the action could run: give it a longer duration")
    return result["load"]


TRACE = re.compile(r'nginx-trace t=(?P<t>[\d.]+) (?P<method>\S+) (?P<path>\S+) status=(?P<status>\d+) '
                   r'upstream_status="(?P<upstream_status>[^"]*)" upstream_addr="(?P<upstream_addr>[^"]*)"')


def nginx_trace(stack, since: float = 0.0) -> pd.DataFrame:
    """nginx's one-line records (since ``since``, a ``time.time()``) of the requests it had to
    retry on another replica, or could not serve at all.

    ``upstream_status`` lists one status per replica tried: ``"502, 200"`` = the first replica
    failed (502: no answer, 504: too slow), nginx retried and the second answered.
    """
    rows = []
    for member in stack.members("nginx"):
        for line in stack.logs(member, tail=5000).splitlines():
            if (m := TRACE.search(line)) and float(m["t"]) >= since:
                rows.append({**m.groupdict(), "t": float(m["t"]), "status": int(m["status"])})
    frame = pd.DataFrame(rows, columns=["t", "method", "path", "status", "upstream_status", "upstream_addr"])
    frame["retried"] = frame["upstream_status"].str.contains(",")
    return frame


# -- exercise 1: the upstream block nginx runs ------------------------------------------------
UPSTREAM_FILE = "upstream.conf"


def _user_path(base: str) -> str:
    created = httpx.post(f"{base}/users", json={"email": f"lb-{uuid.uuid4().hex[:8]}@example.com",
                                                "name": "Load Balanced"}, timeout=10)
    expect_status(created, 201, "POST /users through nginx",
                  " — is the stack healthy? (stack.status(), stack.logs('nginx-1'))")
    return f"/users/{created.json()['id']}"


def _statuses(result) -> str:
    return ", ".join(f"{code}: {n}" for code, n in sorted(result.status_counts.items()))


def _check_upstream(stack, exercise) -> str:
    path = stack.workspace / UPSTREAM_FILE
    if not path.exists():
        raise NotAttempted(f"run the exercise cell: it writes {path.name} into {path.parent}")
    text = path.read_text()
    if "YOUR CODE HERE" in text:
        raise NotAttempted(f"{path.name} still holds `# YOUR CODE HERE`: write the upstream block and what "
                           "nginx does when a replica fails")
    if not any("{address}" in line.split("#", 1)[0] for line in text.splitlines()):   # a comment's is no server
        raise CheckFailed("no line of upstream.conf holds {address}: the driver repeats the line that holds it "
                          "once per replica, with the replica's real address — hard-coded ports go stale")
    try:
        stack.reload("nginx")
    except ScalelabError as exc:
        raise CheckFailed(str(exc)) from None
    members = stack.members("users")
    if len(members) < 2:
        raise CheckFailed(f"this check needs 2 replicas or more, the stack has {members}: stack.scale('users', 3)")
    base = stack.url("users")

    # 1. every replica gets its share
    with httpx.Client(base_url=base, timeout=10) as client:
        first = client.get("/health")
        if first.status_code != 200:
            raise CheckFailed(f"GET /health through nginx answered {first.status_code} {first.text[:200]}: "
                              "does `proxy_pass http://users` find your upstream? (it must be named users)")
        seen = Counter(client.get("/health").headers.get("x-instance", "?") for _ in range(20 * len(members)))
    starved = [m for m in members if seen[m] < 0.2 * 20]
    if starved:
        raise CheckFailed(f"through nginx, {20 * len(members)} requests were served by {dict(seen)}: "
                          f"{', '.join(starved)} got (almost) none — every replica should get a fair share")

    # 2. a replica dies (SIGKILL) under load: the clients must not notice
    victim, path_ = members[1], _user_path(base)
    try:
        killed = load_during(base, lambda: stack.kill(victim), at_s=0.8, paths=[path_], users=8,
                             duration=2.5, timeout=CLIENT_TIMEOUT_S, label="kill check")
    finally:
        stack.start(victim)
    if killed.failures:
        raise CheckFailed(f"with {victim} killed mid-load, {killed.failures} of {killed.requests} GET requests "
                          f"failed ({_statuses(killed)}): nginx handed the failure to the client instead of "
                          "trying another replica — which failures does nginx pass to the next upstream?")

    # 3. a replica hangs (SIGSTOP: its socket stays open, it never answers). The load outlasts
    #    the client timeout, so a request stuck on the frozen replica counts as failed.
    try:
        frozen = load_during(base, lambda: stack.kill(victim, "STOP"), at_s=0.5, paths=[path_], users=8,
                             duration=CLIENT_TIMEOUT_S + 1.0, timeout=CLIENT_TIMEOUT_S, label="hang check")
    finally:
        stack.kill(victim, "CONT")
    if frozen.failures:
        raise CheckFailed(f"with {victim} frozen (SIGSTOP), {frozen.failures} of {frozen.requests} requests failed "
                          f"or waited over {CLIENT_TIMEOUT_S:.0f} s ({_statuses(frozen)}): by default nginx waits "
                          "60 s for a replica's answer — how long should it wait before it tries another one?")
    return (f"requests spread over {len(members)} replicas {dict(sorted(seen.items()))}; "
            f"{victim} killed mid-load: {killed.requests} requests, 0 failed; "
            f"{victim} frozen: {frozen.requests} requests, 0 failed, slowest {frozen.summary['max_ms'].iloc[0]:.0f} ms")


upstream = Exercise(
    name="upstream",
    title="Exercise 1 · upstream.conf",
    checker=_check_upstream,
    hints=[
        "The block is `upstream users { server {address} <parameters>; keepalive 16; }` — one server line: "
        "the driver repeats it per replica. After it, at http level: the proxy_next_upstream* directives.",
        "Passive health checks are server parameters: max_fails=1 fail_timeout=2s takes a replica out of "
        "rotation for 2 s after one failure. `proxy_next_upstream error timeout http_502 http_503;` "
        "says which failures nginx retries on another replica.",
        "A replica that hangs is only detected by a timeout: proxy_read_timeout 2s (default 60 s), "
        "proxy_connect_timeout 1s; bound the retries with proxy_next_upstream_tries 3 and "
        "proxy_next_upstream_timeout 5s.",
    ],
    reference="stack/deploy/nginx/reference/upstream.conf",
    handle="lab02.upstream",
)


# -- exercise 2: verify a token, on every replica --------------------------------------------
def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def forged(token: str, **claims) -> str:
    """``token`` with its payload changed (e.g. another ``sub``) and the old signature kept."""
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return ".".join([header, _b64({**body, **claims}), signature])


def bad_tokens(secret: str, sub: str = "42") -> dict[str, str]:
    """Tokens a verifier must refuse, for a service whose key is ``secret``."""
    now = int(time.time())
    good = jwt.encode({"sub": sub, "iat": now, "exp": now + 300}, secret, algorithm="HS256")
    return {   # the signature first: a verifier that skips it fails on that, not on a side effect
        "payload changed after signing (another sub)": forged(good, sub="1"),
        "signed with another secret": jwt.encode({"sub": sub, "iat": now, "exp": now + 300},
                                                 secrets.token_urlsafe(32), algorithm="HS256"),
        'unsigned (alg "none")': jwt.encode({"sub": sub, "iat": now, "exp": now + 300}, None, algorithm="none"),
        "expired a minute ago": jwt.encode({"sub": sub, "iat": now - 600, "exp": now - 60}, secret, algorithm="HS256"),
        "without an expiry (no exp claim)": jwt.encode({"sub": sub, "iat": now}, secret, algorithm="HS256"),
        "naming no user (no sub claim)": jwt.encode({"iat": now, "exp": now + 300}, secret, algorithm="HS256"),
    }


def _check_rules(verify_token) -> None:
    secret = secrets.token_urlsafe(32)
    now = int(time.time())
    good = jwt.encode({"sub": "42", "iat": now, "exp": now + 300}, secret, algorithm="HS256")
    try:
        claims = verify_token(good, secret)
    except NotImplementedError:
        raise NotAttempted("verify_token() still raises NotImplementedError") from None
    except Exception as exc:
        raise CheckFailed(f"verify_token refused a valid token: {type(exc).__name__}: {exc}") from None
    if not isinstance(claims, dict) or claims.get("sub") != "42":
        raise CheckFailed(f"for a valid token verify_token returned {claims!r}: return the token's claims "
                          "as a dict (the service reads claims['sub'])")
    for what, token in bad_tokens(secret).items():
        try:
            result = verify_token(token, secret)
        except jwt.InvalidTokenError:
            continue
        except Exception as exc:
            raise CheckFailed(f"for a token {what}, verify_token raised {type(exc).__name__}: raise "
                              "jwt.InvalidTokenError (PyJWT's own errors are subclasses of it), so the service "
                              "answers 401 and not 500") from None
        raise CheckFailed(f"verify_token accepted a token {what} and returned {result!r}: it must raise "
                          "jwt.InvalidTokenError")


def _check_tokens(stack, exercise) -> str:
    verify_token = exercise.function(stack, "verify_token")
    _check_rules(verify_token)
    stack.restart("users")  # every replica loads tokens.py from the workspace at start, one by one
    members, base = stack.members("users"), stack.url("users")
    email, password = f"jwt-{uuid.uuid4().hex[:8]}@example.com", secrets.token_urlsafe(12)
    created = httpx.post(f"{base}/users", json={"email": email, "name": "Token Check", "password": password},
                         timeout=10)
    expect_status(created, 201, "POST /users", ": is the stack healthy?")
    user_id = created.json()["id"]
    issued = httpx.post(f"{stack.member_url(members[0])}/auth/token", json={"email": email, "password": password},
                        timeout=10)
    expect_status(issued, 200, f"POST /auth/token on {members[0]}")
    token = issued.json()["access_token"]
    for member in members:
        answer = httpx.patch(f"{stack.member_url(member)}/users/{user_id}", json={"name": f"Seen by {member}"},
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
        if answer.status_code == 501:
            raise NotAttempted(answer.json()["detail"])
        if answer.status_code == 500:
            raise CheckFailed(f"{member} ran your verify_token and it failed: {answer.json().get('detail')}")
        if answer.status_code != 200:
            raise CheckFailed(f"{member} answered {answer.status_code} {answer.text[:200]} to a PATCH with a valid "
                              f"token from {members[0]}: it must accept every genuine, current token")
    refused = httpx.patch(f"{base}/users/{user_id}", json={"name": "Mallory"}, timeout=10,
                          headers={"Authorization": f"Bearer {forged(token, exp=int(time.time()) + 86400)}"})
    if refused.status_code != 401 or "error" not in refused.json():
        raise CheckFailed(f"a token whose expiry was pushed a day out (payload edited, old signature) got "
                          f"{refused.status_code} {refused.text[:200]}: the service must answer 401")
    return (f"a token issued by {members[0]} was accepted by {', '.join(members)}; 6 kinds of bad token refused; "
            f"through nginx an edited token → 401 {refused.json()['error']}")


tokens = Exercise(
    name="tokens",
    title="Exercise 2 · verify_token",
    checker=_check_tokens,
    hints=[
        "PyJWT does the work: jwt.decode(token, secret, algorithms=[...]) checks the signature and the expiry, "
        "and raises subclasses of jwt.InvalidTokenError — let them propagate.",
        "Pin the algorithm to the one the service signs with, algorithms=[\"HS256\"]: never let the token's "
        "own header choose it (alg \"none\" means: no signature at all).",
        "jwt.decode checks exp only when the token has one: a token without it never expires. "
        "options={\"require\": [\"exp\", \"iat\", \"sub\"]} refuses such tokens.",
    ],
    reference="shop.reference.tokens",
    handle="lab02.tokens",
)
