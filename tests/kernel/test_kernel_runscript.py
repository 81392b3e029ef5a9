from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import processes_running, write_script
from tests.kernel.conftest import Kernel

pytestmark = pytest.mark.kernel

WAITS_FOR_GO = """
import time
from pathlib import Path
print("tick 0 waiting", flush=True)
for _ in range(200):
    if Path("go").exists():
        print("tick 1 released", flush=True)
        break
    time.sleep(0.05)
else:
    print("never released: output did not stream", flush=True)
"""


@pytest.mark.parametrize("display", ["widget", "text"])
def test_output_arrives_while_the_script_still_runs(
    kernel: Kernel, project: Path, display: str
) -> None:
    write_script(project, "scripts/slow.py", WAITS_FOR_GO)
    kernel.execute(f"%config IPyRunner.display = {display!r}")

    def release_on_first_chunk(msg: dict[str, Any]) -> None:
        if "tick 0" in repr(msg["content"]):
            (project / "go").touch()

    # fs-read: a read-only grant is the live tree; a writable one is an overlay, which
    # need not show host changes made while the run goes.
    run = kernel.execute(
        "%runscript --effects fs-read scripts/slow.py", on_message=release_on_first_chunk
    )
    assert run.reply["status"] == "ok", run.reply
    assert "tick 1 released" in run.text()
    assert "never released" not in run.text()


def test_kernel_interrupt_kills_the_whole_tree_within_two_seconds(
    kernel: Kernel, project: Path
) -> None:
    # Pids inside a sandbox are not host pids: find the tree by its marker.
    write_script(
        project,
        "scripts/long.sh",
        "sleep 312.25 & sleep 312.25 &\necho started > started.txt\nwait",
    )
    msg_id = kernel.client.execute("%runscript scripts/long.sh")
    deadline = time.monotonic() + 30
    while len(processes_running("312.25")) < 2:
        assert time.monotonic() < deadline, "the script never started its children"
        time.sleep(0.05)
    interrupted = time.monotonic()
    kernel.manager.interrupt_kernel()
    reply = kernel.reply_to(msg_id, timeout=30)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    while processes_running("312.25"):
        assert time.monotonic() - interrupted < 2, "the script's tree survived the interrupt"
        time.sleep(0.05)
    # The kernel stays usable afterwards.
    assert kernel.evaluate("1 + 1") == "2"


def test_out_binds_the_result_in_the_kernel_namespace(kernel: Kernel, project: Path) -> None:
    write_script(project, "scripts/ok.py", "print('from the script')")
    run = kernel.execute("%runscript --out res scripts/ok.py")
    assert run.reply["status"] == "ok"
    assert kernel.evaluate("res.stdout") == "'from the script\\n'"
    assert kernel.evaluate("res.returncode") == "0"


def test_kernel_secret_is_absent_in_the_script(kernel: Kernel, project: Path) -> None:
    write_script(project, "scripts/env.py", "import os\nprint(sorted(os.environ))")
    kernel.execute("%runscript --out res scripts/env.py")
    assert kernel.evaluate("'KERNEL_SECRET_TOKEN' in res.stdout") == "False"
    assert kernel.evaluate("'top-secret-value' in res.stdout") == "False"


def test_errors_show_as_one_line_without_internal_traceback(kernel: Kernel, project: Path) -> None:
    run = kernel.execute("%runscript /etc/passwd")
    assert run.reply["status"] == "error"
    errors = [m["content"] for _, m in run.messages if m["msg_type"] == "error"]
    assert len(errors) == 1
    assert errors[0]["ename"] == "PathNotAllowed"
    assert len(errors[0]["traceback"]) == 1
    assert "ipyrunner/" not in errors[0]["traceback"][0]
