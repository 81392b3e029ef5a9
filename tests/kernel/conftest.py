"""A real ipykernel, started through jupyter_client, in a throwaway project."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

pytestmark = pytest.mark.kernel


@dataclass
class Execution:
    reply: dict[str, Any]
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def text(self) -> str:
        """Everything a user could read: streams, and the data of comm updates."""
        parts = []
        for _, msg in self.messages:
            content = msg["content"]
            if msg["msg_type"] == "stream":
                parts.append(content["text"])
            elif msg["msg_type"] in ("comm_msg", "comm_open"):
                parts.append(repr(content.get("data")))
            elif msg["msg_type"] in ("display_data", "execute_result", "update_display_data"):
                parts.append(str(content["data"].get("text/plain", "")))
        return "".join(parts)


@dataclass
class Kernel:
    manager: KernelManager
    client: BlockingKernelClient

    def execute(
        self,
        code: str,
        timeout: float = 60,
        on_message: Callable[[dict[str, Any]], None] | None = None,
    ) -> Execution:
        msg_id = self.client.execute(code)
        execution = Execution(reply={})
        deadline = time.monotonic() + timeout
        while True:
            msg = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            execution.messages.append((time.monotonic(), msg))
            if on_message is not None:
                on_message(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        execution.reply = self.reply_to(msg_id, timeout)["content"]
        return execution

    def reply_to(self, msg_id: str, timeout: float = 60) -> dict[str, Any]:
        """The shell reply to `msg_id`. Earlier replies are skipped: `wait_for_ready`
        sends a second kernel_info_request when a slow kernel doesn't answer the first
        within a second, and its reply would otherwise be taken for the next one."""
        deadline = time.monotonic() + timeout
        while True:
            reply: dict[str, Any] = self.client.get_shell_msg(
                timeout=max(0.1, deadline - time.monotonic())
            )
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    def evaluate(self, expression: str) -> str:
        reply = self.client.execute_interactive(
            "", user_expressions={"value": expression}, timeout=30
        )["content"]
        value = reply["user_expressions"]["value"]
        assert value["status"] == "ok", value
        return str(value["data"]["text/plain"])


@contextlib.contextmanager
def started_kernel(project: Path, **env: str) -> Iterator[Kernel]:
    """A real ipykernel in `project` with ipyrunner loaded, without the host's
    IPYRUNNER_* settings; shut down afterwards unless the test already did."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IPYRUNNER_")}
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(project), env={**environment, **env})
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        kernel = Kernel(manager, client)
        loaded = kernel.execute("%load_ext ipyrunner")
        assert loaded.reply["status"] == "ok", loaded.reply
        yield kernel
    finally:
        client.stop_channels()
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(project: Path) -> Iterator[Kernel]:
    with started_kernel(project, KERNEL_SECRET_TOKEN="top-secret-value") as started:
        yield started
