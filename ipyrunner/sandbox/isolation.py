"""From what a run needs to the argv that runs it: sandboxed or not, limited.

`isolate()` resolves the effects against the project, builds the policy,
decides between bwrap and no sandbox by the isolation mode, creates the run's
cgroup and its write layers, and yields the full argv. The caller hands that
argv to `run_process`; when the run is over, its writes are committed.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ISOLATION_MODES, settings
from ..effects import Effects
from ..environment import PrivateDirs, find_program
from ..errors import InvalidOption, SandboxUnavailable
from ..process import ChannelSpec, Completed, StartupHook, run_process
from ..runtimes.trusted import trusted_host_paths
from ..sinks import Sink
from .cgroups import RunCgroup, create_run_cgroup
from .commit import Refused, commit, kernel_import_dirs
from .grants import Grants, protect, resolve_grants
from .limits import ResourceLimits, bwrap_returncode, launcher_argv, limit_hit
from .network import UserNetwork, network_mode, resolver_mounts, user_network
from .overlay import (
    FAILURE_MARK,
    FIX,
    LAUNCHER_ENV,
    WriteLayer,
    mount_argv,
    write_layers,
)
from .policy import SANDBOX_UID, Mount, SandboxPolicy, build_bwrap_command, covers, system_mounts
from .probe import bwrap_status
from .protected import Protected
from .seccomp import host_filter
from .watch import SandboxWatch, sandbox_watch

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
    env: Mapping[str, str] = field(default_factory=dict)  # what run_process gives the argv
    pass_fds: tuple[int, ...] = ()
    startup: StartupHook | None = None  # a `network` run's pasta, attached as bwrap starts
    refused: list[Refused] = field(default_factory=list)  # writes the commit refused

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
    refused: tuple[Refused, ...] = ()


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
        needs,
        options.isolate,
        options.require_sandbox,
        options.resources,
        options.tmp_size,
        staging=options.staging,
    ) as isolated:
        done = run_process(
            isolated.argv,
            env=isolated.env,
            cwd=isolated.cwd,
            limits=options.limits,
            stdin=stdin,
            sink=sink,
            channel=channel,
            cancel=cancel,
            pass_fds=isolated.pass_fds,
            startup=isolated.startup,
        )
        if isolated.sandboxed:
            done = replace(done, returncode=bwrap_returncode(done.returncode))
        limit = isolated.limit_hit(done.returncode, done.stderr)
    _check_launched(done.stderr)
    if isolated.refused:
        notice = refusal_notice(isolated.refused)
        sink.write("stderr", notice)
        done = replace(done, stderr=done.stderr + notice)
    return Attempted(done, isolated.isolation, limit, tuple(isolated.refused))


def refusal_notice(refused: Sequence[Refused]) -> str:
    shown = ", ".join(map(str, refused[:20]))
    more = f" and {len(refused) - 20} more" if len(refused) > 20 else ""
    return f"\nipyrunner: kept off the host, as runs may not write them: {shown}{more}\n"


def _check_launched(stderr: str) -> None:
    # The overlay launcher failed before the sandbox existed: nothing of the program ran.
    for line in stderr.splitlines()[:5]:
        if line.startswith(FAILURE_MARK):
            raise SandboxUnavailable(f"{line.removeprefix(FAILURE_MARK).strip()}; fix: {FIX}")


@contextlib.contextmanager
def isolate(
    needs: RunNeeds,
    mode: str,
    require_sandbox: bool,
    limits: ResourceLimits,
    tmp_size: int,
    *,
    staging: str = "",
) -> Iterator[Isolated]:
    """The argv for `needs` under the isolation `mode`, with its cgroup alive;
    afterwards (whatever ended the run) its writes are committed."""
    isolation = choose_isolation(mode, require_sandbox)
    grants = resolve_grants(needs.effects, needs.project)
    if isolation != "bwrap":
        with _unsandboxed(needs, grants, isolation, limits) as bare:
            yield bare
        return
    trees = (*grants.read, *grants.write)
    with (
        write_layers(grants.write, staging, trees) as layers,
        _descriptors() as fds,
        user_network(needs.effects, needs.dirs.root) as network,
        sandbox_watch() as plain,
    ):
        readonly = _readonly_paths(needs)
        policy = build_policy(needs, grants, tmp_size, protect(trees), fds.seccomp, readonly)
        if network is not None:
            policy = replace(policy, network_fds=network.pass_fds)
        else:
            policy = replace(policy, info_fd=plain.info_write)
        watch: UserNetwork | SandboxWatch = network if network is not None else plain
        command = build_bwrap_command(policy, bwrap_status().path or "bwrap")
        args_fd = fds.arguments(command[1:-1])
        cgroup = create_run_cgroup(limits.processes, limits.memory)
        isolated: Isolated | None = None
        try:
            launch = _launchers(needs, limits, cgroup, layers, tmp_size)
            isolated = Isolated(
                [*launch, command[0], "--args", str(args_fd), "--", *needs.argv],
                "/",
                "bwrap",
                limits,
                cgroup,
                env=LAUNCHER_ENV,
                pass_fds=(*fds.passed, *watch.pass_fds),
                startup=watch,
            )
            yield isolated
        finally:
            # Every process of the run is gone before its writes are looked at.
            if cgroup is not None:
                cgroup.close()
            watch.wait_gone()
            if isolated is not None and layers:  # the run may have written: commit what it did
                imports = kernel_import_dirs()
                for layer in layers:
                    isolated.refused += commit(layer, readonly, imports).refused


def _launchers(
    needs: RunNeeds,
    limits: ResourceLimits,
    cgroup: RunCgroup | None,
    layers: Sequence[WriteLayer],
    tmp_size: int,
) -> list[str]:
    """What runs on the host before bwrap: the limits, then the overlays' mounts."""
    return [*_limits_prefix(limits, cgroup, needs.argv[0], 2 * tmp_size), *mount_argv(layers)]


