"""One warm worker: a sandbox built exactly as a cold call's (the same `isolate()`,
held open for the worker's life), whose program imports the stage once and
serves each call from a fresh fork."""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from ..effects import Effects
from ..environment import child_environment, private_dirs
from ..errors import SandboxUnavailable
from ..process import CappedOutput, Completed, kill_tree, spawn_worker
from ..sandbox.grants import protect, resolve_grants
from ..sandbox.isolation import Attempted, Isolated, RunNeeds, isolate
from ..sandbox.limits import ResourceLimits, bwrap_returncode, limit_hit
from ..sandbox.protected import Protected
from .call import CallEnd, CallSpec, Link, Message, receive, run_call, stopped

WORKER_FD_VARIABLE = "IPYRUNNER_WORKER_FD"
T = TypeVar("T")


@dataclass(frozen=True)
class WorkerSpec:
    """What makes two workers interchangeable: a pool's key."""

    owner: str  # the stage's id: `Stage.close()` ends its pools
    command: tuple[str, ...]  # the interpreter, its flags and the worker program
    files: tuple[tuple[str, str], ...]  # (name, text) for the code directory, passed as paths
    args: tuple[str, ...]  # further arguments
    readable: tuple[str, ...]  # trees the program reads besides its code directory
    effects: Effects
    project: Path
    runtime_paths: tuple[str, ...]
    isolate: str
    require_sandbox: bool
    resources: ResourceLimits
    tmp_size: int

    def argv(self, code: Path) -> tuple[str, ...]:
        return (*self.command, *(str(code / name) for name, _ in self.files), *self.args)


class _Spawner:
    """The one thread workers are spawned from: bwrap's --die-with-parent ends a
    sandbox when the thread that spawned it ends, and a map's threads end early."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.executor: ThreadPoolExecutor | None = None

    def run(self, action: Callable[[], T], abandon: Callable[[T], object]) -> T:
        """`action()` in the spawning thread; if the caller is interrupted
        meanwhile, `abandon` gets what it made."""
        with self.lock:
            if self.executor is None:
                self.executor = ThreadPoolExecutor(1, thread_name_prefix="ipyrunner-warm-spawn")
        future = self.executor.submit(action)
        try:
            return future.result()
        except BaseException:
            future.add_done_callback(
                lambda done: done.exception() is None and abandon(done.result())
            )
            raise


_SPAWNER = _Spawner()


class Worker:
    """A started worker; `call` serves one call, `close` ends it and its sandbox."""

    def __init__(
        self,
        spec: WorkerSpec,
        stack: contextlib.ExitStack,
        isolated: Isolated,
        proc: subprocess.Popen[bytes],
        control: socket.socket,
    ) -> None:
        self.spec = spec
        self.stack = stack
        self.isolated = isolated
        self.proc = proc
        self.link = Link(control, 0, tuple(isolated.argv), (b"", b""))
        self.child: socket.socket | None = None  # reaches the child forked for the next call
        self.single_use = ""  # why the worker serves one call only, if it must
        self.protected: Protected | None = None  # the masks its mounts hold
        self.calls = 0
        self.oom_seen = False
        self.idle_since = 0.0
        self.closed = False

    def current(self) -> bool:
        """False once the granted trees hold protected files its mounts do not mask."""
        return self.protected is None or _protected(self.spec) == self.protected

    def call(self, payload: bytes, spec: CallSpec) -> tuple[Attempted | None, bool]:
        """The call's record (None if the worker ended before taking it), and
        whether the worker must be replaced."""
        number = self.calls + 1
        if self.child is None:
            why = self.await_message("next", number, spec)
            if why == "exited":
                return None, True
            if why:  # the worker did not get its next child ready in the call's time
                done = Completed(
                    self.link.argv,
                    -signal.SIGKILL,
                    "",
                    "",
                    0.0,
                    timed_out=why == "timeout",
                    cancelled=why == "cancelled",
                )
                return Attempted(done, self.isolated.isolation, None), True
        child, self.child = self.child, None
        assert child is not None
        self.calls = number
        end: CallEnd = run_call(self.link, child, payload, spec, number)
        if end.following is not None:
            self._adopt(end.following)
        if end.fate == "not-started":
            return None, True
        done = end.done
        # Only a failed call asks whether a memory kill ended it (a read of the cgroup).
        cgroup = self.isolated.cgroup
        oom = done.returncode != 0 and cgroup is not None and cgroup.oom_killed()
        new_oom, self.oom_seen = oom and not self.oom_seen, oom or self.oom_seen
        limit = limit_hit(done.returncode, done.stderr, new_oom, self.spec.resources)
        retire = end.retire or new_oom or bool(self.single_use)
        return Attempted(done, self.isolated.isolation, limit), retire

    def await_message(self, op: str, number: int, call: CallSpec) -> str:
        """Wait for the worker's `op` message (ready, next) for call `number`,
        which brings the child for that call: "" once it came, else why not
        (exited, timeout, cancelled)."""
        control = self.link.control
        check_at = time.monotonic() + call.limits.grace
        while True:
            now = time.monotonic()
            if call.cancel is not None and call.cancel.is_set():
                return "cancelled"
            if now >= call.deadline:
                return "timeout"
            if self.link.worker and now >= check_at:  # a worker a call stopped: gone
                if stopped(self.link.worker):
                    return "exited"
                check_at = now + call.limits.grace
            wait = min(0.05, call.deadline - now) if math.isfinite(call.deadline) else 0.05
            if not select.select([control], [], [], wait)[0]:
                continue
            message = receive(control)
            if message is None:
                return "exited"
            sender = message.sender or 0
            if op == "ready" and message.body.get("op") == "ready" and sender:
                self.link = replace(self.link, worker=sender)
                self.single_use = str(message.body.get("single_use") or "")
            if sender != self.link.worker or message.body.get("op") != op:
                message.close()
                continue
            if message.body.get("call") == number and self._adopt(message):
                return ""

    def _adopt(self, message: Message) -> bool:
        """Take the child socket a ready or next message brings."""
        fds, message.fds[:] = list(message.fds), []
        for fd in fds[1:]:
            os.close(fd)
        if len(fds) != 1:
            return False
        try:
            self.child = socket.socket(fileno=fds[0])
        except OSError:
            os.close(fds[0])
            return False
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.child is not None:
                self.child.close()
            self.stack.close()


def _protected(spec: WorkerSpec) -> Protected | None:
    grants = resolve_grants(spec.effects, spec.project)
    trees = (*grants.read, *grants.write)
    return protect(trees) if trees else None


def _worker_limits(resources: ResourceLimits) -> ResourceLimits:
    # The worker program itself is one process more than a cold call has.
    if resources.processes is None:
        return resources
    return replace(resources, processes=resources.processes + 1)


def start_worker(
    spec: WorkerSpec, call: CallSpec, clock: Callable[[], float] = time.monotonic
) -> Worker | Attempted:
    """A worker ready for calls, or, if it ended or timed out before that, the
    record of that start as a cold call's (its output, exit status and limit)."""
    stack = contextlib.ExitStack()
    try:
        return _start(spec, call, stack, clock)
    except BaseException:
        stack.close()
        raise


