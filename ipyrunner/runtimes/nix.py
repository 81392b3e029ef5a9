"""The nix runtime: an interpreter from a flake's package set, resolved once.

The first call for a (flake, attribute, packages) runs `nix build` and
records the store path and its closure, in memory and on disk; every later
call executes the store path directly — no nix process, no evaluation. The
sandbox exposes exactly that closure, read-only.

`nix build --json` reports the out path (`--print-out-paths` needs Nix 2.9;
Debian's nix-bin is 2.8). Python packages come from the flake's
`python3Packages`, and a pinned requirement must match the version the flake
provides: the flake, not the spec, decides what is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

from ..config import IPyRunner
from ..errors import InvalidRequirement, RuntimeUnavailable
from ..process import Completed, Limits, run_process
from ..requirements import Requirement
from ..sinks import RunStatus, Sink
from . import Interpreter
from .host import find_executable
from .venv import BuildLog, cache_root, tool_environment

ATTRIBUTES = {
    "python": ("python3", "bin/python3"),
    "node": ("nodejs", "bin/node"),
    "bash": ("bash", "bin/bash"),
}
BUILD_TIMEOUT = 3600.0
_FLAKE = re.compile(r"[A-Za-z0-9+._:/?=&@~-]+")
_ATTRIBUTE = re.compile(r"[a-z0-9][a-z0-9_-]*")
_resolved: dict[str, Interpreter] = {}
_lock = threading.Lock()


def nix_executable(config: IPyRunner) -> str:
    fix = "apt-get install -y nix-bin, or set IPyRunner.nix_executable"
    return find_executable(config.nix_executable or "nix", fix)


def nix_interpreter(
    language: str, requirements: Sequence[Requirement], config: IPyRunner, sink: Sink
) -> Interpreter:
    """The store path's interpreter for `language`, built on first use only."""
    flake = config.nix_flake
    if not _FLAKE.fullmatch(flake):
        raise RuntimeUnavailable(f"IPyRunner.nix_flake {flake!r} is not a flake reference")
    attribute, binary = ATTRIBUTES[language]
    pins = sorted(f"{_package_attribute(r)}{r.specifier}" for r in requirements)
    key = hashlib.sha256(json.dumps([flake, attribute, pins]).encode()).hexdigest()[:32]
    with _lock:
        found = _resolved.get(key) or _from_disk(key, config)
        if found is None:
            found = _resolve(flake, attribute, binary, requirements, config, sink)
            _to_disk(key, found, config)
        _resolved[key] = found
    return found


def _package_attribute(requirement: Requirement) -> str:
    name = requirement.name
    if requirement.extras or not _ATTRIBUTE.fullmatch(name):
        raise InvalidRequirement(
            f"requirement {str(requirement)!r}: the nix runtime takes plain package names "
            "from the flake's python3Packages"
        )
    return name


def _expression(flake: str, attribute: str, packages: Sequence[str]) -> str:
    pkgs = f'(builtins.getFlake "{flake}").legacyPackages.${{builtins.currentSystem}}'
    if not packages:
        return f"let pkgs = {pkgs}; in pkgs.{attribute}"
    chosen = " ".join(f"ps.{p}" for p in packages)
    return f"let pkgs = {pkgs}; in pkgs.{attribute}.withPackages (ps: [ {chosen} ])"


def _nix(config: IPyRunner, sink: Sink, *args: str) -> Completed:
    argv = [
        nix_executable(config),
        "--extra-experimental-features",
        "nix-command flakes",
        *args,
        *config.nix_options,
    ]
    return run_process(
        argv,
        env=tool_environment(),
        cwd="/",
        limits=Limits(timeout=BUILD_TIMEOUT, max_output=config.max_output),
        sink=BuildLog(sink),
    )


def _resolve(
    flake: str,
    attribute: str,
    binary: str,
    requirements: Sequence[Requirement],
    config: IPyRunner,
    sink: Sink,
) -> Interpreter:
    packages = sorted(_package_attribute(r) for r in requirements)
    sink.status(RunStatus(f"nix: resolving {attribute} from {flake}", "running"))
    if requirements:
        _check_versions(flake, requirements, config, sink)
    built = _nix(config, sink, "build", "--no-link", "--json", "--impure", "--expr",
                 _expression(flake, attribute, packages))  # fmt: skip
    if not built.ok:
        raise RuntimeUnavailable(_classify(built, flake, attribute))
    try:
        out = json.loads(built.stdout)[0]["outputs"]["out"]
    except (ValueError, LookupError, TypeError):
        raise RuntimeUnavailable(f"nix build printed no out path: {built.stdout[:200]!r}") from None
    closure = _nix(config, sink, "path-info", "--recursive", out)
    if not closure.ok:
        raise RuntimeUnavailable(_classify(closure, flake, attribute))
    executable = os.path.join(out, binary)
    if not os.path.exists(executable):
        raise RuntimeUnavailable(f"{flake}#{attribute} has no {binary}")
    return Interpreter(executable, tuple(closure.stdout.split()), "nix", out)


def _check_versions(
    flake: str, requirements: Sequence[Requirement], config: IPyRunner, sink: Sink
) -> None:
    names = " ".join(_package_attribute(r) for r in requirements)
    pkgs = f'(builtins.getFlake "{flake}").legacyPackages.${{builtins.currentSystem}}'
    expression = (
        f"let ps = {pkgs}.python3Packages; in "
        f"builtins.mapAttrs (name: p: p.version or null) {{ inherit (ps) {names}; }}"
    )
    done = _nix(config, sink, "eval", "--json", "--impure", "--expr", expression)
    if not done.ok:
        raise RuntimeUnavailable(_classify(done, flake, "python3Packages"))
    versions = json.loads(done.stdout)
    for requirement in requirements:
        have = versions.get(requirement.name)
        if requirement.pinned and have != requirement.version:
            raise InvalidRequirement(
                f"requirement {str(requirement)!r}: the flake provides {requirement.name} "
                f"{have}; pin {requirement.name}=={have} or use --runtime venv"
            )


def _classify(done: Completed, flake: str, attribute: str) -> str:
    """Nix's failure, as one line that says what to do."""
    text = done.stderr
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    last = (errors or lines or [""])[-1]
    if "daemon-socket" in text or "cannot connect to socket" in text:
        return "the nix daemon is not running; start it (systemctl start nix-daemon) or run as root"
    if "No space left on device" in text:
        return "the nix store is out of disk space; free some (nix-collect-garbage -d)"
    if "does not provide attribute" in text or re.search(r"attribute '[^']+' missing", text):
        return f"{flake} has no {attribute} (or one of the packages asked for): {last.strip()}"
    if any(
        word in text
        for word in (
            "unable to download",
            "Could not resolve",
            "Couldn't resolve",
            "does not exist",
            "No such file or directory",
            "cannot fetch",
            "HTTP error",
        )
    ):
        return (
            f"the flake {flake} cannot be fetched ({last.strip()}); check the network or "
            "point IPyRunner.nix_flake at a local flake"
        )
    return f"nix failed: {last.strip() or f'exit {done.returncode}'}"


def _cache_file(config: IPyRunner) -> Path:
    return cache_root(config).parent / "nix.json"


def _from_disk(key: str, config: IPyRunner) -> Interpreter | None:
    try:
        entry = json.loads(_cache_file(config).read_text())[key]
        found = Interpreter(entry["executable"], tuple(entry["readonly"]), "nix", entry["out"])
    except (OSError, ValueError, LookupError, TypeError):
        return None
    # A garbage-collected store path is resolved again.
    return found if all(os.path.exists(p) for p in (found.executable, *found.readonly)) else None


def _to_disk(key: str, found: Interpreter, config: IPyRunner) -> None:
    path = _cache_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        entries = {}
    entries[key] = {
        "executable": found.executable,
        "readonly": list(found.readonly),
        "out": found.detail,
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(entries, indent=1))
    os.replace(temporary, path)
