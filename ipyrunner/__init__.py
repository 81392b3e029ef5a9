"""ipyrunner: run notebook code and project scripts isolated, from IPython.

`%load_ext ipyrunner` adds `%runscript` and `%%stage`; the same is reachable
from Python as `ipyrunner.run_script` and `ipyrunner.Stage`, and from a shell
as `python -m ipyrunner run` and `python -m ipyrunner stage`.
"""

from __future__ import annotations

import sys
from typing import Any

from .config import IPyRunner
from .display import DisplayPresenter
from .errors import (
    EngineUnavailable,
    InterpreterNotFound,
    InvalidOption,
    InvalidRequirement,
    InvalidStage,
    OutputLimitExceeded,
    PathNotAllowed,
    ResourceLimitExceeded,
    ResultDecodeError,
    RunnerError,
    RunTimeout,
    RuntimeUnavailable,
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
from .version import __version__

# Runs started from the Python API show their output like the magics' runs.
use_presenter(DisplayPresenter())

__all__ = [
    "EngineUnavailable",
    "IPyRunner",
    "InterpreterNotFound",
    "InvalidOption",
    "InvalidRequirement",
    "InvalidStage",
    "OutputLimitExceeded",
    "PathNotAllowed",
    "ResourceLimitExceeded",
    "ResultDecodeError",
    "RunResult",
    "RunTimeout",
    "RunnerError",
    "RuntimeUnavailable",
    "SandboxUnavailable",
    "ScriptFailed",
    "ScriptNotFound",
    "ScriptTimeout",
    "Stage",
    "StageFailed",
    "StageResult",
    "StageTimeout",
    "UnsupportedScript",
    "__version__",
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
    _warn_if_unsandboxed()


_warned = False


def _warn_if_unsandboxed() -> None:
    """Say once per kernel, at load time, that runs will not be sandboxed."""
    global _warned  # one warning per process, however often the extension loads
    from .sandbox.probe import bwrap_status

    status = bwrap_status()
    if status.usable or _warned:
        return
    _warned = True
    print(
        f"ipyrunner: the sandbox is unusable here ({status.reason}); runs go unsandboxed "
        f"under --isolate auto. Fix: {status.fix}",
        file=sys.stderr,
    )


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext ipyrunner`: remove the magics and end every warm worker;
    settings stay for a reload."""
    from .runner import close_pools

    magics = ipython.magics_manager.magics
    magics["line"].pop("runscript", None)
    magics["cell"].pop("stage", None)
    close_pools()
