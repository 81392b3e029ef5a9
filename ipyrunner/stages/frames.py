"""pandas DataFrames across the sandbox boundary, the kernel's side: a frame input
goes in as Arrow IPC, a frame result is read back with pyarrow alone, checked
(flat column types, uncompressed buffers); the codec is wrappers/in_sandbox/_arrow.py."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidOption
from .wrappers.in_sandbox._arrow import MAGIC, FrameError, is_frame, read_checked, write

__all__ = ["MAGIC", "FrameError", "decode_frame", "encode_frame", "is_frame"]


def encode_frame(frame: Any) -> bytes:
    """A DataFrame input as the bytes a stage reads, or an `InvalidOption` saying why not."""
    try:
        return bytes(write(frame, "the kernel"))
    except FrameError as exc:
        raise InvalidOption(f"the input {exc}") from None


def decode_frame(data: bytes) -> Any:
    """The DataFrame a stage returned; a `FrameError` names what is wrong with it."""
    return read_checked(data)
