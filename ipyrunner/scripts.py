"""`run_script`: a project script, run safely, with retries, as a `RunResult`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import IPyRunner, settings
from .effects import PROJECT_WRITE, Effects, parse_effects
from .environment import parse_forwards
from .errors import (
    OutputLimitExceeded,
    ResourceLimitExceeded,
    ScriptFailed,
    ScriptNotFound,
    ScriptTimeout,
    UnsupportedScript,
)
from .options import RunOptions
from .paths import project_directory, resolve_in_project
from .presenting import presenter
from .result_html import describe_returncode, isolation_note, render_result_html
from .runner.request import RunRequest, run_request
from .runtimes import resolve_interpreter
from .sandbox.commit import Refused
from .sandbox.isolation import Attempted
from .sinks import NullSink, RunStatus, Sink
from .stages.languages import LANGUAGES

# A script's extension names its interpreter, as a stage language's does.
INTERPRETERS = {language.extension: language.interpreter for language in LANGUAGES.values()}


@dataclass(frozen=True)
class RunResult:
    """What a script run produced: the last attempt's output and exit status."""

    path: str
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    attempts: int
    truncated: bool
    timed_out: bool = False
    args: tuple[str, ...] = ()
    isolation: str = "none"
    host_network: bool = False  # ran with effect host-network
    limit: str | None = None  # memory, cpu or file-size: the limit that killed it
    refused: tuple[Refused, ...] = ()  # writes the sandbox kept off the host

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not (self.timed_out or self.truncated or self.limit)

    @property
    def outcome(self) -> str:
        if self.timed_out:
            return "timed out"
        if self.truncated:
            return "output limit"
        if self.limit:
            return f"{self.limit} limit"
        return "succeeded" if self.returncode == 0 else "failed"

    def check(self) -> RunResult:
        """Return self if the run succeeded, else raise the matching error."""
        if self.ok:
            return self
        tries = f"after {self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        if self.timed_out:
            raise ScriptTimeout(
                f"{self.path} timed out {tries} (each attempt is killed after --timeout "
                "seconds); raise --timeout or make the script faster",
                self,
            )
        if self.truncated:
            raise OutputLimitExceeded(
                f"{self.path} wrote more than the output cap and was killed; "
                "raise --max-output or make the script quieter",
                self,
            )
        if self.limit:
            raise ResourceLimitExceeded(
                f"{self.path} was killed by its {self.limit} limit {tries}; "
                f"raise it (--{self.limit.replace('cpu', 'cpu-time')}) or make the script leaner",
                self,
            )
        last = _last_line(self.stderr) or _last_line(self.stdout)
        said = f"; last output: {last!r}" if last else ""
        raise ScriptFailed(
            f"{self.path} failed with {describe_returncode(self.returncode)} {tries}{said}",
            self,
        )

    def __repr__(self) -> str:
        plural = "s" if self.attempts != 1 else ""
        parts = [
            self.path,
            self.outcome,
            describe_returncode(self.returncode),
            f"{self.attempts} attempt{plural}",
            f"{self.duration_s:.2f} s",
            f"stdout {len(self.stdout)} chars",
            f"stderr {len(self.stderr)} chars",
        ]
        if note := isolation_note(self):
            parts.append(note)
        return f"<RunResult {' · '.join(parts)}>"

    @property
    def label(self) -> str:
        return self.path

    def _repr_html_(self) -> str:
        facts = [("args", " ".join(self.args))] if self.args else []
        return render_result_html("RunResult", self, facts)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


@dataclass(frozen=True)
class ScriptJob:
    """A resolved script: what to run, where, and how to show it."""

    label: str
    script: Path
    project: Path
    argv: tuple[str, ...]
    args: tuple[str, ...]
    runtime_paths: tuple[str, ...]  # what the sandbox exposes of its interpreter


