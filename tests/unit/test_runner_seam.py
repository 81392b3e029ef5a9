"""The runner seam: a request handed to a runner, one pipeline (no process spawned)."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from ipyrunner.config import IPyRunner
from ipyrunner.effects import PURE
from ipyrunner.options import RunOptions
from ipyrunner.process import Completed
from ipyrunner.runner.request import RunRequest, run_request
from ipyrunner.sandbox.isolation import Attempted
from ipyrunner.sinks import DisplayBundle, RunStatus, Sink, Stream


class Recorder(Sink):
    def __init__(self) -> None:
        self.states: list[RunStatus] = []

    def write(self, stream: Stream, text: str) -> None:
        pass

    def display(self, bundle: DisplayBundle) -> None:
        pass

    def status(self, status: RunStatus) -> None:
        self.states.append(status)


class Scripted:
    """A runner that answers from a list: what each attempt returns."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.seen: list[RunRequest] = []

    def run(
        self, request: RunRequest, *, sink: Sink, cancel: threading.Event | None = None
    ) -> Attempted:
        self.seen.append(request)
        code = self.codes[len(self.seen) - 1]
        return Attempted(Completed(request.argv, code, "", "", 0.01), "bwrap", None)


def request(retries: int) -> RunRequest:
    settings = IPyRunner(retries=retries, backoff_initial=0.0, backoff_jitter=0.0)
    return RunRequest(
        label="job", argv=("prog",), project=Path("/"), effects=PURE,
        options=RunOptions.from_settings(settings),
    )  # fmt: skip


def test_one_request_is_retried_by_its_own_policy_on_any_runner() -> None:
    runner = Scripted([1, 1, 0])
    sink = Recorder()
    last, made, _ = run_request(
        request(retries=5),
        sink,
        judge=lambda a: a.done.returncode,
        retryable=lambda code: code != 0,
        failure=lambda code: f"exit {code}",
        runner=runner,
    )
    assert (last, made) == (0, 3)
    assert len(runner.seen) == 3
    assert [s.state for s in sink.states].count("retrying") == 2
    assert all(seen is runner.seen[0] for seen in runner.seen)  # a value, never rebuilt


def test_the_judgement_decides_what_is_retried() -> None:
    runner = Scripted([3, 0])
    last, made, _ = run_request(
        request(retries=2),
        Recorder(),
        judge=lambda a: "flood" if a.done.returncode == 3 else "ok",
        retryable=lambda verdict: verdict not in ("ok", "flood"),
        failure=str,
        runner=runner,
    )
    assert (last, made) == ("flood", 1)


def test_the_last_attempt_comes_back_when_retries_run_out() -> None:
    last, made, _ = run_request(
        request(retries=1),
        Recorder(),
        judge=lambda a: a,
        retryable=lambda a: not a.done.ok,
        failure=lambda a: "failed",
        runner=Scripted([7, 9]),
    )
    assert (last.done.returncode, made) == (9, 2)


def test_a_request_is_a_frozen_value() -> None:
    original = request(retries=0)
    with pytest.raises(AttributeError):
        original.label = "other"  # type: ignore[misc]
    assert replace(original, label="other").label == "other"
