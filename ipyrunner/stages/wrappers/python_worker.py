"""A warm worker for one Python stage: `python python_worker.py CELL_FILE NAME`.

It imports the cell once, then serves calls on the control socket whose
descriptor is in IPYRUNNER_WORKER_FD. Each call is a fresh fork, running
python_stage.py's own code on the stdin, stdout, stderr and result descriptors
the kernel sends with it. When the call ends, every other process of the
sandbox is killed and its private directories and System V IPC are put back
as they were after the import. It runs only as the program of its own sandbox
(`kill(-1)` there reaches nothing else). Standalone, like python_stage.py.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from typing import Any, NoReturn

    from ipyrunner.stages.wrappers import python_stage as stage
    from ipyrunner.stages.wrappers.python_pristine import Pristine, private_roots

    Cell = tuple[types.ModuleType, str]
else:
    import python_stage as stage
    from python_pristine import Pristine, private_roots

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
_libc: list[Any] = []
_LAST_PID = "/proc/sys/kernel/ns_last_pid"  # the pid namespace's, as its members read it


def _prctl(option: int, value: int) -> None:
    import ctypes

    if not _libc:
        _libc.append(ctypes.CDLL(None, use_errno=True))
    if _libc[0].prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _send(control: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    socket.send_fds(control, [json.dumps(message).encode()], fds or [])


def _receive(control: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message and the descriptors sent with it; None at end of file."""
    data, fds, _, _ = socket.recv_fds(control, 4096, 8, socket.MSG_CMSG_CLOEXEC)
    if not data:
        return None, fds
    try:
        message = json.loads(data)
    except ValueError:
        message = {}
    return (message if isinstance(message, dict) else {}), fds


def _other_processes(*also: int) -> list[int]:
    """Processes of the sandbox but bwrap's init, this one and `also`."""
    own = (1, os.getpid(), *also)
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in own]


def _alone(pid: int) -> bool:
    """True if nothing of the call child `pid` runs but itself: nothing started
    since it was forked (the pid namespace's last pid is its own), or nothing left."""
    with contextlib.suppress(OSError, ValueError), open(_LAST_PID, "rb") as handle:
        if int(handle.read()) == pid:
            return True
    return not _other_processes(pid, os.getppid() if pid == os.getpid() else os.getpid())


def _reap(pid: int) -> int | None:
    """Reap every child that has exited; the exit code of `pid` if it was one."""
    status = None
    while True:
        try:
            found, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if found == 0:
            return status
        if found == pid:
            status = os.waitstatus_to_exitcode(raw)


def _end_processes() -> None:
    """Kill every process of the sandbox but this one and bwrap's init, and reap
    them: as a subreaper, every orphan of a call became this process's child."""
    while True:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _wait(
    control: socket.socket, child: tuple[int, int], wake: int, number: object
) -> tuple[int | None, bool]:
    """The call's exit code, signalling its processes as the kernel asks
    meanwhile (None if the kernel went away), and whether the child told it
    before exiting: then it may not be reaped yet."""
    import select

    pid, told = child
    poller = select.poll()
    poller.register(control, select.POLLIN)
    poller.register(wake, select.POLLIN)
    poller.register(told, select.POLLIN)
    while True:
        status = _reap(pid)
        if status is not None:
            return status, False
        for fd, _ in poller.poll():
            if fd == wake:
                os.read(wake, 512)
                continue
            if fd == told:
                code = os.read(told, 8)
                if len(code) == 4:
                    return int.from_bytes(code, "little", signed=True), True
                poller.unregister(told)  # it died without a word: its exit tells
                continue
            message, fds = _receive(control)
            for extra in fds:
                os.close(extra)
            if message is None:
                return None, False
            if message.get("op") == "signal" and message.get("call") == number:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(-1, int(message.get("signal", signal.SIGKILL)))


# _load, _import and _execute are python_stage._run in the three steps a worker
# takes apart: the module once, the import once, execute per call.
def _load(cell_file: str, name: str) -> Cell:
    filename = f"<stage {name}>"
    with open(cell_file, encoding="utf-8") as handle:
        code = handle.read()
    module = type(sys)("__stage__")
    module.__file__ = filename
    sys.modules["__stage__"] = module
    sys.argv = [filename]
    return module, code


def _failure(exc: Exception, cell: Cell) -> dict[str, Any]:
    module, code = cell
    message = f"{exc.msg} (line {exc.lineno})" if isinstance(exc, SyntaxError) else str(exc)
    return stage._error(
        type(exc).__name__, message, stage._cell_frames(exc, str(module.__file__), code)
    )


