"""Waiting, bounded: the one deadline loop of the driver.

``wait_until(probe, timeout)`` calls ``probe`` until its answer is done (truthy, by default) and
returns that answer. Only the exceptions named in ``transient`` mean "not yet" — a connection
refused while a server starts; any other shows at once, not after the timeout. When time is up it
raises ``error(on_timeout)`` (the last transient error as its cause), or returns None when no
``on_timeout`` is given: the wait was best effort and the caller goes on. A message that needs what
was seen last (a log tail, the last answer) is a function: ``on_timeout(last)``.
"""

import time
from collections.abc import Callable
from typing import Any

from scalelab.errors import ScalelabError


class WaitTimedOut(ScalelabError):
    """A bounded wait ended before its condition held; the message says what was waited for."""


def wait_until(probe: Callable[[], Any], timeout: float, *,
               transient: type[BaseException] | tuple[type[BaseException], ...] = (),
               interval: float = 0.05, max_interval: float | None = None,
               done: Callable[[Any], bool] = bool,
               on_timeout: str | Callable[[Any], str] | None = None,
               error: type[Exception] = WaitTimedOut) -> Any:
    """``probe()`` until ``done(answer)``, at most ``timeout`` seconds; the answer, or see above.

    ``interval`` is the pause between tries; with ``max_interval`` it grows by half each try up to
    that (a probe that costs something is asked less often the longer the wait). ``on_timeout`` is
    the message, or a function making it of what the last try gave: its answer, or the transient
    error it raised.
    """
    deadline = time.monotonic() + timeout
    delay, last, last_error = interval, None, None
    while True:
        try:
            last = answer = probe()
            last_error = None
            if done(answer):
                return answer
        except transient as exc:
            last = last_error = exc
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(delay, left))
        if max_interval is not None:
            delay = min(delay * 1.5, max_interval)
    if on_timeout is None:
        return None
    message = on_timeout if isinstance(on_timeout, str) else on_timeout(last)
    raise error(message) from last_error
