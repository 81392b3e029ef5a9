"""The one runner: every child process of ipyrunner is spawned here.

`run_process` starts the child in a session of its own, streams its stdout and
stderr to a sink as chunks arrive, holds at most `max_output` bytes, and kills
the whole process group on timeout, output flood, interrupt, or when the child
exits while descendants linger. It returns a `Completed` record. `start_helper`
starts a process that serves a run from beside it (pasta, for its network).
"""

from __future__ import annotations

import codecs
import contextlib
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .config import IPyRunner, parse_seconds, parse_size
from .display_channel import DISPLAY_FD_VARIABLE, Decoder, DisplayChannel, display_pair
from .errors import InterpreterNotFound
from .sinks import DisplayBundle, NullSink, Sink, Stream

_CHUNK = 65536
_TICK = 0.05  # longest sleep in the loop, so signals to other threads are seen soon


@dataclass(frozen=True)
class Limits:
    """Per-attempt bounds on one child process."""

    timeout: float | None = 300.0
    max_output: int = 10 << 20
    grace: float = 2.0
    # After the child exits, how long descendants may keep its pipes open.
    drain: float = 0.5

    @classmethod
    def from_settings(
        cls,
        settings: IPyRunner,
        timeout: float | str | None = None,
        max_output: int | str | None = None,
    ) -> Limits:
        """The settings' limits, with the options a call gives (validated) on top."""
        return cls(
            timeout=settings.timeout if timeout is None else parse_seconds(timeout, "--timeout"),
            max_output=settings.max_output if max_output is None else parse_size(max_output),
            grace=settings.grace_period,
        )


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
    channel: bytes | None = None
    channel_exceeded: bool = False
    cancelled: bool = False
    displays: tuple[DisplayBundle, ...] = ()  # what the run showed, checked

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not (
            self.timed_out or self.output_exceeded or self.channel_exceeded or self.cancelled
        )


@dataclass(frozen=True)
class ChannelSpec:
    """A result pipe for the child: its fd number goes in `variable`. With
    `displays`, a display socket too (its fd in IPYRUNNER_DISPLAY_FD), whose
    frames `displays` checks."""

    variable: str
    cap: int
    displays: Decoder | None = None


@dataclass
class CappedOutput:
    """Both streams' text, bounded by the cap (in bytes) in total.

    Only the decoded text is kept, grown in place (its one reference), so what
    a run printed costs about its own size in the kernel, not that twice over."""

    cap: int
    texts: dict[Stream, str] = field(default_factory=lambda: {"stdout": "", "stderr": ""})
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
        self._keep(stream, self.decoders[stream].decode(chunk, final=self.exceeded), sink)

    def reserve(self, size: int) -> bool:
        """Count `size` bytes of a display toward the cap, if they fit in it."""
        if self.exceeded or self.total + size > self.cap:
            return False
        self.total += size
        return True

    def note(self, text: str, sink: Sink) -> None:
        """A line of ipyrunner's own on stderr, outside the cap."""
        self._keep("stderr", text, sink)

    def _keep(self, stream: Stream, text: str, sink: Sink) -> None:
        if not text:
            return
        sink.write(stream, text)
        kept = self.texts.pop(stream)
        kept += text  # CPython resizes a str in place while this is its only reference
        self.texts[stream] = kept

    def finish(self, sink: Sink) -> tuple[str, str]:
        for stream in ("stdout", "stderr"):
            self._keep(stream, self.decoders[stream].decode(b"", final=True), sink)
        return self.texts["stdout"], self.texts["stderr"]


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
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    feed: bool,
    pass_fds: tuple[int, ...],
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
            pass_fds=pass_fds,
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


@dataclass
class _Channel:
    """An extra pipe the child writes its result to, bounded by its own cap."""

    cap: int
    read_fd: int
    write_fd: int
    data: bytearray = field(default_factory=bytearray)
    exceeded: bool = False

    def add(self, chunk: bytes) -> None:
        if len(self.data) + len(chunk) > self.cap:
            self.exceeded = True
        else:
            self.data += chunk


