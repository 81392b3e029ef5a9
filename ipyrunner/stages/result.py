"""`StageResult`: what one stage run produced."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from ..errors import (
    OutputLimitExceeded,
    ResourceLimitExceeded,
    ResultDecodeError,
    StageFailed,
    StageTimeout,
)
from ..result_html import isolation_note, render_result_html
from ..sandbox.commit import Refused
from ..sinks import DisplayBundle
from .envelope import StageError
from .frames import is_frame


@dataclass(frozen=True)
class StageResult:
    """The value (or the error) of one stage run, with its output and timing."""

    value: Any
    stdout: str
    stderr: str
    returncode: int
    duration_s: float
    attempts: int
    truncated: bool
    isolation: str = "none"
    host_network: bool = False  # ran with effect host-network
    error: StageError | None = None
    name: str | None = None
    language: str = "python"
    timed_out: bool = False
    runtime: str = "host"
    refused: tuple[Refused, ...] = ()  # writes the sandbox kept off the host
    warm: bool = False  # served by a warm worker (a fork of one that imported the stage)
    displays: tuple[DisplayBundle, ...] = ()  # what display() showed, as the kernel checked it
    worker: str | None = None  # in a map: "local", or the Dask worker's address

    @property
    def ok(self) -> bool:
        return self.error is None

    def ran_on(self, worker: str) -> StageResult:
        """This result, saying which worker of a map ran the call."""
        return replace(self, worker=worker)

    @property
    def label(self) -> str:
        return f"stage {self.name}" if self.name else f"{self.language} stage"

    @property
    def outcome(self) -> str:
        if self.error is None:
            return "succeeded"
        if self.error.kind == "limit":
            return self.error.type
        return {"timeout": "timed out", "output": "output limit"}.get(self.error.kind, "failed")

    def check(self) -> StageResult:
        """Return self if the stage gave a value, else raise the matching error."""
        error = self.error
        if error is None:
            return self
        if error.kind == "timeout":
            raise StageTimeout(
                f"{self.label} timed out after {self.attempts} attempt(s); raise --timeout",
                self,
            )
        if error.kind == "output":
            raise OutputLimitExceeded(
                f"{self.label} wrote more than the output cap and was killed; "
                "raise --max-output or print less",
                self,
            )
        if error.kind == "limit":
            raise ResourceLimitExceeded(
                f"{self.label}: {error.message}; raise the limit (--memory, "
                "IPyRunner.cpu_time, IPyRunner.file_size) or use less",
                self,
            )
        if error.kind in ("decode", "result-size"):
            raise ResultDecodeError(f"{self.label}: {error.message}", self)
        if error.kind == "raised":
            trace = f"\n{error.traceback.rstrip()}" if error.traceback else ""
            raise StageFailed(f"{self.label} raised {error.type}: {error.message}{trace}", self)
        last = self.stderr.strip().splitlines()[-1:] if self.stderr.strip() else []
        said = f"; last stderr line: {last[0][:200]!r}" if last else ""
        raise StageFailed(f"{self.label}: {error.message}{said}", self)

    def __repr__(self) -> str:
        if self.error is None:
            shown = _short(self.value)
            head = f"value {shown[:60]}{'…' if len(shown) > 60 else ''}"
        else:
            head = f"{self.error.type}: {self.error.message[:60]}"
        parts = [self.label, self.outcome, head, f"{self.duration_s:.2f} s"]
        if self.attempts != 1:
            parts.append(f"{self.attempts} attempts")
        if note := isolation_note(self):
            parts.append(note)
        return f"<StageResult {' · '.join(parts)}>"

    def _repr_html_(self) -> str:
        error = self.error
        facts = [("error", f"{error.type}: {error.message}")] if error else []
        facts.append(("runtime", self.runtime))
        table = ""
        if error is None and is_frame(self.value):
            facts.append(("value", _short(self.value)))
            streams = []
            table = _frame_html(self.value)
        elif error is None:
            streams = [("value", json.dumps(self.value, indent=2, ensure_ascii=False))]
        else:
            streams = [("traceback", error.traceback)]
        if self.displays:
            facts.append(("displays", str(len(self.displays))))
        return render_result_html("StageResult", self, facts, streams) + table


def _short(value: Any) -> str:
    if is_frame(value):
        rows, columns = value.shape
        return f"DataFrame, {rows} rows, {columns} columns"
    return json.dumps(value, ensure_ascii=False)


def _frame_html(frame: Any) -> str:
    """pandas' own HTML for a frame, made here in the kernel from decoded values."""
    try:
        html = frame._repr_html_()
    except Exception:  # pandas' display options can make it raise or give None
        html = None
    return html if isinstance(html, str) else ""
