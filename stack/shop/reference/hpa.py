import math


def desired_replicas(current_replicas: int, current_metric, target: float, tolerance: float = 0.1,
                     min_replicas: int = 1, max_replicas: int = 10) -> int:
    """The HPA's rule: ceil(current × metric / target), unchanged within the tolerance, clamped."""
    if current_metric is None or current_replicas <= 0:
        # No metric (no ready replica measured yet), or scaled to zero: no decision.
        return current_replicas
    ratio = current_metric / target
    if abs(ratio - 1.0) <= tolerance:
        desired = current_replicas            # close enough: don't flap around the target
    else:
        desired = math.ceil(current_replicas * ratio)
    return max(min_replicas, min(max_replicas, desired))
