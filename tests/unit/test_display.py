"""The live displays: throttled widget, plain text, and the choice between them."""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from ipyrunner.config import IPyRunner
from ipyrunner.display import NullSink, TextSink, WidgetSink, choose_sink
from ipyrunner.display.tail import Tail
from ipyrunner.sinks import RunStatus

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class FakeHandle:
    def __init__(self) -> None:
        self.updates: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def update(self, obj: dict[str, Any], **kwargs: Any) -> None:
        self.updates.append((obj, kwargs))


class FakeDisplay:
    """Stands in for IPython.display.display: records what would be shown."""

    def __init__(self) -> None:
        self.shown: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.handle = FakeHandle()

    def __call__(self, obj: dict[str, Any], **kwargs: Any) -> FakeHandle:
        self.shown.append((obj, kwargs))
        return self.handle


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> FakeDisplay:
    fake = FakeDisplay()
    monkeypatch.setattr("IPython.display.display", fake)
    return fake


def texts(sink: WidgetSink) -> list[tuple[str, str]]:
    return [(out["name"], out["text"]) for out in sink.output.outputs]


def display_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ipyrunner-display"]


def interrupt_run(sink: WidgetSink, before: Callable[[], None]) -> None:
    with sink:
        before()
        raise KeyboardInterrupt


def test_widget_updates_at_most_rate_per_second(shown: FakeDisplay) -> None:
    rate = 20.0
    sink = WidgetSink(rate=rate, limit=1_000_000)
    updates: list[object] = []
    sink.output.observe(updates.append, names="outputs")
    start = time.monotonic()
    with sink:
        written = 0
        while time.monotonic() - start < 0.3:
            sink.write("stdout", "x")
            written += 1
            time.sleep(0.0002)
    elapsed = time.monotonic() - start
    assert written > 100
    assert 2 <= len(updates) <= rate * elapsed + 2
    assert texts(sink) == [("stdout", "x" * written)]


def test_widget_keeps_only_the_tail(shown: FakeDisplay) -> None:
    sink = WidgetSink(rate=10, limit=50)
    with sink:
        for i in range(20):
            sink.write("stdout", f"line {i:02d}\n")
    notice, tail = texts(sink)
    assert notice[1].startswith("[ipyrunner: 112 earlier characters not shown")
    assert tail == ("stdout", "".join(f"line {i:02d}\n" for i in range(14, 20)))


def test_stderr_is_told_apart(shown: FakeDisplay) -> None:
    sink = WidgetSink(rate=10, limit=1000)
    with sink:
        for stream, text in [("stdout", "a"), ("stdout", "b\n"), ("stderr", "oops\n")]:
            sink.write(stream, text)  # type: ignore[arg-type]
        sink.write("stdout", "c")
    assert texts(sink) == [("stdout", "ab\n"), ("stderr", "oops\n"), ("stdout", "c")]
    assert all(out["output_type"] == "stream" for out in sink.output.outputs)


def test_final_flush_shows_pending_text(shown: FakeDisplay) -> None:
    sink = WidgetSink(rate=1, limit=1000)
    with sink:
        sink.write("stdout", "first ")
        sink.write("stdout", "second")
        assert texts(sink) == []  # within 1 s of the flush at the start: only buffered
    assert texts(sink) == [("stdout", "first second")]


def test_pending_text_shows_when_output_pauses(shown: FakeDisplay) -> None:
    sink = WidgetSink(rate=50, limit=1000)
    with sink:
        sink.write("stdout", "a")
        sink.write("stdout", "b")
        deadline = time.monotonic() + 1.0
        while texts(sink) != [("stdout", "ab")] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert texts(sink) == [("stdout", "ab")]


