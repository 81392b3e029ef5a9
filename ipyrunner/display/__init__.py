"""Live displays of runs and of many runs' progress, one view with a widget or a
text front end; static bundles for finished runs."""

from __future__ import annotations

from .choose import DisplayPresenter, display_mode, in_jupyter_kernel, live_view, progress_view
from .live import Frame, Frontend, LiveView
from .text import TextFrontend

__all__ = [
    "DisplayPresenter",
    "Frame",
    "Frontend",
    "LiveView",
    "TextFrontend",
    "display_mode",
    "in_jupyter_kernel",
    "live_view",
    "progress_view",
]
