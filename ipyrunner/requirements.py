"""Requirement specs, held to a strict grammar: `name[extras]==version`.

Anything else — unpinned names, ranges, URLs, paths, `-e`, `--index-url` and
other options, markers, quotes, shell metacharacters — is refused with an
error that names the spec and says why. Ranges (`>=`, `~=`, ...) and bare names
pass only with `IPyRunner.allow_unpinned`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidRequirement

# PEP 508 names, compared in their PEP 503 normal form.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
# PEP 440 versions in canonical form, with an optional local label.
_VERSION = (
    r"(?:[1-9][0-9]*!)?(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*"
    r"(?:(?:a|b|rc)(?:0|[1-9][0-9]*))?(?:\.post(?:0|[1-9][0-9]*))?(?:\.dev(?:0|[1-9][0-9]*))?"
    r"(?:\+[a-z0-9]+(?:\.[a-z0-9]+)*)?"
)
_PINNED = re.compile(rf"({_NAME})(?:\[({_NAME}(?:,{_NAME})*)\])?==({_VERSION})")
_RANGE = re.compile(
    rf"({_NAME})(?:\[({_NAME}(?:,{_NAME})*)\])?"
    rf"((?:(?:>=|<=|~=|!=|>|<){_VERSION})(?:,(?:>=|<=|~=|!=|>|<){_VERSION})*)?"
)
_REQUIRES_LINE = re.compile(r"^\s*(?:#|//)\s*requires:(.*)$", re.MULTILINE)


@dataclass(frozen=True, order=True)
class Requirement:
    name: str  # PEP 503 normal form
    extras: tuple[str, ...] = ()
    specifier: str = ""  # "==1.2" when pinned

    @property
    def pinned(self) -> bool:
        return self.specifier.startswith("==")

    @property
    def version(self) -> str:
        return self.specifier[2:] if self.pinned else ""

    def __str__(self) -> str:
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return f"{self.name}{extras}{self.specifier}"


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _why_not(spec: str) -> str:
    if not spec:
        return "it is empty"
    if spec.startswith("-"):
        return "it is a pip option; only name==version is allowed"
    if "://" in spec or spec.startswith(("git+", "file:")) or "@" in spec:
        return "it is a URL or a direct reference; only packages from the index are allowed"
    if ";" in spec:
        return "it has an environment marker; markers are not allowed"
    if "===" in spec or spec.endswith(".*"):
        return "it is not an exact version; write name==VERSION"
    if any(c in spec for c in "'\"`$|&(){}*?^#%\\ \t\n\r"):
        return "it contains characters a requirement cannot have (quotes, spaces, shell syntax)"
    if "/" in spec or spec.startswith("."):
        return "it is a path; only packages from the index are allowed"
    if re.fullmatch(_NAME, spec) or _RANGE.fullmatch(spec):
        name = re.match(_NAME, spec)
        return (
            f"it is not pinned; write {name.group(0) if name else 'name'}==VERSION "
            "(or set IPyRunner.allow_unpinned = True)"
        )
    return "it is not of the form name==version (a PEP 440 version in canonical form)"


def parse_requirement(spec: str, allow_unpinned: bool = False) -> Requirement:
    """One spec, or `InvalidRequirement` naming it and why it was refused."""
    text = spec.strip()
    match = _PINNED.fullmatch(text)
    if match is None and allow_unpinned:
        match = _RANGE.fullmatch(text)
    if match is None:
        raise InvalidRequirement(f"requirement {spec!r} refused: {_why_not(text)}")
    name, extras, specifier = match.groups()
    if match.re is _PINNED:
        specifier = f"=={specifier}"
    extra_names = tuple(sorted({normalize_name(e) for e in extras.split(",")})) if extras else ()
    return Requirement(normalize_name(name), extra_names, specifier or "")


def parse_requirements(
    specs: str | Iterable[str] | None, allow_unpinned: bool = False
) -> tuple[Requirement, ...]:
    """Comma-separated (or listed) specs, validated, deduplicated and sorted."""
    if specs is None:
        return ()
    items = specs.split(",") if isinstance(specs, str) else [s for s in specs]
    found: dict[str, Requirement] = {}
    for item in items:
        if not item.strip() and isinstance(specs, str) and len(items) == 1:
            continue
        requirement = parse_requirement(item, allow_unpinned)
        known = found.get(requirement.name)
        if known is not None and known != requirement:
            raise InvalidRequirement(
                f"requirements {str(known)!r} and {str(requirement)!r} conflict; keep one"
            )
        found[requirement.name] = requirement
    return tuple(sorted(found.values()))


def requirements_in_code(code: str) -> list[str]:
    """The specs of `# requires: a==1, b==2` lines (`// requires:` in JavaScript)."""
    specs: list[str] = []
    for line in _REQUIRES_LINE.findall(code):
        specs += [item.strip() for item in line.split(",") if item.strip()]
    return specs
