"""`Stage`: a cell that defines `execute(input)`, run as a sandboxable subprocess."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import IPyRunner, settings
from ..effects import Effects, parse_effects
from ..errors import (
    InvalidOption,
    InvalidStage,
)
from ..options import RunOptions
from ..paths import project_directory
from ..presenting import presenter
from ..process import ChannelSpec, Completed
from ..requirements import parse_requirements, requirements_in_code
from ..runner import WorkerSpec, close_pools
from ..runner.request import ONE_SHOT, Runner, RunRequest, run_request
from ..runner.warm import WarmRunner
from ..runtimes import Interpreter, choose_runtime, resolve_interpreter
from ..sandbox.isolation import Attempted, choose_isolation
from ..sinks import MessagesOnStderr, NullSink, RunStatus, Sink
from .envelope import Outcome, StageError, decode
from .frames import encode_frame, is_frame
from .languages import WRAPPERS, Language, find_language
from .mime import check_display
from .result import StageResult
from .wrappers.python_stage import keys_are_str, unserializable

RESULT_FD_VARIABLE = "IPYRUNNER_RESULT_FD"


def encode_input(value: Any) -> bytes:
    """The input as JSON bytes, or an error naming what JSON cannot hold; a
    pandas DataFrame as Arrow IPC.

    json.dumps is the check (NaN, a set, a cycle); the walk that names the
    path runs only when it fails, or when a dict has a key that is not a str.
    """
    if is_frame(value):
        return encode_frame(value)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        found = None if keys_are_str(value) else unserializable(value, "input")
    except (TypeError, ValueError, RecursionError) as exc:
        found = unserializable(value, "input")
        if found is None:  # an int too long to print, say
            raise InvalidOption(f"the input cannot be written as JSON: {exc}") from None
    if found is not None:
        where, kind = found
        raise InvalidOption(
            f"{where} is a {kind}, which JSON cannot hold; pass dicts with str keys, lists, "
            "str, int, float, bool or None"
        )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: ASCII escapes keep the JSON valid
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class _Attempt:
    ran: Attempted
    outcome: Outcome
    warm: bool = False

    @property
    def done(self) -> Completed:
        return self.ran.done


class Stage:
    """A cell defining `execute(input)`, wrapped to run as its own process.

    `stage(input)` returns the value (raising on failure), `stage.run(input)`
    returns a `StageResult`, `stage.map(inputs)` runs many in parallel.
    """

    def __init__(
        self,
        code: str,
        language: str = "python",
        *,
        effects: str | Sequence[str] | Effects = (),
        requires: str | Sequence[str] = (),
        name: str | None = None,
        runtime: str = "auto",
        line_offset: int = 0,
        warm: bool | None = None,
        config: IPyRunner | None = None,
        **limits: Any,
    ) -> None:
        if name is not None and not name.isidentifier():
            raise InvalidStage(f"invalid stage name {name!r}: use a Python identifier")
        config = config or settings()
        RunOptions.from_settings(config, **limits)  # bad options fail before anything runs
        self.code = code
        self.language: Language = find_language(language)
        self.name = name
        self.effects = parse_effects(effects)
        given = [requires] if isinstance(requires, str) else list(requires)
        specs = [s for item in given for s in item.split(",") if s.strip()]
        self.requirements = parse_requirements(
            [*specs, *requirements_in_code(code)], config.allow_unpinned
        )
        self.runtime = choose_runtime(runtime, self.language.interpreter, self.requirements, config)
        self.limits = dict(limits)
        # Lines before the code in what the user sees (the %%stage line), so
        # errors name the line as the notebook numbers it.
        self.line_offset = line_offset
        # None: single calls as IPyRunner.warm says, map warm (Python stages only).
        self.warm = warm
        self._workers: dict[tuple[RunOptions, Path], tuple[WorkerSpec | None, Interpreter]] = {}
        self.language.check(self.numbered_code, self.filename)

    @property
    def numbered_code(self) -> str:
        return "\n" * self.line_offset + self.code

    @property
    def filename(self) -> str:
        return f"<stage {self.name or 'cell'}>"

    @property
    def label(self) -> str:
        return f"stage {self.name}" if self.name else f"{self.language.name} stage"

    @property
    def id(self) -> str:
        """SHA-256 over the canonical JSON of what makes the stage what it is."""
        canonical = json.dumps(
            {
                "language": self.language.name,
                "code": self.code,
                "effects": self.effects.canonical(),
                "requirements": [str(r) for r in self.requirements],
                "runtime": self.runtime,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def __repr__(self) -> str:
        return f"<Stage {self.name or '(unnamed)'} · {self.language.name} · {self.id[:12]}>"

    def spec(self) -> dict[str, Any]:
        """The stage as a plain value, all a cluster's worker rebuilds it from."""
        return {
            "code": self.code,
            "language": self.language.name,
            "effects": self.effects.canonical(),
            "requires": [str(r) for r in self.requirements],
            "name": self.name,
            "runtime": self.runtime,
            "line_offset": self.line_offset,
            "warm": self.warm,
            "limits": dict(self.limits),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], config: IPyRunner | None = None) -> Stage:
        """The stage `spec()` describes, checked again as `Stage(...)` checks it."""
        return cls(
            spec["code"],
            spec["language"],
            effects=spec["effects"],
            requires=spec["requires"],
            name=spec["name"],
            runtime=spec["runtime"],
            line_offset=spec["line_offset"],
            warm=spec["warm"],
            config=config,
            **spec["limits"],
        )

    def options(self, config: IPyRunner | None = None) -> RunOptions:
        """The run options of a call: the settings with this stage's own on top."""
        return RunOptions.from_settings(config or settings(), **self.limits)

    @property
    def title(self) -> str:
        """The stage's name, else its language's: how a map's progress and tasks are named."""
        return self.name or self.language.name

    def failure(self, kind: str, message: str) -> StageResult:
        """The result of a call that an engine could not complete (its worker lost,
        say): `kind` names what went wrong, as an error type does."""
        return StageResult(
            value=None,
            stdout="",
            stderr="",
            returncode=-1,
            duration_s=0.0,
            attempts=1,
            truncated=False,
            error=StageError("engine", kind, message),
            name=self.name,
            language=self.language.name,
            runtime=self.runtime,
        )

    @property
    def repeatable(self) -> bool:
        """Whether running a call twice is harmless: it neither writes project files
        nor reaches the network (an engine re-runs a call whose worker was lost)."""
        effects = self.effects
        return not (effects.write or effects.network or effects.host_network)

    def __call__(self, input: Any = None) -> Any:
        return self.run(input).check().value

    def run(
        self,
        input: Any = None,
        *,
        sink: Sink | None = None,
        config: IPyRunner | None = None,
        cancel: threading.Event | None = None,
    ) -> StageResult:
        """Run once (with retries); never raises for a failure of the stage's code."""
        payload = encode_input(input)
        config = config or settings()
        warm = config.warm if self.warm is None else self.warm
        with _display(sink) as shown:
            return self.run_payload(payload, shown, config, cancel, warm=warm)

    def map(
        self,
        inputs: Iterable[Any],
        workers: int | None = None,
        *,
        config: IPyRunner | None = None,
        quiet: bool = False,
        warm: bool | None = None,
        engine: object = None,
        results: bool = False,
    ) -> list[Any]:
        """The values of the stage over `inputs`, in input order, run in parallel,
        by warm workers unless `warm` (or the stage's own `warm`) is False.

        `engine`: None (`IPyRunner.map_engine`), "local" (threads here), "dask"
        (the default `distributed` client), a scheduler address or a `Client`.
        The first failure cancels what is still to run and raises its error,
        naming the input's index. `results=True` gives the `StageResult`s.
        """
        from ..engines import run_map

        payloads = []
        for index, item in enumerate(inputs):
            try:
                payloads.append(encode_input(item))
            except InvalidOption as exc:
                raise InvalidOption(f"inputs[{index}]: {exc}") from None
        config = config or settings()
        warm = warm if warm is not None else self.warm is not False
        done = run_map(
            self, payloads, workers=workers, warm=warm, engine=engine, config=config, quiet=quiet
        )
        return list(done) if results else [result.value for result in done]

    def close(self) -> None:
        """End this stage's warm workers (a later warm call starts new ones)."""
        close_pools(self.id)

    def interpreter(self, config: IPyRunner | None = None, sink: Sink | None = None) -> Interpreter:
        """This stage's interpreter: resolved (installed, built) on first use, cached after."""
        return resolve_interpreter(
            self.runtime,
            self.language.interpreter,
            self.requirements,
            config or settings(),
            sink or NullSink(),
        )

    def _warm_worker(
        self,
        options: RunOptions,
        project: Path,
        interpreter: Interpreter | None,
        config: IPyRunner,
        sink: Sink,
    ) -> tuple[WorkerSpec | None, Interpreter | None]:
        """The warm workers' spec for these options and the interpreter it names,
        made once per stage: a running worker keeps the interpreter it started with."""
        key = (options, project)
        if key not in self._workers:
            interpreter = interpreter or self.interpreter(config, sink)
            self._workers[key] = (_warm_spec(self, options, interpreter, project), interpreter)
        spec, used = self._workers[key]
        return (spec, used) if spec is not None else (None, interpreter)

    def run_payload(
        self,
        payload: bytes,
        sink: Sink,
        config: IPyRunner,
        cancel: threading.Event | None,
        interpreter: Interpreter | None = None,
        warm: bool = False,
        workers: int = 1,
        project: Path | None = None,
    ) -> StageResult:
        """One call (with retries) of the input already encoded (`encode_input`):
        what `run` and every map engine do for each input."""
        started = time.monotonic()  # the status's time counts an install too
        options = RunOptions.from_settings(config, **self.limits)
        project = project or project_directory()
        spec: WorkerSpec | None = None
        if warm:
            spec, interpreter = self._warm_worker(options, project, interpreter, config, sink)
        interpreter = interpreter or self.interpreter(config, sink)

        def program(code: Path) -> tuple[str, ...]:
            cell = self.language.write_program(code, self.numbered_code, self.filename)
            return (str(cell), self.name or "cell")

        request = RunRequest(
            label=self.label,
            argv=self.language.command(interpreter.executable),
            project=project,
            effects=self.effects,
            options=options,
            runtime_paths=tuple(interpreter.readonly),
            readable=(WRAPPERS,),
            program=program,
            private_cwd=True,
            stdin=payload,
            channel=ChannelSpec(
                RESULT_FD_VARIABLE,
                config.max_result,
                check_display if self.language.displays else None,
            ),
        )
        runner: Runner = ONE_SHOT if spec is None else WarmRunner(spec, config.warm_idle, workers)

        def judge(ran: Attempted) -> _Attempt:
            outcome = decode(ran.done, self.language.name, config.max_result, ran.limit)
            return _Attempt(ran, outcome, warm=spec is not None)

        last, made, elapsed = run_request(
            request,
            # A bash stage's stdout is its result: its messages go to stderr by design.
            MessagesOnStderr(sink) if self.language.name == "bash" else sink,
            judge=judge,
            retryable=_retryable,
            failure=_failure,
            runner=runner,
            cancel=cancel,
        )
        result = _result(self, last, made, elapsed)
        cap = options.limits.max_output
        final = RunStatus.final(result, options.retry.attempts, cap)
        sink.status(replace(final, elapsed_s=time.monotonic() - started))
        return result


