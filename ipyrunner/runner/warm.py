"""Warm pools: started sandboxed workers per `WorkerSpec`, each call served
from a pristine fork, workers ended when idle, with their stage, or with the kernel.

`WarmPool.call` is the entry point: the bytes of one call's input in, the
same `Attempted` record a cold `run_isolated` gives out.
"""

from __future__ import annotations

import atexit
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from ..display_channel import Decoder
from ..process import Completed, Limits
from ..sandbox.isolation import Attempted
from ..sinks import Sink
from .call import CallSpec
from .request import RunRequest
from .worker import WorkerSpec, start_worker


class PooledWorker(Protocol):
    """What a pool needs of a worker (a `worker.Worker`, or a test's stand-in)."""

    idle_since: float

    def current(self) -> bool: ...

    def call(self, payload: bytes, spec: CallSpec) -> tuple[Attempted | None, bool]: ...

    def close(self) -> None: ...


Starter = Callable[[WorkerSpec, CallSpec], "PooledWorker | Attempted"]


class WarmPool:
    """The workers of one spec: idle ones reused, more started up to the largest
    size a call asked for, a lost or retired one replaced by the next call."""

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        idle_s: float = 300.0,
        start: Starter = start_worker,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.idle_s = idle_s
        self._start = start
        self._clock = clock
        self._lock = threading.Condition()
        self._idle: list[PooledWorker] = []
        self._busy = 0
        self._starting = 0
        self._capacity = 1
        self._closed = False
        self._used = clock()  # when a call last came or went

    def abandoned(self) -> bool:
        """No worker, and no call for the idle time: the pool may go."""
        with self._lock:
            idle = self._clock() - self._used >= self.idle_s
            return idle and not (self._idle or self._busy or self._starting)

    @property
    def workers(self) -> int:
        """Workers alive or on their way, busy or idle."""
        with self._lock:
            return len(self._idle) + self._busy + self._starting

    def call(
        self,
        payload: bytes,
        *,
        sink: Sink,
        limits: Limits,
        result_cap: int,
        cancel: threading.Event | None = None,
        size: int = 1,
        displays: Decoder | None = None,
    ) -> Attempted:
        """Serve one call, starting a worker if none is idle (the start counts
        toward the call's timeout, as a cold call's interpreter start does)."""
        timeout = limits.timeout if limits.timeout is not None else math.inf
        spec = CallSpec(limits, result_cap, sink, cancel, time.monotonic() + timeout, displays)
        # A worker that ended between calls did not take this one: one more try.
        for _ in range(2):
            worker = self._acquire(spec, size)
            if isinstance(worker, Attempted):
                return worker
            try:
                ran, retire = worker.call(payload, spec)
            except BaseException:
                self._release(worker, retire=True)
                raise
            self._release(worker, retire)
            if ran is not None:
                return ran
        said = "ipyrunner: two warm workers in a row ended before taking the call\n"
        done = Completed((), -signal.SIGKILL, "", said, 0.0)
        sink.write("stderr", done.stderr)
        return Attempted(done, "bwrap", None)

    def _acquire(self, spec: CallSpec, size: int) -> PooledWorker | Attempted:
        stale: list[PooledWorker] = []
        try:
            with self._lock:
                self._used = self._clock()
                self._capacity = max(self._capacity, size)
                while True:
                    while self._idle:
                        worker = self._idle.pop()
                        if worker.current():
                            self._busy += 1
                            return worker
                        stale.append(worker)
                    if self._busy + self._starting < self._capacity:
                        self._starting += 1
                        break
                    if spec.cancel is not None and spec.cancel.is_set():
                        return _cancelled()
                    self._lock.wait(0.05)
        finally:
            for worker in stale:
                worker.close()
        started: PooledWorker | Attempted | None = None
        try:
            started = self._start(self.spec, spec)
            return started
        finally:
            with self._lock:
                self._starting -= 1
                if started is not None and not isinstance(started, Attempted):
                    self._busy += 1
                self._lock.notify()

    def _release(self, worker: PooledWorker, retire: bool) -> None:
        with self._lock:
            self._busy -= 1
            self._used = self._clock()
            keep = not (retire or self._closed)
            if keep:
                worker.idle_since = self._clock()
                self._idle.append(worker)
            self._lock.notify()
        if not keep:
            worker.close()

    def expire(self) -> float:
        """End workers idle for `idle_s`; the seconds until the next would expire."""
        now = self._clock()
        with self._lock:
            idle, self._idle = self._idle, []
            expired: list[PooledWorker] = []
            for worker in idle:
                (expired if now - worker.idle_since >= self.idle_s else self._idle).append(worker)
            left = [w.idle_since + self.idle_s - now for w in self._idle]
        for worker in expired:
            worker.close()
        return min(left, default=math.inf)

    def close(self) -> None:
        """End the idle workers now and each busy one when its call is over."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        close_all(worker.close for worker in idle)


def close_all(closers: Iterable[Callable[[], None]]) -> None:
    """Call every closer, even after one fails (each holds processes to end);
    then raise the first failure."""
    failure: Exception | None = None
    for close in closers:
        try:
            close()
        except Exception as exc:  # raised below, once every one is closed
            failure = failure or exc
    if failure is not None:
        raise failure


def _cancelled() -> Attempted:
    return Attempted(Completed((), -signal.SIGKILL, "", "", 0.0, cancelled=True), "bwrap", None)


class WarmPools:
    """Every pool of the kernel, by spec; a thread ends idle workers."""

    def __init__(self, start: Starter = start_worker) -> None:
        self._start = start
        self._pools: dict[WorkerSpec, WarmPool] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._reaper: threading.Thread | None = None

    def get(self, spec: WorkerSpec, idle_s: float) -> WarmPool:
        with self._lock:
            pool = self._pools.get(spec)
            if pool is None:
                pool = self._pools[spec] = WarmPool(spec, idle_s=idle_s, start=self._start)
            elif pool.idle_s == idle_s:
                return pool
            pool.idle_s = idle_s
            if self._reaper is None:
                self._reaper = threading.Thread(
                    target=self._reap, name="ipyrunner-warm-idle", daemon=True
                )
                self._reaper.start()
        self._wake.set()  # a new pool, or a new idle time: look again
        return pool

    def close(self, owner: str | None = None) -> None:
        """End the pools of the stage `owner` (every pool, if None)."""
        with self._lock:
            chosen = [s for s in self._pools if owner is None or s.owner == owner]
            pools = [self._pools.pop(s) for s in chosen]
        close_all(pool.close for pool in pools)

    def _reap(self) -> None:
        while True:
            with self._lock:
                pools = list(self._pools.items())
            wait = 60.0
            for spec, pool in pools:
                # A worker busy now is idle later: look again within its idle time.
                wait = min(wait, pool.expire(), pool.idle_s)
                with self._lock:
                    # Closed, a pool that a caller still holds retires what it starts.
                    if pool.abandoned() and self._pools.get(spec) is pool:
                        del self._pools[spec]
                        pool.close()
            self._wake.wait(max(wait, 0.05))
            self._wake.clear()


_POOLS = WarmPools()


def warm_pool(spec: WorkerSpec, idle_s: float) -> WarmPool:
    """The kernel's pool for `spec`, made on first use."""
    return _POOLS.get(spec, idle_s)


def close_pools(owner: str | None = None) -> None:
    """End the warm workers of the stage with id `owner`, or all of them."""
    _POOLS.close(owner)


atexit.register(close_pools)


class WarmRunner:
    """A `Runner` that serves each attempt from the warm pool of `spec`."""

    def __init__(self, spec: WorkerSpec, idle_s: float, size: int = 1) -> None:
        self.spec = spec
        self.idle_s = idle_s
        self.size = size

    def run(
        self, request: RunRequest, *, sink: Sink, cancel: threading.Event | None = None
    ) -> Attempted:
        if request.stdin is None or request.channel is None:
            raise ValueError("a warm call needs its input and a result channel")
        return warm_pool(self.spec, self.idle_s).call(
            request.stdin,
            sink=sink,
            limits=request.options.limits,
            result_cap=request.channel.cap,
            displays=request.channel.displays,
            cancel=cancel,
            size=self.size,
        )