def prepare(path: str | os.PathLike[str], args: Sequence[str], config: IPyRunner) -> ScriptJob:
    """Resolve and check everything about a script before anything runs."""
    project = project_directory()
    script = resolve_in_project(path, project)
    label = os.fspath(path)
    if not script.exists():
        raise ScriptNotFound(f"{label}: no such script in the project directory {project}")
    if not script.is_file():
        raise ScriptNotFound(f"{label} is not a regular file; give the path of a script")
    language = INTERPRETERS.get(script.suffix.lower())
    if language is None:
        known = ", ".join(sorted(INTERPRETERS))
        raise UnsupportedScript(
            f"{label}: cannot tell how to run a {script.suffix or 'file without extension'}; "
            f"scripts must end in {known}"
        )
    # Resolved once per state that decides it, as a stage's host interpreter is.
    interpreter = resolve_interpreter("host", language, (), config, NullSink())
    flags = ("-u",) if language == "python" else ()
    argv = (interpreter.executable, *flags, str(script), *map(str, args))
    return ScriptJob(
        label=label,
        script=script,
        project=project,
        argv=argv,
        args=tuple(args),
        runtime_paths=tuple(interpreter.readonly),
    )


def run_script(
    path: str | os.PathLike[str],
    *args: str,
    effects: str | Sequence[str] | Effects | None = None,
    env: Mapping[str, str] | Sequence[str] = (),
    check: bool = True,
    sink: Sink | None = None,
    config: IPyRunner | None = None,
    **options: Any,
) -> RunResult:
    """Run the project script `path` with `args` and return its `RunResult`.

    The path is relative to the project directory and must stay inside it.
    The child gets a cleared environment plus `env` (`NAME` copies the
    kernel's value, `NAME=VALUE` sets one), and runs sandboxed with `effects`
    (default `fs-write`: the project read-write). Options: `timeout`,
    `max_output`, `retries`, `isolate`, `memory`, `cpu_time`, `processes`,
    `file_size`, `open_files`. A non-zero exit or a timeout is retried; with
    `check`, a failed last attempt raises `ScriptFailed` (`ScriptTimeout`,
    `OutputLimitExceeded`, `ResourceLimitExceeded`).
    """
    config = config or settings()
    run_options = RunOptions.from_settings(config, **options)
    granted = PROJECT_WRITE if effects is None else parse_effects(effects)
    forward = parse_forwards(env)
    job = prepare(path, args, config)
    if sink is None:
        with presenter().sink() as shown:
            return _run(job, shown, run_options, granted, forward, check)
    return _run(job, sink, run_options, granted, forward, check)


def _run(
    job: ScriptJob,
    sink: Sink,
    options: RunOptions,
    effects: Effects,
    forward: dict[str, str],
    check: bool,
) -> RunResult:
    request = RunRequest(
        label=job.label,
        argv=job.argv,
        project=job.project,
        effects=effects,
        options=options,
        forward=forward,
        runtime_paths=job.runtime_paths,
        readable=(str(job.script),),
    )
    last, made, elapsed = run_request(
        request, sink, judge=_keep, retryable=_retryable, failure=_failure
    )
    done = last.done
    result = RunResult(
        path=job.label,
        returncode=done.returncode,
        stdout=done.stdout,
        stderr=done.stderr,
        duration_s=elapsed,
        attempts=made,
        truncated=done.output_exceeded,
        timed_out=done.timed_out,
        args=job.args,
        isolation=last.isolation,
        host_network=effects.host_network,
        limit=last.limit,
        refused=last.refused,
    )
    cap = options.limits.max_output
    sink.status(RunStatus.final(result, options.retry.attempts, cap))
    return result.check() if check else result


def _keep(attempt: Attempted) -> Attempted:
    return attempt


def _failure(attempt: Attempted) -> str:
    done = attempt.done
    if attempt.limit:
        return f"hit its {attempt.limit} limit"
    return "timed out" if done.timed_out else describe_returncode(done.returncode)


def _retryable(attempt: Attempted) -> bool:
    # A flood or a resource limit is the script misbehaving, not a transient fault.
    done = attempt.done
    return not done.ok and not done.output_exceeded and attempt.limit is None
