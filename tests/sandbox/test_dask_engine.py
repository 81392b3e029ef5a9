"""`Stage.map` on a real `distributed.LocalCluster(processes=True)`: the same values,
errors and sandbox as a local map, and every way a cluster can be unfit says so
before any task runs."""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from distributed import Client, LocalCluster

from ipyrunner import EngineUnavailable, InvalidOption, Stage, StageFailed, StageTimeout
from ipyrunner.config import IPyRunner
from tests.conftest import processes_running

SECRET = "DASK_WORKER_TEST_SECRET"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    os.environ[SECRET] = "hunter2"  # the workers inherit it: a secret of theirs
    try:
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as made:
            yield made
    finally:
        del os.environ[SECRET]


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster, set_as_default=False) as made:
        yield made


def stage(code: str, **options: object) -> Stage:
    return Stage(textwrap.dedent(code), **options)  # type: ignore[arg-type]


DOUBLE = """
def execute(x):
    return x * 2
"""


def scheduler_tasks(client: Client, prefix: str) -> list[str]:
    def keys(dask_scheduler: object) -> list[str]:
        return [str(k) for k in dask_scheduler.tasks]  # type: ignore[attr-defined]

    return [k for k in client.run_on_scheduler(keys) if prefix in k]


def test_a_map_on_the_cluster_gives_what_a_local_map_gives(client: Client) -> None:
    double = stage(DOUBLE, name="double")
    assert double.map(range(20), engine=client, quiet=True) == double.map(range(20), quiet=True)


def test_results_say_which_worker_ran_each_call_warm_and_sandboxed(
    client: Client, cluster: LocalCluster
) -> None:
    results = stage(DOUBLE).map(range(12), engine=client, quiet=True, results=True)
    assert [r.value for r in results] == [2 * i for i in range(12)]
    assert {r.worker for r in results} <= set(cluster.scheduler_info["workers"])
    assert all(r.warm and r.isolation == "bwrap" for r in results)
    local = stage(DOUBLE).map(range(3), quiet=True, results=True)
    assert {r.worker for r in local} == {"local"}


def test_javascript_and_bash_stages_run_on_the_cluster(client: Client) -> None:
    js = Stage("function execute(x) { return x + 1; }", "javascript")
    assert js.map([1, 2, 3], engine=client, quiet=True) == [2, 3, 4]
    sh = Stage('execute() { echo "[$1, $1]"; }', "bash")
    assert sh.map([1, 2], engine=client, quiet=True) == [[1, 1], [2, 2]]


def test_the_first_failure_names_its_index_type_message_and_cell_line(client: Client) -> None:
    bad = stage(
        """
        def execute(x):
            if x == 5:
                raise ValueError(f"no {x}")
            return x
        """,
        name="picky",
    )
    with pytest.raises(StageFailed) as raised:
        bad.map(range(40), engine=client, quiet=True, warm=False)
    message = str(raised.value)
    assert message.startswith("map input [5]: stage picky raised ValueError: no 5")
    assert 'File "<stage picky>", line 4, in execute' in message


def test_the_callers_settings_apply_on_the_worker(client: Client) -> None:
    sleepy = stage("import time\ndef execute(x):\n    time.sleep(x)\n    return x\n")
    config = IPyRunner(timeout=1.0, isolate="bwrap", require_sandbox=True)
    with pytest.raises(StageTimeout, match=r"^map input \[1\]: .*timed out"):
        sleepy.map([0, 5], engine=client, quiet=True, config=config, warm=False)


def test_the_workers_environment_never_reaches_a_stage(client: Client) -> None:
    assert set(client.run(os.environ.get, SECRET).values()) == {"hunter2"}
    env = stage("import os\ndef execute(x):\n    return dict(os.environ)\n")
    for seen in env.map([0, 1], engine=client, quiet=True):
        assert SECRET not in seen
        assert "hunter2" not in str(seen)


