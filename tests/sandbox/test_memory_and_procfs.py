"""Memory limits that hold (or refuse) and count what is used; procfs without root's view.

Run as root, the run's memory cgroup holds `memory=`; run as an unprivileged
user with no cgroup, RLIMIT_AS does. Where the two must differ (a reservation
counts only under RLIMIT_AS) the test asks which one holds.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ipyrunner.config import IPyRunner
from ipyrunner.sandbox.cgroups import create_run_cgroup
from ipyrunner.stages.result import StageResult
from tests.sandbox.conftest import run_stage, stage_value


def memory_cgroup_here() -> bool:
    """True where a run's memory limit is its cgroup's (and not RLIMIT_AS)."""
    cgroup = create_run_cgroup(None, 256 << 20)
    if cgroup is None:
        return False
    try:
        return cgroup.memory_held_by == "cgroup"
    finally:
        cgroup.close()


def assert_memory_limit(result: StageResult) -> None:
    assert result.error is not None, f"{result!r}: the stage got past its memory limit"
    assert not result.timed_out
    assert (result.error.kind, result.error.type) == ("limit", "memory limit"), (
        f"{result.error}\n{result.stderr[-1000:]}"
    )


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "def execute(_):\n    return 2\n"),
        ("bash", "execute() {\n  echo 2\n}\n"),
        ("javascript", "function execute(input) {\n  return 2;\n}\n"),
    ],
)
def test_every_language_runs_under_the_default_memory_limit(language: str, code: str) -> None:
    """The default 4G holds for every language, also where it becomes RLIMIT_AS (node
    reserves about 1 GiB of address space it never uses)."""
    assert stage_value(code, language) == 2


def test_memory_parked_in_tmp_and_dev_shm_counts_against_the_limit(
    sandbox_settings: IPyRunner,
) -> None:
    """With memory=384M, a stage writes 100 MiB to each tmpfs and then touches 200 MiB:
    together over the limit, so it is stopped by the memory limit."""
    sandbox_settings.tmp_size = "128M"
    result = run_stage(
        """
        def execute(_):
            block = b"x" * (1 << 20)
            for path in ("/dev/shm/parked", "/tmp/parked"):
                with open(path, "wb") as handle:
                    for _ in range(100):
                        handle.write(block)
            chunks = []
            for _ in range(200):
                chunk = bytearray(1 << 20)
                chunk[::4096] = b"x" * 256
                chunks.append(chunk)
            return "survived"
        """,
        memory="384M",
        timeout=60,
    )
    assert_memory_limit(result)


def test_shared_memory_of_many_mappings_is_counted(sandbox_settings: IPyRunner) -> None:
    """A stage touches 512 MiB in 64 MiB shared mappings with memory=128M: a memory limit."""
    sandbox_settings.tmp_size = "16M"
    result = run_stage(
        """
        import mmap

        def execute(_):
            areas = []
            for _ in range(8):
                area = mmap.mmap(-1, 64 << 20, mmap.MAP_SHARED)
                for offset in range(0, 64 << 20, 4096):
                    area[offset] = 1
                areas.append(area)
            return "survived"
        """,
        memory="128M",
        timeout=60,
    )
    assert_memory_limit(result)


def test_memory_reserved_but_not_used_counts_only_without_a_cgroup(
    sandbox_settings: IPyRunner,
) -> None:
    """A stage reserves 1 GiB of private memory (as OpenBLAS does for its threads) and
    uses 25 MiB of it, with memory=256M: where a cgroup holds the limit only the use
    counts, so it succeeds; under RLIMIT_AS the reservation counts and fails as a
    memory limit, never as a plain exit."""
    sandbox_settings.tmp_size = "16M"
    result = run_stage(
        """
        import mmap

        def execute(_):
            area = mmap.mmap(-1, 1 << 30, mmap.MAP_PRIVATE)
            for offset in range(0, 25 << 20, 4096):
                area[offset] = 1
            return "used 25 MiB of 1 GiB"
        """,
        memory="256M",
        timeout=60,
    )
    if memory_cgroup_here():
        assert result.ok, f"{result!r}\n{result.error}\n{result.stderr[-1000:]}"
        assert result.value == "used 25 MiB of 1 GiB"
    else:
        assert_memory_limit(result)


def test_node_heap_bomb_is_reported_as_a_memory_limit(sandbox_settings: IPyRunner) -> None:
    """A node stage grows its heap past memory=2304M: a memory limit, under the cgroup
    (killed) and under RLIMIT_AS (V8 says the heap is out of memory) alike."""
    sandbox_settings.tmp_size = "16M"
    result = run_stage(
        "function execute(input) {\n"
        "  const kept = [];\n"
        "  for (;;) kept.push(new Array(1e5).fill(1.5));\n"
        "}\n",
        "javascript",
        memory="2304M",
        timeout=60,
    )
    assert_memory_limit(result)


def owner_only_entries(root: str = "/proc") -> tuple[list[str], list[str]]:
    """The host's /proc entries, not a process's, that only their owner may read, and
    the regular files only their owner may write. /proc/sys/net is left out: a sandbox
    has a network namespace, and so entries there, of its own."""
    unreadable: list[str] = []
    unwritable: list[str] = []
    for directory, subdirs, files in os.walk(root):
        if directory == root:
            subdirs[:] = [d for d in subdirs if not d.isdigit()]
        for name in [*subdirs, *files]:
            path = os.path.join(directory, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode) or path == f"{root}/sys/net":
                continue
            if not mode & stat.S_IROTH:
                unreadable.append(path)
            elif stat.S_ISREG(mode) and mode & stat.S_IWUSR and not mode & stat.S_IWOTH:
                unwritable.append(path)
        subdirs[:] = [
            d
            for d in subdirs
            if os.path.join(directory, d) not in unreadable
            and os.path.join(directory, d) != f"{root}/sys/net"
        ]
    return unreadable, unwritable


def test_procfs_entries_only_root_may_read_give_a_stage_nothing() -> None:
    """A pure stage reads every /proc entry the host shows only to its owner
    (/proc/kpageflags, slabinfo, timer_list, vmallocinfo, ...): no data, whoever runs it."""
    unreadable, _ = owner_only_entries()
    assert unreadable, "this host's /proc has no entry only root may read"
    value = stage_value(
        """
        def execute(paths):
            seen = {}
            for path in paths:
                try:
                    if os.path.isdir(path):
                        seen[path] = {"entries": os.listdir(path)}
                        continue
                    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # /proc/kmsg would block
                    try:
                        seen[path] = {"bytes": len(os.read(fd, 64))}
                    finally:
                        os.close(fd)
                except OSError as exc:
                    seen[path] = {"error": outcome(exc)}
            return seen
        """,
        input=unreadable,
        timeout=30,
    )
    leaked = sorted(path for path, got in value.items() if got.get("bytes") or got.get("entries"))
    assert leaked == [], f"readable from the sandbox: {leaked}"


def test_procfs_files_only_root_may_write_are_read_only_in_a_stage() -> None:
    """A pure stage opens for writing every /proc file only its owner may write
    (/proc/irq/*/smp_affinity, /proc/bus/pci/*, /proc/sys/...): each open fails, so
    not one byte could reach the host's kernel. Opening writes nothing."""
    _, unwritable = owner_only_entries()
    value = stage_value(
        """
        def execute(paths):
            opened = {}
            for path in paths:
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                    opened[path] = "ok"
                except OSError as exc:
                    opened[path] = outcome(exc)
            return opened
        """,
        input=unwritable,
        timeout=30,
    )
    writable = sorted(path for path, got in value.items() if got == "ok")
    assert writable == [], f"writable from the sandbox: {writable}"


def test_kallsyms_shows_a_stage_no_kernel_addresses() -> None:
    """/proc/kallsyms is world-readable; a stage sees its symbols with every address 0."""
    if not Path("/proc/kallsyms").exists():
        pytest.skip("this kernel has no /proc/kallsyms")
    value = stage_value(
        """
        def execute(_):
            with open("/proc/kallsyms") as handle:
                return sorted({line.split()[0] for line in handle if line.strip()})
        """,
        timeout=30,
    )
    assert set(value) <= {"0" * 16}, value[:5]
