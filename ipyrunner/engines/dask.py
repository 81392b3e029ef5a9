"""The Dask engine: a map's calls as tasks on the workers of a `distributed` cluster.

What travels is a plain value: the stage's spec (language, code, effects,
requirements, runtime, limits), the caller's settings, the input's JSON bytes.
Each worker rebuilds the `Stage` and runs the call through the same runner,
sandbox and runtimes as a local call, warm workers included; the worker's own
environment never reaches a stage (every run's environment is cleared).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import IPyRunner
from ..errors import EngineUnavailable, InvalidOption
from ..paths import project_directory
from ..sinks import NullSink
from ..version import __version__
from .base import CallResult, MapJob, MapStage

if TYPE_CHECKING:
    from distributed import Client, Future

_INSTALL = f"pip install 'ipyrunner[dask]=={__version__}'"
# How often a running call asks whether its map was cancelled.
_CANCEL_POLL_S = 0.5
# How often the client looks for finished calls while it waits.
_POLL_S = 0.005
# A task's calls: as many as take about TASK_S seconds, at most MAX_CHUNK.
TASK_S = 0.25
MAX_CHUNK = 64


def dask_engine(engine: object) -> DaskEngine:
    """The engine for `engine`: "dask" (the default client), a scheduler address
    ("tcp://host:8786") or a `distributed.Client`."""
    try:
        import distributed
    except ImportError:
        raise EngineUnavailable(
            f"engine={engine!r} needs the distributed package; fix: pip install 'ipyrunner[dask]'"
        ) from None
    if isinstance(engine, distributed.Client):
        return DaskEngine(engine)
    if engine == "dask":
        try:
            return DaskEngine(distributed.get_client())
        except ValueError:
            raise EngineUnavailable(
                "engine='dask' found no Dask client; fix: connect one first "
                "(from distributed import Client; client = Client('tcp://scheduler:8786')) "
                "or pass engine=client"
            ) from None
    if isinstance(engine, str) and "://" in engine:
        return DaskEngine(_connect(engine))
    raise InvalidOption(
        f"invalid engine {engine!r}: use None, 'local', 'dask', a scheduler address "
        "('tcp://host:8786') or a distributed.Client"
    )


_clients: dict[str, Client] = {}
_clients_lock = threading.Lock()


def _connect(address: str) -> Client:
    """A client of the scheduler at `address`, made once per address."""
    from distributed import Client

    with _clients_lock:
        client = _clients.get(address)
        if client is not None and client.status == "running":
            return client
        try:
            client = Client(address, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise EngineUnavailable(
                f"cannot reach the Dask scheduler at {address} ({_one_line(exc)}); fix: start "
                "it (dask scheduler) or check the address and that this machine may reach it"
            ) from None
        _clients[address] = client
        return client


@atexit.register
def _close_clients() -> None:
    for client in _clients.values():
        client.close()
    _clients.clear()


class DaskEngine:
    name = "dask"

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def address(self) -> str:
        return str(getattr(self.client.scheduler, "address", None) or "the scheduler")

    def start(self, job: MapJob) -> DaskBatch:
        stage, config = job.stage, job.config
        project = project_directory()
        needs_project = bool(stage.effects.read or stage.effects.write)
        expected = project_fingerprint(project) if needs_project else None
        require = config.require_sandbox or stage.options(config).isolate == "bwrap"
        self.check_workers(str(project), expected, require)
        return DaskBatch(self.client, job, project)

    def check_workers(self, project: str, fingerprint: str | None, sandbox: bool) -> None:
        """Fail before any task runs where a worker cannot run the map as asked."""
        try:
            reports = self.client.run(
                worker_report, project, fingerprint, sandbox, on_error="return"
            )
        except (OSError, TimeoutError) as exc:
            raise EngineUnavailable(
                f"the Dask scheduler at {self.address} cannot be reached ({_one_line(exc)}); "
                "fix: check that the cluster is running"
            ) from None
        if not reports:
            raise EngineUnavailable(
                f"the Dask cluster at {self.address} has no workers; fix: start some "
                f"(dask worker {self.address})"
            )
        problems = [
            problem
            for address, report in sorted(reports.items())
            if (problem := _problem(address, report)) is not None
        ]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise EngineUnavailable(problems[0] + more)


def _problem(address: str, report: object) -> str | None:
    if isinstance(report, BaseException):
        if isinstance(report, ImportError) or "ipyrunner" in str(report):
            return (
                f"worker {address} cannot import ipyrunner ({_one_line(report)}); "
                f"fix: {_INSTALL} on every worker"
            )
        return f"worker {address} could not be checked ({_one_line(report)})"
    assert isinstance(report, Mapping)
    if report["version"] != __version__:
        return (
            f"worker {address} runs ipyrunner {report['version']}, this kernel "
            f"{__version__}; fix: {_INSTALL} on every worker"
        )
    for key in ("sandbox", "project"):
        if report.get(key):
            return f"worker {address}: {report[key]}"
    return None


def worker_report(project: str, fingerprint: str | None, sandbox: bool) -> dict[str, Any]:
    """Run on each worker before a map: its ipyrunner, its sandbox, its project."""
    report: dict[str, Any] = {"version": __version__}
    if sandbox:
        from ..sandbox.probe import bwrap_status

        status = bwrap_status()
        if not status.usable:
            report["sandbox"] = (
                f"no usable sandbox ({status.reason}) and the map requires one; "
                f"fix: {status.fix or 'see python -m ipyrunner doctor'} on that machine"
            )
    if fingerprint is not None:
        shared = (
            "fs-read / fs-write on a cluster need the project at the same path on every "
            "worker (a shared filesystem)"
        )
        if not os.path.isdir(project):
            report["project"] = f"the project {project} does not exist there; {shared}"
        elif project_fingerprint(Path(project)) != fingerprint:
            report["project"] = (
                f"{project} there is another directory than this kernel's project; {shared}"
            )
    return report


def project_fingerprint(project: Path) -> str:
    """What tells the same tree from another at the same path, read only: the
    directory's inode and modification time and its entries' names."""
    stat = project.stat()
    names = sorted(os.listdir(project))
    digest = hashlib.sha256("\0".join(names).encode("utf-8", "surrogateescape")).hexdigest()
    return f"{stat.st_ino}:{stat.st_mtime_ns}:{digest}"


class DaskBatch:
    """The calls as tasks of a few calls each, submitted as earlier ones finish.

    A task costs the scheduler about a millisecond, more than a warm call: the
    first tasks hold one call each, later ones as many as take `TASK_S` at the
    speed seen so far, and never more than `2 x` the cluster's threads are in
    flight, so slow calls still spread over every worker and the progress bar
    moves. Cancelling also stops the calls already running.
    """

    def __init__(self, client: Client, job: MapJob, project: Path) -> None:
        from distributed import as_completed

        self.client = client
        self.map_id = uuid.uuid4().hex
        stage = job.stage
        self._stage = stage
        self._payloads = job.payloads
        self._prefix = f"ipyrunner-{stage.title}-{self.map_id}"
        # What every call shares goes to the workers once, not inside each task.
        # In a list: a dict given to scatter is scattered value by value, under
        # its own keys ("spec"), which every map would share.
        (self._shared,) = client.scatter(
            [
                {
                    "spec": stage.spec(),
                    "settings": config_values(job.config),
                    "rebuild": stage.from_spec,  # pickled by reference: an import
                }
            ],
            broadcast=True,
            hash=False,
        )
        self._options = {
            "project": str(project),
            "map_id": self.map_id,
            "warm": job.warm,
            "repeatable": stage.repeatable,
        }
        self._todo = deque(range(len(job.payloads)))
        self._inflight: dict[Future[list[tuple[int, CallResult]]], list[int]] = {}
        self._most = 2 * max(1, sum(client.nthreads().values()))
        self._seconds = 0.0  # calls' time so far, and how many calls
        self._calls = 0
        self._tasks = 0
        self._completed = as_completed(loop=client.loop)
        self._submit()

    def _chunk(self) -> int:
        if self._calls == 0:
            return 1
        each = max(self._seconds / self._calls, 1e-4)
        return max(1, min(MAX_CHUNK, int(TASK_S / each)))

    def _submit(self) -> None:
        while self._todo and len(self._inflight) < self._most:
            size = min(self._chunk(), max(1, len(self._todo) // self._most))
            indexes = [self._todo.popleft() for _ in range(min(size, len(self._todo)))]
            key = f"{self._prefix}-{self._tasks}"
            self._tasks += 1
            future = self.client.submit(
                run_calls,
                indexes,
                [self._payloads[i] for i in indexes],
                key=key,
                pure=False,
                task=key,
                shared=self._shared,
                **self._options,
            )
            self._inflight[future] = indexes
            self._completed.add(future)

    def finished(self, timeout: float) -> Iterable[tuple[int, CallResult]]:
        deadline = time.monotonic() + timeout
        done = self._completed.next_batch(block=False)
        while not done and time.monotonic() < deadline:
            time.sleep(_POLL_S)
            done = self._completed.next_batch(block=False)
        found: list[tuple[int, CallResult]] = []
        for future in done:
            indexes = self._inflight.pop(future, None)
            if indexes is None:  # cancelled already
                continue
            found += self._collect(future, indexes)
            future.release()
        for _, result in found:
            self._seconds += result.duration_s
            self._calls += 1
        if not any(not result.ok for _, result in found):
            self._submit()
        return sorted(found, key=lambda item: item[0])

    def _collect(
        self, future: Future[list[tuple[int, CallResult]]], indexes: list[int]
    ) -> list[tuple[int, CallResult]]:
        if future.status == "finished":
            results = future.result()
            assert isinstance(results, list)
            # A chunk stops at its first failure: the rest of it is left to cancel.
            ran = {index for index, _ in results}
            self._todo.extendleft(reversed([i for i in indexes if i not in ran]))
            return results
        try:
            error = future.exception()
        except BaseException as exc:  # a cancelled future raises here
            error = exc
        failed = engine_failure(self._stage, error)
        return [(index, failed) for index in indexes]

    def cancel(self) -> int:
        from distributed import Event

        stopped = len(self._todo) + sum(map(len, self._inflight.values()))
        try:
            if self._inflight:
                Event(f"ipyrunner-cancel-{self.map_id}", client=self.client).set()
                self.client.cancel(list(self._inflight))
        except (OSError, TimeoutError):  # the cluster is gone: nothing of it runs on
            pass
        self._todo.clear()
        self._inflight.clear()
        return stopped


def engine_failure(stage: MapStage, error: BaseException | None) -> CallResult:
    """A call the cluster could not complete (a worker lost too often, a task error)."""
    kind = type(error).__name__ if error is not None else "CancelledError"
    message = _one_line(error) if error is not None else "the call was cancelled"
    if kind == "KilledWorker":
        message = (
            "the worker running this call died (each time it was tried); "
            f"fix: see the workers' logs ({message})"
        )
    result: CallResult = stage.failure(kind, message)
    return result


def config_values(config: IPyRunner) -> dict[str, Any]:
    """The caller's settings as plain values: they apply on the worker for the map."""
    return {name: getattr(config, name) for name in sorted(config.traits(config=True))}


