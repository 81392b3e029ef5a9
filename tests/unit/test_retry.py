from __future__ import annotations

import pytest

from ipyrunner.config import IPyRunner
from ipyrunner.errors import InvalidOption
from ipyrunner.retry import RetryPolicy, run_attempts


def test_failures_are_retried_until_attempts_run_out() -> None:
    calls: list[int] = []

    def attempt(n: int) -> str:
        calls.append(n)
        return "fail"

    result, made = run_attempts(
        attempt,
        RetryPolicy(retries=3),
        retryable=lambda r: r == "fail",
        sleep=lambda s: None,
    )
    assert (result, made, calls) == ("fail", 4, [1, 2, 3, 4])


def test_success_stops_the_retries() -> None:
    result, made = run_attempts(
        lambda n: "ok" if n == 2 else "fail",
        RetryPolicy(retries=5),
        retryable=lambda r: r == "fail",
        sleep=lambda s: None,
    )
    assert (result, made) == ("ok", 2)


def test_zero_retries_means_one_attempt() -> None:
    _, made = run_attempts(lambda n: "fail", RetryPolicy(), retryable=lambda r: True)
    assert made == 1


def test_exceptions_are_never_retried() -> None:
    calls: list[int] = []

    def attempt(n: int) -> str:
        calls.append(n)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_attempts(
            attempt, RetryPolicy(retries=3), retryable=lambda r: True, sleep=lambda s: None
        )
    assert calls == [1]


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    policy = RetryPolicy(retries=8, initial=0.5, maximum=4.0, jitter=0.25)
    waits: list[float] = []
    announced: list[tuple[int, float]] = []
    run_attempts(
        lambda n: "fail",
        policy,
        retryable=lambda r: True,
        before_retry=lambda r, n, s: announced.append((n, s)),
        sleep=waits.append,
    )
    assert len(waits) == 8
    for k, wait in enumerate(waits):
        base = min(0.5 * 2**k, 4.0)
        assert base <= wait <= min(base + 0.25, 4.0)
    assert max(waits) <= 4.0
    assert [n for n, _ in announced] == list(range(1, 9))
    assert [s for _, s in announced] == waits


def test_policy_from_settings_validates_retries() -> None:
    settings = IPyRunner(retries=2)
    assert RetryPolicy.from_settings(settings).attempts == 3
    assert RetryPolicy.from_settings(settings, "0").attempts == 1
    for bad in ("-1", "two", "1.5"):
        with pytest.raises(InvalidOption):
            RetryPolicy.from_settings(settings, bad)
