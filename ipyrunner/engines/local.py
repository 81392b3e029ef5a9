"""The local engine: a map's calls on threads of this process, each a run of its own."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from ..presenting import presenter
from ..sinks import NullSink
from .base import CallResult, MapJob

if TYPE_CHECKING:
    from ..runtimes import Interpreter


class LocalEngine:
    name = "local"

    def start(self, job: MapJob) -> ThreadBatch:
        config = job.config
        count = job.workers or config.map_workers or os.cpu_count() or 1
        # An install shows once, before the runs, in a display of its own.
        with presenter().sink(quiet=job.quiet) as shown:
            interpreter = job.stage.interpreter(config, shown)
        return ThreadBatch(job, interpreter, min(count, max(len(job.payloads), 1)))


class ThreadBatch:
    """The calls on a thread pool; a cancel kills the runs still going."""

    def __init__(self, job: MapJob, interpreter: Interpreter, count: int) -> None:
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(count, thread_name_prefix="ipyrunner-map")
        silent = NullSink()
        run = job.stage.run_payload
        self._futures: dict[Future[CallResult], int] = {
            self._pool.submit(
                run, payload, silent, job.config, self._stop, interpreter, job.warm, count
            ): index
            for index, payload in enumerate(job.payloads)
        }
        self._pending = set(self._futures)

    def finished(self, timeout: float) -> Iterable[tuple[int, CallResult]]:
        done, self._pending = wait(self._pending, timeout, FIRST_COMPLETED)
        if not self._pending:
            self._pool.shutdown(wait=True)
        return [
            (self._futures[f], f.result().ran_on("local"))
            for f in sorted(done, key=self._futures.__getitem__)
        ]

    def cancel(self) -> int:
        self._stop.set()  # every run still going is killed
        stopped = sum(1 for future in self._pending if not future.done())
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)
        return stopped