def _failure(attempt: _Attempt) -> str:
    error = attempt.outcome.error
    return f"{error.type}: {error.message}" if error else "failed"


def _retryable(attempt: _Attempt) -> bool:
    error = attempt.outcome.error
    # A flood, a bad result or a cancel is not a transient fault.
    return (
        error is not None
        and error.kind in ("raised", "exit", "signal", "timeout")
        and (not attempt.done.cancelled)
    )


def _result(stage: Stage, attempt: _Attempt, attempts: int, duration: float) -> StageResult:
    done, outcome = attempt.done, attempt.outcome
    return StageResult(
        value=outcome.value,
        stdout=done.stdout,
        stderr=done.stderr,
        returncode=done.returncode,
        duration_s=duration,
        attempts=attempts,
        truncated=done.output_exceeded,
        error=outcome.error,
        name=stage.name,
        language=stage.language.name,
        timed_out=done.timed_out,
        isolation=attempt.ran.isolation,
        host_network=stage.effects.host_network,
        runtime=stage.runtime,
        refused=attempt.ran.refused,
        warm=attempt.warm,
        displays=done.displays,
    )


@contextlib.contextmanager
def _display(sink: Sink | None) -> Iterator[Sink]:
    if sink is not None:
        yield sink
        return
    with presenter().sink() as shown:
        yield shown


def _warm_spec(
    stage: Stage, options: RunOptions, interpreter: Interpreter, project: Path
) -> WorkerSpec | None:
    """What a warm worker for `stage` is; None where calls stay cold: other
    languages, fs-write (its writes are committed per run), no sandbox."""
    if stage.language.name != "python" or stage.effects.write:
        return None
    if choose_isolation(options.isolate, options.require_sandbox) != "bwrap":
        return None
    worker = os.path.join(WRAPPERS, "python_worker.py")
    return WorkerSpec(
        owner=stage.id,
        command=(interpreter.executable, *stage.language.flags, worker),
        files=(("cell.py", stage.numbered_code),),
        args=(stage.name or "cell",),
        readable=(WRAPPERS,),
        effects=stage.effects,
        project=project,
        runtime_paths=tuple(interpreter.readonly),
        isolate=options.isolate,
        require_sandbox=options.require_sandbox,
        resources=options.resources,
        tmp_size=options.tmp_size,
    )
