"""One call on a warm worker: its descriptors sent straight to the child the
worker forked for it, its pipes read as `run_process` reads a child's
(streamed, capped, timed out), its end told on the worker's control socket."""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ..display_channel import Decoder, DisplayChannel, display_pair
from ..process import CappedOutput, Completed, Limits
from ..sinks import Sink

_CHUNK = 65536
_TICK = 0.05
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
_ANCILLARY = socket.CMSG_SPACE(_CREDENTIALS.size) + socket.CMSG_SPACE(4 * 4)

# done: the worker reported the call's end; not-started: the call never reached
# the worker (another may serve it); lost: the worker died or stopped answering.
Fate = Literal["done", "not-started", "lost"]


@dataclass(frozen=True)
class CallEnd:
    done: Completed
    fate: Fate
    retire: bool = False  # the worker asks to be replaced
    following: Message | None = None  # the worker's word on the next call, if it came


@dataclass(frozen=True)
class Message:
    """One message from a worker: its body, the host pid of its sender, and the
    descriptors that came with it (the receiver closes them)."""

    body: dict[str, Any]
    sender: int | None
    fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


def receive(control: socket.socket, flags: int = 0) -> Message | None:
    """The next message on `control` (SO_PASSCRED set), or None at end of file."""
    data, ancillary, _, _ = control.recvmsg(4096, _ANCILLARY, flags | socket.MSG_CMSG_CLOEXEC)
    sender = None
    fds: list[int] = []
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            sender = _CREDENTIALS.unpack(value[: _CREDENTIALS.size])[0]
        elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += array.array("i", value[: len(value) - len(value) % 4])
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    try:
        body = json.loads(data)
    except ValueError:
        body = {}
    return Message(body if isinstance(body, dict) else {}, sender, fds)


