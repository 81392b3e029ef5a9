"""Attacks on what a run hands back and on kernel state it could share.

Strict JSON results (NaN, Infinity, 1e999 are refused in every language and by
the kernel's decoder), a result channel that only the stage's own process can
write, and a kernel keyring that no sandboxed process can read or fill.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ipyrunner import ResultDecodeError, StageFailed
from ipyrunner.sandbox.cgroups import create_run_cgroup
from ipyrunner.stages.result import StageResult
from tests.sandbox.conftest import PRELUDE, run_stage, stage_value

REPO = Path(__file__).resolve().parents[2]
REFUSED = ", which JSON cannot hold"


def decode_error(result: StageResult) -> str:
    """The message of the ResultDecodeError that `result.check()` raises."""
    with pytest.raises(ResultDecodeError) as caught:
        result.check()
    return str(caught.value)


# --- strict JSON results ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "where"),
    [
        ("{'a': [1, 2, float('nan')]}", 'result["a"][2] is a float nan'),
        ("{'big': 1e999}", 'result["big"] is a float inf'),
        ("[-float('inf')]", "result[0] is a float -inf"),
    ],
    ids=["nan", "overflow", "-inf"],
)
def test_python_stage_non_finite_result_is_a_decode_error(expression: str, where: str) -> None:
    result = run_stage(f"def execute(_):\n    return {expression}\n")
    assert where + REFUSED in decode_error(result)


@pytest.mark.parametrize(
    ("expression", "where"),
    [
        ("{a: [1, 2, NaN]}", 'result["a"][2] is a non-finite number (NaN)'),
        ("{big: 1e999}", 'result["big"] is a non-finite number (Infinity)'),
        ("[-Infinity]", "result[0] is a non-finite number (-Infinity)"),
    ],
    ids=["nan", "overflow", "-infinity"],
)
def test_javascript_stage_non_finite_result_is_a_decode_error_not_null(
    expression: str, where: str
) -> None:
    result = run_stage(f"function execute(input) {{\n  return {expression};\n}}\n", "javascript")
    assert where + REFUSED in decode_error(result)


@pytest.mark.parametrize(
    ("printed", "where"),
    [
        ('{"a": [1, 2, NaN]}', 'result["a"][2] is NaN'),
        ('{"big": 1e999}', 'result["big"] is 1e999, beyond a float\'s range'),
        ("[Infinity, -Infinity]", "result[0] is Infinity"),
        ("-Infinity", "result is -Infinity"),
    ],
    ids=["nan", "overflow", "infinity", "-infinity"],
)
def test_bash_stage_non_finite_result_is_a_decode_error(printed: str, where: str) -> None:
    result = run_stage(f"execute() {{\n  echo '{printed}'\n}}\n", "bash")
    assert where + REFUSED in decode_error(result)


def test_hand_forged_envelope_cannot_bring_nan_into_the_kernel() -> None:
    """A stage finds the result pipe itself and writes an envelope holding NaN."""
    result = run_stage(
        """
        import fcntl

        def execute(_):
            for fd in sorted(int(name) for name in os.listdir("/proc/self/fd")):
                try:
                    pipe = os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
                    mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
                except OSError:
                    continue
                if fd > 2 and pipe and mode == os.O_WRONLY:
                    os.write(fd, b'{"ipyrunner": 1, "ok": true, "value": [NaN, 1e999]}')
                    os._exit(0)
            return "no result pipe found"
        """
    )
    assert "result[0] is NaN" + REFUSED in decode_error(result)


# --- the result channel belongs to the stage ----------------------------------------------------


def test_forked_child_returning_from_execute_is_not_a_second_result() -> None:
    value = stage_value(
        """
        def execute(_):
            pid = os.fork()
            if pid == 0:
                return "the child's value"
            _, status = os.waitpid(pid, 0)
            return {"parent": os.getpid(), "child_status": os.waitstatus_to_exitcode(status)}
        """
    )
    assert value["child_status"] == 0
    assert isinstance(value["parent"], int)


def test_forked_child_cannot_mask_the_parents_error() -> None:
    result = run_stage(
        """
        def execute(_):
            pid = os.fork()
            if pid == 0:
                return "the child's value"
            os.waitpid(pid, 0)
            raise LookupError("the parent's own failure")
        """
    )
    with pytest.raises(StageFailed, match="raised LookupError: the parent's own failure"):
        result.check()


def test_bash_subshells_and_background_jobs_cannot_send_a_result() -> None:
    """Subshells and background jobs, at the top and inside execute, run the wrapper's send."""
    value = stage_value(
        """
        ( __ipyrunner_envelope='{"ipyrunner": 1, "ok": true, "value": "top"}'
          __ipyrunner_send ) 2>/dev/null &
        wait
        execute() {
            ( __ipyrunner_envelope='{"ipyrunner": 1, "ok": true, "value": "sub"}'
              __ipyrunner_send ) 2>/dev/null
            ( __ipyrunner_send ) 2>/dev/null &
            wait
            echo '"the real value"'
        }
        """,
        "bash",
    )
    assert value == "the real value"