@contextlib.contextmanager
def _unsandboxed(
    needs: RunNeeds, grants: Grants, isolation: str, limits: ResourceLimits
) -> Iterator[Isolated]:
    cgroup = create_run_cgroup(limits.processes, limits.memory)
    try:
        argv = [*_limits_prefix(limits, cgroup, needs.argv[0]), *needs.argv]
        yield Isolated(argv, str(_cwd(needs, grants)), isolation, limits, cgroup, env=needs.env)
    finally:
        if cgroup is not None:
            cgroup.close()


def _limits_prefix(
    limits: ResourceLimits, cgroup: RunCgroup | None, program: str, tmpfs: int = 0
) -> list[str]:
    # `tmpfs`: what the sandbox's /tmp and /dev/shm may hold, memory the limit must cover.
    prlimit = find_program("prlimit") or "prlimit"
    return launcher_argv(limits, cgroup, prlimit, program, tmpfs)


class _Descriptors:
    """Descriptors bwrap reads: the seccomp filter and its own arguments."""

    def __init__(self) -> None:
        self.opened: list[int] = []
        program = host_filter()
        self.seccomp = self._memfd("ipyrunner-seccomp", program) if program else None

    def _memfd(self, name: str, data: bytes) -> int:
        fd = os.memfd_create(name, 0)
        self.opened.append(fd)
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def arguments(self, args: Sequence[str]) -> int:
        # Through a descriptor: no argv length limit, and forwarded values stay
        # out of /proc/PID/cmdline, which every user of the host can read.
        return self._memfd("ipyrunner-bwrap-args", b"".join(a.encode() + b"\0" for a in args))

    @property
    def passed(self) -> tuple[int, ...]:
        return tuple(self.opened)


@contextlib.contextmanager
def _descriptors() -> Iterator[_Descriptors]:
    fds = _Descriptors()
    try:
        yield fds
    finally:
        for fd in fds.opened:
            os.close(fd)


def _readonly_paths(needs: RunNeeds) -> tuple[str, ...]:
    """What no run may change: its runtime, its own files, and every interpreter
    ipyrunner itself runs on the host."""
    paths = {*needs.runtime_paths, *needs.readable, *trusted_host_paths(settings())}
    return tuple(sorted(p for p in paths if os.path.exists(p)))


def build_policy(
    needs: RunNeeds,
    grants: Grants,
    tmp_size: int,
    protected: Protected | None = None,
    seccomp_fd: int | None = None,
    readonly: Sequence[str] = (),
) -> SandboxPolicy:
    trees = (*grants.read, *grants.write)
    mounts = system_mounts(network_mode(needs.effects) != "none")
    mounts += resolver_mounts(network_mode(needs.effects), needs.dirs.root)
    mounts += _identity_files(needs.dirs)
    mounts += [Mount("dir", str(d)) for d in (needs.dirs.home, needs.dirs.tmp, needs.dirs.work)]
    mounts += [Mount("ro", p, p) for p in grants.read]
    mounts += [Mount("rw", p, p) for p in grants.write]
    # The runtime, the program's own files and the host's interpreters stay
    # read-only even inside a writable grant (a venv inside the project, say).
    paths = {*needs.runtime_paths, *needs.readable, *readonly}
    mounts += [Mount("ro", p, p) for p in sorted(paths) if os.path.exists(p)]
    found = protected if protected is not None else protect(trees)
    mounts += [Mount("mask-file", f) for f in found.files]
    mounts += [Mount("mask-dir", d) for d in found.dirs]
    _check_no_links(mounts, trees)
    return SandboxPolicy(
        network=network_mode(needs.effects),
        mounts=tuple(mounts),
        cwd=str(_cwd(needs, grants)),
        tmp_size=tmp_size,
        seccomp_fd=seccomp_fd,
        env=tuple(sorted(needs.env.items())),
        unset=tuple(sorted(set(LAUNCHER_ENV) - set(needs.env))),
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
