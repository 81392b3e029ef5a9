"""Live displays of a run's output: a throttled widget in Jupyter, plain text elsewhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..process import NullSink
from .choose import DisplaySink, choose_sink, in_jupyter_kernel
from .text import TextSink

if TYPE_CHECKING:
    from .widget import WidgetSink

__all__ = [
    "DisplaySink",
    "NullSink",
    "TextSink",
    "WidgetSink",
    "choose_sink",
    "in_jupyter_kernel",
]


def __getattr__(name: str) -> Any:
    # ipywidgets is imported only when a widget is wanted: terminal IPython never pays for it.
    if name == "WidgetSink":
        from .widget import WidgetSink

        return WidgetSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
