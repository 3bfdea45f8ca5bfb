"""The driver's one bounded wait: what it returns, what it retries, what it raises."""

import time

import pytest

from scalelab.errors import ScalelabError
from scalelab.waiting import WaitTimedOut, wait_until


def test_returns_the_first_answer_that_is_done():
    answers = iter([0, None, "", 7, 8])
    assert wait_until(lambda: next(answers), timeout=5, interval=0) == 7


def test_done_decides_what_counts_as_an_answer():
    answers = iter([None, 0, 1])
    assert wait_until(lambda: next(answers), timeout=5, interval=0, done=lambda a: a is not None) == 0


def test_a_transient_error_means_not_yet_and_becomes_the_timeout_cause():
    def refused():
        raise ConnectionRefusedError("refused")
    with pytest.raises(WaitTimedOut, match="postgres not ready") as caught:
        wait_until(refused, timeout=0.2, interval=0.01, transient=OSError,
                   on_timeout=lambda last: f"postgres not ready ({last})")
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert isinstance(caught.value, ScalelabError)   # the notebook shows one line, not a traceback


def test_any_other_error_shows_at_once_not_after_the_timeout():
    calls = []

    def broken():
        calls.append(1)
        raise KeyError("typo")
    started = time.monotonic()
    with pytest.raises(KeyError):
        wait_until(broken, timeout=30, transient=OSError, on_timeout="never")
    assert len(calls) == 1 and time.monotonic() - started < 1


def test_the_message_can_name_the_last_answer():
    answers = iter(["starting", "recovering", "catching up"] * 100)
    with pytest.raises(WaitTimedOut, match="still catching up|still recovering|still starting"):
        wait_until(lambda: next(answers), timeout=0.1, interval=0.01, done=lambda a: a == "streaming",
                   on_timeout=lambda last: f"standby-1 still {last}")


def test_without_a_message_the_wait_is_best_effort():
    started = time.monotonic()
    assert wait_until(lambda: False, timeout=0.2, interval=0.05) is None
    assert 0.2 <= time.monotonic() - started < 2


def test_the_error_type_is_the_callers():
    class NotStreaming(ScalelabError):
        pass
    with pytest.raises(NotStreaming, match="standby-1"):
        wait_until(lambda: False, timeout=0.05, interval=0.01, on_timeout="standby-1 is not streaming",
                   error=NotStreaming)


def test_the_interval_grows_up_to_its_cap():
    times = []
    wait_until(lambda: times.append(time.monotonic()), timeout=0.6, interval=0.02, max_interval=0.1)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[0] < 0.06 and max(gaps) < 0.3 and gaps[-2] >= 0.08
