from __future__ import annotations

import json
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


def test_stage_prints_the_json_value_and_sends_output_to_stderr(project: Path) -> None:
    write_script(project, "double.py", "def execute(n):\n    print('doubling')\n    return n * 2\n")
    done = cli(project, "stage", "double.py", "--input", "21")
    assert (done.returncode, done.stdout) == (0, "42\n")
    assert "doubling" in done.stderr


def test_stage_prints_a_dataframe_result_as_table_schema_json(project: Path) -> None:
    write_script(
        project,
        "frame.py",
        "import pandas as pd\n"
        "def execute(n):\n"
        "    return pd.DataFrame({'x': list(range(n)), 'y': ['a'] * n})\n",
    )
    done = cli(project, "stage", "frame.py", "--input", "2")
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    assert [f["name"] for f in table["schema"]["fields"]] == ["index", "x", "y"]
    assert table["data"] == [{"index": 0, "x": 0, "y": "a"}, {"index": 1, "x": 1, "y": "a"}]


def test_stage_failure_is_reported_with_status_1(project: Path) -> None:
    write_script(project, "bad.py", "def execute(n):\n    raise ValueError('nope')\n")
    done = cli(project, "stage", "bad.py")
    assert done.returncode == 1
    assert "ValueError: nope" in done.stderr


def test_stage_with_bad_input_json_is_status_2(project: Path) -> None:
    write_script(project, "ok.py", "def execute(n):\n    return n\n")
    assert cli(project, "stage", "ok.py", "--input", "{oops").returncode == 2


def test_doctor_reports_the_sandbox(project: Path) -> None:
    done = cli(project, "doctor")
    assert "bubblewrap" in done.stdout
    assert "user namespaces" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("sandbox:")