def _import(cell: Cell) -> dict[str, Any] | None:
    """Run the module code; its error envelope if it raised."""
    module, code = cell
    try:
        exec(compile(code, str(module.__file__), "exec", dont_inherit=True), module.__dict__)  # noqa: S102
    except Exception as exc:
        return _failure(exc, cell)
    return None


def _execute(cell: Cell) -> dict[str, Any]:
    module, _ = cell
    try:
        payload = stage.read_input(sys.stdin.buffer.read())
        execute = module.__dict__.get("execute")
        if not callable(execute):
            return stage._error("NameError", "the cell defines no function execute(input)")
        value = execute(payload)
        if hasattr(value, "__await__"):
            import asyncio

            value = asyncio.run(stage._awaited(value))
        return {"ipyrunner": stage.PROTOCOL, "ok": True, "value": value}
    except Exception as exc:  # the stage's own failure becomes its result
        return _failure(exc, cell)


def _exit_code(exc: SystemExit) -> int:
    # As the interpreter reads a SystemExit that ends it.
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _call(result_fd: int, display_fd: int | None, cell: Cell, failed: dict[str, Any] | None) -> int:
    """One call, as python_stage.py's main runs it; the exit code."""
    owner = os.getpid()
    channel = os.fdopen(result_fd, "wb")
    try:
        if display_fd is not None:  # what the import displayed shows first, as its output does
            stage.connect_display(display_fd)
        envelope = failed if failed is not None else _execute(cell)
    except SystemExit as exc:
        return _exit_code(exc)
    except BaseException:  # KeyboardInterrupt and the like: reported as the interpreter would
        sys.excepthook(*sys.exc_info())
        return 1
    if os.getpid() != owner:
        stage._leave_quietly(envelope["ok"])
    stage.show_open_figures()
    data, ok = stage.encode_envelope(envelope)
    channel.write(data)
    channel.close()
    return 0 if ok else 1


def _finish(code: int, told: int, calls: socket.socket) -> NoReturn:
    """Leave as an interpreter does (non-daemon threads joined, exit handlers run),
    without its teardown of every module; close the call's streams and tell the
    exit code first, so the call ends before this process is torn down: to the
    kernel if the call left no process behind, and to the worker."""
    with contextlib.suppress(BaseException):
        threading = sys.modules.get("threading")
        if threading is not None:
            getattr(threading, "_shutdown", lambda: None)()
        getattr(atexit, "_run_exitfuncs", lambda: None)()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    # Every descriptor of the call is closed before its end is told: the kernel
    # takes the end once they are, and would otherwise wait for this process to die.
    display, stage.DISPLAY_FD = stage.DISPLAY_FD, None
    for fd in (0, 1, 2) if display is None else (0, 1, 2, display):
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(OSError):
        if _alone(os.getpid()):
            calls.sendmsg([b'{"op": "exit", "status": %d}' % code])
    with contextlib.suppress(OSError):
        os.write(told, code.to_bytes(4, "little", signed=True))
    with contextlib.suppress(OSError):
        os.nice(19)  # being torn down must not hold up the worker and the kernel
    os._exit(code)


def _prefork(
    closing: list[int], cell: Cell, failed: dict[str, Any] | None, cwd: str
) -> tuple[tuple[int, int], socket.socket]:
    """A child forked (and set up) ahead of its call: the call itself then costs
    neither. It waits for the call's descriptors on a socket whose other end,
    returned, goes to the kernel: nothing else holds either. Its pid and the
    pipe it tells its exit code on come back too."""
    kernels, its = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    told, tell = os.pipe2(os.O_CLOEXEC)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:
        kernels.close()
        os.close(told)
        _child(its, tell, closing, cell, failed, cwd)
    its.close()
    os.close(tell)
    return (pid, told), kernels


def _child(
    calls: socket.socket,
    tell: int,
    closing: list[int],
    cell: Cell,
    failed: dict[str, Any] | None,
    cwd: str,
) -> NoReturn:
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in closing:  # the call must not speak for the worker
            os.close(fd)
        os.setsid()
        _prctl(PR_SET_DUMPABLE, 1)
        numpy_random = sys.modules.get("numpy.random")
        if numpy_random is not None:  # `random` reseeds itself after a fork; numpy does not
            numpy_random.seed()
        _rehearse()
        message, fds = _receive(calls)
    except BaseException:
        os._exit(70)
    if message is None or len(fds) not in (4, 5):
        os._exit(0)  # the worker ends: no call, so none of the call's exit handlers
    code = 70
    try:
        os.chdir(cwd)  # restored after this child was forked
        stdin, stdout, stderr, result = fds[:4]
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
            os.close(fd)
        code = _call(result, fds[4] if len(fds) == 5 else None, cell, failed)
    finally:
        _finish(code, tell, calls)


