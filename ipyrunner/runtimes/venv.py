"""The venv runtime: one cached venv per (interpreter, pinned requirements).

Venvs are made with uv on the host, outside the sandbox, and without running
any user code: wheels only (`--only-binary :all:`) unless
`IPyRunner.allow_source_builds`. Each is built in a temporary directory and
renamed into place, under a lock, so two stages asking at once neither race
nor see half a venv; a failed install leaves nothing behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..config import IPyRunner
from ..environment import find_program
from ..errors import RuntimeUnavailable
from ..process import Limits, run_process
from ..requirements import Requirement
from ..sinks import DisplayBundle, RunStatus, Sink, Stream
from . import Interpreter
from .exposure import Forbidden, collapse
from .host import check_links, host_interpreter, python_installation

STALE_SECONDS = 3600
INSTALL_TIMEOUT = 1800.0


def cache_root(config: IPyRunner) -> Path:
    if config.venv_cache:
        return Path(config.venv_cache).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ipyrunner" / "venvs"


def find_uv(config: IPyRunner) -> str:
    if config.uv_executable:
        return config.uv_executable
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = find_program("uv")
    if found is None:
        raise RuntimeUnavailable(
            "uv is not installed; fix: pip install uv (or set IPyRunner.uv_executable)"
        )
    return found


def venv_key(python: str, requirements: Sequence[Requirement]) -> str:
    """The cache key: the base interpreter (its real path and version) and the specs."""
    real = os.path.realpath(python)
    version = _python_version(python)
    canonical = json.dumps(
        {"python": [real, version], "requirements": sorted(map(str, requirements))},
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _python_version(python: str) -> str:
    # As the interpreter reports it (the kernel's own, or the sandboxed probe).
    found = python_installation(python)
    return found.version if found is not None else os.path.basename(os.path.realpath(python))


def venv_interpreter(
    requirements: Sequence[Requirement], config: IPyRunner, sink: Sink
) -> Interpreter:
    """The venv for `requirements`, made on first use and found on every later one."""
    base = host_interpreter("python", config)
    root = cache_root(config)
    key = venv_key(base, requirements)
    target = root / key
    if not _python(target).exists():
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root / f"{key}.lock"):
            if not _python(target).exists():  # another stage may have built it meanwhile
                _build(target, base, requirements, config, sink)
    # Run at its resolved path: that is where the sandbox has it.
    python = os.path.join(os.path.realpath(target), "bin", "python")
    return Interpreter(python, venv_exposure(target, base), "venv", str(target))


def venv_exposure(target: Path, base: str) -> tuple[str, ...]:
    """The venv and the installation of the base interpreter ipyrunner built it
    from, not the kernel's environment, and nothing its `pyvenv.cfg` says."""
    venv = os.path.realpath(target)
    python = os.path.join(venv, "bin", "python")
    found = python_installation(base)
    Forbidden.now().check((venv,), python, "set IPyRunner.venv_cache to another directory")
    if found is None:  # no sandbox can be made here: nothing will be mounted
        return (venv,)
    readonly = collapse((venv, *found.base))
    check_links(python, readonly, python)
    return readonly


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(
    target: Path, base: str, requirements: Sequence[Requirement], config: IPyRunner, sink: Sink
) -> None:
    _remove_stale(target.parent)
    uv = find_uv(config)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    specs = [str(r) for r in requirements]
    label = f"installing {', '.join(specs)}"
    sink.status(RunStatus(label, "running"))
    steps = [
        [uv, "venv", "--no-config", "--relocatable", "--quiet", "--color", "never",
         "--python", base, str(temporary)],
        [
            uv, "pip", "install", "--no-config", "--color", "never",
            "--python", str(_python(temporary)),
            *([] if config.allow_source_builds else ["--only-binary", ":all:"]),
            *specs,
        ],
    ]  # fmt: skip
    try:
        for argv in steps:
            done = run_process(
                argv,
                env=tool_environment(),
                cwd=str(target.parent),
                limits=Limits(timeout=INSTALL_TIMEOUT, max_output=config.max_output),
                # uv names the venv it fills: the final one, not the one being built.
                sink=BuildLog(sink, {str(temporary): str(target), temporary.name: str(target)}),
            )
            if not done.ok:
                said = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise RuntimeUnavailable(
                    f"uv could not install {', '.join(specs)}: {' / '.join(said)}"
                )
        os.rename(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


_NOT_FOR_TOOLS = ("VIRTUAL_ENV", "PYTHONPATH", "FORCE_COLOR", "CLICOLOR_FORCE")


def tool_environment() -> dict[str, str]:
    """uv and nix are the host's own tools, trusted with the kernel's proxies and
    index settings; a venv of the kernel's must not leak in, and their output
    goes to plain-text displays, so no colour."""
    env = {k: v for k, v in os.environ.items() if k not in _NOT_FOR_TOOLS}
    env["NO_COLOR"] = "1"
    return env


class BuildLog:
    """Shows a tool's log (its stderr) live as a log, not as a run's errors; its
    stdout is data for ipyrunner. `renames` replaces names in what it says."""

    def __init__(self, sink: Sink, renames: Mapping[str, str] | None = None) -> None:
        self.sink = sink
        self.renames = dict(renames or {})

    def write(self, stream: Stream, text: str) -> None:
        if stream != "stderr":
            return
        for old, new in self.renames.items():
            text = text.replace(old, new)
        self.sink.write("log", text)

    def display(self, bundle: DisplayBundle) -> None:
        self.sink.display(bundle)

    def status(self, status: RunStatus) -> None:
        self.sink.status(status)


def _remove_stale(root: Path) -> None:
    """Temporary venvs of builds that died (a killed kernel) are cleared after an hour."""
    now = time.time()
    for entry in root.glob(".*.tmp"):
        try:
            if now - entry.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(entry, ignore_errors=True)
        except FileNotFoundError:
            continue
