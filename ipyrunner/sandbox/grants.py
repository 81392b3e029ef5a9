"""What a run's effects grant: its trees, resolved safely, and what in them stays hidden."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jupyter_core.paths import jupyter_config_dir, jupyter_data_dir, jupyter_runtime_dir

from ..effects import Effects
from ..errors import InvalidOption
from ..paths import resolve_in_project
from ..runtimes.exposure import home_directories
from .overlay import default_staging
from .policy import covers
from .protected import Protected, find_protected, identity


def hidden_identities() -> list[tuple[int, int]]:
    """Directories no grant may show, wherever they lie: Jupyter's runtime
    (kernel connection files and their keys), data and config directories,
    the user's runtime directory and ipyrunner's own staging and caches."""
    candidates = [jupyter_runtime_dir(), jupyter_data_dir(), jupyter_config_dir()]
    candidates += [os.environ.get("XDG_RUNTIME_DIR", ""), os.path.dirname(default_staging())]
    return [found for path in candidates if path and (found := identity(path))]


def protect(trees: Sequence[str]) -> Protected:
    hidden = hidden_identities()
    found = Protected()
    for tree in trees:
        found = found + find_protected(tree, hidden)
    return found


@dataclass(frozen=True)
class Grants:
    read: tuple[str, ...]
    write: tuple[str, ...]


def resolve_grants(effects: Effects, project: Path) -> Grants:
    """The effects' paths, through the one safe resolver; each must exist. A
    write grant inside another is covered by it; a home directory is never
    writable whole (its start-up files and keys would be the run's to change)."""

    def resolve(relative: str, name: str) -> str:
        target = resolve_in_project(relative, project) if relative else project.resolve()
        if not target.exists():
            raise InvalidOption(
                f"effect {name}:{relative}: no such path in the project directory {project}"
            )
        return str(target)

    write = [resolve(p, "fs-write") for p in effects.write]
    for tree in write:
        home = next((h for h in home_directories() if covers((tree,), h)), None)
        if home is not None:
            raise InvalidOption(
                f"fs-write on {tree} would let runs change the home directory {home}; "
                "grant a sub-path (--effects fs-write:PATH) or set PROJECT_DIRECTORY to a "
                "project inside it"
            )
    write = [t for t in write if not any(o != t and covers((o,), t) for o in write)]
    return Grants(tuple(resolve(p, "fs-read") for p in effects.read), tuple(sorted(set(write))))
