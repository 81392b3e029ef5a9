"""The progress of many runs, in tqdm's words: a bar in Jupyter, a line elsewhere,
and static text once it ends. A clock is passed in: no sleeps."""

from __future__ import annotations

import html
import io
import re
import sys
from types import SimpleNamespace

import pytest

from ipyrunner.display import LiveView, TextFrontend, progress_view
from ipyrunner.display.meter import Counts
from ipyrunner.display.widget import WIDGET_VIEW, WidgetFrontend
from ipyrunner.presenting import NullProgress
from tests.unit.test_display import Clock, FakeDisplay, settings


@pytest.fixture
def shown() -> FakeDisplay:
    return FakeDisplay()


def bar_view(shown: FakeDisplay, clock: Clock, total: int) -> tuple[LiveView, WidgetFrontend]:
    frontend = WidgetFrontend(show=shown)
    view = LiveView(frontend, clock=clock, auto_refresh=False).track(total, "map slow")
    return view, frontend


def bar_text(frontend: WidgetFrontend) -> tuple[str, int, str]:
    left, bar, right = frontend.part("bar").children
    return as_shown(left.value), bar.value, as_shown(right.value)


def as_shown(value: str) -> str:
    return html.unescape(value).replace("\u2007", " ")  # tqdm's padding


def test_the_meter_says_percentage_count_elapsed_time_left_and_rate() -> None:
    meter = Counts("map slow", 12, done=4).meter(2.0)
    assert meter == "map slow:  33%|███▎      | 4/12 [00:02<00:04,  2.00it/s]"


def test_failures_and_cancellations_are_named_and_no_time_is_left() -> None:
    ended = Counts("map slow", 8, done=3, failed=1, cancelled=5, ending="")
    assert (
        ended.meter(1.5)
        == "map slow:  38%|███▊      | 3/8 [00:01,  2.00it/s, 1 failed, 5 cancelled]"
    )
    assert ended.style() == "danger"
    assert Counts("map slow", 2, done=2, ending="").style() == "success"


def test_the_bar_shows_from_the_start_and_moves_at_each_refresh(
    shown: FakeDisplay,
) -> None:
    clock = Clock()
    view, frontend = bar_view(shown, clock, total=12)
    with view:
        [(bundle, _)] = shown.shown
        assert WIDGET_VIEW in bundle  # 0 of 12, before anything finished
        assert bar_text(frontend)[1] == 0
        clock.now += 2
        view.update(4)
        assert bar_text(frontend)[1] == 0  # buffered until the refresh
        view.refresh()
        assert bar_text(frontend) == ("map slow:  33%", 4, " 4/12 [00:02<00:04,  2.00it/s]")
        clock.now += 1
        view.refresh()  # the clock alone moves the rate and the time left
        assert bar_text(frontend)[2] == " 4/12 [00:03<00:06,  1.33it/s]"
        view.update(12)
    final = shown.final()
    assert set(final) == {"text/html", "text/plain"}  # no widget model needed any more
    assert final["text/plain"].startswith("map slow: 100%|██████████| 12/12 [00:03,  4.00it/s]")
    assert "#2e7d32" in final["text/html"]  # green


def test_a_failed_map_says_how_many_were_cancelled(shown: FakeDisplay) -> None:
    clock = Clock()
    view, frontend = bar_view(shown, clock, total=8)
    with view:
        clock.now += 1
        view.update(3, 1)
        view.update(3, 1, cancelled=5)  # the engine's last word before it raises
        view.refresh()
        assert frontend.part("bar").children[1].bar_style == ""
    text = shown.final()["text/plain"]
    assert "3/8 [00:01,  3.00it/s, 1 failed, 5 cancelled]" in text
    assert "#c62828" in shown.final()["text/html"]  # red


@pytest.mark.parametrize(
    ("error", "word"), [(KeyboardInterrupt, "interrupted"), (RuntimeError, "stopped")]
)
def test_an_exception_ends_the_bar_and_says_why(
    shown: FakeDisplay, error: type[BaseException], word: str
) -> None:
    view, _ = bar_view(shown, Clock(), total=4)

    def ended_by_error() -> None:
        with view:
            view.update(2)
            raise error

    with pytest.raises(error):
        ended_by_error()
    assert f"2/4 [00:00, ?it/s, {word}]" in shown.final()["text/plain"]


def test_the_label_is_escaped_in_the_widget(shown: FakeDisplay) -> None:
    frontend = WidgetFrontend(show=shown)
    view = LiveView(frontend, clock=Clock(), auto_refresh=False).track(1, "map <b>")
    with view:
        assert "&lt;b&gt;:" in frontend.part("bar").children[0].value
    assert "map &lt;b&gt;:" in shown.final()["text/html"]


def text_progress(total: int, stream: io.StringIO) -> tuple[LiveView, Clock]:
    clock = Clock()
    frontend = TextFrontend(stderr=stream)
    return LiveView(frontend, clock=clock, auto_refresh=False).track(total, "map slow"), clock


def test_text_writes_a_line_when_counts_change_at_most_twice_a_second() -> None:
    stream = io.StringIO()
    view, clock = text_progress(10, stream)
    with view:
        view.update(1)  # within half a second of the first line: not yet
        clock.now += 0.6
        view.update(2)
        view.update(2)  # no news
        clock.now += 0.6
        view.update(3, 1)
    lines = stream.getvalue().splitlines()
    assert [re.search(r"\d+/10", line).group() for line in lines] == [  # type: ignore[union-attr]
        "0/10", "2/10", "3/10", "3/10"
    ]  # fmt: skip
    assert lines[-1].endswith("[00:01,  2.50it/s, 1 failed]")
    assert "\r" not in stream.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_redraws_one_line_on_a_terminal() -> None:
    terminal = Terminal()
    view, clock = text_progress(20, terminal)
    with view:
        clock.now += 1
        view.update(10, 1)
        view.update(11)
    written = terminal.getvalue()
    assert written.startswith("\rmap slow:   0%")
    assert written.count("\r") == 4
    assert written.count("\n") == 1
    assert written.endswith("\n")
    assert written.rstrip().endswith("11/20 [00:01, 11.00it/s]")


def use_shell(monkeypatch: pytest.MonkeyPatch, shell: object) -> None:
    monkeypatch.setattr("ipyrunner.display.choose.get_ipython", lambda: shell)


@pytest.mark.parametrize(("display", "quiet"), [("none", False), ("text", True), ("auto", True)])
def test_quiet_or_none_shows_no_progress(display: str, quiet: bool) -> None:
    progress = progress_view(settings(display), 3, "map clean", quiet=quiet)
    assert isinstance(progress, NullProgress)


def test_text_setting_gives_text_progress() -> None:
    progress = progress_view(settings("text"), 3, "map clean")
    assert isinstance(progress, LiveView)
    assert isinstance(progress.frontend, TextFrontend)


def test_auto_in_a_jupyter_kernel_gives_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    use_shell(monkeypatch, SimpleNamespace(kernel=object()))
    progress = progress_view(settings("auto"), 3, "map clean")
    assert isinstance(progress, LiveView)
    assert isinstance(progress.frontend, WidgetFrontend)


def test_auto_in_a_kernel_without_ipywidgets_gives_text(monkeypatch: pytest.MonkeyPatch) -> None:
    use_shell(monkeypatch, SimpleNamespace(kernel=object()))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    progress = progress_view(settings("auto"), 3, "map clean")
    assert isinstance(progress, LiveView)
    assert isinstance(progress.frontend, TextFrontend)
