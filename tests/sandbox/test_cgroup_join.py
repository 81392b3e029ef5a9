"""The launcher's limits, on this host's real cgroups: everything the run starts
is held from its first instruction, by the run's cgroup where there is one and by
RLIMIT_NPROC always."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ipyrunner.sandbox.cgroups import create_run_cgroup
from ipyrunner.sandbox.limits import ResourceLimits, launcher_argv

pytestmark = pytest.mark.sandbox

# A child and a grandchild each say which pids cgroup they are in and their
# process limit, while a third process (the sleep) runs beside them.
TREE = (
    "sleep 5 & grep :pids: /proc/self/cgroup; grep 'Max processes' /proc/self/limits; "
    "sh -c \"grep :pids: /proc/self/cgroup; grep 'Max processes' /proc/self/limits\"; kill $!"
)


def test_every_process_the_launcher_starts_is_held() -> None:
    cgroup = create_run_cgroup(64, None)
    try:
        if os.geteuid() == 0:  # root is not bound by RLIMIT_NPROC: the cgroup must hold it
            assert cgroup is not None, "root got no run cgroup"
            assert "pids" in cgroup.limits, "root's run cgroup has no pids limit"
        prefix = launcher_argv(ResourceLimits(processes=64), cgroup, "prlimit")
        done = subprocess.run(
            [*prefix, "/bin/sh", "-c", TREE], capture_output=True, text=True, check=True
        )
        lines = done.stdout.splitlines()
        groups = [line.split(":", 2)[2] for line in lines if ":pids:" in line]
        limits = [line.split()[2:4] for line in lines if line.startswith("Max processes")]
        assert limits == [["64", "64"]] * 2, lines
        if cgroup is None or "pids" not in cgroup.limits:
            return  # a user without a delegated cgroup: the rlimit above is what holds
        _, path = cgroup.directories["pids"]
        own = next(
            line.split(":", 2)[2]
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if ":pids:" in line
        )
        assert groups == [f"{own.rstrip('/')}/{path.name}"] * 2, lines
    finally:
        if cgroup is not None:
            cgroup.close()
