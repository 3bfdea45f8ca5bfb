import json


def user_key(user_id: int) -> str:
    return f"user:{user_id}"


async def get_user(redis, user_id: int, load_from_db, ttl_s: int):
    """Cache-aside: the cached user if Redis has it, else the DB's, then cached for ttl_s."""
    cached = await redis.get(user_key(user_id))
    if cached is not None:
        return json.loads(cached)                      # a hit: the database is not asked
    user = await load_from_db(user_id)                 # a miss: one query, as before
    if user is not None:
        # created_at is a datetime: default=str writes it as text the API parses back
        await redis.set(user_key(user_id), json.dumps(user, default=str), ex=ttl_s)
    return user


async def forget_user(redis, user_id: int) -> None:
    """Called after every update or delete of this user."""
    await redis.delete(user_key(user_id))
