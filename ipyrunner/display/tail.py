"""The last of a run's output: text of each stream and rich displays, in the order they came."""

from __future__ import annotations

import html
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from ..sinks import DisplayBundle, Stream

# Consecutive chunks of one stream are joined up to this size, so thousands of
# tiny chunks do not become thousands of pieces; larger pieces keep trimming cheap.
_PIECE = 8192
# Rich displays kept on screen, in characters of their data (an image is base64
# text): every refresh sends the whole output area, so pictures must stay few.
MEDIA_BUDGET = 2 << 20


@dataclass(frozen=True)
class Piece:
    """Text of one stream (or a tool's log), or one rich display."""

    kind: Stream | Literal["display"]
    text: str = ""
    bundle: DisplayBundle | None = None


# A tool's log, and ipyrunner's own notes, read as secondary: neither output nor error.
LOG_STYLE = "margin:0;color:var(--jp-ui-font-color2,#616161);font-size:0.9em"


class Tail:
    """Keeps at most `limit` characters of text and `media` characters of displays,
    dropping the oldest, and counts what it dropped."""

    def __init__(self, limit: int, media: int = MEDIA_BUDGET) -> None:
        if limit <= 0:
            raise ValueError(f"limit must be a positive number of characters, not {limit}")
        self.limit = limit
        self.media = media
        self.dropped = 0
        self.dropped_displays = 0
        self._size = 0
        self._media_size = 0
        self._pieces: deque[Piece] = deque()

    def add(self, stream: Stream, text: str) -> None:
        if not text:
            return
        if len(text) > self.limit:
            # A flood: keep one character more than fits, so _trim sees where the cut falls.
            self.dropped += self._size + len(text) - self.limit - 1
            self.dropped_displays += sum(1 for piece in self._pieces if piece.bundle)
            self._pieces.clear()
            self._size = self._media_size = 0
            text = text[-self.limit - 1 :]
        last = self._pieces[-1] if self._pieces else None
        if last is not None and last.kind == stream and len(last.text) < _PIECE:
            self._pieces[-1] = Piece(stream, last.text + text)
        else:
            self._pieces.append(Piece(stream, text))
        self._size += len(text)
        self._trim()

    def add_display(self, bundle: DisplayBundle) -> None:
        size = media_size(bundle)
        if size > self.media:
            self.dropped_displays += 1
            return
        self._pieces.append(Piece("display", bundle=bundle))
        self._media_size += size
        while self._media_size > self.media:
            oldest = next(p for p in self._pieces if p.bundle is not None)
            self._pieces.remove(oldest)
            self._media_size -= media_size(oldest.bundle)  # type: ignore[arg-type]
            self.dropped_displays += 1

    def _trim(self) -> None:
        cut_line: str | None = None
        while self._size > self.limit:
            first = self._pieces[0]
            if first.bundle is not None:  # older than text that goes: it goes too
                self._pieces.popleft()
                self._media_size -= media_size(first.bundle)
                self.dropped_displays += 1
                continue
            cut = min(self._size - self.limit, len(first.text))
            self._drop(cut)
            cut_line = None if first.text[cut - 1] == "\n" else first.kind
        if self._pieces and self._pieces[0].kind == cut_line:
            # A line cut in half reads as a different line: drop the rest of it too.
            self._drop(self._pieces[0].text.find("\n") + 1)

    def _drop(self, count: int) -> None:
        first = self._pieces[0]
        if count == len(first.text):
            self._pieces.popleft()
        else:
            self._pieces[0] = Piece(first.kind, first.text[count:])
        self._size -= count
        self.dropped += count

    def pieces(self) -> tuple[Piece, ...]:
        return tuple(self._pieces)

    def notice(self) -> str:
        said = []
        if self.dropped:
            said.append(f"{self.dropped} earlier characters")
        if self.dropped_displays:
            plural = "s" if self.dropped_displays != 1 else ""
            said.append(f"{self.dropped_displays} earlier display{plural}")
        if not said:
            return ""
        return f"[ipyrunner: {' and '.join(said)} not shown; the result holds up to max_output]\n"

    def outputs(self) -> tuple[dict[str, Any], ...]:
        """Jupyter outputs, the notice first: a stream output per run of stdout or
        stderr, a display per rich display, logs as quiet text."""
        outputs: list[dict[str, Any]] = []
        if notice := self.notice():
            outputs.append(log_output(notice))
        for piece in self._pieces:
            if piece.bundle is not None:
                outputs.append(display_output(piece.bundle))
            elif piece.kind == "log":
                outputs.append(log_output(piece.text))
            else:
                outputs.append({"output_type": "stream", "name": piece.kind, "text": piece.text})
        return tuple(outputs)

    def text(self) -> str:
        """Everything kept, as plain text: a display shows as its text/plain."""
        return self.notice() + "".join(piece_text(piece) for piece in self._pieces)


def piece_text(piece: Piece) -> str:
    if piece.bundle is None:
        return piece.text
    text = piece.bundle.text
    return text if text.endswith("\n") else text + "\n"


def media_size(bundle: DisplayBundle) -> int:
    return sum(len(value) if isinstance(value, str) else 64 for value in bundle.data.values())


def display_output(bundle: DisplayBundle) -> dict[str, Any]:
    return {
        "output_type": "display_data",
        "data": dict(bundle.data),
        "metadata": dict(bundle.metadata),
    }


def log_output(text: str) -> dict[str, Any]:
    return {
        "output_type": "display_data",
        "data": {
            "text/html": f'<pre style="{LOG_STYLE}">{html.escape(text)}</pre>',
            "text/plain": text,
        },
        "metadata": {},
    }
