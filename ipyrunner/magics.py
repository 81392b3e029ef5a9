"""The notebook face: `%runscript` and `%%stage`. Parses arguments, talks to
the namespace, picks a display, and leaves everything else to the Python API."""

from __future__ import annotations

import argparse
import keyword
import shlex
from collections.abc import Callable
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .config import ISOLATION_MODES, settings
from .display import live_view
from .errors import InvalidOption, brief_interrupt
from .options import OPTIONS
from .runtimes import RUNTIME_NAMES
from .scripts import RunResult, run_script
from .stages import Stage

F = TypeVar("F", bound=Callable[..., Any])

# Options every run takes, in the order `%runscript?` and `%%stage?` list them.
_RUN_ARGUMENTS = [
    argument(
        "--effects",
        metavar="LIST",
        help="what the run may do: network, fs-read[:PATH], fs-write[:PATH] (comma-separated)",
    ),
    argument(
        "--isolate",
        choices=ISOLATION_MODES,
        help="sandbox: auto (default), bwrap (required), none (opt out)",
    ),
    argument("--timeout", metavar="SECONDS", help="kill an attempt after this many seconds"),
    argument("--retries", metavar="N", help="further attempts after a failed one (backoff)"),
    argument("--max-output", metavar="SIZE", help="kill the run past this output (64K, 10M)"),
    argument("--memory", metavar="SIZE", help="memory limit (512M, 2G)"),
    argument("--cpu-time", metavar="SECONDS", help="CPU-time limit"),
    argument("--processes", metavar="N", help="most processes and threads at once"),
    argument("--file-size", metavar="SIZE", help="largest file the run may write"),
    argument("--open-files", metavar="N", help="most open files at once"),
    argument("--quiet", action="store_true", help="no live output"),
]


def run_arguments(func: F) -> F:
    for decorator in reversed(_RUN_ARGUMENTS):
        func = decorator(func)
    return func


def _identifier(value: str) -> str:
    if not value.isidentifier() or keyword.iskeyword(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid variable name")
    return value


def _unquote(text: str | None) -> str | None:
    """IPython's argument splitter keeps the quotes that group a value: drop them."""
    if text is not None and len(text) > 1 and text[0] in "'\"" and text[-1] == text[0]:
        return shlex.split(text)[0]
    return text


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}


@magics_class
class RunnerMagics(Magics):
    @magic_arguments()
    @argument("--out", metavar="VAR", type=_identifier, help="bind the RunResult to VAR")
    @argument(
        "--env",
        metavar="NAME[=VALUE]",
        action="append",
        default=[],
        help="forward one variable to the script (repeatable)",
    )
    @argument("--no-raise", action="store_true", help="return a failed result instead of raising")
    @run_arguments
    @argument("path", nargs="?", help="the script, relative to the project directory")
    @argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    @line_magic
    def runscript(self, line: str) -> RunResult:
        """Run a project script safely and stream its output.

        The path is relative to the project directory (PROJECT_DIRECTORY from
        the environment or .env, else the current directory) and may not leave
        it. Options come before the path; everything after it goes to the
        script. The script runs in a bubblewrap sandbox with the project
        read-write (--effects to change that), a cleared environment, a
        timeout per attempt, retries with exponential backoff, an output cap
        and resource limits.
        """
        args = parse_argstring(self.runscript, line)
        if args.path is None:
            raise UsageError("%runscript needs a script: %runscript [options] PATH [ARGS...]")
        config = settings()
        try:
            # The display shows only once the run has something to say: a refused
            # path or option is its one red line alone.
            with live_view(config, quiet=args.quiet) as sink:
                result = run_script(
                    args.path,
                    *args.args,
                    effects=_unquote(args.effects),
                    env=args.env,
                    check=False,
                    sink=sink,
                    config=config,
                    **_options(args),
                )
        except InvalidOption as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt as exc:
            raise brief_interrupt(exc) from None
        if args.out:
            self.shell_namespace()[args.out] = result
        return result if args.no_raise else result.check()

    @magic_arguments()
    @argument("language", help="python, javascript (js, node) or bash (sh)")
    @argument("name", nargs="?", type=_identifier, help="bind a Stage to NAME instead of running")
    @argument("--in", dest="input", metavar="EXPR", help="the input: a Python expression")
    @argument("--out", metavar="VAR", type=_identifier, help="bind the result value to VAR")
    @argument("--requires", metavar="SPECS", help="pinned packages: name==version, comma-separated")
    @argument("--runtime", choices=RUNTIME_NAMES, help="auto (default), host, venv or nix")
    @argument(
        "--warm",
        action="store_true",
        default=None,
        help="serve calls from warm sandboxed workers, each from a pristine fork (Python)",
    )
    @run_arguments
    @no_var_expand
    @cell_magic
    def stage(self, line: str, cell: str) -> Any:
        """Run the cell, which defines execute(input), as a stage in its own process.

        With NAME, the Stage is bound to NAME and runs only if --in is given;
        without NAME it runs now. The input (--in, evaluated in the notebook)
        goes in as JSON and the JSON result comes back: shown as Out[n], and
        bound to --out VAR. What the cell prints streams live. The stage runs
        in a bubblewrap sandbox with no network and no project files unless
        --effects grants them. --requires (or a `# requires:` line) installs
        pinned packages into a cached venv; --runtime nix takes the
        interpreter from a Nix flake (IPyRunner.nix_flake).
        """
        args = parse_argstring(self.stage, line)
        try:
            stage = Stage(
                cell,
                args.language,
                name=args.name,
                effects=_unquote(args.effects) or (),
                requires=_unquote(args.requires) or (),
                runtime=args.runtime or "auto",
                line_offset=1,
                warm=args.warm,
                **_options(args),
            )
            if args.name:
                self.shell_namespace()[args.name] = stage
                if args.input is None:
                    return None
            value = self._evaluate(args.input)
            config = settings()
            with live_view(config, quiet=args.quiet) as sink:
                result = stage.run(value, sink=sink, config=config)
        except InvalidOption as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt as exc:
            raise brief_interrupt(exc) from None
        result.check()
        if args.out:
            self.shell_namespace()[args.out] = result.value
        return result.value

    def _evaluate(self, expression: str | None) -> Any:
        expression = _unquote(expression)
        if expression is None:
            return None
        try:
            return eval(expression, self.shell_namespace())  # noqa: S307 - the user's own input
        except Exception as exc:
            raise UsageError(f"--in {expression}: {type(exc).__name__}: {exc}") from None

    def shell_namespace(self) -> dict[str, Any]:
        assert self.shell is not None
        namespace: dict[str, Any] = self.shell.user_ns
        return namespace
