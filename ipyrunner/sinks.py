"""What a run tells its display: output chunks as they come, status changes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .result_html import Reported, describe_returncode, isolation_note

# A program's two streams, and "log": what a tool working for the run says (uv, nix).
Stream = Literal["stdout", "stderr", "log"]


@dataclass(frozen=True)
class RunStatus:
    """What a display shows on its status line."""

    label: str
    state: str  # running, retrying, succeeded, failed, timed out, output limit, interrupted
    attempt: int = 1
    attempts: int = 1
    returncode: int | None = None
    elapsed_s: float | None = None
    truncated_at: int | None = None
    note: str = ""

    @classmethod
    def final(cls, result: Reported, attempts: int, cap: int) -> RunStatus:
        """The status line of a finished run."""
        return cls(
            result.label,
            result.outcome,
            result.attempts,
            attempts,
            returncode=result.returncode,
            elapsed_s=result.duration_s,
            truncated_at=cap if result.truncated else None,
            note=isolation_note(result),
        )

    @property
    def finished(self) -> bool:
        return self.state not in ("running", "retrying")

    def describe(self, elapsed_s: float | None = None) -> str:
        if self.state == "retrying":  # "flaky.py · attempt 1 of 4: exit 1 · retrying in 0.6 s"
            return f"{self.label} · attempt {self.attempt} of {self.attempts}: {self.note}"
        parts = [self.label, self.state]
        if self.attempts > 1:
            parts.append(f"attempt {self.attempt} of {self.attempts}")
        if self.returncode is not None:
            parts.append(describe_returncode(self.returncode))
        seconds = self.elapsed_s if self.elapsed_s is not None else elapsed_s
        if seconds is not None:
            parts.append(f"{seconds:.2f} s")
        if self.truncated_at is not None:
            parts.append(f"truncated at {self.truncated_at} bytes")
        if self.note:
            parts.append(self.note)
        return " · ".join(parts)


@dataclass(frozen=True)
class DisplayBundle:
    """Rich output a run sent to be shown, already checked in the kernel: only safe
    MIME types, as IPython's `display_data` carries them (images base64 text)."""

    data: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """What a display that cannot show pictures shows."""
        plain = self.data.get("text/plain")
        return plain if isinstance(plain, str) else f"<{', '.join(sorted(self.data))}>"


class Sink(Protocol):
    """Receives a run's output as it arrives, its rich displays, and its status changes."""

    def write(self, stream: Stream, text: str) -> None: ...

    def display(self, bundle: DisplayBundle) -> None: ...

    def status(self, status: RunStatus) -> None: ...


class MessagesOnStderr:
    """Shows what a program writes on stderr as its output: for a bash stage,
    whose stdout is its result, stderr is where its messages go by design."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def write(self, stream: Stream, text: str) -> None:
        self.sink.write("stdout" if stream == "stderr" else stream, text)

    def display(self, bundle: DisplayBundle) -> None:
        self.sink.display(bundle)

    def status(self, status: RunStatus) -> None:
        self.sink.status(status)


class NullSink:
    """Discards everything: a run with no live display."""

    def write(self, stream: Stream, text: str) -> None:
        pass

    def display(self, bundle: DisplayBundle) -> None:
        pass

    def status(self, status: RunStatus) -> None:
        pass

    def __enter__(self) -> NullSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass
