"""`python -m ipyrunner run PATH [ARGS...]` and `python -m ipyrunner stage FILE
--input JSON`: the API from a shell."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import settings
from .display import DisplaySink, NullSink, TextSink
from .errors import RunnerError
from .scripts import RunResult, run_script
from .stages import Stage

# The exit statuses of coreutils' `timeout` and a distinct one for the cap.
EXIT_TIMEOUT = 124
EXIT_OUTPUT_LIMIT = 125
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ipyrunner")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a project script safely")
    run.add_argument("--timeout", metavar="SECONDS")
    run.add_argument("--retries", metavar="N")
    run.add_argument("--max-output", metavar="SIZE")
    run.add_argument("--env", metavar="NAME[=VALUE]", action="append", default=[])
    run.add_argument("--quiet", action="store_true", help="print nothing but errors")
    run.add_argument("path")
    run.add_argument("args", nargs=argparse.REMAINDER)
    stage = commands.add_parser(
        "stage", help="run a file that defines execute(input); print its JSON result"
    )
    stage.add_argument("file", help="a .py, .js or .sh file defining execute(input)")
    stage.add_argument("--input", metavar="JSON", default="null", help="the input, as JSON")
    stage.add_argument("--language", help="python, javascript or bash (default: by extension)")
    stage.add_argument("--timeout", metavar="SECONDS")
    stage.add_argument("--retries", metavar="N")
    stage.add_argument("--max-output", metavar="SIZE")
    stage.add_argument("--quiet", action="store_true", help="do not show what the stage prints")
    return parser


def _exit_status(result: RunResult) -> int:
    if result.timed_out:
        return EXIT_TIMEOUT
    if result.truncated:
        return EXIT_OUTPUT_LIMIT
    if result.returncode < 0:
        return 128 - result.returncode
    return result.returncode


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "stage":
        return _stage(args)
    config = settings()
    sink: DisplaySink = NullSink() if args.quiet else TextSink(limit=config.display_limit)
    try:
        with sink:
            result = run_script(
                args.path,
                *args.args,
                timeout=args.timeout,
                retries=args.retries,
                max_output=args.max_output,
                env=args.env,
                check=False,
                sink=sink,
                config=config,
            )
    except RunnerError as exc:
        print(f"ipyrunner: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return _exit_status(result)


_EXTENSIONS = {".py": "python", ".js": "javascript", ".sh": "bash"}


def _stage(args: argparse.Namespace) -> int:
    """Run a stage file; the value goes to stdout as JSON, everything else to stderr."""
    config = settings()
    path = Path(args.file)
    try:
        value = json.loads(args.input)
    except ValueError as exc:
        print(f"ipyrunner: --input is not valid JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    language = args.language or _EXTENSIONS.get(path.suffix.lower())
    if language is None:
        print(f"ipyrunner: cannot tell the language of {path}; give --language", file=sys.stderr)
        return EXIT_USAGE
    limits = {
        k: v for k, v in (("timeout", args.timeout), ("retries", args.retries)) if v is not None
    }
    if args.max_output is not None:
        limits["max_output"] = args.max_output
    sink: DisplaySink = (
        NullSink() if args.quiet else TextSink(limit=config.display_limit, stdout=sys.stderr)
    )
    try:
        code = path.read_text(encoding="utf-8")
        name = path.stem if path.stem.isidentifier() else None
        stage = Stage(code, language, name=name, **limits)
        with sink:
            result = stage.run(value, sink=sink, config=config)
    except OSError as exc:
        print(f"ipyrunner: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except RunnerError as exc:
        print(f"ipyrunner: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    if result.ok:
        print(json.dumps(result.value, ensure_ascii=False))
        return 0
    try:
        result.check()
    except RunnerError as exc:
        print(f"ipyrunner: {type(exc).__name__}: {exc}", file=sys.stderr)
    return EXIT_TIMEOUT if result.timed_out else EXIT_OUTPUT_LIMIT if result.truncated else 1
