"""Warm workers: every call starts pristine, with a cold call's sandbox and errors.

Each promise is tested by what a call can see of the one before it, so a pool
that reused one process (or one fork) for two calls fails it.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ipyrunner import Stage, StageFailed
from ipyrunner.config import IPyRunner
from ipyrunner.sinks import NullSink
from ipyrunner.stages.result import StageResult
from tests.conftest import processes_running
from tests.sandbox.conftest import PRELUDE

Factory = Callable[..., Stage]


@pytest.fixture
def warm() -> Iterator[Factory]:
    """Makes warm stages (dedented, PRELUDE first, a unique name to find its
    processes by); every one is closed after the test."""
    made: list[Stage] = []

    def make(code: str, **options: Any) -> Stage:
        name = options.pop("name", f"warm_{uuid.uuid4().hex[:10]}")
        stage = Stage(PRELUDE + textwrap.dedent(code), name=name, warm=True, **options)
        made.append(stage)
        return stage

    yield make
    for stage in made:
        stage.close()


def call(stage: Stage, input: Any = None) -> StageResult:
    """One call, checked to have been served warm and sandboxed."""
    result = stage.run(input, sink=NullSink())
    assert result.isolation == "bwrap", f"the stage ran unsandboxed: {result!r}"
    assert result.warm, f"the call was not served warm: {result!r}"
    return result


def value(stage: Stage, input: Any = None) -> Any:
    result = call(stage, input)
    assert result.ok, f"{result!r}\nerror: {result.error}\nstderr: {result.stderr[-2000:]}"
    return result.value


def wait_until_gone(marker: str, seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := processes_running(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_files_a_call_leaves_in_tmp_home_cwd_and_dev_shm_are_gone_for_the_next(
    warm: Factory,
) -> None:
    """The first call writes a file (and a directory it makes unreadable) in each
    private place; the second finds none of them."""
    stage = warm(
        """
        PLACES = ["/tmp", os.environ["HOME"], os.getcwd(), "/dev/shm"]

        def execute(write):
            if write:
                for place in PLACES:
                    with open(os.path.join(place, "left-over"), "w") as handle:
                        handle.write("from the first call")
                    locked = os.path.join(place, "locked")
                    os.makedirs(os.path.join(locked, "inner"))
                    os.chmod(locked, 0)
            return {p: sorted(os.listdir(p)) for p in PLACES}
        """
    )
    first = value(stage, True)
    assert all({"left-over", "locked"} <= set(names) for names in first.values())
    second = value(stage, False)
    for place, names in second.items():
        assert not {"left-over", "locked"} & set(names), (place, names)


def test_a_module_global_a_call_changes_is_back_to_its_import_value(warm: Factory) -> None:
    stage = warm(
        """
        SEEN = []
        SETTINGS = {"mode": "as imported"}

        def execute(n):
            SEEN.append(n)
            before = dict(SETTINGS)
            SETTINGS["mode"] = f"changed by call {n}"
            return {"seen": list(SEEN), "settings": before}
        """
    )
    for n in range(3):
        assert value(stage, n) == {"seen": [n], "settings": {"mode": "as imported"}}


def test_an_environment_variable_a_call_sets_is_unset_in_the_next(warm: Factory) -> None:
    stage = warm(
        """
        def execute(n):
            found = [os.environ.get("SET_BY_A_CALL"), os.environ.pop("HOME", None) is not None]
            os.environ["SET_BY_A_CALL"] = str(n)
            return found
        """
    )
    assert value(stage, 1) == [None, True]
    assert value(stage, 2) == [None, True]


def test_a_process_a_call_leaves_behind_is_killed_when_the_call_ends(warm: Factory) -> None:
    """The call starts a daemonised `sleep` that would outlive it: once the call
    has returned, it is gone on the host, and the next call sees no trace of it."""
    marker = f"sleep {uuid.uuid4().int % 10**6 + 10**6}"
    stage = warm(
        """
        import subprocess
        import time

        def execute(command):
            if command:
                subprocess.Popen(["setsid", *command.split()])  # a session of its own
                subprocess.Popen(command.split(), start_new_session=True)
                time.sleep(0.2)
            own = {1, os.getpid(), os.getppid()}
            return sorted(
                open(f"/proc/{p}/cmdline").read().replace("\\0", " ")
                for p in os.listdir("/proc") if p.isdigit() and int(p) not in own
            )
        """
    )
    assert any(marker in line for line in value(stage, marker))
    assert processes_running(marker) == [], "the call's processes outlived it"
    assert value(stage, "") == []


def test_a_timeout_ends_that_call_only(warm: Factory) -> None:
    stage = warm(
        """
        import time

        def execute(seconds):
            time.sleep(seconds)
            return seconds
        """,
        timeout=1,
    )
    slow = call(stage, 30)
    assert slow.timed_out
    assert slow.error is not None
    assert slow.error.kind == "timeout"
    assert value(stage, 0) == 0


def test_a_memory_kill_ends_that_call_only(warm: Factory, sandbox_settings: IPyRunner) -> None:
    """Killed by the cgroup, or refused by RLIMIT_AS where no cgroup holds memory."""
    sandbox_settings.tmp_size = "64M"
    stage = warm(
        """
        def execute(mib):
            block = bytearray(mib << 20)
            return len(block) >> 20
        """,
        memory="384M",
    )
    hog = call(stage, 1024)
    assert hog.error is not None
    assert (hog.error.kind, hog.error.type) == ("limit", "memory limit")
    assert value(stage, 8) == 8


@pytest.mark.parametrize(
    ("action", "kind", "said"),
    [
        ("os._exit(1)", "exit", "exited with status 1"),
        ("__import__('ctypes').string_at(0)", "signal", "SIGSEGV"),
    ],
)
def test_a_call_that_exits_or_crashes_is_its_own_error(
    warm: Factory, action: str, kind: str, said: str
) -> None:
    stage = warm(f"def execute(crash):\n    if crash:\n        {action}\n    return 'fine'\n")
    crashed = call(stage, True)
    assert crashed.error is not None
    assert crashed.error.kind == kind
    assert said in crashed.error.message
    assert value(stage, False) == "fine"


def test_a_call_that_kills_its_worker_gets_a_clear_error_and_the_next_a_fresh_one(
    warm: Factory,
) -> None:
    stage = warm(
        """
        import time

        STARTED = time.time()

        def execute(kill):
            if kill:
                os.kill(os.getppid(), 9)
                time.sleep(5)
            return STARTED
        """
    )
    before = value(stage, False)
    killed = call(stage, True)
    assert killed.error is not None
    assert killed.error.kind == "signal"
    assert "the warm worker serving this call died" in killed.stderr
    after = value(stage, False)
    assert after > before, "the next call was not served by a fresh worker"


def test_a_call_that_stops_its_worker_gets_a_clear_error_never_a_hang(warm: Factory) -> None:
    stage = warm(
        """
        import signal

        def execute(stop):
            if stop:
                os.kill(os.getppid(), signal.SIGSTOP)
            return "returned"
        """,
        timeout=20,
    )
    start = time.monotonic()
    stopped = call(stage, True)
    if not stopped.ok:  # the call itself had returned: it may still have told its end
        assert "the warm worker serving this call stopped answering" in stopped.stderr
    assert value(stage, False) == "returned"  # from a fresh worker
    assert time.monotonic() - start < 10


def test_a_call_cannot_touch_its_workers_memory_or_limits(warm: Factory) -> None:
    """The worker is not dumpable, so a call cannot read or write its memory;
    a call that lowers the worker's limits gets a fresh worker after it."""
    stage = warm(
        """
        import resource

        def execute(lower):
            worker = os.getppid()
            found = {"mem": read(f"/proc/{worker}/mem").get("error", "read")}
            if lower:
                found["prlimit"] = attempt(
                    resource.prlimit, worker, resource.RLIMIT_NOFILE, (64, 64)
                )
            found["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            return found
        """
    )
    first = value(stage, True)
    assert first["mem"] in ("EACCES", "EPERM")
    assert value(stage, False)["nofile"] == first["nofile"]