class StartupHook(Protocol):
    """Work in the parent around one child's start (its network, say): the
    descriptors the child inherits, a step right after the spawn, while the
    child may wait for it, and a cleanup once the child's whole group is gone."""

    @property
    def pass_fds(self) -> Sequence[int]: ...

    def started(self, pid: int) -> None: ...

    def close(self) -> None: ...


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    limits: Limits,
    stdin: bytes | None = None,
    sink: Sink | None = None,
    channel: ChannelSpec | None = None,
    cancel: threading.Event | None = None,
    pass_fds: Sequence[int] = (),
    startup: StartupHook | None = None,
) -> Completed:
    """Run `argv` to completion under `limits`, streaming its output to `sink`.

    With `channel`, the child also gets a pipe for its result: the descriptor's
    number is put in the environment variable `channel.variable`, and what the
    child writes there (at most `channel.cap` bytes) comes back as
    `Completed.channel`. Setting `cancel` kills the run from another thread.
    `pass_fds` are further descriptors the child inherits (bwrap's seccomp).
    `startup` runs right after the spawn and is closed after the run, however
    it ended; what it raises ends the run (the child's group killed) and goes up.
    """
    with contextlib.ExitStack() as cleanup:
        if startup is not None:
            cleanup.callback(startup.close)
        env = dict(env)
        result = _Channel(channel.cap, *os.pipe()) if channel is not None else None
        if result is not None and channel is not None:
            env[channel.variable] = str(result.write_fd)
        shown: tuple[socket.socket, socket.socket] | None = None
        if channel is not None and channel.displays is not None:
            shown = display_pair()
            cleanup.callback(shown[0].close)
            env[DISPLAY_FD_VARIABLE] = str(shown[1].fileno())
        fds = (
            *_fds(result),
            *((shown[1].fileno(),) if shown is not None else ()),
            *pass_fds,
            *(startup.pass_fds if startup is not None else ()),
        )
        try:
            proc = _spawn(argv, env, cwd, feed=stdin is not None, pass_fds=fds)
        finally:
            if result is not None:
                os.close(result.write_fd)  # the child holds its copy; EOF comes when it is done
            if shown is not None:
                shown[1].close()
        run = _Run(proc, limits, sink or NullSink(), result, cancel)
        if shown is not None and channel is not None and channel.displays is not None:
            run.show(shown[0], channel.displays)
        try:
            if startup is not None:
                startup.started(proc.pid)
            if stdin is not None:
                run.feed(stdin)
            run.pump()
        finally:
            run.close()
    stdout, stderr = run.output.finish(run.sink)
    return Completed(
        argv=tuple(argv),
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        duration_s=time.monotonic() - run.start,
        timed_out=run.timed_out,
        output_exceeded=run.output.exceeded,
        channel=bytes(result.data) if result is not None else None,
        channel_exceeded=result is not None and result.exceeded,
        cancelled=run.cancelled,
        displays=tuple(run.displays.shown) if run.displays is not None else (),
    )


def _fds(channel: _Channel | None) -> tuple[int, ...]:
    return (channel.write_fd,) if channel is not None else ()