# On a worker: stages and settings rebuilt once per process, not per task.
_stages: OrderedDict[str, tuple[MapStage, IPyRunner]] = OrderedDict()
_stages_lock = threading.Lock()


def _rebuilt(shared: dict[str, Any]) -> tuple[MapStage, IPyRunner]:
    """The map's stage, rebuilt from its spec by the function the map sent
    (`Stage.from_spec`), and its settings; once per worker process."""
    spec, settings = shared["spec"], shared["settings"]
    key = json.dumps([spec, settings], sort_keys=True, default=str)
    with _stages_lock:
        found = _stages.get(key)
        if found is not None:
            _stages.move_to_end(key)
            return found
    config = IPyRunner(**settings)
    built = (shared["rebuild"](spec, config), config)
    with _stages_lock:
        _stages[key] = built
        while len(_stages) > 32:
            _stages.popitem(last=False)
    return built


def run_calls(
    indexes: list[int],
    payloads: list[bytes],
    *,
    task: str,
    shared: dict[str, Any],
    project: str,
    map_id: str,
    warm: bool,
    repeatable: bool,
) -> list[tuple[int, CallResult]]:
    """Calls of a map, one after another on a worker, up to the first failure."""
    from distributed import get_client, get_worker

    worker = get_worker()
    stage, config = _rebuilt(shared)
    # The scheduler counts the workers that died while they ran this task.
    if not repeatable and get_client().run_on_scheduler(_lost_while_running, task):
        lost = engine_failure(
            stage,
            RuntimeError(
                "the worker running this call was lost, and a stage with network or "
                "fs-write effects is not run twice; fix: run the map again"
            ),
        )
        lost = lost.ran_on(worker.address)
        return [(index, lost) for index in indexes]
    watch = _map_watch(map_id)
    done = []
    try:
        for index, payload in zip(indexes, payloads, strict=True):
            result = stage.run_payload(
                payload,
                NullSink(),
                config,
                watch.cancelled,
                warm=warm,
                workers=max(1, worker.state.nthreads),
                project=Path(project),
            )
            done.append((index, result.ran_on(worker.address)))
            if not result.ok or watch.cancelled.is_set():
                break
    finally:
        watch.leave()
    return done


