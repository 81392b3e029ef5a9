"""The faces of a result object, shared by `RunResult` and `StageResult`."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from html import escape
from typing import Protocol

_TAIL = 4000


class Reported(Protocol):
    """What every result says about its run."""

    @property
    def label(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def outcome(self) -> str: ...
    @property
    def returncode(self) -> int: ...
    @property
    def attempts(self) -> int: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def isolation(self) -> str: ...
    @property
    def host_network(self) -> bool: ...
    @property
    def truncated(self) -> bool: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


def describe_returncode(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit {returncode}"


HOST_NETWORK_WARNING = (
    "shared the host's network (host-network): services on the host's loopback were reachable"
)


def isolation_warning(isolation: str, host_network: bool = False) -> str:
    """What a result must say on its face about how it was (not) sandboxed."""
    if isolation == "bwrap":
        return HOST_NETWORK_WARNING if host_network else ""
    if isolation == "unavailable":
        return "ran unsandboxed: bubblewrap is unusable here (python -m ipyrunner doctor)"
    return "ran unsandboxed (--isolate none)"


def isolation_note(result: Reported) -> str:
    """The word or two a one-line view of `result` adds about its sandbox."""
    if result.isolation != "bwrap":
        return "unsandboxed"
    return "host network" if result.host_network else ""


def _tail(text: str) -> str:
    if len(text) <= _TAIL:
        return text
    return f"… {len(text) - _TAIL} characters before this …\n{text[-_TAIL:]}"


def render_result_html(
    kind: str,
    result: Reported,
    facts: Sequence[tuple[str, str]] = (),
    streams: Sequence[tuple[str, str]] = (),
) -> str:
    """A compact card: title, status colour, key facts, collapsible output tails."""
    ok = result.ok
    colour = "#2e7d32" if ok else "#c62828"
    facts = [
        ("outcome", result.outcome),
        *facts,
        ("exit", describe_returncode(result.returncode)),
        ("attempts", str(result.attempts)),
        ("duration", f"{result.duration_s:.2f} s"),
        ("isolation", result.isolation),
    ]
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{escape(k)}</th>"
        f"<td style='text-align:left'>{escape(v)}</td></tr>"
        for k, v in facts
    )
    shown = [*streams, ("stdout", result.stdout), ("stderr", result.stderr)]
    blocks = "".join(
        f"<details{' open' if name in ('stderr', 'traceback') and not ok else ''}>"
        f"<summary>{escape(name)} ({len(text)} characters)</summary>"
        f"<pre style='max-height:20em;overflow:auto'>{escape(_tail(text))}</pre></details>"
        for name, text in shown
        if text
    )
    warning = isolation_warning(result.isolation, result.host_network)
    notice = f"<div style='color:#e65100'>&#9888; {escape(warning)}</div>" if warning else ""
    return (
        f"<div style='border-left:4px solid {colour};padding-left:0.6em'>"
        f"<b>{escape(kind)} {escape(result.label)}</b>{notice}<table>{rows}</table>"
        f"{blocks}</div>"
    )