class _Run:
    """The state of one child while bytes move: the loop of `run_process`."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        limits: Limits,
        sink: Sink,
        channel: _Channel | None,
        cancel: threading.Event | None,
    ) -> None:
        self.proc = proc
        self.limits = limits
        self.sink = sink
        self.channel = channel
        self.cancel = cancel
        self.start = time.monotonic()
        self.output = CappedOutput(limits.max_output)
        self.selector = selectors.DefaultSelector()
        self.streams: dict[int, Stream] = {}
        for stream in ("stdout", "stderr"):
            pipe = getattr(proc, stream)
            self.streams[pipe.fileno()] = stream
            self.selector.register(pipe.fileno(), selectors.EVENT_READ)
        if channel is not None:
            self.selector.register(channel.read_fd, selectors.EVENT_READ, data="channel")
        self.feeder: _Feeder | None = None
        self.displays: DisplayChannel | None = None
        self.pidfd = _watch_exit(proc.pid, self.selector)
        self.timed_out = False
        self.cancelled = False

    def show(self, sock: socket.socket, decode: Decoder) -> None:
        """Read the child's displays from `sock` (the caller closes it)."""
        self.displays = DisplayChannel(sock, decode, self.output, self.sink, self.drain)
        self.selector.register(sock.fileno(), selectors.EVENT_READ, data="display")

    def drain(self) -> None:
        """Take what the child printed before the display that just came (it
        waits for the display's ack, so nothing it prints after can be there)."""
        for _ in range(64):  # a flood from another thread must not hold the display back
            ready = [key.fd for key, _ in self.selector.select(0) if key.fd in self.streams]
            if not ready:
                return
            for fd in ready:
                self.handle(fd, None)

    def feed(self, data: bytes) -> None:
        self.feeder = _Feeder(self.proc, data)
        self.selector.register(self.feeder.pipe.fileno(), selectors.EVENT_WRITE, data="stdin")

    def open_pipes(self) -> bool:
        displays = self.displays is not None and self.displays.fileno() in self.selector.get_map()
        return bool(self.streams) or self.channel_open() or displays

    def channel_open(self) -> bool:
        return self.channel is not None and self.channel.read_fd in self.selector.get_map()

    def pump(self) -> None:
        """Move bytes until the child is gone and its pipes are drained."""
        limits, pid = self.limits, self.proc.pid
        deadline = self.start + limits.timeout if limits.timeout is not None else None
        kill_at: float | None = None
        drain_until: float | None = None
        while True:
            now = time.monotonic()
            if drain_until is None and _has_exited(pid):
                drain_until = now + limits.drain
            if drain_until is not None and (not self.open_pipes() or now >= drain_until):
                return
            flooded = self.output.exceeded or (self.channel is not None and self.channel.exceeded)
            if self.cancel is not None and self.cancel.is_set() and kill_at is None:
                self.cancelled = True
                kill_at = now
            if flooded and kill_at is None:
                kill_at = now
            if deadline is not None and now >= deadline and kill_at is None:
                self.timed_out = True
                _signal_group(pid, signal.SIGTERM)
                kill_at = now + limits.grace
            if kill_at is not None and now >= kill_at:
                _signal_group(pid, signal.SIGKILL)
            wake = [t for t in (deadline, kill_at, drain_until) if t is not None and t > now]
            for key, _ in self.selector.select(min([_TICK, *(t - now for t in wake)])):
                self.handle(int(key.fd), key.data)

    def handle(self, fd: int, kind: object) -> None:
        if kind == "exit":
            self.selector.unregister(fd)
        elif kind == "stdin":
            assert self.feeder is not None
            if self.feeder.step():
                self.selector.unregister(fd)
                self.feeder.pipe.close()
        elif kind == "display":
            assert self.displays is not None
            if not self.displays.read():
                self.selector.unregister(fd)
        else:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                self.selector.unregister(fd)
                self.streams.pop(fd, None)
            elif kind == "channel":
                assert self.channel is not None
                self.channel.add(chunk)
            else:
                self.output.add(self.streams[fd], chunk, self.sink)

    def close(self) -> None:
        # Whatever ended the run (exit, timeout, flood, interrupt), nothing it
        # started outlives it.
        _signal_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.selector.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
        if self.channel is not None:
            os.close(self.channel.read_fd)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class Helper:
    """A process that serves a run from beside it (pasta, for the run's network):
    a session of its own, its output in a file, ended with its whole group."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        """What it wrote so far (its last 4000 characters)."""
        try:
            return self.log.read_text(errors="replace")[-4000:].strip()
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL to its group now, reaped in the background: a process holding the
        last reference to a network namespace takes tens of milliseconds to die."""
        _signal_group(self.proc.pid, signal.SIGKILL)
        threading.Thread(target=self.proc.wait, name="ipyrunner-reap", daemon=True).start()


def start_helper(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    log: Path,
) -> Helper:
    """Start `argv` beside a run; the caller ends it (`Helper.kill`)."""
    return Helper(_start_detached(argv, env, cwd, log, log, ()), log)


def spawn_worker(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    stdout: Path,
    stderr: Path,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start a long-lived `argv` (a warm worker) in a session of its own, its
    stdout and stderr in files; the caller ends it with `kill_tree`.

    bwrap's --die-with-parent ties the worker to the calling *thread*: call
    this from a thread that lives as long as the worker may.
    """
    return _start_detached(argv, env, cwd, stdout, stderr, pass_fds)


def _start_detached(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    stdout: Path,
    stderr: Path,
    pass_fds: Sequence[int],
) -> subprocess.Popen[bytes]:
    """A process in a session of its own, no stdin, its output in files (one may
    serve both)."""
    with open(stdout, "ab") as out, open(stderr, "ab") as err:
        try:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
                pass_fds=tuple(pass_fds),
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            raise InterpreterNotFound(
                f"cannot start {argv[0]!r}: {exc.strerror}; install it or point ipyrunner at it"
            ) from None


def kill_tree(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL to `proc`'s whole process group (unless it was reaped already, when
    its pid may be another's), then reap it; its exit status."""
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGKILL)
    return proc.wait()