def test_module_code_that_raises_fails_as_a_cold_call_does(warm: Factory) -> None:
    code = (
        "x = 1\n\nraise ValueError('broken at import')\n\ndef execute(input):\n    return input\n"
    )
    cold = Stage(PRELUDE + code, name="broken").run(1, sink=NullSink())
    for _ in range(2):  # a fresh worker tries again, as a cold call would
        warmed = call(warm(code, name="broken"), 1)
        assert warmed.error == cold.error
        assert warmed.error is not None
        assert warmed.error.type == "ValueError"
    line = PRELUDE.count("\n") + 3
    assert f"line {line}" in cold.error.traceback if cold.error else False
    with pytest.raises(StageFailed, match="broken at import"):
        warmed.check()


def test_module_code_that_exits_fails_as_a_cold_call_does(warm: Factory) -> None:
    code = "print('imported')\nos._exit(3)\n\ndef execute(input):\n    return input\n"
    cold = Stage(PRELUDE + code, name="exits").run(1, sink=NullSink())
    warmed = call(warm(code, name="exits"), 1)
    assert warmed.error == cold.error
    assert warmed.error is not None
    assert "status 3" in warmed.error.message
    assert warmed.stdout == cold.stdout == "imported\n"


def test_errors_carry_the_cells_line_numbers_as_cold(warm: Factory) -> None:
    code = "def helper(x):\n    return 1 / x\n\ndef execute(input):\n    return helper(input)\n"
    stage = warm(code, name="lines", line_offset=1)
    cold = Stage(PRELUDE + code, name="lines", line_offset=1).run(0, sink=NullSink())
    warmed = call(stage, 0)
    assert warmed.error == cold.error
    assert warmed.error is not None
    assert warmed.error.type == "ZeroDivisionError"
    first = PRELUDE.count("\n") + 1 + 1  # the %%stage line, then the cell's own lines
    assert f"line {first + 1}, in helper" in warmed.error.traceback
    assert f"line {first + 4}, in execute" in warmed.error.traceback


