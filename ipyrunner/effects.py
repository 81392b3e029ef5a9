"""Effects: what a run declares it needs, parsed strictly (unknown names fail)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidOption


@dataclass(frozen=True)
class Effects:
    """Granted permissions. `read`/`write` hold project-relative paths ("" is the
    whole project); a path granted for writing needs no read grant as well."""

    network: bool = False
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()

    def canonical(self) -> list[str]:
        """A sorted list of effect strings, as part of a stage's identity."""
        items = ["network"] if self.network else []
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
    network = False
    read: set[str] = set()
    write: set[str] = set()
    for raw in items:
        item = raw.strip()
        name, sep, path = item.partition(":")
        if name in ("pure", "network") and sep:
            raise InvalidOption(f"effect {item!r}: {name} takes no path")
        if name == "pure" or (not item and len(items) == 1):
            continue
        if name == "network":
            network = True
        elif name in ("fs-read", "fs-write"):
            if sep and not path.strip():
                raise InvalidOption(f"effect {item!r}: give a path after ':' or none at all")
            (read if name == "fs-read" else write).add(path.strip().rstrip("/"))
        else:
            raise InvalidOption(
                f"unknown effect {item!r}: use pure, network, fs-read[:PATH] or fs-write[:PATH]"
            )
    return Effects(network, tuple(sorted(read - write)), tuple(sorted(write)))
