"""Know when a sandbox is gone: bwrap's `--info-fd` names its pid 1, held as a pidfd.

The run's writes are committed only once every process of the sandbox is gone.
A pidfd of the sandbox's pid 1 turns readable only after the kernel has killed
and reaped the rest of its pid namespace, with or without a cgroup to empty.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import time
from collections.abc import Iterator

from ..errors import SandboxUnavailable

SETUP_TIMEOUT = 10.0


def sandbox_pid(fd: int, deadline: float) -> int | None:
    """The pid bwrap writes on its --info-fd; None if it ended without one."""
    data = b""
    waiting = select.poll()
    waiting.register(fd, select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SandboxUnavailable("bubblewrap did not report its sandbox within 10 s")
        if waiting.poll(left * 1000):
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def open_pidfd(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return None  # gone already, and with it the whole namespace


def wait_gone(pidfd: int | None, timeout: float = 5.0) -> None:
    """Block until the process of `pidfd` has exited (its namespace emptied)."""
    if pidfd is None:
        return
    waiting = select.poll()
    waiting.register(pidfd, select.POLLIN)
    waiting.poll(timeout * 1000)


class SandboxWatch:
    """A `run_process` startup hook that learns the sandbox's pid 1."""

    def __init__(self) -> None:
        self.info_read, self.info_write = os.pipe()
        self.pidfd: int | None = None
        self.closed = False

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self.info_write,)

    def started(self, pid: int) -> None:
        os.close(self.info_write)  # the child holds its copy
        self.info_write = -1
        self.pidfd = open_pidfd(sandbox_pid(self.info_read, time.monotonic() + SETUP_TIMEOUT))

    def wait_gone(self) -> None:
        wait_gone(self.pidfd)

    def close(self) -> None:
        for fd in (self.info_read, self.info_write):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.info_read = self.info_write = -1

    def release(self) -> None:
        self.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


@contextlib.contextmanager
def sandbox_watch() -> Iterator[SandboxWatch]:
    watch = SandboxWatch()
    try:
        yield watch
    finally:
        watch.release()
