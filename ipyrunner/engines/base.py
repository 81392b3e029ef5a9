"""What an engine is and what it is given: a map's job, the stage and results as
an engine sees them (engines sit below the domain and never import it)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..config import IPyRunner
from ..effects import Effects
from ..options import RunOptions
from ..sinks import Sink

if TYPE_CHECKING:
    from ..runtimes import Interpreter


class CallResult(Protocol):
    """What an engine hands back for a call (a `StageResult`)."""

    @property
    def ok(self) -> bool: ...

    @property
    def value(self) -> Any: ...

    @property
    def duration_s(self) -> float: ...

    def check(self) -> Any: ...

    def ran_on(self, worker: str) -> Any:
        """This result, saying which worker ran the call."""
        ...


class MapStage(Protocol):
    """What an engine needs of a stage (a `Stage`; engines sit below the domain
    and never import it)."""

    @property
    def title(self) -> str: ...

    @property
    def effects(self) -> Effects: ...

    @property
    def repeatable(self) -> bool: ...

    def spec(self) -> dict[str, Any]: ...

    def options(self, config: IPyRunner | None = None) -> RunOptions: ...

    def interpreter(
        self, config: IPyRunner | None = None, sink: Sink | None = None
    ) -> Interpreter: ...

    def failure(self, kind: str, message: str) -> Any: ...

    @classmethod
    def from_spec(cls, spec: dict[str, Any], config: IPyRunner | None = None) -> Any: ...

    def run_payload(
        self,
        payload: bytes,
        sink: Sink,
        config: IPyRunner,
        cancel: threading.Event | None,
        interpreter: Interpreter | None = None,
        warm: bool = False,
        workers: int = 1,
        project: Path | None = None,
    ) -> Any: ...


@dataclass(frozen=True)
class MapJob:
    """A map to run: the stage, its inputs as JSON bytes (already checked), and
    the settings in force when it was asked for."""

    stage: MapStage
    payloads: Sequence[bytes]
    config: IPyRunner
    warm: bool
    workers: int | None = None  # calls at once; None: the engine decides
    quiet: bool = False


class Batch(Protocol):
    """A map's calls, started."""

    def finished(self, timeout: float) -> Iterable[tuple[int, CallResult]]:
        """Calls that finished since the last look (waiting up to `timeout` for one)."""
        ...

    def cancel(self) -> int:
        """Stop every call still pending or running; how many were stopped."""
        ...


class Engine(Protocol):
    name: str

    def start(self, job: MapJob) -> Batch: ...
