"""From what a run needs to the argv that runs it: sandboxed or not, limited.

`isolate()` resolves the effects against the project, builds the policy,
decides between bwrap and no sandbox by the isolation mode, creates the run's
cgroup, and yields the full argv. The caller hands that argv to `run_process`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ISOLATION_MODES
from ..effects import Effects
from ..environment import PrivateDirs, find_program
from ..errors import InvalidOption, SandboxUnavailable
from ..paths import resolve_in_project
from ..process import ChannelSpec, Completed, run_process
from ..sinks import Sink
from .cgroups import RunCgroup, create_run_cgroup
from .limits import ResourceLimits, bwrap_returncode, launcher_argv, limit_hit
from .policy import SANDBOX_UID, Mount, SandboxPolicy, build_bwrap_command, covers, system_mounts
from .probe import bwrap_status
from .seccomp import host_filter
from .secrets import Secrets, find_secrets, remove_planted

if TYPE_CHECKING:
    from ..options import RunOptions


@dataclass(frozen=True)
class RunNeeds:
    """What one run needs from its surroundings."""

    argv: Sequence[str]
    env: Mapping[str, str]
    project: Path
    dirs: PrivateDirs
    effects: Effects
    runtime_paths: Sequence[str] = ()
    readable: Sequence[str] = ()  # files or trees the program itself needs (a script)
    cwd: Path | None = None  # None: the project if granted, else the private workdir


@dataclass
class Isolated:
    """The argv to spawn, where, and what to ask afterwards."""

    argv: list[str]
    cwd: str
    isolation: str  # bwrap, none (opted out), unavailable (auto without bwrap)
    limits: ResourceLimits
    cgroup: RunCgroup | None
    pass_fds: tuple[int, ...] = ()
    removed: list[str] = field(default_factory=list)  # secret-named files the run planted

    @property
    def sandboxed(self) -> bool:
        return self.isolation == "bwrap"

    def limit_hit(self, returncode: int, stderr: str) -> str | None:
        oom = self.cgroup is not None and self.cgroup.oom_killed()
        return limit_hit(returncode, stderr, oom, self.limits)


def choose_isolation(mode: str, require_sandbox: bool) -> str:
    """bwrap, none or unavailable; raises where the settings forbid the outcome."""
    if mode not in ISOLATION_MODES:
        raise InvalidOption(f"invalid --isolate {mode!r}: use auto, bwrap or none")
    if mode == "none":
        if require_sandbox:
            raise SandboxUnavailable(
                "--isolate none was asked for, but IPyRunner.require_sandbox is set; "
                "drop --isolate none or unset require_sandbox"
            )
        return "none"
    status = bwrap_status()
    if status.usable:
        return "bwrap"
    if mode == "bwrap" or require_sandbox:
        raise SandboxUnavailable(f"bubblewrap is unusable here: {status.reason}; fix: {status.fix}")
    return "unavailable"


@dataclass(frozen=True)
class Attempted:
    """One attempt's process record, how it was isolated, and which limit ended it."""

    done: Completed
    isolation: str
    limit: str | None


def run_isolated(
    needs: RunNeeds,
    options: RunOptions,
    *,
    sink: Sink,
    stdin: bytes | None = None,
    channel: ChannelSpec | None = None,
    cancel: threading.Event | None = None,
) -> Attempted:
    """Run `needs` once, isolated and limited as `options` say."""
    with isolate(
        needs, options.isolate, options.require_sandbox, options.resources, options.tmp_size
    ) as isolated:
        done = run_process(
            isolated.argv,
            env=needs.env,
            cwd=isolated.cwd,
            limits=options.limits,
            stdin=stdin,
            sink=sink,
            channel=channel,
            cancel=cancel,
            pass_fds=isolated.pass_fds,
        )
        if isolated.sandboxed:
            done = replace(done, returncode=bwrap_returncode(done.returncode))
        limit = isolated.limit_hit(done.returncode, done.stderr)
    if isolated.removed:
        notice = (
            "\nipyrunner: removed what the run created where the sandbox may not write "
            f"(.env files, .git): {', '.join(isolated.removed)}\n"
        )
        sink.write("stderr", notice)
        done = replace(done, stderr=done.stderr + notice)
    return Attempted(done, isolated.isolation, limit)


