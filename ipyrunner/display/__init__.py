"""Live displays of a run's output and of many runs' progress: a throttled widget in
Jupyter, plain text elsewhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..presenting import DisplaySink, NullProgress, ProgressDisplay
from ..sinks import NullSink
from .choose import choose_sink, in_jupyter_kernel
from .progress import TextProgress, WidgetProgress, choose_progress
from .text import TextSink

if TYPE_CHECKING:
    from .widget import WidgetSink

__all__ = [
    "DisplaySink",
    "NullProgress",
    "NullSink",
    "ProgressDisplay",
    "TextProgress",
    "TextSink",
    "WidgetProgress",
    "WidgetSink",
    "choose_progress",
    "choose_sink",
    "in_jupyter_kernel",
]


def __getattr__(name: str) -> Any:
    # ipywidgets is imported only when a widget is wanted: terminal IPython never pays for it.
    if name == "WidgetSink":
        from .widget import WidgetSink

        return WidgetSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
