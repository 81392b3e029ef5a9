"""ipyrunner: run notebook code and project scripts isolated, from IPython.

`%load_ext ipyrunner` adds `%runscript` and `%%stage`; the same is reachable
from Python as `ipyrunner.run_script` and `ipyrunner.Stage`, and from a shell
as `python -m ipyrunner run` and `python -m ipyrunner stage`.
"""

from __future__ import annotations

from typing import Any

from .config import IPyRunner
from .display.presenter import DisplayPresenter
from .errors import (
    InterpreterNotFound,
    InvalidOption,
    InvalidRequirement,
    InvalidStage,
    OutputLimitExceeded,
    PathNotAllowed,
    ResultDecodeError,
    RunnerError,
    RunTimeout,
    SandboxUnavailable,
    ScriptFailed,
    ScriptNotFound,
    ScriptTimeout,
    StageFailed,
    StageTimeout,
    UnsupportedScript,
)
from .presenting import use_presenter
from .scripts import RunResult, run_script
from .stages import Stage, StageResult

__version__ = "0.1.0"

# Runs started from the Python API show their output like the magics' runs.
use_presenter(DisplayPresenter())

__all__ = [
    "IPyRunner",
    "InterpreterNotFound",
    "InvalidOption",
    "InvalidRequirement",
    "InvalidStage",
    "OutputLimitExceeded",
    "PathNotAllowed",
    "ResultDecodeError",
    "RunResult",
    "RunTimeout",
    "RunnerError",
    "SandboxUnavailable",
    "ScriptFailed",
    "ScriptNotFound",
    "ScriptTimeout",
    "Stage",
    "StageFailed",
    "StageResult",
    "StageTimeout",
    "UnsupportedScript",
    "load_ipython_extension",
    "run_script",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext ipyrunner`: register the magics and the `IPyRunner` settings.

    Loading twice (or `%reload_ext`) replaces rather than duplicates: magics
    are keyed by name and the settings object is a singleton.
    """
    from .magics import RunnerMagics

    existed = IPyRunner.initialized()
    config = IPyRunner.instance(parent=ipython)
    if existed:  # made earlier by an API call: take the shell's configuration now
        config.update_config(ipython.config)
    # Keyed by class name: after a reload the old object must not linger.
    ipython.configurables[:] = [
        c for c in ipython.configurables if type(c).__name__ != "IPyRunner"
    ] + [config]
    ipython.register_magics(RunnerMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext ipyrunner`: remove the magics; settings stay for a reload."""
    magics = ipython.magics_manager.magics
    magics["line"].pop("runscript", None)
    magics["cell"].pop("stage", None)