def test_inputs_that_are_not_json_fail_before_any_task(client: Client) -> None:
    double = stage(DOUBLE, name="nojson")
    with pytest.raises(InvalidOption, match=r"^inputs\[2\]: .*set"):
        double.map([1, 2, {3}], engine=client, quiet=True)
    assert scheduler_tasks(client, "ipyrunner-nojson") == []


def test_an_interrupt_cancels_every_pending_and_running_call(client: Client) -> None:
    marker = "ipyrunner-interrupt-marker"
    slow = stage(f"import time\n# {marker}\ndef execute(x):\n    time.sleep(60)\n", name="slow")
    timer = threading.Timer(3.0, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        slow.map(range(6), engine=client, quiet=True, warm=False)
    assert time.monotonic() - started < 30
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        running = [p for p in _stage_processes(client) if "python_stage" in p]
        if not running and not scheduler_tasks(client, "ipyrunner-slow"):
            break
        time.sleep(0.2)
    assert not [p for p in _stage_processes(client) if "python_stage" in p]
    assert scheduler_tasks(client, "ipyrunner-slow") == []
    assert processes_running(marker) == []


def _stage_processes(client: Client) -> list[str]:
    lines = []
    for pid in client.run(os.getpid).values():
        for child in psutil.Process(pid).children(recursive=True):
            try:
                lines.append(" ".join(child.cmdline()))
            except psutil.Error:
                continue
    return lines


def test_a_lost_worker_repeats_a_pure_call(cluster: LocalCluster) -> None:
    with Client(cluster, set_as_default=False) as client:
        pids = client.run(os.getpid)
        sleepy = stage("import time\ndef execute(x):\n    time.sleep(2)\n    return x\n")
        killer = threading.Timer(1.0, os.kill, (next(iter(pids.values())), signal.SIGKILL))
        killer.start()
        assert sleepy.map(range(4), engine=client, quiet=True, warm=False) == [0, 1, 2, 3]
        client.wait_for_workers(2, timeout=60)


def test_a_lost_worker_never_repeats_a_call_with_network(cluster: LocalCluster) -> None:
    with Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        pids = client.run(os.getpid)
        sleepy = stage(
            "import time\ndef execute(x):\n    time.sleep(3)\n    return x\n",
            effects="network",
            name="once",
        )
        killer = threading.Timer(1.0, os.kill, (next(iter(pids.values())), signal.SIGKILL))
        killer.start()
        with pytest.raises(StageFailed, match=r"worker running this call was lost.*not run twice"):
            sleepy.map(range(2), engine=client, quiet=True, warm=False)
        client.wait_for_workers(2, timeout=60)


def test_engine_dask_uses_the_default_client_and_says_when_there_is_none(
    cluster: LocalCluster,
) -> None:
    with pytest.raises(EngineUnavailable, match="found no Dask client; fix: connect one"):
        stage(DOUBLE).map([1], engine="dask", quiet=True)
    with Client(cluster):
        assert stage(DOUBLE).map([1, 2], engine="dask", quiet=True) == [2, 4]


def test_map_engine_setting_picks_the_cluster(
    cluster: LocalCluster, fresh_settings: IPyRunner
) -> None:
    fresh_settings.map_engine = "dask"
    with Client(cluster):
        results = stage(DOUBLE).map([3], quiet=True, results=True)
    assert results[0].value == 6
    assert results[0].worker in cluster.scheduler_info["workers"]


def test_an_unreachable_scheduler_is_one_line_with_its_address() -> None:
    with pytest.raises(EngineUnavailable) as raised:
        stage(DOUBLE).map([1], engine="tcp://127.0.0.1:9", quiet=True)
    message = str(raised.value)
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in message
    assert "\n" not in message


# Workers made by hand, each unfit in one way, on a scheduler of their own:
# what each worker's Python runs first, and what the map's error must say.
UNFIT = {
    "no ipyrunner": (
        "import sys; sys.modules['ipyrunner'] = None",
        r"cannot import ipyrunner .*fix: pip install 'ipyrunner\[dask\]==0\.1\.0' on every worker",
    ),
    "another version": (
        "import ipyrunner.version as v; v.__version__ = '0.0.9'",
        r"runs ipyrunner 0\.0\.9, this kernel 0\.1\.0; fix: pip install",
    ),
    "no sandbox": (
        "import ipyrunner.sandbox.probe as p; p.find_program = lambda name: None",
        r"no usable sandbox \(bwrap is not installed\) and the map requires one; fix: apt-get",
    ),
}


@pytest.fixture
def lone_scheduler() -> Iterator[tuple[LocalCluster, Client]]:
    with (
        LocalCluster(n_workers=0, processes=True, dashboard_address=":0") as made,
        Client(made, set_as_default=False) as client,
    ):
        yield made, client


def start_worker(
    address: str, prelude: str, wrap: list[str] | None = None
) -> subprocess.Popen[bytes]:
    code = (
        f"{prelude}\nimport sys\nfrom distributed.cli.dask_worker import main\n"
        f"sys.argv = ['dask-worker', {address!r}, '--nthreads', '1', '--no-nanny', "
        "'--dashboard-address', ':0']\nmain()\n"
    )
    return subprocess.Popen([*(wrap or []), sys.executable, "-c", code], cwd="/")


@pytest.mark.parametrize("unfit", sorted(UNFIT))
def test_an_unfit_worker_fails_the_map_before_any_task(
    lone_scheduler: tuple[LocalCluster, Client], unfit: str
) -> None:
    cluster, client = lone_scheduler
    prelude, said = UNFIT[unfit]
    worker = start_worker(cluster.scheduler_address, prelude)
    try:
        client.wait_for_workers(1, timeout=60)
        with pytest.raises(EngineUnavailable, match=r"^worker tcp://\S+ " + said) as raised:
            stage(DOUBLE, name="unfit").map([1, 2], engine=client, quiet=True)
        assert "\n" not in str(raised.value)
        assert scheduler_tasks(client, "ipyrunner-unfit") == []
    finally:
        worker.kill()  # the test is over: no graceful close to wait for
        worker.wait(30)


@pytest.mark.parametrize(("cover", "said"), [
    ("parent", "does not exist there"),
    ("project", "is another directory than this kernel's project"),
])  # fmt: skip
def test_fs_effects_need_the_same_project_on_every_worker(
    lone_scheduler: tuple[LocalCluster, Client], project: Path, cover: str, said: str
) -> None:
    cluster, client = lone_scheduler
    (project / "data.txt").write_text("rows\n")
    hidden = project.parent if cover == "parent" else project
    # A worker whose machine has another tree (or none) at the project's path.
    mount = f'mount -t tmpfs none {hidden} && exec "$@"'
    wrap = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, "sh"]
    worker = start_worker(cluster.scheduler_address, "", wrap)
    try:
        client.wait_for_workers(1, timeout=60)
        reader = stage("def execute(x):\n    return open('data.txt').read()\n", effects="fs-read")
        with pytest.raises(EngineUnavailable, match=said + r".*shared filesystem"):
            reader.map([1], engine=client, quiet=True)
        pure = stage(DOUBLE)
        assert pure.map([1], engine=client, quiet=True) == [2]
    finally:
        worker.kill()  # the test is over: no graceful close to wait for
        worker.wait(30)


def test_fs_read_works_where_the_project_is_shared(client: Client, project: Path) -> None:
    (project / "data.txt").write_text("rows\n")
    reader = stage(
        "import os\ndef execute(x):\n"
        "    return open(os.path.join(os.environ['PROJECT_DIRECTORY'], 'data.txt')).read()\n",
        effects="fs-read",
    )
    assert reader.map([1, 2], engine=client, quiet=True) == ["rows\n", "rows\n"]
