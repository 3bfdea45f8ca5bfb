"""The projector: apply one order event to the read model in Redis — at most once in effect.

The read model ("orders by user"):
    rm:order:<order_id>         hash  status, user_id, total_cents, seq (last applied), events (how many applied)
    rm:user:<user_id>           hash  orders (created), done, spent_cents (sum of done orders' totals)
    rm:user:<user_id>:orders    zset  the user's order ids
"""


def apply(event: dict, redis) -> bool:
    """Apply ``event`` unless its order's view has seen its seq: True when it changed the model."""
    # One Lua script: Redis runs it atomically, so "was this event applied already?" and the
    # changes it guards cannot be split by a crash, nor interleaved with another client.
    script = """
    local seq = tonumber(ARGV[1])
    if seq <= tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') then
      return 0
    end
    redis.call('HSET', KEYS[1], 'seq', seq, 'status', ARGV[2], 'user_id', ARGV[3], 'total_cents', ARGV[4])
    redis.call('HINCRBY', KEYS[1], 'events', 1)
    if ARGV[5] == 'created' then
      redis.call('HINCRBY', KEYS[2], 'orders', 1)
      redis.call('ZADD', KEYS[3], ARGV[6], ARGV[6])
    end
    if ARGV[2] == 'done' then
      redis.call('HINCRBY', KEYS[2], 'done', 1)
      redis.call('HINCRBY', KEYS[2], 'spent_cents', ARGV[4])
    end
    return 1
    """
    order, user = f"rm:order:{event['order_id']}", f"rm:user:{event['user_id']}"
    applied = redis.eval(script, 3, order, user, f"{user}:orders",
                         event["seq"], event["status"], event["user_id"], event["total_cents"],
                         event["type"], event["order_id"])
    return applied == 1
