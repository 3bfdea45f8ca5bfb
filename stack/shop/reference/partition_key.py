"""The Kafka message key of an order event: the topic's partitioner sends equal keys to one partition."""


def key(event: dict) -> str:
    """The key that keeps each order's events in order, and spreads different orders."""
    return str(event["order_id"])
