async def choose_node(write_lsn: str | None, replica) -> str:
    """'replica' or 'primary' for one read. ``write_lsn``: the WAL position of this
    client's last write (None if it wrote nothing recently); ``replica``: a connection
    to the standby."""
    if write_lsn is None:
        return "replica"                 # nothing of this client's can be missing there
    # write_lsn is text like '0/3000148': sent as text, cast by Postgres to a WAL position
    caught_up = await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", write_lsn)
    return "replica" if caught_up else "primary"   # not replayed yet: only the primary has it
