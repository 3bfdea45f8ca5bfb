"""Sharding by key over N real Postgres databases (lab 04): ``shop_shard_0`` .. ``shop_shard_{N-1}``.

    store = ShardedStore(stack, shards=4)        # creates the databases (idempotent), each with `users`
    route = store.modulo(sharding.shard_for)     # key -> database name, through the learner's function
    store.put_many(rows, route)                  # each row goes to the database route(id) names
    store.get(42, route)                         # one query, on that one database
    store.where(42)                              # which databases really hold id 42 (asks them all)
    store.reshard(old_route, new_route)          # move the rows whose home changed; returns how many

The databases live on the lab's one Postgres server (cheaper than N servers on 2 cores);
each is a separate database with its own table, reached through its own DSN, exactly as
separate servers would be — nothing here can join or query across them.
"""

from collections.abc import Callable, Iterable

from scalelab import aio, db

PREFIX = "shop_shard_"
TABLE = ("CREATE TABLE IF NOT EXISTS users ("
         " id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL)")
Route = Callable[[object], str]


class ShardedStore:
    def __init__(self, stack, shards: int = 4):
        self.stack = stack
        self.names: list[str] = []
        self.grow(shards)

    # -- databases ---------------------------------------------------------------------
    def dsn(self, name: str) -> str:
        return self.stack.database_url("app").rsplit("/", 1)[0] + f"/{name}"

    def grow(self, shards: int) -> list[str]:
        """Make sure databases 0 .. shards-1 exist (owned by the app role, each with `users`)."""
        wanted = [f"{PREFIX}{i}" for i in range(shards)]
        admin, app_role = self.stack.database_url("admin"), self._app_role()

        async def go():
            conn = await db.connect(admin)
            try:
                for name in wanted:
                    if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                        # Identifiers cannot be bound parameters; these are ours ([a-z0-9_]), quoted anyway.
                        await conn.execute(f'CREATE DATABASE "{name}" OWNER "{app_role}"')
            finally:
                await db.close(conn)
            for name in wanted:
                shard = await db.connect(self.dsn(name))
                try:
                    await shard.execute(TABLE)
                finally:
                    await db.close(shard)

        aio.run(go())
        self.names = wanted
        return wanted

    def _app_role(self) -> str:
        return self.stack.database_url("app").split("://", 1)[1].split(":", 1)[0]

    # -- routers: key -> database name --------------------------------------------------
    def modulo(self, shard_for: Callable[[object, int], int], shards: int | None = None) -> Route:
        """Route with ``shard_for(key, n)`` over the first ``shards`` databases (all by default)."""
        names = self.names[:shards] if shards else list(self.names)

        def route(key) -> str:
            index = shard_for(key, len(names))
            if not isinstance(index, int) or not 0 <= index < len(names):
                raise ValueError(f"shard_for({key!r}, {len(names)}) returned {index!r}: expected 0 .. {len(names) - 1}")
            return names[index]
        return route

    def ring(self, ring_class, shards: int | None = None, **kwargs) -> Route:
        """Route with a consistent-hash ring over the first ``shards`` databases."""
        names = self.names[:shards] if shards else list(self.names)
        ring = ring_class(names, **kwargs)

        def route(key) -> str:
            name = ring.node_for(key)
            if name not in names:
                raise ValueError(f"node_for({key!r}) returned {name!r}: expected one of {names}")
            return name
        return route

    # -- rows ----------------------------------------------------------------------------
    def clear(self) -> None:
        async def go():
            for name in self.names:
                conn = await db.connect(self.dsn(name))
                try:
                    await conn.execute("TRUNCATE users")
                finally:
                    await db.close(conn)
        aio.run(go())

    def put_many(self, rows: Iterable[dict], route: Route) -> dict[str, int]:
        """Write each row ``{id, email, name}`` to the database ``route(row['id'])``; rows per database."""
        batches: dict[str, list[tuple]] = {name: [] for name in self.names}
        for row in rows:
            batches.setdefault(route(row["id"]), []).append((row["id"], row["email"], row["name"]))

        async def go():
            for name, batch in batches.items():
                if batch:
                    conn = await db.connect(self.dsn(name))
                    try:
                        await conn.copy_records_to_table("users", records=batch, columns=["id", "email", "name"])
                    finally:
                        await db.close(conn)
        aio.run(go())
        return {name: len(batch) for name, batch in batches.items()}

    def get(self, key, route: Route) -> tuple[str, dict | None]:
        """Ask only the database the router names: ``(database, row or None)``."""
        name = route(key)
        rows = self._fetch(name, "SELECT id, email, name FROM users WHERE id = $1", int(key))
        return name, (rows[0] if rows else None)

    def get_many(self, keys: Iterable, route: Route) -> dict:
        """Look many keys up, each on its router's database only: {key: row or None}."""
        by_shard: dict[str, list[int]] = {}
        for key in keys:
            by_shard.setdefault(route(key), []).append(int(key))
        found: dict[int, dict | None] = {}
        for name, ids in by_shard.items():
            rows = self._fetch(name, "SELECT id, email, name FROM users WHERE id = ANY($1::bigint[])", ids)
            found.update({key: None for key in ids})
            found.update({row["id"]: row for row in rows})
        return found

    def where(self, key) -> list[str]:
        """Every database that really holds ``key`` (asks them all: for proofs, not for serving)."""
        return [name for name in self.names if self._fetch(name, "SELECT 1 FROM users WHERE id = $1", int(key))]

    def ids(self) -> dict[str, list[int]]:
        """The ids each database holds."""
        return {name: [row["id"] for row in self._fetch(name, "SELECT id FROM users ORDER BY id")]
                for name in self.names}

    def counts(self) -> dict[str, int]:
        return {name: int(self._fetch(name, "SELECT count(*) AS n FROM users")[0]["n"]) for name in self.names}

    def reshard(self, old: Route, new: Route) -> int:
        """Move every row whose database changes from ``old`` to ``new``; return how many moved.

        Rows are read from where they are (and checked to be where ``old`` said), copied to
        their new database, then deleted from the old one. A live system would also have to
        serve reads and writes during the move (double writes, then a backfill): here nothing
        else writes to the shards meanwhile.
        """
        async def go() -> int:
            conns = {name: await db.connect(self.dsn(name)) for name in self.names}
            try:
                moves: list[tuple[str, str, list[tuple]]] = []     # (from, to, rows): all planned first
                for name, conn in conns.items():
                    leaving: dict[str, list[tuple]] = {}
                    for row in await conn.fetch("SELECT id, email, name FROM users"):
                        if old(row["id"]) != name:
                            raise ValueError(f"id {row['id']} is on {name} but the old router says {old(row['id'])}")
                        if (home := new(row["id"])) != name:
                            leaving.setdefault(home, []).append(tuple(row.values()))
                    moves += [(name, home, batch) for home, batch in leaving.items()]
                for source, home, batch in moves:
                    await conns[home].copy_records_to_table("users", records=batch, columns=["id", "email", "name"])
                    await conns[source].execute("DELETE FROM users WHERE id = ANY($1::bigint[])", [r[0] for r in batch])
                return sum(len(batch) for _, _, batch in moves)
            finally:
                for conn in conns.values():
                    await db.close(conn)
        return aio.run(go())

    def drop(self) -> None:
        """Remove every shard database (the lab's cleanup)."""
        admin = self.stack.database_url("admin")

        async def go():
            conn = await db.connect(admin)
            try:
                names = [r["datname"] for r in await conn.fetch(
                    "SELECT datname FROM pg_database WHERE datname LIKE $1", PREFIX + "%")]
                for name in names:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await db.close(conn)
        aio.run(go())
        self.names = []

    def _fetch(self, name: str, sql: str, *args) -> list[dict]:
        async def go():
            conn = await db.connect(self.dsn(name))
            try:
                return [dict(r) for r in await conn.fetch(sql, *args)]
            finally:
                await db.close(conn)
        return aio.run(go())
