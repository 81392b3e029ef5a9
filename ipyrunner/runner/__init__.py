"""Runners: where a run's processes come from. `warm` keeps sandboxed workers
that serve Python stage calls from a pristine fork each."""

from .warm import WarmPool, close_pools, warm_pool
from .worker import WorkerSpec

__all__ = ["WarmPool", "WorkerSpec", "close_pools", "warm_pool"]
