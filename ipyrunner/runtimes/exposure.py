"""What a runtime may bring into a sandbox: never a home directory, never a tree
that holds keys or the kernel's connection files, never the project."""

from __future__ import annotations

import contextlib
import os
import pwd
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunnerError, SandboxUnavailable
from ..paths import project_directory

# Mounted read-only in every sandbox anyway (the sandbox layer's system directories).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Inside a home: what holds keys and tokens, or Jupyter's connection files.
PRIVATE_IN_HOME = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".docker",
    ".kube",
    ".netrc",
    ".config",
    ".jupyter",
    ".ipython",
    ".local/share/jupyter",
)


def within(path: str, tree: str) -> bool:
    """True if `path` is `tree` or lies inside it (both already resolved)."""
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def is_system(path: str) -> bool:
    return any(within(path, directory) for directory in SYSTEM_DIRS)


def parents_resolved(path: str) -> str:
    """`path` absolute, with every symlink above its last component resolved."""
    absolute = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))


def home_directories() -> tuple[str, ...]:
    """The kernel's home, every passwd home of its uid, /root and each /home/*."""
    homes = {"/root"}
    home = os.environ.get("HOME", "")
    if os.path.isabs(home):
        homes.add(home)
    homes.add(str(Path("~").expanduser()))
    homes |= {entry.pw_dir for entry in pwd.getpwall() if entry.pw_uid == os.getuid()}
    with contextlib.suppress(OSError):
        homes |= {entry.path for entry in os.scandir("/home")}
    homes.add("/home")
    return tuple(sorted({os.path.realpath(h) for h in homes if os.path.isabs(h)}))


def private_trees(homes: Iterable[str]) -> tuple[str, ...]:
    """Trees that hold secrets or the kernel's connection files, resolved."""
    trees = [os.path.join(h, name) for h in homes if h != "/home" for name in PRIVATE_IN_HOME]
    trees += [os.environ.get(name, "") for name in ("XDG_RUNTIME_DIR", "XDG_CONFIG_HOME")]
    trees += _jupyter_dirs()
    return tuple(sorted({os.path.realpath(t) for t in trees if os.path.isabs(t)}))


def _jupyter_dirs() -> list[str]:
    found: list[str] = []
    try:
        from jupyter_core.paths import jupyter_config_dir, jupyter_data_dir, jupyter_runtime_dir

        found += [jupyter_runtime_dir(), jupyter_data_dir(), jupyter_config_dir()]
    except Exception:  # noqa: S110 - jupyter_core is optional
        pass
    if "ipykernel.kernelapp" in sys.modules:
        try:
            from ipykernel.connect import get_connection_file

            found.append(os.path.dirname(os.path.abspath(get_connection_file())))
        except Exception:  # noqa: S110 - not inside a running kernel
            pass
    return found


@dataclass(frozen=True)
class Forbidden:
    """What no exposure may be, hold or lie in, as the host is now."""

    homes: tuple[str, ...]
    private: tuple[str, ...]
    project: str | None
    # Of `private`, the trees in a home that hold keys (~/.ssh): nothing in them either.
    # The rest (runtime and connection-file directories, often /tmp or /run/user/N)
    # may hold an exposed tree, but no exposure may be or hold them.
    secret: tuple[str, ...] = ()

    @classmethod
    def now(cls) -> Forbidden:
        homes = home_directories()
        try:
            project: str | None = str(project_directory())
        except RunnerError:
            project = None
        secret = tuple(
            os.path.realpath(os.path.join(h, name))
            for h in homes
            if h != "/home"
            for name in PRIVATE_IN_HOME
        )
        return cls(homes, private_trees(homes), project, secret)

    def reason(self, path: str) -> str | None:
        """Why the resolved `path` must not be exposed, or None."""
        for home in self.homes:
            if within(home, path):
                return f"it is or holds the home directory {home}"
        for tree in self.private:
            if within(tree, path) or (tree in self.secret and within(path, tree)):
                return f"it is, holds or lies in {tree}, which holds keys or Jupyter's files"
        if self.project is not None and within(self.project, path):
            return f"it holds the project directory {self.project}"
        return None

    def check(self, paths: Iterable[str], interpreter: str, fix: str) -> None:
        """Raise `SandboxUnavailable` naming the first path that may not be exposed."""
        for path in paths:
            why = self.reason(path)
            if why is not None:
                raise SandboxUnavailable(
                    f"the interpreter {interpreter} needs {path} in the sandbox, but {why}; "
                    f"fix: {fix}"
                )

    def masks(self, keep: Iterable[str]) -> tuple[str, ...]:
        """Private trees that exist and hold none of `keep`: hidden even from a probe."""
        kept = tuple(keep)
        chosen: list[str] = []
        for tree in self.private:
            if any(within(tree, done) for done in chosen) or not os.path.lexists(tree):
                continue
            if not any(within(path, tree) for path in kept):
                chosen.append(tree)
        return tuple(t for t in chosen if os.path.isdir(t) or os.path.isfile(t))


def collapse(paths: Iterable[str]) -> tuple[str, ...]:
    """Sorted, without system directories and without paths inside another one."""
    chosen: list[str] = []
    for path in sorted(set(paths)):
        if not is_system(path) and not any(within(path, done) for done in chosen):
            chosen.append(path)
    return tuple(chosen)
