"""The progress of many runs: a throttled bar, text lines, and the choice between them."""

from __future__ import annotations

import io
import re
import sys
import time
from types import SimpleNamespace

import pytest

from ipyrunner.display import (
    NullProgress,
    ProgressDisplay,
    TextProgress,
    WidgetProgress,
    choose_progress,
)
from ipyrunner.errors import InvalidOption
from tests.unit.test_display import WIDGET_VIEW, FakeDisplay, settings


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> FakeDisplay:
    fake = FakeDisplay()
    monkeypatch.setattr("IPython.display.display", fake)
    return fake


def count_line(progress: WidgetProgress) -> str:
    return re.sub(r"<[^>]+>", "", progress.count_line.value)


def final_fallback(shown: FakeDisplay) -> str:
    bundle, kwargs = shown.handle.updates[-1]
    assert kwargs == {"raw": True}
    assert WIDGET_VIEW in bundle
    text: str = bundle["text/plain"]
    return text


def update_for(progress: ProgressDisplay, seconds: float) -> tuple[int, float]:
    """Updates as fast as a busy caller would; returns the last count and the time taken."""
    start = time.monotonic()
    with progress:
        done = 0
        while time.monotonic() - start < seconds:
            done += 1
            progress.update(done, done // 2)
            time.sleep(0.0002)
    return done, time.monotonic() - start


def end_by(error: type[BaseException], progress: ProgressDisplay, done: int) -> None:
    with progress:
        progress.update(done)
        raise error


def test_bar_reaches_total_and_turns_success(shown: FakeDisplay) -> None:
    progress = WidgetProgress(5, "map clean")
    with progress:
        for done in range(1, 6):
            progress.update(done)
    assert progress.bar.value == progress.bar.max == 5
    assert progress.bar.bar_style == "success"
    assert re.fullmatch(r"map clean: 5/5 · \d+\.\d s", count_line(progress))
    [(bundle, kwargs)] = shown.shown
    assert kwargs == {"raw": True, "display_id": True}
    assert WIDGET_VIEW in bundle
    assert bundle["text/plain"].startswith("map clean: 0/5")
    assert re.fullmatch(r"map clean: 5/5 · \d+\.\d s", final_fallback(shown))


def test_failures_are_shown_and_turn_the_bar_red(shown: FakeDisplay) -> None:
    progress = WidgetProgress(3, "map clean")
    with progress:
        progress.update(3, 1)
    assert progress.bar.bar_style == "danger"
    assert count_line(progress).startswith("map clean: 3/3 · 1 failed · ")
    assert final_fallback(shown).startswith("map clean: 3/3 · 1 failed · ")


def test_bar_updates_at_most_rate_per_second(shown: FakeDisplay) -> None:
    rate = 20.0
    progress = WidgetProgress(1_000_000, "map clean", rate=rate)
    changes: list[object] = []
    progress.bar.observe(changes.append, names="value")
    done, elapsed = update_for(progress, seconds=0.2)
    assert done > 100
    assert 2 <= len(changes) <= rate * elapsed + 2
    assert progress.bar.value == done


def test_final_count_shows_on_exit_even_if_throttled(shown: FakeDisplay) -> None:
    progress = WidgetProgress(4, "map clean", rate=0.5)
    with progress:
        progress.update(3)
        progress.update(4)
        assert progress.bar.value == 0  # throttled: the next showing is 2 s away
    assert progress.bar.value == 4
    assert progress.bar.bar_style == "success"
    assert final_fallback(shown).startswith("map clean: 4/4 · ")


@pytest.mark.parametrize(
    ("error", "word"), [(KeyboardInterrupt, "interrupted"), (RuntimeError, "stopped")]
)
def test_exception_propagates_and_turns_the_bar_red(
    shown: FakeDisplay, error: type[BaseException], word: str
) -> None:
    progress = WidgetProgress(4, "map clean", rate=0.5)
    with pytest.raises(error):
        end_by(error, progress, done=2)
    assert progress.bar.value == 2
    assert progress.bar.bar_style == "danger"
    assert count_line(progress).startswith(f"map clean: 2/4 · {word} · ")
    assert final_fallback(shown).startswith(f"map clean: 2/4 · {word} · ")


def test_label_is_escaped_in_the_widget(shown: FakeDisplay) -> None:
    progress = WidgetProgress(1, "map <b>")
    with progress:
        progress.update(1)
    assert "map &lt;b&gt;: 1/1" in progress.count_line.value


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan"), float("inf")])
def test_progress_rejects_a_rate_that_never_updates(rate: float) -> None:
    with pytest.raises(InvalidOption, match="display rate"):
        WidgetProgress(1, "map clean", rate=rate)
    with pytest.raises(InvalidOption, match="display rate"):
        TextProgress(1, "map clean", rate=rate)


def test_text_writes_at_most_rate_lines_per_second() -> None:
    rate = 10.0
    stream = io.StringIO()
    progress = TextProgress(1_000_000, "map clean", stream=stream, rate=rate)
    done, elapsed = update_for(progress, seconds=0.2)
    lines = stream.getvalue().splitlines()
    assert 2 <= len(lines) <= rate * elapsed + 2
    assert lines[0] == "map clean: 1/1000000"
    assert re.fullmatch(rf"map clean: {done}/1000000 · {done // 2} failed · \d+\.\d s", lines[-1])
    assert "\r" not in stream.getvalue()


def test_text_always_ends_with_the_final_line() -> None:
    stream = io.StringIO()
    with TextProgress(3, "map clean", stream=stream, rate=0.5) as progress:
        progress.update(1)
        progress.update(1)  # unchanged: nothing new to say
        progress.update(3, 1)  # throttled
    lines = stream.getvalue().splitlines()
    assert lines[0] == "map clean: 1/3"
    assert re.fullmatch(r"map clean: 3/3 · 1 failed · \d+\.\d s", lines[1])
    assert len(lines) == 2


def test_text_says_an_interrupt_ended_it() -> None:
    stream = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        end_by(KeyboardInterrupt, TextProgress(3, "map clean", stream=stream), done=2)
    assert stream.getvalue().splitlines()[-1].startswith("map clean: 2/3 · interrupted · ")


def test_text_writes_to_the_stderr_of_the_moment(capsys: pytest.CaptureFixture[str]) -> None:
    with TextProgress(2, "map clean") as progress:
        progress.update(1)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("map clean: 1/2\nmap clean: 1/2 · ")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_redraws_one_line_on_a_terminal() -> None:
    terminal = Terminal()
    with TextProgress(20, "map clean", stream=terminal, rate=1000.0) as progress:
        progress.update(10, 1)
        time.sleep(0.002)
        progress.update(11)
    written = terminal.getvalue()
    first = "map clean: 10/20 · 1 failed"
    assert written.startswith(f"\r{first}\r{'map clean: 11/20'.ljust(len(first))}\r")
    assert written.count("\n") == 1
    assert written.endswith("\n")


def use_shell(monkeypatch: pytest.MonkeyPatch, shell: object) -> None:
    monkeypatch.setattr("ipyrunner.display.choose.get_ipython", lambda: shell)


@pytest.mark.parametrize(("display", "quiet"), [("none", False), ("text", True), ("auto", True)])
def test_quiet_or_none_shows_no_progress(display: str, quiet: bool) -> None:
    progress = choose_progress(settings(display), 3, "map clean", quiet=quiet)
    assert isinstance(progress, NullProgress)
    with progress:
        progress.update(3, 1)


def test_text_setting_gives_text_progress() -> None:
    progress = choose_progress(settings("text"), 3, "map clean")
    assert isinstance(progress, TextProgress)
    assert progress.count.describe(timed=False) == "map clean: 0/3"


def test_auto_in_a_jupyter_kernel_gives_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    use_shell(monkeypatch, SimpleNamespace(kernel=object()))
    progress = choose_progress(settings("auto"), 3, "map clean")
    assert isinstance(progress, WidgetProgress)
    assert progress.interval == pytest.approx(0.2)
    assert progress.bar.max == 3


def test_auto_in_a_kernel_without_ipywidgets_gives_text(monkeypatch: pytest.MonkeyPatch) -> None:
    use_shell(monkeypatch, SimpleNamespace(kernel=object()))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    assert isinstance(choose_progress(settings("auto"), 3, "map clean"), TextProgress)


@pytest.mark.parametrize("shell", [None, SimpleNamespace()])
def test_auto_outside_a_kernel_gives_text_progress(
    monkeypatch: pytest.MonkeyPatch, shell: object
) -> None:
    use_shell(monkeypatch, shell)
    assert isinstance(choose_progress(settings("auto"), 3, "map clean"), TextProgress)


@pytest.mark.parametrize(
    ("shell", "kind"), [(SimpleNamespace(), WidgetProgress), (None, TextProgress)]
)
def test_widget_setting_needs_an_ipython_shell(
    monkeypatch: pytest.MonkeyPatch, shell: object, kind: type[object]
) -> None:
    use_shell(monkeypatch, shell)
    assert isinstance(choose_progress(settings("widget"), 3, "map clean"), kind)
