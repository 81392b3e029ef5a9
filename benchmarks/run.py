"""Benchmarks, measured in one run and printed as ratios (not pass/fail).

runner overhead: median wall time of `run_process` vs `subprocess.run` for the
same trivial child, and of a full `run_script` (path checks, private dirs,
clean environment) vs the same.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ipyrunner import run_script
from ipyrunner.process import Limits, run_process

ROUNDS = 200
ENV = {"PATH": "/usr/bin:/bin"}


def median_seconds(action: Callable[[], object], rounds: int = ROUNDS) -> float:
    action()  # warm up caches
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    argv = ["/bin/true"]
    bare = median_seconds(lambda: subprocess.run(argv, capture_output=True, env=ENV, check=False))
    runner = median_seconds(lambda: run_process(argv, env=ENV, cwd="/", limits=Limits()))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "noop.sh"
        script.write_text(":\n")
        bash = ["/bin/bash", str(script)]
        bare_bash = median_seconds(lambda: subprocess.run(bash, capture_output=True, check=False))
        full = median_seconds(lambda: run_script("noop.sh", config=None), rounds=ROUNDS)
    print(f"python {sys.version.split()[0]}, {ROUNDS} rounds each, medians")
    print(f"subprocess.run /bin/true        {bare * 1e3:8.2f} ms")
    print(f"run_process /bin/true           {runner * 1e3:8.2f} ms   ratio {runner / bare:.2f}")
    print(f"subprocess.run bash noop.sh     {bare_bash * 1e3:8.2f} ms")
    print(f"run_script noop.sh              {full * 1e3:8.2f} ms   ratio {full / bare_bash:.2f}")


if __name__ == "__main__":
    main()
