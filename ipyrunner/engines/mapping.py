"""One loop for every engine: start the calls, collect them in input order, stop
at the first failure and say how many were cancelled."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config import IPyRunner
from ..errors import InvalidOption, RunnerError, _FailedRun
from ..presenting import presenter
from .base import CallResult, Engine, MapJob, MapStage

# How long one wait for finished calls lasts: the progress bar's tick, and how
# soon an interrupt is noticed.
TICK_S = 0.1


def choose_engine(engine: object, config: IPyRunner) -> Engine:
    """`engine` as given to `map`: None (IPyRunner.map_engine), "local", "dask"
    (the default `distributed` client), a scheduler address, or a `Client`."""
    from .local import LocalEngine

    if engine is None:
        engine = config.map_engine
    if engine == "local":
        return LocalEngine()
    from .dask import dask_engine

    return dask_engine(engine)


def run_map(
    stage: MapStage,
    payloads: Sequence[bytes],
    *,
    workers: int | None,
    warm: bool,
    engine: object,
    config: IPyRunner,
    quiet: bool,
) -> list[Any]:
    """Every input's result (a `StageResult`), in input order; raises the first
    failure (by input index) after cancelling what was still to run. `payloads`
    are the inputs already encoded, so a bad one failed before any engine."""
    if workers is not None and workers < 1:
        raise InvalidOption(f"invalid workers {workers!r}: it must be 1 or more")
    chosen = choose_engine(engine, config)
    job = MapJob(stage, payloads, config, warm, workers, quiet)
    results: list[CallResult | None] = [None] * len(payloads)
    failed: list[int] = []
    batch = chosen.start(job)
    done = 0
    with presenter().progress(len(payloads), f"map {stage.title}", quiet=quiet) as progress:
        try:
            while done < len(payloads) and not failed:
                for index, result in batch.finished(TICK_S):
                    results[index] = result
                    done += 1
                    if not result.ok:
                        failed.append(index)
                progress.update(done, len(failed))
        except BaseException:
            batch.cancel()  # an interrupt, or the engine failing: nothing keeps running
            raise
        if failed:
            progress.update(done, len(failed), batch.cancel())
    if failed:
        raise_failure(min(failed), results[min(failed)])
    return [result for result in results if result is not None]


def raise_failure(index: int, result: CallResult | None) -> None:
    """Raise what `result.check()` raises, its message naming the input's index."""
    assert result is not None
    try:
        result.check()
    except _FailedRun as exc:
        raise type(exc)(f"map input [{index}]: {exc}", result) from None
    except RunnerError as exc:  # pragma: no cover - check() raises only failed runs
        raise type(exc)(f"map input [{index}]: {exc}") from None
