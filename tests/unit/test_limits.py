from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from ipyrunner.config import IPyRunner
from ipyrunner.errors import InvalidOption, SandboxUnavailable
from ipyrunner.sandbox import cgroups
from ipyrunner.sandbox.cgroups import STALE_AFTER, Hierarchy, RunCgroup, remove_stale
from ipyrunner.sandbox.limits import (
    ResourceLimits,
    bwrap_returncode,
    launcher_argv,
    limit_hit,
    prlimit_args,
)
from ipyrunner.sandbox.memory import NODE_ADDRESS_SPACE, UserScope, plan_memory
from ipyrunner.sandbox.procfs import procfs_cover


def test_prlimit_args_set_each_limit() -> None:
    limits = ResourceLimits(
        memory=1 << 30, cpu_seconds=10, processes=64, file_size=1 << 20, open_files=256
    )
    assert prlimit_args(limits, address_space=1 << 29) == [
        "--as=536870912",
        "--cpu=10:11",
        "--nproc=64",
        "--fsize=1048576",
        "--nofile=256",
    ]


def cgroup_of(*controllers: str, scope: UserScope | None = None) -> RunCgroup:
    """A run cgroup as `create_run_cgroup` would make it, without touching /sys."""
    directories = {
        name: (Hierarchy(name, 1, Path(f"/cg/{name}")), Path(f"/cg/{name}/run"))
        for name in controllers
    }
    return RunCgroup(directories, scope)


def test_launcher_joins_cgroups_before_the_limits_and_the_program() -> None:
    argv = launcher_argv(ResourceLimits(processes=8), cgroup_of("pids"), "/usr/bin/prlimit")
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[3:] == [
        "ipyrunner-limits",
        "/cg/pids/run/tasks",
        "--",
        "/usr/bin/prlimit",
        "--nproc=8",
        "--",
    ]


def test_the_launcher_joins_v1_by_its_thread_and_v2_by_its_process() -> None:
    # v1: `tasks` moves the writer's one thread without the global lock; v2 has
    # only `cgroup.procs`. Both take 0, the writer itself.
    cgroup = RunCgroup(
        {
            "pids": (Hierarchy("pids", 1, Path("/v1/pids")), Path("/v1/pids/run")),
            "memory": (Hierarchy("memory", 2, Path("/v2")), Path("/v2/run")),
        }
    )
    assert cgroup.join_files == ["/v1/pids/run/tasks", "/v2/run/cgroup.procs"]
    argv = launcher_argv(ResourceLimits(processes=8), cgroup, "/usr/bin/prlimit")
    assert 'echo 0 > "$1"' in argv[2]


def test_no_limits_no_prefix() -> None:
    assert launcher_argv(ResourceLimits(), None, "prlimit") == []


def memory_options(argv: list[str]) -> list[str]:
    return [arg for arg in argv if arg.startswith(("--as", "--data", "MemoryMax"))]


def test_a_memory_cgroup_holds_the_memory_limit_alone() -> None:
    """No RLIMIT_DATA or RLIMIT_AS on top: they would count what is only reserved."""
    argv = launcher_argv(ResourceLimits(memory=70 << 20), cgroup_of("memory", "pids"), "prlimit")
    assert memory_options(argv) == []
    assert "/cg/memory/run/tasks" in argv


def test_without_a_cgroup_memory_is_address_space_less_the_sandbox_tmpfs() -> None:
    argv = launcher_argv(ResourceLimits(memory=4 << 30), None, "prlimit", "python3", 1 << 30)
    assert memory_options(argv) == [f"--as={3 << 30}"]
    unsandboxed = launcher_argv(ResourceLimits(memory=4 << 30), cgroup_of("pids"), "prlimit")
    assert memory_options(unsandboxed) == [f"--as={4 << 30}"]


def test_a_memory_limit_nothing_can_hold_is_refused_with_the_fix() -> None:
    with pytest.raises(SandboxUnavailable) as refused:
        launcher_argv(ResourceLimits(memory=256 << 20), None, "prlimit", "python3", 1 << 30)
    message = str(refused.value)
    assert "\n" not in message
    for said in ("--memory 256M", "RLIMIT_AS", "IPyRunner.tmp_size", "IPyRunner.memory = 0"):
        assert said in message


def test_node_is_refused_below_the_address_space_it_reserves() -> None:
    space = NODE_ADDRESS_SPACE - (1 << 20)
    assert plan_memory(space, None, "/usr/bin/python3", 0).address_space == space
    with pytest.raises(SandboxUnavailable, match="node's 2G"):
        plan_memory(space, None, "/usr/bin/node", 0)
    assert plan_memory(space, "cgroup", "/usr/bin/node", 0).mode == "cgroup"


def test_a_user_scope_holds_memory_and_starts_before_the_cgroup_join() -> None:
    scope = UserScope("run.scope", "/run/user/1000", "systemd-run", "systemctl", "env")
    argv = launcher_argv(
        ResourceLimits(memory=1 << 30, processes=8), cgroup_of("pids", scope=scope), "prlimit"
    )
    assert argv[:9] == [
        "env",
        "XDG_RUNTIME_DIR=/run/user/1000",
        "systemd-run",
        "--user",
        "--scope",
        "--quiet",
        "--unit=run.scope",
        "-p",
        "MemoryMax=1073741824",
    ]
    # The manager's address does not reach the run.
    assert argv[argv.index("--") + 1 : argv.index("--") + 4] == ["env", "-u", "XDG_RUNTIME_DIR"]
    assert argv.index("/cg/pids/run/tasks") > argv.index("--")
    assert [a for a in argv if a.startswith("--as")] == []


