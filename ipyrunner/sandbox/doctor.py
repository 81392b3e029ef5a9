"""`python -m ipyrunner doctor`: what this host supports, and how to fix the rest."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..environment import MINIMAL_PATH, find_program
from ..process import Limits, run_process
from .cgroups import create_run_cgroup, hierarchies
from .probe import bwrap_status


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False


def _version(program: str, *args: str) -> str:
    done = run_process(
        [program, *args], env={"PATH": MINIMAL_PATH}, cwd="/", limits=Limits(timeout=20)
    )
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else f"exit {done.returncode}"


def _program(name: str, label: str, fix: str, *version_args: str) -> Check:
    path = find_program(name)
    if path is None:
        return Check(label, False, "not found", fix)
    return Check(label, True, f"{path} ({_version(path, *version_args)})")


def _uv() -> Check:
    from ..config import settings
    from ..errors import RuntimeUnavailable
    from ..runtimes.venv import find_uv

    try:
        path = find_uv(settings())
    except RuntimeUnavailable as exc:
        return Check("uv", False, "not found (needed for --requires)", str(exc).split("fix: ")[-1])
    return Check("uv", True, f"{path} ({_version(path, '--version')})")


def _cgroups() -> Check:
    found = hierarchies()
    run = create_run_cgroup(processes=64, memory=64 << 20)
    if run is None:
        fix = (
            "run the kernel as root with cgroups mounted read-write, or delegate a cgroup v2 "
            "subtree to this user (systemd-run --user --scope -p Delegate=yes jupyter lab)"
        )
        if os.geteuid() == 0:
            fix = "as root, RLIMIT_NPROC does not bind: the process limit needs cgroups; " + fix
        return Check("cgroups", False, "cannot create a cgroup for runs", fix)
    usable = sorted(run.limits)
    run.close()
    versions = {f"v{found[c].version}" for c in usable}
    missing = sorted({"pids", "memory"} - set(usable))
    detail = f"{', '.join(usable)} ({', '.join(sorted(versions))})"
    if missing:
        return Check("cgroups", False, detail, f"enable the {', '.join(missing)} controller")
    return Check("cgroups", True, detail)


def host_report() -> list[Check]:
    """Every check, required ones first."""
    status = bwrap_status()
    bwrap = (
        Check("bubblewrap", True, f"{status.path} ({status.version})", required=True)
        if status.path
        else Check("bubblewrap", False, "not installed", status.fix, required=True)
    )
    userns = Check(
        "user namespaces",
        status.usable,
        "bwrap builds the sandbox" if status.usable else status.reason,
        "" if status.usable else status.fix,
        required=True,
    )
    return [
        bwrap,
        userns,
        _program("prlimit", "prlimit", "apt-get install -y util-linux", "--version"),
        _cgroups(),
        _program("node", "node", "apt-get install -y nodejs", "--version"),
        _uv(),
        _program(
            "nix", "nix", "apt-get install -y nix-bin (needed for --runtime nix)", "--version"
        ),
    ]


def format_report(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        mark = "ok  " if check.ok else ("FAIL" if check.required else "miss")
        lines.append(f"[{mark}] {check.name}: {check.detail}")
        if check.fix:
            lines.append(f"       fix: {check.fix}")
    usable = all(c.ok for c in checks if c.required)
    lines.append(
        "sandbox: usable"
        if usable
        else "sandbox: UNUSABLE — runs go unsandboxed under "
        "--isolate auto and fail under --isolate bwrap"
    )
    return "\n".join(lines)