def send(target: socket.socket, body: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    target.sendmsg([json.dumps(body).encode()], ancillary)


def input_file(payload: bytes) -> int:
    """The call's stdin, read-only and holding all of `payload` already, so no
    loop has to feed it as a cold call's pipe is fed: a pipe when the payload
    fits in one, else a memory file."""
    if len(payload) <= select.PIPE_BUF:
        read, write = os.pipe()
        os.write(write, payload)  # atomic into the empty pipe
        os.close(write)
        return read
    fd = os.memfd_create("ipyrunner-input", os.MFD_CLOEXEC)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class CallSpec:
    """What one call needs beside the worker: bounds, display, cancel."""

    limits: Limits
    result_cap: int
    sink: Sink
    cancel: threading.Event | None
    deadline: float
    displays: Decoder | None = None  # checks the call's display frames, if it has a channel


@dataclass(frozen=True)
class Link:
    """How the kernel reaches one worker."""

    control: socket.socket
    worker: int  # the host pid of the worker program
    argv: tuple[str, ...]
    preamble: tuple[bytes, bytes]  # what the import printed: every call shows it first


def run_call(
    link: Link, child: socket.socket, payload: bytes, spec: CallSpec, number: int
) -> CallEnd:
    """Serve call `number` through `child`, the socket of the child forked for it."""
    start = time.monotonic()
    stdin = input_file(payload)
    pipes = [os.pipe() for _ in range(3)]
    shown = display_pair() if spec.displays is not None else None
    ends = (stdin, *(w for _, w in pipes), *((shown[1].fileno(),) if shown else ()))
    try:
        send(child, {"op": "call", "call": number}, ends)
    except OSError:  # the child is gone: the call never reached it
        child.close()
        for fd in (r for r, _ in pipes):
            os.close(fd)
        if shown is not None:
            shown[0].close()
        return CallEnd(Completed(link.argv, -signal.SIGKILL, "", "", 0.0), "not-started")
    finally:
        for fd in ends:  # the child holds its copies; EOF comes when the call is over
            os.close(fd)
        if shown is not None:
            shown[1].detach()  # closed just above
    call = _Call(link, child, [r for r, _ in pipes], spec, number)
    if shown is not None and spec.displays is not None:
        call.show(shown[0], spec.displays)
    try:
        call.pump()
    finally:
        call.close()
    return call.end(time.monotonic() - start)


class _Call:
    """The state of one call while bytes move: the loop of `run_call`."""

    def __init__(
        self, link: Link, child: socket.socket, reads: list[int], spec: CallSpec, number: int
    ) -> None:
        self.link, self.child, self.spec, self.number = link, child, spec, number
        self.output = CappedOutput(spec.limits.max_output)
        out, err = link.preamble
        self.output.add("stdout", out, spec.sink)
        self.output.add("stderr", err, spec.sink)
        self.result = bytearray()
        self.result_exceeded = False
        self.poller = select.poll()
        self.watching = False  # polling the control socket too
        self.open: dict[int, str] = dict(zip(reads, ("stdout", "stderr", "result"), strict=True))
        for fd in self.open:
            self.poller.register(fd, select.POLLIN)
        # Read from the start: what a call sends on it (descriptors too) must not
        # keep its pipes open.
        self.poller.register(child, select.POLLIN)
        self.claimed: int | None = None  # the exit code the child told
        self.status: int | None = None
        self.retire = False
        self.following: Message | None = None
        self.gone = False  # the control socket closed
        self.unresponsive = False
        self.timed_out = self.cancelled = False
        self.displays: DisplayChannel | None = None

    def show(self, sock: socket.socket, decode: Decoder) -> None:
        """Read the call's displays from `sock`, which this call now owns."""
        self.displays = DisplayChannel(sock, decode, self.output, self.spec.sink, self.drain)
        self.open[sock.fileno()] = "display"
        self.poller.register(sock.fileno(), select.POLLIN)

    def drain(self) -> None:
        """Take what the call printed before the display that just came."""
        streams = {fd for fd, kind in self.open.items() if kind in ("stdout", "stderr")}
        for _ in range(64):
            ready = [fd for fd, _ in self.poller.poll(0) if fd in streams and fd in self.open]
            if not ready:
                return
            for fd in ready:
                self._handle(fd)

    def pump(self) -> None:
        limits = self.spec.limits
        kill_at: float | None = None
        killed_at: float | None = None
        drain_until: float | None = None
        quiet_since: float | None = None  # every pipe closed, no word of the end yet
        while True:
            now = time.monotonic()
            if self.status is None and self.claimed is not None and not self.open:
                self.status = self.claimed  # told, and the call's pipes are closed
            if self.status is not None or self.gone:  # what is left in the pipes is kept
                drain_until = drain_until or now + limits.drain
                if not self.open or now >= drain_until:
                    return
            else:
                if self.spec.cancel is not None and self.spec.cancel.is_set() and kill_at is None:
                    self.cancelled = True
                    kill_at = now
                if (self.output.exceeded or self.result_exceeded) and kill_at is None:
                    kill_at = now
                if now >= self.spec.deadline and not self.timed_out:
                    self.timed_out = True
                    self._signal(signal.SIGTERM)
                    soon = now + limits.grace
                    kill_at = soon if kill_at is None else min(kill_at, soon)
                if kill_at is not None and now >= kill_at and killed_at is None:
                    self._signal(signal.SIGKILL)
                    killed_at = now
                # The worker kills and reaps in milliseconds: silence past that is a
                # worker that died half-way, or that the call stopped.
                if killed_at is not None and now >= killed_at + limits.grace:
                    self.unresponsive = True
                    return
                quiet_since = (quiet_since or now) if not self.open else None
                if quiet_since is not None and now >= quiet_since + limits.grace:
                    if stopped(self.link.worker):
                        self.unresponsive = True
                        return
                    quiet_since = now
            # The end is told once the pipes are closed, and only after every process
            # of the call is gone: by the child itself, when it left nothing
            # behind, else by the worker that killed what it left.
            if not self.open and not self.watching:
                self.poller.register(self.link.control, select.POLLIN)
                self.watching = True
            wake = [t for t in (kill_at, drain_until, self.spec.deadline) if t and t > now]
            for fd, _ in self.poller.poll(1e3 * min([_TICK, *(t - now for t in wake)])):
                self._handle(fd)

    def _handle(self, fd: int) -> None:
        if fd == self.link.control.fileno():
            try:
                message = receive(self.link.control)
            except OSError:
                message = None
            self._message(message)
            return
        if fd == self.child.fileno():
            self._exited()
            return
        kind = self.open[fd]
        if kind == "display":
            assert self.displays is not None
            if not self.displays.read():
                self.poller.unregister(fd)
                del self.open[fd]
                self.displays.close()
            return
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            self.poller.unregister(fd)
            os.close(fd)
            del self.open[fd]
        elif kind == "result":
            if len(self.result) + len(chunk) > self.spec.result_cap:
                self.result_exceeded = True
            else:
                self.result += chunk
        else:
            self.output.add("stdout" if kind == "stdout" else "stderr", chunk, self.spec.sink)

    def _message(self, message: Message | None) -> None:
        if message is None:
            self.gone = True
            self.poller.unregister(self.link.control)
            return
        body, call = message.body, message.body.get("call")
        if message.sender != self.link.worker:
            message.close()  # not the worker's word
        elif body.get("op") == "done" and call == self.number and self.status is None:
            status = body.get("status")
            self.status = status if isinstance(status, int) else -signal.SIGKILL
            self.retire = body.get("retire") is True
        elif body.get("op") == "next" and call == self.number + 1 and self.following is None:
            self.following = message
        else:
            message.close()

    def _exited(self) -> None:
        """The child's own word: its exit code, with nothing of the call left,
        taken once the call's pipes are closed. (A call that forges it only
        misreports its own exit code.)"""
        try:
            message = receive(self.child, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            message = None
        if message is None:  # it died without a word: the worker tells
            self.poller.unregister(self.child)
            return
        message.close()
        status = message.body.get("status")
        if message.body.get("op") == "exit" and isinstance(status, int):
            self.claimed = status

    def _signal(self, number: int) -> None:
        try:
            send(self.link.control, {"op": "signal", "signal": int(number), "call": self.number})
        except OSError:
            self.gone = True

    def close(self) -> None:
        self.child.close()
        for fd, kind in self.open.items():
            if kind == "display" and self.displays is not None:
                self.displays.close()
            else:
                os.close(fd)
        self.open = {}

    def end(self, duration: float) -> CallEnd:
        stdout, stderr = self.output.finish(self.spec.sink)
        fate: Fate = "done" if self.status is not None else "lost"
        if fate == "lost":
            note = (
                "\nipyrunner: the warm worker serving this call "
                f"{'stopped answering' if self.unresponsive else 'died'}; "
                "the next call gets a fresh one\n"
            )
            self.spec.sink.write("stderr", note)
            stderr += note
        done = Completed(
            argv=self.link.argv,
            returncode=self.status if self.status is not None else -signal.SIGKILL,
            stdout=stdout,
            stderr=stderr,
            duration_s=duration,
            timed_out=self.timed_out,
            output_exceeded=self.output.exceeded,
            channel=bytes(self.result) if fate == "done" else None,
            channel_exceeded=self.result_exceeded,
            cancelled=self.cancelled,
            displays=tuple(self.displays.shown) if self.displays is not None else (),
        )
        return CallEnd(done, fate, self.retire or fate != "done", self.following)


def stopped(pid: int) -> bool:
    """True if `pid` is stopped (SIGSTOP and the like) or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in (b"T", b"t", b"Z", b"X")
