"""The warm pool's bookkeeping, with stand-in workers: nothing is spawned."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ipyrunner.effects import Effects
from ipyrunner.process import Completed, Limits
from ipyrunner.runner.call import CallSpec
from ipyrunner.runner.warm import WarmPool, WarmPools
from ipyrunner.runner.worker import WorkerSpec
from ipyrunner.sandbox.isolation import Attempted
from ipyrunner.sandbox.limits import ResourceLimits
from ipyrunner.sinks import NullSink


def spec(owner: str = "stage-a") -> WorkerSpec:
    return WorkerSpec(
        owner=owner,
        command=("python", "worker.py"),
        files=(("cell.py", "def execute(input): return input"),),
        args=("cell",),
        readable=(),
        effects=Effects(),
        project=Path("/project"),
        runtime_paths=(),
        isolate="bwrap",
        require_sandbox=True,
        resources=ResourceLimits(),
        tmp_size=1 << 20,
    )


def ran(value: str) -> Attempted:
    return Attempted(Completed(("worker",), 0, value, "", 0.0), "bwrap", None)


@dataclass
class FakeWorker:
    """Answers each call with its own number; told what to do next by the test."""

    number: int
    idle_since: float = 0.0
    closed: bool = False
    fresh: bool = True
    plan: list[str] = field(default_factory=list)  # "retire", "not-started", "block"
    calls: int = 0
    release: threading.Event = field(default_factory=threading.Event)

    def current(self) -> bool:
        return self.fresh

    def call(self, payload: bytes, call: CallSpec) -> tuple[Attempted | None, bool]:
        self.calls += 1
        step = self.plan.pop(0) if self.plan else ""
        if step == "not-started":
            return None, True
        if step == "block":
            self.release.wait(5)
        return ran(f"worker {self.number}"), step == "retire"

    def close(self) -> None:
        self.closed = True


@dataclass
class Starter:
    started: list[FakeWorker] = field(default_factory=list)
    plans: list[list[str]] = field(default_factory=list)
    fail_with: Attempted | None = None

    def __call__(self, spec: WorkerSpec, call: CallSpec) -> FakeWorker | Attempted:
        if self.fail_with is not None:
            return self.fail_with
        worker = FakeWorker(len(self.started) + 1, plan=self.plans.pop(0) if self.plans else [])
        self.started.append(worker)
        return worker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def serve(pool: WarmPool, size: int = 1) -> str:
    return pool.call(
        b"1", sink=NullSink(), limits=Limits(), result_cap=1 << 20, size=size
    ).done.stdout


def test_an_idle_worker_serves_the_next_call() -> None:
    starter = Starter()
    pool = WarmPool(spec(), start=starter)
    assert [serve(pool) for _ in range(3)] == ["worker 1"] * 3
    assert len(starter.started) == 1


def test_a_retired_worker_is_closed_and_the_next_call_starts_another() -> None:
    starter = Starter(plans=[["retire"]])
    pool = WarmPool(spec(), start=starter)
    assert serve(pool) == "worker 1"
    assert starter.started[0].closed
    assert serve(pool) == "worker 2"


def test_a_call_no_worker_took_goes_to_a_fresh_one_once() -> None:
    starter = Starter(plans=[["not-started"]])
    pool = WarmPool(spec(), start=starter)
    assert serve(pool) == "worker 2"
    assert starter.started[0].closed


def test_two_workers_ending_before_the_call_is_an_error_not_a_loop() -> None:
    starter = Starter(plans=[["not-started"], ["not-started"]])
    pool = WarmPool(spec(), start=starter)
    done = pool.call(b"1", sink=NullSink(), limits=Limits(), result_cap=1).done
    assert done.returncode != 0
    assert "ended before taking the call" in done.stderr
    assert len(starter.started) == 2


def test_a_start_that_fails_is_the_calls_record() -> None:
    failed = ran("the import printed this")
    pool = WarmPool(spec(), start=Starter(fail_with=failed))
    assert pool.call(b"1", sink=NullSink(), limits=Limits(), result_cap=1) is failed
    assert pool.workers == 0


def test_a_worker_whose_mounts_are_stale_is_replaced() -> None:
    starter = Starter()
    pool = WarmPool(spec(), start=starter)
    serve(pool)
    starter.started[0].fresh = False
    assert serve(pool) == "worker 2"
    assert starter.started[0].closed


def test_concurrent_calls_start_up_to_the_size_asked_for() -> None:
    starter = Starter(plans=[["block"], ["block"], ["block"]])
    pool = WarmPool(spec(), start=starter)
    threads = [threading.Thread(target=serve, args=(pool, 2)) for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while sum(w.calls for w in starter.started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(starter.started) == 2  # the third call waits for one of them
    for worker in starter.started:
        worker.release.set()
    for thread in threads:
        thread.join(5)
    assert len(starter.started) == 2
    assert sum(w.calls for w in starter.started) == 3


def test_idle_workers_end_after_the_idle_time() -> None:
    clock = Clock()
    starter = Starter()
    pool = WarmPool(spec(), idle_s=30, start=starter, clock=clock)
    serve(pool)
    clock.now += 29
    assert pool.expire() == pytest.approx(1)
    assert [w.closed for w in starter.started] == [False]
    clock.now += 1
    pool.expire()
    assert [w.closed for w in starter.started] == [True]
    assert pool.workers == 0


def test_close_ends_idle_workers_now_and_busy_ones_after_their_call() -> None:
    starter = Starter(plans=[["block"], []])
    pool = WarmPool(spec(), start=starter)
    busy = threading.Thread(target=serve, args=(pool, 2))
    busy.start()
    while not starter.started or starter.started[0].calls == 0:
        time.sleep(0.01)
    serve(pool, 2)  # a second worker, idle after its call
    pool.close()
    assert [w.closed for w in starter.started] == [False, True]
    starter.started[0].release.set()
    busy.join(5)
    assert [w.closed for w in starter.started] == [True, True]


def test_closing_a_stages_pools_leaves_the_others() -> None:
    starter = Starter()
    pools = WarmPools(start=starter)
    serve(pools.get(spec("stage-a"), 300))
    serve(pools.get(spec("stage-b"), 300))
    pools.close("stage-a")
    assert [w.closed for w in starter.started] == [True, False]
    pools.close()
    assert all(w.closed for w in starter.started)


def test_a_pool_is_found_again_by_its_spec() -> None:
    pools = WarmPools(start=Starter())
    assert pools.get(spec(), 300) is pools.get(spec(), 300)
    assert pools.get(spec(), 300) is not pools.get(spec("stage-b"), 300)
    pools.close()
