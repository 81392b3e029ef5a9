"""The result channel's envelope, decoded as JSON and nothing else.

Nothing that comes out of a stage is unpickled or evaluated in the kernel:
`json.loads` on bytes bounded by the result cap is the whole decoder, and a
strict one: NaN, Infinity and numbers beyond a float's range are refused. A
DataFrame comes back as Arrow IPC instead, read by pyarrow alone (`frames`).
"""

from __future__ import annotations

import gc
import json
import sys
from dataclasses import dataclass
from typing import Any

from ..process import Completed
from ..result_html import describe_returncode
from ..sandbox.limits import FILE_SIZE_WORDS, MEMORY_WORDS
from .frames import MAGIC, FrameError, decode_frame

PROTOCOL = 1
_LARGEST = sys.float_info.max


@dataclass(frozen=True)
class StageError:
    """Why a stage gave no value.

    `kind` is one of: raised (the user's code raised; `type` is its class),
    exit (ended without a result), signal (killed by a signal), timeout,
    limit (memory, cpu or file-size), output (the output cap), decode (a
    missing or malformed envelope), or result-size (the result was over its cap).
    """

    kind: str
    type: str
    message: str
    traceback: str = ""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    value: Any = None
    error: StageError | None = None


def _fail(kind: str, kind_type: str, message: str, traceback: str = "") -> Outcome:
    return Outcome(False, error=StageError(kind, kind_type, message, traceback))


def decode(done: Completed, language: str, result_cap: int, limit: str | None = None) -> Outcome:
    """What a finished stage process produced: a value, or why there is none.

    `limit` names the resource limit (memory, cpu, file-size) the run hit, if
    it hit one; a value that still came back (a child process was killed, the
    stage was not) wins over it.
    """
    if done.timed_out:
        return _fail("timeout", "Timeout", "the stage ran past its timeout and was killed")
    if done.output_exceeded:
        return _fail("output", "OutputLimit", "the stage wrote more than the output cap")
    if done.channel_exceeded:
        return _fail(
            "result-size",
            "ResultTooLarge",
            f"the result is larger than {result_cap} bytes; return less, "
            "or raise IPyRunner.max_result",
        )
    if done.cancelled:
        return _fail("signal", "Cancelled", "the stage was cancelled")
    outcome = _envelope(done.channel, language) if done.channel else None
    if outcome is not None and outcome.ok:
        return outcome
    limit = limit or limit_in_error(outcome.error if outcome else None)
    if limit is not None:
        error = outcome.error if outcome else None
        # A MemoryError often has no message: its type alone says it.
        said = f" ({error.type}{f': {error.message}' if error.message else ''})" if error else ""
        return _fail("limit", f"{limit} limit", f"the stage hit its {limit} limit{said}")
    if outcome is not None:
        return outcome
    if done.returncode < 0:
        return _fail(
            "signal",
            "Killed",
            f"the stage was {describe_returncode(done.returncode)} before returning a result",
        )
    return _fail(
        "exit",
        "Exit",
        f"the stage exited with status {done.returncode} without returning a result "
        "(sys.exit, os._exit, process.exit or exit in the cell ends it early)",
    )


def limit_in_error(error: StageError | None) -> str | None:
    """A limit the stage's own error reports: the language raised rather than died."""
    if error is None or error.kind != "raised":
        return None
    text = f"{error.type}: {error.message}"
    if error.type == "MemoryError" or any(w in text for w in MEMORY_WORDS):
        return "memory"
    if any(w in text for w in FILE_SIZE_WORDS):
        return "file-size"
    return None


# The bash wrapper embeds what `execute` printed, unchecked, between these.
_BASH_HEAD = b'{"value": '
_BASH_TAIL = b'\n, "ipyrunner": 1, "ok": true}'


def _frame(data: bytes) -> Outcome:
    try:
        return Outcome(True, decode_frame(data))
    except FrameError as exc:
        return _fail("decode", "ResultDecodeError", f"the DataFrame result: {exc}")


