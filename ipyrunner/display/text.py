"""Plain-text live output: for terminal IPython, nbconvert, and when widgets are off."""

from __future__ import annotations

import contextlib
import sys
from types import TracebackType
from typing import TextIO

from ..errors import InvalidOption
from ..sinks import DisplayBundle, RunStatus, Stream


class TextSink:
    """Writes chunks straight through, stdout to stdout and stderr to stderr,
    until `limit` characters; then one notice on stderr and nothing more.

    Streams left as None are looked up in `sys` at each write, so the capture
    of ipykernel (or of a test) applies.
    """

    def __init__(
        self, limit: int = 20_000, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        if limit <= 0:
            raise InvalidOption(f"invalid display limit {limit!r}: it must be > 0 characters")
        self.limit = limit
        self._streams: dict[Stream, TextIO | None] = {"stdout": stdout, "stderr": stderr}
        self._written = 0
        self._cut = False
        self._line_start = True

    def write(self, stream: Stream, text: str) -> None:
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

    def display(self, bundle: DisplayBundle) -> None:
        text = bundle.text
        self.write("stdout", text if text.endswith("\n") else text + "\n")

    def status(self, status: RunStatus) -> None:
        # "running" is left out to keep the text quiet; retries and the end are news.
        if status.finished or status.state == "retrying":
            self._note(status.describe())

    def __enter__(self) -> TextSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for stream in ("stdout", "stderr"):
            # A broken stream must not hide the exception the run may be raising.
            with contextlib.suppress(OSError, ValueError):
                self._target(stream).flush()

    def _note(self, line: str) -> None:
        self._put("stderr", ("" if self._line_start else "\n") + line + "\n")

    def _put(self, stream: Stream, text: str) -> None:
        target = self._target(stream)
        target.write(text)
        self._line_start = text.endswith("\n")
        # A terminal buffers a partial line (a prompt, a progress bar) until its
        # newline; a kernel's streams flush themselves, and a flush there is a round trip.
        if not self._line_start and is_terminal(target):
            target.flush()

    def _target(self, stream: Stream) -> TextIO:
        chosen = self._streams[stream]
        if chosen is not None:
            return chosen
        return sys.stdout if stream == "stdout" else sys.stderr


def is_terminal(target: TextIO) -> bool:
    try:
        return target.isatty()
    except (OSError, ValueError):
        return False
