from __future__ import annotations

import threading
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import ipyrunner
from ipyrunner import RunResult, ScriptFailed, ScriptTimeout
from ipyrunner.config import settings
from tests.conftest import write_script


def test_runscript_streams_output_and_returns_the_result(
    shell: InteractiveShell, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_script(project, "scripts/clean.py", "import sys\nprint('cleaned', sys.argv[1:])")
    outcome = shell.run_cell("%runscript scripts/clean.py --limit 10")
    assert outcome.success
    assert isinstance(outcome.result, RunResult)
    assert outcome.result.args == ("--limit", "10")
    assert "cleaned ['--limit', '10']" in capsys.readouterr().out


def test_out_binds_the_result_in_the_namespace(shell: InteractiveShell, project: Path) -> None:
    write_script(project, "scripts/ok.sh", "echo hi")
    shell.run_cell("%runscript --out res scripts/ok.sh")
    assert shell.user_ns["res"].stdout == "hi\n"


def test_options_after_the_path_go_to_the_script(shell: InteractiveShell, project: Path) -> None:
    write_script(project, "scripts/args.sh", 'echo "$@"')
    shell.run_cell("%runscript --out res scripts/args.sh --timeout 3 --out x -v")
    assert shell.user_ns["res"].stdout == "--timeout 3 --out x -v\n"


def test_failure_raises_and_still_binds_out(shell: InteractiveShell, project: Path) -> None:
    write_script(project, "scripts/fail.sh", "echo broken >&2; exit 2")
    outcome = shell.run_cell("%runscript --out res scripts/fail.sh")
    assert isinstance(outcome.error_in_exec, ScriptFailed)
    assert shell.user_ns["res"].returncode == 2


def test_no_raise_returns_the_failed_result(shell: InteractiveShell, project: Path) -> None:
    write_script(project, "scripts/fail.sh", "exit 2")
    outcome = shell.run_cell("%runscript --no-raise scripts/fail.sh")
    assert outcome.success
    assert outcome.result.returncode == 2


def test_errors_render_as_one_short_line(
    shell: InteractiveShell, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.run_cell("%runscript ../../etc/passwd")
    out = capsys.readouterr().out
    assert "PathNotAllowed" in out
    assert "contains '..'" in out
    assert "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "line",
    [
        "%runscript --timeout -1 scripts/ok.sh",
        "%runscript --timeout soon scripts/ok.sh",
        "%runscript --retries -1 scripts/ok.sh",
        "%runscript --max-output lots scripts/ok.sh",
        "%runscript --env UNSET_VARIABLE_FOR_TEST scripts/ok.sh",
        "%runscript --out 1bad scripts/ok.sh",
        "%runscript",
    ],
)
def test_bad_arguments_are_usage_errors(shell: InteractiveShell, project: Path, line: str) -> None:
    write_script(project, "scripts/ok.sh", "touch ran.txt")
    outcome = shell.run_cell(line)
    assert isinstance(outcome.error_in_exec or outcome.error_before_exec, UsageError)
    assert not (project / "ran.txt").exists()


def test_config_magic_sets_the_timeout(shell: InteractiveShell, project: Path) -> None:
    write_script(project, "scripts/hang.sh", "sleep 300")
    shell.run_line_magic("config", "IPyRunner.timeout = 0.5")
    shell.run_line_magic("config", "IPyRunner.grace_period = 0.2")
    assert settings().timeout == 0.5
    outcome = shell.run_cell("%runscript scripts/hang.sh")
    assert isinstance(outcome.error_in_exec, ScriptTimeout)


def test_load_twice_and_reload_leave_no_duplicates(shell: InteractiveShell) -> None:
    threads = threading.active_count()
    shell.run_line_magic("load_ext", "ipyrunner")
    ipyrunner.load_ipython_extension(shell)
    shell.run_line_magic("reload_ext", "ipyrunner")
    names = [type(c).__name__ for c in shell.configurables]
    assert names.count("IPyRunner") == 1
    assert "runscript" in shell.magics_manager.magics["line"]
    assert threading.active_count() == threads


def test_help_lists_the_options(shell: InteractiveShell) -> None:
    doc = shell.find_line_magic("runscript").__doc__
    for option in ("--timeout", "--retries", "--max-output", "--out", "--env", "--no-raise"):
        assert option in doc


def test_project_directory_follows_cd(
    shell: InteractiveShell, project: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    write_script(other, "scripts/where.sh", 'echo "$PROJECT_DIRECTORY"')
    shell.run_line_magic("cd", str(other))
    shell.run_cell("%runscript --out res scripts/where.sh")
    assert shell.user_ns["res"].stdout.strip() == str(other)


def test_load_ext_warns_once_when_the_sandbox_is_unusable(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ipyrunner.sandbox import probe

    unusable = probe.BwrapStatus(None, False, reason="bwrap is not installed", fix="apt-get x")
    monkeypatch.setattr(probe, "bwrap_status", lambda: unusable)
    monkeypatch.setattr(ipyrunner, "_warned", False)
    ipyrunner.load_ipython_extension(shell)
    ipyrunner.load_ipython_extension(shell)
    err = capsys.readouterr().err
    assert err.count("the sandbox is unusable here (bwrap is not installed)") == 1
    assert "Fix: apt-get x" in err
