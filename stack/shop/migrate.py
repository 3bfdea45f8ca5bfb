"""Apply the SQL files in ``migrations/`` in order, each once, in a transaction.

Run by the driver before the services start: ``python -m shop.migrate`` (DSN from
``SHOP_DATABASE_URL``). Safe to run again and from several processes at once.
"""

import asyncio
import sys
from pathlib import Path

import asyncpg

from shop.config import Settings

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x5C41E1AB  # any constant: serialises concurrent migrators


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    conn = await asyncpg.connect(dsn)
    applied_now = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            applied_now.append(path.name)
    finally:
        await conn.close()
    return applied_now


def main() -> int:
    try:
        applied = asyncio.run(migrate(Settings().database_url))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"migrate: cannot apply migrations: {exc}", file=sys.stderr)
        return 1
    print("migrate: applied " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
