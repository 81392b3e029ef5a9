"""Benchmarks, measured in one run and printed as ratios (not pass/fail).

1. Runner overhead: `run_process` vs `subprocess.run` for /bin/true.
2. Sandbox cost: a trivial Python stage sandboxed (bwrap) vs the same stage
   unsandboxed vs the same interpreter spawned bare (`python -I -c pass`); then,
   interleaved, bwrap alone with the stage's own arguments around that bare
   interpreter, the stage, and the stage without a cgroup of its own.
3. Runtimes: a trivial stage per call on `nix` vs `host` (resolution must not
   be paid per call), vs a naive `nix run FLAKE#python3` per call; first vs
   second use of a `venv` runtime. Nix uses the offline flake in tests/nixflake.
4. The write path: a project script writing a 1 GB file, and one writing a tree
   of 100,000 small files, sandboxed with fs-write (an overlay, committed when the
   run ends) vs the same script unsandboxed.
5. The network effect: a trivial stage with `network` (its own namespace, pasta
   attached per call) vs the same stage pure.
6. The cold path: the Python wrapper's own start-up as a stage runs it (a
   trivial cell, no sandbox) vs the bare interpreter with the same flags.
7. Large values: a 10 MB JSON list into an echo stage and back vs `json.dumps`
   + `json.loads` of it in this process (rows of a table, and plain floats).
8. `Stage.map` on a Dask LocalCluster: 2 workers vs 1, and against a local map.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from unittest import mock

from timing import interleaved, interleaved_all, median_seconds, row

from ipyrunner import Stage, run_script
from ipyrunner.config import settings
from ipyrunner.environment import find_program, removed
from ipyrunner.process import Limits, run_process
from ipyrunner.sandbox.overlay import remove_tree
from ipyrunner.sandbox.probe import bwrap_status
from ipyrunner.sinks import NullSink
from ipyrunner.stages.languages import find_language

FLAKE = Path(__file__).resolve().parents[1] / "tests" / "nixflake"

ENV = {"PATH": "/usr/bin:/bin"}


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

    start = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        stage = Stage("def execute(input):\n    return input\n")
        bare_python = median_seconds(
            lambda: subprocess.run(
                [sys.executable, "-I", "-c", "pass"], capture_output=True, check=False
            ),
            rounds,
        )
        print(row("bare python -I -c pass", bare_python))
        if bwrap_status().usable:
            bare, boxed = (Stage(stage.code, isolate=mode) for mode in ("none", "bwrap"))
            unsandboxed, sandboxed = interleaved(
                lambda: bare.run(1, sink=NullSink()), lambda: boxed.run(1, sink=NullSink()), rounds
            )
            print(row("stage, --isolate none", unsandboxed, bare_python))
            print(row("stage, --isolate bwrap", sandboxed, bare_python))
            print(f"sandbox cost per call (bwrap vs none): ratio {sandboxed / unsandboxed:.2f}")
            bwrap_floor(boxed, rounds)
            networked = Stage(stage.code, isolate="bwrap", effects="network")
            pure, network = interleaved(
                lambda: boxed.run(1, sink=NullSink()),
                lambda: networked.run(1, sink=NullSink()),
                rounds,
            )
            print(row("stage, bwrap, pure (paired with the next)", pure))
            print(row("stage, bwrap, --effects network (pasta)", network, pure))
            print(f"network cost per call (network vs pure): {1e3 * (network - pure):.1f} ms more")
        else:
            print(row("stage, --isolate none", _stage_time(stage, "none", rounds), bare_python))
            print(f"bwrap unusable here: {bwrap_status().reason}")
        wrapper_start_up(rounds, Path(tmp))
        warm_call(rounds * 5)
        json_round_trip(int(os.environ.get("BENCH_JSON_ROUNDS", "5")))
        runtimes(stage, rounds, tmp)
        if bwrap_status().usable:
            write_path(Path(tmp), int(os.environ.get("BENCH_WRITE_ROUNDS", "3")))
        kept_output(Path(tmp))
    os.chdir(start)  # the temporary directory is gone: a worker process starts here
    # The other files beside this one, each a part of the table.
    from display import main as display_rows  # messages under a flood
    from engines import main as engine_rows  # Stage.map on Dask
    from frames import main as frame_rows  # DataFrames in and out

    engine_rows(int(os.environ.get("BENCH_ENGINE_ROUNDS", "3")))
    display_rows(rounds)
    frame_rows(int(os.environ.get("BENCH_FRAME_ROUNDS", "5")))


# bwrap options whose value is a descriptor of the run that captured them.
_FD_OPTIONS = ("--seccomp", "--info-fd", "--block-fd", "--json-status-fd", "--sync-fd")


def bwrap_floor(stage: Stage, rounds: int) -> None:
    """bwrap alone, with the arguments a sandboxed stage's run gets, around
    `python -I -c pass`: the floor of a sandboxed cold call, with nothing of
    ipyrunner around it (no cgroup, no private directories made or removed, no
    result), interleaved with the stage itself."""
    from ipyrunner.sandbox import isolation

    captured: list[list[str]] = []
    filters: list[bytes] = []
    real = isolation._Descriptors.arguments

    def keep(self: isolation._Descriptors, args: Sequence[str]) -> int:
        captured.append(list(args))
        if self.seccomp is not None:
            filters.append(os.pread(self.seccomp, 1 << 20, 0))
        return real(self, args)

    with mock.patch.object(isolation._Descriptors, "arguments", keep):
        stage.run(1, sink=NullSink()).check()
    removed()  # the run's private directories are gone before they are made again
    args, program = _replayable(captured[-1])
    bwrap = bwrap_status().path or "bwrap"

    def floor() -> None:
        passed = []
        argv = [bwrap, *args]
        if filters:  # the same filter, loaded as the run loads it
            read, write = os.pipe()
            os.write(write, filters[-1])
            os.close(write)
            passed.append(read)
            argv[1:1] = ["--seccomp", str(read)]
        try:
            subprocess.run(
                [*argv, "--", program, "-I", "-c", "pass"],
                pass_fds=passed,
                capture_output=True,
                check=True,
            )
        finally:
            for fd in passed:
                os.close(fd)

    def bare() -> None:
        subprocess.run([program, "-I", "-c", "pass"], capture_output=True, check=True)

    # The same stage without a cgroup of its own: what the join costs. (Through
    # cgroup.procs it waited for an RCU grace period; by the launcher's one thread
    # on v1, `RunCgroup.join_files`, it does not.)
    uncounted = Stage(stage.code, isolate="bwrap", memory=0, processes=0)
    actions = (
        bare,
        floor,
        lambda: stage.run(1, sink=NullSink()),
        lambda: uncounted.run(1, sink=NullSink()),
    )
    base, alone, staged, no_cgroup = interleaved_all(actions, rounds)
    print(row("bare python -I -c pass (with the next three)", base))
    print(row("bwrap alone, the stage's arguments", alone, base))
    print(row("stage, --isolate bwrap", staged, base))
    print(row("the same without a run cgroup", no_cgroup, base))
    print(f"what ipyrunner adds to bwrap alone: {1e3 * (staged - alone):.1f} ms, of which "
          f"{1e3 * (staged - no_cgroup):.1f} ms joining the run's cgroup")  # fmt: skip


def _replayable(args: list[str]) -> tuple[list[str], str]:
    """A run's bwrap arguments without its descriptors, its private directories
    made again (the run removed them), and the interpreter it ran."""
    kept: list[str] = []
    i = 0
    while i < len(args):
        if args[i] in _FD_OPTIONS:
            i += 2
            continue
        if args[i] in ("--bind", "--ro-bind", "--dev-bind") and not os.path.lexists(args[i + 1]):
            os.makedirs(args[i + 1], exist_ok=True)
        kept.append(args[i])
        i += 1
    return kept, sys.executable


def wrapper_start_up(rounds: int, tmp: Path) -> None:
    python = find_language("python")
    cell = python.write_program(tmp, "def execute(input):\n    return input\n", "<stage cell>")
    read, write = os.pipe()  # the result channel, drained after each run
    os.set_blocking(read, False)
    env = {**ENV, "IPYRUNNER_RESULT_FD": str(write)}

    def run(argv: list[str]) -> None:
        subprocess.run(
            argv, input=b"1", capture_output=True, env=env, pass_fds=(write,), check=True
        )
        with contextlib.suppress(BlockingIOError):
            os.read(read, 1 << 16)

    bare = [sys.executable, *python.flags, "-c", "pass"]
    wrapped = [*python.command(sys.executable), str(cell), "cell"]
    base, wrapper = interleaved(lambda: run(bare), lambda: run(wrapped), rounds)
    os.close(read)
    os.close(write)
    print(row(f"bare python {' '.join(python.flags)} -c pass", base))
    print(row("python wrapper, trivial cell, no sandbox", wrapper, base))
    print(f"cold-path breakdown: the wrapper's own start-up is {1e3 * (wrapper - base):.1f} ms")


def warm_call(rounds: int) -> None:
    """A trivial stage served by a warm worker (a pristine fork per call) vs bare
    `python -I -c pass`, interleaved; then warm calls back to back."""
    if not bwrap_status().usable:
        print("warm workers need bwrap: warm rows skipped")
        return
    warm = Stage("def execute(input):\n    return input\n", isolate="bwrap", warm=True)
    bare = [sys.executable, "-I", "-c", "pass"]
    try:
        base, served = interleaved(
            lambda: subprocess.run(bare, capture_output=True, check=False),
            lambda: warm.run(1, sink=NullSink()).check(),
            rounds,
        )
        in_a_row = median_seconds(lambda: warm.run(1, sink=NullSink()).check(), rounds)
    finally:
        warm.close()
    print(row("bare python -I -c pass", base))
    print(row("stage served warm (target <= 0.10)", served, base))
    print(row("stage served warm, calls back to back", in_a_row, base))


def json_round_trip(rounds: int) -> None:
    isolate = "bwrap" if bwrap_status().usable else "none"
    echo = Stage("def execute(x):\n    return x\n", isolate=isolate)
    shapes = {
        "rows": [
            {"id": i, "name": f"row {i}", "x": i * 0.37, "tags": ["a", "b"]} for i in range(134_000)
        ],
        "floats": [i / 7 for i in range(500_000)],
    }
    for label, value in shapes.items():
        size = len(json.dumps(value)) / 1e6

        def plain(value: object = value) -> object:
            return json.loads(json.dumps(value))

        def staged(value: object = value) -> object:
            return echo.run(value, sink=NullSink()).check().value

        local, through = interleaved(plain, staged, rounds)
        print(row(f"json.dumps + json.loads, {size:.1f} MB of {label}", local))
        print(row(f"the same list into a stage ({isolate}) and back", through, local))


def runtimes(stage: Stage, rounds: int, tmp: str) -> None:
    config = settings()
    config.venv_cache = os.path.join(tmp, "venvs")
    config.nix_flake = f"path:{FLAKE}"
    config.nix_options = ["--option", "substituters", ""]
    if find_program("nix"):
        on_nix = Stage(stage.code, runtime="nix")
        on_host = Stage(stage.code, runtime="host")
        on_nix.run(1, sink=NullSink())  # resolves once
        # Interleaved, so both see the same machine load.
        host, nix_time = interleaved(
            lambda: on_host.run(1, sink=NullSink()), lambda: on_nix.run(1, sink=NullSink()), rounds
        )
        print(row("stage on host", host))
        print(row("stage on nix (resolved once)", nix_time, host))
        nix = find_program("nix") or "nix"
        naive = [nix, "--extra-experimental-features", "nix-command flakes", "run",
                 *config.nix_options, f"path:{FLAKE}#python3", "--", "-c", "pass"]  # fmt: skip
        store_python = [on_nix.interpreter().executable, "-c", "pass"]
        direct = median_seconds(
            lambda: subprocess.run(store_python, capture_output=True, check=False), rounds
        )
        naive_time = median_seconds(
            lambda: subprocess.run(naive, capture_output=True, check=False), max(5, rounds // 4)
        )
        print(row("store python -c pass, run directly", direct))
        print(row("naive `nix run FLAKE#python3 -c pass`", naive_time, direct))
        print(
            f"nix vs host per stage call: ratio {nix_time / host:.2f} (target <= 1.1); "
            f"naive nix run pays {1e3 * (naive_time - direct):.1f} ms more per call"
        )
    else:
        print("nix not installed: nix rows skipped (apt-get install nix-bin)")
    code = "# requires: six==1.16.0\nimport six\ndef execute(i):\n    return six.__version__\n"
    start = time.perf_counter()
    Stage(code).run(sink=NullSink())
    first = time.perf_counter() - start
    second = median_seconds(lambda: Stage(code).run(sink=NullSink()), max(5, rounds // 4))
    print(row("venv stage, first use (uv install)", first))
    print(row("venv stage, second use", second, first))


WRITERS = {
    "a 1 GB file": (
        "import os, sys\n"
        "with open(os.path.join(sys.argv[1], 'big.bin'), 'wb') as f:\n"
        "    block = os.urandom(1 << 20)\n"
        "    for _ in range(1024):\n"
        "        f.write(block)\n"
    ),
    "100,000 small files": (
        "import os, sys\n"
        "for d in range(100):\n"
        "    os.mkdir(os.path.join(sys.argv[1], str(d)))\n"
        "    for i in range(1000):\n"
        "        with open(os.path.join(sys.argv[1], str(d), f'{i}.txt'), 'w') as f:\n"
        "            f.write('row\\n')\n"
    ),
}


def write_path(tmp: Path, rounds: int) -> None:
    """Each run writes into a fresh directory of the project, removed untimed."""
    project = tmp / "write-project"
    (project / "scripts").mkdir(parents=True)
    os.chdir(project)
    for label, body in WRITERS.items():
        (project / "scripts" / "writer.py").write_text(body)
        count = iter(range(1_000_000))

        def once(isolate: str, count: Iterator[int] = count) -> None:
            out = project / f"out{next(count)}"
            out.mkdir()
            run_script("scripts/writer.py", str(out), isolate=isolate, sink=NullSink())

        bare, boxed = interleaved(lambda: once("none"), lambda: once("bwrap"), rounds)
        print(row(f"script writing {label}, unsandboxed", bare))
        print(row(f"script writing {label}, fs-write overlay", boxed, bare))
        for out in project.glob("out*"):
            remove_tree(str(out))


# The peak of this process's own memory (VmHWM): ru_maxrss would start at the
# peak of the process that started it, which exec carries over.
KEPT = """
from ipyrunner import run_script
from ipyrunner.sinks import NullSink
def peak():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) * 1024
before = peak()
result = run_script("scripts/flood.py", max_output="300M", isolate="none", sink=NullSink())
print(len(result.stdout), peak() - before)
"""


def kept_output(tmp: Path) -> None:
    """The kernel's peak memory growth for a run that prints 200 MiB, against the
    output kept: measured in a fresh process, so nothing else moves its peak."""
    project = tmp / "kept-project"
    (project / "scripts").mkdir(parents=True)
    (project / "scripts" / "flood.py").write_text(
        "import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(200 * 1024):\n"
        "    sys.stdout.write(line)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", KEPT],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PROJECT_DIRECTORY": str(project)},
    )
    kept, grown = map(int, done.stdout.split())
    print(f"kept output {kept / 2**20:.0f} MiB: kernel's peak grew {grown / 2**20:.0f} MiB, "
          f"ratio {grown / kept:.2f} (target <= 1.1)")  # fmt: skip


def _stage_time(stage: Stage, isolate: str, rounds: int) -> float:
    twin = Stage(stage.code, isolate=isolate)
    return median_seconds(lambda: twin.run(1, sink=NullSink()), rounds)


if __name__ == "__main__":
    main()
