"""matplotlib's backend inside a stage: Agg drawing, and `plt.show()` sends every
open figure to the notebook (`module://ipyrunner._agg`, set by python_stage.py)."""

from __future__ import annotations

from typing import Any

from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

from .stage import show_figures

FigureCanvas = FigureCanvasAgg
FigureManager = FigureManagerBase


def show(*args: Any, **kwargs: Any) -> None:
    show_figures()
