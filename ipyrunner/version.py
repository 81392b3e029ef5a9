"""The package version, in a module of its own: a Dask worker compares it before a map."""

__version__ = "0.1.0"
