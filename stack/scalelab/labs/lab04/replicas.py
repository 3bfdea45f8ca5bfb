"""Lab 04, part 1 — streaming replication and the read/write split.

Exercise ``replication`` is applied by the driver (not loaded by the service): the check
configures the running primary from the learner's file and makes the standby again by
base backup as the learner's replication role. Exercise ``read_routing`` is loaded by
the user service (``shop/db.py`` ``run_read``) and decides which node serves each read.
"""

import asyncio
import contextlib
import inspect
import re
import threading
import time
import uuid

import asyncpg
import httpx
import pandas as pd

from scalelab import aio, db
from scalelab.errors import ScalelabError
from scalelab.exercise import CheckFailed, Exercise
from scalelab.waiting import wait_until

STANDBY = "standby-1"
ROLE = "replicator"   # the role name the driver passes to replication_role_sql()

REPLICATION_STATUS = """
    SELECT application_name, usename, state, sync_state,
           pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes,
           extract(epoch FROM replay_lag)::float8                     AS replay_lag_s
    FROM pg_stat_replication ORDER BY application_name"""


# -- helpers the checks and the notebook share -------------------------------------------
def primary_dsn(stack, role: str = "app") -> str:
    return stack.database_url(role)


def standby_dsn(stack, role: str = "app", member: str = STANDBY) -> str:
    return stack.database_url(role, member=member)


def replication_status(stack) -> pd.DataFrame:
    """The primary's view of its standbys (pg_stat_replication): state, lag in bytes and seconds."""
    return db.frame(primary_dsn(stack, "admin"), REPLICATION_STATUS)


def sample_lag(stack, running, every_s: float = 0.05) -> pd.DataFrame:
    """The primary's view of the lag (``pg_stat_replication``), sampled every ``every_s`` while
    ``running()`` is true: one row per sample, ``t_s`` from the first. One connection is held for
    all samples, so a sample costs one query, not a connection (it stays cheap through a
    Kubernetes port-forward)."""
    async def go() -> list[dict]:
        conn = await asyncpg.connect(primary_dsn(stack, "admin"), timeout=10)
        try:
            rows, started = [], time.monotonic()
            while running():
                row = (await conn.fetch(REPLICATION_STATUS))[0]
                rows.append({"t_s": time.monotonic() - started, "lag_bytes": int(row["lag_bytes"] or 0),
                             "replay_lag_s": row["replay_lag_s"]})
                await asyncio.sleep(every_s)
            return rows
        finally:
            await db.close(conn)
    return pd.DataFrame(aio.run(go()), columns=["t_s", "lag_bytes", "replay_lag_s"])


def set_replay_paused(stack, paused: bool, member: str = STANDBY, timeout: float = 5.0) -> None:
    """Pause (or resume) WAL replay on a standby: it keeps receiving WAL, applies none of it.
    A pause is a request: wait (bounded) until the standby says it is paused."""
    dsn = standby_dsn(stack, "admin", member)
    db.fetch(dsn, "SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")
    if paused:
        wait_until(lambda: db.fetchval(dsn, "SELECT pg_get_wal_replay_pause_state()") == "paused", timeout,
                   interval=0.01, error=CheckFailed,
                   on_timeout=f"{member} did not pause its WAL replay within {timeout:.0f} s")


@contextlib.contextmanager
def replay_paused(stack, member: str = STANDBY):
    """A standby frozen in the past for the block: a deliberate, reliable replication lag."""
    set_replay_paused(stack, True, member)
    try:
        yield
    finally:
        set_replay_paused(stack, False, member)


def wait_replayed(stack, member: str = STANDBY, timeout: float = 10.0) -> float:
    """Wait (bounded) until ``member`` has replayed everything the primary wrote so far; seconds waited."""
    target = db.fetchval(primary_dsn(stack, "admin"), "SELECT pg_current_wal_lsn()::text")   # e.g. 0/3000148
    started = time.monotonic()
    while not db.fetchval(standby_dsn(stack, "admin", member),
                          "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", target):
        if time.monotonic() - started > timeout:
            raise CheckFailed(f"{member} did not replay the primary's WAL up to {target} within {timeout:.0f} s "
                              f"(stack.logs({member!r}))")
        time.sleep(0.02)
    return time.monotonic() - started