def test_status_line_ticks_while_running(shown: FakeDisplay) -> None:
    sink = WidgetSink(rate=50, limit=1000)
    with sink:
        sink.status(RunStatus("clean.py", "running"))
        first = sink.status_line.value
        time.sleep(0.1)
        assert sink.status_line.value != first
        assert "clean.py · running · " in sink.status_line.value
        sink.status(RunStatus("clean.py", "succeeded", returncode=0, elapsed_s=1.5))
    assert "clean.py · succeeded · exit 0 · 1.50 s" in sink.status_line.value


def test_no_thread_survives_the_run(shown: FakeDisplay) -> None:
    sink = WidgetSink(rate=10, limit=1000)
    with sink:
        assert len(display_threads()) == 1
    assert display_threads() == []
    with pytest.raises(KeyboardInterrupt):
        interrupt_run(sink, lambda: sink.write("stdout", "partial"))
    assert display_threads() == []
    assert texts(sink) == [("stdout", "partial")]


def test_interrupted_run_does_not_stay_running(shown: FakeDisplay) -> None:
    sink = WidgetSink(rate=10, limit=1000)
    with pytest.raises(KeyboardInterrupt):
        interrupt_run(sink, lambda: sink.status(RunStatus("clean.py", "running")))
    assert "clean.py · interrupted · " in sink.status_line.value
    assert shown.handle.updates[-1][0]["text/plain"].startswith("clean.py · interrupted · ")


def test_fallback_text_plain_holds_final_output(shown: FakeDisplay) -> None:
    sink = WidgetSink(rate=10, limit=1000)
    with sink:
        sink.status(RunStatus("clean.py", "running"))
        sink.write("stdout", "out\n")
        sink.write("stderr", "err\n")
        sink.write("stdout", "more\n")
        sink.status(RunStatus("clean.py", "failed", returncode=1, elapsed_s=0.25))
    [(bundle, options)] = shown.shown
    assert options == {"raw": True, "display_id": True}
    assert bundle["text/plain"] == "ipyrunner: starting"
    model = bundle[WIDGET_VIEW]["model_id"]
    [(final, update_options)] = shown.handle.updates
    assert update_options == {"raw": True}
    assert final[WIDGET_VIEW]["model_id"] == model == sink.widget.model_id
    assert final["text/plain"] == "clean.py · failed · exit 1 · 0.25 s\nout\nerr\nmore\n"


def test_fallback_text_plain_is_capped(shown: FakeDisplay) -> None:
    sink = WidgetSink(rate=10, limit=10)
    with sink:
        sink.write("stdout", "0123456789abcdef")
    text = shown.handle.updates[-1][0]["text/plain"]
    assert text.endswith(
        "6 earlier characters not shown; the result holds up to max_output]\n6789abcdef"
    )


def test_widget_rejects_a_rate_that_never_updates() -> None:
    with pytest.raises(ValueError, match="updates per second"):
        WidgetSink(rate=0, limit=1000)


def test_tail_is_the_last_characters_in_order() -> None:
    rng = random.Random(7)
    for limit in (1, 7, 100, 5000):
        tail = Tail(limit)
        everything = ""
        for _ in range(300):
            text = "".join(rng.choice("ab\n") for _ in range(rng.randint(0, 40)))
            tail.add(rng.choice(["stdout", "stderr"]), text)
            everything += text
        kept = "".join(out["text"] for out in tail.outputs()[1 if tail.dropped else 0 :])
        assert len(kept) <= limit
        assert everything.endswith(kept)
        assert tail.dropped == len(everything) - len(kept)


def test_tail_drops_a_cut_line_whole() -> None:
    tail = Tail(8)
    tail.add("stdout", "one\ntwo\n")
    tail.add("stdout", "three\n")
    assert (tail.text(), tail.dropped) == (tail.notice() + "three\n", 8)


def test_tail_keeps_the_other_streams_line_after_a_cut() -> None:
    tail = Tail(6)
    tail.add("stdout", "abcdef")
    tail.add("stderr", "E\n")
    assert [(out["name"], out["text"]) for out in tail.outputs()[1:]] == [
        ("stdout", "cdef"),
        ("stderr", "E\n"),
    ]


