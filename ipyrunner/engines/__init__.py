"""Where a map's calls run: threads of this process (`LocalEngine`) or the workers
of a Dask cluster (`DaskEngine`). Both run each call through the same `Stage`,
runner and sandbox; `run_map` is the one loop over their finished calls."""

from __future__ import annotations

from .base import Batch, Engine, MapJob
from .mapping import choose_engine, run_map

__all__ = ["Batch", "Engine", "MapJob", "choose_engine", "run_map"]
