"""The exception tree: every error ipyrunner raises derives from `RunnerError`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

_RED = "\x1b[0;31m"
_RESET = "\x1b[0m"


class RunnerError(Exception):
    """Base of every ipyrunner error.

    In IPython, `_render_traceback_` replaces the traceback into ipyrunner's
    internals with one red line: what went wrong and what to do.
    """

    def _render_traceback_(self) -> Sequence[str]:
        return [f"{_RED}{type(self).__name__}{_RESET}: {self}"]


def brief_interrupt(exc: KeyboardInterrupt) -> KeyboardInterrupt:
    """Make an interrupted run show in IPython as one line, as `%%bash` does, not
    as a traceback through the machinery that stopped it; the type stays."""
    line = f"{_RED}KeyboardInterrupt{_RESET}: interrupted; everything the run started was stopped"
    setattr(exc, "_render_traceback_", lambda: [line])  # noqa: B010 - not a class attribute
    return exc


class InvalidOption(RunnerError, ValueError):
    """An option value is out of range or unparsable (timeout, size, env...)."""


class PathNotAllowed(RunnerError, ValueError):
    """A path is absolute, has `..`, a NUL byte, or resolves outside the project."""


class InvalidEffectPath(InvalidOption, PathNotAllowed):
    """An fs effect's path is refused: a bad option (the magics say UsageError)
    and, like any project path, not allowed."""


class ScriptNotFound(RunnerError, FileNotFoundError):
    """The script does not exist, or is not a regular file."""


class UnsupportedScript(RunnerError, ValueError):
    """The script's extension names no interpreter ipyrunner knows."""


class InterpreterNotFound(RunnerError, FileNotFoundError):
    """The interpreter a script or stage needs is not installed."""


class SandboxUnavailable(RunnerError):
    """Isolation was required but bubblewrap cannot be used on this host."""


class EngineUnavailable(RunnerError):
    """A map's engine (a Dask cluster) cannot run it: unreachable, no workers, or a
    worker without ipyrunner, its version, a sandbox or the project."""


class InvalidStage(RunnerError, ValueError):
    """A stage's code cannot run: unknown language, no `execute`, a syntax error."""


class RuntimeUnavailable(RunnerError):
    """A runtime could not provide an interpreter: uv or nix failed, or is missing."""


class InvalidRequirement(RunnerError, ValueError):
    """A requirement spec is not of the pinned form `name==version`."""


class _FailedRun(RunnerError):
    """A run of user code that ended badly; `result` holds what it produced."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class ScriptFailed(_FailedRun):
    """A script still failed after its last attempt."""


class StageFailed(_FailedRun):
    """A stage raised, exited without a result, or died."""


class RunTimeout(_FailedRun, TimeoutError):
    """A run exceeded its per-attempt timeout and was killed."""


class ScriptTimeout(ScriptFailed, RunTimeout):
    """A script timed out on its last attempt."""


class StageTimeout(StageFailed, RunTimeout):
    """A stage timed out on its last attempt."""


class ResultDecodeError(_FailedRun):
    """A stage's result was missing, not JSON, not an envelope, or too large."""


class ResourceLimitExceeded(_FailedRun):
    """A run was killed by its memory, CPU-time or file-size limit."""


class OutputLimitExceeded(_FailedRun):
    """A run wrote more than its output cap and was killed."""
