"""The stage wrappers (python, node, bash) speak one protocol.

Each test runs a wrapper the way the kernel does: `INTERPRETER WRAPPER CELL NAME`,
the input as JSON on stdin and the result channel as an inherited pipe whose
number is in IPYRUNNER_RESULT_FD. Only the envelope travels on that pipe.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ipyrunner.stages.languages import find_language
from ipyrunner.stages.wrappers.python_stage import keys_are_str

WRAPPERS = Path(__file__).resolve().parents[2] / "ipyrunner" / "stages" / "wrappers"
NODE = shutil.which("node")
BASH = shutil.which("bash")
ENV = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8"}
SUFFIX = {"python": ".py", "node": ".js", "bash": ".sh"}

# `make test` installs node and bash: a missing one fails these tests, never skips them.
LANGUAGES = ["python", "node", "bash"]


def command(language: str) -> list[str]:
    if language == "python":
        return [sys.executable, "-s", "-u", str(WRAPPERS / "python_stage.py")]  # as the kernel
    if language == "node":
        assert NODE is not None
        return [NODE, str(WRAPPERS / "node_stage.js")]
    assert BASH is not None
    return [BASH, str(WRAPPERS / "bash_stage.sh")]


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    channel: bytes  # everything that arrived on the result pipe
    result_fd: int

    @property
    def envelope(self) -> dict[str, Any]:
        loaded = json.loads(self.channel.decode("utf-8"))
        assert isinstance(loaded, dict), loaded
        return loaded

    @property
    def value(self) -> Any:
        envelope = self.envelope
        assert envelope["ok"] is True, envelope
        assert envelope["ipyrunner"] == 1
        assert self.returncode == 0, self.stderr
        return envelope["value"]

    @property
    def error(self) -> dict[str, str]:
        envelope = self.envelope
        assert envelope["ok"] is False, envelope
        assert envelope["ipyrunner"] == 1
        assert self.returncode == 1, self.stderr
        error = envelope["error"]
        assert set(error) == {"type", "message", "traceback"}
        return {key: str(text) for key, text in error.items()}


def _drain(fd: int, chunks: list[bytes]) -> None:
    with os.fdopen(fd, "rb") as channel:
        chunks.append(channel.read())


def run_stage(
    tmp_path: Path,
    language: str,
    code: str,
    input_text: str = "null",
    name: str = "clean",
    result_fd: int | None = None,
    program: Sequence[str] | None = None,
) -> Run:
    """Run `code` as a stage and collect its output, exit status and envelope.

    `result_fd` puts the result pipe at that number or the first free one above
    it (a kernel holds many fds; dup2 onto a live one would close another's);
    `program` replaces `command(language)`."""
    cell = tmp_path / f"cell{SUFFIX[language]}"
    cell.write_text(code, encoding="utf-8")
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    read_end, write_end = os.pipe()
    if result_fd is not None:
        high = fcntl.fcntl(write_end, fcntl.F_DUPFD_CLOEXEC, result_fd)
        os.close(write_end)
        write_end = high
    chunks: list[bytes] = []
    try:
        proc = subprocess.Popen(
            [*(program or command(language)), str(cell), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env={**ENV, "IPYRUNNER_RESULT_FD": str(write_end)},
            pass_fds=(write_end,),
        )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)  # only the stage holds the write end: EOF when it is done
    reader = threading.Thread(target=_drain, args=(read_end, chunks), daemon=True)
    reader.start()
    try:
        out, err = proc.communicate(input_text.encode("utf-8"), timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    reader.join(timeout=20)
    assert not reader.is_alive(), "the result pipe never reached EOF"
    return Run(
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        chunks[0] if chunks else b"",
        write_end,
    )


# -- round trip ---------------------------------------------------------------

IDENTITY = {
    "python": "def execute(input):\n    return input\n",
    "node": "function execute(input) {\n  return input;\n}\n",
    "bash": "execute() {\n  printf '%s\\n' \"$1\"\n}\n",
}


def nested_value(big: int) -> dict[str, Any]:
    return {
        "text": 'héllo wörld ✓ 🎉 日本 "quoted" back\\slash\ttab\nline',
        "numbers": [0, -1, 0.1, -2.5, 1.5e300, 5e-324, big, -big],
        "flags": [True, False, None],
        "nested": {"empty": {}, "list": [], "deep": [[[{"k": ["v"]}]]]},
        'key with "quotes" and 🎉': 1,
    }


@pytest.mark.parametrize("language", LANGUAGES)
def test_nested_json_round_trips(tmp_path: Path, language: str) -> None:
    # JSON.parse reads every number as a double: node keeps integers only up to 2**53.
    big = 2**53 - 1 if language == "node" else 2**100
    value = nested_value(big)
    run = run_stage(tmp_path, language, IDENTITY[language], json.dumps(value))
    assert run.value == value


def test_node_rounds_integers_beyond_2_53(tmp_path: Path) -> None:
    run = run_stage(tmp_path, "node", IDENTITY["node"], json.dumps([2**53 + 1]))
    assert run.value == [2**53]


@pytest.mark.parametrize("language", LANGUAGES)
def test_none_input_arrives_as_null(tmp_path: Path, language: str) -> None:
    code = {
        "python": "def execute(input):\n    return [input is None]\n",
        "node": "function execute(input) {\n  return [input === null];\n}\n",
        "bash": 'execute() {\n  printf \'["%s"]\' "$1"\n}\n',
    }[language]
    expected: list[Any] = ["null"] if language == "bash" else [True]
    assert run_stage(tmp_path, language, code).value == expected


# -- printing -----------------------------------------------------------------

PRINTING = {
    "python": (
        "import sys\n"
        "print('top level says hi')\n"
        "def execute(input):\n"
        '    print(\'{"not": "the result"}\')\n'
        "    print('to stderr', file=sys.stderr)\n"
        "    return {'n': 1}\n"
    ),
    "node": (
        "console.log('top level says hi');\n"
        "function execute(input) {\n"
        '  console.log(\'{"not": "the result"}\');\n'
        "  process.stdout.write('no newline');\n"
        "  console.error('to stderr');\n"
        "  return {n: 1};\n"
        "}\n"
    ),
    "bash": (
        "echo 'top level says hi'\nexecute() {\n  echo 'to stderr' >&2\n  echo '{\"n\": 1}'\n}\n"
    ),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_printing_does_not_corrupt_the_result(tmp_path: Path, language: str) -> None:
    run = run_stage(tmp_path, language, PRINTING[language])
    assert run.value == {"n": 1}
    assert "top level says hi" in run.stdout
    assert "to stderr" in run.stderr
    if language != "bash":  # a bash stage's stdout *is* its result
        assert '{"not": "the result"}' in run.stdout


# -- errors -------------------------------------------------------------------

RAISING = {
    "python": (
        "def check(n):\n"
        "    if n < 0:\n"
        "        raise ValueError(f'negative: {n}')\n"
        "\n"
        "\n"
        "def execute(input):\n"
        "    check(-1)\n"
    ),
    "node": (
        "function check(n) {\n"
        "  if (n < 0) {\n"
        "    throw new RangeError(`negative: ${n}`);\n"
        "  }\n"
        "}\n"
        "function execute(input) {\n"
        "  check(-1);\n"
        "}\n"
    ),
    "bash": (
        "check() {\n"
        "  local n=$1\n"
        "  [[ $n -gt 0 ]]\n"
        "}\n"
        "execute() {\n"
        "  echo checking >&2\n"
        "  check -1\n"
        "  return 3\n"
        "}\n"
    ),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_failure_reports_the_cells_line_numbers(tmp_path: Path, language: str) -> None:
    error = run_stage(tmp_path, language, RAISING[language]).error
    trace = error["traceback"]
    if language == "python":
        assert (error["type"], error["message"]) == ("ValueError", "negative: -1")
        assert 'File "<stage clean>", line 7, in execute' in trace
        assert 'File "<stage clean>", line 3, in check' in trace
    elif language == "node":
        assert (error["type"], error["message"]) == ("RangeError", "negative: -1")
        assert trace.splitlines() == [
            "    at check (<stage clean>:3:11)",
            "        throw new RangeError(`negative: ${n}`);",
            "    at execute (<stage clean>:7:3)",
            "        check(-1);",
        ]
    else:
        assert error["type"] == "ExitStatus"
        assert error["message"] == (
            "execute returned status 3 (last failing command: '[[ $n -gt 0 ]]' at line 3)"
        )
        assert trace == (
            '  File "<stage clean>", line 7, in execute\n'
            '  File "<stage clean>", line 3, in check\n'
            "    [[ $n -gt 0 ]]\n"
        )


@pytest.mark.parametrize("language", LANGUAGES)
def test_traceback_names_the_stage(tmp_path: Path, language: str) -> None:
    error = run_stage(tmp_path, language, RAISING[language], name="load_rows").error
    assert "<stage load_rows>" in error["traceback"]
    assert "<stage clean>" not in error["traceback"]


MISSING = {
    "python": ["def run(input):\n    return 1\n", "execute = 1\n"],
    "node": ["function run(input) {\n  return 1;\n}\n", "const execute = 1;\n"],
    "bash": ["run() {\n  echo 1\n}\n", "execute=1\n"],
}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("variant", [0, 1], ids=["absent", "not-a-function"])
def test_missing_execute_is_a_name_error(tmp_path: Path, language: str, variant: int) -> None:
    error = run_stage(tmp_path, language, MISSING[language][variant]).error
    assert error == {
        "type": "NameError",
        "message": "the cell defines no function execute(input)",
        "traceback": "",
    }


SYNTAX = {
    "python": "print('ran')\ndef execute(input):\n    return (1 +)\n",
    "node": "console.log('ran');\nfunction execute(input) {\n  return (1 +);\n}\n",
    # `source` alone would run line 1 and carry on: the wrapper checks with `bash -n` first.
    "bash": "echo ran\nexecute() {\n  )\n}\n",
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_syntax_error_names_the_line_and_runs_nothing(tmp_path: Path, language: str) -> None:
    run = run_stage(tmp_path, language, SYNTAX[language])
    error = run.error
    assert error["type"] == "SyntaxError"
    assert error["message"].endswith("(line 3)")
    assert "ran" not in run.stdout
    if language == "python":
        assert 'File "<stage clean>", line 3' in error["traceback"]
    elif language == "node":
        assert error["message"] == "Unexpected token ')' (line 3)"
        assert error["traceback"].startswith("<stage clean>:3\n  return (1 +);\n")
    else:
        assert error["message"] == "syntax error near unexpected token `)' (line 3)"
        assert error["traceback"].startswith("<stage clean>: line 3: syntax error")
        assert str(tmp_path) not in error["traceback"]  # the cell's temp path stays out


# -- results JSON cannot hold -------------------------------------------------

HINT = ", which JSON cannot hold; return "


def test_python_unserializable_result_names_the_path(tmp_path: Path) -> None:
    code = "def execute(input):\n    return {'a': [1, {2}]}\n"
    error = run_stage(tmp_path, "python", code).error
    assert error["type"] == "ResultNotJSON"
    assert error["message"].startswith('result["a"][1] is a set' + HINT)


@pytest.mark.parametrize(
    ("expression", "where"),
    [
        ("{a: [1, 2, 3, 10n]}", 'result["a"][3] is a bigint'),
        ("{x: [NaN]}", 'result["x"][0] is a non-finite number (NaN)'),
    ],
    ids=["bigint", "nan"],
)
def test_node_unserializable_result_names_the_path(
    tmp_path: Path, expression: str, where: str
) -> None:
    code = f"function execute(input) {{\n  return {expression};\n}}\n"
    error = run_stage(tmp_path, "node", code).error
    assert error["type"] == "ResultNotJSON"
    assert error["message"].startswith(where + HINT)


# Everything JSON.stringify would drop, mangle or throw on, checked in one node process.
NODE_UNSERIALIZABLE = [
    ("[-Infinity]", ["result[0]", "non-finite number (-Infinity)"]),
    ("{a: undefined}", ['result["a"]', "undefined"]),
    ("{'a\"b': () => 1}", ['result["a\\"b"]', "function"]),
    ("[Symbol('s')]", ["result[0]", "symbol"]),
    ("{[Symbol('k')]: 1}", ["result[Symbol(k)]", "key of type symbol"]),
    ("new Map([[1, 2]])", ["result", "Map"]),
    ("{s: new Set([1])}", ['result["s"]', "Set"]),
    ("{when: new Date(0)}", ['result["when"]', "Date"]),
    ("[1, , 3]", ["result[1]", "hole in a sparse array"]),
    (
        "(() => { const a = {n: 1}; a.self = a; return a; })()",
        ['result["self"]', "circular reference"],
    ),
    ("new (class Point { constructor() { this.x = 1; } })()", ["result", "Point"]),
    # fine: shared (not circular) values, null-prototype objects, JSON scalars
    ("(() => { const a = [1]; return [a, {b: a}]; })()", None),
    ("Object.assign(Object.create(null), {k: [null, true, 'é', -0.5]})", None),
]


def test_node_unserializable_finds_what_json_cannot_hold() -> None:
    assert NODE is not None
    script = (
        "const {unserializable} = require(process.argv[1]);\n"
        f"const values = [{', '.join(f'() => ({expr})' for expr, _ in NODE_UNSERIALIZABLE)}];\n"
        "console.log(JSON.stringify(values.map((make) => unserializable(make(), 'result'))));\n"
    )
    done = subprocess.run(
        [NODE, "-e", script, str(WRAPPERS / "node_stage.js")],
        capture_output=True,
        env=ENV,
        check=True,
        text=True,
    )
    assert json.loads(done.stdout) == [found for _, found in NODE_UNSERIALIZABLE]


def test_node_undefined_result_is_null(tmp_path: Path) -> None:
    assert run_stage(tmp_path, "node", "function execute(input) {}\n").value is None


def test_bash_invalid_json_output_reaches_the_kernel_unparseable(tmp_path: Path) -> None:
    run = run_stage(tmp_path, "bash", "execute() {\n  echo '{\"a\": }'\n}\n")
    assert run.returncode == 0
    assert b'{"a": }' in run.channel
    with pytest.raises(json.JSONDecodeError):
        json.loads(run.channel)


def test_bash_output_cannot_override_the_envelope_keys(tmp_path: Path) -> None:
    code = 'execute() {\n  echo \'1, "ok": false, "ipyrunner": 99\'\n}\n'
    run = run_stage(tmp_path, "bash", code)
    assert run.value == 1  # the wrapper's own keys come last: the usual last-key-wins


def test_bash_empty_output_is_an_error(tmp_path: Path) -> None:
    error = run_stage(tmp_path, "bash", "execute() {\n  echo 'only a message' >&2\n}\n").error
    assert error["type"] == "ResultNotJSON"
    assert error["message"] == (
        "execute printed no result; print a JSON value on stdout (use >&2 for messages)"
    )


# -- exiting ------------------------------------------------------------------

EXITING = {
    "python": "import sys\n\ndef execute(input):\n    sys.exit(3)\n",
    "node": "function execute(input) {\n  process.exit(3);\n}\n",
    "bash": "echo before\nexit 3\nexecute() {\n  echo 1\n}\n",
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_exit_in_the_cell_leaves_no_envelope(tmp_path: Path, language: str) -> None:
    run = run_stage(tmp_path, language, EXITING[language])
    assert run.returncode == 3
    assert run.channel == b""


def test_bash_exit_inside_execute_is_its_status(tmp_path: Path) -> None:
    # execute runs in $(...): `exit` there ends only execute, like `return`.
    error = run_stage(tmp_path, "bash", "execute() {\n  echo partial\n  exit 4\n}\n").error
    assert error == {"type": "ExitStatus", "message": "execute returned status 4", "traceback": ""}


def test_bash_set_e_in_the_cell_applies_inside_execute(tmp_path: Path) -> None:
    code = "set -e\nexecute() {\n  echo partial\n  false\n  echo never\n}\n"
    run = run_stage(tmp_path, "bash", code)
    assert run.error["message"] == (
        "execute returned status 1 (last failing command: 'false' at line 4)"
    )
    assert "partial" in run.stdout  # what execute printed before failing is shown
    assert "never" not in run.stdout


def test_bash_message_escapes_every_awkward_character(tmp_path: Path) -> None:
    code = 'execute() {\n  false "tab\there" \'q"uote\' \'back\\slash\' "🎉" "two\nlines"\n}\n'
    error = run_stage(tmp_path, "bash", code).error
    command_text = 'false "tab\there" \'q"uote\' \'back\\slash\' "🎉" "two\nlines"'
    assert error["message"] == (
        f"execute returned status 1 (last failing command: '{command_text}' at line 2)"
    )


def test_bash_json_string_escaper(tmp_path: Path) -> None:
    assert BASH is not None
    text = "".join(map(chr, range(1, 128))) + 'é ✓ 🎉 "q" \\\\ \\u0041 end\n\n'
    script = 'source "$1"; __ipyrunner_json_string "$2"; printf "%s" "$__ipyrunner_json"'
    done = subprocess.run(
        [BASH, "-c", script, "_", str(WRAPPERS / "bash_stage.sh"), text],
        capture_output=True,
        env=ENV,
        check=True,
    )
    encoded = done.stdout.decode("utf-8")
    assert json.loads(encoded) == text  # strict: a raw control character would fail
    assert "\\u0001" in encoded
    assert "\\n" in encoded


# -- node specifics -----------------------------------------------------------

ASYNC = [
    "async function execute(input) {\n"
    "  await new Promise((resolve) => setTimeout(resolve, 5));\n"
    "  return {got: input};\n"
    "}\n",
    "const execute = async (input) => ({got: input});\n",
    "let execute = (input) => ({then(resolve) { resolve({got: input}); }});\n",
]


@pytest.mark.parametrize("code", ASYNC, ids=["async-function", "const-arrow", "thenable"])
def test_node_awaits_the_result(tmp_path: Path, code: str) -> None:
    assert run_stage(tmp_path, "node", code, '{"x": 1}').value == {"got": {"x": 1}}


def test_node_rejection_reports_the_cells_line(tmp_path: Path) -> None:
    code = "async function execute(input) {\n  await null;\n  throw new TypeError('late');\n}\n"
    error = run_stage(tmp_path, "node", code).error
    assert (error["type"], error["message"]) == ("TypeError", "late")
    assert "(<stage clean>:3:9)" in error["traceback"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "function execute(input) {\n  return new Promise(() => {});\n}\n",
            ("UnsettledPromise", "execute returned a promise that never settled"),
        ),
        (
            "function execute(input) {\n"
            "  setTimeout(() => { null.x; }, 1);\n"
            "  return new Promise(() => {});\n"
            "}\n",
            ("TypeError", "Cannot read properties of null (reading 'x')"),
        ),
        (
            "class Oops extends Error {}\nfunction execute() {\n  throw new Oops('o');\n}\n",
            ("Oops", "o"),
        ),
        ("function execute() {\n  throw 'plain text';\n}\n", ("Error", "plain text")),
    ],
    ids=["never-settles", "throw-in-callback", "error-subclass", "thrown-string"],
)
def test_node_failure_kinds(tmp_path: Path, code: str, expected: tuple[str, str]) -> None:
    error = run_stage(tmp_path, "node", code).error
    assert (error["type"], error["message"]) == expected


def test_node_cell_can_require_modules(tmp_path: Path) -> None:
    code = "const path = require('path');\nfunction execute(input) {\n  return path.sep;\n}\n"
    assert run_stage(tmp_path, "node", code).value == "/"


# -- the result channel stays private -----------------------------------------

HIDDEN = {
    "python": (
        "import os, subprocess\n"
        "def execute(input):\n"
        "    env = subprocess.run(['env'], capture_output=True, text=True).stdout\n"
        "    return [os.environ.get('IPYRUNNER_RESULT_FD'), 'IPYRUNNER_RESULT_FD' in env]\n"
    ),
    "node": (
        "const {execSync} = require('child_process');\n"
        "function execute(input) {\n"
        "  const env = execSync('env').toString();\n"
        "  return [process.env.IPYRUNNER_RESULT_FD ?? null, env.includes('IPYRUNNER_RESULT_FD')];\n"
        "}\n"
    ),
    "bash": (
        "execute() {\n"
        "  local seen=false\n"
        "  if env | grep -q IPYRUNNER_RESULT_FD; then seen=true; fi\n"
        '  printf \'[%s, %s]\\n\' "${IPYRUNNER_RESULT_FD-null}" "$seen"\n'
        "}\n"
    ),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_result_variable_is_not_visible_to_the_cell(tmp_path: Path, language: str) -> None:
    assert run_stage(tmp_path, language, HIDDEN[language]).value == [None, False]


def test_bash_result_fd_is_closed_while_the_cell_runs(tmp_path: Path) -> None:
    code = (
        "fds() { local f; for f in /proc/$BASHPID/fd/*; do printf '%s ' \"${f##*/}\"; done; }\n"
        "top=$(fds)\n"
        "execute() {\n"
        '  printf \'{"top": "%s", "inside": "%s"}\' "$top" "$(fds)"\n'
        "}\n"
    )
    run = run_stage(tmp_path, "bash", code)
    value = run.value
    assert str(run.result_fd) not in value["top"].split()
    assert str(run.result_fd) not in value["inside"].split()


# -- strict JSON results ------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "where"),
    [
        ("{'a': [1, 2, float('nan')]}", 'result["a"][2] is a float nan'),
        ("[1e999]", "result[0] is a float inf"),
        ("{'x': -float('inf')}", 'result["x"] is a float -inf'),
    ],
    ids=["nan", "overflow", "-inf"],
)
def test_python_non_finite_result_names_the_path(
    tmp_path: Path, expression: str, where: str
) -> None:
    code = f"def execute(input):\n    return {expression}\n"
    error = run_stage(tmp_path, "python", code).error
    assert error["type"] == "ResultNotJSON"
    assert error["message"].startswith(where + HINT)


@pytest.mark.parametrize(
    ("expression", "where"),
    [
        ("{a: [1, 2, Infinity]}", 'result["a"][2] is a non-finite number (Infinity)'),
        ("[1e999]", "result[0] is a non-finite number (Infinity)"),
        ("{x: -Infinity}", 'result["x"] is a non-finite number (-Infinity)'),
        ("0 / 0", "result is a non-finite number (NaN)"),
    ],
    ids=["infinity", "overflow", "-infinity", "nan"],
)
def test_node_non_finite_result_is_refused_not_turned_into_null(
    tmp_path: Path, expression: str, where: str
) -> None:
    code = f"function execute(input) {{\n  return {expression};\n}}\n"
    error = run_stage(tmp_path, "node", code).error
    assert error["type"] == "ResultNotJSON"
    assert error["message"].startswith(where + HINT)


@pytest.mark.parametrize(
    ("printed", "where"),
    [
        ('{"a": [1, 2, NaN]}', 'result["a"][2] is NaN'),
        ("[Infinity]", "result[0] is Infinity"),
        ("-Infinity", "result is -Infinity"),
        ('{"big": 1e999}', 'result["big"] is 1e999, beyond a float\'s range'),
    ],
    ids=["nan", "infinity", "-infinity", "overflow"],
)
def test_bash_non_finite_output_is_refused_by_the_kernel(
    tmp_path: Path, printed: str, where: str
) -> None:
    # The bash wrapper embeds what execute printed; the kernel's decoder is the check.
    from ipyrunner.process import Completed
    from ipyrunner.stages.envelope import decode

    run = run_stage(tmp_path, "bash", f"execute() {{\n  echo '{printed}'\n}}\n")
    assert run.returncode == 0
    done = Completed(("bash",), run.returncode, run.stdout, run.stderr, 0.1, channel=run.channel)
    outcome = decode(done, "bash", 1 << 20)
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.type) == ("decode", "ResultDecodeError")
    assert outcome.error.message.startswith(where + ", which JSON cannot hold")


# -- only the stage's own process delivers ------------------------------------


@pytest.mark.parametrize(
    ("child", "expected"),
    [
        ("return 'from the child'", 0),
        ("raise ValueError('from the child')", 1),
    ],
    ids=["child-returns", "child-raises"],
)
def test_python_forked_child_falling_out_of_execute_sends_nothing(
    tmp_path: Path, child: str, expected: int
) -> None:
    code = (
        "import os\n"
        "def execute(input):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        f"        {child}\n"
        "    _, status = os.waitpid(pid, 0)\n"
        "    return {'parent': True, 'child': os.waitstatus_to_exitcode(status)}\n"
    )
    run = run_stage(tmp_path, "python", code)
    assert run.value == {"parent": True, "child": expected}  # one envelope: the parent's


def test_python_child_returning_after_the_parent_does_not_spoil_its_result(
    tmp_path: Path,
) -> None:
    code = (
        "import os, time\n"
        "def execute(input):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(0.3)\n"
        "        print('child done')\n"
        "        return 'from the child'\n"
        "    return 'from the parent'\n"
    )
    run = run_stage(tmp_path, "python", code)
    assert run.value == "from the parent"
    assert "child done" in run.stdout  # the child's output is flushed, not lost


def test_python_parent_error_is_reported_when_a_child_returns(tmp_path: Path) -> None:
    code = (
        "import os\n"
        "def execute(input):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        return 'from the child'\n"
        "    os.waitpid(pid, 0)\n"
        "    raise RuntimeError('the parent failed')\n"
    )
    error = run_stage(tmp_path, "python", code).error
    assert (error["type"], error["message"]) == ("RuntimeError", "the parent failed")


def test_python_fork_at_the_cells_top_level_still_gives_one_result(tmp_path: Path) -> None:
    code = (
        "import os\n"
        "forked = os.fork()\n"
        "def execute(input):\n"
        "    if forked:\n"
        "        os.waitpid(forked, 0)\n"
        "        return 'parent'\n"
        "    return 'child'\n"
    )
    assert run_stage(tmp_path, "python", code).value == "parent"


def test_bash_send_from_a_subshell_writes_nothing(tmp_path: Path) -> None:
    assert BASH is not None
    script = (
        'source "$1"; __ipyrunner_pid=$BASHPID; __ipyrunner_fd=1; __ipyrunner_ok=1\n'
        "__ipyrunner_envelope='from a subshell'; ( __ipyrunner_send )\n"
        'printf "[subshell status %s]" "$?"\n'
        "__ipyrunner_envelope='from the wrapper'; __ipyrunner_send\n"
    )
    done = subprocess.run(
        [BASH, "-c", script, "_", str(WRAPPERS / "bash_stage.sh")],
        capture_output=True,
        env=ENV,
        check=True,
    )
    assert done.stdout == b"[subshell status 0]from the wrapper"


SPAWNED_FDS = {
    "python": (
        "import subprocess\n"
        "def execute(input):\n"
        "    return subprocess.run(['sh', '-c', 'ls /proc/$$/fd'], capture_output=True,\n"
        "                          text=True, check=True).stdout.split()\n"
    ),
    "node": (
        "const {execSync} = require('child_process');\n"
        "function execute(input) {\n"
        "  return execSync('ls /proc/$$/fd').toString().split(/\\s+/).filter(Boolean);\n"
        "}\n"
    ),
    "bash": (
        "execute() {\n"
        "  printf '['; sh -c 'ls /proc/$$/fd' | sed 's/.*/\"&\"/' | paste -sd, -; printf ']'\n"
        "}\n"
    ),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_programs_the_stage_runs_never_inherit_the_result_pipe(
    tmp_path: Path, language: str
) -> None:
    # A high number, as in a Jupyter kernel: node marks only low ones close-on-exec.
    run = run_stage(tmp_path, language, SPAWNED_FDS[language], result_fd=60)
    assert "0" in run.value  # the listing worked
    assert run.result_fd >= 60
    assert str(run.result_fd) not in run.value


# -- the python wrapper's cold path -------------------------------------------

AS_THE_KERNEL = find_language("python").command(sys.executable)


def run_as_the_kernel(tmp_path: Path, code: str, input_text: str = "null") -> Run:
    """Run a Python stage as the kernel does: the launcher, and beside the
    cell the bytecode `write_program` puts there."""
    find_language("python").write_program(tmp_path, code, "<stage clean>")
    return run_stage(tmp_path, "python", code, input_text, program=AS_THE_KERNEL)


HEAVY = (
    "import gc, sys\n"
    "def execute(input):\n"
    "    heavy = ['json', 're', 'enum', 'functools', 'typing', 'types']\n"
    "    wrapper = sys.modules['python_stage']\n"
    "    return [m for m in heavy if m in sys.modules], wrapper.__file__, gc.isenabled()\n"
)


def test_python_stage_as_the_kernel_runs_it_imports_no_json_layer(tmp_path: Path) -> None:
    run = run_as_the_kernel(tmp_path, HEAVY, '{"a": [1]}')
    assert run.value == [[], str(tmp_path / "python_stage.pyc"), True]


def test_python_wrapper_of_another_python_is_imported_from_its_source(tmp_path: Path) -> None:
    find_language("python").write_program(tmp_path, HEAVY, "<stage clean>")
    wrapper = tmp_path / "python_stage.pyc"
    wrapper.write_bytes(b"\0\0\r\n" + wrapper.read_bytes()[4:])  # another magic number
    source = tmp_path / "package"
    source.mkdir()
    shutil.copy(WRAPPERS / "python_stage.py", source)
    program = [*AS_THE_KERNEL[:-1], str(source)]
    run = run_stage(tmp_path, "python", HEAVY, program=program)
    assert run.value == [[], str(source / "python_stage.py"), True]
    assert sorted(os.listdir(source)) == ["python_stage.py"]  # no bytecode written there


def test_python_wrapper_runs_the_cell_bytecode_the_kernel_wrote(tmp_path: Path) -> None:
    kernel_compiled = "def execute(input):\n    return 'from the bytecode'\n"
    find_language("python").write_program(tmp_path, kernel_compiled, "<stage clean>")
    # run_stage rewrites only cell.py: the bytecode beside it wins.
    run = run_stage(tmp_path, "python", IDENTITY["python"], '"x"', program=AS_THE_KERNEL)
    assert run.value == "from the bytecode"


@pytest.mark.parametrize(
    ("header", "filename"),
    [(b"\0\0\r\n", "<stage clean>"), (None, "<stage other>")],
    ids=["another-magic-number", "another-stage"],
)
def test_python_wrapper_compiles_the_source_when_the_bytecode_is_not_for_it(
    tmp_path: Path, header: bytes | None, filename: str
) -> None:
    code = "def execute(input):\n    return 0\n"
    find_language("python").write_program(tmp_path, code, filename)
    if header is not None:
        pyc = tmp_path / "cell.pyc"
        pyc.write_bytes(header + pyc.read_bytes()[4:])
    run = run_stage(tmp_path, "python", IDENTITY["python"], '"source"', program=AS_THE_KERNEL)
    assert run.value == "source"


def test_python_cell_that_warns_when_compiled_is_compiled_in_the_stage(tmp_path: Path) -> None:
    code = "def execute(input):\n    return input is 1\n"  # SyntaxWarning
    run = run_as_the_kernel(tmp_path, code, "1")
    assert not (tmp_path / "cell.pyc").exists()
    assert run.value is True
    assert "SyntaxWarning" in run.stderr  # shown by the stage, as before


@pytest.mark.parametrize(
    ("expression", "where"),
    [
        ("{1: 'a'}", "result[1] is a key of type int"),
        ("[{'a': {None: 1}}]", 'result[0]["a"][None] is a key of type NoneType'),
        ("{'a': [{(1, 2): 3}]}", 'result["a"][0][(1, 2)] is a key of type tuple'),
        ("(lambda a: a.append(a) or a)([])", "result[0] is a circular reference"),
        ("{'x': frozenset()}", 'result["x"] is a frozenset'),
    ],
    ids=["int-key", "none-key", "tuple-key", "cycle", "frozenset"],
)
def test_python_result_json_would_mangle_or_refuse_names_the_path(
    tmp_path: Path, expression: str, where: str
) -> None:
    code = f"def execute(input):\n    return {expression}\n"
    error = run_as_the_kernel(tmp_path, code).error
    assert error["type"] == "ResultNotJSON"
    assert error["message"].startswith(where + HINT)


def test_python_result_too_deep_or_too_long_is_a_clear_error(tmp_path: Path) -> None:
    deep = (
        "def execute(input):\n    x = []\n    for _ in range(10**5):\n        x = [x]\n    return x"
    )
    error = run_stage(tmp_path, "python", deep).error
    assert error["message"].startswith("result is a structure nested too deeply" + HINT)
    long = "import sys\ndef execute(input):\n    return 10 ** 5000\n"
    error = run_stage(tmp_path, "python", long).error
    assert error["type"] == "ResultNotJSON"
    assert error["message"].startswith("the result cannot be encoded: Exceeds the limit")


def test_python_results_json_holds_as_is_are_kept(tmp_path: Path) -> None:
    code = (
        "import collections, enum\n"
        "class Key(str):\n"
        "    pass\n"
        "class Level(enum.IntEnum):\n"
        "    HIGH = 3\n"
        "def execute(input):\n"
        "    return collections.OrderedDict(a=(1, [2.5, None]), b={Key('k'): Level.HIGH})\n"
    )
    assert run_as_the_kernel(tmp_path, code).value == {
        "a": [1, [2.5, None]],
        "b": {"k": 3},
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [(' \n[1, {"a": null}]\n ', [1, {"a": None}]), ("NaN", "nan"), ('"\\ud800"', "\ud800")],
    ids=["white-space", "nan-as-json-reads-it", "lone-surrogate"],
)
def test_python_input_decodes_as_json_loads_would(tmp_path: Path, text: str, expected: Any) -> None:
    code = "def execute(input):\n    return repr(input) if input != input else input\n"
    assert run_as_the_kernel(tmp_path, code, text).value == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("{oops", "Expecting property name"), ("[1] [2]", "Extra data"), ("", "Expecting value")],
)
def test_python_bad_input_is_json_s_own_error(tmp_path: Path, text: str, message: str) -> None:
    error = run_as_the_kernel(tmp_path, IDENTITY["python"], text).error
    assert error["type"] == "JSONDecodeError"
    assert error["message"].startswith(message)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, True),
        ([1, "a", 2.5, [[{"k": [{"j": ()}]}]]], True),
        ({"a": {"b": {"c": {1: 2}}}}, False),
        ([[1], [{"a": 1}, {2.5: 1}]], False),
        ({"a": [1, (2, {True: 1})]}, False),
        ({"a": __import__("collections").OrderedDict(b=1)}, False),  # not sure: the walk decides
    ],
)
def test_keys_are_str_looks_at_every_dict(value: Any, expected: bool) -> None:
    assert keys_are_str(value) is expected
