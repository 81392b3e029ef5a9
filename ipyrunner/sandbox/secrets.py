"""Secrets inside a granted tree: `.env` files and git's config and hooks.

Whatever the effects, the sandbox never reads or writes these: an existing one
is masked (/dev/null over a file, so opening it fails; an empty read-only tmpfs
over a directory), every `.git` directory is read-only so hooks cannot be
planted, and what a run creates under those names in a writable tree is
removed when the run ends (a planted `.env` would otherwise steer the kernel's
next run: its interpreter, its project directory).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import SandboxUnavailable
from .policy import Mount

# Trees that hold no project secrets but may be huge.
_SKIP = frozenset({"node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"})
MAX_ENTRIES = 200_000


@dataclass(frozen=True)
class Secrets:
    files: tuple[str, ...]
    dirs: tuple[str, ...]
    git_dirs: tuple[str, ...]
    # Every path named like a secret (.env*, .git), links included: what the
    # tree held before a run, to tell what the run created.
    present: frozenset[str] = frozenset()

    def mounts(self) -> list[Mount]:
        # The .git trees go read-only first, then the masks go on top of them.
        return [
            *(Mount("ro", d, d) for d in self.git_dirs),
            *(Mount("mask-file", f) for f in self.files),
            *(Mount("mask-dir", d) for d in self.dirs),
        ]


def is_secret_name(name: str) -> bool:
    return name == ".env" or name.startswith(".env.") or name == ".git"


def _inside(path: str, root: str) -> str | None:
    """`path` with every link resolved, if that stays inside `root`."""
    real = os.path.realpath(path)
    return real if real == root or real.startswith(root.rstrip("/") + "/") else None


def find_secrets(root: str) -> Secrets:
    """Walk `root` (links not followed) for what must stay hidden.

    A secret that is a symbolic link is masked at its real target when that
    lies inside `root` (elsewhere the sandbox cannot see it), and nothing is
    ever mounted at a path that goes through a link.
    """
    root = os.path.realpath(root)
    files: set[str] = set()
    dirs: set[str] = set()
    git_dirs: set[str] = set()
    present: set[str] = set()
    if os.path.isfile(root):
        if is_secret_name(os.path.basename(root)) or "/.git/" in root:
            files.add(root)
        return Secrets(tuple(files), (), ())
    if "/.git/" in root + "/":  # a grant of .git itself, or of a part of it
        git_dirs.add(root)
    seen = 0
    for directory, subdirs, names in os.walk(root):
        seen += len(subdirs) + len(names)
        if seen > MAX_ENTRIES:
            raise SandboxUnavailable(
                f"{root} holds more than {MAX_ENTRIES} entries to check for secrets; "
                "grant a smaller sub-path (fs-read:PATH / fs-write:PATH)"
            )
        if os.path.basename(directory) == ".git":
            _git_contents(directory, root, files, dirs)
            subdirs[:] = []
            continue
        for name in (*names, *subdirs):
            if not is_secret_name(name):
                continue
            path = os.path.join(directory, name)
            present.add(path)
            real = _inside(path, root)
            if real is None:
                continue
            if name != ".git":
                files.add(real)
            elif os.path.isdir(real):
                git_dirs.add(real)
                _git_contents(real, root, files, dirs)
            else:  # a worktree's .git file points at the real one
                files.add(real)
        subdirs[:] = [s for s in subdirs if s not in _SKIP and s != ".git"]
    return Secrets(
        tuple(sorted(files)), tuple(sorted(dirs)), tuple(sorted(git_dirs)), frozenset(present)
    )


def _git_contents(git_dir: str, root: str, files: set[str], dirs: set[str]) -> None:
    for name, into in (("config", files), ("hooks", dirs)):
        real = _inside(os.path.join(git_dir, name), root)
        if real is not None and os.path.exists(real):
            into.add(real)


def remove_planted(before: Iterable[Secrets], roots: Iterable[str]) -> list[str]:
    """Remove the secret-named entries a run created in the writable `roots`."""
    known = frozenset().union(*(secrets.present for secrets in before))
    removed = []
    for root in roots:
        for path in sorted(find_secrets(root).present - known):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            removed.append(path)
    return removed
