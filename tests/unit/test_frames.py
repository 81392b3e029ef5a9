"""DataFrames as Arrow IPC, both ways: types, index and names kept; what cannot
cross names its column; what a stage sends is read as flat Arrow and nothing more."""

from __future__ import annotations

import builtins
import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ipyrunner.errors import InvalidOption
from ipyrunner.process import Completed
from ipyrunner.stages.envelope import decode
from ipyrunner.stages.frames import MAGIC, FrameError, decode_frame, encode_frame
from ipyrunner.stages.result import StageResult
from ipyrunner.stages.stage import encode_input
from ipyrunner.stages.wrappers.in_sandbox import _arrow


def round_trip(frame: pd.DataFrame) -> pd.DataFrame:
    back = decode_frame(encode_frame(frame))
    assert isinstance(back, pd.DataFrame)
    return back


def stream(table: pa.Table, **options: Any) -> bytes:
    sink = pa.BufferOutputStream()
    sink.write(MAGIC)
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(**options)) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def test_types_index_and_names_survive_the_round_trip() -> None:
    frame = pd.DataFrame(
        {
            "int": np.arange(4, dtype="int64"),
            "small": np.arange(4, dtype="uint8"),
            "float": [0.5, np.nan, 2.0, -1e300],
            "flag": [True, False, True, False],
            "text": ["a", "é", None, "d"],
            "when": pd.to_datetime(["2024-01-01", None, "2024-03-01", "2024-04-01"]),
            "aware": pd.date_range("2024-01-01", periods=4, tz="Europe/Paris"),
            "span": pd.to_timedelta([1, 2, 3, 4], unit="s"),
            "kind": pd.Categorical(["x", "y", "x", "z"]),
            "nullable": pd.array([1, None, 3, 4], dtype="Int64"),
            "day": [dt.date(2024, 1, d) for d in range(1, 5)],
        },
        index=pd.Index([10, 20, 30, 40], name="key"),
    )
    frame.columns.name = "fields"
    back = round_trip(frame)
    pd.testing.assert_frame_equal(back, frame)
    assert back.index.name == "key"
    assert back.columns.name == "fields"
    assert back["kind"].dtype == "category"
    assert back["aware"].dtype == frame["aware"].dtype
    assert str(back["nullable"].dtype) == "Int64"


def test_a_multi_index_and_non_string_column_names_survive() -> None:
    index = pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)], names=["letter", "n"])
    frame = pd.DataFrame({0: [1.0, 2.0, 3.0], 1: ["x", "y", "z"]}, index=index)
    back = round_trip(frame)
    pd.testing.assert_frame_equal(back, frame)
    assert list(back.columns) == [0, 1]


def test_a_range_index_and_an_empty_frame_survive() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3]}, index=pd.RangeIndex(5, 11, 2))
    pd.testing.assert_frame_equal(round_trip(frame), frame)
    empty = pd.DataFrame({"a": pd.Series([], dtype="float64")})
    pd.testing.assert_frame_equal(round_trip(empty), empty)


@pytest.mark.parametrize(
    ("column", "said"),
    [
        ([{1}, {2}], "column 'bad'"),
        ([[1, 2], [3]], "column 'bad' is of type list"),
        ([{"a": 1}, {"a": 2}], "column 'bad' is of type struct"),
        ([object(), object()], "column 'bad' holds object values"),
        (pd.period_range("2024-01", periods=2, freq="M"), "column 'bad' is of type extension"),
        (pd.arrays.IntervalArray.from_breaks([0, 1, 2]), "column 'bad' is of type extension"),
    ],
)
def test_a_column_that_cannot_cross_is_named(column: Any, said: str) -> None:
    frame = pd.DataFrame({"fine": [1, 2], "bad": column})
    with pytest.raises(InvalidOption, match=said):
        encode_input(frame)
    with pytest.raises(FrameError, match=said):
        _arrow.write(frame)


def test_duplicate_column_names_are_refused_by_name() -> None:
    frame = pd.DataFrame([[1, 2]], columns=["x", "x"])
    with pytest.raises(InvalidOption, match="column 'x' appears more than once"):
        encode_input(frame)


