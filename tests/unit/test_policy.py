"""Policy → bwrap argv is a pure function: inspect the argv, spawn nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipyrunner.effects import parse_effects
from ipyrunner.environment import private_dirs
from ipyrunner.errors import InvalidOption, PathNotAllowed, SandboxUnavailable
from ipyrunner.sandbox import isolation
from ipyrunner.sandbox.grants import resolve_grants
from ipyrunner.sandbox.isolation import RunNeeds, build_policy, choose_isolation
from ipyrunner.sandbox.network import DNS_ADDRESS, pasta_argv
from ipyrunner.sandbox.policy import Mount, SandboxPolicy, build_bwrap_command
from ipyrunner.sandbox.probe import BwrapStatus


def argv_for(policy: SandboxPolicy) -> list[str]:
    return build_bwrap_command(policy, "/usr/bin/bwrap")


def pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


BASE = SandboxPolicy(network="none", mounts=(), cwd="/work")


def test_baseline_unshares_everything_and_drops_privileges() -> None:
    argv = argv_for(BASE)
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent"):
        assert flag in argv
    assert "--new-session" in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--uid") + 1] == "65534"
    assert "--share-net" not in argv
    assert argv[-1] == "--"


def test_host_network_alone_shares_the_hosts_network() -> None:
    assert "--share-net" in argv_for(SandboxPolicy(network="host", mounts=(), cwd="/"))
    user = argv_for(SandboxPolicy(network="user", mounts=(), cwd="/", network_fds=(5, 6)))
    assert "--share-net" not in user
    # bwrap reports its sandbox, then waits for pasta before the program starts.
    assert user[-7:-3] == ["--info-fd", "5", "--block-fd", "6"]


def test_proc_sys_is_read_only_and_every_tmpfs_is_sized() -> None:
    argv = argv_for(BASE)
    assert ("/proc/sys", "/proc/sys") in pairs(argv, "--ro-bind")
    tmpfs = [i for i, a in enumerate(argv) if a == "--tmpfs"]
    assert [argv[i + 1] for i in tmpfs] == ["/dev/shm", "/tmp"]
    assert all(argv[i - 2 : i] == ["--size", str(BASE.tmp_size)] for i in tmpfs)


def test_root_and_dev_end_read_only_then_seccomp_applies() -> None:
    argv = argv_for(SandboxPolicy(network="none", mounts=(), cwd="/w", seccomp_fd=7))
    assert argv[-9:] == [
        "--remount-ro", "/dev", "--remount-ro", "/", "--seccomp", "7", "--chdir", "/w", "--"
    ]  # fmt: skip


def test_mounts_keep_their_order_and_kind() -> None:
    policy = SandboxPolicy(
        network="none",
        mounts=(
            Mount("ro", "/proj", "/proj"),
            Mount("rw", "/proj/out", "/proj/out"),
            Mount("mask-file", "/proj/.env"),
            Mount("mask-dir", "/proj/.git/hooks"),
        ),
        cwd="/proj",
    )
    argv = argv_for(policy)
    tail = argv[argv.index("/tmp") + 1 :]
    assert tail == [
        "--ro-bind", "/proj", "/proj",
        "--bind", "/proj/out", "/proj/out",
        "--ro-bind", "/dev/null", "/proj/.env",
        "--tmpfs", "/proj/.git/hooks", "--remount-ro", "/proj/.git/hooks",
        "--remount-ro", "/dev", "--remount-ro", "/",
        "--chdir", "/proj", "--",
    ]  # fmt: skip


def needs(project: Path, effects: str, dirs: object) -> RunNeeds:
    return RunNeeds(
        argv=("python", "x.py"),
        env={},
        project=project,
        dirs=dirs,  # type: ignore[arg-type]
        effects=parse_effects(effects),
    )


def test_pure_policy_exposes_no_project_and_works_in_the_private_dir(project: Path) -> None:
    with private_dirs() as dirs:
        policy = build_policy(
            needs(project, "pure", dirs), resolve_grants(parse_effects(""), project), 1 << 20
        )
        assert not any(m.dest.startswith(str(project)) for m in policy.mounts)
        assert policy.cwd == str(dirs.work)
        assert policy.network == "none"


def test_fs_grants_bind_the_project_and_mask_its_secrets(project: Path) -> None:
    (project / ".env").write_text("TOKEN=x")
    (project / "data").mkdir()
    (project / "data" / ".env.local").write_text("TOKEN=y")
    (project / ".git" / "hooks").mkdir(parents=True)
    (project / ".git" / "config").write_text("[remote]")
    with private_dirs() as dirs:
        spec = "fs-write:data,fs-read"
        grants = resolve_grants(parse_effects(spec), project)
        policy = build_policy(needs(project, spec, dirs), grants, 1 << 20)
    mounts = list(policy.mounts)
    assert Mount("ro", str(project), str(project)) in mounts
    assert Mount("rw", str(project / "data"), str(project / "data")) in mounts
    masked = {
        m.dest for m in mounts if m.kind.startswith("mask") and m.dest.startswith(str(project))
    }
    # Git metadata is hidden whole: none of it is the sandbox's to read.
    assert masked == {
        str(project / ".env"),
        str(project / "data" / ".env.local"),
        str(project / ".git"),
    }
    # Masks come after the binds they cover.
    last_bind = max(
        i
        for i, m in enumerate(mounts)
        if m.kind in ("ro", "rw") and m.dest.startswith(str(project)) and ".git" not in m.dest
    )
    assert all(
        i > last_bind
        for i, m in enumerate(mounts)
        if m.kind.startswith("mask") and m.dest.startswith(str(project))
    )
    assert policy.cwd == str(project)


def test_runtime_paths_stay_read_only_inside_a_writable_project(project: Path) -> None:
    venv = project / ".venv"
    venv.mkdir()
    with private_dirs() as dirs:
        run = RunNeeds(
            argv=("python",), env={}, project=project, dirs=dirs,
            effects=parse_effects("fs-write"), runtime_paths=(str(venv),),
        )  # fmt: skip
        grants = resolve_grants(run.effects, project)
        mounts = list(build_policy(run, grants, 1 << 20).mounts)
    assert mounts.index(Mount("ro", str(venv), str(venv))) > mounts.index(
        Mount("rw", str(project), str(project))
    )


def test_effect_paths_go_through_the_safe_resolver(project: Path) -> None:
    with pytest.raises(PathNotAllowed):
        resolve_grants(parse_effects("fs-read:../outside"), project)
    with pytest.raises(InvalidOption, match="no such path"):
        resolve_grants(parse_effects("fs-write:missing"), project)


def status(usable: bool) -> BwrapStatus:
    return BwrapStatus("/usr/bin/bwrap" if usable else None, usable, reason="nope", fix="install")


@pytest.mark.parametrize(
    ("mode", "usable", "required", "outcome"),
    [
        ("auto", True, False, "bwrap"),
        ("auto", False, False, "unavailable"),
        ("bwrap", True, False, "bwrap"),
        ("none", True, False, "none"),
        ("none", False, False, "none"),
    ],
)
def test_isolation_modes(
    monkeypatch: pytest.MonkeyPatch, mode: str, usable: bool, required: bool, outcome: str
) -> None:
    monkeypatch.setattr(isolation, "bwrap_status", lambda: status(usable))
    assert choose_isolation(mode, required) == outcome


@pytest.mark.parametrize(("mode", "usable"), [("bwrap", False), ("auto", False), ("none", True)])
def test_required_sandbox_turns_unsandboxed_outcomes_into_errors(
    monkeypatch: pytest.MonkeyPatch, mode: str, usable: bool
) -> None:
    monkeypatch.setattr(isolation, "bwrap_status", lambda: status(usable))
    with pytest.raises(SandboxUnavailable):
        choose_isolation(mode, require_sandbox=True)


def test_bwrap_mode_without_bwrap_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "bwrap_status", lambda: status(False))
    with pytest.raises(SandboxUnavailable, match="fix: install"):
        choose_isolation("bwrap", require_sandbox=False)


@pytest.mark.parametrize(("spec", "mode"), [("network", "user"), ("host-network", "host")])
def test_network_policies_grant_dns_and_tls_files(project: Path, spec: str, mode: str) -> None:
    with private_dirs() as dirs:
        grants = resolve_grants(parse_effects(spec), project)
        policy = build_policy(needs(project, spec, dirs), grants, 1 << 20)
        resolv = [m for m in policy.mounts if m.dest == "/etc/resolv.conf"]
        assert policy.network == mode
        if mode == "user":
            # The last bind wins: the sandbox asks pasta's forwarder, not the host's resolver.
            assert resolv[-1] == Mount("ro", "/etc/resolv.conf", str(dirs.root / "resolv.conf"))
            assert (dirs.root / "resolv.conf").read_text() == f"nameserver {DNS_ADDRESS}\n"


def test_pasta_forwards_no_port_and_maps_no_gateway_to_the_host() -> None:
    argv = pasta_argv("/usr/bin/pasta", "/proc/9/ns/net", Path("/run/p.pid"), "/proc/1/fd/5")
    assert "--no-map-gw" in argv
    assert "--config-net" in argv
    for flag in ("-t", "-u", "-T", "-U"):
        assert argv[argv.index(flag) + 1] == "none"
    assert argv[argv.index("--netns") + 1] == "/proc/9/ns/net"
    assert argv[argv.index("--userns") + 1] == "/proc/1/fd/5"
    assert "--runas" not in argv
    # As root: the namespace alone, and no drop to nobody (which could not enter it).
    as_root = pasta_argv("/usr/bin/pasta", "/proc/9/ns/net", Path("/run/p.pid"), None)
    assert as_root[as_root.index("--runas") + 1] == "0:0"
    assert "--userns" not in as_root
