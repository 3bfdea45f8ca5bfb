"""Order events: the log in Postgres, the relay to a Redis Stream, and the fold.

The write side appends (``migrations/005_order_events.sql``): a trigger on ``orders``
inserts one ``order_events`` row per status change, in the transaction that made the
change — the transactional outbox. Nothing here writes an order.

:func:`relay_once` moves unpublished events to the stream ``orders.events`` (XADD) and
marks them published, in one Postgres transaction that holds the rows (``FOR UPDATE SKIP
LOCKED``). A crash after XADD and before the commit publishes those events again:
delivery is at-least-once, and a consumer must apply each event at most once in effect
(the projector exercise). Events of one order reach the stream in their ``seq`` order:
two changes of one order are serialised by the order row's lock, so the later one draws
the later sequence number and commits after the first.

:func:`fold` rebuilds an order's current state from its events alone.
"""

import json

STREAM = "orders.events"       # the Redis Stream the relay appends to
GROUP = "projector"            # the consumer group that builds the read model
FIELDS = ("seq", "order_id", "user_id", "type", "status", "total_cents", "at")


def to_stream(row) -> dict[str, str]:
    """An ``order_events`` row as the flat string fields of a stream entry."""
    data = row["data"] if isinstance(row["data"], dict) else json.loads(row["data"])
    return {"seq": str(row["seq"]), "order_id": str(row["order_id"]), "user_id": str(data["user_id"]),
            "type": row["type"], "status": data["status"], "total_cents": str(data["total_cents"]),
            "at": row["created_at"].isoformat()}


def from_stream(fields: dict) -> dict:
    """A stream entry's fields (bytes or str) as the event dict ``apply(event, redis)`` gets."""
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()}
    missing = [f for f in FIELDS if f not in text]
    if missing:
        raise ValueError(f"stream entry without {', '.join(missing)}: {text}")
    return {"seq": int(text["seq"]), "order_id": int(text["order_id"]), "user_id": int(text["user_id"]),
            "type": text["type"], "status": text["status"], "total_cents": int(text["total_cents"]),
            "at": text["at"]}


async def relay_once(conn, redis, batch: int = 500) -> int:
    """Publish up to ``batch`` unpublished events, oldest first; how many were published.

    ``conn`` is an asyncpg connection, ``redis`` a ``redis.asyncio`` client.
    """
    async with conn.transaction():
        rows = await unpublished(conn, batch)
        if not rows:
            return 0
        pipe = redis.pipeline(transaction=False)
        for row in rows:
            pipe.xadd(STREAM, to_stream(row))
        await pipe.execute()
        # If we die here, the commit never happens: the rows stay unpublished and go out again.
        await mark_published(conn, rows)
    return len(rows)


async def unpublished(conn, batch: int):
    """Up to ``batch`` unpublished events, oldest first, locked until the caller's transaction ends
    (another relay skips them)."""
    return await conn.fetch("SELECT seq, order_id, type, data, created_at FROM order_events WHERE published_at IS NULL"
                            " ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED", batch)


async def mark_published(conn, rows) -> None:
    await conn.execute("UPDATE order_events SET published_at = clock_timestamp() WHERE seq = ANY($1::bigint[])",
                       [row["seq"] for row in rows])


def fold(events) -> dict | None:
    """An order's current state from its events (oldest first): what the write model's row says.

    Each event carries the order's state after the change, so the fold keeps the last
    one — and checks the log is whole: it starts with ``created`` and ``seq`` increases.
    """
    state = None
    for event in events:
        data = event["data"] if isinstance(event["data"], dict) else json.loads(event["data"])
        if state is None:
            if event["type"] != "created":
                raise ValueError(f"order {event['order_id']}'s log starts with {event['type']!r}, not 'created'")
            state = {"id": event["order_id"], "version": 0, "seq": 0}
        elif event["type"] == "created":
            raise ValueError(f"order {event['order_id']} was created twice (event {event['seq']})")
        if event["seq"] <= state["seq"]:
            raise ValueError(f"order {event['order_id']}'s events are out of order at seq {event['seq']}")
        state.update(user_id=data["user_id"], status=data["status"], total_cents=data["total_cents"],
                     version=state["version"] + 1, seq=event["seq"])
    return state