def seen_on(dsn: str, user_id: int) -> bool:
    return bool(db.fetchval(dsn, "SELECT count(*) FROM users WHERE id = $1", user_id))


def propagation_ms(stack, member: str = STANDBY, timeout: float = 10.0) -> tuple[int, float]:
    """Write a row on the primary; poll ``member`` (one open connection, every 1 ms) until it
    has it. Returns (id, milliseconds from the primary's commit to the row on the standby)."""
    async def go():
        primary = await asyncpg.connect(primary_dsn(stack), timeout=5)
        standby = await asyncpg.connect(standby_dsn(stack, member=member), timeout=5)
        try:
            email = f"replica-probe-{uuid.uuid4().hex[:10]}@example.com"
            user_id = await primary.fetchval("INSERT INTO users (email, name) VALUES ($1, 'Replica Probe') "
                                             "RETURNING id", email)
            started = time.perf_counter()
            while not await standby.fetchval("SELECT count(*) FROM users WHERE id = $1", user_id):
                if time.perf_counter() - started > timeout:
                    return user_id, None
                await asyncio.sleep(0.001)
            return user_id, (time.perf_counter() - started) * 1000
        finally:
            await db.close(primary)
            await db.close(standby)
    user_id, ms = aio.run(go())
    if ms is None:
        raise CheckFailed(f"a row written on the primary (users.id={user_id}) is not on {member} after "
                          f"{timeout:.0f} s: the standby is not replaying (replication_status(stack))")
    return user_id, ms


def standby_write_error(stack, member: str = STANDBY) -> str:
    """Try an INSERT on the standby; return Postgres' refusal (raises if it was accepted)."""
    try:
        db.fetch(standby_dsn(stack, member=member), "INSERT INTO users (email, name) VALUES ($1, 'Nope')",
                 f"standby-write-{uuid.uuid4().hex[:8]}@example.com")
    except asyncpg.ReadOnlySQLTransactionError as exc:
        return str(exc)
    raise CheckFailed(f"{member} accepted an INSERT: it is not a standby (pg_is_in_recovery() is false)")


class WriteLoad:
    """Bulk INSERTs on the primary from a background thread (``with WriteLoad(stack, 3): ...``):
    WAL the standby must receive and replay. ``rows`` and ``mb`` say how much was written."""

    def __init__(self, stack, seconds: float, batch: int = 2000, payload_bytes: int = 200):
        self.dsn, self.seconds, self.batch, self.payload = primary_dsn(stack), seconds, batch, payload_bytes
        self.rows, self.wal_bytes = 0, 0
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        async def go():
            conn = await asyncpg.connect(self.dsn, timeout=5)
            try:
                await conn.execute("CREATE TABLE IF NOT EXISTS lag_probe (id bigserial PRIMARY KEY, payload text)")
                start_lsn = await conn.fetchval("SELECT pg_current_wal_lsn()")
                deadline = time.monotonic() + self.seconds
                while time.monotonic() < deadline:
                    await conn.execute("INSERT INTO lag_probe (payload) SELECT repeat(md5(g::text), $2) "
                                       "FROM generate_series(1, $1) AS g", self.batch, max(1, self.payload // 32))
                    self.rows += self.batch
                self.wal_bytes = int(await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)",
                                                         start_lsn))
                await conn.execute("TRUNCATE lag_probe")
            finally:
                await db.close(conn)
        try:
            asyncio.run(go())
        except Exception as exc:  # reported by join(): a notebook must see it
            self.error = exc

    def __enter__(self) -> "WriteLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.join()

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise self.error


# -- exercise 1: the primary's side of streaming replication ------------------------------
_SIZE = re.compile(r"^\s*(\d+)\s*(kB|MB|GB|TB)?\s*$")
_MB = {None: 1, "kB": 1 / 1024, "MB": 1, "GB": 1024, "TB": 1024 * 1024}


def _size_mb(value) -> float | None:
    m = _SIZE.match(str(value))
    return int(m[1]) * _MB[m[2]] if m else None


