"""The text front end: for terminal IPython, nbconvert, the CLI, and when widgets are off."""

from __future__ import annotations

import contextlib
import sys
from typing import Literal, TextIO

from .live import Frame
from .tail import piece_text

# Progress lines where a line cannot be redrawn (a pipe, a notebook's text output).
_LINES_PER_SECOND = 2.0


class TextFrontend:
    """Writes output through as it comes, stdout to stdout and the rest to stderr,
    until `limit` characters, then one notice; status lines for retries and the
    end; progress as tqdm's line, redrawn in place on a terminal.

    Streams left as None are looked up in `sys` at each write, so the capture of
    ipykernel (or of a test) applies.
    """

    immediate = True

    @property
    def ticks(self) -> bool:
        """Only a terminal redraws a line in place: elsewhere, no line without news."""
        return is_terminal(self._target("stderr"))

    def __init__(
        self, limit: int = 20_000, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.limit = limit
        self._streams = {"stdout": stdout, "stderr": stderr}
        self._written = 0
        self._cut = False
        self._line_start = True
        self._said = ""  # the last status line written
        self._meter_counts: tuple[int, int, int] | None = None
        self._meter_at = float("-inf")
        self._open_line = 0  # length of a terminal line not ended yet, to overwrite

    def show(self, frame: Frame) -> int:
        return self.draw(frame)

    def draw(self, frame: Frame) -> int:
        for piece in frame.fresh:
            stream: Literal["stdout", "stderr"] = "stdout"
            if piece.kind in ("stderr", "log"):
                stream = "stderr"
            self._output(stream, piece_text(piece))
        status = frame.status
        # "running" is left out to keep the text quiet; retries and the end are news.
        news = status is not None and (status.finished or status.state == "retrying")
        if news and frame.status_text != self._said:
            self._said = frame.status_text
            self._note(frame.status_text)
        if frame.counts is not None:
            self._progress(frame)
        return 1

    def finish(self, frame: Frame) -> None:
        # A broken stream must not hide the exception the run may be raising.
        with contextlib.suppress(OSError, ValueError):
            self.draw(frame)
            for name in ("stdout", "stderr"):
                self._target(name).flush()

    def _output(self, stream: Literal["stdout", "stderr"], text: str) -> None:
        if self._cut or not text:
            return
        shown = text[: max(0, self.limit - self._written)]
        if shown:
            self._put(stream, shown)
            self._written += len(shown)
        if len(shown) < len(text):
            self._cut = True
            self._note(
                f"[ipyrunner: output beyond {self.limit} characters not shown;"
                " the result holds up to max_output]"
            )

    def _progress(self, frame: Frame) -> None:
        counts = frame.counts
        assert counts is not None
        target = self._target("stderr")
        terminal = is_terminal(target)
        key = (counts.done, counts.failed, counts.cancelled)
        if not frame.final:
            if not terminal and key == self._meter_counts:
                return
            if frame.now - self._meter_at < 1 / _LINES_PER_SECOND and not terminal:
                return
        self._meter_counts, self._meter_at = key, frame.now
        line = counts.meter(frame.elapsed_s)
        if terminal:
            target.write("\r" + line.ljust(self._open_line) + ("\n" if frame.final else ""))
            self._open_line = 0 if frame.final else len(line)
            target.flush()
        else:
            target.write(line + "\n")

    def _note(self, line: str) -> None:
        self._put("stderr", ("" if self._line_start else "\n") + line + "\n")

    def _put(self, stream: str, text: str) -> None:
        target = self._target(stream)
        target.write(text)
        self._line_start = text.endswith("\n")
        # A terminal buffers a partial line (a prompt, a progress bar) until its
        # newline; a kernel's streams flush themselves, and a flush there is a round trip.
        if not self._line_start and is_terminal(target):
            target.flush()

    def _target(self, stream: str) -> TextIO:
        chosen = self._streams[stream]
        if chosen is not None:
            return chosen
        return sys.stdout if stream == "stdout" else sys.stderr


def is_terminal(target: TextIO) -> bool:
    try:
        return target.isatty()
    except (OSError, ValueError):
        return False
