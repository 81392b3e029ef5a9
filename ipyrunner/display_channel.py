"""The display channel: rich output a run sends to be shown, on a socket of its own.

A frame is a 4-byte big-endian length and that many bytes, which a `Decoder`
(the stage layer's checks) turns into the `DisplayBundle` that may be shown,
if any, and notes on what may not. Frames never travel on stdout, so `print()`
cannot forge one. Each frame is answered with one byte once it was shown, and
the sender waits for it: what it printed before the display is then read (and
shown) first, what it prints after cannot be there yet. Frames count toward the
run's output cap; one that would pass it is skipped unread, never buffered.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .sinks import DisplayBundle, Sink

DISPLAY_FD_VARIABLE = "IPYRUNNER_DISPLAY_FD"
HEADER = struct.Struct(">I")
ACK = b"\x06"
MAX_NOTES = 20
_CHUNK = 65536

# What a frame's bytes are to the kernel: a bundle to show (if any), and notes.
Decoder = Callable[[bytes], "tuple[DisplayBundle | None, list[str]]"]


class Budget(Protocol):
    """The run's output cap, shared with its printed text (`process.CappedOutput`)."""

    def reserve(self, size: int) -> bool: ...

    def note(self, text: str, sink: Sink) -> None: ...


def display_pair() -> tuple[socket.socket, socket.socket]:
    """The kernel's end (non-blocking: an ack never waits) and the run's end."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    return ours, theirs


@dataclass
class DisplayChannel:
    """The kernel's end of one run's display socket, read as bytes arrive.

    `drain` takes what the run printed so far, so that a display shows after it.
    """

    sock: socket.socket
    decode: Decoder
    budget: Budget
    sink: Sink
    drain: Callable[[], None] = lambda: None
    shown: list[DisplayBundle] = field(default_factory=list)
    _head: bytearray = field(default_factory=bytearray)
    _frame: bytearray = field(default_factory=bytearray)
    _want: int | None = None  # the length of the frame being read
    _skip: int = 0  # bytes of a refused frame still to pass over
    _notes: int = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> bool:
        """Take what arrived; False at end of file (the run closed its end)."""
        try:
            chunk = self.sock.recv(_CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            if self._want is not None or self._skip or self._head:
                self._note("the stage ended in the middle of a display")
            return False
        self._feed(memoryview(chunk))
        return True

    def close(self) -> None:
        self.sock.close()

    def _feed(self, view: memoryview) -> None:
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                if not self._skip:
                    self._ack()
            elif self._want is None:
                step = HEADER.size - len(self._head)
                self._head += view[:step]
                view = view[step:]
                if len(self._head) == HEADER.size:
                    self._start(HEADER.unpack(self._head)[0])
                    self._head.clear()
            else:
                step = self._want - len(self._frame)
                self._frame += view[:step]
                view = view[step:]
                if len(self._frame) == self._want:
                    frame, self._frame, self._want = bytes(self._frame), bytearray(), None
                    self._dispatch(frame)

    def _start(self, length: int) -> None:
        if length and self.budget.reserve(length):
            self._want = length
            return
        self._note(
            "an empty display"
            if not length
            else f"a display of {length} bytes would pass the output cap; raise --max-output"
        )
        self._skip = length
        if not length:
            self._ack()

    def _dispatch(self, frame: bytes) -> None:
        self.drain()
        try:
            bundle, notes = self.decode(frame)
        except Exception as exc:  # a checker's bug must not end the run's reading
            bundle, notes = None, [f"the display could not be checked ({type(exc).__name__})"]
        if bundle is not None:
            self.shown.append(bundle)
            self.sink.display(bundle)
        for note in notes:
            self._note(note, shown=bundle is not None)
        self._ack()

    def _note(self, why: str, shown: bool = False) -> None:
        self._notes += 1
        said = "in the display just shown" if shown else "display not shown"
        if self._notes <= MAX_NOTES:
            self.budget.note(f"\nipyrunner: {said}: {why}\n", self.sink)
        elif self._notes == MAX_NOTES + 1:
            self.budget.note("\nipyrunner: more displays not shown; no more notes\n", self.sink)

    def _ack(self) -> None:
        with contextlib.suppress(OSError):  # a run that does not wait for acks: its own loss
            self.sock.send(ACK)
