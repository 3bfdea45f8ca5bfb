"""What each lab's stack is made of: the one table the runtimes read."""

from dataclasses import dataclass, field

from scalelab.errors import UnknownLab


@dataclass(frozen=True)
class Plan:
    lab: int
    title: str
    replicas: dict[str, int]                                   # service -> members at start
    exercises: tuple[str, ...] = ()                           # loaded from the lab workspace
    settings: dict[str, str] = field(default_factory=dict)    # extra SHOP_* settings
    runtimes: tuple[str, ...] = ("local", "compose", "kind")  # where this lab's stack can run today

    def has(self, service: str) -> bool:
        return service in self.replicas


# From lab 02 on, PATCH/DELETE /users/{id} need a Bearer token (the JWT secret is the
# runtime's, generated per stack). Later labs' plans include these settings too.
AUTH = {"SHOP_AUTH_REQUIRED": "true"}

LOCAL_AND_COMPOSE = ("local", "compose")
EVERYWHERE = ("local", "compose", "kind")
# "kubernetes" (any kubeconfig context): the labs whose notebooks are tested there, on the kind
# cluster seen as any cluster with a registry (tests/test_kubernetes_registry.py).

PLANS = {
    1: Plan(1, "stateless user service", {"postgres": 1, "users": 1},
            exercises=("user_queries", "pool", "avatar_cache"), settings={"SHOP_DEBUG_MEMORY": "true"},
            runtimes=EVERYWHERE),
    2: Plan(2, "load balancing: nginx over replicas, failover, stateless auth",
            {"postgres": 1, "users": 3, "express": 0, "nginx": 1},   # express: the Node replica, scaled in step 10
            exercises=("upstream", "tokens", "tls"), settings={**AUTH}, runtimes=(*EVERYWHERE, "kubernetes")),
    3: Plan(3, "redis cache-aside and rate limiting", {"postgres": 1, "redis": 1, "users": 3, "nginx": 1},
            exercises=("user_cache", "rate_limit"),
            settings={**AUTH, "SHOP_CACHE_TTL_S": "60", "SHOP_RATE_LIMIT": "20", "SHOP_RATE_LIMIT_WINDOW_S": "2"},
            runtimes=EVERYWHERE),
}
PLANS[4] = Plan(4, "database scaling: replication, read/write split, sharding, races",
                {"postgres": 1, "standby": 1, "users": 2, "nginx": 1},
                exercises=("replication", "read_routing", "sharding", "debit"),
                settings={**AUTH}, runtimes=EVERYWHERE)
# Orders (lab 05 on): a short visibility timeout (default 1 h) so a killed worker's order is
# redelivered within the notebook; every task and retry countdown is shorter.
ORDERS = {"SHOP_BROKER_VISIBILITY_TIMEOUT_S": "5", "SHOP_ORDER_PROCESS_S": "0.5",
          "SHOP_ORDER_MAX_RETRIES": "3", "SHOP_ORDER_RETRY_BASE_S": "0.25"}
# RabbitMQ runs from lab 05 on: lab 05 starts on the stack's Redis, its `broker` exercise
# (broker.yaml) picks the broker that keeps its promise; labs 07 and 08 run the reference
# (RabbitMQ: durable queue, persistent messages, publisher confirms).
PLANS[5] = Plan(5, "queues: orders through Celery workers, a broker that survives its crash",
                {"postgres": 1, "redis": 1, "rabbitmq": 1, "users": 1, "orders": 1, "worker": 1},
                exercises=("order_task", "idempotency", "broker"),
                settings={**AUTH, **ORDERS}, runtimes=(*EVERYWHERE, "kubernetes"))
PLANS[6] = Plan(6, "containers and Kubernetes: probes, rolling updates, the HorizontalPodAutoscaler, deploys",
                {"postgres": 1, "redis": 1, "users": 2, "green": 0, "nginx": 1},   # green: step 9's new colour
                exercises=("deployment", "hpa", "canary_gate"),
                settings={**AUTH})
PLANS[7] = Plan(7, "observability and resilience: metrics, alerts, a circuit breaker, a chaos drill",
                {"postgres": 1, "standby": 1, "redis": 1, "rabbitmq": 1, "users": 2, "nginx": 1, "orders": 1,
                 "worker": 2, "prometheus": 1},
                exercises=("alert_rules", "circuit_breaker"),
                settings={**AUTH, **ORDERS, "SHOP_OUTBOX_SWEEP_S": "1", "SHOP_ACCESS_LOG": "true"},
                runtimes=EVERYWHERE)
PLANS[8] = Plan(8, "events and CQRS: an event log, a projected read model, replay",
                {"postgres": 1, "redis": 1, "rabbitmq": 1, "users": 1, "orders": 1, "worker": 1, "relay": 1,
                 "projector": 1},
                exercises=("projector", "partition_key"),
                settings={**AUTH, **ORDERS, "SHOP_ORDER_PROCESS_S": "0.05"}, runtimes=EVERYWHERE)



def require_runtime(plan: Plan, runtime: str) -> None:
    """One clear line when a lab's stack cannot run on ``runtime`` yet (never a half-built stack)."""
    if runtime not in plan.runtimes:
        from scalelab.errors import RuntimeUnavailable
        raise RuntimeUnavailable(f"lab {plan.lab} ({plan.title}) runs on the {' and '.join(plan.runtimes)} "
                                 f"runtime{'s' if len(plan.runtimes) > 1 else ''} in this version, not {runtime!r} "
                                 f"— use runtime=\"{plan.runtimes[0]}\"")


def plan_for(lab: int | str) -> Plan:
    """The plan of lab ``lab`` (a number, or its digits: ``"05"``); a typo is one line naming the labs."""
    known = ", ".join(str(n) for n in sorted(PLANS))
    try:
        return PLANS[int(lab)]
    except (KeyError, ValueError, TypeError):
        raise UnknownLab(f"no lab {lab!r}: labs available are {known}") from None