def _start(
    spec: WorkerSpec, call: CallSpec, stack: contextlib.ExitStack, clock: Callable[[], float]
) -> Worker | Attempted:
    start = clock()
    dirs = stack.enter_context(private_dirs())
    code = dirs.root / "stage"
    code.mkdir()
    for name, text in spec.files:
        (code / name).write_text(text, encoding="utf-8")
    control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stack.callback(theirs.close)
    control.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    env = {**child_environment(dirs, spec.project), WORKER_FD_VARIABLE: str(theirs.fileno())}
    needs = RunNeeds(
        argv=spec.argv(code),
        env=env,
        project=spec.project,
        dirs=dirs,
        effects=spec.effects,
        runtime_paths=spec.runtime_paths,
        readable=(str(code), *spec.readable),
        cwd=dirs.work,
    )
    protected = _protected(spec)  # before the mounts: any change since retires the worker
    isolated = stack.enter_context(
        isolate(
            needs, spec.isolate, spec.require_sandbox, _worker_limits(spec.resources), spec.tmp_size
        )
    )
    if not isolated.sandboxed:
        raise SandboxUnavailable("a warm worker runs only in a sandbox (bwrap)")
    out, err = dirs.root / "worker.out", dirs.root / "worker.err"
    proc = _SPAWNER.run(lambda: _spawn(isolated, theirs, out, err), kill_tree)
    if isolated.startup is not None:
        stack.callback(isolated.startup.close)
    stack.callback(kill_tree, proc)
    stack.callback(control.close)
    theirs.close()
    worker = Worker(spec, stack, isolated, proc, control)
    worker.protected = protected
    why = worker.await_message("ready", 1, call)
    if not why:
        preamble = (_read(out, call.limits.max_output), _read(err, call.limits.max_output))
        worker.link = replace(worker.link, preamble=preamble)
        return worker
    if why == "exited":  # its exit status tells how (the import's os._exit, a crash)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(call.limits.grace)
    kill_tree(proc)
    returncode = bwrap_returncode(proc.returncode)
    output = CappedOutput(call.limits.max_output)
    output.add("stdout", _read(out, call.limits.max_output), call.sink)
    output.add("stderr", _read(err, call.limits.max_output), call.sink)
    stdout, stderr = output.finish(call.sink)
    done = Completed(
        argv=worker.link.argv,
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
        duration_s=clock() - start,
        timed_out=why == "timeout",
        output_exceeded=output.exceeded,
        cancelled=why == "cancelled",
    )
    limit = isolated.limit_hit(returncode, stderr)
    stack.close()
    return Attempted(done, isolated.isolation, limit)


def _spawn(
    isolated: Isolated, theirs: socket.socket, out: Path, err: Path
) -> subprocess.Popen[bytes]:
    startup = isolated.startup
    proc = spawn_worker(
        isolated.argv,
        env=isolated.env,
        cwd=isolated.cwd,
        stdout=out,
        stderr=err,
        pass_fds=(
            *isolated.pass_fds,
            theirs.fileno(),
            *(startup.pass_fds if startup is not None else ()),
        ),
    )
    if startup is not None:
        try:
            startup.started(proc.pid)
        except BaseException:
            kill_tree(proc)
            raise
    return proc


def _read(path: Path, cap: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(cap + 1)
    except OSError:
        return b""
