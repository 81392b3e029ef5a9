"""Interpreters installed in a home directory must not bring the home into the
sandbox: a pure stage run by one reads neither `~/.ssh` nor the kernel
connection files under `~/.local/share/jupyter/runtime`.

HOME is a tmp dir here, with a planted key and connection file; the
interpreters are links to, or copies of, the real ones.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from ipyrunner import SandboxUnavailable, Stage
from ipyrunner.config import IPyRunner
from tests.conftest import need_program
from tests.sandbox.conftest import everything_shown, run_stage, stage_value

REAL_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
SECRETS = (".ssh/id_rsa", ".local/share/jupyter/runtime/kernel-1.json")
DENIED = {"ENOENT", "EACCES", "EPERM"}


@pytest.fixture
def secret() -> str:
    return f"ipyrunner_home_secret_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str) -> Path:
    """HOME with an SSH key and a kernel connection file holding its HMAC key."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(f"-----BEGIN OPENSSH PRIVATE KEY----- {secret}\n")
    runtime = home / ".local" / "share" / "jupyter" / "runtime"
    runtime.mkdir(parents=True)
    connection = {"shell_port": 50001, "key": secret, "signature_scheme": "hmac-sha256"}
    (runtime / "kernel-1.json").write_text(json.dumps(connection))
    monkeypatch.setenv("HOME", str(home))
    for name in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    return home


def place(home: Path, relative: str, target: str, copy: bool) -> Path:
    path = home / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copy2(target, path)
    else:
        path.symlink_to(target)
    return path


def secret_paths(home: Path) -> list[str]:
    return [str(home / name) for name in SECRETS]


PYTHON_READS = """
def execute(paths):
    return {path: peek(path) for path in paths}
"""


@pytest.mark.parametrize("layout", ["bin/python3", ".local/bin/python3"])
def test_python_in_home_cannot_read_the_home(
    project: Path, fake_home: Path, secret: str, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PYTHON_EXECUTABLE=~/bin/python3 or ~/.local/bin/python3: the key and the
    connection file are not there for a pure stage."""
    monkeypatch.setenv("PYTHON_EXECUTABLE", str(place(fake_home, layout, REAL_PYTHON, False)))
    result = run_stage(PYTHON_READS, input=secret_paths(fake_home))
    assert result.ok, result.stderr
    assert {r.get("error") for r in result.value.values()} <= DENIED, result.value
    assert secret not in everything_shown(result)


def test_python_venv_whose_pyvenv_cfg_points_into_home_cannot_read_the_home(
    project: Path, fake_home: Path, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venv whose pyvenv.cfg says its base lives in ~/bin: the home stays out."""
    venv = fake_home / "work" / ".venv"
    place(venv, "bin/python", REAL_PYTHON, False)
    (venv / "pyvenv.cfg").write_text(f"home = {fake_home / 'bin'}\n")
    monkeypatch.setenv("PYTHON_EXECUTABLE", str(venv / "bin" / "python"))
    result = run_stage(PYTHON_READS, input=secret_paths(fake_home))
    assert result.ok, result.stderr
    assert {r.get("error") for r in result.value.values()} <= DENIED, result.value
    assert secret not in everything_shown(result)


def test_python_installed_at_the_home_itself_is_refused(
    project: Path, fake_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interpreter whose own prefix is the home (~/bin/python3, ~/lib/python3.X):
    refused with the fix, never run with the home exposed."""
    binary = place(fake_home, "bin/python3", REAL_PYTHON, True)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    stdlib = os.path.dirname(os.__file__)
    (fake_home / "lib").mkdir()
    (fake_home / "lib" / version).symlink_to(stdlib)
    monkeypatch.setenv("PYTHON_EXECUTABLE", str(binary))
    with pytest.raises(SandboxUnavailable, match=f"home directory {fake_home}.*fix:"):
        Stage("def execute(input):\n    return 1\n").run()


NODE_READS = """
const fs = require("fs");
function execute(paths) {
  const seen = {};
  for (const path of paths) {
    try {
      seen[path] = { size: fs.readFileSync(path).length };
    } catch (err) {
      seen[path] = { error: err.code };
    }
  }
  return seen;
}
"""


@pytest.mark.parametrize("copy", [False, True], ids=["link", "copy"])
def test_node_in_home_bin_cannot_read_the_home(
    project: Path, fake_home: Path, secret: str, copy: bool, sandbox_settings: IPyRunner
) -> None:
    """IPyRunner.node_executable = ~/bin/node (a link or a copy): it runs, and
    the key and the connection file are not there."""
    node = need_program("node")
    sandbox_settings.node_executable = str(place(fake_home, "bin/node", node, copy))
    result = run_stage(NODE_READS, "javascript", input=secret_paths(fake_home))
    assert result.ok, result.stderr
    assert {r.get("error") for r in result.value.values()} <= DENIED, result.value
    assert secret not in everything_shown(result)


def test_bash_in_home_bin_cannot_read_the_home(
    project: Path, fake_home: Path, sandbox_settings: IPyRunner
) -> None:
    """IPyRunner.bash_executable = ~/bin/bash (a copy): the home stays out."""
    bash = shutil.which("bash")
    assert bash is not None
    sandbox_settings.bash_executable = str(place(fake_home, "bin/bash", bash, True))
    paths = " ".join(shlex.quote(p) for p in [*secret_paths(fake_home), str(fake_home)])
    code = f"""
    execute() {{
      local seen="" path
      for path in {paths}; do
        if [ -e "$path" ]; then seen="$seen\\"there\\","; else seen="$seen\\"absent\\","; fi
      done
      echo "[${{seen%,}}]"
    }}
    """
    assert stage_value(code, "bash") == ["absent", "absent", "there"]
