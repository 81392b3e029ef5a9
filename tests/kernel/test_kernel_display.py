"""What a notebook shows of a run, through a real kernel: nothing before the inputs
are checked, no stale status, static logs once a run ends, a one-line interrupt."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import processes_running, write_script
from tests.kernel.conftest import Execution, Kernel

pytestmark = pytest.mark.kernel

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def of_type(run: Execution, *kinds: str) -> list[dict[str, Any]]:
    return [m["content"] for _, m in run.messages if m["msg_type"] in kinds]


@pytest.mark.parametrize(
    "line",
    [
        "%runscript ../../etc/passwd",
        "%runscript scripts/missing.py",
        "%runscript --timeout soon scripts/ok.py",
        "%runscript --max-output lots scripts/ok.py",
    ],
)
def test_a_refused_run_shows_its_error_alone(kernel: Kernel, project: Path, line: str) -> None:
    write_script(project, "scripts/ok.py", "print('ok')")
    run = kernel.execute(line)
    assert run.reply["status"] == "error"
    assert of_type(run, "display_data", "comm_open", "update_display_data") == []
    shown = of_type(run, "error") or of_type(run, "stream")  # UsageError prints on stderr
    assert len(shown) == 1


def test_runscript_without_a_path_says_what_it_needs(kernel: Kernel) -> None:
    run = kernel.execute("%runscript")
    said = run.text()
    assert "needs a script: %runscript [options] PATH [ARGS...]" in said
    assert "args" not in said.replace("ARGS", "")


def test_a_map_on_the_host_shows_its_bar_and_nothing_above_it(kernel: Kernel) -> None:
    kernel.execute("%%stage python square\ndef execute(n):\n    return n * n\n")
    run = kernel.execute("squares = square.map(range(3), workers=2)")
    assert run.reply["status"] == "ok", run.reply
    [shown] = of_type(run, "display_data")  # the bar alone: no "starting" line
    assert shown["data"]["text/plain"] == "ipyrunner"
    [final] = of_type(run, "update_display_data")
    assert WIDGET_VIEW not in final["data"]
    assert "map square: 100%" in final["data"]["text/plain"]
    assert "3/3" in final["data"]["text/plain"]


def test_a_finished_run_leaves_a_static_log_and_closes_its_widgets(
    kernel: Kernel, project: Path
) -> None:
    write_script(project, "scripts/ok.py", "print('from the script')")
    run = kernel.execute("%runscript scripts/ok.py")
    [shown] = of_type(run, "display_data")
    [final] = of_type(run, "update_display_data")
    assert final["transient"]["display_id"] == shown["transient"]["display_id"]
    assert set(final["data"]) == {"text/html", "text/plain"}
    assert final["data"]["text/plain"].startswith("scripts/ok.py · succeeded · exit 0 · ")
    assert "from the script" in final["data"]["text/html"]
    opened = {c["comm_id"] for c in of_type(run, "comm_open")}
    closed = {c["comm_id"] for c in of_type(run, "comm_close")}
    assert opened
    assert opened <= closed  # nothing left for a reopened notebook to miss


def test_an_interrupt_is_one_line_and_the_log_says_interrupted(
    kernel: Kernel, project: Path
) -> None:
    write_script(project, "scripts/long.sh", "echo started\nsleep 313.25 &\nwait")
    msg_id = kernel.client.execute("%runscript scripts/long.sh")
    deadline = time.monotonic() + 30
    while not processes_running("313.25"):
        assert time.monotonic() < deadline, "the script never started"
        time.sleep(0.05)
    kernel.manager.interrupt_kernel()
    messages = []
    while True:
        msg = kernel.client.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    [error] = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert error["ename"] == "KeyboardInterrupt"
    assert len(error["traceback"]) == 1, error["traceback"]
    [final] = [m["content"] for m in messages if m["msg_type"] == "update_display_data"]
    assert final["data"]["text/plain"].startswith("scripts/long.sh · interrupted · ")
    assert not processes_running("313.25")
    threads = kernel.evaluate("[t.name for t in __import__('threading').enumerate()]")
    assert "ipyrunner-display" not in threads


def test_a_bash_stage_messages_are_output_not_errors(kernel: Kernel) -> None:
    kernel.execute("%config IPyRunner.display = 'text'")
    run = kernel.execute('%%stage bash\nexecute() { echo "hello from bash" >&2; echo 1; }\n')
    streams = of_type(run, "stream")
    assert {"name": "stdout", "text": "hello from bash\n"} in streams