def _envelope(data: bytes, language: str) -> Outcome:
    if data.startswith(MAGIC):
        return _frame(data)
    try:
        envelope, non_finite = _strict_loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if language == "bash" and data.startswith(_BASH_HEAD) and data.endswith(_BASH_TAIL):
            printed = data[len(_BASH_HEAD) : -len(_BASH_TAIL)]
            return _fail(
                "decode",
                "ResultDecodeError",
                f"execute printed something that is not one JSON value: {printed[:80]!r}; "
                "print exactly one JSON value on stdout and send messages to >&2",
            )
        return _fail(
            "decode",
            "ResultDecodeError",
            f"the result channel did not hold valid JSON ({exc}); it began with {data[:80]!r}",
        )
    if (
        not isinstance(envelope, dict)
        or envelope.get("ipyrunner") != PROTOCOL
        or not isinstance(envelope.get("ok"), bool)
    ):
        return _fail(
            "decode",
            "ResultDecodeError",
            f"the result channel held JSON that is not an ipyrunner envelope: {data[:80]!r}",
        )
    if non_finite:
        return _refuse_non_finite(envelope, non_finite)
    if envelope["ok"]:
        return Outcome(True, envelope.get("value"))
    error = envelope.get("error")
    if not isinstance(error, dict):
        return _fail("decode", "ResultDecodeError", "an error envelope without its error")
    kind_type = str(error.get("type", "Error"))
    return _fail(
        "decode" if kind_type in ("ResultNotJSON", "ResultNotArrow") else "raised",
        kind_type,
        str(error.get("message", "")),
        str(error.get("traceback", "")),
    )


class _NotFinite(str):
    """A number JSON cannot hold, kept as its text until the decoder names its path."""


def _strict_loads(text: str) -> tuple[Any, list[str]]:
    """`json.loads`, and the numbers in `text` that JSON cannot hold.

    Python's json reads NaN, Infinity and -Infinity (none of them JSON) and
    turns 1e999 into inf; here each becomes a `_NotFinite` marker instead.
    """
    found: list[str] = []

    def constant(name: str) -> _NotFinite:
        found.append(name)
        return _NotFinite(name)

    def number(digits: str) -> float | _NotFinite:
        value = float(digits)
        if -_LARGEST <= value <= _LARGEST:  # no call per float: it runs for every one
            return value
        found.append(digits)
        return _NotFinite(digits)

    # Decoding makes no cycles: a collection while it builds a large value is waste.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(text, parse_constant=constant, parse_float=number), found
    finally:
        if enabled:
            gc.enable()


def _refuse_non_finite(envelope: dict[str, Any], found: list[str]) -> Outcome:
    # Where a duplicate key dropped the marker, the text alone is what is known.
    path, text = (
        _first_non_finite(envelope.get("value"), "result")
        or _first_non_finite(envelope, "the envelope")
        or ("the result channel", found[0])
    )
    said = (
        text if text in ("NaN", "Infinity", "-Infinity") else f"{text[:40]}, beyond a float's range"
    )
    return _fail(
        "decode",
        "ResultDecodeError",
        f"{path} is {said}, which JSON cannot hold; return finite numbers "
        "(null or a string for a missing or infinite value)",
    )


def _first_non_finite(value: Any, root: str) -> tuple[str, str] | None:
    """The path (written as python_stage.unserializable writes it) and text of the
    first `_NotFinite` in `value`; a loop, since a deep result must not recurse."""
    stack: list[tuple[Any, str]] = [(value, root)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, _NotFinite):
            return where, str(item)
        if isinstance(item, dict):
            children = [
                (v, f"{where}[{json.dumps(k, ensure_ascii=False)}]") for k, v in item.items()
            ]
        elif isinstance(item, list):
            children = [(v, f"{where}[{i}]") for i, v in enumerate(item)]
        else:
            continue
        stack += reversed(children)  # the first child is looked at first
    return None
