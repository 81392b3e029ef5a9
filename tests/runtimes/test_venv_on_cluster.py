"""Requirement venvs built on the workers of a Dask cluster: uv from the package
index, as the rest of this tier (the sandbox tier's cluster tests run without
the index, also as an unprivileged user)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from ipyrunner import Stage
from ipyrunner.config import IPyRunner


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster, set_as_default=False) as made,
    ):
        yield made


def test_requirement_venvs_are_built_on_the_workers_once_for_both(
    client: Client, runtime_settings: IPyRunner
) -> None:
    # Both worker processes ask at once: one builds, under the cache's lock, the other waits.
    six = Stage(
        "# requires: six==1.16.0\nimport six\ndef execute(x):\n    return [x, six.__version__]\n"
    )
    results = six.map(range(6), engine=client, quiet=True, warm=False, results=True)
    assert [r.value for r in results] == [[i, "1.16.0"] for i in range(6)]
    assert len({r.worker for r in results}) == 2
    cache = Path(runtime_settings.venv_cache)
    built = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(built) == 1, built
