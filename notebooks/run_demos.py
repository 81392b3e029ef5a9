"""Execute every demo notebook through a real Jupyter kernel and print its text.

Used by `make demo`. Exits non-zero on the first cell error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent


def cell_text(output: dict[str, object]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return str(output.get("text", ""))
    if kind == "error":
        return f"{output.get('ename')}: {output.get('evalue')}\n"
    data = output.get("data")
    if isinstance(data, dict) and "text/plain" in data:
        return str(data["text/plain"]).rstrip("\n") + "\n"
    return ""


def run(path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env=demo_environment())
    return notebook


def demo_environment() -> dict[str, str]:
    """The caller's environment without IPYRUNNER_* settings: the notebooks show
    each isolation mode, including an explicit opt-out, on their own terms."""
    return {k: v for k, v in os.environ.items() if not k.startswith("IPYRUNNER_")}


def main() -> int:
    notebooks = sorted(HERE.glob("*.ipynb"))
    for path in notebooks:
        print(f"=== {path.name}", flush=True)
        try:
            notebook = run(path)
        except CellExecutionError as exc:
            print(exc, file=sys.stderr)
            print(f"FAILED: {path.name}", file=sys.stderr)
            return 1
        for number, cell in enumerate(notebook.cells, 1):
            if cell.cell_type != "code":
                continue
            print(f"--- [{number}] {cell.source.splitlines()[0] if cell.source else ''}")
            for output in cell.get("outputs", []):
                sys.stdout.write(cell_text(output))
    print(f"{len(notebooks)} notebooks ran clean")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
