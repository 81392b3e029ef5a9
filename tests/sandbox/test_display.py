"""Displays from sandboxed stages: pictures and tables arrive, checked in the
kernel; nothing a stage does makes the kernel render a script, forges a display
through stdout, or passes the output cap; a warm call's displays are its own."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pandas as pd
import pytest

from ipyrunner import Stage
from ipyrunner.sinks import DisplayBundle, RunStatus, Stream
from ipyrunner.stages.result import StageResult
from tests.sandbox.conftest import run_stage, stage_value


class Recorder:
    """Everything a run showed, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def write(self, stream: Stream, text: str) -> None:
        self.events.append((stream, text))

    def display(self, bundle: DisplayBundle) -> None:
        self.events.append(("display", bundle))

    def status(self, status: RunStatus) -> None:
        pass


def mimes(result: StageResult) -> list[list[str]]:
    return [sorted(bundle.data) for bundle in result.displays]


def rendered(result: StageResult) -> str:
    """What a browser would render as markup (text/plain is shown as text)."""
    return "\n".join(
        str(value)
        for b in result.displays
        for mime, value in b.data.items()
        if mime != "text/plain"
    ).lower()


def test_display_sends_rich_representations_builtin_and_imported() -> None:
    result = run_stage(
        """
        from ipyrunner.stage import display as imported

        class Rich:
            def _repr_html_(self):
                return "<b>bold</b>"
            def _repr_markdown_(self):
                return "*ignored: html wins*"
            def __repr__(self):
                return "Rich()"

        def execute(input):
            display(Rich())
            imported({"text/markdown": "# Heading"}, raw=True)
            display({"a": 1})
            return "done"
        """
    )
    assert result.ok, result.stderr
    assert result.value == "done"
    first, second, third = result.displays
    assert first.data == {"text/html": "<b>bold</b>", "text/plain": "Rich()"}
    assert "<h1>Heading</h1>" in second.data["text/html"]
    assert third.data == {"text/plain": "{'a': 1}"}


def test_a_plot_shows_as_png_at_show_and_when_left_open() -> None:
    result = run_stage(
        """
        import matplotlib.pyplot as plt

        def execute(input):
            plt.plot([1, 3, 2])
            plt.show()
            print("between")
            plt.figure()
            plt.bar([1, 2], [3, 4])  # left open: shown when execute returns
            return plt.get_backend()
        """
    )
    assert result.ok, result.stderr
    assert result.value == "module://ipyrunner._agg"
    assert mimes(result) == [["image/png", "text/plain"]] * 2
    assert "Fontconfig" not in result.stderr
    assert result.displays[0].data["image/png"].startswith("iVBORw0KGgo")


def test_a_stage_that_never_displays_imports_nothing_for_it() -> None:
    loaded = stage_value(
        """
        import sys

        def execute(input):
            names = ("ipyrunner", "matplotlib", "json")
            return sorted(m for m in sys.modules if m.startswith(names))
        """
    )
    assert loaded == []


