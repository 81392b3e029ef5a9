from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell

import ipyrunner
from ipyrunner.config import IPyRunner


@pytest.fixture
def shell(fresh_settings: IPyRunner) -> Iterator[InteractiveShell]:
    """An in-process IPython shell with the extension loaded and text display."""
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "ipyrunner")
    ipyrunner.load_ipython_extension(ip)  # bind this test's fresh settings
    fresh_settings.display = "text"
    yield ip
    ip.user_ns.pop("res", None)
