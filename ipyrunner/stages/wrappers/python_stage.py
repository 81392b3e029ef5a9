"""Runs one Python stage: `python python_stage.py CELL_FILE NAME`.

The input arrives as JSON on stdin; the envelope leaves on the descriptor named
by IPYRUNNER_RESULT_FD, so whatever the cell prints never touches the result.
Only the wrapper's own process writes it: a child the cell forks that returns
from `execute` exits quietly instead of sending a second result.
Standalone on purpose: it runs on any interpreter (venv, Nix), without
ipyrunner installed, and the kernel imports `unserializable` from it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import types

# Every import here is paid by every stage call: typing, inspect, traceback
# and linecache are imported only where needed.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, NoReturn

PROTOCOL = 1
JSON_SCALARS = (str, int, float, bool, type(None))


def unserializable(value: Any, path: str) -> tuple[str, str] | None:
    """The path and type name of the first value JSON cannot hold, if any."""
    try:
        return _walk(value, path, set())
    except RecursionError:
        return path, "structure nested too deeply"


def _walk(item: Any, where: str, ancestors: set[int]) -> tuple[str, str] | None:
    if isinstance(item, float) and not math.isfinite(item):
        return where, f"float {item!r}"
    if isinstance(item, JSON_SCALARS):
        return None
    if id(item) in ancestors:
        return where, "circular reference"
    if isinstance(item, dict):
        children = []
        for key, child in item.items():
            if not isinstance(key, str):
                return f"{where}[{key!r}]", f"key of type {type(key).__name__}"
            children.append((child, f"{where}[{json.dumps(key, ensure_ascii=False)}]"))
    elif isinstance(item, (list, tuple)):
        children = [(child, f"{where}[{i}]") for i, child in enumerate(item)]
    else:
        return where, type(item).__name__
    ancestors.add(id(item))
    try:
        for child, path in children:
            found = _walk(child, path, ancestors)
            if found is not None:
                return found
    finally:
        ancestors.discard(id(item))
    return None


def _cell_frames(exc: BaseException, filename: str, code: str) -> str:
    import linecache
    import traceback

    # Tracebacks show the cell's own source lines.
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    lines = traceback.format_list(frames)
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        lines += traceback.format_exception_only(type(exc), exc)[:-1]
    return "".join(lines)


def _error(kind: str, message: str, trace: str = "") -> dict[str, Any]:
    return {
        "ipyrunner": PROTOCOL,
        "ok": False,
        "error": {"type": kind, "message": message, "traceback": trace},
    }


def _success(value: Any) -> dict[str, Any]:
    found = unserializable(value, "result")
    if found is None:
        return {"ipyrunner": PROTOCOL, "ok": True, "value": value}
    where, kind = found
    return _error(
        "ResultNotJSON",
        f"{where} is a {kind}, which JSON cannot hold; "
        "return dicts with str keys, lists, str, int, float, bool or None",
    )


async def _awaited(value: Any) -> Any:
    return await value


def _run(cell_file: str, name: str) -> dict[str, Any]:
    filename = f"<stage {name}>"
    with open(cell_file, encoding="utf-8") as handle:
        code = handle.read()
    module = types.ModuleType("__stage__")
    module.__file__ = filename
    sys.modules["__stage__"] = module
    sys.argv = [filename]
    try:
        payload = json.load(sys.stdin)
        exec(compile(code, filename, "exec", dont_inherit=True), module.__dict__)  # noqa: S102
        execute = module.__dict__.get("execute")
        if not callable(execute):
            return _error("NameError", "the cell defines no function execute(input)")
        value = execute(payload)
        if hasattr(value, "__await__"):
            import asyncio  # only async stages pay for the import

            value = asyncio.run(_awaited(value))
        return _success(value)
    except Exception as exc:  # the stage's own failure becomes its result
        message = f"{exc.msg} (line {exc.lineno})" if isinstance(exc, SyntaxError) else str(exc)
        return _error(type(exc).__name__, message, _cell_frames(exc, filename, code))


def _encode(envelope: dict[str, Any]) -> bytes:
    # ASCII escapes keep lone surrogates valid JSON; NaN was refused before.
    try:
        return json.dumps(envelope, allow_nan=False).encode("ascii")
    except (ValueError, RecursionError) as exc:  # an int too long to print, deep nesting
        return json.dumps(_error("ResultNotJSON", f"the result cannot be encoded: {exc}")).encode()


def _leave_quietly(ok: bool) -> NoReturn:
    # A child forked inside the cell got here by returning (or raising) from
    # execute: its result is not the stage's, and a second envelope on the
    # shared pipe would spoil the real one. Its output is kept, its exit
    # status still tells a cell that waits for it how it went.
    import contextlib

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken by the cell
            stream.flush()
    os._exit(0 if ok else 1)


def main() -> None:
    variable = os.environ.pop("IPYRUNNER_RESULT_FD", None)
    if variable is None or len(sys.argv) != 3:
        print("usage: IPYRUNNER_RESULT_FD=N python_stage.py CELL_FILE NAME", file=sys.stderr)
        sys.exit(2)
    owner = os.getpid()
    fd = int(variable)
    os.set_inheritable(fd, False)  # programs the cell starts must not hold the result pipe
    channel: BinaryIO = os.fdopen(fd, "wb")
    envelope = _run(sys.argv[1], sys.argv[2])
    if os.getpid() != owner:
        _leave_quietly(envelope["ok"])
    channel.write(_encode(envelope))
    channel.close()
    sys.stdout.flush()
    sys.exit(0 if envelope["ok"] else 1)


if __name__ == "__main__":
    main()
