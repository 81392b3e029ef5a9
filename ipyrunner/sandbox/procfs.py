"""What of procfs the sandbox must not read or change.

The sandbox's uid maps to the kernel's: with the kernel running as root, every
/proc entry open only to its owner (root) is open to the sandbox. Which entries
those are is read from the modes in the host's /proc, once per process.
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass
from pathlib import Path

# Per network namespace: a sandbox with a namespace of its own has other entries there.
_PER_NETNS = ("sys/net",)
# The sandbox gets /proc/sys bound read-only already.
_READ_ONLY_ALREADY = ("sys",)


@dataclass(frozen=True)
class ProcfsCover:
    """How to cover one procfs: bind `read_only` entries from the host read-only
    (they hold files only their owner may write), then hide `files` behind
    /dev/null and `dirs` behind an empty directory (only their owner may read them)."""

    read_only: tuple[str, ...]
    files: tuple[str, ...]
    dirs: tuple[str, ...]


@functools.cache
def procfs_cover(root: str = "/proc") -> ProcfsCover:
    """The cover for `root`'s entries that are not a process's: each one whose mode
    gives others no read, or that the host itself has mounted something over."""
    files: list[str] = []
    dirs: list[str] = []
    writable: set[str] = set()
    try:
        device = os.stat(root).st_dev
        top = sorted(os.listdir(root))
    except OSError:
        return ProcfsCover((), (), ())
    pending = [name for name in top if not name.isdigit()]
    while pending:
        relative = pending.pop()
        path = os.path.join(root, relative)
        try:
            info = os.lstat(path)
        except OSError:  # gone meanwhile
            continue
        mode = info.st_mode
        mounted = info.st_dev != device
        # What the host mounts in the read-only /proc/sys (binfmt_misc, often behind an
        # automount) is left as it is: covering it would trigger the automount.
        host_mount_in_sys = mounted and relative.startswith("sys/")
        if stat.S_ISLNK(mode) or relative in _PER_NETNS or host_mount_in_sys:
            continue
        if not mode & stat.S_IROTH or mounted:
            (dirs if stat.S_ISDIR(mode) else files).append(path)
        elif stat.S_ISDIR(mode):
            try:
                pending += [os.path.join(relative, name) for name in os.listdir(path)]
            except OSError:
                dirs.append(path)
        elif mode & stat.S_IWUSR and not mode & stat.S_IWOTH:
            writable.add(Path(relative).parts[0])
    read_only = sorted(os.path.join(root, name) for name in writable - set(_READ_ONLY_ALREADY))
    return ProcfsCover(tuple(read_only), tuple(sorted(files)), tuple(sorted(dirs)))