def _lost_while_running(key: str, dask_scheduler: Any = None) -> int:
    task = dask_scheduler.tasks.get(key) if dask_scheduler is not None else None
    return int(getattr(task, "suspicious", 0) or 0)


class _MapWatch:
    """One per map in a worker process: a thread that sets `cancelled` when the
    client cancels the map, killing every call of it still running here."""

    def __init__(self, map_id: str, client: Client) -> None:
        self.map_id = map_id
        self.client = client
        self.cancelled = threading.Event()
        self.active = 0
        self.last_used = time.monotonic()
        threading.Thread(target=self._watch, name="ipyrunner-cancel", daemon=True).start()

    def leave(self) -> None:
        with _watches_lock:
            self.active -= 1
            self.last_used = time.monotonic()

    def _watch(self) -> None:
        from distributed import Event

        # Polled, not waited on: a wait held open on the scheduler outlives the map
        # and is cut off, noisily, when the cluster closes.
        try:
            flag = Event(f"ipyrunner-cancel-{self.map_id}", client=self.client)
            while not flag.is_set():
                time.sleep(_CANCEL_POLL_S)
                with _watches_lock:
                    if self.active == 0 and time.monotonic() - self.last_used > _WATCH_IDLE_S:
                        return
            self.cancelled.set()
        except Exception:  # noqa: S110 - the cluster going away ends the watch, not the calls
            pass
        finally:
            with _watches_lock:
                if _watches.get(self.map_id) is self:
                    del _watches[self.map_id]


_watches: dict[str, _MapWatch] = {}
_watches_lock = threading.Lock()
_WATCH_IDLE_S = 2.0  # how long a watch outlives its map's last call here


def _map_watch(map_id: str) -> _MapWatch:
    from distributed import get_client

    with _watches_lock:
        watch = _watches.get(map_id)
        if watch is None:  # the task's own client: a thread of the worker has none
            watch = _watches[map_id] = _MapWatch(map_id, get_client())
        watch.active += 1
        return watch


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
