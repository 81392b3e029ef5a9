from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from ipyrunner.errors import InterpreterNotFound
from ipyrunner.process import Completed, Limits, run_process, start_helper
from ipyrunner.sinks import DisplayBundle, RunStatus, Stream

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
PY = sys.executable


class Recorder:
    def __init__(self) -> None:
        self.chunks: list[tuple[Stream, str, float]] = []

    def write(self, stream: Stream, text: str) -> None:
        self.chunks.append((stream, text, time.monotonic()))

    def display(self, bundle: DisplayBundle) -> None:
        pass

    def status(self, status: RunStatus) -> None:
        pass

    def text(self, stream: Stream) -> str:
        return "".join(t for s, t, _ in self.chunks if s == stream)


def run(argv: list[str], **limits: float) -> tuple[Completed, Recorder]:
    sink = Recorder()
    done = run_process(argv, env=ENV, cwd="/", limits=Limits(**limits), sink=sink)  # type: ignore[arg-type]
    return done, sink


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_chunks_reach_the_sink_before_the_child_ends() -> None:
    code = "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second')"
    sink = Recorder()
    start = time.monotonic()
    done = run_process([PY, "-c", code], env=ENV, cwd="/", limits=Limits(), sink=sink)
    first_at = next(at for _, text, at in sink.chunks if "first" in text)
    assert first_at - start < 0.8
    assert done.stdout == "first\nsecond\n"


def test_partial_lines_are_streamed() -> None:
    code = "import sys, time\nsys.stdout.write('no newline'); sys.stdout.flush(); time.sleep(0.5)"
    _, sink = run([PY, "-c", code])
    assert sink.text("stdout") == "no newline"


def test_stdout_and_stderr_are_told_apart() -> None:
    code = "import sys\nprint('out')\nprint('err', file=sys.stderr)"
    _, sink = run([PY, "-c", code])
    assert sink.text("stdout") == "out\n"
    assert sink.text("stderr") == "err\n"


def test_utf8_split_across_chunks_decodes_cleanly() -> None:
    code = (
        "import os, time\nb='héllo wörld ✓'.encode()\n"
        "for i in range(len(b)):\n    os.write(1, b[i:i+1]); time.sleep(0.002)"
    )
    _, sink = run([PY, "-c", code])
    assert sink.text("stdout") == "héllo wörld ✓"


def test_invalid_utf8_is_replaced_not_raised() -> None:
    _, sink = run([PY, "-c", "import os; os.write(1, b'ok \\xff\\xfe end')"])
    assert sink.text("stdout") == "ok \ufffd\ufffd end"


def test_stdin_bytes_are_fed_to_the_child() -> None:
    payload = b"x" * (3 << 20)  # larger than a pipe buffer
    done = run_process(
        [PY, "-c", "import sys; print(len(sys.stdin.buffer.read()))"],
        env=ENV,
        cwd="/",
        limits=Limits(),
        stdin=payload,
    )
    assert done.stdout.strip() == str(len(payload))


def test_stdin_is_devnull_by_default() -> None:
    done, _ = run([PY, "-c", "import sys; print(repr(sys.stdin.read()))"], timeout=5)
    assert done.stdout.strip() == "''"


