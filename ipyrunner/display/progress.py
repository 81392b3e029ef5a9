"""Progress of many runs at once (`Stage.map`): a bar in Jupyter, text lines elsewhere."""

from __future__ import annotations

import contextlib
import html
import math
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TextIO

from IPython import display as ipython_display

from ..config import IPyRunner
from ..presenting import NullProgress, ProgressDisplay
from .choose import display_mode, update_interval, widget_bundle
from .text import is_terminal


def choose_progress(
    settings: IPyRunner, total: int, label: str, quiet: bool = False
) -> ProgressDisplay:
    """The progress display for `settings.display`, by the rules of `choose_sink`."""
    mode = display_mode(settings, quiet)
    if mode == "none":
        return NullProgress()
    if mode == "widget":
        return WidgetProgress(total, label, rate=settings.display_rate)
    return TextProgress(total, label)


class ProgressCount:
    """What both displays describe: the counts so far, the clock, and how it ended."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.counts = (0, 0)  # done (failed ones included), failed
        self.started = time.monotonic()
        self.elapsed_s: float | None = None
        self.ending: str | None = None

    def finish(self, exc_type: type[BaseException] | None) -> None:
        self.elapsed_s = time.monotonic() - self.started
        if exc_type is None:
            self.ending = ""
        else:
            self.ending = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "stopped"

    def describe(self, timed: bool = True) -> str:
        """Like "map clean: 12/50 · 1 failed · 3.2 s"; the time stops at the end."""
        done, failed = self.counts
        parts = [f"{self.label}: {done}/{self.total}"]
        if failed:
            parts.append(f"{failed} failed")
        if self.ending:
            parts.append(self.ending)
        if timed:
            elapsed = self.elapsed_s
            if elapsed is None:
                elapsed = time.monotonic() - self.started
            parts.append(f"{elapsed:.1f} s")
        return " · ".join(parts)

    def style(self) -> Literal["success", "danger", ""]:
        """The bar's colour: green when all finished well, red on failures or an exception."""
        done, failed = self.counts
        if failed or self.ending:
            return "danger"
        if self.ending == "" and done >= self.total:
            return "success"
        return ""


class WidgetProgress:
    """An ipywidgets progress bar with a count line, updated at most `rate` times a
    second; frontends without widgets get the final count as text.

    An update shows once `1/rate` seconds have passed since the last one shown, so
    the caller's loop should call `update()` regularly, not only when an item
    finishes (`Stage.map` polls every 0.1 s): that also ticks the clock.
    """

    def __init__(self, total: int, label: str, rate: float = 10.0) -> None:
        import ipywidgets  # only a widget loads ipywidgets: terminal IPython never pays for it

        self.interval = update_interval(rate)
        self.count = ProgressCount(total, label)
        self.bar = ipywidgets.IntProgress(value=0, min=0, max=total)
        self.count_line = ipywidgets.HTML()
        self.widget = ipywidgets.HBox([self.bar, self.count_line])
        self._last_shown = -math.inf
        self._handle: Any = None

    def update(self, done: int, failed: int = 0, cancelled: int = 0) -> None:
        self.count.counts = (done, failed)
        now = time.monotonic()
        if now - self._last_shown >= self.interval:
            self._last_shown = now
            self._show()

    def __enter__(self) -> WidgetProgress:
        self.count.started = self._last_shown = time.monotonic()
        self._show()
        # display_id lets __exit__ replace the text/plain fallback with the final count.
        show: Callable[..., Any] = ipython_display.display  # untyped in IPython
        self._handle = show(
            widget_bundle(self.widget, self.count.describe()), raw=True, display_id=True
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.count.finish(exc_type)
        self._show()
        if self._handle is not None:
            self._handle.update(widget_bundle(self.widget, self.count.describe()), raw=True)
            self._handle = None

    def _show(self) -> None:
        self.bar.value = self.count.counts[0]
        self.count_line.value = _count_html(self.count.describe())
        if self.count.ending is not None:
            self.bar.bar_style = self.count.style()


class TextProgress:
    """Writes the counts as lines, at most `rate` a second, and always the final one.

    A terminal gets one line redrawn in place. A stream left as None is looked up
    in `sys` at each write, so the capture of ipykernel (or of a test) applies.
    """

    def __init__(
        self, total: int, label: str, stream: TextIO | None = None, rate: float = 2.0
    ) -> None:
        self.interval = update_interval(rate)
        self.count = ProgressCount(total, label)
        self.stream = stream
        self._shown: tuple[int, int] | None = None
        self._last_write = -math.inf
        self._open_line = 0  # length of a terminal line not ended yet, to overwrite

    def update(self, done: int, failed: int = 0, cancelled: int = 0) -> None:
        self.count.counts = (done, failed)
        now = time.monotonic()
        if self.count.counts == self._shown or now - self._last_write < self.interval:
            return
        self._shown = self.count.counts
        self._last_write = now
        self._write(self.count.describe(timed=False), end=False)

    def __enter__(self) -> TextProgress:
        self.count.started = time.monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.count.finish(exc_type)
        # A broken stream must not hide the exception the run may be raising.
        with contextlib.suppress(OSError, ValueError):
            self._write(self.count.describe(), end=True)

    def _write(self, line: str, end: bool) -> None:
        target = self.stream if self.stream is not None else sys.stderr
        if is_terminal(target):
            target.write("\r" + line.ljust(self._open_line) + ("\n" if end else ""))
            self._open_line = 0 if end else len(line)
            target.flush()
        else:
            target.write(("\n" if self._open_line else "") + line + "\n")
            self._open_line = 0


def _count_html(text: str) -> str:
    return f'<span style="font-family: monospace">{html.escape(text)}</span>'
