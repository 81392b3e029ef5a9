"""`Stage.map` on a Dask cluster: 400 trivial calls on a 2-worker LocalCluster vs
a 1-worker one (both sandboxed, warm), the same for 120 calls that compute, the
engine's per-call cost against a local map of the same stage, and the local map
on 2 threads vs 1 (the same two cores without a cluster). Interleaved, medians;
ratios from one run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from ipyrunner import Stage

CALLS = 400
# Calls that compute (about 50 ms each here): what a map on a cluster is for.
WORK = (
    "def execute(x):\n"
    "    total = 0\n"
    "    for i in range(800_000):\n"
    "        total += i * x\n"
    "    return total\n"
)
WORK_CALLS = 120


def main(rounds: int) -> None:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        print("distributed not installed: engine rows skipped (pip install 'ipyrunner[dask]')")
        return
    stage = Stage("def execute(x):\n    return x + 1\n", name="trivial")
    work = Stage(WORK, name="work")
    inputs = list(range(CALLS))
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as two,
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as one,
        Client(two, set_as_default=False) as on_two,
        Client(one, set_as_default=False) as on_one,
    ):
        runs: dict[str, Callable[[], object]] = {
            "2 workers": lambda: stage.map(inputs, engine=on_two, quiet=True),
            "1 worker": lambda: stage.map(inputs, engine=on_one, quiet=True),
            "local, 2 threads": lambda: stage.map(inputs, workers=2, quiet=True),
            "local, 1 thread": lambda: stage.map(inputs, workers=1, quiet=True),
            "work, 2 workers": lambda: work.map(inputs[:WORK_CALLS], engine=on_two, quiet=True),
            "work, 1 worker": lambda: work.map(inputs[:WORK_CALLS], engine=on_one, quiet=True),
        }
        for action in runs.values():  # warm workers started, venvs and pools made
            action()
        times: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(max(3, rounds)):
            for label, action in runs.items():
                start = time.perf_counter()
                action()
                times[label].append(time.perf_counter() - start)
    stage.close()
    work.close()
    median = {label: statistics.median(found) for label, found in times.items()}
    for label, seconds in median.items():
        calls, what = (WORK_CALLS, "computing") if label.startswith("work") else (CALLS, "trivial")
        print(f"{calls} {what} calls, {label.removeprefix('work, '):<18} {seconds:8.3f} s  "
              f"{1e3 * seconds / calls:6.2f} ms per call")  # fmt: skip
    speedup = median["1 worker"] / median["2 workers"]
    print(f"dask map: 2 workers vs 1, speed-up {speedup:.2f}x (goal >= 1.7 on 2 cores)")
    # What two cores give trivial warm calls with no cluster at all: a call's work
    # spans three processes, so one stream of calls already keeps most of both busy.
    ceiling = median["local, 1 thread"] / median["local, 2 threads"]
    print(f"local map of trivial calls: 2 threads vs 1, speed-up {ceiling:.2f}x "
          "(the same two cores, no cluster)")  # fmt: skip
    work_speedup = median["work, 1 worker"] / median["work, 2 workers"]
    print(f"dask map of calls that compute: 2 workers vs 1, speed-up {work_speedup:.2f}x")
    extra = (median["2 workers"] - median["local, 2 threads"]) / CALLS
    print(f"dask engine per call vs a local map (2 each): {1e3 * extra:+.2f} ms, "
          f"ratio {median['2 workers'] / median['local, 2 threads']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main(3)
