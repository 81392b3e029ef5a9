"""The languages a stage can be written in, and how each is wrapped."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from ..errors import InvalidStage


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

    def wrapper_source(self) -> str:
        wrappers = resources.files("ipyrunner.stages").joinpath("wrappers")
        return wrappers.joinpath(self.wrapper).read_text("utf-8")

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
    ),
    "javascript": Language(
        "javascript",
        "node",
        ".js",
        "node_stage.js",
        (),
        lambda code, _: bool(_JS_EXECUTE.search(code)),
        "function execute(input) { return input; }",
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
