"""A sandbox policy is a plain value; `build_bwrap_command` turns it into argv.

Nothing here spawns or touches the filesystem except `system_mounts`, which
looks at what the host has; the argv builder is a pure function.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MountKind = Literal["ro", "rw", "tmpfs", "mask-file", "mask-dir", "symlink", "dir"]
# none: loopback only; user: a namespace of its own wired out by pasta; host: the host's.
NetworkMode = Literal["none", "user", "host"]

# Read-only system trees; on merged-/usr hosts some are symlinks into /usr.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# /etc files a program needs to start (the dynamic loader, alternatives symlinks).
SYSTEM_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives")
# What DNS and TLS need, granted with the network.
NETWORK_ETC = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
)
SANDBOX_UID = 65534


@dataclass(frozen=True)
class Mount:
    """One filesystem operation, applied in order after the baseline."""

    kind: MountKind
    dest: str
    source: str = ""
    size: int | None = None  # tmpfs size in bytes


@dataclass(frozen=True)
class SandboxPolicy:
    """Everything bwrap needs to know about one run."""

    network: NetworkMode
    mounts: tuple[Mount, ...]
    cwd: str
    tmp_size: int = 256 << 20
    hostname: str = "sandbox"
    seccomp_fd: int | None = None  # an open descriptor holding the BPF filter
    env: tuple[tuple[str, str], ...] = ()  # the program's whole environment
    unset: tuple[str, ...] = ()  # the launchers' variables the program must not get
    # bwrap reports its sandbox on the first and waits on the second (user networking).
    network_fds: tuple[int, int] | None = None
    info_fd: int | None = None  # without user networking: bwrap reports its sandbox here


def system_mounts(network: bool) -> list[Mount]:
    """Read-only system directories and the few /etc files programs need."""
    mounts: list[Mount] = []
    for directory in SYSTEM_DIRS:
        path = Path(directory)
        if path.is_symlink():
            mounts.append(Mount("symlink", directory, os.readlink(path)))
        elif path.is_dir():
            mounts.append(Mount("ro", directory, directory))
    for name in (*SYSTEM_ETC, *(NETWORK_ETC if network else ())):
        if os.path.lexists(name):
            mounts.append(Mount("ro", name, os.path.realpath(name)))
    return mounts + procfs_mounts()


def procfs_mounts() -> list[Mount]:
    """/proc entries open only to their owner, whom the sandbox's uid maps to:
    read-only where they may be written, hidden where they may be read."""
    from .procfs import procfs_cover  # here, so the policy module's imports stay as they are

    cover = procfs_cover()
    mounts = [Mount("ro", path, path) for path in cover.read_only]
    mounts += [Mount("mask-file", path) for path in cover.files]
    return mounts + [Mount("mask-dir", path) for path in cover.dirs]


def build_bwrap_command(policy: SandboxPolicy, bwrap: str = "bwrap") -> list[str]:
    """The bwrap argv prefix for `policy`; the program's own argv follows it."""
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        *(["--share-net"] if policy.network == "host" else []),
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--hostname",
        policy.hostname,
        "--proc",
        "/proc",
        # Run with host root's uid mapped in, these would be writable: cover them.
        "--ro-bind",
        "/proc/sys",
        "/proc/sys",
        "--dev",
        "/dev",
        # Every writable tmpfs has a size, or writing to it is a memory bomb.
        "--size",
        str(policy.tmp_size),
        "--tmpfs",
        "/dev/shm",
        "--size",
        str(policy.tmp_size),
        "--tmpfs",
        "/tmp",
    ]
    for mount in policy.mounts:
        argv += _mount_args(mount)
    # The root and /dev are bwrap's own tmpfs: read-only once everything is mounted.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    if policy.seccomp_fd is not None:
        argv += ["--seccomp", str(policy.seccomp_fd)]
    if policy.network_fds is not None:
        info, block = policy.network_fds
        argv += ["--info-fd", str(info), "--block-fd", str(block)]
    elif policy.info_fd is not None:
        argv += ["--info-fd", str(policy.info_fd)]
    for name in policy.unset:
        argv += ["--unsetenv", name]
    for name, value in policy.env:
        argv += ["--setenv", name, value]
    argv += ["--chdir", policy.cwd, "--"]
    return argv


def _mount_args(mount: Mount) -> list[str]:
    if mount.kind == "ro":
        return ["--ro-bind", mount.source, mount.dest]
    if mount.kind == "rw":
        return ["--bind", mount.source, mount.dest]
    if mount.kind == "symlink":
        return ["--symlink", mount.source, mount.dest]
    if mount.kind == "dir":
        return ["--dir", mount.dest]
    if mount.kind == "tmpfs":
        size = ["--size", str(mount.size)] if mount.size is not None else []
        return [*size, "--tmpfs", mount.dest]
    if mount.kind == "mask-file":
        return ["--ro-bind", "/dev/null", mount.dest]
    # mask-dir: an empty, read-only directory over the original.
    return ["--tmpfs", mount.dest, "--remount-ro", mount.dest]


def covers(paths: Sequence[str], candidate: str) -> bool:
    """True if `candidate` lies in (or is) one of `paths`."""
    return any(candidate == p or candidate.startswith(p.rstrip("/") + "/") for p in paths)
