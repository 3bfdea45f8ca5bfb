"""Lab 02 — nginx over replicas, failover, stateless auth: exercises and their live checks."""

import base64
import json
import os
import re
import secrets
import ssl
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


def _workspace_text(stack, name: str, to_write: str) -> str:
    """The learner's ``name`` from the workspace; NotAttempted while it is missing or the stub."""
    path = stack.workspace / name
    if not path.exists():
        raise NotAttempted(f"run the exercise cell: it writes {path.name} into {path.parent}")
    text = path.read_text()
    if "YOUR CODE HERE" in text:
        raise NotAttempted(f"{path.name} still holds `# YOUR CODE HERE`: write {to_write}")
    return text


def _check_upstream(stack, exercise) -> str:
    text = _workspace_text(stack, UPSTREAM_FILE, "the upstream block and what nginx does when a replica fails")
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
        expect_status(client.get("/health"), 200, "GET /health through nginx",
                      ": does `proxy_pass http://users` find your upstream? (it must be named users)")
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
        'unsigned (alg "none")': jwt.encode({"sub": sub, "iat": now, "exp": now + 300}, "", algorithm="none"),
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


# -- replicas in two languages: FastAPI and Express behind one upstream ---------------------------
EXPRESS = "express"   # the Express replica's service (stack/shop-node): members express-1, ...


def spread(base_url: str, path: str, requests: int = 80) -> pd.Series:
    """How many of ``requests`` GETs of ``path`` through nginx each replica served (X-Instance);
    a failed answer counts under its status (e.g. ``"502"``), never silently."""
    seen: Counter = Counter()
    with httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT_S) as client:
        for _ in range(requests):
            answer = client.get(path)
            seen[answer.headers.get("x-instance", "?") if answer.status_code == 200 else str(answer.status_code)] += 1
    return pd.Series(seen, name="requests").sort_index()


