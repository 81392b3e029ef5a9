"""Writable grants as overlays: a run writes into a staging layer, never the tree.

Each granted tree gets an overlayfs whose lower layer is the tree itself and
whose upper layer is a fresh directory in the staging area; the overlay is
mounted by `unshare` + `mount` in a user and mount namespace of the run's own,
just before bwrap starts (bwrap 0.8 has no `--overlay`). When the run ends the
upper layer is committed through `commit.py`'s filter. Nothing on the host
changes while the run is going.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..environment import MINIMAL_PATH, find_program
from ..errors import SandboxUnavailable
from ..process import Limits, run_process

FAILURE_MARK = "ipyrunner-overlay:"
LAUNCHER_ENV = {"PATH": MINIMAL_PATH, "LANG": "C.UTF-8"}
# Arguments come in threes (upper, work, tree) up to "--"; then the program.
# `lowerdir=.` keeps the tree's path out of the option string, where a comma
# or colon in it would be read as a separator. `volatile`: the upper layer is
# thrown away after the commit, so the unmount need not sync it to disk first
# (a 1 GB write would wait a second for that; an unsandboxed run does not).
_OPTIONS = "lowerdir=.,upperdir=$1,workdir=$2,userxattr,volatile"
_MOUNT = (
    'while [ "$1" != -- ]; do '
    f'cd "$3" && mount -t overlay overlay -o "{_OPTIONS}" . '
    f'|| {{ echo "{FAILURE_MARK} cannot mount an overlay on $3" >&2; exit 125; }}; '
    'shift 3; done; shift; cd /; exec "$@"'
)
_OPTION_UNSAFE = frozenset(",:\\\n")
FIX = (
    "overlayfs in a user namespace needs Linux 5.11 or newer and util-linux's unshare and "
    "mount; the staging directory (IPyRunner.write_staging) must be on ext4, xfs, btrfs or tmpfs"
)


@dataclass(frozen=True)
class WriteLayer:
    """One granted tree and the staging directories its overlay writes into."""

    tree: str
    root: str  # this layer's own staging directory, removed after the commit

    @property
    def upper(self) -> str:
        return os.path.join(self.root, "upper")

    @property
    def work(self) -> str:
        return os.path.join(self.root, "work")


def default_staging() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return os.path.join(cache, "ipyrunner", "writes")


def staging_area(tree: str, configured: str, avoid: Sequence[str]) -> str:
    """Where `tree`'s writes wait: the configured directory, else the first of the
    cache and the temporary directory on the tree's own filesystem (so that a
    commit renames instead of copying), never inside a granted tree."""
    candidates = [configured] if configured else [default_staging(), tempfile.gettempdir()]
    usable = []
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if any(real == t or real.startswith(t.rstrip("/") + "/") for t in avoid):
            continue
        if _OPTION_UNSAFE & set(real):
            continue
        os.makedirs(real, mode=0o700, exist_ok=True)
        usable.append(real)
    if not usable:
        raise SandboxUnavailable(
            "no staging directory for a writable grant: it must lie outside every granted "
            "tree and its path must not contain ',', ':' or '\\'; set IPyRunner.write_staging"
        )
    device = os.stat(tree).st_dev
    same = [path for path in usable if os.stat(path).st_dev == device]
    return (same or usable)[0]


@contextlib.contextmanager
def write_layers(
    trees: Sequence[str], configured: str, avoid: Sequence[str]
) -> Iterator[list[WriteLayer]]:
    """A fresh staging layer per tree, removed when the block ends."""
    layers: list[WriteLayer] = []
    try:
        for tree in trees:
            area = staging_area(tree, configured, avoid)
            check_overlay(area)
            root = tempfile.mkdtemp(prefix="run-", dir=area)
            layer = WriteLayer(tree, root)
            os.mkdir(layer.upper, 0o755)
            os.mkdir(layer.work, 0o700)
            layers.append(layer)
        yield layers
    finally:
        for layer in layers:
            remove_tree(layer.root)


def mount_argv(layers: Sequence[WriteLayer]) -> list[str]:
    """The launcher that mounts `layers` in a namespace of the run's own."""
    if not layers:
        return []
    unshare = find_program("unshare")
    if unshare is None or find_program("mount") is None:
        raise SandboxUnavailable(
            "unshare or mount is missing; fix: apt-get install util-linux mount"
        )
    argv = [
        unshare,
        "--user",
        "--map-root-user",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        _MOUNT,
        "ipyrunner-overlay",
    ]
    for layer in layers:
        argv += [layer.upper, layer.work, layer.tree]
    return [*argv, "--"]


@functools.cache
def check_overlay(area: str) -> None:
    """Mount a throwaway overlay with staging in `area` once, or say why not."""
    probe = tempfile.mkdtemp(prefix="probe-", dir=area)
    try:
        tree = os.path.join(probe, "tree")
        os.mkdir(tree)
        layer = WriteLayer(tree, probe)
        os.mkdir(layer.upper)
        os.mkdir(layer.work)
        done = run_process(
            [*mount_argv([layer]), "/bin/true"],
            env=LAUNCHER_ENV,
            cwd="/",
            limits=Limits(timeout=20),
        )
    finally:
        remove_tree(probe)
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise SandboxUnavailable(f"cannot protect a writable grant here ({said[0]}); fix: {FIX}")


def remove_tree(path: str) -> None:
    """Remove a staging directory, whatever depth and modes the run left in it.

    Iterative and descriptor-based; a subtree deeper than a few dozen levels is
    first moved up beside `path`, so neither recursion nor open descriptors grow
    with the run's depth."""
    area, name = os.path.split(os.path.abspath(path))
    area_fd = os.open(area, _DIR)
    try:
        pending = [name]
        while pending:
            _remove_shallow(area_fd, pending.pop(), pending)
    finally:
        os.close(area_fd)


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SHALLOW = 32


def _remove_shallow(area_fd: int, name: str, pending: list[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.chmod(name, 0o700, dir_fd=area_fd)
    try:
        top = os.open(name, _DIR, dir_fd=area_fd)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        os.unlink(name, dir_fd=area_fd)
        return
    stack = [(top, iter(os.listdir(top)), area_fd, name)]
    while stack:
        fd, names, parent, own = stack[-1]
        child = next(names, None)
        if child is None:
            stack.pop()
            os.close(fd)
            os.rmdir(own, dir_fd=parent)
            continue
        info = os.stat(child, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(child, dir_fd=fd)
            continue
        if len(stack) >= _SHALLOW:
            moved = f".remove-{uuid.uuid4().hex}"
            os.rename(child, moved, src_dir_fd=fd, dst_dir_fd=area_fd)
            pending.append(moved)
            continue
        os.chmod(child, 0o700, dir_fd=fd)
        sub = os.open(child, _DIR, dir_fd=fd)
        stack.append((sub, iter(os.listdir(sub)), fd, child))
