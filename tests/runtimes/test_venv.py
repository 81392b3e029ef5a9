from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ipyrunner import RuntimeUnavailable, Stage
from ipyrunner.config import IPyRunner
from ipyrunner.requirements import parse_requirements
from ipyrunner.runtimes import venv
from ipyrunner.sinks import DisplayBundle, RunStatus, Stream

SIX = "# requires: six==1.16.0\nimport six\ndef execute(input):\n    return six.__version__\n"


class Recorder:
    def __init__(self) -> None:
        self.text: list[str] = []
        self.states: list[str] = []

    def write(self, stream: Stream, text: str) -> None:
        self.text.append(text)

    def display(self, bundle: DisplayBundle) -> None:
        pass

    def status(self, status: RunStatus) -> None:
        self.states.append(status.label)


def count_uv(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    seen: list[list[str]] = []
    real = venv.run_process  # type: ignore[attr-defined]

    def spy(argv: list[str], **kwargs: object) -> object:
        seen.append(list(argv))
        return real(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(venv, "run_process", spy)
    return seen


def test_pinned_requirement_is_installed_and_importable_in_the_sandbox(
    project: Path, runtime_settings: IPyRunner
) -> None:
    result = Stage(SIX, isolate="bwrap").run()
    assert result.value == "1.16.0", result.stderr
    assert (result.runtime, result.isolation) == ("venv", "bwrap")


def test_second_stage_with_the_same_specs_installs_nothing(
    project: Path, runtime_settings: IPyRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    uv_runs = count_uv(monkeypatch)
    assert Stage(SIX)() == "1.16.0"
    first = len(uv_runs)
    assert first == 2  # uv venv, uv pip install
    assert Stage(SIX + "\n# another cell, same requirements\n")() == "1.16.0"
    assert len(uv_runs) == first


def test_install_progress_is_shown(project: Path, runtime_settings: IPyRunner) -> None:
    sink = Recorder()
    Stage(SIX).run(sink=sink)
    assert "installing six==1.16.0" in sink.states
    assert "six==1.16.0" in "".join(sink.text)  # uv writes it in pieces


def test_failed_install_raises_uvs_message_and_leaves_no_cache_entry(
    project: Path, runtime_settings: IPyRunner
) -> None:
    stage = Stage("def execute(i):\n    return i\n", requires="ipyrunner-no-such-package==1.0.0")
    with pytest.raises(RuntimeUnavailable, match="uv could not install ipyrunner-no-such-package"):
        stage.run()
    cache = Path(runtime_settings.venv_cache)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_two_stages_asking_at_once_build_one_venv(
    project: Path, runtime_settings: IPyRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    uv_runs = count_uv(monkeypatch)
    requirements = parse_requirements("six==1.16.0")
    found: list[str] = []

    def ask() -> None:
        found.append(venv.venv_interpreter(requirements, runtime_settings, Recorder()).executable)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1
    assert sum(1 for argv in uv_runs if argv[1] == "venv") == 1


def test_venv_key_follows_interpreter_and_sorted_specs() -> None:
    a = venv.venv_key("/usr/bin/python3", parse_requirements("six==1.16.0,pyyaml==6.0.2"))
    b = venv.venv_key("/usr/bin/python3", parse_requirements("pyyaml==6.0.2,six==1.16.0"))
    c = venv.venv_key("/usr/bin/python3", parse_requirements("six==1.15.0,pyyaml==6.0.2"))
    assert a == b != c
