"""pandas DataFrames as Apache Arrow IPC streams, both ways, with pyarrow alone.

A frame travels as MAGIC and one IPC stream: its columns, and pandas' own
metadata (index, column names, dtypes) as JSON in the schema; nothing is
pickled. Only flat column types cross; `unsupported` names the first that is
not. The kernel reads what a stage sends with `read_checked`: uncompressed
buffers only, so a small result can never unpack into a large one.
Standalone: the sandbox imports it as `ipyrunner._arrow`, the kernel from the package.
"""

from __future__ import annotations

import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAGIC = b"\x00ipyrunner:arrow\n"
INSTALL = "pip install 'ipyrunner[dataframes]' (pandas and pyarrow)"


class FrameError(ValueError):
    """A frame that cannot cross: its message says which column and why."""


def is_frame(value: Any) -> bool:
    """True for a pandas DataFrame (without importing pandas where it is not loaded)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _pyarrow(where: str) -> Any:
    try:
        import pandas  # noqa: F401
        import pyarrow
    except ImportError as exc:
        raise FrameError(
            f"a DataFrame crosses as Arrow, but {where} has no {exc.name}; {INSTALL}"
        ) from None
    return pyarrow


def _flat(pa: Any, kind: Any) -> bool:
    types = pa.types
    if types.is_dictionary(kind):
        return bool(types.is_integer(kind.index_type)) and _flat(pa, kind.value_type)
    return any(
        check(kind)
        for check in (
            *(types.is_null, types.is_boolean, types.is_integer, types.is_floating),
            *(types.is_decimal, types.is_string, types.is_large_string, types.is_binary),
            *(types.is_large_binary, types.is_fixed_size_binary, types.is_date),
            *(types.is_time, types.is_timestamp, types.is_duration),
        )
    )


def unsupported(schema: Any) -> tuple[str, str] | None:
    """The name and Arrow type of the first column ipyrunner does not carry, if any."""
    import pyarrow as pa

    for field in schema:
        if isinstance(field.type, pa.ExtensionType) or not _flat(pa, field.type):
            return field.name, str(field.type)
    return None


def _refused(name: str, kind: str) -> FrameError:
    return FrameError(
        f"column {name!r} is of type {kind}, which a DataFrame crossing as Arrow may not "
        "hold; use numbers, strings, booleans, dates, times or categories"
    )


def write(frame: Any, where: str = "this Python") -> Any:
    """MAGIC and the frame as one IPC stream (a pyarrow Buffer), or a FrameError."""
    pa = _pyarrow(where)
    try:
        table = pa.Table.from_pandas(frame, preserve_index=None)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise _unconvertible(pa, frame, exc) from None
    found = unsupported(table.schema)
    if found is not None:
        raise _refused(*found)
    sink = pa.BufferOutputStream()
    sink.write(MAGIC)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _unconvertible(pa: Any, frame: Any, exc: Exception) -> FrameError:
    for name in frame.columns:
        column = frame[name]
        if getattr(column, "ndim", 1) != 1:
            return FrameError(f"column {name!r} appears more than once; give columns unique names")
        try:
            pa.array(column, from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):
            kinds = sorted({type(v).__name__ for v in column.head(100)})
            return FrameError(
                f"column {name!r} holds {', '.join(kinds)} values, which Arrow cannot hold; "
                "use numbers, strings, booleans, dates, times or categories"
            )
    return FrameError(f"the DataFrame cannot be written as Arrow: {exc}")


def read(data: Any) -> Any:
    """The DataFrame in `data` (MAGIC and an IPC stream), trusted: the kernel sent it."""
    pa = _pyarrow("this stage's Python")
    buffer = pa.py_buffer(data).slice(len(MAGIC))
    return pa.ipc.open_stream(buffer).read_all().to_pandas()


def read_checked(data: bytes) -> Any:
    """The DataFrame a stage sent, read as nothing more than flat Arrow columns."""
    pa = _pyarrow("the kernel")
    buffer = pa.py_buffer(data).slice(len(MAGIC))
    try:
        for message in pa.ipc.MessageReader.open_stream(buffer):
            if message.type in ("record batch", "dictionary") and compressed(
                message.metadata.to_pybytes()
            ):
                raise FrameError("the frame's Arrow buffers are compressed, which is refused")
        reader = pa.ipc.open_stream(buffer)
        found = unsupported(reader.schema)
        if found is not None:
            raise _refused(*found)
        table = reader.read_all()
    except pa.ArrowException as exc:
        raise FrameError(f"the result is not a valid Arrow stream: {exc}") from None
    try:
        return table.to_pandas()
    except (pa.ArrowException, TypeError, ValueError, KeyError, IndexError) as exc:
        raise FrameError(f"the Arrow stream cannot be made a DataFrame: {exc}") from None


_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")


def _field(data: bytes, table: int, index: int) -> int:
    """The position of field `index` of the flatbuffer table at `table`, 0 if absent."""
    vtable = table - _I32.unpack_from(data, table)[0]
    size = _U16.unpack_from(data, vtable)[0]
    if 4 + 2 * index + 2 > size:
        return 0
    offset = _U16.unpack_from(data, vtable + 4 + 2 * index)[0]
    return table + offset if offset else 0


def _child(data: bytes, table: int, index: int) -> int:
    at = _field(data, table, index)
    return at + _U32.unpack_from(data, at)[0] if at else 0


def compressed(metadata: bytes) -> bool:
    """Whether an Arrow IPC message (its flatbuffer) says its body is compressed.

    Message: header_type is field 1, header field 2; a DictionaryBatch (2) holds
    its RecordBatch in field 1; a RecordBatch (3) names its compression in field 3.
    An unreadable message counts as compressed: it is refused.
    """
    try:
        message = _U32.unpack_from(metadata, 0)[0]
        kind_at = _field(metadata, message, 1)
        kind = metadata[kind_at] if kind_at else 0
        header = _child(metadata, message, 2)
        if kind == 2 and header:
            header = _child(metadata, header, 1)
        elif kind != 3:
            return False
        return not header or bool(_field(metadata, header, 3))
    except (struct.error, IndexError):
        return True
