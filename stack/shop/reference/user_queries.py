async def fetch_user(conn, user_id: int):
    """Return the user with this id as a dict, or None when there is none."""
    row = await conn.fetchrow(
        "SELECT id, email, name, created_at FROM users WHERE id = $1", user_id
    )
    return dict(row) if row is not None else None
