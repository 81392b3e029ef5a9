"""Secrets inside a granted tree: `.env` files and git's config and hooks.

Whatever the effects, the sandbox never reads or writes these: each is masked
(an empty read-only file or directory over it), and every `.git` directory is
read-only so that hooks cannot be planted where none existed.
"""

from __future__ import annotations

import os
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

    def mounts(self) -> list[Mount]:
        # The .git trees go read-only first, then the masks go on top of them.
        return [
            *(Mount("ro", d, d) for d in self.git_dirs),
            *(Mount("mask-file", f) for f in self.files),
            *(Mount("mask-dir", d) for d in self.dirs),
        ]


def is_secret_file(name: str) -> bool:
    return name == ".env" or name.startswith(".env.")


def find_secrets(root: str) -> Secrets:
    """Walk `root` (symlinks not followed) for what must stay hidden."""
    files: list[str] = []
    dirs: list[str] = []
    git_dirs: list[str] = []
    inside_git = ".git" in root.split(os.sep)
    if os.path.isfile(root):
        if is_secret_file(os.path.basename(root)) or inside_git:
            files.append(root)
        return Secrets(tuple(files), (), ())
    if inside_git:  # a grant of .git itself, or of a part of it
        git_dirs.append(root)
    seen = 0
    for directory, subdirs, names in os.walk(root):
        seen += len(subdirs) + len(names)
        if seen > MAX_ENTRIES:
            raise SandboxUnavailable(
                f"{root} holds more than {MAX_ENTRIES} entries to check for secrets; "
                "grant a smaller sub-path (fs-read:PATH / fs-write:PATH)"
            )
        files += [os.path.join(directory, n) for n in names if is_secret_file(n)]
        if os.path.basename(directory) == ".git":
            if "config" in names:
                files.append(os.path.join(directory, "config"))
            if "hooks" in subdirs:
                dirs.append(os.path.join(directory, "hooks"))
            subdirs[:] = []
            continue
        if ".git" in names:  # a worktree's .git file points at the real one
            files.append(os.path.join(directory, ".git"))
        if ".git" in subdirs:
            git_dirs.append(os.path.join(directory, ".git"))
        subdirs[:] = [s for s in subdirs if s not in _SKIP or s == ".git"]
    return Secrets(tuple(sorted(files)), tuple(sorted(dirs)), tuple(sorted(git_dirs)))
