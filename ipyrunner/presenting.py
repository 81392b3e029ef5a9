"""How runs started from the Python API get shown.

The domain asks `presenter()` for a live display; the display layer plugs the
real one in when the package is imported (`use_presenter`). Without it, runs
are silent. This keeps the lower layers free of imports of upper ones.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from .sinks import NullSink, Sink


class DisplaySink(Sink, Protocol):
    """A sink that is shown for the length of a `with` block around the run."""

    def __enter__(self) -> DisplaySink: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class ProgressDisplay(Protocol):
    """Progress of many runs (`Stage.map`), updated from the calling thread."""

    def update(self, done: int, failed: int = 0, cancelled: int = 0) -> None: ...

    def __enter__(self) -> ProgressDisplay: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Presenter(Protocol):
    def sink(self, quiet: bool = False) -> DisplaySink: ...

    def progress(self, total: int, label: str, quiet: bool = False) -> ProgressDisplay: ...


class NullProgress:
    def update(self, done: int, failed: int = 0, cancelled: int = 0) -> None:
        pass

    def __enter__(self) -> NullProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


class SilentPresenter:
    def sink(self, quiet: bool = False) -> DisplaySink:
        return NullSink()

    def progress(self, total: int, label: str, quiet: bool = False) -> ProgressDisplay:
        return NullProgress()


_presenter: Presenter = SilentPresenter()


def use_presenter(presenter: Presenter) -> None:
    global _presenter  # one process-wide choice, made at import
    _presenter = presenter


def presenter() -> Presenter:
    return _presenter
