"""Runs one Python stage: `python python_stage.py CELL_FILE NAME` (the kernel
imports it instead, from bytecode it wrote: see `Language.command`).

The input arrives as JSON on stdin; the envelope leaves on the descriptor named
by IPYRUNNER_RESULT_FD, so whatever the cell prints never touches the result.
Only the wrapper's own process writes it: a child the cell forks that returns
from `execute` exits quietly instead of sending a second result. A pandas
DataFrame goes either way as Arrow IPC instead (in_sandbox/_arrow.py), and
`display()` sends on IPYRUNNER_DISPLAY_FD (in_sandbox/stage.py); both are
imported only when a cell uses them.
Standalone on purpose: it runs on any interpreter (venv, Nix), without
ipyrunner installed, and the kernel imports `unserializable` from it.
"""

import os
import sys

# Every import here is paid by every stage call, so the success path uses the
# C half of json only (json itself pulls in re, enum and functools) and no
# `from __future__`; what only an error needs is imported where it is needed.
try:
    from _json import encode_basestring_ascii, make_encoder, make_scanner

    ACCELERATED = True
except ImportError:  # an interpreter without CPython's accelerator: json's Python layer
    ACCELERATED = False

TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from collections.abc import Iterable
    from typing import Any, BinaryIO, NoReturn

PROTOCOL = 1
FRAME_MAGIC = b"\x00ipyrunner:arrow\n"  # in_sandbox/_arrow.py's MAGIC
MATPLOTLIB_BACKEND = "module://ipyrunner._agg"
# The display socket, the process that may use it, and (in a warm worker's
# import, before any call) the frames held for the call.
DISPLAY_FD: "int | None" = None
DISPLAY_OWNER: "int | None" = None
DISPLAY_HELD: "list[bytes] | None" = None
JSON_SCALARS = (str, int, float, bool, type(None))
_LEAVES = frozenset(JSON_SCALARS)
_WALKED = _LEAVES | {dict, list, tuple}
_DICT = frozenset((dict,))
_SEQUENCES = frozenset((list, tuple))


def unserializable(value: "Any", path: str) -> "tuple[str, str] | None":
    """The path and type name of the first value JSON cannot hold, if any."""
    try:
        return _walk(value, path, set())
    except RecursionError:
        return path, "structure nested too deeply"


def _walk(item: "Any", where: str, ancestors: "set[int]") -> "tuple[str, str] | None":
    if isinstance(item, float) and item - item != 0.0:  # NaN and the infinities
        return where, f"float {item!r}"
    if isinstance(item, JSON_SCALARS):
        return None
    if id(item) in ancestors:
        return where, "circular reference"
    if isinstance(item, dict):
        import json

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


def keys_are_str(value: "Any") -> bool:
    """Whether every dict in `value` has str keys only, which `json.dumps` does
    not check (it writes 1 as "1"). A level of the tree at a time, through C
    iterators: no Python code runs per item. False also where it cannot tell
    (a subclass of dict, list or a scalar): `unserializable` decides those.
    Call it on a value `json.dumps` took, so it has no cycle.
    """
    if type(value) in _LEAVES:
        return True
    from itertools import chain, compress

    level = [value]
    while level:
        types = list(map(type, level))
        kinds = set(types)
        if not kinds <= _WALKED:
            return False
        if kinds <= _LEAVES:
            return True
        dicts: Iterable[Any] = ()
        sequences: Iterable[Any] = ()
        if dict in kinds:
            dicts = (
                level if len(kinds) == 1 else list(compress(level, map(_DICT.__contains__, types)))
            )
            try:
                "".join(chain.from_iterable(dicts))  # raises TypeError at a key not a str
            except TypeError:
                return False
        if not kinds.isdisjoint(_SEQUENCES):
            sequences = (
                level
                if kinds <= _SEQUENCES
                else compress(level, map(_SEQUENCES.__contains__, types))
            )
        level = list(
            chain(chain.from_iterable(map(dict.values, dicts)), chain.from_iterable(sequences))
        )
    return True


_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": -float("inf")}