def test_memory_zero_means_no_memory_limit(fresh_settings: IPyRunner) -> None:
    assert ResourceLimits.from_settings(fresh_settings, memory="0").memory is None
    fresh_settings.memory = 0
    limits = ResourceLimits.from_settings(fresh_settings)
    assert limits.memory is None
    assert memory_options(launcher_argv(limits, None, "prlimit", "node", 1 << 30)) == []


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


@pytest.mark.parametrize(
    "said",
    [
        "MemoryError\n",
        "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 8.00 GiB for an array",
        "OSError: [Errno 12] Cannot allocate memory",
        "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
        "RangeError: Array buffer allocation failed",
        "# Fatal process OOM in Failed to reserve virtual memory for CodeRange",
        "terminate called after throwing an instance of 'std::bad_alloc'",
        "Memory allocation still failed after 10 retries, giving up.",
        "OpenBLAS : Program will terminate because you tried to allocate too many memory "
        "regions.\nout of memory",
        "bash: xmalloc: cannot allocate 1073741824 bytes (12288 bytes allocated)",
        "memory allocation of 1073741824 bytes failed",
        "Exception in thread main java.lang.OutOfMemoryError: Java heap space",
    ],
)
def test_allocator_messages_are_a_memory_limit(said: str) -> None:
    assert limit_hit(1, f"{said}\n", False, LIMITS) == "memory"
    assert limit_hit(-signal.SIGABRT, said + "\n 1: 0x1 frame\n" * 40, False, LIMITS) == "memory"
    assert limit_hit(0, said, False, LIMITS) is None


def test_cpu_and_file_size_kills_are_named() -> None:
    assert limit_hit(-signal.SIGXCPU, "", False, LIMITS) == "cpu"
    assert limit_hit(-signal.SIGXFSZ, "", False, LIMITS) == "file-size"
    assert limit_hit(0, "", False, LIMITS) is None


def test_bwrap_signal_exits_read_as_signals() -> None:
    assert bwrap_returncode(128 + signal.SIGXCPU) == -signal.SIGXCPU
    assert bwrap_returncode(137) == -signal.SIGKILL
    assert bwrap_returncode(3) == 3
    assert bwrap_returncode(128) == 128


def fake_procfs(root: Path) -> None:
    """A /proc in miniature: a secret file, a private dir, a root-writable tree, a pid."""
    entries = {
        "kpageflags": 0o400,
        "meminfo": 0o444,
        "sysrq-trigger": 0o200,
        "irq/default_smp_affinity": 0o644,
        "irq/3/spurious": 0o444,
        "tty/driver/serial": 0o444,
        "sys/vm/drop_caches": 0o200,
        "sys/vm/swappiness": 0o644,
        "sys/net/ipv6/conf/eth0/stable_secret": 0o600,
        "pressure/memory": 0o666,
        "1/environ": 0o400,
    }
    for name, mode in entries.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        path.chmod(mode)
    (root / "tty/driver").chmod(0o500)
    (root / "self").symlink_to("1")


def test_procfs_cover_hides_what_only_the_owner_may_read_and_binds_writable_trees_read_only(
    tmp_path: Path,
) -> None:
    fake_procfs(tmp_path)
    root = str(tmp_path)
    cover = procfs_cover.__wrapped__(root)
    assert cover.files == tuple(
        os.path.join(root, name) for name in ("kpageflags", "sys/vm/drop_caches", "sysrq-trigger")
    )
    assert cover.dirs == (os.path.join(root, "tty/driver"),)
    # /proc/sys is bound read-only anyway; world-writable entries are not root's to guard.
    assert cover.read_only == (os.path.join(root, "irq"),)


def test_left_over_empty_run_cgroups_are_removed_and_fresh_or_busy_ones_kept(
    tmp_path: Path,
) -> None:
    hierarchy = Hierarchy("pids", 2, tmp_path)
    old, fresh, busy = (tmp_path / f"ipyrunner-{n}" for n in ("old", "fresh", "busy"))
    for path in (old, fresh, busy):
        path.mkdir()
    (busy / "cgroup.procs").write_text("1\n")  # rmdir refuses it, as the kernel would
    stale = time.time() - STALE_AFTER - 5
    for path in (old, busy):
        os.utime(path, (stale, stale))
    remove_stale(hierarchy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ipyrunner-busy", "ipyrunner-fresh"]


def test_a_run_cgroup_is_removed_once_its_dying_processes_leave(tmp_path: Path) -> None:
    hierarchy = Hierarchy("pids", 2, tmp_path)
    run = tmp_path / "ipyrunner-run"
    run.mkdir()
    (run / "cgroup.procs").write_text("")  # a regular file: rmdir refuses until it goes
    tries = []
    real_empty = cgroups._empty

    def leaving(path: Path) -> None:
        tries.append(path)
        if len(tries) == 3:  # the processes have left by the third look
            (path / "cgroup.procs").unlink()
        real_empty(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cgroups, "_empty", leaving)
        RunCgroup({"pids": (hierarchy, run)}).close()
    assert not run.exists()
    assert len(tries) == 3  # once before removing, then once per refusal (two)


def test_a_run_cgroup_that_never_empties_is_left_after_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cgroups, "REMOVE_WAIT_S", 0.05)
    run = tmp_path / "ipyrunner-stuck"
    run.mkdir()
    (run / "cgroup.procs").write_text("")
    RunCgroup({"pids": (Hierarchy("pids", 2, tmp_path), run)}).close()  # returns, no raise
    assert run.exists()
