"""Benchmarks, measured in one run and printed as ratios (not pass/fail).

1. Runner overhead: `run_process` vs `subprocess.run` for /bin/true.
2. Sandbox cost: a trivial Python stage sandboxed (bwrap) vs the same stage
   unsandboxed vs the same interpreter spawned bare (`python -I -c pass`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from ipyrunner import Stage
from ipyrunner.process import Limits, NullSink, run_process
from ipyrunner.sandbox.probe import bwrap_status

ENV = {"PATH": "/usr/bin:/bin"}


def median_seconds(action: Callable[[], object], rounds: int) -> float:
    action()  # warm caches
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(label: str, seconds: float, base: float | None = None) -> str:
    ratio = f"   ratio {seconds / base:5.2f}" if base else ""
    return f"{label:<44}{seconds * 1e3:9.2f} ms{ratio}"


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "40"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {rounds} rounds, medians")
    true = ["/bin/true"]
    bare_true = median_seconds(
        lambda: subprocess.run(true, capture_output=True, env=ENV, check=False), rounds * 5
    )
    runner_true = median_seconds(
        lambda: run_process(true, env=ENV, cwd="/", limits=Limits()), rounds * 5
    )
    print(row("subprocess.run /bin/true", bare_true))
    print(row("run_process /bin/true", runner_true, bare_true))

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        stage = Stage("def execute(input):\n    return input\n")
        bare_python = median_seconds(
            lambda: subprocess.run(
                [sys.executable, "-I", "-c", "pass"], capture_output=True, check=False
            ),
            rounds,
        )
        unsandboxed = _stage_time(stage, "none", rounds)
        print(row("bare python -I -c pass", bare_python))
        print(row("stage, --isolate none", unsandboxed, bare_python))
        if bwrap_status().usable:
            sandboxed = _stage_time(stage, "bwrap", rounds)
            print(row("stage, --isolate bwrap", sandboxed, bare_python))
            print(f"sandbox cost per call (bwrap vs none): ratio {sandboxed / unsandboxed:.2f}")
        else:
            print(f"bwrap unusable here: {bwrap_status().reason}")


def _stage_time(stage: Stage, isolate: str, rounds: int) -> float:
    twin = Stage(stage.code, isolate=isolate)
    return median_seconds(lambda: twin.run(1, sink=NullSink()), rounds)


if __name__ == "__main__":
    main()