def test_each_call_shows_its_own_output_after_what_the_import_printed(warm: Factory) -> None:
    stage = warm(
        """
        import sys
        print("imported")

        def execute(n):
            print(f"call {n}")
            print(f"warning {n}", file=sys.stderr)
            return n
        """
    )
    for n in range(3):
        result = call(stage, n)
        assert (result.stdout, result.stderr) == ("imported\n" + f"call {n}\n", f"warning {n}\n")


def test_results_say_whether_they_were_served_warm(warm: Factory) -> None:
    code = "def execute(input):\n    return input\n"
    assert call(warm(code), 1).warm
    assert not Stage(code).run(1, sink=NullSink()).warm


def test_the_warm_setting_serves_single_calls_warm(sandbox_settings: IPyRunner) -> None:
    sandbox_settings.warm = True
    stage = Stage("def execute(input):\n    return input\n")
    try:
        assert call(stage, 3).value == 3
        assert not Stage(stage.code, warm=False).run(3, sink=NullSink()).warm
    finally:
        stage.close()


def test_close_leaves_no_process(warm: Factory) -> None:
    stage = warm("def execute(input):\n    return input\n")
    assert stage.name is not None
    value(stage, 1)
    assert processes_running(stage.name), "no worker to look for"
    stage.close()
    assert processes_running(stage.name) == []


def test_idle_workers_end_after_warm_idle(warm: Factory, sandbox_settings: IPyRunner) -> None:
    sandbox_settings.warm_idle = 0.5
    stage = warm("def execute(input):\n    return input\n")
    assert stage.name is not None
    value(stage, 1)
    assert processes_running(stage.name)
    assert wait_until_gone(stage.name, 10) == []
    assert value(stage, 2) == 2  # and the next call starts a new one


def test_map_runs_warm_and_returns_results_in_input_order(warm: Factory) -> None:
    stage = warm(
        """
        import random
        import time

        def execute(n):
            time.sleep(random.random() / 50)
            return n
        """
    )
    results = stage.map(range(24), workers=3, quiet=True)
    assert results == list(range(24))


def test_map_stays_cold_when_asked(warm: Factory) -> None:
    stage = warm("def execute(input):\n    return os.getpid()\n")
    assert stage.name is not None
    assert stage.map([1, 2], workers=2, quiet=True, warm=False) == [2, 2]
    assert processes_running(stage.name) == []


def test_a_warm_pure_stage_sees_no_project_and_no_network(warm: Factory, project: Path) -> None:
    (project / "data.txt").write_text("project data\n")
    stage = warm(
        """
        import socket

        def execute(root):
            try:
                socket.create_connection(("1.1.1.1", 53), timeout=2).close()
                net = "ok"
            except Exception as exc:
                net = outcome(exc)
            return {"list": attempt(os.listdir, root), "net": net}
        """
    )
    for _ in range(2):
        assert value(stage, str(project)) == {"list": "ENOENT", "net": "ENETUNREACH"}


