"""The sandbox tier: real bubblewrap, attack cases.

Every test here is marked `sandbox` and runs with `IPyRunner.isolate = "bwrap"`
and `require_sandbox`, so nothing can quietly run unsandboxed: a missing or
broken bubblewrap skips the tier, or fails it under IPYRUNNER_REQUIRE_SANDBOX=1
(CI sets it). The helpers below also check `isolation == "bwrap"` on every
result they hand back.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ipyrunner import Stage, run_script
from ipyrunner.config import IPyRunner
from ipyrunner.scripts import RunResult
from ipyrunner.sinks import NullSink
from ipyrunner.stages.result import StageResult
from tests.conftest import need_bubblewrap

HERE = Path(__file__).resolve().parent

# Small helpers every attack stage starts with: each action's outcome as a
# plain JSON value ("ok", the data read, or the errno name of the failure).
PRELUDE = '''\
import errno as _errno
import os


def outcome(exc):
    """An exception as a short name: the errno's (ENOENT, EROFS, ...) or its type's."""
    number = getattr(exc, "errno", None)
    if number:
        return _errno.errorcode.get(number, str(number))
    return type(exc).__name__


def attempt(action, *args):
    """'ok' if `action(*args)` worked, else why it failed."""
    try:
        action(*args)
    except Exception as exc:
        return outcome(exc)
    return "ok"


def read(path):
    """{'data': text} if `path` could be read, else {'error': why}."""
    try:
        with open(path, "rb") as handle:
            return {"data": handle.read(1 << 20).decode("utf-8", "replace")}
    except Exception as exc:
        return {"error": outcome(exc)}


def peek(path):
    """{'size': bytes} if `path` (a real host file) could be read, else {'error': why}.

    Only the size comes back, so a host secret never lands in a test report."""
    try:
        with open(path, "rb") as handle:
            return {"size": len(handle.read(1 << 20))}
    except Exception as exc:
        return {"error": outcome(exc)}


def write(path, text="written from the sandbox\\n"):
    """'ok' if `text` could be written to `path` (created or truncated), else why not."""
    def action():
        with open(path, "w") as handle:
            handle.write(text)
    return attempt(action)


'''


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.sandbox)


@pytest.fixture(scope="session")
def bwrap_usable() -> None:
    """Skip the tier if bubblewrap cannot sandbox here; fail it if CI requires it."""
    need_bubblewrap()


@pytest.fixture(autouse=True)
def sandbox_settings(bwrap_usable: None, fresh_settings: IPyRunner) -> IPyRunner:
    """Settings that refuse every unsandboxed run."""
    fresh_settings.isolate = "bwrap"
    fresh_settings.require_sandbox = True
    fresh_settings.display = "none"
    fresh_settings.retries = 0
    return fresh_settings


def run_stage(
    code: str, language: str = "python", input: Any = None, **options: Any
) -> StageResult:
    """Run `code` (dedented; Python code gets PRELUDE first) as a stage, sandboxed."""
    source = textwrap.dedent(code)
    if language == "python":
        source = PRELUDE + source
    result = Stage(source, language, **options).run(input, sink=NullSink())
    assert result.isolation == "bwrap", f"the stage ran unsandboxed: {result!r}"
    return result


def stage_value(code: str, language: str = "python", input: Any = None, **options: Any) -> Any:
    """The value of a stage that must succeed (the attack is reported in the value)."""
    result = run_stage(code, language, input, **options)
    assert result.ok, f"{result!r}\nerror: {result.error}\nstderr: {result.stderr[-2000:]}"
    return result.value


def run_sandboxed_script(path: str, *args: str, **options: Any) -> RunResult:
    """`run_script` without raising, checked to have run in the sandbox."""
    result = run_script(path, *args, check=False, sink=NullSink(), **options)
    assert result.isolation == "bwrap", f"the script ran unsandboxed: {result!r}"
    return result


def everything_shown(result: StageResult | RunResult) -> str:
    """All that a run hands back to the user, as one string to search for leaks."""
    parts = [result.stdout, result.stderr, repr(result)]
    if isinstance(result, StageResult):
        parts += [json.dumps(result.value, ensure_ascii=False), repr(result.error)]
    return "\n".join(parts)
