async def apply_once(conn, key: str, order_id: int, amount_cents: int) -> bool:
    """Record the payment for `key` unless it exists: True when this call recorded it."""
    # One statement: the UNIQUE index on payments.idempotency_key decides, even when two
    # deliveries run it at the same instant (a SELECT first, then an INSERT, would race).
    payment_id = await conn.fetchval(
        "INSERT INTO payments (idempotency_key, order_id, amount_cents) VALUES ($1, $2, $3)"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        key, order_id, amount_cents)
    return payment_id is not None
