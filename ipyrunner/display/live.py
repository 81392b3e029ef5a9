"""One live view of a run or of many runs: the status line, the output tail and
progress, drawn by a front end (widget or text) under one lock, at most `rate`
display messages a second, by one refresh thread; built as `rich.live` is."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Protocol

from ..errors import InvalidOption, brief_interrupt
from ..sinks import DisplayBundle, RunStatus, Stream
from .meter import Counts, Ending
from .tail import Piece, Tail

# How long the refresh thread waits for the lock before it tries again later: an
# interrupt must never leave it blocked (it would hang __exit__'s join).
_LOCK_TIMEOUT = 1.0


@dataclass(frozen=True)
class Frame:
    """What a front end draws, read under the view's lock."""

    now: float
    elapsed_s: float
    status: RunStatus | None
    status_text: str
    tail: Tail
    output_changed: bool
    fresh: tuple[Piece, ...]  # output since the last frame, for front ends that append
    counts: Counts | None
    final: bool = False


class Frontend(Protocol):
    """Draws frames. `immediate` ones draw on the caller's thread at every change
    (text, which appends); the others only from the refresh thread (a widget)."""

    @property
    def immediate(self) -> bool: ...

    @property
    def ticks(self) -> bool:
        """Whether the clock alone is news (elapsed seconds, rate, time left)."""
        ...

    def show(self, frame: Frame) -> int:
        """Draw the first frame and show the view; returns the messages sent."""
        ...

    def draw(self, frame: Frame) -> int:
        """Draw a later frame; returns the messages sent."""
        ...

    def finish(self, frame: Frame) -> None:
        """Draw the last frame: what stays once the run is over."""
        ...


def update_interval(rate: float) -> float:
    """Seconds between two display messages at `rate` messages a second."""
    if not (math.isfinite(rate) and rate > 0):
        raise InvalidOption(f"invalid display rate {rate!r}: updates per second must be > 0")
    return 1.0 / rate


class LiveView:
    """A run's sink, or a map's progress (`track`, then `update`), shown live.

    Nothing is shown until there is something to show: output, a status, or
    progress. Writers only change state under the lock; the refresh thread
    draws, waiting one interval per message the last drawing sent, so a flood
    costs at most `rate` messages a second. `clock` gives the time (tests pass
    their own and call `refresh()` with `auto_refresh=False`).
    """

    def __init__(
        self,
        frontend: Frontend,
        *,
        limit: int = 20_000,
        rate: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        auto_refresh: bool = True,
    ) -> None:
        if limit <= 0:
            raise InvalidOption(f"invalid display limit {limit!r}: it must be > 0 characters")
        self.frontend = frontend
        self.interval = update_interval(rate)
        self.clock = clock
        self.auto_refresh = auto_refresh
        self._tail = Tail(limit)
        self._fresh: list[Piece] = []
        self._status: RunStatus | None = None
        self._counts: Counts | None = None
        self._started = clock()
        self._dirty = False
        self._output_changed = False
        self._shown = False
        self._finished = False
        self._sent = 1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def shown(self) -> bool:
        return self._shown

    def write(self, stream: Stream, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._tail.add(stream, text)
            if self.frontend.immediate:
                self._fresh.append(Piece(stream, text))
            self._dirty = self._output_changed = True
        self._changed()

    def display(self, bundle: DisplayBundle) -> None:
        with self._lock:
            self._tail.add_display(bundle)
            if self.frontend.immediate:
                self._fresh.append(Piece("display", bundle=bundle))
            self._dirty = self._output_changed = True
        self._changed()

    def status(self, status: RunStatus) -> None:
        with self._lock:
            self._status = status
            if status.state == "retrying":
                # Where one attempt's output ends and the next one's begins.
                self._tail.add("log", f"── {status.describe()} ──\n")
                self._output_changed = True
            self._dirty = True
        self._changed()

    def track(self, total: int, label: str) -> LiveView:
        """Make this view show the progress of `total` runs."""
        with self._lock:
            self._counts = Counts(label, total)
        return self

    def update(self, done: int, failed: int = 0, cancelled: int = 0) -> None:
        with self._lock:
            if self._counts is None:
                raise RuntimeError("update() needs track() first")
            self._counts = replace(self._counts, done=done, failed=failed, cancelled=cancelled)
            self._dirty = True
        self._changed()

    def refresh(self, wait: bool = True) -> None:
        """Draw now what changed (and the clock), if the view is shown."""
        if not self._lock.acquire(timeout=_LOCK_TIMEOUT if wait else 0):
            return
        try:
            if self._finished or not self._shown:
                return
            if not self._dirty and not self._ticking():
                return
            self._sent = self.frontend.draw(self._frame())
        finally:
            self._lock.release()

    def __enter__(self) -> LiveView:
        self._started = self.clock()
        if self._counts is not None:
            with self._lock:
                self._dirty = True
            self._changed()  # a progress bar shows from the start: 0 of n
        if self.auto_refresh and self.frontend.ticks:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._refresh_loop, name="ipyrunner-display", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
                self._thread = None
        finally:
            with self._lock:
                self._settle(exc_type)
                if (self._shown or self._has_content()) and not self._finished:
                    self._finished = True
                    self.frontend.finish(self._frame(final=True))
            if isinstance(exc, KeyboardInterrupt):
                brief_interrupt(exc)

    def _changed(self) -> None:
        # The first showing happens on the caller's thread: IPython's display()
        # must run in the cell's own thread to land in its output.
        if self._shown and not self.frontend.immediate:
            return
        with self._lock:
            if self._finished or not self._has_content():
                return
            frame = self._frame()
            if self._shown:
                self.frontend.draw(frame)
            else:
                self._shown = True
                self._sent = self.frontend.show(frame)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.interval * max(1, self._sent)):
            self.refresh()

    def _has_content(self) -> bool:
        return self._status is not None or self._counts is not None or self._output_changed

    def _ticking(self) -> bool:
        # A running status shows its seconds; progress shows its rate and time left.
        running = self._status is not None and not self._status.finished
        return running or (self._counts is not None and self._counts.ending is None)

    def _frame(self, final: bool = False) -> Frame:
        now = self.clock()
        frame = Frame(
            now=now,
            elapsed_s=now - self._started,
            status=self._status,
            status_text=self._status_text(now),
            tail=self._tail,
            output_changed=self._output_changed or final,
            fresh=tuple(self._fresh),
            counts=self._counts,
            final=final,
        )
        self._fresh = []
        self._dirty = self._output_changed = False
        return frame

    def _status_text(self, now: float) -> str:
        status = self._status
        if status is None:
            return ""
        if status.finished or status.state == "retrying":
            return status.describe()
        # Whole seconds while it runs: the line changes once a second, not every frame.
        return f"{status.describe()} · {int(now - self._started)} s"

    def _settle(self, exc_type: type[BaseException] | None) -> None:
        """A run that ended by an exception never reported its end: say so, rather
        than leave "running" on screen; an install that went well says "done"."""
        elapsed = self.clock() - self._started
        status = self._status
        if status is not None and not status.finished:
            if exc_type is None:
                state = "done"
            elif issubclass(exc_type, KeyboardInterrupt):
                state = "interrupted"
            else:
                state = "failed"
            self._status = replace(status, state=state, elapsed_s=elapsed)
        if self._counts is not None and self._counts.ending is None:
            ending: Ending = ""
            if exc_type is not None:
                ending = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "stopped"
            self._counts = replace(self._counts, ending=ending)
