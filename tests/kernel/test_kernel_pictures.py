"""Pictures and tables from stages in a real kernel: a plot reaches the frontend
while the stage still runs; DataFrames go in and come back through the magic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.kernel.conftest import Kernel

pytestmark = pytest.mark.kernel

PLOT = (
    "%%stage python\n"
    "import time\n"
    "import matplotlib.pyplot as plt\n"
    "def execute(input):\n"
    "    plt.plot([1, 3, 2])\n"
    "    plt.show()\n"
    "    time.sleep(3)\n"
    "    print('printed after the sleep', flush=True)\n"
    "    return 'done'\n"
)


def carries(msg: dict[str, Any], text: str) -> bool:
    """Whether an iopub message shows `text` (display_data, a stream, or a widget's
    output state: the live view may hold the picture in its output area)."""
    if msg["msg_type"] not in ("display_data", "update_display_data", "stream", "comm_msg"):
        return False
    return text in json.dumps(msg["content"])


def test_a_plot_arrives_as_png_while_the_stage_still_runs(kernel: Kernel) -> None:
    run = kernel.execute(PLOT, timeout=120)
    assert run.reply["status"] == "ok", run.reply
    pictures = [t for t, m in run.messages if carries(m, '"image/png"')]
    later = [t for t, m in run.messages if carries(m, "printed after the sleep")]
    assert pictures, [m["msg_type"] for _, m in run.messages]
    assert later
    ended = run.messages[-1][0]  # the kernel's idle status: the cell is over
    assert pictures[0] < later[0] - 1.5  # shown during the sleep, not after it
    assert pictures[0] < ended - 1.5
    png = [
        m
        for _, m in run.messages
        if m["msg_type"] == "display_data" and "image/png" in m["content"]["data"]
    ]
    assert all(m["content"]["data"]["image/png"].startswith("iVBORw0KGgo") for m in png)


def test_a_script_in_a_display_never_reaches_the_frontend(kernel: Kernel) -> None:
    run = kernel.execute(
        "%%stage python\n"
        "def execute(input):\n"
        "    display({'text/html': '<b>kept</b><script>alert(\"x\")</script>'}, raw=True)\n"
        "    return 1\n"
    )
    assert run.reply["status"] == "ok", run.reply
    shown = [m for _, m in run.messages if carries(m, "<b>kept</b>")]
    assert shown
    assert not any(carries(m, "<script>alert") for _, m in run.messages)


def test_a_dataframe_goes_in_and_comes_back_through_the_magic(kernel: Kernel) -> None:
    kernel.execute(
        "import pandas as pd\n"
        "df = pd.DataFrame({'n': [1, 2, 3], 'name': ['a', 'b', None]},"
        " index=pd.Index([7, 8, 9], name='id'))"
    )
    run = kernel.execute(
        "%%stage python --in df --out doubled\n"
        "def execute(frame):\n"
        "    return frame.assign(twice=frame['n'] * 2)\n"
    )
    assert run.reply["status"] == "ok", run.reply
    assert kernel.evaluate("doubled.equals(df.assign(twice=df['n'] * 2))") == "True"
    assert kernel.evaluate("doubled.index.name") == "'id'"
    results = [m for _, m in run.messages if m["msg_type"] == "execute_result"]
    assert len(results) == 1
    assert 'class="dataframe"' in results[0]["content"]["data"]["text/html"]
