"""`StageResult`: what one stage run produced."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
from .envelope import StageError


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
    worker: str | None = None  # in a map: "local", or the Dask worker's address

    @property
    def ok(self) -> bool:
        return self.error is None

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
            shown = json.dumps(self.value, ensure_ascii=False)
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
        if error is None:
            streams = [("value", json.dumps(self.value, indent=2, ensure_ascii=False))]
        else:
            streams = [("traceback", error.traceback)]
        return render_result_html("StageResult", self, facts, streams)