def require_process_limit() -> None:
    """Fail (never run an unbounded bomb) where `processes=` cannot be enforced.

    RLIMIT_NPROC binds an unprivileged user; a sandbox started by root (its uid
    maps to root) is held only by the pids cgroup."""
    if os.geteuid() != 0:
        return
    cgroup = create_run_cgroup(64, None)
    try:
        if cgroup is None or "pids" not in cgroup.limits:
            pytest.fail("no pids cgroup here: processes= would not hold a fork bomb as root")
    finally:
        if cgroup is not None:
            cgroup.close()


def test_contained_fork_bomb_reports_its_own_blocking_io_error() -> None:
    """`while True: os.fork()`: every child falls out of execute with the same error."""
    require_process_limit()
    result = run_stage(
        """
        def execute(_):
            while True:
                os.fork()
        """,
        processes=64,
        timeout=30,
    )
    assert result.error is not None
    assert (result.error.kind, result.error.type) == ("raised", "BlockingIOError"), result.error
    with pytest.raises(StageFailed, match="BlockingIOError") as caught:
        result.check()
    assert not isinstance(caught.value, ResultDecodeError)


# --- the kernel keyring is not shared -----------------------------------------------------------

# (add_key, request_key, keyctl) per ABI
KEY_CALLS = {"x86_64": (248, 249, 250), "aarch64": (217, 218, 219)}[platform.machine()]

KEY_STAGE = f"""
import ctypes

ADD_KEY, REQUEST_KEY, KEYCTL = {KEY_CALLS}
SESSION, GET_KEYRING_ID, SEARCH, READ = -3, 0, 10, 11
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def call(*args):
    \"\"\"The syscall's result, or the errno name of its failure.\"\"\"
    ctypes.set_errno(0)
    got = libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return got if got >= 0 else _errno.errorcode[ctypes.get_errno()]


def execute(secret):
    found = call(KEYCTL, SEARCH, SESSION, b"user", b"ipyrunner-kernel-key", 0)
    payload = None
    if isinstance(found, int):
        buffer = ctypes.create_string_buffer(256)
        size = call(KEYCTL, READ, found, buffer, 256)
        payload = "the kernel's secret" if buffer.value == secret.encode() else size
    return {{
        "session keyring": call(KEYCTL, GET_KEYRING_ID, SESSION, 0),
        "search": found,
        "read": payload,
        "plant": call(ADD_KEY, b"user", b"ipyrunner-planted", b"x", 1, SESSION),
        "request": call(REQUEST_KEY, b"user", b"ipyrunner-kernel-key", None, 0),
    }}
"""

# A kernel that holds a key in its own session keyring, as after a login
# (pam_keyinit) or `keyctl session`, runs the stage above.
KERNEL = """
import ctypes, json, sys
from ipyrunner import Stage
from ipyrunner.config import settings
from ipyrunner.sinks import NullSink

ADD_KEY, REQUEST_KEY, KEYCTL = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
L = ctypes.c_long
assert libc.syscall(L(KEYCTL), L(1), None) >= 0  # KEYCTL_JOIN_SESSION_KEYRING, anonymous
secret = sys.argv[2]
key = libc.syscall(
    L(ADD_KEY), b"user", b"ipyrunner-kernel-key", secret.encode(), L(len(secret)), L(-3)
)
assert key >= 0, ctypes.get_errno()
config = settings()
config.isolate, config.require_sandbox, config.display, config.retries = "bwrap", True, "none", 0
result = Stage(sys.argv[3]).run(secret, sink=NullSink())
planted = libc.syscall(L(KEYCTL), L(10), L(-3), b"user", b"ipyrunner-planted", L(0))
print(json.dumps({"isolation": result.isolation, "value": result.value,
                  "error": repr(result.error), "planted on the host": planted >= 0}))
"""


def test_pure_stage_cannot_read_or_plant_kernel_keys(tmp_path: Path) -> None:
    """The kernel's session keyring holds a key: the stage finds, reads and adds nothing."""
    secret = f"ipyrunner-key-secret-{os.getpid()}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "PROJECT_DIRECTORY": str(tmp_path),
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", KERNEL, json.dumps(KEY_CALLS), secret, PRELUDE + KEY_STAGE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["isolation"] == "bwrap", report
    assert report["value"] == {
        "session keyring": "ENOSYS",
        "search": "ENOSYS",
        "read": None,
        "plant": "ENOSYS",
        "request": "ENOSYS",
    }, report
    assert report["planted on the host"] is False
    assert secret not in report["error"]


def test_keyctl_from_bash_fails_cleanly() -> None:
    """keyutils' own tool in a stage: it can neither show the session keyring nor add to it."""
    assert shutil.which("keyctl"), "keyutils is missing: .ci/system-packages installs it"
    value = stage_value(
        """
        execute() {
            local show add
            show=$(keyctl show @s 2>&1); show+=" [status $?]"
            add=$(keyctl add user ipyrunner-planted x @s 2>&1); add+=" [status $?]"
            printf '{"show": "%s", "add": "%s"}' "${show//$'\\n'/ }" "${add//$'\\n'/ }"
        }
        """,
        "bash",
    )
    assert "Unable to dump key: Function not implemented" in value["show"], value
    assert value["show"].endswith("[status 1]"), value
    assert value["add"] == "add_key: Function not implemented [status 1]", value
