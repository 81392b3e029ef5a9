"""JupyterLab on 127.0.0.1 in a root of its own, and Debian's chromium driven by
Playwright: what a person sees. Needs the `chromium` package and `.[dev]`."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unavailable

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DOCS = REPO / "docs"
CHROMIUM = "/usr/bin/chromium"

# JupyterLab's own settings for the test: every cell in the page (no windowing, so
# selectors see them all), no news or update checks to pop up.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def missing(reason: str) -> None:
    """Under CI (IPYRUNNER_REQUIRE_SANDBOX=1) a missing browser tier fails; elsewhere it skips."""
    unavailable(f"the browser tier cannot run: {reason}")


@dataclass
class Lab:
    url: str
    token: str
    root: Path

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def page_url(self, notebook: str) -> str:
        # reset: a workspace of its own, without the tabs an earlier test left open.
        return f"{self.url}/lab/tree/{notebook}?reset&token={self.token}"

    def shut_down_kernels(self) -> None:
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if importlib.util.find_spec("jupyterlab") is None:
        missing("jupyterlab is not installed (pip install -e '.[dev]')")
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copytree(REPO / "tests" / "nixflake", root / "tests" / "nixflake")
    settings = base / "settings"
    for name, values in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    token = uuid.uuid4().hex
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IPYRUNNER_")}
    env.update(
        # The kernel's `python` is this interpreter: the venv's bin first.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
    )
    log = (base / "lab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    found = Lab(f"http://127.0.0.1:{port}", token, root)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                found.api("GET", "/api/status")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"JupyterLab did not start:\n{(base / 'lab.log').read_text()}")
                time.sleep(0.25)
        yield found
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"{CHROMIUM} is missing (apt-get install chromium; see .ci/system-packages)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[dev]')")
    # Chromium's own sandbox cannot start as root; a normal user keeps it.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, lab: Lab) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()
        lab.shut_down_kernels()


def screenshot(page: Any, name: str, docs: bool = False) -> Path:
    """Saved under tests/browser/artifacts/ (ignored by git); `docs` also copies it
    into docs/, for the README, when IPYRUNNER_UPDATE_DOCS=1 (a test run must not
    change the tree it tests)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    if docs and os.environ.get("IPYRUNNER_UPDATE_DOCS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / name)
    return path