def _validate_settings(settings) -> dict[str, str]:
    if not isinstance(settings, dict):
        raise CheckFailed(f"primary_settings() returned {type(settings).__name__}: return a dict of setting → value")
    settings = {str(k): str(v) for k, v in settings.items()}
    level = settings.get("wal_level")
    if level is None:
        raise CheckFailed("primary_settings() has no 'wal_level': it decides how much the WAL records")
    if level == "minimal":
        raise CheckFailed("wal_level 'minimal' records only what crash recovery needs: a standby cannot be made "
                          "or kept up to date from it — a primary with standbys needs at least 'replica'")
    if level not in ("replica", "logical"):
        raise CheckFailed(f"wal_level {level!r} is not a level Postgres knows: 'minimal', 'replica' or 'logical'")
    senders = settings.get("max_wal_senders")
    if senders is None or not senders.strip().isdigit():
        raise CheckFailed(f"max_wal_senders is {senders!r}: give a number of WAL sender processes")
    if int(senders) < 3:
        raise CheckFailed(f"max_wal_senders = {senders}: each standby holds one WAL sender, and pg_basebackup "
                          "-X stream needs two while it copies — at least 3 for one standby")
    keep = settings.get("wal_keep_size")
    if keep is None or not _size_mb(keep):
        raise CheckFailed(f"wal_keep_size is {keep!r}: with nothing kept, a standby that falls behind (or restarts) "
                          "asks for WAL the primary already recycled, and can never catch up — keep e.g. '256MB'")
    return settings


def _check_hba(rule: dict | None) -> None:
    if rule is None:
        raise CheckFailed("the primary's pg_hba.conf has no line from hba_line()")
    if rule["error"]:
        raise CheckFailed(f"Postgres cannot parse your pg_hba.conf line: {rule['error']}")
    if rule["type"] != "host":
        raise CheckFailed(f"your pg_hba.conf line is of type {rule['type']!r}: the standby connects over TCP "
                          "without TLS here — use 'host'")
    if "replication" not in (rule["database"] or []):
        raise CheckFailed(f"your pg_hba.conf line matches databases {rule['database']}: replication connections "
                          "only match the keyword 'replication' (not 'all')")
    if not {ROLE, "all"} & set(rule["user_name"] or []):
        raise CheckFailed(f"your pg_hba.conf line is for users {rule['user_name']}, not {ROLE!r}")
    if rule["auth_method"] in ("trust", "password"):
        raise CheckFailed(f"your pg_hba.conf line authenticates with {rule['auth_method']!r}: "
                          + ("anyone on this host could copy the whole database" if rule["auth_method"] == "trust"
                             else "the password would travel in clear text") + " — use scram-sha-256")


def _check_replication(stack, exercise) -> str:
    config = exercise.load(stack)
    for name in ("primary_settings", "replication_role_sql", "hba_line"):
        exercise.function(stack, name)
    settings = _validate_settings(_call(config, "primary_settings"))
    _call(config, "replication_role_sql", ROLE, "'a password'")
    _call(config, "hba_line", ROLE, "127.0.0.1/32")       # the driver passes where its standby connects from
    try:
        applied = stack.configure_replication(config)
    except ScalelabError as exc:
        raise CheckFailed(f"the primary rejected your configuration: {exc}") from None

    admin = primary_dsn(stack, "admin")
    roles = db.fetch(admin, "SELECT rolreplication, rolcanlogin, rolsuper FROM pg_roles WHERE rolname = $1", ROLE)
    if not roles:
        raise CheckFailed(f"after replication_role_sql() there is no role {ROLE!r}: create the role it is given")
    role = roles[0]
    if role["rolsuper"]:
        raise CheckFailed(f"{ROLE!r} is a SUPERUSER: a standby's credentials would own the whole cluster — "
                          "give it REPLICATION only")
    if not role["rolreplication"]:
        raise CheckFailed(f"{ROLE!r} has no REPLICATION attribute: Postgres will not start a WAL sender for it "
                          "(CREATE ROLE ... WITH REPLICATION)")
    if not role["rolcanlogin"]:
        raise CheckFailed(f"{ROLE!r} cannot LOGIN: a standby connects as it")
    for name, wanted in settings.items():
        now = db.fetchval(admin, "SELECT current_setting($1)", name)
        if name == "wal_keep_size" and _size_mb(now) == _size_mb(wanted):
            continue
        if now != wanted:
            raise CheckFailed(f"{name} is {now!r} on the running primary, you asked for {wanted!r}")
    if applied["hba_problems"]:
        raise CheckFailed(f"pg_hba.conf has errors: {'; '.join(applied['hba_problems'])}")
    _check_hba(applied["hba_rule"])

    try:
        backup_s = stack.rebuild_standby(STANDBY)
    except ScalelabError as exc:
        raise CheckFailed(f"the standby could not be made with your configuration: {exc}") from None
    status = _wait_streaming(stack)
    if status["usename"] != ROLE:
        raise CheckFailed(f"{STANDBY} streams as {status['usename']!r}, not {ROLE!r}")
    user_id, ms = propagation_ms(stack)
    refusal = standby_write_error(stack)
    return (f"primary restarted: {'yes' if applied['restarted_primary'] else 'no'}; {STANDBY} made by pg_basebackup "
            f"as {ROLE!r} in {backup_s:.1f} s, streaming (wal_level {settings['wal_level']}, "
            f"max_wal_senders {settings['max_wal_senders']}, wal_keep_size {settings['wal_keep_size']}); "
            f"a row written on the primary (users.id={user_id}) visible on the standby after {ms:.1f} ms; "
            f"the standby refuses an INSERT: \"{refusal}\"")


