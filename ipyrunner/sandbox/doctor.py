"""`python -m ipyrunner doctor`: what this host supports, and how to fix the rest."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from ..config import settings
from ..environment import MINIMAL_PATH, find_program
from ..errors import RuntimeUnavailable, SandboxUnavailable
from ..process import Limits, run_process
from .cgroups import create_run_cgroup, hierarchies
from .memory import NODE_ADDRESS_SPACE, plan_memory, size
from .network import TUN_FIX, find_tools
from .overlay import FIX, check_overlay, staging_area
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


def _memory_limit() -> Check:
    """Which mechanism holds IPyRunner.memory for a run here."""

    config = settings()
    if not config.memory:
        return Check("memory limit", True, "none (IPyRunner.memory = 0)")
    run = create_run_cgroup(processes=None, memory=config.memory)
    held = run.memory_held_by if run is not None else None
    if run is not None:
        run.close()
    if held == "cgroup":
        return Check("memory limit", True, "the run's memory cgroup (counts what is used)")
    if held == "user-scope":
        return Check("memory limit", True, "a user systemd scope (systemd-run --user, MemoryMax)")
    fix = (
        "for a limit on what runs use (not reserve) and one per run, not per process: "
        "delegate a cgroup v2 subtree (systemd-run --user --scope -p Delegate=yes jupyter lab) "
        "or run the kernel as root"
    )
    tmpfs = 2 * config.tmp_size
    try:
        space = plan_memory(config.memory, None, "", tmpfs).address_space or 0
    except SandboxUnavailable as exc:
        return Check("memory limit", False, f"refused: {exc}", fix)
    floor = size(NODE_ADDRESS_SPACE)
    node = "" if space >= NODE_ADDRESS_SPACE else f"; node runs refused (node needs {floor})"
    detail = (
        f"RLIMIT_AS {size(space)} per process (IPyRunner.memory less /tmp and /dev/shm), "
        f"reserved address space counts{node}"
    )
    return Check("memory limit", True, detail, fix)


def _network() -> Check:
    """The backend of the `network` effect: pasta, and the tun device it needs."""

    try:
        tools = find_tools()
    except SandboxUnavailable as exc:
        detail, _, fix = str(exc).partition("; fix: ")
        return Check("network backend", False, detail, fix)
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
    except OSError as exc:
        return Check("network backend", False, f"/dev/net/tun: {exc.strerror}", TUN_FIX)
    version = _version(tools.pasta, "--version")
    return Check("network backend", True, f"pasta {tools.pasta} ({version}), /dev/net/tun usable")


def _writable_grants() -> Check:
    """Whether an fs-write tree can be an overlay here (its writes committed after the run)."""
    try:
        with tempfile.TemporaryDirectory() as tree:
            area = staging_area(tree, settings().write_staging, ())
            check_overlay(area)
    except (SandboxUnavailable, OSError) as exc:
        return Check("writable grants", False, str(exc), FIX)
    return Check("writable grants", True, f"overlayfs in a user namespace, staging in {area}")


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
        _memory_limit(),
        _writable_grants(),
        _network(),
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
