"""How every benchmark times: medians, and pairs measured interleaved, so both
sides of a ratio see the same machine load."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def median_seconds(action: Callable[[], object], rounds: int) -> float:
    action()  # warm caches
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(
    first: Callable[[], object], second: Callable[[], object], rounds: int
) -> tuple[float, float]:
    a, b = interleaved_all((first, second), rounds)
    return a, b


def interleaved_all(actions: Sequence[Callable[[], object]], rounds: int) -> list[float]:
    """The median time of each action, run one after another in every round."""
    times: list[list[float]] = [[] for _ in actions]
    for _ in range(rounds):
        for action, into in zip(actions, times, strict=True):
            start = time.perf_counter()
            action()
            into.append(time.perf_counter() - start)
    return [statistics.median(found) for found in times]


def row(label: str, seconds: float, base: float | None = None) -> str:
    ratio = f"   ratio {seconds / base:5.2f}" if base else ""
    return f"{label:<44}{seconds * 1e3:9.2f} ms{ratio}"
