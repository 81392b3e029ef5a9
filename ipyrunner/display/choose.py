"""Picks the live display for a run from the settings and the frontend."""

from __future__ import annotations

import importlib
import math
from typing import Any, Literal

from IPython import get_ipython

from ..config import IPyRunner
from ..errors import InvalidOption
from ..presenting import DisplaySink
from ..sinks import NullSink
from .text import TextSink


def choose_sink(settings: IPyRunner, quiet: bool = False) -> DisplaySink:
    """The sink for `settings.display`: "auto" is a widget in a Jupyter kernel, else text.

    A widget needs an IPython shell to be shown in; without one, text is shown instead.
    """
    mode = display_mode(settings, quiet)
    if mode == "none":
        return NullSink()
    if mode == "widget":
        from .widget import WidgetSink  # terminal IPython never loads ipywidgets

        return WidgetSink(rate=settings.display_rate, limit=settings.display_limit)
    return TextSink(limit=settings.display_limit)


def display_mode(settings: IPyRunner, quiet: bool = False) -> Literal["none", "text", "widget"]:
    """What to show: "auto" is a widget in a Jupyter kernel with ipywidgets, and a
    widget needs an IPython shell to be shown in."""
    if quiet or settings.display == "none":
        return "none"
    mode = settings.display
    if mode == "auto":
        mode = "widget" if in_jupyter_kernel() and _has_widgets() else "text"
    return "widget" if mode == "widget" and get_ipython() is not None else "text"


def widget_bundle(widget: Any, text: str) -> dict[str, Any]:
    """The widget's view, with `text` for frontends that cannot show widgets."""
    bundle: dict[str, Any] = dict(widget._repr_mimebundle_() or {})
    bundle["text/plain"] = text
    return bundle


def update_interval(rate: float) -> float:
    """Seconds between two updates at `rate` updates per second."""
    if not (math.isfinite(rate) and rate > 0):
        raise InvalidOption(f"invalid display rate {rate!r}: updates per second must be > 0")
    return 1.0 / rate


def in_jupyter_kernel() -> bool:
    """True under ipykernel (a ZMQInteractiveShell), where widgets can render."""
    return getattr(get_ipython(), "kernel", None) is not None


def _has_widgets() -> bool:
    try:
        importlib.import_module("ipywidgets")
    except ImportError:
        return False
    return True
