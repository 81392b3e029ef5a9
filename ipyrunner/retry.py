"""Retry policy: a small value that becomes a tenacity `Retrying`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential_jitter

from .config import IPyRunner, parse_count
from .sinks import RunStatus, Sink

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `retries` further attempts, waiting `initial * 2**k` seconds plus up
    to `jitter` random seconds between them, never more than `maximum`."""

    retries: int = 0
    initial: float = 0.5
    maximum: float = 10.0
    jitter: float = 0.5

    @classmethod
    def from_settings(cls, settings: IPyRunner, retries: int | str | None = None) -> RetryPolicy:
        count = settings.retries if retries is None else parse_count(retries, "--retries")
        return cls(
            retries=count,
            initial=settings.backoff_initial,
            maximum=settings.backoff_max,
            jitter=settings.backoff_jitter,
        )

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def wait(self) -> wait_base:
        return wait_exponential_jitter(
            multiplier=self.initial, max=self.maximum, jitter=self.jitter
        )


def run_attempts(
    attempt: Callable[[int], T],
    policy: RetryPolicy,
    *,
    retryable: Callable[[T], bool],
    before_retry: Callable[[T, int, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, int]:
    """Call `attempt(k)` for k = 1, 2, ... while `retryable(result)` and attempts
    remain; exceptions (an interrupt, a bad path) are never retried.

    Returns the last result and how many attempts were made.
    """
    if policy.retries == 0:  # nothing to retry: no retrying machinery per call
        return attempt(1), 1
    made = 0

    def once() -> T:
        nonlocal made
        made += 1
        return attempt(made)

    def announce(state: RetryCallState) -> None:
        if before_retry is not None and state.outcome is not None and state.next_action:
            before_retry(state.outcome.result(), state.attempt_number, state.next_action.sleep)

    def last_result(state: RetryCallState) -> T:
        assert state.outcome is not None
        result: T = state.outcome.result()
        return result

    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=policy.wait(),
        retry=retry_if_result(retryable),
        sleep=sleep,
        before_sleep=announce,
        retry_error_callback=last_result,
        reraise=True,
    )
    return retrying(once), made


def run_reported(
    label: str,
    sink: Sink,
    policy: RetryPolicy,
    attempt: Callable[[int], T],
    *,
    retryable: Callable[[T], bool],
    failure: Callable[[T], str],
) -> tuple[T, int, float]:
    """`run_attempts`, telling `sink` when each attempt starts, when a retry is
    scheduled (with `failure(result)` as the reason) and when an interrupt ends it.

    Returns the last result, the attempts made, and the seconds it all took.
    """
    start = time.monotonic()

    def started(number: int) -> T:
        sink.status(RunStatus(label, "running", number, policy.attempts))
        return attempt(number)

    def announce(result: T, number: int, wait_s: float) -> None:
        note = f"{failure(result)[:120]} · retrying in {wait_s:.1f} s"
        sink.status(RunStatus(label, "retrying", number, policy.attempts, note=note))

    try:
        last, made = run_attempts(started, policy, retryable=retryable, before_retry=announce)
    except KeyboardInterrupt:
        sink.status(RunStatus(label, "interrupted", elapsed_s=time.monotonic() - start))
        raise
    return last, made, time.monotonic() - start
