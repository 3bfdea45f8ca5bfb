async def process_order(conn, order_id: int, pay) -> str:
    """One delivery of an order's task (maybe a redelivery): 'done' or 'skipped'."""
    # Claim it: only an order that is not finished yet. 'processing' is included on
    # purpose — the worker that set it may have died mid-task (that is a redelivery).
    order = await conn.fetchrow(
        "UPDATE orders SET status = 'processing', updated_at = clock_timestamp()"
        " WHERE id = $1 AND status IN ('pending', 'processing', 'retrying')"
        " RETURNING id, total_cents",
        order_id)
    if order is None:
        return "skipped"          # done (or dead) already: a duplicate delivery does nothing
    await pay(dict(order))        # slow; may raise — let it: the worker retries with backoff
    await conn.execute(
        "UPDATE orders SET status = 'done', done_at = clock_timestamp(), updated_at = clock_timestamp()"
        " WHERE id = $1",
        order_id)
    return "done"
