"""`python -m ipyrunner run PATH [ARGS...]`: the API from a shell."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import settings
from .display import DisplaySink, NullSink, TextSink
from .errors import RunnerError
from .scripts import RunResult, run_script

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
