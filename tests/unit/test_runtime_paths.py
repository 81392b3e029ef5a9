"""What a host interpreter brings into the sandbox: its real installation, as
it reports it, and never a home directory, `~/.local`, `~/.ssh` or Jupyter's
runtime directory. Layouts are built in tmp_path from copies and links of the
real interpreters; the tests that probe one need bubblewrap, as the probe runs
inside it."""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

import pytest

from ipyrunner import InterpreterNotFound, SandboxUnavailable
from ipyrunner.config import IPyRunner
from ipyrunner.process import Completed
from ipyrunner.runtimes import host, probe, trusted_host_paths
from ipyrunner.runtimes.elf import linked_files, read_dynamic
from ipyrunner.runtimes.exposure import Forbidden, is_system, within
from ipyrunner.runtimes.host import host_exposure, host_interpreter, host_runtime_paths
from ipyrunner.runtimes.probe import Reported, parse_report, probe_argv, probe_python
from ipyrunner.runtimes.venv import venv_exposure
from tests.conftest import need_program, unavailable

REAL_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
STDLIB = os.path.realpath(sysconfig.get_paths()["stdlib"])
VERSION = f"python{sys.version_info[0]}.{sys.version_info[1]}"


def covered(readonly: Sequence[str], path: str) -> bool:
    """True if a sandbox with `readonly` (and the system directories) has `path`."""
    real = os.path.realpath(path)
    return is_system(real) or any(within(real, p) for p in readonly)


def assert_home_hidden(readonly: Sequence[str], home: Path) -> None:
    """No exposed path is, holds or lies in the home's private trees, nor holds the home."""
    for private in (home, home / ".local", home / ".ssh", home / ".local/share/jupyter/runtime"):
        assert not any(within(str(private), p) for p in readonly), (private, readonly)
    for private in (home / ".ssh", home / ".local/share/jupyter", home / ".config"):
        assert not any(within(p, str(private)) for p in readonly), (private, readonly)


def install(prefix: Path, name: str = VERSION) -> Path:
    """A Python installation at `prefix`: a copy of the real binary whose stdlib
    is a link to the real one, so it reports `prefix` as its own."""
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    (prefix / "lib").mkdir(exist_ok=True)
    binary = prefix / "bin" / name
    shutil.copy2(REAL_PYTHON, binary)
    (prefix / "lib" / VERSION).symlink_to(STDLIB)
    return binary


@pytest.fixture
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME is a tmp dir holding an SSH key and a kernel connection file."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("PRIVATE KEY\n")
    runtime = home / ".local" / "share" / "jupyter" / "runtime"
    runtime.mkdir(parents=True)
    (runtime / "kernel-1.json").write_text('{"key": "hmac-secret"}\n')
    (home / ".config").mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def probing() -> None:
    """Skip unless the probe's sandbox can be made (fail under IPYRUNNER_REQUIRE_SANDBOX=1)."""
    if probe_python(REAL_PYTHON) is None:
        unavailable("bubblewrap cannot run the Python probe here")


def fake_probe(monkeypatch: pytest.MonkeyPatch, *prefixes: str) -> None:
    """The probe reports `prefixes`, as a lying interpreter might."""
    reported = Reported(tuple(os.path.realpath(p) for p in prefixes), "3.11.0")
    monkeypatch.setattr(host, "probe_python", lambda executable, masks=(): reported)


def test_kernel_python_exposes_its_own_prefixes_without_a_probe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_probe(executable: str, masks: Sequence[str] = ()) -> Reported:
        raise AssertionError("the kernel's own interpreter was probed")

    monkeypatch.setattr(host, "probe_python", no_probe)
    exposure = host_exposure(sys.executable, "python")
    for prefix in (sys.prefix, sys.base_prefix, REAL_PYTHON):
        assert covered(exposure.readonly, prefix)
    assert covered(exposure.readonly, exposure.executable)


@pytest.mark.usefixtures("probing")
def test_pyenv_layout_exposes_the_version_prefix_only(tmp_path: Path) -> None:
    prefix = tmp_path / "pyenv" / "versions" / "3.99.0"
    binary = install(prefix)
    (prefix / "bin" / "python3").symlink_to(binary.name)
    exposure = host_exposure(str(prefix / "bin" / "python3"))
    assert str(prefix) in exposure.readonly
    assert not any(within(str(tmp_path / "pyenv" / "versions"), p) for p in exposure.readonly)
    assert exposure.executable == str(binary)


