"""The one place a display is chosen: a widget in a Jupyter kernel with ipywidgets,
text elsewhere (or when asked), nothing when quiet."""

from __future__ import annotations

import importlib
from typing import Literal, TextIO

from IPython import get_ipython

from ..config import IPyRunner, settings
from ..presenting import DisplaySink, NullProgress, ProgressDisplay
from ..sinks import NullSink
from .live import Frontend, LiveView
from .text import TextFrontend

Mode = Literal["none", "text", "widget"]


def display_mode(config: IPyRunner, quiet: bool = False) -> Mode:
    """What to show: "auto" is a widget in a Jupyter kernel with ipywidgets, and a
    widget needs an IPython shell to be shown in."""
    if quiet or config.display == "none":
        return "none"
    mode = config.display
    if mode == "auto":
        mode = "widget" if in_jupyter_kernel() and _has_widgets() else "text"
    return "widget" if mode == "widget" and get_ipython() is not None else "text"


def frontend(config: IPyRunner, mode: Mode, stdout: TextIO | None = None) -> Frontend:
    if mode == "widget":
        from .widget import WidgetFrontend  # terminal IPython never loads ipywidgets

        return WidgetFrontend()
    return TextFrontend(limit=config.display_limit, stdout=stdout)


def live_view(
    config: IPyRunner,
    quiet: bool = False,
    *,
    mode: Mode | None = None,
    stdout: TextIO | None = None,
) -> DisplaySink:
    """The live display of one run by `config.display`, or `mode` when given
    (the CLI asks for text); `stdout` is where the run's stdout is shown."""
    chosen = "none" if quiet else mode or display_mode(config)
    if chosen == "none":
        return NullSink()
    view = LiveView(
        frontend(config, chosen, stdout),
        limit=config.display_limit,
        rate=config.display_rate,
    )
    return view


def progress_view(
    config: IPyRunner, total: int, label: str, quiet: bool = False
) -> ProgressDisplay:
    """The progress of `total` runs, by the rules of `live_view`."""
    sink = live_view(config, quiet)
    return sink.track(total, label) if isinstance(sink, LiveView) else NullProgress()


class DisplayPresenter:
    """What the domain's `presenter()` gives once the package is imported: live
    output and progress by the settings in force at each run."""

    def sink(self, quiet: bool = False) -> DisplaySink:
        return live_view(settings(), quiet)

    def progress(self, total: int, label: str, quiet: bool = False) -> ProgressDisplay:
        return progress_view(settings(), total, label, quiet)


def in_jupyter_kernel() -> bool:
    """True under ipykernel (a ZMQInteractiveShell), where widgets can render."""
    return getattr(get_ipython(), "kernel", None) is not None


def _has_widgets() -> bool:
    try:
        importlib.import_module("ipywidgets")
    except ImportError:
        return False
    return True
