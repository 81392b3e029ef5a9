from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import write_script


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipyrunner", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_streams_output_and_exits_with_the_script_status(project: Path) -> None:
    write_script(project, "scripts/greet.sh", 'echo "hello $1"; echo warn >&2; exit 3')
    done = cli(project, "run", "scripts/greet.sh", "world")
    assert done.returncode == 3
    assert done.stdout == "hello world\n"
    assert "warn" in done.stderr
    assert "exit 3" in done.stderr


def test_run_reports_timeouts_with_status_124(project: Path) -> None:
    write_script(project, "scripts/hang.sh", "sleep 300")
    done = cli(project, "run", "--timeout", "0.5", "scripts/hang.sh")
    assert done.returncode == 124


def test_refused_path_is_one_line_and_status_2(project: Path) -> None:
    done = cli(project, "run", "../../etc/passwd")
    assert done.returncode == 2
    assert done.stderr.startswith("ipyrunner: PathNotAllowed:")
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""


def test_bad_option_value_is_status_2(project: Path) -> None:
    write_script(project, "scripts/ok.sh", "true")
    done = cli(project, "run", "--retries", "-1", "scripts/ok.sh")
    assert done.returncode == 2
    assert "--retries" in done.stderr
