"""`display()` inside a stage, as IPython's: an object's rich representations
go to the notebook, in order with what the stage prints.

Each display is one frame on the display socket the kernel gave the stage
(python_stage.DISPLAY_FD), and waits for the kernel's answer, so the text
printed before it shows before it. The kernel checks every frame: nothing here
is trusted, this only packs. Without a socket (a warm worker importing the
cell) frames are held and sent when a call starts.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Bundle = tuple[dict[str, Any], dict[str, Any]]

# Rich representations, as IPython's formatters look for them.
REPRS = (
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("image/svg+xml", "_repr_svg_"),
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("application/json", "_repr_json_"),
)
BINARY = ("image/png", "image/jpeg")
HOLD_LIMIT = 16 << 20


def display(
    *objs: Any, raw: bool = False, metadata: dict[str, Any] | None = None, **_: Any
) -> None:
    """Show each of `objs` in the notebook (with `raw=True`, each is a MIME bundle)."""
    for obj in objs:
        data: dict[str, Any]
        meta: dict[str, Any]
        if raw and isinstance(obj, dict):
            data, meta = dict(obj), {}
        else:
            data, meta = mimebundle(obj)
        meta.update(metadata or {})
        send(data, meta)


def mimebundle(obj: Any) -> Bundle:
    """`obj`'s representations: a figure as PNG, else its `_repr_*_` methods, and repr."""
    data: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    figure = sys.modules.get("matplotlib.figure")
    if figure is not None and isinstance(obj, figure.Figure):
        data["image/png"] = _figure_png(obj)
    elif not isinstance(obj, type):  # a class's _repr_*_ are unbound methods
        bundle = _call(obj, "_repr_mimebundle_", include=None, exclude=None)
        if isinstance(bundle, tuple) and len(bundle) == 2:
            bundle, given = bundle
            meta.update(given if isinstance(given, dict) else {})
        if isinstance(bundle, dict):
            data.update(bundle)
        for mime, name in REPRS:
            if mime in data:
                continue
            value = _call(obj, name)
            if isinstance(value, tuple) and len(value) == 2:
                value, given = value
                if isinstance(given, dict):
                    meta[mime] = given
            if value is not None:
                data[mime] = value
    if "text/plain" not in data:
        data["text/plain"] = _repr(obj)
    return data, meta


def _call(obj: Any, name: str, **options: Any) -> Any:
    method = getattr(obj, name, None)
    if not callable(method):
        return None
    try:
        return method(**options)
    except Exception as exc:  # as IPython does: that representation is left out
        print(f"ipyrunner: {type(obj).__name__}.{name} raised {exc!r}", file=sys.stderr)
        return None


def _repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception as exc:
        return f"<{type(obj).__name__} whose repr raised {type(exc).__name__}>"


def _figure_png(figure: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _encode(data: dict[str, Any], meta: dict[str, Any]) -> bytes:
    packed: dict[str, Any] = {}
    for mime, value in data.items():
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = (
                binascii.b2a_base64(bytes(value), newline=False).decode("ascii")
                if mime in BINARY
                else bytes(value).decode("utf-8", "replace")
            )
        packed[str(mime)] = value
    try:
        return json.dumps({"data": packed, "metadata": meta}, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError):  # a _repr_json_ JSON cannot hold
        plain = packed.get("text/plain")
        text = plain if isinstance(plain, str) else "<a display JSON cannot hold>"
        return json.dumps({"data": {"text/plain": text}, "metadata": {}}).encode()


def _wrapper() -> Any:
    return sys.modules.get("python_stage")


def send(data: dict[str, Any], meta: dict[str, Any]) -> None:
    """One display: sent now, held (a worker's import), or printed (no kernel)."""
    frame = _encode(data, meta)
    wrapper = _wrapper()
    fd = getattr(wrapper, "DISPLAY_FD", None)
    held = getattr(wrapper, "DISPLAY_HELD", None)
    if fd is None and isinstance(held, list):
        if sum(map(len, held)) + len(frame) <= HOLD_LIMIT:
            held.append(frame)
        else:
            print("ipyrunner: display at import not shown: too large", file=sys.stderr)
        return
    if fd is None:
        text = data.get("text/plain")
        print(text if isinstance(text, str) else "<a display>")
        return
    if os.getpid() != getattr(wrapper, "DISPLAY_OWNER", None):
        print("ipyrunner: display() in a process the stage forked is not shown", file=sys.stderr)
        return
    _send(fd, frame)


def release_held() -> None:
    """Send what was displayed while no call was there (a worker's import)."""
    wrapper = _wrapper()
    held = getattr(wrapper, "DISPLAY_HELD", None) or []
    wrapper.DISPLAY_HELD = None
    for frame in held:
        _send(wrapper.DISPLAY_FD, frame)


_LOCK: list[Any] = []


def _send(fd: int, frame: bytes) -> None:
    import _thread

    if not _LOCK:
        _LOCK.append(_thread.allocate_lock())
    for stream in (sys.stdout, sys.stderr):  # what was printed first shows first
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    with _LOCK[0]:
        try:
            view = memoryview(len(frame).to_bytes(4, "big") + frame)
            while view:
                view = view[os.write(fd, view) :]
            os.read(fd, 1)  # the kernel's answer: it has shown it
        except OSError:  # the kernel is gone (the run is ending): nothing to show it to
            pass


def show_figures() -> None:
    """Show every open matplotlib figure, then close it (as a notebook's inline
    backend does at a cell's end, and at `plt.show()`)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    from matplotlib._pylab_helpers import Gcf

    for manager in Gcf.get_all_fig_managers():
        try:
            display(manager.canvas.figure)
        except Exception as exc:
            print(f"ipyrunner: a figure could not be shown: {exc!r}", file=sys.stderr)
    pyplot.close("all")