def _rehearse() -> None:
    """Touch what every call uses (reading stdin, the JSON codec, writing the
    result) while waiting: the pages it lives on are copied now, not in the call."""
    sample = [0, "", {"": 0.5}, None, True]
    with contextlib.suppress(Exception):  # module code may have replaced a stream
        stage.loads(
            stage.encode_envelope({"ipyrunner": stage.PROTOCOL, "ok": True, "value": sample})[0]
        )
        read, write = os.pipe()
        with os.fdopen(write, "wb") as channel:
            channel.write(b"{}")
        os.close(read)
        sys.stdin.buffer.read()  # the worker's stdin is empty
        for stream in (sys.stdout, sys.stderr):
            stream.flush()


def _serve(control: socket.socket, cell: Cell, failed: dict[str, Any] | None, reason: str) -> None:
    wake, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    pristine = Pristine(private_roots())
    reason = reason or pristine.unusable()
    os.chdir(pristine.cwd)
    import gc

    # What the import made is never collected in a call: its garbage collector
    # then leaves those pages alone, and fewer of them are copied on write.
    gc.freeze()
    closing = [control.fileno(), wake, wake_write]
    number = 1
    child, kernels = _prefork(closing, cell, failed, pristine.cwd)
    _send(control, {"op": "ready", "call": number, "single_use": reason}, [kernels.fileno()])
    kernels.close()
    while True:
        # Call `number` goes from the kernel straight to the child forked for it.
        status, told = _wait(control, child, wake, number)
        os.close(child[1])
        # What the call left is dead before it is over; the child itself, its
        # streams closed, may finish dying meanwhile.
        if status is None or not told or not _alone(child[0]):
            _end_processes()
        if status is None:
            return
        _send(control, {"op": "done", "call": number, "status": status, "retire": bool(reason)})
        if reason or pristine.changed():
            return  # the kernel finds the worker gone before its next call, and replaces it
        number += 1
        # The next child sets itself up while the last call's files go (and the
        # last child, which runs no more code of the call, finishes dying; it is
        # reaped while the next call waits). The kernel hears of it only then.
        child, kernels = _prefork(closing, cell, failed, pristine.cwd)
        pristine.restore()
        os.chdir(pristine.cwd)  # a call may have replaced the directory
        _send(control, {"op": "next", "call": number}, [kernels.fileno()])
        kernels.close()


def main() -> None:
    variable = os.environ.pop("IPYRUNNER_WORKER_FD", None)
    if variable is None or len(sys.argv) != 3:
        print("usage: IPYRUNNER_WORKER_FD=N python_worker.py CELL_FILE NAME", file=sys.stderr)
        sys.exit(2)
    if os.getpid() != 2 or os.getppid() != 1:
        print("python_worker.py runs only as the program of a sandbox of its own", file=sys.stderr)
        sys.exit(2)
    control = socket.socket(fileno=int(variable))
    control.set_inheritable(False)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    # Calls run as the same user: they may not read or write this process's memory.
    _prctl(PR_SET_DUMPABLE, 0)
    owner = os.getpid()
    stage.prepare(os.path.dirname(os.path.abspath(__file__)))
    stage.DISPLAY_HELD = []  # what the import displays is sent by each call
    cell = _load(sys.argv[1], sys.argv[2])
    failed = _import(cell)
    if os.getpid() != owner:  # the module code forked, and its child got here
        stage._leave_quietly(failed is None)
    _reap(0)
    reason = "the module code raised" if failed is not None else _started_at_import()
    status = 0
    try:
        _serve(control, cell, failed, reason)
    except BaseException:  # told on stderr, which the kernel reads if the worker dies
        import traceback

        traceback.print_exc()
        status = 70
    finally:
        _end_processes()
        os._exit(status)  # not the module's exit handlers: they run in each call


def _started_at_import() -> str:
    """What the module code left running, which a fork cannot copy to each call."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return "the module code started threads"
    if _other_processes():
        return "the module code started processes"
    if not os.access("/proc/sysvipc/shm", os.R_OK) and os.path.exists("/proc/sysvipc"):
        return "System V IPC cannot be listed here"
    return ""


if __name__ == "__main__":
    main()
