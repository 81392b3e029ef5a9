"""The presenter the package plugs in: API calls show runs as the magics do."""

from __future__ import annotations

from ..config import settings
from ..presenting import DisplaySink, ProgressDisplay
from .choose import choose_sink
from .progress import choose_progress


class DisplayPresenter:
    """Live output and progress by the settings in force at each run."""

    def sink(self, quiet: bool = False) -> DisplaySink:
        return choose_sink(settings(), quiet)

    def progress(self, total: int, label: str, quiet: bool = False) -> ProgressDisplay:
        return choose_progress(settings(), total, label, quiet)
