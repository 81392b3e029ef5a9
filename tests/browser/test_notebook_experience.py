"""The demo notebooks in JupyterLab and Chromium, checked as a person sees them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import nbformat
import pytest

from tests.browser.conftest import Lab, screenshot

pytestmark = pytest.mark.browser

BROKEN_WIDGET = "Error displaying widget"
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in the open tab

# What one code cell shows, found by a piece of its source.
CELL_STATE = """needle => {
  const cell = Array.from(document.querySelectorAll(
      '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell'))
    .find(c => c.querySelector('.jp-InputArea').innerText.includes(needle));
  if (!cell) return null;
  const area = cell.querySelector('.widget-output');
  const shown = area || cell.querySelector('.ipyrunner-log div[style*="column-reverse"]');
  let newestVisible = null;
  if (shown) {
    const box = shown.getBoundingClientRect();
    const lines = shown.querySelectorAll('pre, .jp-OutputArea-output');
    const last = lines[lines.length - 1];
    if (last) {
      const r = last.getBoundingClientRect();
      newestVisible = r.bottom <= box.bottom + 2 && r.bottom >= box.top;
    }
  }
  const bar = cell.querySelector('.widget-hprogress .progress-bar, .widget-progress .progress-bar');
  return {
    prompt: cell.querySelector('.jp-InputPrompt').innerText,
    text: cell.querySelector('.jp-Cell-outputWrapper').innerText,
    live: !!area,
    static: !!cell.querySelector('.ipyrunner-log'),
    newestVisible,
    bar: bar ? bar.style.width : null,
    errors: Array.from(cell.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    )).map(e => e.innerText),
  };
}"""


def cell_state(page: Any, needle: str) -> dict[str, Any]:
    state: dict[str, Any] | None = page.evaluate(CELL_STATE, needle)
    assert state is not None, f"no cell with {needle!r}"
    return state


def wait_for(
    page: Any, needle: str, check: Callable[[dict[str, Any]], bool], seconds: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        state = cell_state(page, needle)
        if check(state):
            return state
        assert time.monotonic() < deadline, f"{needle!r} never got there: {state}"
        time.sleep(0.05)


def open_notebook(page: Any, lab: Lab, name: str) -> None:
    page.goto(lab.page_url(name))
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
    wait_idle(page)


def wait_idle(page: Any, seconds: float = 120) -> None:
    page.wait_for_selector(
        '.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=seconds * 1000
    )


def run_all(page: Any) -> None:
    # The menu acts on the notebook that has the focus: give it the focus first.
    page.locator(f"{NOTEBOOK} .jp-InputPrompt").first.click()
    page.click('.lm-MenuBar-item:has-text("Run")')
    page.click('.lm-Menu-item[data-command="runmenu:run-all"]')
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.jp-InputPrompt'))"
        ".some(p => /\\[[*0-9]/.test(p.innerText))",
        timeout=30_000,
    )


def run_cell(page: Any, needle: str) -> None:
    """Run the cell holding `needle`, and see that it was asked to run: its prompt
    changes at once ("[*]"). A click that lands while the notebook moves (an output
    above it appearing) may leave the key press to no cell: then press again."""
    before = cell_state(page, needle)["prompt"]
    cell = page.locator(f"{NOTEBOOK} .jp-CodeCell", has_text=needle).first
    for _ in range(3):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if cell_state(page, needle)["prompt"] != before:
                return
            time.sleep(0.05)
    raise AssertionError(f"the cell {needle!r} never started running")


def finished(state: dict[str, Any]) -> bool:
    return "*" not in state["prompt"] and state["prompt"].strip() not in ("[ ]:", "")


def cell_shot(page: Any, needle: str, name: str) -> None:
    cell = page.locator(f"{NOTEBOOK} .jp-CodeCell", has_text=needle).first
    cell.scroll_into_view_if_needed()
    screenshot(cell, name, docs=True)


def notebook_text(page: Any) -> str:
    text: str = page.inner_text(".jp-Notebook")
    return text


def save(page: Any) -> None:
    page.keyboard.press("Control+s")
    page.wait_for_selector(".jp-mod-dirty", state="detached", timeout=30_000)


CLEAN = "%runscript scripts/clean.py --limit 10"


def test_runscript_streams_live_and_a_reopened_notebook_keeps_the_log(page: Any, lab: Lab) -> None:
    open_notebook(page, lab, "notebooks/01-runscript.ipynb")
    run_all(page)
    # A line of the running script, on screen before the run ends, the newest in view.
    live = wait_for(
        page, CLEAN, lambda s: s["live"] and "row  3" in s["text"] and "· running ·" in s["text"]
    )
    assert live["newestVisible"], live
    cell_shot(page, CLEAN, "live-runscript.png")
    wait_idle(page)
    ended = wait_for(page, CLEAN, finished)
    assert ended["static"], ended  # the widget gave way to the log
    assert not ended["live"], ended
    assert "scripts/clean.py · succeeded · exit 0" in ended["text"]
    assert BROKEN_WIDGET not in notebook_text(page)
    screenshot(page, "01-runscript-ran.png")
    save(page)

    lab.shut_down_kernels()
    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
    reopened = cell_state(page, CLEAN)
    assert "scripts/clean.py · succeeded · exit 0" in reopened["text"], reopened
    assert "row  1" in reopened["text"]
    assert reopened["newestVisible"], reopened
    assert BROKEN_WIDGET not in notebook_text(page)
    cell_shot(page, CLEAN, "reopened-notebook.png")
    saved = nbformat.read(lab.root / "notebooks" / "01-runscript.ipynb", as_version=4)
    kinds = {
        mime
        for cell in saved.cells
        for out in cell.get("outputs", [])
        for mime in out.get("data", {})
    }
    assert "application/vnd.jupyter.widget-view+json" not in kinds


CHECKS = [
    "%load_ext ipyrunner\n%cd demo-project",
    "%%stage python slow\nimport time\n\ndef execute(n):\n    time.sleep(0.25)\n    return n",
    "values = slow.map(range(16), workers=2)",
    "%runscript ../../etc/passwd",
    "%runscript scripts/hang.sh",
]


@pytest.fixture
def checks(lab: Lab) -> str:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CHECKS]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, lab.root / "notebooks" / "checks.ipynb")
    return "notebooks/checks.ipynb"


def test_map_progress_moves_errors_are_one_red_line_and_interrupts_are_short(
    page: Any, lab: Lab, checks: str
) -> None:
    open_notebook(page, lab, checks)
    for source in CHECKS[:2]:
        run_cell(page, source.splitlines()[0])
        wait_for(page, source.splitlines()[0], finished)
    run_cell(page, CHECKS[2])
    widths = set()
    state = wait_for(page, CHECKS[2], lambda s: s["bar"] is not None)
    while not finished(state):
        widths.add(state["bar"])
        if len(widths) == 3:
            cell_shot(page, CHECKS[2], "map-progress.png")
        state = cell_state(page, CHECKS[2])
    moving = widths - {"0%", "100%", ""}
    assert len(moving) >= 2, widths  # the bar moved while the map ran
    ended = wait_for(page, CHECKS[2], lambda s: s["static"])
    assert "100%" in ended["text"], ended
    assert "16/16" in ended["text"], ended

    run_cell(page, CHECKS[3])
    refused = wait_for(page, CHECKS[3], finished)
    assert len(refused["errors"]) == 1, refused
    assert refused["errors"][0].strip().splitlines() == [refused["text"].strip()]
    assert refused["text"].startswith("PathNotAllowed:")
    assert not refused["live"]
    assert not refused["static"]

    run_cell(page, CHECKS[4])
    wait_for(page, CHECKS[4], lambda s: "waiting for a lock" in s["text"])
    page.click('.jp-Toolbar button[data-command="notebook:interrupt-kernel"], '
               '.jp-Toolbar [data-command="notebook:interrupt-kernel"] button')  # fmt: skip
    stopped = wait_for(page, CHECKS[4], lambda s: finished(s) and s["static"])
    assert "scripts/hang.sh · interrupted" in stopped["text"], stopped
    assert len(stopped["errors"]) == 1
    assert len(stopped["errors"][0].strip().splitlines()) == 1
    assert stopped["errors"][0].startswith("KeyboardInterrupt")
    assert BROKEN_WIDGET not in notebook_text(page)
    screenshot(page, "checks.png")


def test_stages_notebook_shows_no_stale_status(page: Any, lab: Lab) -> None:
    open_notebook(page, lab, "notebooks/02-stages.ipynb")
    run_all(page)
    wait_idle(page, seconds=150)
    text = notebook_text(page)
    assert BROKEN_WIDGET not in text
    assert "ipyrunner: starting" not in text
    mapped = wait_for(page, "normalise.map(cleaned, workers=2)", finished)
    assert mapped["static"], mapped
    assert mapped["text"].strip().startswith("map normalise:"), mapped  # nothing above the bar
    assert "5/5" in mapped["text"], mapped
    screenshot(page, "02-stages-ran.png")