@contextlib.contextmanager
def isolate(
    needs: RunNeeds, mode: str, require_sandbox: bool, limits: ResourceLimits, tmp_size: int
) -> Iterator[Isolated]:
    """The argv for `needs` under the isolation `mode`, with its cgroup alive;
    afterwards, what the run planted under secret names is removed."""
    isolation = choose_isolation(mode, require_sandbox)
    grants = resolve_grants(needs.effects, needs.project)
    cgroup = create_run_cgroup(limits.processes, limits.memory)
    seccomp_fd: int | None = None
    written: list[Secrets] = []
    try:
        prlimit = find_program("prlimit") or "prlimit"
        prefix = launcher_argv(limits, cgroup.procs_files if cgroup else [], prlimit)
        if isolation == "bwrap":
            secrets = {tree: find_secrets(tree) for tree in (*grants.read, *grants.write)}
            written = [secrets[tree] for tree in grants.write]
            seccomp_fd = _seccomp_descriptor(needs.dirs)
            policy = build_policy(needs, grants, tmp_size, secrets, seccomp_fd)
            status = bwrap_status()
            argv = [*prefix, *build_bwrap_command(policy, status.path or "bwrap"), *needs.argv]
            cwd = "/"
        else:
            argv = [*prefix, *needs.argv]
            cwd = str(_cwd(needs, grants))
        fds = (seccomp_fd,) if seccomp_fd is not None else ()
        isolated = Isolated(argv, cwd, isolation, limits, cgroup, fds)
        yield isolated
        if written:
            isolated.removed += remove_planted(written, grants.write)
    finally:
        if cgroup is not None:
            cgroup.close()
        if seccomp_fd is not None:
            os.close(seccomp_fd)


def _seccomp_descriptor(dirs: PrivateDirs) -> int | None:
    program = host_filter()
    if program is None:
        return None
    path = dirs.root / "seccomp.bpf"
    path.write_bytes(program)
    fd = os.open(path, os.O_RDONLY)
    os.set_inheritable(fd, True)
    return fd


@dataclass(frozen=True)
class Grants:
    read: tuple[str, ...]
    write: tuple[str, ...]


def resolve_grants(effects: Effects, project: Path) -> Grants:
    """The effects' paths, through the one safe resolver; each must exist."""

    def resolve(relative: str, name: str) -> str:
        target = resolve_in_project(relative, project) if relative else project.resolve()
        if not target.exists():
            raise InvalidOption(
                f"effect {name}:{relative}: no such path in the project directory {project}"
            )
        return str(target)

    return Grants(
        tuple(resolve(p, "fs-read") for p in effects.read),
        tuple(resolve(p, "fs-write") for p in effects.write),
    )


def build_policy(
    needs: RunNeeds,
    grants: Grants,
    tmp_size: int,
    secrets: dict[str, Secrets] | None = None,
    seccomp_fd: int | None = None,
) -> SandboxPolicy:
    mounts = system_mounts(needs.effects.network)
    mounts += _identity_files(needs.dirs)
    mounts += [Mount("dir", str(d)) for d in (needs.dirs.home, needs.dirs.tmp, needs.dirs.work)]
    mounts += [Mount("ro", p, p) for p in grants.read]
    mounts += [Mount("rw", p, p) for p in grants.write]
    # The runtime and the program's own files stay read-only even inside a
    # writable grant (a venv inside the project, say).
    mounts += [Mount("ro", p, p) for p in needs.runtime_paths if os.path.exists(p)]
    mounts += [Mount("ro", p, p) for p in needs.readable]
    for tree in (*grants.read, *grants.write):
        found = secrets[tree] if secrets is not None else find_secrets(tree)
        mounts += found.mounts()
    _check_no_links(mounts, (*grants.read, *grants.write))
    return SandboxPolicy(
        network=needs.effects.network,
        mounts=tuple(mounts),
        cwd=str(_cwd(needs, grants)),
        tmp_size=tmp_size,
        seccomp_fd=seccomp_fd,
    )


def _check_no_links(mounts: list[Mount], trees: Sequence[str]) -> None:
    # Inside a granted tree the sandbox could have planted a link; a mount whose
    # destination goes through one would land wherever the link points.
    for mount in mounts:
        if mount.kind == "symlink" or not covers(trees, mount.dest):
            continue
        if os.path.realpath(mount.dest) != mount.dest:
            raise SandboxUnavailable(
                f"{mount.dest} goes through a symbolic link inside a granted tree; "
                "remove the link or grant a path without it"
            )


def _cwd(needs: RunNeeds, grants: Grants) -> Path:
    if needs.cwd is not None:
        return needs.cwd
    root = str(needs.project.resolve())
    return needs.project if covers((*grants.read, *grants.write), root) else needs.dirs.work


def _identity_files(dirs: PrivateDirs) -> list[Mount]:
    """A passwd and group naming only the sandbox user: the host's stay hidden."""
    etc = dirs.root / "etc"
    etc.mkdir(exist_ok=True)
    uid = SANDBOX_UID
    (etc / "passwd").write_text(f"sandbox:x:{uid}:{uid}:sandbox:{dirs.home}:/bin/sh\n")
    (etc / "group").write_text(f"sandbox:x:{uid}:\n")
    return [
        Mount("ro", "/etc/passwd", str(etc / "passwd")),
        Mount("ro", "/etc/group", str(etc / "group")),
    ]
