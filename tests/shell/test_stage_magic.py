from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from ipyrunner import InvalidRequirement, InvalidStage, Stage, StageFailed

CLEAN = """%%stage python --in rows --out cleaned
def execute(input):
    print("cleaning", len(input), "rows")
    return [r for r in input if r["ok"]]
"""


def test_stage_runs_the_cell_and_binds_out(
    shell: InteractiveShell, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.user_ns["rows"] = [{"ok": True, "n": 1}, {"ok": False, "n": 2}]
    outcome = shell.run_cell(CLEAN, store_history=True)
    assert outcome.success, outcome.error_in_exec
    assert shell.user_ns["cleaned"] == [{"ok": True, "n": 1}]
    assert outcome.result == [{"ok": True, "n": 1}]
    assert shell.user_ns["_"] == [{"ok": True, "n": 1}]
    assert "cleaning 2 rows" in capsys.readouterr().out


def test_quoted_in_expression_with_braces_and_dollar_is_not_expanded(
    shell: InteractiveShell, project: Path
) -> None:
    shell.user_ns["rows"] = [1, 2]
    cell = (
        """%%stage python --in '{"rows": rows, "n": 3, "cost": "$5"}'\n"""
        "def execute(input):\n    return [input['n'], input['cost'], len(input['rows'])]\n"
    )
    outcome = shell.run_cell(cell)
    assert outcome.result == [3, "$5", 2]


def test_named_stage_is_defined_then_called_in_later_cells(
    shell: InteractiveShell, project: Path
) -> None:
    outcome = shell.run_cell("%%stage python square\ndef execute(n):\n    return n * n\n")
    assert outcome.result is None
    assert isinstance(shell.user_ns["square"], Stage)
    assert shell.run_cell("square(7)").result == 49
    assert shell.run_cell("square.map([1, 2, 3])").result == [1, 4, 9]


def test_named_stage_with_in_defines_and_runs(shell: InteractiveShell, project: Path) -> None:
    outcome = shell.run_cell("%%stage python inc --in 41\ndef execute(n):\n    return n + 1\n")
    assert outcome.result == 42
    assert isinstance(shell.user_ns["inc"], Stage)


def test_javascript_and_bash_stages(shell: InteractiveShell, project: Path) -> None:
    js = shell.run_cell(
        "%%stage js --in [1,2,3]\nfunction execute(xs) { return xs.map(x => x * 10); }"
    )
    sh = shell.run_cell('%%stage sh --in 5\nexecute() { echo "[$1, \\"bash\\"]"; }')
    assert js.result == [10, 20, 30]
    assert sh.result == [5, "bash"]


def test_failing_stage_raises_with_the_cell_line(shell: InteractiveShell, project: Path) -> None:
    outcome = shell.run_cell(
        "%%stage python\ndef execute(input):\n    x = 1\n    raise ValueError('no')\n"
    )
    assert isinstance(outcome.error_in_exec, StageFailed)
    assert "line 4, in execute" in str(outcome.error_in_exec)


@pytest.mark.parametrize(
    ("cell", "error"),
    [
        ("%%stage ruby\ndef execute(i): pass\n", InvalidStage),
        ("%%stage python\ndef run(i): pass\n", InvalidStage),
        ("%%stage python\ndef execute(i):\n    return (\n", InvalidStage),
        ("%%stage python --in undefined_name_xyz\ndef execute(i): return i\n", UsageError),
        ("%%stage python --in '{1, 2}'\ndef execute(i): return i\n", UsageError),
        ("%%stage python --in 'lambda: 1'\ndef execute(i): return i\n", UsageError),
        ("%%stage python --out 1x\ndef execute(i): return i\n", UsageError),
        ("%%stage python not-a-name\ndef execute(i): return i\n", UsageError),
        ("%%stage python --timeout -3\ndef execute(i): return i\n", UsageError),
        ("%%stage\ndef execute(i): return i\n", UsageError),
    ],
)
def test_bad_input_is_rejected_before_anything_runs(
    shell: InteractiveShell, project: Path, cell: str, error: type[Exception]
) -> None:
    marker = project / "ran"
    body_marker = f"\nopen({str(marker)!r}, 'w')\n"
    outcome = shell.run_cell(cell + body_marker)
    assert isinstance(outcome.error_in_exec or outcome.error_before_exec, error)
    assert not marker.exists()


def test_stage_help_lists_the_options(shell: InteractiveShell) -> None:
    doc = shell.find_cell_magic("stage").__doc__
    for option in ("--in", "--out", "--timeout", "--retries", "--max-output", "--quiet"):
        assert option in doc


@pytest.mark.parametrize(
    "line",
    [
        "%%stage python --requires requests",
        "%%stage python --requires 'git+https://example.org/x.git'",
        "%%stage python --requires \"pyyaml==6.0.2; os_name=='nt'\"",
    ],
)
def test_bad_requirements_are_refused_before_anything_runs(
    shell: InteractiveShell, project: Path, line: str
) -> None:
    marker = project / "ran"
    outcome = shell.run_cell(f"{line}\ndef execute(i):\n    open({str(marker)!r}, 'w')\n")
    assert isinstance(outcome.error_in_exec, InvalidRequirement)
    assert "refused" in str(outcome.error_in_exec)
    assert not marker.exists()


def test_quoted_requirements_and_effects_are_unquoted(
    shell: InteractiveShell, project: Path
) -> None:
    shell.run_cell(
        "%%stage python pinned --requires \"six==1.16.0\" --effects 'fs-read'\n"
        "def execute(i):\n    return i\n"
    )
    stage = shell.user_ns["pinned"]
    assert [str(r) for r in stage.requirements] == ["six==1.16.0"]
    assert stage.runtime == "venv"
    assert stage.effects.read == ("",)


def test_a_runtime_that_cannot_serve_the_language_is_refused(
    shell: InteractiveShell, project: Path
) -> None:
    outcome = shell.run_cell("%%stage js --runtime venv\nfunction execute(i) { return i; }\n")
    assert isinstance(outcome.error_in_exec, UsageError)
