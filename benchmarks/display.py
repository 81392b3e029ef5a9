"""Display messages per second while a script floods 50 MB into a real kernel's live
view: widget and text front ends interleaved, one kernel each (target: <= 10)."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

# 50 MB over a few seconds: 500 writes of 100 kB, 5 ms apart, so the rate is a rate.
FLOOD = """
import sys, time
block = ("x" * 99 + "\\n") * 1000
for _ in range(500):
    sys.stdout.write(block)
    sys.stdout.flush()
    time.sleep(0.005)
"""
SHOWN = ("comm_msg", "comm_open", "comm_close", "display_data", "update_display_data", "stream")
UPDATES = ("comm_msg", "stream")  # what a refresh sends; the rest is sent once per run


class Kernel:
    def __init__(self, project: Path, display: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IPYRUNNER_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(project), env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)
        self.execute(f"%load_ext ipyrunner\n%config IPyRunner.display = {display!r}")

    def execute(self, code: str) -> list[tuple[float, dict[str, Any]]]:
        msg_id = self.client.execute(code)
        seen = []
        while True:
            msg = self.client.get_iopub_msg(timeout=300)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            seen.append((time.monotonic(), msg))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return seen

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def flood_rate(kernel: Kernel) -> tuple[float, int]:
    """Updates a second the display sends while the flood goes on (from its first
    message to the run's result), and the one-time messages: widget models opened
    and closed, the display and its final replacement."""
    seen = kernel.execute("%runscript --isolate none --max-output 60M scripts/flood.py")
    shown = [(at, m["msg_type"]) for at, m in seen if m["msg_type"] in SHOWN]
    [end] = [at for at, m in seen if m["msg_type"] == "execute_result"]
    updates = [at for at, kind in shown if kind in UPDATES]
    return len(updates) / max(end - shown[0][0], 1e-3), len(shown) - len(updates)


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "scripts").mkdir()
        (project / "scripts" / "flood.py").write_text(FLOOD)
        kernels = {name: Kernel(project, name) for name in ("widget", "text")}
        try:
            rates: dict[str, list[float]] = {name: [] for name in kernels}
            once: dict[str, int] = {}
            for _ in range(max(1, rounds // 10)):
                for name, kernel in kernels.items():
                    rate, once[name] = flood_rate(kernel)
                    rates[name].append(rate)
        finally:
            for kernel in kernels.values():
                kernel.close()
    for name, measured in rates.items():
        print(
            f"display messages per second, 50 MB flood, {name:<6} "
            f"{statistics.median(measured):5.1f} (target <= 10; {once[name]} more once per run)"
        )


if __name__ == "__main__":
    main(int(os.environ.get("BENCH_ROUNDS", "40")))