def test_text_sink_writes_each_stream_to_its_own() -> None:
    out, err = io.StringIO(), io.StringIO()
    with TextSink(limit=1000, stdout=out, stderr=err) as sink:
        sink.write("stdout", "hello ")
        sink.write("stderr", "warning\n")
        sink.write("stdout", "world\n")
    assert out.getvalue() == "hello world\n"
    assert err.getvalue() == "warning\n"


def test_text_sink_stops_at_limit_with_notice() -> None:
    out, err = io.StringIO(), io.StringIO()
    sink = TextSink(limit=10, stdout=out, stderr=err)
    sink.write("stdout", "12345678\n")
    sink.write("stdout", "abcdef\n")
    sink.write("stderr", "more\n")
    sink.write("stdout", "and more\n")
    assert out.getvalue() == "12345678\na"
    assert err.getvalue() == (
        "\n[ipyrunner: output beyond 10 characters not shown; the result holds up to max_output]\n"
    )


def test_text_sink_reports_only_retries_and_the_end() -> None:
    err = io.StringIO()
    sink = TextSink(limit=100, stdout=io.StringIO(), stderr=err)
    sink.status(RunStatus("clean.py", "running", 1, 2))
    sink.status(RunStatus("clean.py", "retrying", 1, 2, returncode=1))
    sink.status(RunStatus("clean.py", "running", 2, 2))
    sink.status(RunStatus("clean.py", "succeeded", 2, 2, returncode=0, elapsed_s=2.0))
    assert err.getvalue().splitlines() == [
        "clean.py · retrying · attempt 1 of 2 · exit 1",
        "clean.py · succeeded · attempt 2 of 2 · exit 0 · 2.00 s",
    ]


def test_text_sink_writes_to_the_streams_of_the_moment(capsys: pytest.CaptureFixture[str]) -> None:
    sink = TextSink(limit=100)
    with sink:
        sink.write("stdout", "to out\n")
        sink.write("stderr", "to err\n")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("to out\n", "to err\n")


def settings(display: str) -> IPyRunner:
    return IPyRunner(display=display, display_rate=5.0, display_limit=1234)


@pytest.mark.parametrize(("display", "quiet"), [("none", False), ("text", True), ("auto", True)])
def test_quiet_or_none_shows_nothing(display: str, quiet: bool) -> None:
    sink = choose_sink(settings(display), quiet=quiet)
    assert isinstance(sink, NullSink)
    with sink:
        sink.write("stdout", "ignored")
        sink.status(RunStatus("clean.py", "succeeded"))


def test_text_setting_gives_text() -> None:
    sink = choose_sink(settings("text"))
    assert isinstance(sink, TextSink)
    assert sink.limit == 1234


def test_auto_in_a_jupyter_kernel_gives_a_widget(monkeypatch: pytest.MonkeyPatch) -> None:
    kernel_shell = SimpleNamespace(kernel=object())
    monkeypatch.setattr("ipyrunner.display.choose.get_ipython", lambda: kernel_shell)
    sink = choose_sink(settings("auto"))
    assert isinstance(sink, WidgetSink)
    assert sink.interval == pytest.approx(0.2)


@pytest.mark.parametrize("shell", [None, SimpleNamespace()])
def test_auto_outside_a_kernel_gives_text(monkeypatch: pytest.MonkeyPatch, shell: object) -> None:
    monkeypatch.setattr("ipyrunner.display.choose.get_ipython", lambda: shell)
    assert isinstance(choose_sink(settings("auto")), TextSink)


def test_widget_setting_in_terminal_ipython_gives_a_widget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ipyrunner.display.choose.get_ipython", SimpleNamespace)
    assert isinstance(choose_sink(settings("widget")), WidgetSink)


def test_widget_setting_without_ipython_gives_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ipyrunner.display.choose.get_ipython", lambda: None)
    assert isinstance(choose_sink(settings("widget")), TextSink)
