from shop.accounts import TooManyConflicts


async def debit(conn, account_id: int, amount: int):
    """Take `amount` from the account in one atomic step: the new balance, or None when
    the account does not hold enough (or does not exist)."""
    # The check (balance >= amount) and the write are one statement: Postgres locks the
    # row while it updates it, so a concurrent debit waits, then re-checks the new balance.
    return await conn.fetchval(
        "UPDATE accounts SET balance = balance - $2, version = version + 1"
        " WHERE id = $1 AND balance >= $2 RETURNING balance",
        account_id, amount,
    )


async def debit_optimistic(conn, account_id: int, amount: int, attempts: int = 20):
    """No lock: write only if nobody changed the row since we read it; else read again."""
    for _ in range(attempts):
        row = await conn.fetchrow("SELECT balance, version FROM accounts WHERE id = $1", account_id)
        if row is None or row["balance"] < amount:
            return None
        balance = await conn.fetchval(
            "UPDATE accounts SET balance = $2, version = version + 1"
            " WHERE id = $1 AND version = $3 RETURNING balance",
            account_id, row["balance"] - amount, row["version"],
        )
        if balance is not None:      # our version was still current: the write counted
            return balance
        # another debit committed first (the version moved on): read the new balance, try again
    raise TooManyConflicts(f"account {account_id}: {attempts} attempts, each lost to another write")
