"""The project directory and the one safe resolver of paths inside it."""

from __future__ import annotations

import functools
import os
from pathlib import Path, PurePosixPath

from dotenv import dotenv_values, find_dotenv

from .errors import PathNotAllowed

PROJECT_VARIABLE = "PROJECT_DIRECTORY"


def working_directory() -> Path:
    """The current directory, or a clear error where it was deleted under us."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise PathNotAllowed(
            "the current directory no longer exists (it was deleted or moved away); "
            "fix: %cd (os.chdir) to an existing directory, such as the project's"
        ) from None


def setting(name: str) -> tuple[str, Path] | None:
    """`name` from the environment, else from the nearest `.env` (python-dotenv,
    searched from the current directory upward).

    Returns the value and the directory a relative value is relative to.
    """
    here = working_directory()
    value = os.environ.get(name)
    if value:
        return value, here
    found = find_dotenv(usecwd=True)
    if found:
        value = _dotenv(found).get(name)
        if value:
            return value, Path(found).parent
    return None


def _dotenv(path: str) -> dict[str, str | None]:
    """The values of the `.env` at `path`, parsed again whenever the file changes."""
    try:
        info = os.stat(path)
    except OSError:
        return {}
    return _parsed(path, info.st_ino, info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=32)
def _parsed(path: str, inode: int, mtime_ns: int, size: int) -> dict[str, str | None]:
    return dict(dotenv_values(path))


def project_directory() -> Path:
    """`PROJECT_DIRECTORY` (environment, then `.env`), else the current directory.

    Resolved at each call, so `%cd` and an edited `.env` take effect at once.
    """
    found = setting(PROJECT_VARIABLE)
    if found is None:
        return working_directory().resolve()
    value, base = found
    project = (base / Path(value).expanduser()).resolve()
    if not project.is_dir():
        raise PathNotAllowed(
            f"{PROJECT_VARIABLE}={value!r} is not a directory; fix it in the environment or .env"
        )
    return project


def resolve_in_project(path: str | os.PathLike[str], project: Path) -> Path:
    """Resolve a user-given relative path inside `project`, or raise `PathNotAllowed`.

    Rejected: empty paths, NUL bytes, absolute paths, any `..` component, and
    paths whose target, with every symlink followed, lies outside the project.
    The file need not exist; callers check that.
    """
    text = os.fspath(path)
    if not isinstance(text, str):
        raise PathNotAllowed(f"{text!r}: give the path as text")
    if not text.strip():
        raise PathNotAllowed("empty path: give a path relative to the project directory")
    if "\x00" in text:
        raise PathNotAllowed(f"{text!r} contains a NUL byte")
    pure = PurePosixPath(text)
    if pure.is_absolute():
        raise PathNotAllowed(
            f"{text!r} is absolute: give a path relative to the project directory {project}"
        )
    if ".." in pure.parts:
        raise PathNotAllowed(f"{text!r} contains '..': paths must stay inside {project}")
    root = project.resolve()
    target = (root / pure).resolve(strict=False)
    if not target.is_relative_to(root):
        raise PathNotAllowed(
            f"{text!r} resolves to {target}, outside the project directory {root} "
            "(a symlink leads out)"
        )
    return target
