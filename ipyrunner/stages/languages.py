"""The languages a stage can be written in, and how each is wrapped."""

from __future__ import annotations

import ast
import functools
import importlib.util
import marshal
import os
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidStage

# Stages run the wrappers from the package itself, mounted read-only.
WRAPPERS = os.path.realpath(Path(__file__).parent / "wrappers")

# The Python wrapper is imported from the bytecode the kernel wrote beside the
# cell (no compile per call); a Python of another version gets bad magic and
# imports the package's source instead, writing no bytecode into the package.
_LAUNCHER = """\
import sys
source = sys.argv.pop(1)
beside = sys.path[0] = sys.argv[1].rpartition("/")[0]
try:
    import {0}
except ImportError:
    kept, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    sys.path[0] = source
    import {0}
    sys.path[0], sys.dont_write_bytecode = beside, kept
{0}.main(source)
"""
_COMPILING = threading.Lock()  # catch_warnings changes process-wide state


def _python_defines_execute(code: str, filename: str) -> bool:
    try:
        tree = ast.parse(code, filename)
    except SyntaxError as exc:
        raise InvalidStage(
            f"syntax error in the cell, line {exc.lineno}: {exc.msg}"
            + (f": {exc.text.strip()!r}" if exc.text else "")
        ) from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "execute":
            return True
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "execute" for t in targets):
                return True
        if isinstance(node, ast.Import | ast.ImportFrom) and any(
            (alias.asname or alias.name) == "execute" for alias in node.names
        ):
            return True
    return False


@functools.lru_cache(maxsize=128)
def _cell_bytecode(code: str, filename: str) -> bytes | None:
    """The cell compiled as the wrapper would compile it, behind the magic
    number of the Pythons that may load it (the wrapper compiles the source on
    any other): a process's first compile() costs 1.5-5 ms of set-up. None
    where compiling warns or fails, so that the stage shows it, as before."""
    with _COMPILING, warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            compiled = compile(code, filename, "exec", dont_inherit=True, optimize=0)
        except (SyntaxError, ValueError, Warning, RecursionError, MemoryError):
            return None
    return importlib.util.MAGIC_NUMBER + marshal.dumps(compiled)


@functools.lru_cache(maxsize=4)
def _module_bytecode(path: str, modified: int) -> bytes:
    """A wrapper as a sourceless .pyc of the kernel's Python: magic number,
    then flags, date and size (zero: nothing to check it against), then code.
    `modified` (the source's mtime) keys the cache, so an edit takes effect."""
    with open(path, encoding="utf-8") as handle:
        compiled = compile(handle.read(), path, "exec", dont_inherit=True, optimize=0)
    return importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(compiled)


_JS_EXECUTE = re.compile(
    r"\b(?:async\s+)?function\s*\*?\s*execute\s*\(|\b(?:const|let|var)\s+execute\s*="
)
_BASH_EXECUTE = re.compile(r"^\s*(?:function\s+execute\b|execute\s*\(\s*\))", re.MULTILINE)


@dataclass(frozen=True)
class Language:
    """How one language's cells become a running stage."""

    name: str
    interpreter: str  # the host runtime's key: python, node, bash
    extension: str
    wrapper: str  # file in ipyrunner/stages/wrappers
    flags: tuple[str, ...]
    defines_execute: Callable[[str, str], bool]
    example: str
    compiled: bool = False  # Python: the kernel compiles the wrapper and the cell
    displays: bool = False  # the wrapper gives the cell a display() (python, javascript)

    def command(self, executable: str) -> tuple[str, ...]:
        """The wrapper's argv up to its CELL and NAME (see `write_program`)."""
        if self.compiled:
            launcher = _LAUNCHER.format(Path(self.wrapper).stem)
            return (executable, *self.flags, "-c", launcher, WRAPPERS)
        return (executable, *self.flags, os.path.join(WRAPPERS, self.wrapper))

    def write_program(self, directory: Path, code: str, filename: str) -> Path:
        """Write the cell into `directory`, which the sandbox reads, and return
        its path; for Python, beside it, the cell's and the wrapper's bytecode."""
        cell = directory / f"cell{self.extension}"
        cell.write_text(code, encoding="utf-8")
        if self.compiled:
            source = os.path.join(WRAPPERS, self.wrapper)
            wrapper = _module_bytecode(source, os.stat(source).st_mtime_ns)
            (directory / Path(self.wrapper).with_suffix(".pyc")).write_bytes(wrapper)
            bytecode = _cell_bytecode(code, filename)
            if bytecode is not None:
                cell.with_name(cell.name + "c").write_bytes(bytecode)
        return cell

    def check(self, code: str, filename: str) -> None:
        """Reject, before anything runs, a cell that cannot work."""
        if not self.defines_execute(code, filename):
            raise InvalidStage(
                f"the cell defines no top-level execute(input); add one, e.g. {self.example}"
            )


LANGUAGES = {
    "python": Language(
        "python",
        "python",
        ".py",
        "python_stage.py",
        ("-s", "-u"),  # not -I: a runtime's own wrapper may set PYTHONPATH
        _python_defines_execute,
        "def execute(input): return input",
        compiled=True,
        displays=True,
    ),
    "javascript": Language(
        "javascript",
        "node",
        ".js",
        "node_stage.js",
        (),
        lambda code, _: bool(_JS_EXECUTE.search(code)),
        "function execute(input) { return input; }",
        displays=True,
    ),
    "bash": Language(
        "bash",
        "bash",
        ".sh",
        "bash_stage.sh",
        (),
        lambda code, _: bool(_BASH_EXECUTE.search(code)),
        'execute() { echo "$1"; }',
    ),
}
ALIASES = {"js": "javascript", "node": "javascript", "sh": "bash"}


def find_language(name: str) -> Language:
    """The language called `name` (or an alias), or a clear error."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in LANGUAGES:
        raise InvalidStage(
            f"unknown language {name!r}: use python, javascript (js, node) or bash (sh)"
        )
    return LANGUAGES[key]
