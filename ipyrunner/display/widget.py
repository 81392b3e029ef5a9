"""A live ipywidgets display of a run: a status line above a capped, throttled output tail."""

from __future__ import annotations

import html
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Any

import ipywidgets
from IPython import display as ipython_display

from ..errors import InvalidOption
from ..sinks import DisplayBundle, RunStatus, Stream
from .choose import update_interval, widget_bundle
from .tail import Tail

# How long a flush may wait for another one; an interrupt must never leave a
# thread blocked on the lock (a blocked timer thread would hang __exit__'s join).
_LOCK_TIMEOUT = 1.0


class WidgetSink:
    """Shows a run's output in a widget, at most `rate` updates per second, keeping
    the last `limit` characters; frontends without widgets get the text instead.

    `write()` only buffers. A flush happens from `write()` once `1/rate` seconds
    have passed since the last one, and from a timer thread while the sink is
    entered, so pending text and the elapsed time show when the output pauses.
    The thread only assigns widget traits, which ipywidgets syncs from any thread.
    """

    def __init__(self, rate: float = 10.0, limit: int = 20_000) -> None:
        if limit <= 0:
            raise InvalidOption(f"invalid display limit {limit!r}: it must be > 0 characters")
        self.interval = update_interval(rate)
        self.status_line = ipywidgets.HTML()
        self.output = ipywidgets.Output()
        self.widget = ipywidgets.VBox([self.status_line, self.output])
        self._tail = Tail(limit)
        self._status: RunStatus | None = None
        self._pending = False
        self._started = time.monotonic()
        self._last_flush = -math.inf
        # _lock guards the buffered state and is held only briefly, so write() never
        # waits on a flush; _render_lock keeps the two flushing threads in order.
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._handle: Any = None

    def write(self, stream: Stream, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._tail.add(stream, text)
            self._pending = True
        self._flush(wait=False)

    def display(self, bundle: DisplayBundle) -> None:
        show: Callable[..., Any] = ipython_display.display  # untyped in IPython
        show(dict(bundle.data), metadata=dict(bundle.metadata), raw=True)

    def status(self, status: RunStatus) -> None:
        with self._lock:
            self._status = status
            if status.state == "retrying":
                # Mark where one attempt's output ends and the next one's begins.
                self._tail.add("stderr", f"\n── {status.describe()} ──\n")
                self._pending = True
        self._flush(wait=False)

    def __enter__(self) -> WidgetSink:
        self._started = time.monotonic()
        self._stop.clear()
        self._flush(wait=True, force=True)
        # display_id lets __exit__ replace the text/plain fallback with the output.
        show: Callable[..., Any] = ipython_display.display  # untyped in IPython
        self._handle = show(self._bundle(self.status_text()), raw=True, display_id=True)
        self._ticker = threading.Thread(target=self._tick, name="ipyrunner-display", daemon=True)
        self._ticker.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._stop.set()
            if self._ticker is not None:
                self._ticker.join()
                self._ticker = None
        finally:
            self._settle(exc_type)
            self._flush(wait=True, force=True)
            if self._handle is not None:
                self._handle.update(self._bundle(self.final_text()), raw=True)
                self._handle = None

    def status_text(self) -> str:
        """The status line as shown now: the elapsed time ticks while the run goes on."""
        with self._lock:
            return self._describe(time.monotonic())

    def final_text(self) -> str:
        """The status line and the kept tail, as plain text for frontends without widgets."""
        with self._lock:
            return "\n".join(part for part in (self._describe(None), self._tail.text()) if part)

    def _describe(self, now: float | None) -> str:
        if self._status is None:
            return "ipyrunner: starting"
        if self._status.finished or now is None:
            return self._status.describe()
        return self._status.describe(elapsed_s=now - self._started)

    def _settle(self, exc_type: type[BaseException] | None) -> None:
        # A run that ends by an exception never reported its end: say so, rather
        # than leave "running" on screen.
        with self._lock:
            status = self._status
            if status is None or status.finished:
                return
            elapsed = time.monotonic() - self._started
            if exc_type is None:
                self._status = replace(status, elapsed_s=elapsed)
            else:
                state = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
                self._status = replace(status, state=state, elapsed_s=elapsed)

    def _bundle(self, text: str) -> dict[str, Any]:
        return widget_bundle(self.widget, text)

    def _flush(self, *, wait: bool, force: bool = False) -> None:
        if not self._render_lock.acquire(wait, _LOCK_TIMEOUT if wait else -1):
            return  # the other thread is flushing; what is pending shows on the next one
        try:
            with self._lock:
                now = time.monotonic()
                if not force and now - self._last_flush < self.interval:
                    return
                outputs = self._tail.outputs() if self._pending else None
                line = _status_html(self._status, self._describe(now))
                if outputs is None and line == self.status_line.value:
                    return
                self._pending = False
                self._last_flush = now
            if outputs is not None:
                self.output.outputs = outputs
            if line != self.status_line.value:
                self.status_line.value = line
        finally:
            self._render_lock.release()

    def _tick(self) -> None:
        due = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            self._flush(wait=True)
            now = time.monotonic()
            next_allowed = self._last_flush + self.interval
            due = next_allowed if next_allowed > now else now + self.interval


def _status_html(status: RunStatus | None, text: str) -> str:
    style = "font-family: monospace"
    if status is not None and status.finished and status.state != "succeeded":
        style += "; color: var(--jp-error-color1, #d32f2f)"
    return f'<span style="{style}">{html.escape(text)}</span>'
