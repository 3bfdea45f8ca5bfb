MIN_REQUESTS = 50      # fewer canary requests than this: too few to judge
MARGIN = 0.02          # how far above blue's error rate the canary's may be (2 points)


def gate(stable, canary) -> str:
    """'promote', 'hold' or 'rollback', from what blue (stable) and green (canary) answered."""
    if canary.requests < MIN_REQUESTS:
        return "hold"                       # a few requests prove nothing either way
    if canary.error_rate > stable.error_rate + MARGIN:
        return "rollback"                   # worse than blue, by rate: blue's is the baseline
    return "promote"
