"""The HTML face of a result object, shared by `RunResult` and `StageResult`."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

_TAIL = 4000


def _tail(text: str) -> str:
    if len(text) <= _TAIL:
        return text
    return f"… {len(text) - _TAIL} characters before this …\n{text[-_TAIL:]}"


def render_result_html(
    title: str,
    ok: bool,
    facts: Sequence[tuple[str, str]],
    streams: Sequence[tuple[str, str]],
    warning: str = "",
) -> str:
    """A compact card: title, status colour, key facts, collapsible output tails."""
    colour = "#2e7d32" if ok else "#c62828"
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{escape(k)}</th>"
        f"<td style='text-align:left'>{escape(v)}</td></tr>"
        for k, v in facts
    )
    blocks = "".join(
        f"<details{' open' if name == 'stderr' and not ok else ''}>"
        f"<summary>{escape(name)} ({len(text)} characters)</summary>"
        f"<pre style='max-height:20em;overflow:auto'>{escape(_tail(text))}</pre></details>"
        for name, text in streams
        if text
    )
    notice = f"<div style='color:#e65100'>&#9888; {escape(warning)}</div>" if warning else ""
    return (
        f"<div style='border-left:4px solid {colour};padding-left:0.6em'>"
        f"<b>{escape(title)}</b>{notice}<table>{rows}</table>{blocks}</div>"
    )
