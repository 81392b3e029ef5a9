"""Commit a run's overlay layer onto the granted tree, through a filter.

Only what the filter allows lands: never a protected name, a directory git
would open as a repository, a link leading out of the tree, a device node, a
fifo or socket, a set-id file, anything inside a read-only tree (an
interpreter's installation), or a module that would shadow an installed one
where the kernel imports from (its working directory); and a deletion never
removes a protected entry.
Every refusal is reported. The walk is iterative and works on directory
descriptors, so no link on the host is followed and no depth breaks it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import importlib.machinery
import os
import stat
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .overlay import WriteLayer
from .protected import is_protected_name, looks_like_repository, refusal

# Two descriptors a level stay open while committing: this bounds them.
MAX_DEPTH = 128
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPAQUE = ("user.overlay.opaque", "trusted.overlay.opaque")


@dataclass(frozen=True)
class Refused:
    """One entry of a run's writes that did not land, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


@dataclass
class CommitReport:
    tree: str
    refused: list[Refused] = field(default_factory=list)
    written: int = 0
    removed: int = 0


@dataclass
class _Frame:
    """A directory being committed: its upper and lower descriptors."""

    upper: int
    lower: int
    rel: str
    names: Iterator[str]
    mode: int | None = None  # applied to the lower directory when done

    def close(self) -> None:
        if self.mode is not None:
            with contextlib.suppress(OSError):
                os.fchmod(self.lower, self.mode)
        os.close(self.upper)
        os.close(self.lower)


def commit(
    layer: WriteLayer, readonly: Sequence[str] = (), import_dirs: Sequence[str] = ()
) -> CommitReport:
    """Move what the run wrote in `layer` onto its tree; report what was refused.

    `import_dirs` are directories the kernel imports from (its working
    directory, on `sys.path` as ''): a module planted there must not shadow
    an installed one."""
    report = CommitReport(layer.tree)
    with _locked(layer):
        upper = os.open(layer.upper, _DIR_FLAGS)
        lower = os.open(layer.tree, _DIR_FLAGS)
        _Committer(layer.tree, tuple(readonly), import_dirs, report).run(upper, lower)
    return report


def kernel_import_dirs() -> list[str]:
    """The directories this process imports from that a run's tree may hold."""
    return [
        os.path.realpath(entry or os.getcwd()) for entry in sys.path if os.path.isdir(entry or ".")
    ]


_MODULE_SUFFIXES = (".py", ".pyc", ".pth", *importlib.machinery.EXTENSION_SUFFIXES)


def module_name(name: str, is_dir: bool) -> str | None:
    """The module an entry of an import directory defines, if it defines one."""
    if is_dir:
        return name if name.isidentifier() else None
    for suffix in _MODULE_SUFFIXES:
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            return stem if stem.isidentifier() else None
    return None


@functools.lru_cache(maxsize=4096)
def shadows_installed(module: str, planted_dir: str) -> bool:
    """True if `module` is importable from somewhere other than `planted_dir`."""
    if module in sys.builtin_module_names or module in sys.stdlib_module_names:
        return True
    elsewhere = [
        p for p in sys.path if p and os.path.realpath(p) != planted_dir and os.path.isdir(p)
    ]
    return importlib.machinery.PathFinder.find_spec(module, elsewhere) is not None