def test_output_cap_kills_a_flood_with_bounded_memory() -> None:
    cap = 1 << 20
    code = (
        "import sys\nchunk = 'x' * 65536\nfor _ in range(1600): sys.stdout.write(chunk)"  # 100 MB
    )
    tracemalloc.start()
    try:
        done, _ = run([PY, "-c", code], max_output=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.output_exceeded
    assert done.returncode == -signal.SIGKILL
    assert len(done.stdout) == cap
    assert peak < 6 * cap


def test_timeout_kills_grandchildren_within_timeout_plus_grace(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f"(trap '' TERM; echo $BASHPID > {pidfile}; exec sleep 300) & trap '' TERM; sleep 300"
    start = time.monotonic()
    done, _ = run(["bash", "-c", script], timeout=1, grace=1)
    elapsed = time.monotonic() - start
    assert done.timed_out
    assert elapsed < 1 + 1 + 1.5
    grandchild = int(pidfile.read_text())
    time.sleep(0.1)
    assert not alive(grandchild)


def test_run_returns_when_child_exits_even_if_a_grandchild_holds_the_pipes(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "bg.pid"
    start = time.monotonic()
    done, _ = run(["bash", "-c", f"sleep 300 & echo $! > {pidfile}; echo done"], drain=0.3)
    assert time.monotonic() - start < 3
    assert done.stdout == "done\n"
    assert done.returncode == 0
    time.sleep(0.1)
    assert not alive(int(pidfile.read_text()))


def test_interrupt_kills_the_tree_and_reraises(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {pidfile}; wait"
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run(["bash", "-c", script])
    assert time.monotonic() - start < 2
    time.sleep(0.1)
    assert not alive(int(pidfile.read_text()))


def test_missing_program_is_a_clear_error() -> None:
    with pytest.raises(InterpreterNotFound, match="cannot start '/no/such/python'"):
        run(["/no/such/python"])


def test_thousands_of_runs_leak_no_descriptors_and_no_zombies() -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(2000):
        run_process(["/bin/true"], env=ENV, cwd="/", limits=Limits())
    assert len(os.listdir("/proc/self/fd")) == before
    children = [
        p
        for p in os.listdir("/proc")
        if p.isdigit()
        and Path(f"/proc/{p}/stat").exists()
        and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[2] == str(os.getpid())
    ]
    assert children == []


class GoHook:
    """A startup hook that lets the child go by writing to a pipe it waits on."""

    def __init__(self, fail: bool = False) -> None:
        self.read, self.write = os.pipe()
        self.fail = fail
        self.pid: int | None = None
        self.closed = False

    @property
    def pass_fds(self) -> tuple[int]:
        return (self.read,)

    def started(self, pid: int) -> None:
        self.pid = pid
        if self.fail:
            raise RuntimeError("the network could not be set up")
        os.write(self.write, b"go")

    def close(self) -> None:
        self.closed = True
        for fd in (self.read, self.write):
            with contextlib.suppress(OSError):
                os.close(fd)


def test_startup_hook_runs_after_the_spawn_and_before_the_child_goes_on() -> None:
    hook = GoHook()
    code = f"import os\nprint(os.read({hook.read}, 2).decode(), os.getpid())"
    done = run_process([PY, "-c", code], env=ENV, cwd="/", limits=Limits(timeout=10), startup=hook)
    assert done.ok
    assert done.stdout.split() == ["go", str(hook.pid)]
    assert hook.closed


def test_a_failing_startup_hook_ends_the_child_and_is_closed(tmp_path: Path) -> None:
    hook = GoHook(fail=True)
    code = f"import os, time\nos.read({hook.read}, 2)\ntime.sleep(60)"
    with pytest.raises(RuntimeError, match="could not be set up"):
        run_process([PY, "-c", code], env=ENV, cwd="/", limits=Limits(timeout=10), startup=hook)
    assert hook.closed
    assert hook.pid is not None
    assert not alive(hook.pid)


def test_helper_is_killed_with_everything_it_started(tmp_path: Path) -> None:
    code = (
        "import subprocess, time\nsubprocess.Popen(['sleep', '60'])\n"
        "print('up', flush=True)\ntime.sleep(60)"
    )
    helper = start_helper([PY, "-c", code], env=ENV, cwd="/", log=tmp_path / "log")
    while "up" not in helper.output():
        time.sleep(0.01)
    children = Path(f"/proc/{helper.pid}/task/{helper.pid}/children").read_text().split()
    assert children
    assert helper.running()
    helper.kill()
    assert helper.proc.wait(timeout=5) == -signal.SIGKILL  # reaped in the background
    deadline = time.monotonic() + 5
    while any(alive(int(pid)) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(alive(int(pid)) for pid in children)
