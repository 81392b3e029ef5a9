"""The live view of a run: shown only when there is something to show, throttled,
capped, and left as static HTML and text once it ends. A clock is passed in: no sleeps."""

from __future__ import annotations

import io
import random
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from ipyrunner.config import IPyRunner
from ipyrunner.display import LiveView, TextFrontend, live_view
from ipyrunner.display.tail import MEDIA_BUDGET, Tail
from ipyrunner.display.widget import WIDGET_VIEW, WidgetFrontend
from ipyrunner.runtimes.venv import BuildLog
from ipyrunner.sinks import DisplayBundle, MessagesOnStderr, NullSink, RunStatus, Stream

PNG = (  # one pixel
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


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

    def final(self) -> dict[str, Any]:
        bundle, options = self.handle.updates[-1]
        assert options == {"raw": True}
        return bundle


@pytest.fixture
def shown() -> FakeDisplay:
    return FakeDisplay()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def widget_view(
    shown: FakeDisplay, clock: Clock, limit: int = 1000
) -> tuple[LiveView, WidgetFrontend]:
    frontend = WidgetFrontend(show=shown)
    return LiveView(frontend, limit=limit, rate=10, clock=clock, auto_refresh=False), frontend


def texts(frontend: WidgetFrontend) -> list[tuple[str, str]]:
    return [
        (
            out.get("name", out["output_type"]),
            out.get("text", out.get("data", {}).get("text/plain")),
        )
        for out in frontend.part("output").outputs
    ]


def test_a_view_with_nothing_to_show_shows_nothing(shown: FakeDisplay, clock: Clock) -> None:
    view, frontend = widget_view(shown, clock)
    with view:
        pass  # an interpreter resolved without installing anything: no "starting" line
    assert shown.shown == []
    assert shown.handle.updates == []
    assert frontend.widget is None  # not even a widget model was made


def test_the_first_output_shows_the_widget_at_once(shown: FakeDisplay, clock: Clock) -> None:
    view, _frontend = widget_view(shown, clock)
    with view:
        view.status(RunStatus("clean.py", "running"))
        [(bundle, options)] = shown.shown
        assert options == {"raw": True, "display_id": True}
        assert WIDGET_VIEW in bundle
        assert bundle["text/plain"] == "clean.py · running · 0 s"


def test_writes_only_buffer_until_the_refresh(shown: FakeDisplay, clock: Clock) -> None:
    view, frontend = widget_view(shown, clock)
    with view:
        view.write("stdout", "first\n")  # shows the view, with this line
        view.write("stdout", "second\n")
        view.write("stdout", "third\n")
        assert texts(frontend) == [("stdout", "first\n")]
        view.refresh()
        assert texts(frontend) == [("stdout", "first\nsecond\nthird\n")]


def test_a_refresh_sends_nothing_when_nothing_changed(shown: FakeDisplay, clock: Clock) -> None:
    view, frontend = widget_view(shown, clock)
    with view:
        view.status(RunStatus("clean.py", "running"))
        view.write("stdout", "x")
        view.refresh()
        sent: list[object] = []
        frontend.part("output").observe(sent.append, names="outputs")
        frontend.part("status").observe(sent.append, names="value")
        clock.now += 0.3  # the line shows whole seconds: nothing new yet
        view.refresh()
        assert sent == []
        clock.now += 1
        view.refresh()
        assert len(sent) == 1
        assert "clean.py · running · 1 s" in frontend.part("status").value


def test_the_refresh_thread_waits_one_interval_per_message(
    shown: FakeDisplay, clock: Clock
) -> None:
    view, _frontend = widget_view(shown, clock)
    with view:
        view.status(RunStatus("flood.py", "running"))
        view.write("stdout", "a")
        view.refresh()  # the output area appears
        view.write("stdout", "b")
        clock.now += 1
        view.refresh()  # the output and the status line: two messages
        assert view._sent == 2


def test_the_tail_is_kept_with_a_notice(shown: FakeDisplay, clock: Clock) -> None:
    view, frontend = widget_view(shown, clock, limit=50)
    with view:
        for i in range(20):
            view.write("stdout", f"line {i:02d}\n")
        view.refresh()
        notice, tail = texts(frontend)
    assert notice[1].startswith("[ipyrunner: 112 earlier characters not shown")
    assert tail == ("stdout", "".join(f"line {i:02d}\n" for i in range(14, 20)))


def test_the_output_area_has_a_fixed_height_and_follows_the_newest_line(
    shown: FakeDisplay, clock: Clock
) -> None:
    view, frontend = widget_view(shown, clock)
    with view:
        view.write("stdout", "x\n")
        layout = frontend.part("output").layout
        assert (layout.max_height, layout.overflow) == ("22em", "auto")
        assert (layout.display, layout.flex_flow) == ("flex", "column-reverse")
    html = shown.final()["text/html"]
    assert "max-height:22em;overflow:auto;display:flex;flex-direction:column-reverse" in html


def test_streams_displays_and_logs_keep_their_order_and_kind(
    shown: FakeDisplay, clock: Clock
) -> None:
    view, frontend = widget_view(shown, clock)
    with view:
        view.write("log", "Resolved 1 package\n")
        view.write("stdout", "ab\n")
        view.display(DisplayBundle({"image/png": PNG, "text/plain": "<Figure>"}))
        view.write("stderr", "oops\n")
        view.refresh()
        outputs = frontend.part("output").outputs
    assert [out["output_type"] for out in outputs] == [
        "display_data", "stream", "display_data", "stream"
    ]  # fmt: skip
    assert "<pre" in outputs[0]["data"]["text/html"]  # a tool's log: quiet text, not pink
    assert outputs[2]["data"]["image/png"] == PNG
    assert outputs[3]["name"] == "stderr"


def test_a_finished_run_leaves_html_and_text_and_no_widget(
    shown: FakeDisplay, clock: Clock
) -> None:
    view, frontend = widget_view(shown, clock)
    with view:
        view.status(RunStatus("clean.py", "running"))
        view.write("stdout", "out\n")
        view.write("stderr", "err\n")
        view.display(DisplayBundle({"image/png": PNG, "text/plain": "<Figure>"}))
        view.refresh()
        view.status(RunStatus("clean.py", "failed", returncode=1, elapsed_s=0.25))
        widgets = [frontend.widget, frontend.part("status"), frontend.part("output")]
    final = shown.final()
    assert set(final) == {"text/html", "text/plain"}  # a reopened notebook needs no model
    assert final["text/plain"] == "clean.py · failed · exit 1 · 0.25 s\nout\nerr\n<Figure>\n"
    assert f'<img src="data:image/png;base64,{PNG}"' in final["text/html"]
    assert "clean.py · failed · exit 1 · 0.25 s" in final["text/html"]
    assert all(widget.comm is None for widget in widgets)  # the models are closed


def test_the_final_bundle_keeps_displays_within_a_budget(shown: FakeDisplay, clock: Clock) -> None:
    view, _ = widget_view(shown, clock)
    big = "A" * (MEDIA_BUDGET // 4)  # three fit, with their text/plain
    with view:
        for _ in range(5):
            view.display(DisplayBundle({"image/png": big, "text/plain": "<Figure>"}))
    final = shown.final()
    assert final["text/html"].count("<img") == 3
    assert "2 earlier displays not shown" in final["text/plain"]


def test_an_interrupted_run_says_so_in_one_line(shown: FakeDisplay, clock: Clock) -> None:
    view, _ = widget_view(shown, clock)

    def interrupted() -> None:
        with view:
            view.status(RunStatus("hang.sh", "running"))
            clock.now += 2.5
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        interrupted()
    assert shown.final()["text/plain"].startswith("hang.sh · interrupted · 2.50 s")
    [line] = caught.value._render_traceback_()  # type: ignore[attr-defined]
    assert "KeyboardInterrupt" in line
    assert "\n" not in line


def test_an_install_that_went_well_says_done(shown: FakeDisplay, clock: Clock) -> None:
    view, _ = widget_view(shown, clock)
    with view:
        view.status(RunStatus("installing pyyaml==6.0.2", "running"))
        view.write("log", "Installed 1 package\n")
        clock.now += 1.25
    assert shown.final()["text/plain"].startswith("installing pyyaml==6.0.2 · done · 1.25 s")


def test_retries_are_marked_between_attempts_as_a_log(shown: FakeDisplay, clock: Clock) -> None:
    view, frontend = widget_view(shown, clock)
    note = "exit 1 · retrying in 0.6 s"
    with view:
        view.write("stdout", "attempt 1\n")
        view.status(RunStatus("flaky.py", "retrying", 1, 4, note=note))
        view.refresh()
        separator = frontend.part("output").outputs[-1]
    assert separator["output_type"] == "display_data"  # not stderr: nothing failed for good
    assert separator["data"]["text/plain"] == (
        "── flaky.py · attempt 1 of 4: exit 1 · retrying in 0.6 s ──\n"
    )


def test_unsandboxed_is_marked_on_the_status_line(shown: FakeDisplay, clock: Clock) -> None:
    view, frontend = widget_view(shown, clock)
    with view:
        view.status(RunStatus("clean.py", "succeeded", returncode=0, note="unsandboxed"))
        assert "&#9888; unsandboxed" in frontend.part("status").value


def test_no_thread_survives_the_run(shown: FakeDisplay) -> None:
    view = LiveView(WidgetFrontend(show=shown), rate=10)

    def threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "ipyrunner-display"]

    with view:
        view.write("stdout", "partial")
        assert len(threads()) == 1
    assert threads() == []
    with pytest.raises(KeyboardInterrupt), LiveView(WidgetFrontend(show=shown), rate=10):
        raise KeyboardInterrupt
    assert threads() == []


def test_a_rate_that_never_updates_is_refused(shown: FakeDisplay) -> None:
    with pytest.raises(ValueError, match="updates per second"):
        LiveView(WidgetFrontend(show=shown), rate=0)


def test_tail_is_the_last_characters_in_order() -> None:
    rng = random.Random(7)
    for limit in (1, 7, 100, 5000):
        tail = Tail(limit)
        everything = ""
        for _ in range(300):
            text = "".join(rng.choice("ab\n") for _ in range(rng.randint(0, 40)))
            stream: Stream = rng.choice(["stdout", "stderr"])
            tail.add(stream, text)
            everything += text
        kept = "".join(piece.text for piece in tail.pieces())
        assert len(kept) <= limit
        assert everything.endswith(kept)
        assert tail.dropped == len(everything) - len(kept)


def test_tail_drops_a_cut_line_whole() -> None:
    tail = Tail(8)
    tail.add("stdout", "one\ntwo\n")
    tail.add("stdout", "three\n")
    assert (tail.text(), tail.dropped) == (tail.notice() + "three\n", 8)


def test_tail_drops_displays_older_than_the_text_it_drops() -> None:
    tail = Tail(6)
    tail.add_display(DisplayBundle({"text/plain": "<old>"}))
    tail.add("stdout", "abcdefgh\n")
    assert tail.dropped_displays == 1
    assert all(piece.bundle is None for piece in tail.pieces())


def text_view(limit: int = 1000) -> tuple[LiveView, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    view = LiveView(TextFrontend(limit=limit, stdout=out, stderr=err), limit=limit, clock=Clock())
    return view, out, err


def test_text_writes_each_stream_to_its_own_at_once() -> None:
    view, out, err = text_view()
    with view:
        view.write("stdout", "hello ")
        assert out.getvalue() == "hello "  # no waiting for a refresh
        view.write("stderr", "warning\n")
        view.write("stdout", "world\n")
        view.write("log", "Installed 1 package\n")
    assert out.getvalue() == "hello world\n"
    assert err.getvalue() == "warning\nInstalled 1 package\n"


def test_text_shows_displays_as_their_text_in_order() -> None:
    view, out, _ = text_view()
    with view:
        view.write("stdout", "before\n")
        view.display(DisplayBundle({"image/png": PNG, "text/plain": "<Figure size 640x480>"}))
        view.write("stdout", "after\n")
    assert out.getvalue() == "before\n<Figure size 640x480>\nafter\n"


def test_text_stops_at_the_limit_with_a_notice() -> None:
    view, out, err = text_view(limit=10)
    with view:
        view.write("stdout", "12345678\n")
        view.write("stdout", "abcdef\n")
        view.write("stderr", "more\n")
    assert out.getvalue() == "12345678\na"
    assert err.getvalue() == (
        "\n[ipyrunner: output beyond 10 characters not shown; the result holds up to max_output]\n"
    )


def test_text_reports_only_retries_and_the_end() -> None:
    view, _, err = text_view()
    with view:
        view.status(RunStatus("clean.py", "running", 1, 2))
        view.status(RunStatus("clean.py", "retrying", 1, 2, note="exit 1 · retrying in 0.5 s"))
        view.status(RunStatus("clean.py", "running", 2, 2))
        view.status(RunStatus("clean.py", "succeeded", 2, 2, returncode=0, elapsed_s=2.0))
    assert err.getvalue().splitlines() == [
        "clean.py · attempt 1 of 2: exit 1 · retrying in 0.5 s",
        "clean.py · succeeded · attempt 2 of 2 · exit 0 · 2.00 s",
    ]


def test_text_writes_to_the_streams_of_the_moment(capsys: pytest.CaptureFixture[str]) -> None:
    with LiveView(TextFrontend(), clock=Clock()) as view:
        view.write("stdout", "to out\n")
        view.write("stderr", "to err\n")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("to out\n", "to err\n")


def test_a_tool_log_is_a_log_without_the_temporary_directory() -> None:
    seen = Recorder()
    log = BuildLog(seen, {"/c/.abc.1234.tmp": "/c/abc", ".abc.1234.tmp": "/c/abc"})
    log.write("stderr", "Using Python 3.11 environment at: .abc.1234.tmp\n")
    log.write("stdout", "/nix/store/data-for-ipyrunner\n")
    assert seen.writes == [("log", "Using Python 3.11 environment at: /c/abc\n")]


def test_a_bash_stage_messages_show_as_output() -> None:
    seen = Recorder()
    MessagesOnStderr(seen).write("stderr", "hello\n")
    assert seen.writes == [("stdout", "hello\n")]


def settings(display: str) -> IPyRunner:
    return IPyRunner(display=display, display_rate=5.0, display_limit=1234)


@pytest.mark.parametrize(("display", "quiet"), [("none", False), ("text", True), ("auto", True)])
def test_quiet_or_none_shows_nothing(display: str, quiet: bool) -> None:
    assert isinstance(live_view(settings(display), quiet=quiet), NullSink)


def test_text_setting_gives_text() -> None:
    view = live_view(settings("text"))
    assert isinstance(view, LiveView)
    assert isinstance(view.frontend, TextFrontend)
    assert view.frontend.limit == 1234


def test_auto_in_a_jupyter_kernel_gives_a_widget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ipyrunner.display.choose.get_ipython", lambda: SimpleNamespace(kernel=1))
    view = live_view(settings("auto"))
    assert isinstance(view, LiveView)
    assert isinstance(view.frontend, WidgetFrontend)
    assert view.interval == pytest.approx(0.2)


@pytest.mark.parametrize("shell", [None, SimpleNamespace()])
def test_auto_outside_a_kernel_gives_text(monkeypatch: pytest.MonkeyPatch, shell: object) -> None:
    monkeypatch.setattr("ipyrunner.display.choose.get_ipython", lambda: shell)
    view = live_view(settings("auto"))
    assert isinstance(view, LiveView)
    assert isinstance(view.frontend, TextFrontend)


def test_widget_setting_without_ipython_gives_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ipyrunner.display.choose.get_ipython", lambda: None)
    view = live_view(settings("widget"))
    assert isinstance(view, LiveView)
    assert isinstance(view.frontend, TextFrontend)


def test_the_cli_asks_for_text_with_stdout_of_its_choosing() -> None:
    err = io.StringIO()
    view = live_view(settings("widget"), mode="text", stdout=err)
    with view:
        view.write("stdout", "printed by the stage\n")
    assert err.getvalue() == "printed by the stage\n"


class Recorder:
    def __init__(self) -> None:
        self.statuses: list[RunStatus] = []
        self.writes: list[tuple[str, str]] = []

    def write(self, stream: Stream, text: str) -> None:
        self.writes.append((stream, text))

    def display(self, bundle: DisplayBundle) -> None:
        pass

    def status(self, status: RunStatus) -> None:
        self.statuses.append(status)


def test_a_stage_status_time_counts_its_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from ipyrunner import Stage
    from ipyrunner.stages import stage as stage_module

    skipped = [0.0]
    real = stage_module.time.monotonic  # type: ignore[attr-defined]
    monkeypatch.setattr(stage_module.time, "monotonic", lambda: real() + skipped[0])  # type: ignore[attr-defined]
    stage = Stage("def execute(x):\n    return x\n")
    resolve = stage.interpreter

    def installing(config: Any = None, sink: Any = None) -> Any:
        skipped[0] += 5.0  # an install of five seconds
        return resolve(config, sink)

    monkeypatch.setattr(stage, "interpreter", installing)
    recorder = Recorder()
    result = stage.run(1, sink=recorder)
    assert result.duration_s < 5
    final = recorder.statuses[-1]
    assert final.state == "succeeded"
    assert final.elapsed_s is not None
    assert final.elapsed_s >= 5
