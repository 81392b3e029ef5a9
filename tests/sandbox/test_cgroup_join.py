"""The launcher's cgroup join, on this host's real cgroups: everything the run
starts is inside the run's cgroup from its first instruction."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ipyrunner.sandbox.cgroups import create_run_cgroup
from ipyrunner.sandbox.limits import ResourceLimits, launcher_argv

pytestmark = pytest.mark.sandbox


def test_every_process_the_launcher_starts_is_in_the_run_cgroup() -> None:
    cgroup = create_run_cgroup(64, None)
    if cgroup is None or "pids" not in cgroup.limits:
        # Only root may make cgroups on this host's hierarchies; another user's
        # processes limit is RLIMIT_NPROC alone, and nothing is joined.
        assert os.geteuid() != 0, "root can make a pids cgroup here, but none was made"
        prefix = launcher_argv(ResourceLimits(processes=64), cgroup, "prlimit")
        assert prefix == ["prlimit", "--nproc=64", "--"]
        return
    try:
        _, path = cgroup.directories["pids"]
        own = next(
            line.split(":", 2)[2]
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.split(":")[1] == "pids"
        )
        expected = f"{own.rstrip('/')}/{path.name}"
        prefix = launcher_argv(ResourceLimits(processes=64), cgroup, "prlimit")
        # A child and a grandchild each say which pids cgroup they are in.
        tree = "sleep 5 & grep :pids: /proc/self/cgroup; sh -c 'grep :pids: /proc/self/cgroup'"
        done = subprocess.run(
            [*prefix, "/bin/sh", "-c", f"{tree}; cat {path}/cgroup.procs | wc -l; kill $!"],
            capture_output=True,
            text=True,
            check=True,
        )
        lines = done.stdout.split()
        assert [line.split(":", 2)[2] for line in lines[:2]] == [expected] * 2, lines
        assert int(lines[2]) >= 3  # the shell, the sleep in the background, and cat
    finally:
        cgroup.close()
