"""The files an ELF program loads from outside the system directories: its
loader (PT_INTERP) and the DT_NEEDED libraries its RPATH / RUNPATH lead to.

Read from the file's headers, never by running it (or `ldd`) on the host.
Libraries found by the default search (ld.so.cache, /lib, /usr/lib) are the
system's, which every sandbox has already.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from .exposure import is_system

_MAGIC = b"\x7fELF"
_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_RPATH, _DT_RUNPATH = 0, 1, 5, 15, 29
_MAX_HEADERS = 1024
_MAX_ENTRIES = 4096
_MAX_FILES = 256


@dataclass(frozen=True)
class Dynamic:
    """What the dynamic loader reads from one ELF file."""

    interpreter: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == _MAGIC
    except OSError:
        return False


def read_dynamic(path: str) -> Dynamic | None:
    """The loader, needed libraries and search paths of `path`; None if it is not
    an ELF file (a script) or its headers make no sense."""
    try:
        with open(path, "rb") as handle:
            return _parse(handle)
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        return None


def _parse(handle: BinaryIO) -> Dynamic | None:
    ident = handle.read(16)
    if len(ident) < 16 or ident[:4] != _MAGIC or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        return None
    wide, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
    header = struct.unpack(order + ("HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH"),
                           handle.read(48 if wide else 36))  # fmt: skip
    phoff, phentsize, phnum = header[4], header[8], header[9]
    layout = order + ("IIQQQQQQ" if wide else "IIIIIIII")
    if phentsize < struct.calcsize(layout) or phnum > _MAX_HEADERS:
        return None
    segments: list[tuple[int, int, int, int]] = []  # type, offset, vaddr, filesz
    for index in range(phnum):
        handle.seek(phoff + index * phentsize)
        fields = struct.unpack(layout, handle.read(struct.calcsize(layout)))
        if wide:
            segments.append((fields[0], fields[2], fields[3], fields[5]))
        else:
            segments.append((fields[0], fields[1], fields[2], fields[4]))
    interpreter = None
    for kind, offset, _, size in segments:
        if kind == _PT_INTERP and 0 < size <= 4096:
            handle.seek(offset)
            interpreter = handle.read(size).split(b"\0", 1)[0].decode()
    dynamic = [(offset, size) for kind, offset, _, size in segments if kind == _PT_DYNAMIC]
    if not dynamic:
        return Dynamic(interpreter, (), (), ())
    entries = _entries(handle, *dynamic[0], wide, order)
    strtab = next((value for tag, value in entries if tag == _DT_STRTAB), None)
    table = _file_offset(segments, strtab) if strtab is not None else None
    if table is None:
        return Dynamic(interpreter, (), (), ())

    def strings(wanted: int) -> tuple[str, ...]:
        return tuple(_string(handle, table + value) for tag, value in entries if tag == wanted)

    return Dynamic(
        interpreter,
        strings(_DT_NEEDED),
        tuple(d for text in strings(_DT_RPATH) for d in text.split(":")),
        tuple(d for text in strings(_DT_RUNPATH) for d in text.split(":")),
    )


def _entries(
    handle: BinaryIO, offset: int, size: int, wide: bool, order: str
) -> list[tuple[int, int]]:
    layout = order + ("qQ" if wide else "iI")
    step = struct.calcsize(layout)
    handle.seek(offset)
    data = handle.read(min(size, _MAX_ENTRIES * step))
    entries = []
    for start in range(0, len(data) - step + 1, step):
        tag, value = struct.unpack_from(layout, data, start)
        if tag == _DT_NULL:
            break
        entries.append((tag, value))
    return entries


def _file_offset(segments: list[tuple[int, int, int, int]], address: int) -> int | None:
    for kind, offset, vaddr, size in segments:
        if kind == _PT_LOAD and vaddr <= address < vaddr + size:
            return address - vaddr + offset
    return None


def _string(handle: BinaryIO, offset: int) -> str:
    handle.seek(offset)
    return handle.read(4096).split(b"\0", 1)[0].decode()


def linked_files(path: str) -> tuple[str, ...]:
    """Real paths of what loading `path` maps from outside the system directories."""
    found: list[str] = []
    # Each with the RPATHs of the objects that load it, which apply to it too.
    pending: list[tuple[str, tuple[str, ...]]] = [(os.path.realpath(path), ())]
    seen: set[str] = set()
    while pending and len(seen) < _MAX_FILES:
        current, inherited = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        info = read_dynamic(current)
        if info is None:
            continue
        if info.interpreter and os.path.isabs(info.interpreter):
            found.append(os.path.realpath(info.interpreter))
        origin = os.path.dirname(current)
        rpath = () if info.runpath else (*_expand(info.rpath, origin), *inherited)
        search = (*rpath, *_expand(info.runpath, origin))
        for name in info.needed:
            library = _locate(name, search)
            if library is not None and not is_system(library):
                found.append(library)
                pending.append((library, rpath))
    return tuple(sorted(p for p in set(found) if not is_system(p)))


def _expand(directories: tuple[str, ...], origin: str) -> tuple[str, ...]:
    expanded = (d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin) for d in directories)
    # Other tokens ($LIB, $PLATFORM) and relative entries name no fixed place.
    return tuple(d for d in expanded if os.path.isabs(d) and "$" not in d)


def _locate(name: str, search: tuple[str, ...]) -> str | None:
    if "/" in name:
        return os.path.realpath(name) if os.path.isabs(name) and is_elf(name) else None
    for directory in search:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and is_elf(candidate):
            return os.path.realpath(candidate)
    return None
