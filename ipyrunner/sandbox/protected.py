"""The protected set, defined once: what no sandbox may read, write or create.

Protected are secrets (`.env`, `.env.*`), git metadata recognised by content
(a `.git` of any kind, and any directory git would open as a repository), the
files host tools execute or trust (shell start-up files, `.gitconfig`,
`.envrc`, editor and agent configuration, `.ssh`, `.aws`), host sockets, and
trees whose identity the caller names (Jupyter's runtime directory, ipyrunner's
staging area). `find_protected` walks a granted tree for them before a run;
`refusal` says, for one entry a run wrote, why it may not land on the host.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import SandboxUnavailable

PROTECTED_NAMES = frozenset(
    {
        ".env",
        ".git",
        ".gitconfig",
        ".gitmodules",
        ".envrc",
        ".bashrc",
        ".bash_profile",
        ".bash_login",
        ".bash_logout",
        ".profile",
        ".zshrc",
        ".zprofile",
        ".zshenv",
        ".zlogin",
        ".vscode",
        ".idea",
        ".mcp.json",
        ".claude",
        ".codex",
        ".ripgreprc",
        ".ssh",
        ".aws",
    }
)
# What git needs to see in a directory to open it as a repository (setup.c's
# is_git_directory): HEAD, objects/ and refs/, or a commondir pointing at them.
REPOSITORY_MARKERS = frozenset({"HEAD", "objects", "refs", "commondir"})


def is_protected_name(name: str) -> bool:
    return name in PROTECTED_NAMES or name.startswith(".env.")


def looks_like_repository(names: Iterable[str]) -> bool:
    """True if a directory holding `names` is one git would open."""
    present = set(names)
    return "HEAD" in present and ("commondir" in present or {"objects", "refs"} <= present)


@dataclass(frozen=True)
class Protected:
    """What one granted tree holds that the sandbox must not see."""

    files: tuple[str, ...] = ()  # masked with an unreadable device node
    dirs: tuple[str, ...] = ()  # masked with an empty read-only directory

    def __add__(self, other: Protected) -> Protected:
        return Protected(
            tuple(sorted({*self.files, *other.files})), tuple(sorted({*self.dirs, *other.dirs}))
        )


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def find_protected(root: str, hidden: Iterable[tuple[int, int]] = ()) -> Protected:
    """Every protected entry in `root`, walked without recursion or limits.

    `hidden` holds (device, inode) pairs of directories to mask wherever they
    appear. A directory that cannot be listed is masked whole (what it holds
    cannot be known), and a link named like a secret is masked at its real
    target when that lies in `root`. Nothing is skipped by name.
    """
    root = os.path.realpath(root)
    identities = set(hidden)
    files: set[str] = set()
    dirs: set[str] = set()
    if not os.path.isdir(root):
        if is_protected_name(os.path.basename(root)):
            files.add(root)
        return Protected(tuple(files))
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except PermissionError:
            dirs.add(directory)
            continue
        except OSError as exc:
            raise SandboxUnavailable(
                f"cannot check {directory} for protected files ({exc.strerror}); "
                "grant a smaller sub-path (fs-read:PATH / fs-write:PATH)"
            ) from None
        if looks_like_repository(entry.name for entry in entries):
            dirs.add(directory)
            continue
        for entry in entries:
            _classify(entry, root, identities, files, dirs, pending)
    return Protected(tuple(sorted(files)), tuple(sorted(dirs)))


def _classify(
    entry: os.DirEntry[str],
    root: str,
    identities: set[tuple[int, int]],
    files: set[str],
    dirs: set[str],
    pending: list[str],
) -> None:
    info = entry.stat(follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        if is_protected_name(entry.name):
            real = os.path.realpath(entry.path)
            if _inside(real, root) and os.path.exists(real):
                (dirs if os.path.isdir(real) else files).add(real)
        return
    if stat.S_ISDIR(info.st_mode):
        if is_protected_name(entry.name) or (info.st_dev, info.st_ino) in identities:
            dirs.add(entry.path)
        else:
            pending.append(entry.path)
    elif is_protected_name(entry.name) or stat.S_ISSOCK(info.st_mode):
        # A socket of a host service: a read-only mount would not stop connect().
        files.add(entry.path)


def refusal(name: str, info: os.stat_result) -> str | None:
    """Why an entry a run wrote must not be committed, or None if it may."""
    mode = info.st_mode
    if is_protected_name(name):
        return "a protected name"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "a fifo or socket"
    if mode & (stat.S_ISUID | stat.S_ISGID) and not stat.S_ISDIR(mode):
        return "set-user-ID or set-group-ID"
    return None


def identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)
