"""`run_script`: a project script, run safely, with retries, as a `RunResult`."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import IPyRunner, parse_seconds, parse_size, settings
from .environment import MINIMAL_PATH, child_environment, parse_forwards, private_dirs
from .errors import (
    InterpreterNotFound,
    OutputLimitExceeded,
    ScriptFailed,
    ScriptNotFound,
    ScriptTimeout,
    UnsupportedScript,
)
from .paths import project_directory, resolve_in_project, setting
from .process import Completed, Limits, NullSink, RunStatus, Sink, describe_returncode, run_process
from .result_html import render_result_html
from .retry import RetryPolicy, run_attempts

LANGUAGES = {".py": "python", ".sh": "bash", ".js": "node"}


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

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.truncated

    @property
    def outcome(self) -> str:
        if self.timed_out:
            return "timed out"
        if self.truncated:
            return "output limit"
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
        if self.isolation == "none":
            parts.append("unsandboxed")
        return f"<RunResult {' · '.join(parts)}>"

    def _repr_html_(self) -> str:
        facts = [
            ("outcome", self.outcome),
            ("exit", describe_returncode(self.returncode)),
            ("attempts", str(self.attempts)),
            ("duration", f"{self.duration_s:.2f} s"),
            ("isolation", self.isolation),
        ]
        if self.args:
            facts.insert(0, ("args", " ".join(self.args)))
        return render_result_html(
            f"RunResult {self.path}",
            self.ok,
            facts,
            [("stdout", self.stdout), ("stderr", self.stderr)],
            warning="ran unsandboxed" if self.isolation == "none" else "",
        )


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


def interpreter(language: str, config: IPyRunner) -> str:
    """The executable for `language`: configured, else found on a minimal PATH."""
    if language == "python":
        found = setting("PYTHON_EXECUTABLE")
        if found is None:
            return sys.executable
        value, base = found
        candidate = value if os.sep not in value else str(base / value)
        return _executable(candidate, "PYTHON_EXECUTABLE in the environment or .env")
    configured = config.node_executable if language == "node" else config.bash_executable
    hint = "apt-get install nodejs" if language == "node" else "apt-get install bash"
    return _executable(
        configured or language,
        f"{hint}, or set IPyRunner.{language}_executable",
    )


def _executable(name: str, fix: str) -> str:
    found = shutil.which(name, path=MINIMAL_PATH) or shutil.which(name)
    if found is None:
        raise InterpreterNotFound(f"{name!r} was not found; fix: {fix}")
    return os.path.abspath(found)


def prepare(path: str | os.PathLike[str], args: Sequence[str], config: IPyRunner) -> ScriptJob:
    """Resolve and check everything about a script before anything runs."""
    project = project_directory()
    script = resolve_in_project(path, project)
    label = os.fspath(path)
    if not script.exists():
        raise ScriptNotFound(f"{label}: no such script in the project directory {project}")
    if not script.is_file():
        raise ScriptNotFound(f"{label} is not a regular file; give the path of a script")
    language = LANGUAGES.get(script.suffix.lower())
    if language is None:
        known = ", ".join(sorted(LANGUAGES))
        raise UnsupportedScript(
            f"{label}: cannot tell how to run a {script.suffix or 'file without extension'}; "
            f"scripts must end in {known}"
        )
    executable = interpreter(language, config)
    flags = ("-u",) if language == "python" else ()
    argv = (executable, *flags, str(script), *map(str, args))
    return ScriptJob(label=label, script=script, project=project, argv=argv)


def run_script(
    path: str | os.PathLike[str],
    *args: str,
    timeout: float | str | None = None,
    retries: int | str | None = None,
    max_output: int | str | None = None,
    env: Mapping[str, str] | Sequence[str] = (),
    check: bool = True,
    sink: Sink | None = None,
    config: IPyRunner | None = None,
) -> RunResult:
    """Run the project script `path` with `args` and return its `RunResult`.

    The path is relative to the project directory and must stay inside it.
    The child gets a cleared environment plus `env` (`NAME` copies the
    kernel's value, `NAME=VALUE` sets one). Each attempt is killed after
    `timeout` seconds or `max_output` bytes; a non-zero exit or a timeout is
    retried up to `retries` times. With `check`, a failed last attempt raises
    `ScriptFailed` (`ScriptTimeout`, `OutputLimitExceeded`).
    """
    config = config or settings()
    limits = Limits(
        timeout=config.timeout if timeout is None else parse_seconds(timeout, "--timeout"),
        max_output=config.max_output if max_output is None else parse_size(max_output),
        grace=config.grace_period,
    )
    policy = RetryPolicy.from_settings(config, retries)
    forward = parse_forwards(env)
    job = prepare(path, args, config)
    sink = sink or NullSink()
    start = time.monotonic()

    def attempt(number: int) -> Completed:
        sink.status(RunStatus(job.label, "running", number, policy.attempts))
        with private_dirs() as dirs:
            environment = child_environment(dirs, job.project, forward)
            return run_process(job.argv, env=environment, cwd=job.project, limits=limits, sink=sink)

    def announce(done: Completed, number: int, wait: float) -> None:
        state = "timed out" if done.timed_out else describe_returncode(done.returncode)
        sink.status(
            RunStatus(
                job.label,
                "retrying",
                number,
                policy.attempts,
                returncode=done.returncode,
                note=f"attempt {number} {state}; retrying in {wait:.1f} s",
            )
        )

    try:
        completed, made = run_attempts(attempt, policy, retryable=_retryable, before_retry=announce)
    except KeyboardInterrupt:
        sink.status(RunStatus(job.label, "interrupted", elapsed_s=time.monotonic() - start))
        raise
    result = RunResult(
        path=job.label,
        returncode=completed.returncode,
        stdout=completed.stdout,
        stderr=completed.stderr,
        duration_s=time.monotonic() - start,
        attempts=made,
        truncated=completed.output_exceeded,
        timed_out=completed.timed_out,
        args=tuple(args),
    )
    sink.status(
        RunStatus(
            job.label,
            result.outcome,
            made,
            policy.attempts,
            returncode=result.returncode,
            elapsed_s=result.duration_s,
            truncated_at=limits.max_output if result.truncated else None,
            note="unsandboxed" if result.isolation == "none" else "",
        )
    )
    return result.check() if check else result


def _retryable(done: Completed) -> bool:
    # An output flood is the script misbehaving, not a transient fault.
    return not done.ok and not done.output_exceeded
