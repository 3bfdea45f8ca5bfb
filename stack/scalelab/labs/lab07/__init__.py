"""Lab 07 — observability and resilience: ``from scalelab.labs import lab07``.

    observability.py  metrics by route, request ids in JSON logs, Prometheus, the learner's alert
                      rules firing under injected faults (exercise ``alert_rules``); ``lab07.<name>``
    resilience.py     timeouts, retries, a bulkhead and the learner's circuit breaker (exercise
                      ``circuit_breaker``); the notebook's helpers as ``lab07.resilience.<name>``
"""

from scalelab.labs.lab07 import resilience  # noqa: F401
from scalelab.labs.lab07.observability import *  # noqa: F401,F403
from scalelab.labs.lab07.resilience import circuit_breaker  # noqa: F401
