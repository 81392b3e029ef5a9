"""What this host supports: is bubblewrap usable, which cgroups can we make."""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass

from ..environment import MINIMAL_PATH, find_program
from ..errors import InterpreterNotFound
from ..process import Limits, run_process
from .policy import SandboxPolicy, build_bwrap_command, system_mounts


@dataclass(frozen=True)
class BwrapStatus:
    path: str | None
    usable: bool
    version: str = ""
    reason: str = ""
    fix: str = ""


def _fix_for(message: str) -> str:
    lowered = message.lower()
    if "no space left" in lowered or "max_user_namespaces" in lowered:
        return "sysctl -w user.max_user_namespaces=15000"
    if "permission" in lowered or "not permitted" in lowered:
        return (
            "allow unprivileged user namespaces: on Ubuntu 24.04 "
            "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (or an AppArmor "
            "profile for bwrap); on older Debian `sysctl -w kernel.unprivileged_userns_clone=1`; "
            "in Docker, run the container with `--security-opt seccomp=unconfined` (Docker's "
            "default seccomp profile refuses new namespaces)"
        )
    return "run `python -m ipyrunner doctor` and check the kernel's user-namespace settings"


@functools.cache
def bwrap_status() -> BwrapStatus:
    """Whether bwrap can build our baseline sandbox here (probed once per process)."""
    path = find_program("bwrap")
    if path is None:
        return BwrapStatus(
            None, False, reason="bwrap is not installed", fix="apt-get install -y bubblewrap"
        )
    with tempfile.TemporaryDirectory(prefix="ipyrunner-probe-") as tmp:
        policy = SandboxPolicy(network="none", mounts=tuple(system_mounts(False)), cwd=tmp)
        argv = [*build_bwrap_command(policy, path), "/bin/true"]
        argv[argv.index("--chdir") + 1] = "/"
        try:
            version = run_process(
                [path, "--version"], env={"PATH": MINIMAL_PATH}, cwd=tmp, limits=Limits(timeout=10)
            ).stdout.strip()
            done = run_process(argv, env={"PATH": MINIMAL_PATH}, cwd=tmp, limits=Limits(timeout=10))
        except InterpreterNotFound as exc:
            return BwrapStatus(path, False, reason=str(exc), fix="apt-get install -y bubblewrap")
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return BwrapStatus(path, False, version, message[0], _fix_for(message[0]))
    return BwrapStatus(path, True, version)
