"""What a warm worker puts back after each call: its private directories as
the import left them (kept in memory), no System V IPC object, and a check
that a call left the worker's own limits alone. Standalone, like python_stage.py.
"""

from __future__ import annotations

import os
import stat

# What the import left in the private directories is kept in memory, to put back.
MAX_SNAPSHOT = 16 << 20
IPC_RMID = 0
_RLIMITS: list[int] = []


class Pristine:
    """The state each call starts from: the private directories as the import
    left them, this process's own limits, no IPC objects."""

    def __init__(self, roots: list[str]) -> None:
        self.cwd = os.getcwd()
        self.roots = [r for r in roots if not any(r != o and r.startswith(o + "/") for o in roots)]
        self.entries: dict[str, tuple[str, int, bytes]] = {}  # path: (kind, mode, data)
        self.children: dict[str, list[str]] = {}
        self.devices: dict[str, int] = {}
        self.size = 0
        for root in self.roots:
            self.devices[root] = os.lstat(root).st_dev
            self._take(root, self.devices[root])
        self.limits = _own_limits()

    def _take(self, path: str, device: int) -> None:
        info = os.lstat(path)
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            self.entries[path] = ("d", mode, b"")
            self.children[path] = []
            for entry in sorted(os.listdir(path)):
                child = os.path.join(path, entry)
                if os.lstat(child).st_dev == device:  # a mount point is never touched
                    self.children[path].append(child)
                    self._take(child, device)
        elif stat.S_ISLNK(info.st_mode):
            self.entries[path] = ("l", mode, os.fsencode(os.readlink(path)))
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_SNAPSHOT + 1)
            self.size += len(data)
            self.entries[path] = ("f", mode, data)

    def unusable(self) -> str:
        """Why calls cannot start from this state, if they cannot."""
        if self.size > MAX_SNAPSHOT:
            return f"the module code left over {MAX_SNAPSHOT >> 20} MiB of files"
        return ""

    def changed(self) -> bool:
        """True if a call changed what it could of this process (its limits)."""
        return _own_limits() != self.limits

    def restore(self) -> None:
        for root in self.roots:
            self._restore(root, self.devices[root])
        _remove_ipc()

    def _restore(self, path: str, device: int) -> None:
        _writable(path)
        wanted = set(self.children[path])
        with os.scandir(path) as found:
            entries = list(found)
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            if info.st_dev != device:
                continue
            known = self.entries.get(entry.path, ("", 0, b""))
            if entry.path in wanted and known[0] == "d" and stat.S_ISDIR(info.st_mode):
                self._restore(entry.path, device)
                wanted.discard(entry.path)
            else:
                _remove(entry.path, info)
        for child in sorted(wanted):
            self._create(child)
        if stat.S_IMODE(os.lstat(path).st_mode) != self.entries[path][1]:
            os.chmod(path, self.entries[path][1])

    def _create(self, path: str) -> None:
        kind, mode, data = self.entries[path]
        if kind == "l":
            os.symlink(os.fsdecode(data), path)
            return
        if kind == "d":
            os.mkdir(path, 0o700)
            for child in self.children[path]:
                self._create(child)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with open(fd, "wb") as handle:
                handle.write(data)
        os.chmod(path, mode)


def _writable(path: str) -> None:
    # A call may have made its own directories unreadable; this process owns them too.
    if stat.S_IMODE(os.lstat(path).st_mode) & 0o700 != 0o700:
        os.chmod(path, 0o700)


def _remove(path: str, info: os.stat_result) -> None:
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
        return
    _writable(path)
    with os.scandir(path) as found:
        entries = list(found)
    for entry in entries:
        _remove(entry.path, entry.stat(follow_symlinks=False))
    os.rmdir(path)


def _own_limits() -> list[object]:
    import resource

    if not _RLIMITS:
        _RLIMITS.extend(getattr(resource, n) for n in sorted(dir(resource)) if n[:7] == "RLIMIT_")
    limits: list[object] = [resource.getrlimit(kind) for kind in _RLIMITS]
    return [*limits, os.getpriority(os.PRIO_PROCESS, 0)]


def _ipc_ids() -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for kind in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{kind}") as handle:
                rows = handle.read().splitlines()[1:]
        except FileNotFoundError:  # a kernel without System V IPC
            continue
        found[kind] = [int(row.split()[1]) for row in rows if row.strip()]
    return found


def _remove_ipc() -> None:
    # The IPC namespace is the sandbox's, so it outlives a call: what a call made goes.
    leftover = {kind: ids for kind, ids in _ipc_ids().items() if ids}
    if not leftover:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for kind, ids in leftover.items():
        for ident in ids:
            if kind == "sem":
                done = libc.semctl(ident, 0, IPC_RMID)
            else:
                done = getattr(libc, f"{kind}ctl")(ident, IPC_RMID, None)
            if done != 0:
                raise OSError(ctypes.get_errno(), f"cannot remove System V {kind} {ident}")


def private_roots() -> list[str]:
    """/tmp, /dev/shm, HOME, TMPDIR and the working directory."""
    paths = ["/tmp", "/dev/shm", os.environ.get("HOME", ""), os.environ.get("TMPDIR", "")]
    return [p for p in (*paths, os.getcwd()) if p and os.path.isdir(p)]