@pytest.mark.usefixtures("probing")
def test_pyenv_link_to_the_real_interpreter_exposes_the_real_installation(tmp_path: Path) -> None:
    link = tmp_path / "pyenv" / "versions" / "3.99.0" / "bin" / "python3"
    link.parent.mkdir(parents=True)
    link.symlink_to(REAL_PYTHON)
    exposure = host_exposure(str(link))
    assert covered(exposure.readonly, REAL_PYTHON)
    assert covered(exposure.readonly, STDLIB)
    assert not any(p.startswith(str(tmp_path)) for p in exposure.readonly)
    assert exposure.executable == REAL_PYTHON


@pytest.mark.usefixtures("probing")
def test_local_bin_link_into_uv_python_exposes_that_install_only(fake_home: Path) -> None:
    managed = fake_home / ".local/share/uv/python/cpython-3.99.0-linux-x86_64-gnu"
    binary = install(managed)
    link = fake_home / ".local" / "bin" / "python3"
    link.parent.mkdir(parents=True)
    link.symlink_to(binary)
    exposure = host_exposure(str(link))
    assert str(managed) in exposure.readonly
    assert exposure.executable == str(binary)
    assert_home_hidden(exposure.readonly, fake_home)


@pytest.mark.usefixtures("probing")
def test_conda_like_env_exposes_the_env_not_the_conda_root(tmp_path: Path) -> None:
    env = tmp_path / "conda" / "envs" / "analysis"
    binary = install(env, "python")
    exposure = host_exposure(str(binary))
    assert str(env) in exposure.readonly
    assert not any(within(str(tmp_path / "conda" / "envs"), p) for p in exposure.readonly)
    assert covered(exposure.readonly, REAL_PYTHON) or all(
        covered(exposure.readonly, p) for p in linked_files(str(binary))
    )


@pytest.mark.usefixtures("probing")
def test_venv_whose_pyvenv_cfg_lies_exposes_the_venv_and_the_real_base(
    tmp_path: Path, fake_home: Path
) -> None:
    venv = tmp_path / "project" / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(REAL_PYTHON)
    (venv / "pyvenv.cfg").write_text(f"home = {fake_home / 'bin'}\nversion = 3.11.0\n")
    exposure = host_exposure(str(venv / "bin" / "python"))
    assert str(venv) in exposure.readonly
    assert covered(exposure.readonly, REAL_PYTHON)
    assert covered(exposure.readonly, STDLIB)
    assert exposure.executable == str(venv / "bin" / "python")
    assert not any(p.startswith(str(fake_home)) for p in exposure.readonly)


@pytest.mark.usefixtures("probing")
def test_venv_whose_pyvenv_cfg_names_a_home_with_a_stdlib_is_refused(
    tmp_path: Path, fake_home: Path
) -> None:
    (fake_home / "lib").mkdir()
    (fake_home / "lib" / VERSION).symlink_to(STDLIB)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(REAL_PYTHON)
    (venv / "pyvenv.cfg").write_text(f"home = {fake_home / 'bin'}\n")
    with pytest.raises((InterpreterNotFound, SandboxUnavailable), match=str(fake_home)):
        host_exposure(str(venv / "bin" / "python"))


@pytest.mark.usefixtures("probing")
def test_interpreter_whose_prefix_is_the_home_is_refused(fake_home: Path) -> None:
    binary = install(fake_home)
    with pytest.raises(SandboxUnavailable, match=f"home directory {fake_home}"):
        host_exposure(str(binary))


@pytest.mark.usefixtures("probing")
def test_interpreter_whose_prefix_holds_local_share_jupyter_is_refused(fake_home: Path) -> None:
    binary = install(fake_home / ".local")
    with pytest.raises(SandboxUnavailable, match="share/jupyter"):
        host_exposure(str(binary))


def test_node_copied_into_home_bin_exposes_that_file_only(fake_home: Path) -> None:
    node = need_program("node")
    copy = fake_home / "bin" / "node"
    copy.parent.mkdir()
    shutil.copy2(os.path.realpath(node), copy)
    exposure = host_exposure(str(copy), "node")
    assert exposure.readonly[0] == str(copy)
    assert all(p == str(copy) or not p.startswith(str(fake_home)) for p in exposure.readonly)
    assert exposure.executable == str(copy)