@contextlib.contextmanager
def _locked(layer: WriteLayer) -> Iterator[None]:
    # Commits from one staging area go one after the other, never interleaved
    # (two runs on one tree included); one lock file, so none pile up.
    fd = os.open(
        os.path.join(os.path.dirname(layer.root), "commit.lock"),
        os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
        0o600,
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _is_whiteout(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def _is_opaque(fd: int) -> bool:
    for name in _OPAQUE:
        with contextlib.suppress(OSError):
            if os.getxattr(fd, name) == b"y":
                return True
    return False


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _listdir(fd: int) -> list[str]:
    return os.listdir(fd)


class _Committer:
    def __init__(
        self,
        tree: str,
        readonly: tuple[str, ...],
        import_dirs: Sequence[str],
        report: CommitReport,
    ) -> None:
        self.tree = tree
        self.readonly = readonly
        self.import_dirs = frozenset(os.path.realpath(d) for d in import_dirs)
        self.report = report

    def refuse(self, rel: str, reason: str) -> None:
        self.report.refused.append(Refused(os.path.join(self.tree, rel), reason))

    def run(self, upper: int, lower: int) -> None:
        names = _listdir(upper)
        stack = [_Frame(upper, lower, "", iter(sorted(names)))]
        if _is_opaque(upper):
            self._prune(stack[0], set(names))
        while stack:
            frame = stack[-1]
            name = next(frame.names, None)
            if name is None:
                stack.pop().close()
                continue
            child = self.entry(frame, name, depth=len(stack))
            if child is not None:
                stack.append(child)

    def entry(self, frame: _Frame, name: str, depth: int) -> _Frame | None:
        info = os.stat(name, dir_fd=frame.upper, follow_symlinks=False)
        rel = os.path.join(frame.rel, name)
        if _is_whiteout(info):
            self.remove(frame.lower, name, rel)
            return None
        host = os.path.join(self.tree, rel)
        if any(host == p or host.startswith(p.rstrip("/") + "/") for p in self.readonly):
            self.refuse(rel, "inside an interpreter's installation, which runs may not change")
            return None
        reason = refusal(name, info) or self.shadowing(host, name, info)
        if reason is not None:
            self.refuse(rel, reason)
            return None
        if stat.S_ISDIR(info.st_mode):
            if depth >= MAX_DEPTH:
                self.refuse(rel, f"deeper than {MAX_DEPTH} directories")
                return None
            new = _lstat(name, frame.lower) is None
            if new and self.moved_whole(frame, name, rel, depth, stat.S_IMODE(info.st_mode)):
                return None
            return self.enter(frame, name, rel, info)
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(name, dir_fd=frame.upper)
            if not self.link_stays(rel, target):
                self.refuse(rel, f"a link leading out of the granted tree ({target})")
                return None
        self.replace(frame, name, rel, info)
        return None

    def shadowing(self, host: str, name: str, info: os.stat_result) -> str | None:
        parent = os.path.dirname(host)
        if parent not in self.import_dirs:
            return None
        module = module_name(name, stat.S_ISDIR(info.st_mode))
        if module is None or not shadows_installed(module, parent):
            return None
        return f"would shadow the installed module {module!r} in the kernel"

    def enter(self, frame: _Frame, name: str, rel: str, info: os.stat_result) -> _Frame | None:
        # The run may have left its directories unlistable; they are ours to open.
        os.chmod(name, 0o700, dir_fd=frame.upper)
        upper = os.open(name, _DIR_FLAGS, dir_fd=frame.upper)
        opaque = _is_opaque(upper)
        names = _listdir(upper)
        whiteouts = {
            n for n in names if _is_whiteout(os.stat(n, dir_fd=upper, follow_symlinks=False))
        }
        present = _lstat(name, frame.lower)
        is_dir = present is not None and stat.S_ISDIR(present.st_mode)
        below = set() if opaque or not is_dir else set(self._lower_names(frame.lower, name))
        if looks_like_repository((below | set(names)) - whiteouts):
            os.close(upper)
            self.refuse(rel, "would make a directory git opens as a repository")
            return None
        if present is not None and not is_dir and not self.remove(frame.lower, name, rel):
            os.close(upper)
            return None
        if not is_dir:
            os.mkdir(name, 0o700, dir_fd=frame.lower)
        lower = os.open(name, _DIR_FLAGS, dir_fd=frame.lower)
        child = _Frame(upper, lower, rel, iter(sorted(names)), stat.S_IMODE(info.st_mode) & 0o1777)
        if opaque:
            self._prune(child, set(names))
        return child

    def moved_whole(self, frame: _Frame, name: str, rel: str, depth: int, mode: int) -> bool:
        """A new directory whose every entry may land moves in one rename; on the
        first entry that may not (or any doubt), the walk entry by entry decides."""
        host = os.path.join(self.tree, rel)
        if any(p.startswith(host + "/") for p in (*self.readonly, *self.import_dirs)):
            return False
        modes: list[tuple[str, int]] = []  # directories opened up to be read
        files = 0
        pending = [("", depth + 1)]
        os.chmod(name, 0o700, dir_fd=frame.upper)
        top = os.open(name, _DIR_FLAGS, dir_fd=frame.upper)
        try:
            while pending:
                sub, level = pending.pop()
                fd = os.open(sub or ".", _DIR_FLAGS, dir_fd=top)
                try:
                    found = self._check_listing(fd, sub, rel, level, modes, pending)
                finally:
                    os.close(fd)
                if found is None:
                    return False
                files += found
        except OSError:
            return False
        finally:
            os.close(top)
        os.rename(name, name, src_dir_fd=frame.upper, dst_dir_fd=frame.lower)
        moved = os.open(name, _DIR_FLAGS, dir_fd=frame.lower)
        try:
            for inner, inner_mode in reversed(modes):
                os.chmod(inner, inner_mode & 0o1777, dir_fd=moved)
            os.fchmod(moved, mode & 0o1777)
        finally:
            os.close(moved)
        self.report.written += files
        return True

    def _check_listing(
        self,
        fd: int,
        sub: str,
        rel: str,
        level: int,
        modes: list[tuple[str, int]],
        pending: list[tuple[str, int]],
    ) -> int | None:
        """The number of files in one directory of a new tree, or None if any entry
        may not land as it is (the entry-by-entry walk then says which)."""
        entries = list(os.scandir(fd))
        if looks_like_repository(e.name for e in entries):
            return None
        files = 0
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            inner = os.path.join(sub, entry.name)
            if refusal(entry.name, info) or _is_whiteout(info):
                return None
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(entry.name, dir_fd=fd)
                if not self.link_stays(os.path.join(rel, inner), target):
                    return None
            if not stat.S_ISDIR(info.st_mode):
                files += 1
                continue
            if level >= MAX_DEPTH:
                return None
            if info.st_mode & 0o700 != 0o700:
                modes.append((inner, stat.S_IMODE(info.st_mode)))
                os.chmod(entry.name, 0o700, dir_fd=fd)
            pending.append((inner, level + 1))
        return files

    def _lower_names(self, parent: int, name: str) -> list[str]:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        try:
            return _listdir(fd)
        finally:
            os.close(fd)

    def _prune(self, frame: _Frame, keep: set[str]) -> None:
        """An opaque directory replaced what was below it: remove the rest."""
        for name in _listdir(frame.lower):
            if name not in keep:
                self.remove(frame.lower, name, os.path.join(frame.rel, name))

    def link_stays(self, rel: str, target: str) -> bool:
        parent = os.path.join(self.tree, os.path.dirname(rel))
        joined = os.path.normpath(os.path.join(parent, target))
        real = os.path.realpath(joined)
        return all(p == self.tree or p.startswith(self.tree + "/") for p in (joined, real))

    def replace(self, frame: _Frame, name: str, rel: str, info: os.stat_result) -> None:
        present = _lstat(name, frame.lower)
        is_dir = present is not None and stat.S_ISDIR(present.st_mode)
        if is_dir and not self.remove(frame.lower, name, rel):
            return
        try:
            os.rename(name, name, src_dir_fd=frame.upper, dst_dir_fd=frame.lower)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy(frame.upper, frame.lower, name, info)
        self.report.written += 1

    def remove(self, parent: int, name: str, rel: str) -> bool:
        """Delete a lower entry the run deleted, keeping whatever is protected."""
        info = _lstat(name, parent)
        if info is None:
            return True
        if is_protected_name(name):
            self.refuse(rel, "deleting a protected file")
            return False
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(name, dir_fd=parent)
            self.report.removed += 1
            return True
        return self._remove_dir(parent, name, rel)

    def _remove_dir(self, parent: int, name: str, rel: str) -> bool:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        names = _listdir(fd)
        if looks_like_repository(names):
            os.close(fd)
            self.refuse(rel, "deleting a git repository")
            return False
        kept = False
        try:
            for child in names:
                child_rel = os.path.join(rel, child)
                if rel.count("/") >= MAX_DEPTH:
                    self.refuse(child_rel, f"deleting deeper than {MAX_DEPTH} directories")
                    kept = True
                elif not self.remove(fd, child, child_rel):
                    kept = True
        finally:
            os.close(fd)
        if kept:
            return False
        os.rmdir(name, dir_fd=parent)
        self.report.removed += 1
        return True


def _copy(upper: int, lower: int, name: str, info: os.stat_result) -> None:
    """Move across filesystems: a copy under a temporary name, renamed into place."""
    temporary = f".ipyrunner-commit-{uuid.uuid4().hex[:12]}"
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(name, dir_fd=upper), temporary, dir_fd=lower)
    else:
        source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=upper)
        target = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=lower,
        )
        try:
            while os.sendfile(target, source, None, 1 << 24) > 0:
                pass
            os.fchmod(target, stat.S_IMODE(info.st_mode) & 0o777)
        finally:
            os.close(source)
            os.close(target)
    os.replace(temporary, name, src_dir_fd=lower, dst_dir_fd=lower)
