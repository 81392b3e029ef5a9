"""The last characters of a run's output, stdout and stderr interleaved as they came."""

from __future__ import annotations

from collections import deque

from ..sinks import Stream

# Consecutive chunks of one stream are joined up to this size, so thousands of
# tiny chunks do not become thousands of pieces; larger pieces keep trimming cheap.
_PIECE = 8192


class Tail:
    """Keeps at most `limit` characters, dropping the oldest, and counts what it dropped."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"limit must be a positive number of characters, not {limit}")
        self.limit = limit
        self.dropped = 0
        self._size = 0
        self._pieces: deque[tuple[Stream, str]] = deque()

    def add(self, stream: Stream, text: str) -> None:
        if not text:
            return
        if len(text) > self.limit:
            # A flood: keep one character more than fits, so _trim sees where the cut falls.
            self.dropped += self._size + len(text) - self.limit - 1
            self._pieces.clear()
            self._size = 0
            text = text[-self.limit - 1 :]
        if self._pieces and self._pieces[-1][0] == stream and len(self._pieces[-1][1]) < _PIECE:
            self._pieces[-1] = (stream, self._pieces[-1][1] + text)
        else:
            self._pieces.append((stream, text))
        self._size += len(text)
        self._trim()

    def _trim(self) -> None:
        cut_line: Stream | None = None
        while self._size > self.limit:
            stream, text = self._pieces[0]
            cut = min(self._size - self.limit, len(text))
            self._drop(cut)
            cut_line = None if text[cut - 1] == "\n" else stream
        if self._pieces and self._pieces[0][0] == cut_line:
            # A line cut in half reads as a different line: drop the rest of it too.
            self._drop(self._pieces[0][1].find("\n") + 1)

    def _drop(self, count: int) -> None:
        stream, text = self._pieces[0]
        if count == len(text):
            self._pieces.popleft()
        else:
            self._pieces[0] = (stream, text[count:])
        self._size -= count
        self.dropped += count

    def notice(self) -> str:
        if not self.dropped:
            return ""
        return (
            f"[ipyrunner: {self.dropped} earlier characters not shown;"
            " the result holds up to max_output]\n"
        )

    def outputs(self) -> tuple[dict[str, str], ...]:
        """Jupyter stream outputs, one per run of the same stream, the notice first."""
        runs: list[tuple[Stream, list[str]]] = []
        for stream, text in self._pieces:
            if runs and runs[-1][0] == stream:
                runs[-1][1].append(text)
            else:
                runs.append((stream, [text]))
        outputs = [_stream_output(name, "".join(texts)) for name, texts in runs]
        if self.dropped:
            outputs.insert(0, _stream_output("stdout", self.notice()))
        return tuple(outputs)

    def text(self) -> str:
        return self.notice() + "".join(text for _, text in self._pieces)


def _stream_output(name: Stream, text: str) -> dict[str, str]:
    return {"output_type": "stream", "name": name, "text": text}