def test_node_linked_from_home_bin_runs_the_real_file(fake_home: Path) -> None:
    node = need_program("node")
    link = fake_home / "bin" / "node"
    link.parent.mkdir()
    link.symlink_to(node)
    exposure = host_exposure(str(link), "node")
    assert exposure.executable == os.path.realpath(node)
    assert not any(p.startswith(str(fake_home)) for p in exposure.readonly)


def test_bash_from_the_system_brings_nothing_more() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    assert host_runtime_paths(bash, "bash") == ()


def test_node_configured_in_home_is_run_at_its_real_path(
    fake_home: Path, fresh_settings: IPyRunner
) -> None:
    node = need_program("node")
    link = fake_home / "bin" / "node"
    link.parent.mkdir()
    link.symlink_to(node)
    fresh_settings.node_executable = str(link)
    assert host_interpreter("node", fresh_settings) == os.path.realpath(node)


def test_probe_reporting_the_root_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "bin" / "python3"
    binary.parent.mkdir()
    binary.write_bytes(b"\x7fELF")
    fake_probe(monkeypatch, "/")
    with pytest.raises(SandboxUnavailable, match="needs / in the sandbox"):
        host_exposure(str(binary))


def test_probe_reporting_a_prefix_without_the_interpreter_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "opt" / "bin" / "python3"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"\x7fELF")
    (tmp_path / "elsewhere").mkdir()
    fake_probe(monkeypatch, str(tmp_path / "elsewhere"))
    with pytest.raises(InterpreterNotFound, match="does not hold its real file"):
        host_exposure(str(binary))


def test_probe_reporting_a_prefix_that_holds_the_project_is_refused(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = project.parent / "bin" / "python3"
    binary.parent.mkdir()
    binary.write_bytes(b"\x7fELF")
    fake_probe(monkeypatch, str(project.parent))
    with pytest.raises(SandboxUnavailable, match="holds the project directory"):
        host_exposure(str(binary))


def test_probe_reporting_the_jupyter_runtime_dir_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "jupyter-runtime"
    binary = runtime / "bin" / "python3"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"\x7fELF")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    fake_probe(monkeypatch, str(runtime))
    with pytest.raises(SandboxUnavailable, match="jupyter-runtime"):
        host_exposure(str(binary))


def test_probe_sandbox_is_read_only_offline_and_hides_the_masks() -> None:
    argv = probe_argv("/usr/bin/bwrap", "/opt/py/bin/python3", ["/root/.ssh"])
    assert argv[0] == "/usr/bin/bwrap"
    assert {"--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent"} <= set(argv)
    assert "--share-net" not in argv
    assert "--bind" not in argv
    assert argv[argv.index("--ro-bind") : argv.index("--ro-bind") + 3] == ["--ro-bind", "/", "/"]
    program = argv[argv.index("--") + 1 :]
    assert program[:4] == ["/opt/py/bin/python3", "-I", "-S", "-c"]
    assert "/root/.ssh" in argv[: argv.index("--")]


def test_probe_runs_the_interpreter_only_inside_bwrap_and_once_per_file_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "bin" / "python3"
    binary.parent.mkdir()
    binary.write_bytes(b"\x7fELF")
    spawned: list[list[str]] = []
    report = f'{{"prefix": "{tmp_path}", "exec_prefix": "{tmp_path}", "base_prefix": '
    report += f'"{tmp_path}", "base_exec_prefix": "{tmp_path}", "version": "3.11.0"}}'

    def spawn(argv: list[str], **kwargs: object) -> Completed:
        spawned.append(argv)
        return Completed(tuple(argv), 0, report, "", 0.01)

    monkeypatch.setattr(probe, "run_process", spawn)
    monkeypatch.setattr(probe, "find_program", lambda name: "/usr/bin/bwrap")
    first = probe_python(str(binary))
    assert probe_python(str(binary)) == first
    assert len(spawned) == 1
    assert spawned[0][0] == "/usr/bin/bwrap"
    assert spawned[0].index(str(binary)) > spawned[0].index("--")
    os.utime(binary, ns=(1, 1))
    probe_python(str(binary))
    assert len(spawned) == 2


