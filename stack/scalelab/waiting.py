"""Waiting, bounded: the one deadline loop of the driver.

``wait_until(probe, timeout)`` calls ``probe`` until its answer is done (truthy, by default) and
returns that answer. Only the exceptions named in ``transient`` mean "not yet" — a connection
refused while a server starts; any other shows at once, not after the timeout. When time is up it
raises ``error(on_timeout)`` (the last transient error as its cause), or returns None when no
``on_timeout`` is given: the wait was best effort and the caller goes on.
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
               on_timeout: str | Callable[[BaseException | None], str] | None = None,
               error: type[Exception] = WaitTimedOut) -> Any:
    """``probe()`` until ``done(answer)``, at most ``timeout`` seconds; the answer, or see above.

    ``interval`` is the pause between tries; with ``max_interval`` it grows by half each try up to
    that (a probe that costs something is asked less often the longer the wait). ``on_timeout`` is
    the message, or a function of the last transient error (None if there was none) making it.
    """
    deadline = time.monotonic() + timeout
    delay, last_error = interval, None
    while True:
        try:
            answer = probe()
            if done(answer):
                return answer
        except transient as exc:
            last_error = exc
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(delay, left))
        if max_interval is not None:
            delay = min(delay * 1.5, max_interval)
    if on_timeout is None:
        return None
    message = on_timeout if isinstance(on_timeout, str) else on_timeout(last_error)
    raise error(message) from last_error
