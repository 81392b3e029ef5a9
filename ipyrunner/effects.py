"""Effects: what a run declares it needs, parsed strictly (unknown names fail)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from .errors import InvalidEffectPath, InvalidOption

USAGE = "use pure, network, host-network, fs-read[:PATH] or fs-write[:PATH]"
_BOTH_NETWORKS = (
    "effects network and host-network exclude each other: network reaches the outside "
    "from a namespace of its own, host-network shares the host's; give one"
)


@dataclass(frozen=True)
class Effects:
    """Granted permissions. `read`/`write` hold project-relative paths ("" is the
    whole project); a path granted for writing needs no read grant as well.

    `network` is the outside through a network namespace of the run's own;
    `host_network` shares the host's namespace, loopback included. A run has
    at most one of the two.
    """

    network: bool = False
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    host_network: bool = False

    def __post_init__(self) -> None:
        # A hand-built value holds to what the parser guarantees.
        if self.network and self.host_network:
            raise InvalidOption(_BOTH_NETWORKS)
        for path in (*self.read, *self.write):
            if path and (_path_problem(path) or str(PurePosixPath(path)) != path):
                raise InvalidEffectPath(
                    f"effect path {path!r}: give a normalised path relative to the project "
                    "directory, or '' for the whole project"
                )

    def canonical(self) -> list[str]:
        """A sorted list of effect strings, as part of a stage's identity."""
        items = ["network"] if self.network else []
        items += ["host-network"] if self.host_network else []
        items += [f"fs-read:{p}" if p else "fs-read" for p in self.read]
        items += [f"fs-write:{p}" if p else "fs-write" for p in self.write]
        return sorted(items)

    def __str__(self) -> str:
        return ",".join(self.canonical()) or "pure"


PURE = Effects()
PROJECT_WRITE = Effects(write=("",))


def parse_effects(spec: str | Iterable[str] | Effects | None) -> Effects:
    """Parse `network,fs-read:data,fs-write` (a string or a list of items)."""
    if spec is None:
        return PURE
    if isinstance(spec, Effects):
        return spec
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    flags: set[str] = set()
    read: set[str] = set()
    write: set[str] = set()
    for raw in items:
        item = raw.strip()
        name, sep, path = item.partition(":")
        if name in ("pure", "network", "host-network") and sep:
            raise InvalidOption(f"effect {item!r}: {name} takes no path; {USAGE}")
        if name == "pure" or (not item and len(items) == 1):
            continue
        if name in ("network", "host-network"):
            flags.add(name)
        elif name in ("fs-read", "fs-write"):
            relative = _project_path(item, path.strip()) if sep else ""
            (read if name == "fs-read" else write).add(relative)
        else:
            raise InvalidOption(f"unknown effect {item!r}: {USAGE}")
    return Effects(
        network="network" in flags,
        read=tuple(sorted(read - write)),
        write=tuple(sorted(write)),
        host_network="host-network" in flags,
    )


def _project_path(item: str, text: str) -> str:
    """The project-relative path of an fs effect, checked as given, then normalised.

    The rules of `paths.resolve_in_project`, which resolves it again (symlinks
    followed) at each run. A path naming the project itself (`.`) is refused
    too: the whole project is the bare effect, so a template such as
    `fs-write:$SUBDIR/` cannot widen to it when `SUBDIR` is empty.
    """
    problem = _path_problem(text)
    if problem is not None:
        name = item.partition(":")[0]
        raise InvalidEffectPath(
            f"effect {item!r} {problem}: give {name}:PATH with PATH relative to the "
            f"project directory and inside it, or {name} alone for the whole project"
        )
    return str(PurePosixPath(text))  # `data/` is `data`, `a//b` is `a/b`


def _path_problem(text: str) -> str | None:
    if not text:
        return "has an empty path"
    if "\x00" in text:
        return "has a NUL byte in its path"
    if PurePosixPath(text).is_absolute():
        return "has an absolute path"
    parts = PurePosixPath(text).parts
    if ".." in parts:
        return "has '..' in its path"
    if not parts:
        return "names the whole project"
    return None
