"""The map loop shared by every engine, with a fake engine: no process is spawned."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from ipyrunner import InvalidOption, Stage, StageFailed
from ipyrunner.config import IPyRunner
from ipyrunner.engines import MapJob, choose_engine, mapping
from ipyrunner.engines.local import LocalEngine
from ipyrunner.stages.envelope import StageError
from ipyrunner.stages.result import StageResult


def result(value: Any, error: StageError | None = None) -> StageResult:
    return StageResult(value, "", "", 0 if error is None else 1, 0.01, 1, False, error=error)


@dataclass
class FakeBatch:
    """Hands back the calls in the order given, a few per look."""

    order: list[tuple[int, StageResult]]
    per_look: int = 2
    cancelled: int = 0
    interrupt_after: int | None = None
    looks: int = 0

    def finished(self, timeout: float) -> Iterable[tuple[int, StageResult]]:
        self.looks += 1
        if self.interrupt_after is not None and self.looks > self.interrupt_after:
            raise KeyboardInterrupt
        taken, self.order = self.order[: self.per_look], self.order[self.per_look :]
        return taken

    def cancel(self) -> int:
        self.cancelled += 1
        return len(self.order)


@dataclass
class FakeEngine:
    batch: FakeBatch
    name: str = "fake"
    jobs: list[MapJob] = field(default_factory=list)

    def start(self, job: MapJob) -> FakeBatch:
        self.jobs.append(job)
        return self.batch


class Progress:
    def __init__(self) -> None:
        self.updates: list[tuple[int, int, int]] = []

    def update(self, done: int, failed: int = 0, cancelled: int = 0) -> None:
        self.updates.append((done, failed, cancelled))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


@pytest.fixture
def progress(monkeypatch: pytest.MonkeyPatch) -> Progress:
    shown = Progress()

    class Presenter:
        def progress(self, total: int, label: str, quiet: bool = False) -> Progress:
            return shown

    monkeypatch.setattr(mapping, "presenter", Presenter)
    return shown


def run(engine: FakeEngine, inputs: list[Any], **options: Any) -> list[StageResult]:
    """`Stage.map` with the engine `choose_engine` is patched to give."""
    stage = Stage("def execute(x):\n    return x\n", name="echo")
    results: list[StageResult] = stage.map(
        inputs, options.get("workers"), config=IPyRunner(), quiet=True, results=True
    )
    return results


def test_values_come_back_in_input_order_whatever_order_they_finish(
    monkeypatch: pytest.MonkeyPatch, progress: Progress
) -> None:
    order = [(i, result(i * 10)) for i in (3, 0, 2, 1)]
    engine = FakeEngine(FakeBatch(order))
    monkeypatch.setattr(mapping, "choose_engine", lambda engine_, config: engine)
    assert [r.value for r in run(engine, [0, 1, 2, 3])] == [0, 10, 20, 30]
    assert progress.updates[-1] == (4, 0, 0)
    assert engine.batch.cancelled == 0
    assert engine.jobs[0].payloads == [b"0", b"1", b"2", b"3"]


def test_the_first_failure_by_index_is_raised_and_the_rest_cancelled(
    monkeypatch: pytest.MonkeyPatch, progress: Progress
) -> None:
    boom = StageError("raised", "ValueError", "bad", 'File "<stage echo>", line 2')
    order = [(0, result(0)), (4, result(None, boom)), (2, result(None, boom)), (1, result(1))]
    order += [(3, result(3)), (5, result(5))]
    engine = FakeEngine(FakeBatch(order, per_look=3))
    monkeypatch.setattr(mapping, "choose_engine", lambda engine_, config: engine)
    with pytest.raises(StageFailed, match=r"^map input \[2\]: .* raised ValueError: bad") as raised:
        run(engine, list(range(6)))
    assert isinstance(raised.value.result, StageResult)
    assert engine.batch.cancelled == 1
    # Three finished (two failed) when the map stopped; three were cancelled.
    assert progress.updates[-1] == (3, 2, 3)


def test_an_interrupt_cancels_the_batch(
    monkeypatch: pytest.MonkeyPatch, progress: Progress
) -> None:
    engine = FakeEngine(FakeBatch([(i, result(i)) for i in range(6)], interrupt_after=1))
    monkeypatch.setattr(mapping, "choose_engine", lambda engine_, config: engine)
    with pytest.raises(KeyboardInterrupt):
        run(engine, list(range(6)))
    assert engine.batch.cancelled == 1


def test_inputs_are_checked_before_an_engine_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_engine(engine: object, config: IPyRunner) -> FakeEngine:
        raise AssertionError("an engine was chosen for inputs that are not JSON")

    monkeypatch.setattr(mapping, "choose_engine", no_engine)
    with pytest.raises(InvalidOption, match=r"^inputs\[1\]: .*nan"):
        run(FakeEngine(FakeBatch([])), [1.0, float("nan")])
    with pytest.raises(InvalidOption, match="invalid workers 0"):
        run(FakeEngine(FakeBatch([])), [1], workers=0)


def test_choose_engine_reads_the_setting_and_refuses_what_it_does_not_know() -> None:
    assert isinstance(choose_engine(None, IPyRunner()), LocalEngine)
    assert isinstance(choose_engine("local", IPyRunner()), LocalEngine)
    with pytest.raises(InvalidOption, match="invalid engine 'spark': use None, 'local', 'dask'"):
        choose_engine("spark", IPyRunner())


def test_a_stage_travels_as_a_plain_value() -> None:
    stage = Stage(
        "# requires: six==1.16.0\ndef execute(x):\n    return x\n",
        effects="network,fs-read:data",
        name="s",
        line_offset=1,
        timeout=5,
    )
    spec = stage.spec()
    assert all(isinstance(v, (str, int, bool, list, dict, type(None))) for v in spec.values())
    again = Stage.from_spec(spec)
    assert again.id == stage.id
    assert again.limits == {"timeout": 5}
    assert again.line_offset == 1
    assert not stage.repeatable
    assert Stage("def execute(x):\n    return x\n", effects="fs-read").repeatable