def test_a_warm_call_has_a_cold_calls_limits_and_identity(warm: Factory) -> None:
    code = """
        import resource
        import sys

        def execute(input):
            names = sorted(n for n in dir(resource) if n.startswith("RLIMIT_"))
            return {
                "limits": {n: resource.getrlimit(getattr(resource, n)) for n in names},
                "ids": [os.getuid(), os.getgid(), os.getgroups()],
                "proc": os.stat("/proc/self/fd").st_uid,
                "cwd": os.getcwd().rsplit("/", 1)[-1],
                "env": sorted(os.environ),
                "argv": sys.argv,
                "umask": os.umask(0o22),
            }
        """
    options: dict[str, Any] = {"cpu_time": 30, "open_files": 200, "file_size": "64M"}
    cold = Stage(PRELUDE + textwrap.dedent(code), name="same", **options).run(sink=NullSink())
    assert cold.ok, cold
    warmed = value(warm(code, name="same", **options))
    # The worker program is one process of the sandbox more: the call may start
    # as many as a cold one.
    nproc = cold.value["limits"]["RLIMIT_NPROC"]
    assert warmed["limits"].pop("RLIMIT_NPROC") == [n + 1 for n in nproc]
    cold.value["limits"].pop("RLIMIT_NPROC")
    assert warmed == cold.value


def test_a_call_starts_with_the_files_module_code_wrote(warm: Factory) -> None:
    """What the import itself leaves in /tmp is there for every call, as cold."""
    stage = warm(
        """
        with open("/tmp/made-at-import", "w") as handle:
            handle.write("kept")

        def execute(n):
            with open("/tmp/made-at-import") as handle:
                found = handle.read()
            with open("/tmp/made-at-import", "w") as handle:
                handle.write(f"changed by call {n}")
            return found
        """
    )
    assert [value(stage, n) for n in range(3)] == ["kept"] * 3


def test_shared_memory_a_call_makes_is_gone_for_the_next(warm: Factory) -> None:
    stage = warm(
        """
        import ctypes

        def execute(make):
            libc = ctypes.CDLL(None, use_errno=True)
            if make:
                assert libc.shmget(0x5EED, 4096, 0o1600) >= 0
            with open("/proc/sysvipc/shm") as handle:
                return len(handle.read().splitlines()) - 1
        """
    )
    assert value(stage, True) == 1
    assert value(stage, False) == 0


def test_random_numbers_differ_from_call_to_call(warm: Factory) -> None:
    stage = warm("import random\n\ndef execute(input):\n    return random.random()\n")
    assert len({value(stage) for _ in range(4)}) == 4


def test_exit_handlers_and_threads_run_as_at_a_cold_exit(warm: Factory) -> None:
    stage = warm(
        """
        import atexit
        import threading
        import time

        atexit.register(print, "exit handler")

        def execute(input):
            threading.Thread(target=lambda: (time.sleep(0.2), print("thread done"))).start()
            return input
        """
    )
    for _ in range(2):
        assert call(stage, 1).stdout == "thread done\nexit handler\n"


def test_a_protected_file_made_after_the_worker_started_stays_hidden(
    warm: Factory, project: Path, secret: str
) -> None:
    (project / "data.txt").write_text("project data\n")
    stage = warm("def execute(path):\n    return read(path)\n", effects="fs-read")
    assert value(stage, str(project / "data.txt")) == {"data": "project data\n"}
    (project / ".env").write_text(f"TOKEN={secret}\n")
    assert secret not in str(value(stage, str(project / ".env")))


@pytest.fixture
def secret() -> str:
    return f"secret-{uuid.uuid4().hex}"


@pytest.mark.parametrize(
    ("language", "code", "options"),
    [
        ("javascript", "function execute(input) { return input; }", {}),
        ("bash", 'execute() { echo "$1"; }', {}),
        ("python", "def execute(input):\n    return input\n", {"effects": "fs-write"}),
    ],
)
def test_javascript_bash_and_fs_write_stages_stay_cold(
    project: Path, language: str, code: str, options: dict[str, Any]
) -> None:
    stage = Stage(code, language, warm=True, **options)
    result = stage.run(5, sink=NullSink())
    assert result.ok
    assert result.value == 5
    assert not result.warm
    stage.close()


def test_a_call_cannot_speak_for_its_worker(warm: Factory) -> None:
    """A call sends forged messages on every socket it holds (a "done" for
    itself, the "next" child for the next call): none ends it early or
    derails the calls after it."""
    stage = warm(
        """
        import json
        import socket
        import time

        def execute(n):
            for fd in map(int, os.listdir("/proc/self/fd")):
                try:
                    forged = socket.socket(fileno=os.dup(fd))
                except OSError:
                    continue
                for body in ({"op": "done", "call": n + 1, "status": 0, "retire": False},
                             {"op": "next", "call": n + 2}, {"op": "exit", "status": 0}):
                    attempt(socket.send_fds, forged, [json.dumps(body).encode()], [1])
                forged.close()
            time.sleep(0.1)
            print("still running")
            return n
        """
    )
    for n in range(3):
        result = call(stage, n)
        assert (result.value, result.stdout) == (n, "still running\n"), result
