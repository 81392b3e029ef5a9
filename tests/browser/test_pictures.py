"""notebooks/05-pictures.ipynb in JupyterLab and Chromium: the plot drawn in a
sandbox is a picture on the page, the sanitised table is a table, and nothing a
stage sent ran as script."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Lab, screenshot
from tests.browser.test_notebook_experience import (
    BROKEN_WIDGET,
    cell_shot,
    notebook_text,
    open_notebook,
    run_all,
    wait_idle,
)

pytestmark = pytest.mark.browser

PLOT = "drawn inside the sandbox"
TABLE = "n squared"
FRAME = "--in sales --out ranked"

# What the cell whose source holds `needle` shows: its pictures (loaded or not) and tables.
SHOWN = """needle => {
  const cell = Array.from(document.querySelectorAll(
      '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell'))
    .find(c => c.querySelector('.jp-InputArea').innerText.includes(needle));
  if (!cell) return null;
  const out = cell.querySelector('.jp-Cell-outputWrapper');
  return {
    pictures: Array.from(out.querySelectorAll('img')).map(i => ({
      png: i.src.startsWith('data:image/png') || i.src.startsWith('blob:'),
      width: i.naturalWidth,
    })),
    tables: Array.from(out.querySelectorAll('table')).map(t => ({
      rows: t.querySelectorAll('tr').length,
      frame: t.classList.contains('dataframe'),
    })),
    scripts: out.querySelectorAll('script, iframe, [onerror], [onclick]').length,
    text: out.innerText,
  };
}"""


def shown(page: Any, needle: str) -> dict[str, Any]:
    state: dict[str, Any] | None = page.evaluate(SHOWN, needle)
    assert state is not None, f"no cell with {needle!r}"
    return state


def test_a_plot_from_a_stage_is_a_picture_and_html_is_sanitised(page: Any, lab: Lab) -> None:
    dialogs: list[str] = []

    def refuse(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    open_notebook(page, lab, "notebooks/05-pictures.ipynb")
    run_all(page)
    page.wait_for_function(
        """needle => Array.from(document.querySelectorAll('.jp-CodeCell'))
             .some(c => c.querySelector('.jp-InputArea').innerText.includes(needle)
                     && Array.from(c.querySelectorAll('.jp-Cell-outputWrapper img'))
                          .some(i => i.naturalWidth > 100))""",
        arg=PLOT,
        timeout=120_000,
    )
    wait_idle(page)

    plot = shown(page, PLOT)
    assert any(p["png"] and p["width"] > 100 for p in plot["pictures"]), plot
    cell_shot(page, PLOT, "stage-plot.png")

    table = shown(page, TABLE)
    assert any(t["rows"] == 6 for t in table["tables"]), table  # a header and five rows
    assert table["scripts"] == 0, table
    assert "removed" in table["text"], table  # the note on what was taken out
    cell_shot(page, TABLE, "stage-sanitised-table.png")

    frame = shown(page, FRAME)
    assert sum(t["frame"] for t in frame["tables"]) >= 2, frame  # shown inside, and Out[n]
    assert "396.0" in frame["text"], frame

    assert dialogs == []  # no alert() of a stage ever ran
    assert BROKEN_WIDGET not in notebook_text(page)
    screenshot(page, "05-pictures-ran.png")
