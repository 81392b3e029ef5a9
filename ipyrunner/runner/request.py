"""A run as a value, handed to a `Runner`; one attempt/retry/result pipeline for all.

A `RunRequest` says what to start, with what, under which options; a runner
carries it (the one-shot runner: private directories, the sandbox, one process;
the warm pool: a fork of an already-started sandboxed worker). Scripts and
stages both go through `run_request`, which retries as the request's policy
says and reports each attempt on the sink.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from ..effects import Effects
from ..environment import child_environment, private_dirs
from ..options import RunOptions
from ..process import ChannelSpec
from ..retry import run_reported
from ..sandbox.isolation import Attempted, RunNeeds, run_isolated
from ..sinks import Sink

J = TypeVar("J")


@dataclass(frozen=True)
class RunRequest:
    """Everything one run needs, merged and validated before it starts."""

    label: str
    argv: tuple[str, ...]
    project: Path
    effects: Effects
    options: RunOptions
    forward: Mapping[str, str] = field(default_factory=dict)  # --env NAME=VALUE
    runtime_paths: tuple[str, ...] = ()  # the interpreter's installation, read-only
    readable: tuple[str, ...] = ()  # the program's own files, read-only
    # Writes the program's files into an attempt's private directory and returns
    # the arguments that name them (a stage's cell); None: the argv is complete.
    program: Callable[[Path], tuple[str, ...]] | None = None
    private_cwd: bool = False  # start in the private working directory, not the project
    stdin: bytes | None = None
    channel: ChannelSpec | None = None


class Runner(Protocol):
    """Carries a request through one attempt."""

    def run(
        self, request: RunRequest, *, sink: Sink, cancel: threading.Event | None = None
    ) -> Attempted: ...


class OneShotRunner:
    """A fresh sandbox and process per attempt, its private directories removed after."""

    def run(
        self, request: RunRequest, *, sink: Sink, cancel: threading.Event | None = None
    ) -> Attempted:
        with private_dirs() as dirs:
            code = dirs.root / "program"
            code.mkdir()
            extra = request.program(code) if request.program is not None else ()
            needs = RunNeeds(
                argv=(*request.argv, *extra),
                env=child_environment(dirs, request.project, request.forward),
                project=request.project,
                dirs=dirs,
                effects=request.effects,
                runtime_paths=request.runtime_paths,
                readable=(*((str(code),) if request.program else ()), *request.readable),
                cwd=dirs.work if request.private_cwd else None,
            )
            return run_isolated(
                needs,
                request.options,
                sink=sink,
                stdin=request.stdin,
                channel=request.channel,
                cancel=cancel,
            )


ONE_SHOT = OneShotRunner()


def run_request(
    request: RunRequest,
    sink: Sink,
    *,
    judge: Callable[[Attempted], J],
    retryable: Callable[[J], bool],
    failure: Callable[[J], str],
    runner: Runner = ONE_SHOT,
    cancel: threading.Event | None = None,
) -> tuple[J, int, float]:
    """Run `request` on `runner`, retried while `retryable(judge(attempt))`.

    `judge` turns an attempt into what the caller decides on (a script keeps the
    attempt; a stage decodes its result); returns the last judgement, the
    attempts made and the seconds the whole run took.
    """

    def attempt(number: int) -> J:
        return judge(runner.run(request, sink=sink, cancel=cancel))

    return run_reported(
        request.label, sink, request.options.retry, attempt, retryable=retryable, failure=failure
    )
