async def allow(redis, client: str, limit: int, window_s: int) -> tuple[bool, int]:
    """Fixed window: may `client` send one more request? Returns (allowed, retry_after_s)."""
    key = f"ratelimit:{client}"
    async with redis.pipeline(transaction=True) as pipe:   # MULTI ... EXEC: atomic, one round trip
        pipe.incr(key)                                      # count this request
        pipe.expire(key, window_s, nx=True)                 # the window's first request starts its clock
        pipe.ttl(key)                                       # seconds until the window ends
        count, _, ttl = await pipe.execute()
    return count <= limit, max(ttl, 1)