_SIGNATURES = {"primary_settings": "primary_settings()", "replication_role_sql":
               "replication_role_sql(role, password_literal)", "hba_line": "hba_line(role, standby_address)"}


def _call(config, name: str, *args):
    """Call one of the learner's functions; whatever it raises is a CheckFailed naming the call."""
    try:
        return getattr(config, name)(*args)
    except Exception as exc:
        raise CheckFailed(f"{name}{args!r} raised {type(exc).__name__}: {exc} — the driver calls "
                          f"{_SIGNATURES[name]}") from None


def _wait_streaming(stack, timeout: float = 15.0) -> dict:
    def streaming(rows: pd.DataFrame) -> bool:
        mine = rows[rows.application_name == STANDBY] if len(rows) else rows
        return bool(len(mine) and mine.iloc[0]["state"] == "streaming")
    rows = wait_until(lambda: replication_status(stack), timeout, interval=0.1, done=streaming, error=CheckFailed,
                      on_timeout=lambda rows: f"{STANDBY} is not streaming after {timeout:.0f} s (pg_stat_replication: "
                                              f"{rows.to_dict('records')}); stack.logs({STANDBY!r}) says why")
    return rows[rows.application_name == STANDBY].iloc[0].to_dict()


replication = Exercise(
    name="replication",
    title="Exercise 1 · the primary's side of streaming replication",
    checker=_check_replication,
    hints=[
        "Three settings: wal_level (how much the WAL records: 'replica'), max_wal_senders (WAL sender processes: "
        "one per standby plus two for a base backup), wal_keep_size (how much WAL to keep for a standby that lags).",
        "The role: `CREATE ROLE {role} WITH REPLICATION LOGIN PASSWORD {password_literal}` — the literal is "
        "already quoted for you; REPLICATION lets it stream WAL, nothing else (not SUPERUSER).",
        "pg_hba.conf fields: TYPE DATABASE USER ADDRESS METHOD. Replication connections match only the database "
        "keyword `replication`, and the address is the one the driver passes (where the standby connects from: "
        "127.0.0.1/32 on local, the Compose network's range on compose): "
        "`host replication {role} {standby_address} scram-sha-256`.",
    ],
    reference="shop.reference.replication",
    handle="lab04.replication",
)


# -- exercise 2: which node serves a read (read-your-writes) --------------------------------
def _node(response: httpx.Response) -> str | None:
    return response.headers.get("x-db-node")


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code == 500 and response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        if body.get("error") == "exercise_error":
            raise CheckFailed(f"the service ran your choose_node() and it failed: {body.get('detail')}")
    if response.status_code != status:
        raise CheckFailed(f"{what} answered {response.status_code} {response.text[:200]}, expected {status} "
                          "(stack.logs('users-1') shows what failed)")