def across_languages(stack) -> pd.DataFrame:
    """One account handled by both kinds of replica, each asked directly (no nginx): created by
    Express, logged in on FastAPI (Python checks Node's scrypt hash), changed on Express with
    FastAPI's token and on every FastAPI replica with Express's token (your verify_token checks
    Node's JWT), a forged token refused by both, deleted on one and gone on the other. One row
    per step: who did it, the status it answered, the status the contract says, and ``ok``: that
    status, and for the read back the content the last PATCH wrote."""
    python, node = stack.members("users"), stack.members(EXPRESS)
    if not python or not node:
        raise ScalelabError(f"this needs FastAPI and Express replicas: run stack.scale({EXPRESS!r}, 1) first "
                            f"(running: {', '.join(python + node) or 'none'})")
    url = stack.member_url
    email, password = f"polyglot-{uuid.uuid4().hex[:8]}@example.com", secrets.token_urlsafe(12)
    rows: list[dict] = []

    def step(what: str, member: str, expected: int, method: str, path: str, token: str | None = None, **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = httpx.request(method, f"{url(member)}{path}", headers=headers, timeout=10, **kw)
        body = answer.json() if answer.content and "json" in answer.headers.get("content-type", "") else {}
        rows.append({"step": what, "served by": answer.headers.get("x-instance", member),
                     "status": answer.status_code, "expected": expected, "ok": answer.status_code == expected,
                     "error": body.get("error", "") if isinstance(body, dict) else ""})
        return body if answer.status_code == expected else None

    created = step("sign up (password hashed in Node)", node[0], 201, "POST", "/users",
                   json={"email": email, "name": "Ada Polyglot", "password": password})
    user = f"/users/{created['id']}" if created else "/users/0"
    login = {"email": email, "password": password}
    from_python = step("log in (Python checks Node's hash)", python[0], 200, "POST", "/auth/token", json=login)
    from_node = step("log in (Node checks its own hash)", node[0], 200, "POST", "/auth/token", json=login)
    python_token = from_python["access_token"] if from_python else None
    node_token = from_node["access_token"] if from_node else None
    step("PATCH with FastAPI's token (Node checks it)", node[0], 200, "PATCH", user, python_token,
         json={"name": "Changed by Express"})
    for member in python:
        step("PATCH with Express's token (your verify_token)", member, 200, "PATCH", user, node_token,
             json={"name": f"Changed by {member}"})
    forged_token = forged(node_token, sub="1") if node_token else "x.y.z"
    for member in (python[0], node[0]):
        step("PATCH with a forged token (sub edited)", member, 401, "PATCH", user, forged_token,
             json={"name": "Mallory"})
    read = step("read back (the same row, the same JSON)", node[0], 200, "GET", user)
    if read is not None and read.get("name") != f"Changed by {python[-1]}":
        rows[-1]["ok"], rows[-1]["error"] = False, f"name is {read.get('name')!r}: the last PATCH was lost"
    step("delete with Express's token", python[0], 204, "DELETE", user, node_token)
    step("gone for the other kind too", node[0], 404, "GET", user)
    return pd.DataFrame(rows)


def check_across_languages(table: pd.DataFrame) -> str:
    """One line when every step answered what the contract says; else the steps that did not."""
    wrong = table[~table.ok]
    if len(wrong):
        raise CheckFailed("; ".join(f"{r.step} on {r['served by']}: {r.status} {r.error} (expected {r.expected})"
                                    for _, r in wrong.iterrows()))
    kinds = sorted(set(table["served by"]))
    return f"{len(table)} steps, every answer as the contract says, served by {', '.join(kinds)}"


# -- exercise 3: HTTPS at the edge ------------------------------------------------------------
TLS_FILE = "tls.conf"
PERMANENT_KEEPS_METHOD = (307, 308)      # a client must repeat the method and the body
REDIRECTS = (301, 302, 303, 307, 308)


def tls_context(stack) -> ssl.SSLContext:
    """A client context that trusts the stack's own CA, and nothing else."""
    return ssl.create_default_context(cafile=str(stack.tls_entry().ca_file))


def _hsts_max_age(value: str | None) -> int:
    match = re.search(r"max-age\s*=\s*\"?(\d+)", value or "", re.I)
    return int(match[1]) if match else 0


def _tls_answer(client: httpx.Client, method: str, url: str, what: str, **kw) -> httpx.Response:
    try:
        return client.request(method, url, **kw)
    except httpx.ConnectError as exc:
        cause = str(exc) or type(exc).__name__
        if "WRONG_VERSION_NUMBER" in cause or "wrong version number" in cause:
            raise CheckFailed(f"{what}: nginx answered the TLS handshake in plain HTTP ({cause}) — does the "
                              "listen line say `ssl`?") from None
        if "CERTIFICATE_VERIFY_FAILED" in cause:
            raise CheckFailed(f"{what}: the certificate nginx sent is not the stack's ({cause}) — "
                              "ssl_certificate must be {certificate}") from None
        raise CheckFailed(f"{what}: {cause} — is tls.conf listening on {{tls_listen}}?") from None
    except httpx.TransportError as exc:
        raise CheckFailed(f"{what}: {type(exc).__name__}: {exc}") from None


def _check_tls(stack, exercise) -> str:
    from scalelab.runtimes.common.nginx import unknown_placeholders
    text = _workspace_text(stack, TLS_FILE, "the HTTPS server and the server that redirects plain HTTP to it")
    if unknown := unknown_placeholders(text):
        raise CheckFailed(f"tls.conf uses {', '.join('{' + u + '}' for u in unknown)}: the driver fills only "
                          "{tls_listen}, {redirect_listen}, {https_port}, {certificate}, {certificate_key} and {entry}")
    try:
        stack.reload("nginx")
    except ScalelabError as exc:
        raise CheckFailed(str(exc)) from None
    edge = stack.tls_entry()
    context = tls_context(stack)
    with httpx.Client(verify=context, timeout=10) as client:
        # 1. HTTPS answers, with a certificate the stack's CA signed, and serves the shop
        health = _tls_answer(client, "GET", f"{edge.https_url}/health", f"GET {edge.https_url}/health")
        if health.status_code != 200 or not health.headers.get("x-instance"):
            raise CheckFailed(f"GET {edge.https_url}/health answered {health.status_code} {health.text[:200]}: "
                              "the HTTPS server must proxy to the replicas like the plain one — put the {entry} "
                              "line in it")
        created = _tls_answer(client, "POST", f"{edge.https_url}/users", "POST /users over HTTPS",
                              json={"email": f"tls-{uuid.uuid4().hex[:8]}@example.com", "name": "Over TLS"})
        expect_status(created, 201, "POST /users over HTTPS")
        version = health.extensions["network_stream"].get_extra_info("ssl_object").version()
        # 2. HSTS: a browser that saw it never tries plain HTTP first again
        max_age = _hsts_max_age(health.headers.get("strict-transport-security"))
        if max_age <= 0:
            raise CheckFailed(f"the HTTPS answer has no Strict-Transport-Security header with a max-age (got "
                              f"{health.headers.get('strict-transport-security')!r}): without it, the browser's "
                              "next visit starts in plain HTTP again")
    # 3. plain HTTP on the public port redirects, keeping the path, the query and the method
    target = "/users?limit=2&offset=0"
    with httpx.Client(timeout=10, follow_redirects=False) as plain:
        try:
            moved = plain.get(f"{edge.redirect_url}{target}")
            posted = plain.post(f"{edge.redirect_url}/users", json={"email": "x@example.com", "name": "x"})
        except httpx.TransportError as exc:
            raise CheckFailed(f"plain HTTP on {edge.redirect_url}: {type(exc).__name__}: {exc} — does tls.conf "
                              "have a server listening on {redirect_listen}?") from None
    expected = f"{edge.https_url}{target}"
    if moved.status_code not in REDIRECTS:
        raise CheckFailed(f"GET {edge.redirect_url}{target} answered {moved.status_code}, not a redirect: the plain "
                          "port should only say where HTTPS is (`return 308 https://...`)")
    location = moved.headers.get("location", "")
    if location != expected:
        hint = ("the scheme must be https" if not location.startswith("https://") else
                "the port is missing: HTTPS here is on {https_port}, not 443" if location.startswith(
                    "https://127.0.0.1/") else
                "the query string is lost: $uri drops it, $request_uri keeps it" if location.split("?")[0]
                == expected.split("?")[0] else "it must be https://$host:{https_port}$request_uri")
        raise CheckFailed(f"GET {edge.redirect_url}{target} redirects to {location!r}, expected {expected!r}: {hint}")
    if posted.status_code not in PERMANENT_KEEPS_METHOD:
        raise CheckFailed(f"a POST to the plain port got {posted.status_code}: 301 and 302 let a client repeat it "
                          "as a GET, without its body — 308 (or 307) keeps the method and the body")
    with httpx.Client(verify=context, timeout=10, follow_redirects=True) as client:
        followed = client.post(f"{edge.redirect_url}/users",
                               json={"email": f"tls-{uuid.uuid4().hex[:8]}@example.com", "name": "Redirected"})
    expect_status(followed, 201, "POST /users on the plain port, following the redirect")
    return (f"HTTPS on {edge.https_url} ({version}, certificate signed by the stack's CA), the shop behind it "
            f"(POST /users → 201), HSTS max-age {max_age} s; plain HTTP → {moved.status_code} to the same path and "
            f"query; a POST → {posted.status_code}, followed: 201")


tls = Exercise(
    name="tls",
    title="Exercise 3 · tls.conf",
    checker=_check_tls,
    hints=[
        "Two server blocks. The first: `listen {tls_listen} ssl;`, `ssl_certificate {certificate};`, "
        "`ssl_certificate_key {certificate_key};` and the {entry} line (the same locations as the plain server). "
        "The second: `listen {redirect_listen};` and a `return`.",
        "The redirect keeps everything but the scheme and the port: `return 308 https://$host:{https_port}"
        "$request_uri;` — $request_uri is the path with its query; 308 keeps a POST a POST.",
        "HSTS is a header on the HTTPS answers: `add_header Strict-Transport-Security \"max-age=300\" always;`. "
        "`ssl_protocols TLSv1.2 TLSv1.3;` and `ssl_session_cache shared:edge_tls:1m;` are the usual company.",
    ],
    reference="stack/deploy/nginx/reference/tls.conf",
    handle="lab02.tls",
)


# -- what TLS costs per request ------------------------------------------------------------------
COST_PATH = "/nginx/health"      # answered by nginx itself: what is measured is the connection, not a replica
TLS_MODES = ("HTTP, kept alive", "HTTP, new connection", "HTTPS, kept alive",
             "HTTPS, new connection (full handshake)", "HTTPS, new connection (resumed session)")


def _url_parts(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def _read_to_close(sock) -> None:
    try:
        while sock.recv(65536):
            pass
    except (ssl.SSLEOFError, ConnectionResetError):   # a peer that closes without close_notify
        pass


def _request_on_new_connection(host: str, port: int, context: ssl.SSLContext | None,
                               session: ssl.SSLSession | None = None) -> ssl.SSLSession | None | bool:
    """One GET on a fresh TCP (and TLS) connection; returns the TLS session (to resume next time)."""
    import socket
    with socket.create_connection((host, port), timeout=10) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = context.wrap_socket(raw, server_hostname=host, session=session) if context else raw
        sock.sendall(f"GET {COST_PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        _read_to_close(sock)
        if context is None:
            return None
        assert isinstance(sock, ssl.SSLSocket)
        if session is not None and not sock.session_reused:
            return False
        return sock.session


def tls_costs(stack, requests: int = 300, rounds: int = 10) -> pd.DataFrame:
    """Milliseconds per request to nginx over plain HTTP and HTTPS, on one kept-alive connection
    and on a new connection each time (a full TLS handshake, or a resumed session). The modes take
    turns in ``rounds`` blocks, so a busy moment of the machine is shared by all of them; each
    mode is warmed up first. One row per mode: median and p90 ms, the requests, and for the resumed
    mode the share of handshakes the server really resumed."""
    import http.client
    edge, context = stack.tls_entry(), tls_context(stack)
    plain, secure = _url_parts(stack.url("users")), _url_parts(edge.https_url)
    kept = {"HTTP, kept alive": http.client.HTTPConnection(*plain, timeout=10),
            "HTTPS, kept alive": http.client.HTTPSConnection(*secure, timeout=10, context=context)}
    session: dict[str, ssl.SSLSession | None] = {"s": None}
    resumed: list[bool] = []

    def once(mode: str) -> None:
        if mode in kept:
            kept[mode].request("GET", COST_PATH)
            kept[mode].getresponse().read()
        elif mode == "HTTP, new connection":
            _request_on_new_connection(*plain, None)
        elif mode == "HTTPS, new connection (full handshake)":
            _request_on_new_connection(*secure, context)
        else:
            if session["s"] is None:
                session["s"] = _request_on_new_connection(*secure, context)   # type: ignore[assignment]
            got = _request_on_new_connection(*secure, context, session["s"])
            resumed.append(got is not False)
            session["s"] = got if isinstance(got, ssl.SSLSession) else None

    times: dict[str, list[float]] = {mode: [] for mode in TLS_MODES}
    try:
        for mode in TLS_MODES:              # warm-up: connections, sessions, caches
            for _ in range(10):
                once(mode)
        resumed.clear()
        per_block = max(1, requests // rounds)
        for _ in range(rounds):
            for mode in TLS_MODES:
                for _ in range(per_block):
                    started = time.perf_counter()
                    once(mode)
                    times[mode].append((time.perf_counter() - started) * 1000)
    finally:
        for connection in kept.values():
            connection.close()
    rows = []
    for mode, samples in times.items():
        series = pd.Series(samples)
        rows.append({"mode": mode, "median_ms": round(series.median(), 3), "p90_ms": round(series.quantile(0.9), 3),
                     "requests": len(series),
                     "resumed": (sum(resumed) / len(resumed)) if "resumed" in mode and resumed else None})
    frame = pd.DataFrame(rows).set_index("mode")
    frame["vs_https_kept_alive"] = (frame.median_ms / frame.loc["HTTPS, kept alive", "median_ms"]).round(1)
    return frame


def plot_tls_costs(costs: pd.DataFrame):
    """Median ms per request for each way of connecting, p90 as a whisker."""
    from scalelab.plot import Figure
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.subplots()
    colors = ["tab:gray" if mode.startswith("HTTP,") else "tab:green" for mode in costs.index]
    y = range(len(costs))
    ax.barh(list(y), costs.median_ms, xerr=[[0] * len(costs), costs.p90_ms - costs.median_ms], color=colors,
            capsize=3)
    ax.set_yticks(list(y), costs.index)
    ax.invert_yaxis()
    ax.set(xlabel=f"ms per GET {COST_PATH} (median; whisker: p90)",
           title="What a connection costs: TLS handshakes vs keep-alive")
    ax.grid(True, axis="x", alpha=0.3)
    return fig