@pytest.mark.parametrize(
    "bundle",
    [
        {"text/html": "<img src=x onerror='alert(1)'><script>alert(1)</script><b>x</b>"},
        {"text/html": "<a href='jav&#x09;ascript:alert(1)'>x</a><iframe src='//e'></iframe>"},
        {"text/markdown": "[x](javascript:alert(1)) <img src=x onerror=alert(1)> text"},
        {"image/svg+xml": "<svg onload='alert(1)'><script>alert(1)</script><circle r='1'/></svg>"},
        {"application/javascript": "alert(1)", "text/plain": "x"},
        {"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "x"},
    ],
)
def test_a_stage_cannot_make_the_kernel_render_a_script(bundle: dict[str, Any]) -> None:
    result = run_stage(
        """
        def execute(bundle):
            display(bundle, raw=True)
            return 42
        """,
        input=bundle,
    )
    assert result.ok, result.stderr
    assert result.value == 42
    markup = rendered(result)
    assert not re.search(r"<script|<iframe|\son\w+=|href=.javascript", markup)
    assert all(set(b.data) <= {"text/plain", "text/html", "image/svg+xml"} for b in result.displays)
    assert "ipyrunner: in the display just shown" in result.stderr


def test_print_cannot_forge_a_display() -> None:
    result = run_stage(
        """
        import json, sys

        def execute(input):
            body = json.dumps({"data": {"text/html": "<script>alert(1)</script>"}})
            print(body)
            print(json.dumps({"output_type": "display_data", "data": {"text/html": "<b>x</b>"}}))
            sys.stdout.buffer.write(len(body).to_bytes(4, "big") + body.encode())
            sys.stderr.buffer.write(len(body).to_bytes(4, "big") + body.encode())
            return "printed"
        """
    )
    assert result.ok, result.stderr
    assert result.displays == ()
    assert "<script>alert(1)</script>" in result.stdout


def test_writing_to_the_display_socket_directly_is_checked_all_the_same() -> None:
    """A stage that finds the socket and writes garbage, a lie about a length, a
    bad picture: notes, nothing shown that should not be, the result untouched."""
    result = run_stage(
        """
        import os, sys

        def execute(input):
            fd = sys.modules["python_stage"].DISPLAY_FD
            png = b"\\x89PNG\\r\\n\\x1a\\n" + b"not really a picture"
            import base64, json
            body = json.dumps({"data": {"image/png": base64.b64encode(png).decode()}}).encode()
            os.write(fd, len(body).to_bytes(4, "big") + body)
            os.read(fd, 1)
            os.write(fd, (7).to_bytes(4, "big") + b"garbage")
            os.read(fd, 1)
            os.write(fd, (1 << 31).to_bytes(4, "big") + b"x" * 1000)  # never finished
            return "untouched"
        """
    )
    assert result.ok, result.stderr
    assert result.value == "untouched"
    assert result.displays == ()
    assert "not a whole" not in result.stderr
    assert "truncated PNG" in result.stderr or "damaged PNG" in result.stderr
    assert "malformed display" in result.stderr
    assert "would pass the output cap" in result.stderr


def test_displays_cannot_pass_the_output_cap() -> None:
    result = run_stage(
        """
        def execute(input):
            for i in range(200):
                display({"text/plain": f"{i:04d}" + "x" * 10_000}, raw=True)
            return "kept"
        """,
        max_output="256K",
    )
    assert result.ok, result.stderr
    assert result.value == "kept"
    assert not result.truncated
    shown = sum(len(b.data["text/plain"]) for b in result.displays)
    assert 0 < shown <= 256 * 1024
    assert len(result.displays) < 30
    assert result.stderr.count("would pass the output cap") <= 21
    assert "no more notes" in result.stderr


def test_a_display_from_a_forked_child_is_not_shown() -> None:
    result = run_stage(
        """
        import os

        def execute(input):
            pid = os.fork()
            if pid == 0:
                display("from the child")
                os._exit(0)
            os.waitpid(pid, 0)
            display("from the stage")
            return 1
        """
    )
    assert result.ok, result.stderr
    assert [b.data["text/plain"] for b in result.displays] == ["'from the stage'"]
    assert "forked is not shown" in result.stderr


def test_a_javascript_stage_displays_through_its_global() -> None:
    result = run_stage(
        """
        function execute(input) {
          console.log("before");
          display({"text/html": "<i>js</i><script>alert(1)</script>", "text/plain": "js"});
          display("plain text");
          return input + 1;
        }
        """,
        "javascript",
        input=1,
    )
    assert result.ok, result.stderr
    assert result.value == 2
    assert result.displays[0].data == {"text/html": "<i>js</i>", "text/plain": "js"}
    assert result.displays[1].data == {"text/plain": "plain text"}


def test_a_dataframe_goes_in_and_comes_back_sandboxed() -> None:
    frame = pd.DataFrame(
        {"n": [1, 2, 3], "name": ["a", "b", None], "kind": pd.Categorical(["x", "y", "x"])},
        index=pd.Index([7, 8, 9], name="id"),
    )
    result = run_stage(
        """
        def execute(frame):
            display(frame)
            return frame.assign(double=frame["n"] * 2)
        """,
        input=frame,
    )
    assert result.ok, result.stderr
    pd.testing.assert_frame_equal(result.value, frame.assign(double=frame["n"] * 2))
    assert 'class="dataframe"' in result.displays[0].data["text/html"]


def test_a_returned_frame_with_an_unsupported_column_is_a_decode_error_naming_it() -> None:
    result = run_stage(
        """
        import pandas as pd

        def execute(input):
            return pd.DataFrame({"fine": [1], "nested": [[1, 2]]})
        """
    )
    assert result.error is not None
    assert result.error.kind == "decode"
    assert "column 'nested'" in result.error.message


@pytest.fixture
def warm_stage() -> Any:
    made: list[Stage] = []

    def make(code: str) -> Stage:
        stage = Stage(code, name=f"warm_{uuid.uuid4().hex[:10]}", warm=True)
        made.append(stage)
        return stage

    yield make
    for stage in made:
        stage.close()


def test_displays_from_a_warm_call_belong_to_that_call_only(warm_stage: Any) -> None:
    stage = warm_stage(
        "import matplotlib.pyplot as plt\n"
        "display('at import')\n"
        "def execute(n):\n"
        "    if n == 1:\n"
        "        display('only in call one')\n"
        "        plt.plot([1, 2])  # left open in this call's fork only\n"
        "    return n\n"
    )
    first = stage.run(1, sink=Recorder())
    second = stage.run(2, sink=Recorder())
    assert first.warm, first
    assert second.warm, second
    assert first.ok, first.stderr
    assert second.ok, second.stderr
    assert [sorted(b.data) for b in first.displays] == [
        ["text/plain"],
        ["text/plain"],
        ["image/png", "text/plain"],
    ]
    assert [b.data["text/plain"] for b in second.displays] == ["'at import'"]


def test_a_warm_call_shows_its_displays_in_order_with_its_output(warm_stage: Any) -> None:
    stage = warm_stage(
        "def execute(n):\n"
        "    for i in range(n):\n"
        "        print(f'line {i}')\n"
        "        display(f'display {i}')\n"
        "    return n\n"
    )
    sink = Recorder()
    result = stage.run(20, sink=sink)
    assert result.warm, result
    assert result.ok, result.stderr
    seen: list[str] = []
    for kind, payload in sink.events:
        if kind == "stdout":
            seen += [line for line in payload.splitlines() if line]
        elif kind == "display":
            seen.append(payload.data["text/plain"].strip("'"))
    assert seen == [item for i in range(20) for item in (f"line {i}", f"display {i}")]


def test_a_warm_stage_takes_and_returns_frames(warm_stage: Any) -> None:
    stage = warm_stage("def execute(frame):\n    return frame.describe()\n")
    frame = pd.DataFrame({"x": [1.0, 2.0, 4.0]})
    for _ in range(2):
        result = stage.run(frame, sink=Recorder())
        assert result.warm, result
        assert result.ok, result.stderr
        pd.testing.assert_frame_equal(result.value, frame.describe())