def _check_read_routing(stack, exercise) -> str:
    fn = exercise.function(stack, "choose_node")
    if not inspect.iscoroutinefunction(fn):
        raise CheckFailed("choose_node must be `async def`: asking the replica how far it replayed is awaited")
    stack.restart("users")   # every replica loads read_routing.py from the workspace at start
    base = stack.url("users")
    wait_replayed(stack)
    with httpx.Client(base_url=base, timeout=10) as stranger, httpx.Client(base_url=base, timeout=10) as writer:
        first = stranger.get("/users?limit=1")
        _expect(first, 200, "GET /users")
        if _node(first) != "replica":
            raise CheckFailed(f"a read from a client that wrote nothing was served by the {_node(first)}: with no "
                              "write to wait for, return 'replica' — offloading the primary is the point")

        with replay_paused(stack):
            created = writer.post("/users", json={"email": f"ryw-{uuid.uuid4().hex[:10]}@example.com",
                                                  "name": "Read Your Writes"})
            _expect(created, 201, "POST /users")
            user_id = created.json()["id"]
            own = writer.get(f"/users/{user_id}")
            theirs = stranger.get(f"/users/{user_id}")
        if own.status_code == 404 and _node(own) == "replica":
            raise CheckFailed(f"a stale read: the client that just created user {user_id} read it from the replica, "
                              "which had not replayed that write yet (404) — compare write_lsn with the replica's "
                              "pg_last_wal_replay_lsn() and send the read to the primary until it has")
        _expect(own, 200, f"GET /users/{user_id} right after its POST (replay paused)")
        if _node(own) != "primary":
            raise CheckFailed(f"the writer's read was served by the {_node(own)}, expected the primary")
        if theirs.status_code != 404 or _node(theirs) != "replica":
            raise CheckFailed(f"another client's read of user {user_id} while the replica was paused answered "
                              f"{theirs.status_code} from the {_node(theirs)}: expected 404 from the replica — only "
                              "the client whose write the replica lacks needs the primary")

        wait_replayed(stack)
        caught_up = writer.get(f"/users/{user_id}")
        _expect(caught_up, 200, f"GET /users/{user_id} after the replica caught up")
        if _node(caught_up) != "replica":
            raise CheckFailed(f"once the replica had replayed the write, the writer's read still went to the "
                              f"{_node(caught_up)}: return 'replica' when pg_last_wal_replay_lsn() >= write_lsn")

        pairs, stale, nodes = 40, 0, {"primary": 0, "replica": 0}
        for i in range(pairs):
            made = writer.post("/users", json={"email": f"ryw-{uuid.uuid4().hex[:10]}@example.com", "name": f"RYW {i}"})
            _expect(made, 201, "POST /users")
            got = writer.get(f"/users/{made.json()['id']}")
            stale += got.status_code == 404
            nodes[_node(got) or "none"] = nodes.get(_node(got) or "none", 0) + 1
        if stale:
            raise CheckFailed(f"{stale} of {pairs} write-then-read pairs through nginx read a stale replica (404)")
    return (f"a client with no write → replica; replay paused: the writer's read → primary (200), another client's "
            f"→ replica (404, stale); caught up → replica again; {pairs} write-then-read pairs through nginx: "
            f"0 stale, served by primary {nodes['primary']} × / replica {nodes['replica']} ×")


read_routing = Exercise(
    name="read_routing",
    title="Exercise 2 · read routing with read-your-writes",
    checker=_check_read_routing,
    hints=[
        "A client that wrote nothing recently (write_lsn is None) cannot miss its own write: the replica serves it.",
        "Ask the replica how far it has replayed: `await replica.fetchval(\"SELECT pg_last_wal_replay_lsn() >= "
        "$1::text::pg_lsn\", write_lsn)` — true when the client's write is there (write_lsn is text, like "
        "'0/3000148': pass it as text, let Postgres cast it).",
        "Return 'replica' when it is, 'primary' when not (the primary always has the write).",
    ],
    reference="shop.reference.read_routing",
    handle="lab04.read_routing",
)


# Part 2 of the lab (sharding, the double-spend race, N+1) lives in its own module;
# the notebook reaches all of it as lab04.<name>.
