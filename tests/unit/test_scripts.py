from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from ipyrunner import (
    InvalidOption,
    IPyRunner,
    OutputLimitExceeded,
    PathNotAllowed,
    RunResult,
    ScriptFailed,
    ScriptNotFound,
    ScriptTimeout,
    UnsupportedScript,
    run_script,
)
from tests.conftest import write_script


@pytest.fixture
def quick_retries(fresh_settings: IPyRunner) -> IPyRunner:
    fresh_settings.backoff_initial = 0.01
    fresh_settings.backoff_max = 0.05
    fresh_settings.backoff_jitter = 0.01
    return fresh_settings


def test_python_script_gets_args_and_runs_in_the_project(project: Path) -> None:
    path = write_script(
        project, "scripts/echo.py", "import os, sys\nprint(sys.argv[1:], os.getcwd())"
    )
    result = run_script(path, "--limit", "10")
    assert result.stdout == f"['--limit', '10'] {project}\n"
    assert (result.returncode, result.attempts, result.truncated) == (0, 1, False)


def test_secret_in_the_kernel_environment_is_absent_in_the_child(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_PASSWORD", "hunter2")
    path = write_script(project, "scripts/env.py", "import os\nprint(sorted(os.environ))")
    result = run_script(path)
    assert "DATABASE_PASSWORD" not in result.stdout
    assert "hunter2" not in result.stdout


def test_dotenv_secrets_do_not_reach_the_child(project: Path) -> None:
    (project / ".env").write_text("PROJECT_DIRECTORY=.\nAPI_TOKEN=s3cr3t\n")
    path = write_script(project, "scripts/env.py", "import os\nprint(dict(os.environ))")
    assert "s3cr3t" not in run_script(path).stdout


def test_forwarded_variables_reach_the_child(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGION", "eu")
    path = write_script(
        project, "scripts/env.py", "import os\nprint(os.environ['REGION'], os.environ['MODE'])"
    )
    assert run_script(path, env=["REGION", "MODE=fast"]).stdout == "eu fast\n"


def test_bash_and_node_scripts_run_by_extension(project: Path) -> None:
    sh = write_script(project, "scripts/a.sh", 'echo "bash $1"')
    js = write_script(project, "scripts/b.js", "console.log('node', process.argv[2])")
    assert run_script(sh, "x").stdout == "bash x\n"
    assert run_script(js, "y").stdout == "node y\n"


def test_python_executable_from_dotenv_is_used(project: Path) -> None:
    (project / ".env").write_text(f"PYTHON_EXECUTABLE={sys.executable}\n")
    path = write_script(project, "scripts/which.py", "import sys\nprint(sys.executable)")
    assert run_script(path).stdout.strip() == sys.executable


def test_failure_raises_script_failed_with_the_last_stderr_line(project: Path) -> None:
    path = write_script(project, "scripts/fail.py", "raise SystemExit('bad row 7')")
    with pytest.raises(
        ScriptFailed, match=r"exit 1 after 1 attempt; last output: 'bad row 7'"
    ) as info:
        run_script(path)
    assert isinstance(info.value.result, RunResult)


def test_no_raise_returns_the_failed_result(project: Path) -> None:
    path = write_script(project, "scripts/fail.sh", "echo oops >&2; exit 3")
    result = run_script(path, check=False)
    assert (result.ok, result.returncode, result.stderr) == (False, 3, "oops\n")


def test_flaky_script_succeeds_on_a_later_attempt(project: Path, quick_retries: IPyRunner) -> None:
    path = write_script(
        project,
        "scripts/flaky.py",
        "from pathlib import Path\n"
        "p = Path('count.txt'); n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\nraise SystemExit(0 if n == 3 else 1)",
    )
    result = run_script(path, retries=5)
    assert (result.ok, result.attempts) == (True, 3)


def test_retries_are_bounded(project: Path, quick_retries: IPyRunner) -> None:
    path = write_script(project, "scripts/fail.sh", "echo run >> runs.txt; exit 1")
    with pytest.raises(ScriptFailed, match="after 3 attempts"):
        run_script(path, retries=2)
    assert (project / "runs.txt").read_text() == "run\n" * 3


def test_timeout_is_retried_then_raises_script_timeout(
    project: Path, quick_retries: IPyRunner
) -> None:
    path = write_script(project, "scripts/hang.sh", "echo start >> runs.txt; sleep 300")
    quick_retries.grace_period = 0.5
    start = time.monotonic()
    with pytest.raises(ScriptTimeout, match="timed out after 2 attempts") as info:
        run_script(path, timeout=0.5, retries=1)
    assert time.monotonic() - start < 4
    assert info.value.result.timed_out
    assert (project / "runs.txt").read_text() == "start\n" * 2


def test_output_flood_is_killed_and_never_retried(project: Path, quick_retries: IPyRunner) -> None:
    path = write_script(project, "scripts/flood.py", "while True: print('y' * 1000)")
    with pytest.raises(OutputLimitExceeded, match="--max-output") as info:
        run_script(path, max_output="64K", retries=3)
    result = info.value.result
    assert (result.truncated, result.attempts) == (True, 1)
    assert len(result.stdout) == 64 * 1024


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("../../etc/passwd", PathNotAllowed),
        ("/etc/passwd", PathNotAllowed),
        ("scripts/../../x.py", PathNotAllowed),
        ("scripts/a\x00.py", PathNotAllowed),
        ("scripts/missing.py", ScriptNotFound),
        ("scripts", ScriptNotFound),
        ("scripts/data.csv", UnsupportedScript),
        ("scripts/noext", UnsupportedScript),
    ],
)
def test_bad_paths_fail_before_anything_runs(
    project: Path, path: str, error: type[Exception]
) -> None:
    write_script(project, "scripts/data.csv", "a,b\n")
    write_script(project, "scripts/noext", "echo hi")
    with pytest.raises(error) as info:
        run_script(path)
    assert "\n" not in str(info.value)


def test_symlink_escape_is_rejected(project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "evil.py"
    outside.write_text("open('/tmp/pwned', 'w')")
    (project / "scripts" / "evil.py").symlink_to(outside)
    with pytest.raises(PathNotAllowed):
        run_script("scripts/evil.py")


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": "-1"},
        {"timeout": "soon"},
        {"retries": "-1"},
        {"max_output": "lots"},
        {"env": ["UNSET_VARIABLE_FOR_TEST"]},
    ],
)
def test_bad_options_fail_before_anything_runs(project: Path, options: dict[str, object]) -> None:
    path = write_script(project, "scripts/mark.sh", "touch ran.txt")
    with pytest.raises(InvalidOption):
        run_script(path, **options)  # type: ignore[arg-type]
    assert not (project / "ran.txt").exists()


def test_result_repr_is_one_line_and_html_escapes(project: Path) -> None:
    path = write_script(project, "scripts/html.py", "print('<b>bold</b>')")
    result = run_script(path)
    assert "\n" not in repr(result)
    assert repr(result).startswith("<RunResult scripts/html.py · succeeded · exit 0 · 1 attempt")
    html = result._repr_html_()
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<b>bold</b>" not in html


def test_result_is_frozen(project: Path) -> None:
    result = run_script(write_script(project, "scripts/ok.sh", "true"))
    with pytest.raises(AttributeError):
        result.returncode = 1  # type: ignore[misc]
