"""The one runner: every child process of ipyrunner is spawned here.

`run_process` starts the child in a session of its own, streams its stdout and
stderr to a sink as chunks arrive, holds at most `max_output` bytes, and kills
the whole process group on timeout, output flood, interrupt, or when the child
exits while descendants linger. It returns a `Completed` record.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .errors import InterpreterNotFound

Stream = Literal["stdout", "stderr"]

_CHUNK = 65536
_TICK = 0.05  # longest sleep in the loop, so signals to other threads are seen soon


@dataclass(frozen=True)
class RunStatus:
    """What a display shows on its status line."""

    label: str
    state: str  # running, retrying, succeeded, failed, timed out, output limit, interrupted
    attempt: int = 1
    attempts: int = 1
    returncode: int | None = None
    elapsed_s: float | None = None
    truncated_at: int | None = None
    note: str = ""

    @property
    def finished(self) -> bool:
        return self.state not in ("running", "retrying")

    def describe(self, elapsed_s: float | None = None) -> str:
        parts = [self.label, self.state]
        if self.attempts > 1:
            parts.append(f"attempt {self.attempt} of {self.attempts}")
        if self.returncode is not None:
            parts.append(describe_returncode(self.returncode))
        seconds = self.elapsed_s if self.elapsed_s is not None else elapsed_s
        if seconds is not None:
            parts.append(f"{seconds:.2f} s")
        if self.truncated_at is not None:
            parts.append(f"truncated at {self.truncated_at} bytes")
        if self.note:
            parts.append(self.note)
        return " · ".join(parts)


class Sink(Protocol):
    """Receives a run's output as it arrives, and its status changes."""

    def write(self, stream: Stream, text: str) -> None: ...

    def status(self, status: RunStatus) -> None: ...


class NullSink:
    """Discards everything: a run with no live display."""

    def write(self, stream: Stream, text: str) -> None:
        pass

    def status(self, status: RunStatus) -> None:
        pass

    def __enter__(self) -> NullSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


@dataclass(frozen=True)
class Limits:
    """Per-attempt bounds on one child process."""

    timeout: float | None = 300.0
    max_output: int = 10 << 20
    grace: float = 2.0
    # After the child exits, how long descendants may keep its pipes open.
    drain: float = 0.5


@dataclass(frozen=True)
class Completed:
    """What one child process did."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    output_exceeded: bool = False
    output_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_exceeded


def describe_returncode(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit {returncode}"


@dataclass
class _Output:
    """Captured bytes of both streams, bounded by the cap in total."""

    cap: int
    data: dict[Stream, bytearray] = field(
        default_factory=lambda: {"stdout": bytearray(), "stderr": bytearray()}
    )
    decoders: dict[Stream, codecs.IncrementalDecoder] = field(
        default_factory=lambda: {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for name in ("stdout", "stderr")
        }
    )
    total: int = 0
    exceeded: bool = False

    def add(self, stream: Stream, chunk: bytes, sink: Sink) -> None:
        if self.exceeded:
            return
        room = self.cap - self.total
        if len(chunk) > room:
            chunk = chunk[:room]
            self.exceeded = True
        self.total += len(chunk)
        self.data[stream] += chunk
        text = self.decoders[stream].decode(chunk, final=self.exceeded)
        if text:
            sink.write(stream, text)

    def finish(self, sink: Sink) -> tuple[str, str]:
        for stream in ("stdout", "stderr"):
            tail = self.decoders[stream].decode(b"", final=True)
            if tail:
                sink.write(stream, tail)
        return (
            self.data["stdout"].decode("utf-8", errors="replace"),
            self.data["stderr"].decode("utf-8", errors="replace"),
        )


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the child unreaped, so its pid (and process group id) cannot
    # be reused before we have killed what is left of the group.
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None and info.si_pid == pid


def _watch_exit(pid: int, selector: selectors.BaseSelector) -> int | None:
    """Wake the loop the moment the child exits (a pidfd turns readable)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None  # old kernel: the loop notices the exit on its next tick
    selector.register(pidfd, selectors.EVENT_READ, data="exit")
    return pidfd


