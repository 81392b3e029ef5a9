from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.kernel.conftest import Kernel

pytestmark = pytest.mark.kernel

CELLS = {
    "python": "def execute(input):\n    return {'echo': input, 'lang': 'python'}\n",
    "javascript": "function execute(input) { return {echo: input, lang: 'javascript'}; }\n",
    "bash": 'execute() { echo "{\\"echo\\": $1, \\"lang\\": \\"bash\\"}"; }\n',
}


@pytest.mark.parametrize("language", sorted(CELLS))
def test_stage_round_trips_through_a_real_kernel(kernel: Kernel, language: str) -> None:
    kernel.execute("data = {'rows': [1, 2.5, None, 'ü'], 'nested': {'ok': True}}")
    run = kernel.execute(f"%%stage {language} --in data --out result\n{CELLS[language]}")
    assert run.reply["status"] == "ok", run.reply
    assert kernel.evaluate(f"result == {{'echo': data, 'lang': {language!r}}}") == "True"
    results = [m for _, m in run.messages if m["msg_type"] == "execute_result"]
    assert len(results) == 1  # Out[n] shows the value
    assert kernel.evaluate("_ == result") == "True"


def test_named_stage_defined_in_one_cell_is_called_in_the_next(kernel: Kernel) -> None:
    run = kernel.execute("%%stage python square\ndef execute(n):\n    return n * n\n")
    assert run.reply["status"] == "ok"
    assert kernel.evaluate("type(square).__name__") == "'Stage'"
    assert kernel.evaluate("square(12)") == "144"
    assert kernel.evaluate("square.map(range(50), workers=4) == [n * n for n in range(50)]") == (
        "True"
    )


def test_stage_print_streams_while_it_runs(kernel: Kernel, project: Path) -> None:
    kernel.execute("%config IPyRunner.display = 'text'")
    go = project / "go"
    kernel.execute(f"go_path = {str(go)!r}")
    cell = (
        "%%stage python --in go_path --effects fs-read\n"
        "import os, time\n"
        "def execute(path):\n"
        "    print('waiting for go', flush=True)\n"
        "    for _ in range(200):\n"
        "        if os.path.exists(path):\n"
        "            return 'released'\n"
        "        time.sleep(0.05)\n"
        "    return 'never released: output did not stream'\n"
    )

    def release(msg: dict[str, Any]) -> None:
        if "waiting for go" in repr(msg["content"]):
            go.touch()

    # fs-read lets the sandboxed stage see the project, where `go` appears.
    run = kernel.execute(cell, on_message=release)
    assert run.reply["status"] == "ok", run.reply
    assert kernel.evaluate("_") == "'released'"


def test_failing_stage_shows_the_cell_line_without_internals(kernel: Kernel) -> None:
    run = kernel.execute("%%stage python\ndef execute(input):\n\n    raise ValueError('bad row')\n")
    errors = [m["content"] for _, m in run.messages if m["msg_type"] == "error"]
    assert errors
    assert errors[0]["ename"] == "StageFailed"
    shown = "\n".join(errors[0]["traceback"])
    assert "ValueError: bad row" in shown
    assert 'File "<stage cell>", line 4, in execute' in shown
    assert "ipyrunner/stages" not in shown
