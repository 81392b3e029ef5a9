"""Warm workers end with the kernel: `%unload_ext`, shutdown and restart leave none."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_bubblewrap, processes_running
from tests.kernel.conftest import Kernel, started_kernel

pytestmark = pytest.mark.kernel


@pytest.fixture(autouse=True)
def bubblewrap() -> None:
    """Warm workers need bubblewrap: skipped without it, failed without it in CI."""
    need_bubblewrap()


def start_warm_worker(kernel: Kernel) -> str:
    """Define a warm stage with a unique name, call it once; the name finds its worker."""
    name = f"warm_{uuid.uuid4().hex[:10]}"
    defined = kernel.execute(f"%%stage python {name} --warm\ndef execute(n):\n    return n + 1\n")
    assert defined.reply["status"] == "ok", defined.reply
    assert kernel.evaluate(f"{name}.run(1).warm") == "True"
    assert processes_running(name), "no worker to look for"
    return name


def gone(marker: str, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while processes_running(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_unload_ext_ends_every_warm_worker(kernel: Kernel) -> None:
    name = start_warm_worker(kernel)
    unloaded = kernel.execute("%unload_ext ipyrunner")
    assert unloaded.reply["status"] == "ok", unloaded.reply
    assert gone(name)


@pytest.fixture
def own_kernel(project: Path) -> Iterator[Kernel]:
    """A kernel the test itself shuts down (or restarts)."""
    with started_kernel(project) as started:
        yield started


@pytest.mark.parametrize("now", [False, True], ids=["shutdown", "killed"])
def test_kernel_shutdown_leaves_no_warm_worker(own_kernel: Kernel, now: bool) -> None:
    """A clean shutdown ends the pools at exit; a killed kernel takes its
    workers with it (bwrap dies with the thread that started it)."""
    name = start_warm_worker(own_kernel)
    own_kernel.client.stop_channels()
    own_kernel.manager.shutdown_kernel(now=now)
    assert gone(name)


def test_kernel_restart_leaves_no_warm_worker(own_kernel: Kernel) -> None:
    name = start_warm_worker(own_kernel)
    own_kernel.manager.restart_kernel(now=False)
    assert gone(name)