def _spawn(
    argv: Sequence[str], env: Mapping[str, str], cwd: str | os.PathLike[str], feed: bool
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise InterpreterNotFound(
            f"cannot start {argv[0]!r}: {exc.strerror}; install it or point ipyrunner at it"
        ) from None


class _Feeder:
    """Writes the stdin bytes as the child reads them, without blocking the loop."""

    def __init__(self, proc: subprocess.Popen[bytes], data: bytes) -> None:
        assert proc.stdin is not None
        self.pipe = proc.stdin
        self.data = memoryview(data)
        self.offset = 0
        os.set_blocking(self.pipe.fileno(), False)

    def step(self) -> bool:
        """Write one chunk; True when there is nothing left to write."""
        try:
            self.offset += os.write(
                self.pipe.fileno(), self.data[self.offset : self.offset + _CHUNK]
            )
        except BlockingIOError:
            return False
        except BrokenPipeError:
            return True
        return self.offset >= len(self.data)


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    limits: Limits,
    stdin: bytes | None = None,
    sink: Sink | None = None,
) -> Completed:
    """Run `argv` to completion under `limits`, streaming its output to `sink`."""
    sink = sink or NullSink()
    output = _Output(limits.max_output)
    start = time.monotonic()
    proc = _spawn(argv, env, cwd, feed=stdin is not None)
    selector = selectors.DefaultSelector()
    streams: dict[int, Stream] = {}
    for stream in ("stdout", "stderr"):
        pipe = getattr(proc, stream)
        streams[pipe.fileno()] = stream
        selector.register(pipe.fileno(), selectors.EVENT_READ)
    feeder = _Feeder(proc, stdin) if stdin is not None else None
    if feeder is not None:
        selector.register(feeder.pipe.fileno(), selectors.EVENT_WRITE)
    pidfd = _watch_exit(proc.pid, selector)
    timed_out = False
    try:
        timed_out = _pump(proc, selector, streams, feeder, output, sink, limits, start)
    finally:
        # Whatever ended the run (exit, timeout, flood, interrupt), nothing it
        # started outlives it.
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        selector.close()
        if pidfd is not None:
            os.close(pidfd)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
    stdout, stderr = output.finish(sink)
    return Completed(
        argv=tuple(argv),
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        duration_s=time.monotonic() - start,
        timed_out=timed_out,
        output_exceeded=output.exceeded,
        output_bytes=output.total,
    )


def _pump(
    proc: subprocess.Popen[bytes],
    selector: selectors.BaseSelector,
    streams: dict[int, Stream],
    feeder: _Feeder | None,
    output: _Output,
    sink: Sink,
    limits: Limits,
    start: float,
) -> bool:
    """Move bytes until the child is gone and its pipes are drained; True on timeout."""
    deadline = start + limits.timeout if limits.timeout is not None else None
    kill_at: float | None = None
    drain_until: float | None = None
    timed_out = False
    while True:
        now = time.monotonic()
        if drain_until is None and _has_exited(proc.pid):
            drain_until = now + limits.drain
        if drain_until is not None and (not streams or now >= drain_until):
            break
        if output.exceeded and kill_at is None:
            _signal_group(proc.pid, signal.SIGKILL)
            kill_at = now
        if deadline is not None and now >= deadline and kill_at is None:
            timed_out = True
            _signal_group(proc.pid, signal.SIGTERM)
            kill_at = now + limits.grace
        if kill_at is not None and now >= kill_at:
            _signal_group(proc.pid, signal.SIGKILL)
        wake = [t for t in (deadline, kill_at, drain_until) if t is not None and t > now]
        wait = min([_TICK, *(t - now for t in wake)])
        for key, _ in selector.select(wait):
            fd = int(key.fd)
            if key.data == "exit":
                selector.unregister(fd)
                continue
            if feeder is not None and fd == feeder.pipe.fileno():
                if feeder.step():
                    selector.unregister(fd)
                    feeder.pipe.close()
                    feeder = None
                continue
            chunk = os.read(fd, _CHUNK)
            if chunk:
                output.add(streams[fd], chunk, sink)
            else:
                selector.unregister(fd)
                del streams[fd]
    return timed_out