def test_probe_output_is_never_echoed_in_errors() -> None:
    """A planted interpreter could print what it read: neither junk nor made-up
    prefixes come back in the error."""
    made_up = "/PRIVATE-KEY-abc123"
    keys = ("prefix", "exec_prefix", "base_prefix", "base_exec_prefix")
    lying = json.dumps({**dict.fromkeys(keys, made_up), "version": "3.11.0"})
    for stdout in ("-----BEGIN OPENSSH PRIVATE KEY-----", lying):
        with pytest.raises(InterpreterNotFound) as caught:
            parse_report("/opt/py/bin/python3", stdout, 0, False)
        assert "PRIVATE" not in str(caught.value)


def test_elf_headers_name_the_libraries_without_running_the_binary(tmp_path: Path) -> None:
    found = read_dynamic(REAL_PYTHON)
    assert found is not None
    assert any(name.startswith("libc.so") for name in found.needed)
    script = tmp_path / "python3"
    script.write_text('#!/bin/sh\nexec python3 "$@"\n')
    assert read_dynamic(str(script)) is None
    assert linked_files(str(script)) == ()
    for library in linked_files(REAL_PYTHON):
        assert os.path.isabs(library)
        assert not is_system(library)


@pytest.mark.usefixtures("probing")
def test_venv_runtime_exposes_the_venv_and_its_base_not_what_pyvenv_cfg_says(
    tmp_path: Path, fake_home: Path
) -> None:
    venv = tmp_path / "cache" / "0123abcd"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(REAL_PYTHON)
    (venv / "pyvenv.cfg").write_text(f"home = {fake_home}/bin\n")
    readonly = venv_exposure(venv, REAL_PYTHON)
    assert str(venv) in readonly
    assert covered(readonly, REAL_PYTHON)
    assert covered(readonly, STDLIB)
    assert not any(p.startswith(str(fake_home)) for p in readonly)
    if sys.prefix != sys.base_prefix and not is_system(os.path.realpath(sys.prefix)):
        assert os.path.realpath(sys.prefix) not in readonly  # not the kernel's environment


@pytest.mark.usefixtures("probing")
def test_venv_linked_through_a_symlink_in_home_is_refused(tmp_path: Path, fake_home: Path) -> None:
    managed = fake_home / ".local/share/uv/python/cpython-3.99.0-linux-x86_64-gnu"
    binary = install(managed)
    link = fake_home / ".local" / "bin" / "python3"
    link.parent.mkdir(parents=True)
    link.symlink_to(binary)
    venv = tmp_path / "venv"  # as `python3 -m venv` makes it from that link
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python3").symlink_to(link)
    (venv / "pyvenv.cfg").write_text(f"home = {link.parent}\n")
    python = str(venv / "bin" / "python3")
    with pytest.raises(SandboxUnavailable, match=f"goes through {link}, which the sandbox"):
        host.check_links(python, (str(venv), str(managed)), python)
    with pytest.raises((InterpreterNotFound, SandboxUnavailable)):
        host_exposure(python)


@pytest.mark.usefixtures("probing")
def test_trusted_host_paths_hold_every_interpreter_run_on_the_host(
    tmp_path: Path, fresh_settings: IPyRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / "conda" / "envs" / "tools"
    binary = install(env, "python")
    monkeypatch.setenv("PYTHON_EXECUTABLE", str(binary))
    fresh_settings.venv_cache = str(tmp_path / "venvs")
    (tmp_path / "venvs").mkdir()
    paths = trusted_host_paths(fresh_settings)
    assert list(paths) == sorted(paths)
    assert all(os.path.exists(p) for p in paths)
    for needed in (sys.prefix, sys.base_prefix, REAL_PYTHON, str(env), str(tmp_path / "venvs")):
        assert covered(paths, needed), needed
    assert not any(within(home, p) for p in paths for home in ("/root", "/home", str(Path.home())))


def test_an_installation_may_lie_in_the_connection_file_directory_but_not_hold_it(
    tmp_path: Path,
) -> None:
    """Kernels often keep connection files in /tmp: a venv under /tmp is fine to expose,
    /tmp itself (or a tree holding it) is not; a tree inside ~/.ssh is never."""
    runtime = str(tmp_path / "tmp")
    home = str(tmp_path / "home")
    ssh = str(tmp_path / "home" / ".ssh")
    forbidden = Forbidden((home,), (runtime, ssh), None, (ssh,))
    assert forbidden.reason(str(tmp_path / "tmp" / "ci" / ".venv")) is None
    assert forbidden.reason(runtime) is not None
    assert forbidden.reason(str(tmp_path)) is not None
    assert forbidden.reason(str(tmp_path / "home" / ".ssh" / "py")) is not None
