"""Picks the live display for a run from the settings and the frontend."""

from __future__ import annotations

import importlib
from types import TracebackType
from typing import Protocol

from IPython import get_ipython

from ..config import IPyRunner
from ..process import NullSink, Sink
from .text import TextSink


class DisplaySink(Sink, Protocol):
    """A sink that is shown for the length of a `with` block around the run."""

    def __enter__(self) -> DisplaySink: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def choose_sink(settings: IPyRunner, quiet: bool = False) -> DisplaySink:
    """The sink for `settings.display`: "auto" is a widget in a Jupyter kernel, else text.

    A widget needs an IPython shell to be shown in; without one, text is shown instead.
    """
    mode = settings.display
    if quiet or mode == "none":
        return NullSink()
    if mode == "auto":
        mode = "widget" if in_jupyter_kernel() and _has_widgets() else "text"
    if mode == "widget" and get_ipython() is not None:
        from .widget import WidgetSink  # terminal IPython never loads ipywidgets

        return WidgetSink(rate=settings.display_rate, limit=settings.display_limit)
    return TextSink(limit=settings.display_limit)


def in_jupyter_kernel() -> bool:
    """True under ipykernel (a ZMQInteractiveShell), where widgets can render."""
    return getattr(get_ipython(), "kernel", None) is not None


def _has_widgets() -> bool:
    try:
        importlib.import_module("ipywidgets")
    except ImportError:
        return False
    return True
