from __future__ import annotations

import signal

import pytest

from ipyrunner.config import IPyRunner
from ipyrunner.errors import InvalidOption
from ipyrunner.sandbox.limits import (
    ResourceLimits,
    bwrap_returncode,
    launcher_argv,
    limit_hit,
    prlimit_args,
)


def test_prlimit_args_set_each_limit() -> None:
    limits = ResourceLimits(
        memory=1 << 30, cpu_seconds=10, processes=64, file_size=1 << 20, open_files=256
    )
    assert prlimit_args(limits) == [
        "--data=1073741824",
        "--cpu=10:11",
        "--nproc=64",
        "--fsize=1048576",
        "--nofile=256",
    ]


def test_launcher_joins_cgroups_before_the_limits_and_the_program() -> None:
    argv = launcher_argv(ResourceLimits(processes=8), ["/cg/a/cgroup.procs"], "/usr/bin/prlimit")
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[3:] == [
        "ipyrunner-limits",
        "/cg/a/cgroup.procs",
        "--",
        "/usr/bin/prlimit",
        "--nproc=8",
        "--",
    ]


def test_no_limits_no_prefix() -> None:
    assert launcher_argv(ResourceLimits(), [], "prlimit") == []


def test_limits_come_from_settings_and_options(fresh_settings: IPyRunner) -> None:
    fresh_settings.processes = 100
    limits = ResourceLimits.from_settings(fresh_settings, memory="256M", cpu_time="2.5")
    assert (limits.memory, limits.cpu_seconds, limits.processes) == (256 << 20, 3, 100)


@pytest.mark.parametrize(
    "options", [{"memory": "lots"}, {"cpu_time": "-1"}, {"processes": "-2"}, {"open_files": "x"}]
)
def test_bad_limit_options_are_rejected(fresh_settings: IPyRunner, options: dict[str, str]) -> None:
    with pytest.raises(InvalidOption):
        ResourceLimits.from_settings(fresh_settings, **options)


LIMITS = ResourceLimits(memory=1 << 28, cpu_seconds=5, file_size=1 << 20)


def test_memory_kill_is_told_from_a_timeout() -> None:
    assert limit_hit(-signal.SIGKILL, "", oom_killed=True, limits=LIMITS) == "memory"
    assert limit_hit(1, "MemoryError\n", oom_killed=False, limits=LIMITS) == "memory"
    assert limit_hit(-signal.SIGKILL, "", oom_killed=False, limits=LIMITS) is None


def test_cpu_and_file_size_kills_are_named() -> None:
    assert limit_hit(-signal.SIGXCPU, "", False, LIMITS) == "cpu"
    assert limit_hit(-signal.SIGXFSZ, "", False, LIMITS) == "file-size"
    assert limit_hit(0, "", False, LIMITS) is None


def test_bwrap_signal_exits_read_as_signals() -> None:
    assert bwrap_returncode(128 + signal.SIGXCPU) == -signal.SIGXCPU
    assert bwrap_returncode(137) == -signal.SIGKILL
    assert bwrap_returncode(3) == 3
    assert bwrap_returncode(128) == 128
