from __future__ import annotations

from pathlib import Path

import pytest

from ipyrunner import InterpreterNotFound, InvalidRequirement, RuntimeUnavailable, Stage
from ipyrunner.config import IPyRunner
from ipyrunner.runtimes import nix
from tests.runtimes.conftest import calls

GREET = (
    "# requires: greeting==1.0.0\n"
    "import greeting\n"
    "def execute(name):\n"
    "    return greeting.greet(name)\n"
)


def test_python_stage_runs_on_the_flakes_interpreter_with_its_packages(
    project: Path, runtime_settings: IPyRunner
) -> None:
    result = Stage(GREET, runtime="nix", isolate="bwrap").run("ada")
    assert result.value == "hello, ada, from the nix store", result.stderr
    assert (result.runtime, result.isolation) == ("nix", "bwrap")


def test_resolution_happens_once_later_calls_start_no_nix(
    project: Path, runtime_settings: IPyRunner, nix_calls: Path
) -> None:
    stage = Stage(GREET, runtime="nix")
    assert stage("a") == "hello, a, from the nix store"
    first = calls(nix_calls)
    assert any(line.startswith("--extra-experimental-features") for line in first)
    assert stage("b") == "hello, b, from the nix store"
    assert Stage(GREET + "\n# a second cell\n", runtime="nix")("c").endswith("nix store")
    assert calls(nix_calls) == first  # the second and third call started no nix process
    nix._resolved.clear()  # a new kernel: the store path comes from the disk cache
    assert stage("d").endswith("nix store")
    assert calls(nix_calls) == first


def test_node_and_bash_come_from_the_flake(project: Path, runtime_settings: IPyRunner) -> None:
    js = Stage("function execute(x) { return process.version; }", "js", runtime="nix")
    sh = Stage('execute() { echo "\\"$BASH_VERSION\\""; }', "bash", runtime="nix")
    assert js().startswith("v")
    assert sh()
    assert js.interpreter().executable.startswith("/nix/store/")
    assert sh.interpreter().executable.startswith("/nix/store/")


def test_a_pin_the_flake_does_not_provide_is_refused(
    project: Path, runtime_settings: IPyRunner
) -> None:
    stage = Stage(GREET.replace("1.0.0", "2.0.0"), runtime="nix")
    with pytest.raises(InvalidRequirement, match=r"the flake provides greeting 1\.0\.0"):
        stage.run()


def test_a_package_the_flake_lacks_is_named(project: Path, runtime_settings: IPyRunner) -> None:
    stage = Stage("def execute(i):\n    return i\n", requires="nosuchpkg==1.0", runtime="nix")
    with pytest.raises(RuntimeUnavailable, match=r"attribute 'nosuchpkg' missing"):
        stage.run()


def test_an_unfetchable_flake_says_what_to_do(project: Path, runtime_settings: IPyRunner) -> None:
    runtime_settings.nix_flake = "path:/nonexistent/ipyrunner-flake"
    with pytest.raises(RuntimeUnavailable, match=r"cannot be fetched.*local flake"):
        Stage("def execute(i):\n    return i\n", runtime="nix").run()


def test_a_stopped_daemon_says_how_to_start_it(
    project: Path, runtime_settings: IPyRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIX_REMOTE", "daemon")
    monkeypatch.setenv("NIX_DAEMON_SOCKET_PATH", "/nonexistent/daemon-socket/socket")
    with pytest.raises(RuntimeUnavailable, match="daemon is not running"):
        Stage("def execute(i):\n    return i\n", runtime="nix").run()


def test_missing_nix_is_a_clear_error(project: Path, runtime_settings: IPyRunner) -> None:
    runtime_settings.nix_executable = "/nonexistent/bin/nix"
    with pytest.raises(InterpreterNotFound, match="nix-bin"):
        Stage("def execute(i):\n    return i\n", runtime="nix").run()


def test_the_default_flake_pins_a_nixpkgs_revision() -> None:
    flake = IPyRunner().nix_flake
    assert flake.startswith("github:NixOS/nixpkgs/")
    assert len(flake.rsplit("/", 1)[1]) == 40