def test_a_frame_result_decodes_to_a_value_and_an_unsupported_one_names_the_column() -> None:
    frame = pd.DataFrame({"a": [1, 2]})
    done = Completed(("stage",), 0, "", "", 0.1, channel=encode_frame(frame))
    outcome = decode(done, "python", result_cap=1 << 20)
    assert outcome.ok
    pd.testing.assert_frame_equal(outcome.value, frame)

    nested = pa.table({"ok": [1, 2], "deep": [[1], [2, 3]]})
    done = Completed(("stage",), 0, "", "", 0.1, channel=stream(nested))
    outcome = decode(done, "python", result_cap=1 << 20)
    assert outcome.error is not None
    assert outcome.error.kind == "decode"
    assert "column 'deep' is of type list<item: int64>" in outcome.error.message


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressed_buffers_are_refused(codec: str) -> None:
    """Zeros compressed to a fraction of their size: the kernel never unpacks them."""
    table = pa.table({"zeros": np.zeros(100_000, dtype="int64"), "k": ["a"] * 100_000})
    data = stream(table, compression=codec)
    assert len(data) < len(stream(table)) / 2
    with pytest.raises(FrameError, match="compressed"):
        decode_frame(data)


def test_compressed_dictionaries_are_refused_too() -> None:
    frame = pd.DataFrame({"c": pd.Categorical(["u", "v"] * 1000)})
    data = stream(pa.Table.from_pandas(frame), compression="zstd")
    with pytest.raises(FrameError, match="compressed"):
        decode_frame(data)


def test_the_compression_flag_is_read_from_each_message() -> None:
    table = pa.Table.from_pandas(pd.DataFrame({"c": pd.Categorical(["u", "v"])}))
    for options, expected in (({}, False), ({"compression": "zstd"}, True)):
        messages = pa.ipc.MessageReader.open_stream(
            pa.py_buffer(stream(table, **options)).slice(len(MAGIC))
        )
        flags = {m.type: _arrow.compressed(m.metadata.to_pybytes()) for m in messages}
        assert flags == {"schema": False, "dictionary": expected, "record batch": expected}
    assert _arrow.compressed(b"\x01")  # unreadable: refused


@pytest.mark.parametrize(
    "data",
    [MAGIC, MAGIC + b"garbage", MAGIC + b"\xff\xff\xff\xff\x10\x00\x00\x00" + b"\x00" * 8],
)
def test_a_damaged_stream_is_a_frame_error(data: bytes) -> None:
    with pytest.raises(FrameError):
        decode_frame(data)


def test_an_extension_type_from_a_stage_is_refused_before_it_is_read() -> None:
    class Secret(pa.ExtensionType):  # type: ignore[misc]  # pyarrow ships no annotations
        def __init__(self) -> None:
            super().__init__(pa.int64(), "ipyrunner.test.secret")

        def __arrow_ext_serialize__(self) -> bytes:
            return b""

        @classmethod
        def __arrow_ext_deserialize__(cls, storage_type: Any, serialized: bytes) -> Secret:
            return Secret()

    storage = pa.array([1, 2], pa.int64())
    table = pa.table({"x": pa.ExtensionArray.from_storage(Secret(), storage)})
    pa.register_extension_type(Secret())
    try:
        data = stream(table)
        with pytest.raises(FrameError, match="column 'x' is of type extension"):
            decode_frame(data)
    finally:
        pa.unregister_extension_type("ipyrunner.test.secret")


def test_without_pyarrow_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pyarrow":
            raise ImportError("No module named 'pyarrow'", name="pyarrow")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(InvalidOption, match=r"no pyarrow; pip install 'ipyrunner\[dataframes\]'"):
        encode_input(pd.DataFrame({"a": [1]}))
    with pytest.raises(FrameError, match=r"ipyrunner\[dataframes\]"):
        decode_frame(MAGIC)


def test_other_values_stay_json() -> None:
    assert encode_input({"a": [1, 2]}) == b'{"a":[1,2]}'
    assert encode_input(pd.Series([1]).tolist()) == b"[1]"


def test_a_result_holding_a_frame_shows_pandas_own_html() -> None:
    frame = pd.DataFrame({"name": ["<b>x</b>"], "n": [1]})
    result = StageResult(frame, "", "", 0, 0.1, 1, False, isolation="bwrap")
    assert "DataFrame, 1 rows, 2 columns" in repr(result)
    html = result._repr_html_()
    assert 'class="dataframe"' in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
