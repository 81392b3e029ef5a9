"""`python -m ipyrunner run|stage|doctor`: the API from a shell."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ISOLATION_MODES, settings
from .display import live_view
from .errors import RunnerError
from .options import OPTIONS
from .runtimes import RUNTIME_NAMES
from .sandbox.doctor import format_report, host_report
from .scripts import RunResult, run_script
from .stages import LANGUAGES, Stage
from .stages.frames import is_frame

# The exit statuses of coreutils' `timeout` and a distinct one for the cap.
EXIT_TIMEOUT = 124
EXIT_OUTPUT_LIMIT = 125
EXIT_USAGE = 2


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--effects", metavar="LIST", help="network, fs-read[:P], fs-write[:P]")
    parser.add_argument("--isolate", choices=ISOLATION_MODES)
    parser.add_argument("--timeout", metavar="SECONDS")
    parser.add_argument("--retries", metavar="N")
    parser.add_argument("--max-output", metavar="SIZE")
    parser.add_argument("--memory", metavar="SIZE")
    parser.add_argument("--cpu-time", metavar="SECONDS")
    parser.add_argument("--processes", metavar="N")
    parser.add_argument("--file-size", metavar="SIZE")
    parser.add_argument("--open-files", metavar="N")
    parser.add_argument("--quiet", action="store_true", help="do not show the run's output")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ipyrunner")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a project script safely")
    _add_run_options(run)
    run.add_argument("--env", metavar="NAME[=VALUE]", action="append", default=[])
    run.add_argument("path")
    run.add_argument("args", nargs=argparse.REMAINDER)
    stage = commands.add_parser(
        "stage", help="run a file that defines execute(input); print its JSON result"
    )
    _add_run_options(stage)
    stage.add_argument("file", help="a .py, .js or .sh file defining execute(input)")
    stage.add_argument("--input", metavar="JSON", default="null", help="the input, as JSON")
    stage.add_argument("--language", help="python, javascript or bash (default: by extension)")
    stage.add_argument("--requires", metavar="SPECS", help="pinned packages, name==version")
    stage.add_argument("--runtime", choices=RUNTIME_NAMES, default="auto")
    commands.add_parser("doctor", help="what this host supports for sandboxing, and the fixes")
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}


def _fail(exc: RunnerError) -> int:
    print(f"ipyrunner: {type(exc).__name__}: {exc}", file=sys.stderr)
    return EXIT_USAGE


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
    if args.command == "doctor":
        checks = host_report()
        print(format_report(checks))
        return 0 if all(c.ok for c in checks if c.required) else 1
    config = settings()
    try:
        if args.command == "stage":
            return _stage(args)
        with live_view(config, args.quiet, mode="text") as sink:
            result = run_script(
                args.path,
                *args.args,
                effects=args.effects,
                env=args.env,
                check=False,
                sink=sink,
                config=config,
                **_options(args),
            )
    except RunnerError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        return 130
    return _exit_status(result)


def _stage(args: argparse.Namespace) -> int:
    """Run a stage file; the value goes to stdout as JSON, everything else to stderr."""
    config = settings()
    path = Path(args.file)
    try:
        value = json.loads(args.input)
    except ValueError as exc:
        print(f"ipyrunner: --input is not valid JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    by_extension = {lang.extension: lang.name for lang in LANGUAGES.values()}
    language = args.language or by_extension.get(path.suffix.lower())
    if language is None:
        print(f"ipyrunner: cannot tell the language of {path}; give --language", file=sys.stderr)
        return EXIT_USAGE
    try:
        code = path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"ipyrunner: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    name = path.stem if path.stem.isidentifier() else None
    stage = Stage(
        code,
        language,
        name=name,
        effects=args.effects or (),
        requires=args.requires or (),
        runtime=args.runtime,
        **_options(args),
    )
    # stdout is for the JSON value: what the stage prints is shown on stderr.
    with live_view(config, args.quiet, mode="text", stdout=sys.stderr) as sink:
        result = stage.run(value, sink=sink, config=config)
    if result.ok:
        if is_frame(result.value):  # a DataFrame: pandas' Table Schema JSON keeps its types
            print(result.value.to_json(orient="table", date_format="iso", force_ascii=False))
        else:
            print(json.dumps(result.value, ensure_ascii=False))
        return 0
    try:
        result.check()
    except RunnerError as exc:
        print(f"ipyrunner: {type(exc).__name__}: {exc}", file=sys.stderr)
    return EXIT_TIMEOUT if result.timed_out else EXIT_OUTPUT_LIMIT if result.truncated else 1
