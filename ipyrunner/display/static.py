"""What stays of a finished run's display: HTML and text/plain, readable without a
kernel or a widget model (a reopened notebook, nbconvert, GitHub)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from ..sinks import RunStatus
from .meter import Counts
from .tail import LOG_STYLE, Piece, Tail

# The output area keeps this height and shows its newest line: a column-reverse
# box is scrolled to its end, and stays there as it grows, without a script.
AREA_STYLE = (
    "max-height:22em;overflow:auto;display:flex;flex-direction:column-reverse;margin:0.2em 0"
)
_MONO = "font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,13px)"
_PRE = f"margin:0;white-space:pre-wrap;word-break:break-all;{_MONO}"
_STDERR = "background:var(--jp-rendermime-error-background,#fdd)"
_ERROR = "color:var(--jp-error-color1,#d32f2f)"
_WARNING = "color:var(--jp-warn-color1,#e65100)"
_IMAGES = ("image/png", "image/jpeg", "image/gif")


def status_html(status: RunStatus | None, text: str) -> str:
    """The status line: red once a run ended badly, "unsandboxed" marked as a warning."""
    style = _MONO
    if status is not None and status.finished and status.state not in ("succeeded", "done"):
        style += f";{_ERROR}"
    line = html.escape(text)
    if status is not None and "unsandboxed" in status.note:
        line = line.replace(
            "unsandboxed", f'<span style="{_WARNING};font-weight:bold">&#9888; unsandboxed</span>'
        )
    return f'<span style="{style}">{line}</span>'


def counts_html(counts: Counts, elapsed_s: float) -> str:
    """A finished map's bar as static HTML: the bar, and tqdm's count line."""
    share = counts.done / counts.total if counts.total else 1.0
    colour = "#2e7d32" if counts.style() == "success" else "#c62828" if not counts.ok else "#1976d2"
    left, right = counts.split(elapsed_s)
    bar = (
        '<span style="display:inline-block;width:14em;height:0.9em;vertical-align:middle;'
        'background:var(--jp-layout-color3,#ddd);margin:0 0.4em">'
        f'<span style="display:block;height:100%;width:{100 * share:.1f}%;background:{colour}">'
        "</span></span>"
    )
    return f'<div style="{_MONO}">{html.escape(left)}{bar}{html.escape(right)}</div>'


def piece_html(piece: Piece) -> str:
    if piece.bundle is not None:
        return bundle_html(piece.bundle.data)
    text = html.escape(piece.text)
    if piece.kind == "stderr":
        return f'<span style="{_STDERR}">{text}</span>'
    if piece.kind == "log":
        return f'<span style="{LOG_STYLE}">{text}</span>'
    return text


def bundle_html(data: Mapping[str, Any]) -> str:
    """A rich display inside the kept log: a picture as itself, checked HTML as it
    is, anything else as its text."""
    for mime in _IMAGES:
        if isinstance(data.get(mime), str):
            return f'<img src="data:{mime};base64,{data[mime]}" style="max-width:100%">'
    if isinstance(data.get("text/html"), str):
        return f'<div style="white-space:normal">{data["text/html"]}</div>'
    plain = data.get("text/plain")
    return html.escape(plain if isinstance(plain, str) else f"<{', '.join(sorted(data))}>")


def tail_html(tail: Tail) -> str:
    if not tail.pieces() and not tail.notice():
        return ""
    notice = f'<span style="{LOG_STYLE}">{html.escape(tail.notice())}</span>'
    body = notice + "".join(piece_html(piece) for piece in tail.pieces())
    return f'<div style="{AREA_STYLE}"><pre style="{_PRE}">{body}</pre></div>'


def final_bundle(
    status: RunStatus | None,
    status_text: str,
    tail: Tail,
    counts: Counts | None,
    elapsed_s: float,
) -> dict[str, str]:
    """The bundle a finished view is replaced by: no widget in it."""
    parts_html = []
    parts_text = []
    if status is not None:
        parts_html.append(f"<div>{status_html(status, status_text)}</div>")
        parts_text.append(status_text)
    if counts is not None:
        parts_html.append(counts_html(counts, elapsed_s))
        parts_text.append(counts.meter(elapsed_s))
    if kept := tail_html(tail):
        parts_html.append(kept)
        parts_text.append(tail.text().rstrip("\n"))
    return {
        "text/html": f'<div class="ipyrunner-log">{"".join(parts_html)}</div>',
        "text/plain": "\n".join(part for part in parts_text if part) + "\n",
    }
