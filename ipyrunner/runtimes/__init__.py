"""How a language gets an interpreter: `host`, `venv` or `nix`.

One interface: `resolve_interpreter(runtime, language, requirements, ...)`
returns an `Interpreter` — the argv to run and the paths a sandbox must
expose read-only. Resolving may install (venv) or build (nix) once; later
calls find the result cached and start no installer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import RUNTIMES, IPyRunner
from ..errors import InvalidOption, InvalidRequirement
from ..requirements import Requirement
from ..sinks import Sink
from .host import host_interpreter, host_program, host_runtime_paths
from .trusted import host_state, trusted_host_paths

RUNTIME_NAMES = RUNTIMES


@dataclass(frozen=True)
class Interpreter:
    """An interpreter ready to run, and what the sandbox must expose for it."""

    executable: str
    readonly: tuple[str, ...]
    runtime: str  # host, venv or nix
    detail: str = ""  # the venv directory or the store path


def choose_runtime(
    requested: str, language: str, requirements: Sequence[Requirement], config: IPyRunner
) -> str:
    """The runtime `auto` stands for here: nix when configured, venv for a Python
    stage with requirements, else host; requirements the runtime cannot honour
    are an error, never dropped."""
    if requested not in RUNTIME_NAMES:
        raise InvalidOption(f"invalid --runtime {requested!r}: use auto, host, venv or nix")
    runtime = requested
    if runtime == "auto":
        if config.runtime != "auto":
            runtime = config.runtime
        else:
            runtime = "venv" if requirements and language == "python" else "host"
    if requirements and language != "python":
        raise InvalidRequirement(
            f"requirements are for Python stages; a {language} stage cannot install "
            f"{', '.join(map(str, requirements))}"
        )
    if requirements and runtime == "host":
        raise InvalidRequirement(
            "the host runtime cannot install requirements; use --runtime venv or nix"
        )
    if runtime == "venv" and language != "python":
        raise InvalidOption(f"the venv runtime is for Python; a {language} stage uses host or nix")
    return runtime


def resolve_interpreter(
    runtime: str,
    language: str,
    requirements: Sequence[Requirement],
    config: IPyRunner,
    sink: Sink,
) -> Interpreter:
    """The interpreter for `language` from `runtime` (already chosen)."""
    if runtime == "venv":
        from .venv import venv_interpreter

        return venv_interpreter(requirements, config, sink)
    if runtime == "nix":
        from .nix import nix_interpreter

        return nix_interpreter(language, requirements, config, sink)
    key = (language, host_state(config))
    found = _host_resolved.get(key)
    if found is None or not os.path.exists(found.executable):
        exposure = host_program(language, config)
        found = Interpreter(exposure.executable, exposure.readonly, "host", exposure.executable)
        if len(_host_resolved) >= 64:
            _host_resolved.clear()
        _host_resolved[key] = found
    return found


# The host interpreter per state that decides it (`host_state`): a call pays for
# the exposure walk (links, prefixes, ELF dependencies) only when that changes.
_host_resolved: dict[tuple[str, tuple[object, ...]], Interpreter] = {}


__all__ = [
    "RUNTIME_NAMES",
    "Interpreter",
    "choose_runtime",
    "host_interpreter",
    "host_runtime_paths",
    "resolve_interpreter",
    "trusted_host_paths",
]