class _Plain:
    """What `_json.make_scanner` reads off a JSONDecoder: json.loads' defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


def loads(data: bytes) -> "Any":
    """`json.loads(data)`, through the C scanner alone when it can."""
    import gc  # built in: decoding makes no cycles, so collections during it are waste

    text = data.decode("utf-8")
    enabled = gc.isenabled()
    gc.disable()
    try:
        if ACCELERATED:
            bare = text.strip(" \t\n\r")  # the same object when there is nothing to strip
            try:
                # typeshed names the context's type after the scanner, which has the same fields
                value, end = make_scanner(_Plain)(bare, 0)  # type: ignore[arg-type]
            # Bad JSON (the scanner reports it only once json.decoder is imported,
            # else as a SystemError), or another Python's scanner: json's own answer.
            except (StopIteration, ValueError, RecursionError, SystemError, AttributeError):
                end = -1
            if end == len(bare):
                return value
        import json

        return json.loads(text)
    finally:
        if enabled:
            gc.enable()


def _not_json(item: "Any") -> "NoReturn":
    raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")


def dumps(value: "Any") -> bytes:
    """`json.dumps(value, allow_nan=False)` as ASCII bytes (escapes keep lone
    surrogates valid JSON), through the C encoder when there is one."""
    if ACCELERATED:
        try:  # json.encoder's own call; markers ({}) catch cycles
            encode = make_encoder(
                {}, _not_json, encode_basestring_ascii, None, ": ", ", ", False, False, False
            )
        except TypeError:  # another Python's signature
            pass
        else:
            return "".join(encode(value, 0)).encode("ascii")
    import json

    return json.dumps(value, allow_nan=False).encode("ascii")


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


def _error(kind: str, message: str, trace: str = "") -> "dict[str, Any]":
    return {
        "ipyrunner": PROTOCOL,
        "ok": False,
        "error": {"type": kind, "message": message, "traceback": trace},
    }


def _not_json_error(found: "tuple[str, str]") -> "dict[str, Any]":
    where, kind = found
    return _error(
        "ResultNotJSON",
        f"{where} is a {kind}, which JSON cannot hold; "
        "return dicts with str keys, lists, str, int, float, bool or None",
    )


def _is_frame(value: "Any") -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def inside(name: str) -> "Any":
    """`ipyrunner.NAME` as a stage sees it: a module of in_sandbox/ (see `_Finder`)."""
    return __import__(f"ipyrunner.{name}", fromlist=["_"])


def _frame_result(value: "Any") -> "tuple[bytes, bool]":
    try:
        codec = inside("_arrow")
    except ImportError as exc:  # a stage run without `prepare` (a test's)
        return dumps(_error("ResultNotArrow", f"the DataFrame cannot be sent: {exc}")), False
    try:
        return bytes(codec.write(value, "this stage's Python")), True
    except codec.FrameError as exc:
        return dumps(_error("ResultNotArrow", f"result {exc}")), False


def read_input(data: bytes) -> "Any":
    """The input: JSON, or a DataFrame the kernel sent as Arrow."""
    if data[:1] != FRAME_MAGIC[:1]:
        return loads(data)
    codec = inside("_arrow")
    try:
        return codec.read(data)
    except codec.FrameError as exc:
        raise RuntimeError(f"the input {exc}") from None


def encode_envelope(envelope: "dict[str, Any]") -> "tuple[bytes, bool]":
    """The envelope's bytes, and whether it still says ok: a value JSON cannot
    hold becomes a ResultNotJSON error naming where it is; a DataFrame goes as Arrow."""
    value = envelope.get("value")
    if envelope["ok"] and _is_frame(value):
        return _frame_result(value)
    try:
        data = dumps(envelope)
    except (ValueError, TypeError, RecursionError) as exc:  # NaN, a set, a cycle, deep nesting
        found = unserializable(value, "result")
        if found is None:  # an int too long to print, say
            return dumps(_error("ResultNotJSON", f"the result cannot be encoded: {exc}")), False
        return dumps(_not_json_error(found)), False
    found = None if keys_are_str(value) else unserializable(value, "result")
    if found is not None:
        return dumps(_not_json_error(found)), False
    return data, envelope["ok"]


def _compiled(cell_file: str, code: str, filename: str) -> "types.CodeType":
    # The kernel wrote CELL_FILE + "c" (the cell compiled by its own Python,
    # behind that Python's magic number) into a directory the stage cannot
    # write: it spares this process compile()'s one-time set-up (1.5-5 ms).
    try:
        with open(cell_file + "c", "rb") as handle:
            data = handle.read()
    except OSError:
        data = b""
    loader = sys.modules.get("_frozen_importlib_external")  # always loaded: no import
    magic = getattr(loader, "MAGIC_NUMBER", None)
    if magic and data[: len(magic)] == magic:
        import marshal  # built in

        compiled: types.CodeType = marshal.loads(data[len(magic) :])  # noqa: S302
        if compiled.co_filename == filename:
            return compiled
    return compile(code, filename, "exec", dont_inherit=True)


async def _awaited(value: "Any") -> "Any":
    return await value


def _run(cell_file: str, name: str) -> "dict[str, Any]":
    filename = f"<stage {name}>"
    with open(cell_file, encoding="utf-8") as handle:
        code = handle.read()
    module = type(sys)("__stage__")
    module.__file__ = filename
    sys.modules["__stage__"] = module
    sys.argv = [filename]
    try:
        payload = read_input(sys.stdin.buffer.read())
        exec(_compiled(cell_file, code, filename), module.__dict__)  # noqa: S102
        execute = module.__dict__.get("execute")
        if not callable(execute):
            return _error("NameError", "the cell defines no function execute(input)")
        value = execute(payload)
        if hasattr(value, "__await__"):
            import asyncio  # only async stages pay for the import

            value = asyncio.run(_awaited(value))
        return {"ipyrunner": PROTOCOL, "ok": True, "value": value}
    except Exception as exc:  # the stage's own failure becomes its result
        message = f"{exc.msg} (line {exc.lineno})" if isinstance(exc, SyntaxError) else str(exc)
        return _error(type(exc).__name__, message, _cell_frames(exc, filename, code))


def _leave_quietly(ok: bool) -> "NoReturn":
    # A child forked inside the cell got here by returning (or raising) from
    # execute: its result is not the stage's, and a second envelope on the
    # shared pipe would spoil the real one. Its output is kept, its exit
    # status still tells a cell that waits for it how it went.
    import contextlib

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken by the cell
            stream.flush()
    os._exit(0 if ok else 1)


class _Finder:
    """Inside a stage, `import ipyrunner` finds in_sandbox/ (display, the frame
    codec), and matplotlib, once imported, draws with ipyrunner's backend. One
    call per import until then: nothing is imported for it."""

    root = ""

    @classmethod
    def find_spec(cls, name: str, path: "Any" = None, target: "Any" = None) -> "Any":
        if name == "ipyrunner":
            external = sys.modules["_frozen_importlib_external"]
            return external.spec_from_file_location(
                name, cls.root + "/__init__.py", submodule_search_locations=[cls.root]
            )
        if name != "matplotlib":
            return None
        external = sys.modules["_frozen_importlib_external"]
        spec = external.PathFinder.find_spec(name, path)
        loader = getattr(spec, "loader", None)
        if loader is None or "MPLBACKEND" in os.environ:
            return spec
        run = loader.exec_module
        if "FONTCONFIG_FILE" not in os.environ and not os.path.exists("/etc/fonts/fonts.conf"):
            os.environ["FONTCONFIG_FILE"] = cls.root + "/fonts.conf"  # fc-list stays quiet

        def exec_module(module: "types.ModuleType") -> None:
            run(module)
            module.rcParams["backend"] = MATPLOTLIB_BACKEND

        loader.exec_module = exec_module
        return spec


def _display(*objs: "Any", **options: "Any") -> None:
    """IPython's `display`, a builtin in every stage (in_sandbox/stage.py's)."""
    inside("stage").display(*objs, **options)


def prepare(wrappers: str) -> None:
    """What a stage has that a plain script has not: `display` as a builtin,
    `ipyrunner.stage` to import, matplotlib showing its figures."""
    import builtins

    _Finder.root = wrappers + "/in_sandbox"
    sys.meta_path.insert(0, _Finder)
    builtins.display = _display  # type: ignore[attr-defined]


def connect_display(fd: int) -> None:
    """Displays go to `fd` from now on, from this process only."""
    global DISPLAY_FD, DISPLAY_OWNER
    DISPLAY_FD, DISPLAY_OWNER = fd, os.getpid()
    if DISPLAY_HELD:
        inside("stage").release_held()


def show_open_figures() -> None:
    """Figures still open when execute returns show, as a notebook cell's do."""
    if "matplotlib.pyplot" not in sys.modules:
        return
    try:
        inside("stage").show_figures()
    except Exception as exc:  # a picture that cannot be drawn leaves the result alone
        print(f"ipyrunner: the open figures could not be shown: {exc!r}", file=sys.stderr)


def main(wrappers: "str | None" = None) -> None:
    variable = os.environ.pop("IPYRUNNER_RESULT_FD", None)
    display = os.environ.pop("IPYRUNNER_DISPLAY_FD", None)
    if variable is None or len(sys.argv) != 3:
        print("usage: IPYRUNNER_RESULT_FD=N python_stage.py CELL_FILE NAME", file=sys.stderr)
        sys.exit(2)
    owner = os.getpid()
    fd = int(variable)
    os.set_inheritable(fd, False)  # programs the cell starts must not hold the result pipe
    channel: BinaryIO = os.fdopen(fd, "wb")
    prepare(wrappers or os.path.dirname(os.path.abspath(__file__)))
    if display is not None:
        os.set_inheritable(int(display), False)
        connect_display(int(display))
    envelope = _run(sys.argv[1], sys.argv[2])
    if os.getpid() != owner:
        _leave_quietly(envelope["ok"])
    show_open_figures()
    data, ok = encode_envelope(envelope)
    channel.write(data)
    channel.close()
    sys.stdout.flush()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
