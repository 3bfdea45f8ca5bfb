"""The Kafka message key of an order event: the topic's partitioner sends equal keys to one partition."""


def key(event: dict) -> str:
    """Key every event by its order: one order's events share a partition, so they stay in order
    (Kafka orders messages within a partition only), while different orders spread over all of them."""
    return str(event["order_id"])
