"""Attacks on the bubblewrap sandbox, each with what the user must see.

A stage or script here tries something it must not be able to do and reports
how it went (mostly errno names: ENOENT, EROFS, EPERM, ...); the test asserts
the outcome inside and, where the attack aims at the host, the state of the
host afterwards. Host secrets are planted by the tests themselves; real host
files (/etc/shadow) are only ever measured, never copied into a report.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ipyrunner import PathNotAllowed, ResultDecodeError, Stage, StageFailed
from ipyrunner.config import IPyRunner, settings
from ipyrunner.runtimes.host import host_runtime_paths
from ipyrunner.runtimes.trusted import trusted_host_paths
from ipyrunner.sandbox.cgroups import create_run_cgroup
from ipyrunner.sinks import NullSink
from tests.conftest import processes_running, write_script
from tests.sandbox.conftest import (
    everything_shown,
    run_sandboxed_script,
    run_stage,
    stage_value,
)

# What a failed attempt to touch the filesystem may legitimately say.
DENIED = {"ENOENT", "EROFS", "EACCES", "EPERM", "EXDEV", "EBUSY", "ENOTDIR"}


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def secret() -> str:
    return unique("ipyrunner_attack_secret")


@pytest.fixture
def outside(tmp_path: Path, secret: str) -> Path:
    """A host directory next to the project (outside it) holding a secret."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text(f"outside {secret}\n")
    return directory


@pytest.fixture
def home_secret(secret: str) -> Iterator[Path]:
    """A fake private key under the real HOME (in a directory of its own)."""
    root = Path(tempfile.mkdtemp(prefix="ipyrunner-attack-", dir=Path.home()))
    key = root / ".ssh" / "id_rsa"
    key.parent.mkdir(mode=0o700)
    key.write_text(
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    key.chmod(0o600)
    try:
        yield key
    finally:
        shutil.rmtree(root, ignore_errors=True)


def assert_denied(outcomes: dict[str, str], allowed: set[str] = DENIED) -> None:
    """Every attempt in `outcomes` failed, with one of the `allowed` reasons."""
    bad = {what: how for what, how in outcomes.items() if how not in allowed}
    assert not bad, f"attempts that were not refused: {bad}"


def files_holding(root: Path, text: str, skip: set[Path] | None = None) -> list[Path]:
    """Host files under `root` (symlinks not followed) that contain `text`."""
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            if path in (skip or set()) or path.is_symlink() or not path.is_file():
                continue
            with suppress(OSError):
                if text.encode() in path.read_bytes():
                    found.append(path)
    return found


def wait_until_gone(marker: str, seconds: float = 1.0) -> list[int]:
    """Host pids still running with `marker` after `seconds` of waiting."""
    deadline = time.monotonic() + seconds
    while (alive := processes_running(marker)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive


# --- reading host secrets ---------------------------------------------------------------


def test_pure_stage_cannot_read_ssh_key_shadow_or_root(home_secret: Path, secret: str) -> None:
    """A pure stage reads a private key under HOME, /etc/shadow and lists /root: none is there."""
    paths = [
        str(home_secret),
        str(Path.home() / ".ssh" / "id_rsa"),
        "/etc/shadow",
        "/etc/gshadow",
        str(Path.home() / ".bashrc"),
    ]
    result = run_stage(
        """
        def execute(paths):
            try:
                home = sorted(os.listdir("/root"))
            except OSError as exc:
                home = outcome(exc)
            return {"reads": {p: peek(p) for p in paths}, "root": home}
        """,
        input=paths,
    )
    assert result.ok, result.stderr
    reads = result.value["reads"]
    assert {p: r.get("error") for p, r in reads.items()} == dict.fromkeys(paths, "ENOENT")
    # /root may exist inside only as the way to an interpreter (or ipyrunner's venv
    # cache, which every sandbox sees read-only) installed under it.
    runtime = (*host_runtime_paths(sys.executable), *trusted_host_paths(settings()))
    needed = {Path(p).relative_to("/root").parts[0] for p in runtime if p.startswith("/root/")}
    listed = result.value["root"]
    assert listed == "ENOENT" or set(listed) <= needed, f"/root shows {listed}"
    assert secret not in everything_shown(result)


def test_stage_with_project_access_reads_env_files_as_empty(project: Path, secret: str) -> None:
    """A stage granted the project (fs-read, then fs-write) reads its .env files: they are empty."""
    names = [".env", ".env.local", "sub/.env.production"]
    for name in names:
        write_script(project, name, f"API_KEY={secret}\n")
    for effects in ("fs-read", "fs-write"):
        result = run_stage(
            """
            def execute(names):
                root = os.environ["PROJECT_DIRECTORY"]
                return {name: read(os.path.join(root, name)) for name in names}
            """,
            input=names,
            effects=effects,
        )
        assert result.ok, result.stderr
        assert secret not in everything_shown(result), f"{effects}: a .env leaked"
        for name in names:
            assert result.value[name] in ({"data": ""}, {"error": "EACCES"}), (effects, name)


def test_fs_write_stage_cannot_change_remove_or_copy_env_files(project: Path, secret: str) -> None:
    """An fs-write stage overwrites, renames, deletes, hard-links .env: refused, .env intact."""
    (project / ".env").write_text(f"API_KEY={secret}\n")
    result = run_stage(
        """
        def execute(_):
            os.chdir(os.environ["PROJECT_DIRECTORY"])
            return {
                "overwrite": write(".env", "API_KEY=replaced\\n"),
                "rename": attempt(os.rename, ".env", "moved.env"),
                "unlink": attempt(os.unlink, ".env"),
                "hard link": attempt(os.link, ".env", "linked.env"),
                "chmod": attempt(os.chmod, ".env", 0o666),
            }
        """,
        effects="fs-write",
    )
    assert result.ok, result.stderr
    assert_denied(result.value)
    assert (project / ".env").read_text() == f"API_KEY={secret}\n"
    assert not (project / "moved.env").exists()
    assert not (project / "linked.env").exists()
    assert files_holding(project, secret, skip={project / ".env"}) == []
    assert secret not in everything_shown(result)


def test_fs_write_stage_cannot_plant_env_file(project: Path) -> None:
    """An fs-write stage creates .env in a project that has none: it never lands on the host,
    and the user is told."""
    result = run_stage(
        """
        def execute(_):
            root = os.environ["PROJECT_DIRECTORY"]
            return {
                ".env": write(os.path.join(root, ".env"), "PROJECT_DIRECTORY=/root\\n"),
                ".env.local": write(os.path.join(root, ".env.local"), "X=1\\n"),
            }
        """,
        effects="fs-write",
    )
    assert result.ok, result.stderr
    planted = [name for name in (".env", ".env.local") if (project / name).exists()]
    assert planted == [], f"the stage planted {planted} in the project: {result.value}"
    assert "ipyrunner: kept off the host" in result.stderr
    assert ".env.local (a protected name)" in result.stderr
    assert {Path(r.path).name for r in result.refused} == {".env", ".env.local"}


def test_planted_env_cannot_make_the_kernel_run_code_outside_the_sandbox(
    project: Path, outside: Path
) -> None:
    """A stage plants .env naming its own PYTHON_EXECUTABLE: the next run never runs it on host."""
    marker = outside / "ran-on-the-host"
    evil = (
        "#!/bin/sh\n"
        f"echo ran > {marker} 2>/dev/null\n"  # only possible outside the sandbox
        f'exec {sys.executable} "$@"\n'
    )
    run_stage(
        """
        def execute(evil):
            os.chdir(os.environ["PROJECT_DIRECTORY"])
            os.makedirs("tools", exist_ok=True)
            with open("tools/python3", "w") as handle:
                handle.write(evil)
            os.chmod("tools/python3", 0o755)
            return write(".env", "PYTHON_EXECUTABLE=tools/python3\\n")
        """,
        input=evil,
        effects="fs-write",
    )
    # The user's next, harmless run (the attack may have broken it: only the host matters).
    with suppress(Exception):
        run_stage("def execute(_):\n    return 1\n")
    assert not marker.exists(), (
        "a file planted by an fs-write stage ran on the host, unsandboxed, as the kernel's "
        f"user (it wrote {marker}); .env now says: {(project / '.env').read_text()!r}"
    )


# --- writing where a stage must not ----------------------------------------------------------


@pytest.mark.parametrize("directory", ["/", "/usr", "/etc"])
def test_pure_stage_cannot_write_system_directories(directory: str) -> None:
    """A pure stage writes a file into /, /usr or /etc: refused (read-only), nothing on the host."""
    target = os.path.join(directory, unique("ipyrunner-attack"))
    try:
        value = stage_value("def execute(path):\n    return write(path)\n", input=target)
        assert not os.path.exists(target), f"{target} appeared on the host"
        assert value in {"EROFS", "EACCES", "EPERM"}, f"writing {target} inside: {value}"
    finally:
        with suppress(OSError):
            os.unlink(target)


def test_pure_stage_cannot_see_the_project(project: Path) -> None:
    """A pure stage lists and writes the project directory: it does not exist there."""
    (project / "data.txt").write_text("project data\n")
    value = stage_value(
        """
        def execute(root):
            return {
                "list": attempt(os.listdir, root),
                "read": read(os.path.join(root, "data.txt")).get("error", "ok"),
                "write": write(os.path.join(root, "new.txt")),
            }
        """,
        input=str(project),
    )
    assert value == {"list": "ENOENT", "read": "ENOENT", "write": "ENOENT"}
    assert not (project / "new.txt").exists()


def test_fs_read_stage_cannot_write_the_project(project: Path) -> None:
    """An fs-read stage reads the project, then writes, deletes and creates in it: read-only."""
    (project / "data.txt").write_text("project data\n")
    value = stage_value(
        """
        def execute(_):
            os.chdir(os.environ["PROJECT_DIRECTORY"])
            return {
                "read": read("data.txt"),
                "overwrite": write("data.txt"),
                "create": write("new.txt"),
                "unlink": attempt(os.unlink, "data.txt"),
                "mkdir": attempt(os.mkdir, "newdir"),
            }
        """,
        effects="fs-read",
    )
    assert value.pop("read") == {"data": "project data\n"}
    assert value == dict.fromkeys(("overwrite", "create", "unlink", "mkdir"), "EROFS")
    assert (project / "data.txt").read_text() == "project data\n"
    assert not (project / "new.txt").exists()
    assert not (project / "newdir").exists()


def test_fs_write_stage_writes_a_project_file(project: Path) -> None:
    """Positive control: an fs-write stage writes a normal project file, and the host sees it."""
    value = stage_value(
        """
        def execute(_):
            return write(os.path.join(os.environ["PROJECT_DIRECTORY"], "out.txt"), "hello\\n")
        """,
        effects="fs-write",
    )
    assert value == "ok"
    assert (project / "out.txt").read_text() == "hello\n"


@pytest.mark.parametrize("with_hooks", [True, False], ids=["hooks-dir", "no-hooks-dir"])
def test_fs_write_stage_cannot_plant_git_hook(project: Path, secret: str, with_hooks: bool) -> None:
    """An fs-write stage writes .git/hooks/pre-commit (or swaps .git): refused, no hook on host."""
    git = project / ".git"
    git.mkdir()
    (git / "config").write_text(f"[remote]\n\turl = https://user:{secret}@example.com/x\n")
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    if with_hooks:
        (git / "hooks").mkdir()
        (git / "hooks" / "pre-commit.sample").write_text("#!/bin/sh\n")
    result = run_stage(
        """
        def execute(_):
            os.chdir(os.environ["PROJECT_DIRECTORY"])
            hook = "#!/bin/sh\\ntouch /tmp/pwned\\n"
            return {
                "mkdir hooks": attempt(os.mkdir, ".git/hooks"),
                "write hook": write(".git/hooks/pre-commit", hook),
                "write config": write(".git/config", "[core]\\n\\thooksPath = /tmp\\n"),
                "write HEAD": write(".git/HEAD", "ref: refs/heads/evil\\n"),
                "move .git": attempt(os.rename, ".git", "old-git"),
                "move hooks": attempt(os.rename, ".git/hooks", "old-hooks"),
            }
        """,
        effects="fs-write",
    )
    assert result.ok, result.stderr
    assert_denied(result.value, DENIED | {"EEXIST"})  # EEXIST: the (masked) hooks dir is there
    assert not (git / "hooks" / "pre-commit").exists()
    assert (git / "hooks").exists() == with_hooks
    assert (git / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert secret in (git / "config").read_text()
    assert not (project / "old-git").exists()
    assert secret not in everything_shown(result)


@pytest.mark.parametrize("effects", ["fs-read", "fs-write"])
def test_stage_cannot_read_git_config(project: Path, secret: str, effects: str) -> None:
    """A stage granted the project reads .git/config (with a token in it): it is empty."""
    (project / ".git").mkdir()
    (project / ".git" / "config").write_text(f"[remote]\n\turl = https://{secret}@host/x\n")
    result = run_stage(
        """
        def execute(_):
            return read(os.path.join(os.environ["PROJECT_DIRECTORY"], ".git", "config"))
        """,
        effects=effects,
    )
    assert result.ok, result.stderr
    assert result.value == {"error": "ENOENT"}
    assert secret not in everything_shown(result)


# --- links out of writable places -----------------------------------------------------------


def test_stage_cannot_escape_through_symlink_in_private_tmp(outside: Path, secret: str) -> None:
    """A stage symlinks /etc/shadow and a host secret into its /tmp and reads them: not found."""
    secret_file = str(outside / "secret.txt")
    targets = ["/etc/shadow", secret_file, "../" * 12 + secret_file.lstrip("/")]
    result = run_stage(
        """
        def execute(targets):
            out = {}
            for number, target in enumerate(targets):
                link = f"/tmp/link{number}"
                os.symlink(target, link)
                out[target] = peek(link)
            return out
        """,
        input=targets,
    )
    assert result.ok, result.stderr
    assert result.value == {t: {"error": "ENOENT"} for t in targets}
    assert secret not in everything_shown(result)


def test_fs_write_stage_cannot_escape_through_symlink_in_project(
    project: Path, outside: Path, secret: str
) -> None:
    """A stage symlinks ../outside and /etc/shadow into the project: unreadable now, and the
    links never land on the host."""
    relative = os.path.relpath(outside / "secret.txt", project)
    code = """
        def execute(relative):
            os.chdir(os.environ["PROJECT_DIRECTORY"])
            if not os.path.lexists("to-secret"):
                os.symlink(relative, "to-secret")
                os.symlink("/etc/shadow", "to-shadow")
                os.symlink(os.path.dirname(relative), "to-outside")
            return {
                "secret": peek("to-secret"),
                "shadow": peek("to-shadow"),
                "dir": attempt(os.listdir, "to-outside"),
            }
    """
    expected = {"secret": {"error": "ENOENT"}, "shadow": {"error": "ENOENT"}, "dir": "ENOENT"}
    first = run_stage(code, input=relative, effects="fs-write")
    assert first.ok, first.stderr
    assert first.value == expected
    assert {Path(r.path).name for r in first.refused} == {"to-secret", "to-shadow", "to-outside"}
    assert not any(os.path.lexists(project / name) for name in ("to-secret", "to-outside"))
    # A link the user made that leads out cannot be granted.
    os.symlink(outside, project / "to-outside")
    with pytest.raises(PathNotAllowed):
        Stage("def execute(_):\n    return 1\n", effects="fs-read:to-outside").run(sink=NullSink())
    assert secret not in everything_shown(first)


def test_fs_write_stage_cannot_plant_git_symlink_exposing_host_etc_to_next_run(
    project: Path,
) -> None:
    """A stage plants sub/.git -> ../../…/etc; the next fs-read run must not see the host's /etc."""
    up = "../" * len(project.resolve().parts)  # from project/sub up to /
    planted = stage_value(
        """
        def execute(target):
            root = os.environ["PROJECT_DIRECTORY"]
            os.mkdir(os.path.join(root, "sub"))
            return attempt(os.symlink, target, os.path.join(root, "sub", ".git"))
        """,
        input=up + "etc",
        effects="fs-write",
    )
    later = run_stage(
        """
        def execute(_):
            root = os.environ["PROJECT_DIRECTORY"]
            return {
                "sub/.git/shadow": peek(os.path.join(root, "sub", ".git", "shadow")),
                "/etc/shadow": peek("/etc/shadow"),
            }
        """,
        effects="fs-read",
    )
    # Refusing to run is acceptable; reading the host's shadow file is not.
    if later.ok:
        readable = {path: r for path, r in later.value.items() if "error" not in r}
        assert not readable, (
            f"planting a .git symlink ({planted}) exposed host files to the next run: {readable}"
        )


def test_stage_cannot_hard_link_host_files(project: Path, outside: Path, secret: str) -> None:
    """A stage hard-links /etc/shadow, system files, a host secret and .env: all refused."""
    (project / ".env").write_text(f"API_KEY={secret}\n")
    result = run_stage(
        """
        def execute(paths):
            root = os.environ["PROJECT_DIRECTORY"]
            return {
                "shadow -> /tmp": attempt(os.link, "/etc/shadow", "/tmp/shadow"),
                "ld.so.cache -> /tmp": attempt(os.link, "/etc/ld.so.cache", "/tmp/cache"),
                "/usr/bin/env -> project": attempt(
                    os.link, "/usr/bin/env", os.path.join(root, "env-bin")
                ),
                "outside -> project": attempt(
                    os.link, paths["outside"], os.path.join(root, "secret-copy")
                ),
                ".env -> project": attempt(
                    os.link, os.path.join(root, ".env"), os.path.join(root, "env-copy")
                ),
            }
        """,
        input={"outside": str(outside / "secret.txt")},
        effects="fs-write",
    )
    assert result.ok, result.stderr
    assert_denied(result.value)
    assert sorted(p.name for p in project.iterdir()) == [".env", "scripts"]
    assert secret not in everything_shown(result)


# --- devices, setuid, namespaces ------------------------------------------------------------


def test_stage_cannot_create_device_nodes(project: Path) -> None:
    """A stage mknods a character and a block device in /tmp, /dev and the project: EPERM."""
    result = run_stage(
        """
        import stat

        def execute(_):
            out = {}
            for where in ("/tmp", "/dev", os.environ["PROJECT_DIRECTORY"]):
                out[where + " char"] = attempt(
                    os.mknod, where + "/null2", 0o666 | stat.S_IFCHR, os.makedev(1, 3)
                )
                out[where + " block"] = attempt(
                    os.mknod, where + "/disk2", 0o666 | stat.S_IFBLK, os.makedev(254, 0)
                )
            return out
        """,
        effects="fs-write",
    )
    assert result.ok, result.stderr
    # /dev is read-only (EROFS); where files can be written, mknod itself is refused.
    assert_denied(result.value, {"EPERM", "EROFS"})
    assert {result.value["/tmp char"], result.value["/tmp block"]} == {"EPERM"}
    assert not (project / "null2").exists()
    assert not (project / "disk2").exists()


def test_setuid_copy_of_a_shell_gives_no_privilege(project: Path) -> None:
    """A stage copies /bin/sh, sets its setuid bit and runs `id -u` through it: still 65534."""
    result = run_stage(
        """
        import shutil, subprocess

        def execute(_):
            out = {"uid": os.getuid()}
            for where in ("/tmp", os.environ["PROJECT_DIRECTORY"]):
                shell = os.path.join(where, "suid-sh")
                shutil.copy("/bin/sh", shell)
                out[where + " chmod"] = attempt(os.chmod, shell, 0o4755)
                done = subprocess.run(
                    [shell, "-p", "-c", "id -u; id -g"], capture_output=True, text=True
                )
                out[where + " id"] = done.stdout.split()
            return out
        """,
        effects="fs-write",
    )
    assert result.ok, result.stderr
    value = result.value
    try:
        assert value["uid"] == 65534
        for where in ("/tmp", str(project)):
            assert value[f"{where} id"] == ["65534", "65534"], value
    finally:  # never leave a setuid copy of a shell behind
        with suppress(OSError):
            (project / "suid-sh").unlink()


def test_fs_write_stage_cannot_leave_setuid_root_file_on_the_host(project: Path) -> None:
    """A stage copies a binary into the project and sets setuid/setgid: no such file on the host."""
    try:
        value = stage_value(
            """
            import shutil

            def execute(_):
                root = os.environ["PROJECT_DIRECTORY"]
                for name, mode in (("suid-env", 0o4755), ("sgid-env", 0o2755)):
                    shutil.copy("/usr/bin/env", os.path.join(root, name))
                out = {}
                for name, mode in (("suid-env", 0o4755), ("sgid-env", 0o2755)):
                    out[name] = attempt(os.chmod, os.path.join(root, name), mode)
                return out
            """,
            effects="fs-write",
        )
        privileged = {}
        for name in ("suid-env", "sgid-env"):
            info = (project / name).stat()
            if info.st_mode & (stat.S_ISUID | stat.S_ISGID):
                privileged[name] = (oct(info.st_mode), info.st_uid, info.st_gid)
        assert not privileged, (
            f"the stage left set-id files on the host (mode, uid, gid): {privileged}; "
            f"inside it said {value}"
        )
    finally:
        for name in ("suid-env", "sgid-env"):  # never leave a setuid-root binary behind
            with suppress(OSError):
                (project / name).unlink()


def test_stage_cannot_create_new_namespaces() -> None:
    """A stage calls unshare(2) for every namespace and runs `unshare -U/-r/-n/-m`: all refused."""
    result = run_stage(
        """
        import ctypes, shutil, subprocess

        FLAGS = {
            "user": 0x10000000, "mount": 0x00020000, "net": 0x40000000, "pid": 0x20000000,
            "uts": 0x04000000, "ipc": 0x08000000, "cgroup": 0x02000000,
        }

        def execute(_):
            libc = ctypes.CDLL(None, use_errno=True)
            out = {}
            for name, flag in FLAGS.items():
                ok = libc.unshare(flag) == 0
                out["unshare(" + name + ")"] = "ok" if ok else _errno.errorcode[ctypes.get_errno()]
            command = shutil.which("unshare")
            for args in (["-U"], ["-r"], ["-n"], ["-m"], ["-p", "-f"]) if command else ():
                done = subprocess.run([command, *args, "true"], capture_output=True, text=True)
                key = "unshare " + " ".join(args)
                out[key] = "ok" if done.returncode == 0 else done.stderr.strip()[-80:] or "failed"
            return out
        """,
    )
    assert result.ok, result.stderr
    assert len(result.value) >= 7
    working = {what: how for what, how in result.value.items() if how == "ok"}
    assert not working, f"new namespaces were created: {working}"


# --- network ----------------------------------------------------------------------------------


@dataclass
class TcpServer:
    port: int
    received: list[bytes] = field(default_factory=list)


@pytest.fixture
def tcp_server() -> Iterator[TcpServer]:
    """A TCP server on 127.0.0.1 in the test process: answers b'pong:' + what it got."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    server = TcpServer(listener.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                with suppress(OSError):
                    data = conn.recv(64)
                server.received.append(data)
                with suppress(OSError):
                    conn.sendall(b"pong:" + data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(2)
        listener.close()


@pytest.fixture
def udp_socket() -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 in the test process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.3)
    try:
        yield sock
    finally:
        sock.close()


TCP_CLIENT = """
import socket

def execute(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(b"ping")
            return {"reply": conn.recv(64).decode()}
    except Exception as exc:
        return {"error": outcome(exc)}
"""


def test_pure_stage_cannot_connect_to_a_host_tcp_server(tcp_server: TcpServer) -> None:
    """A pure stage connects to a TCP server listening on the host's 127.0.0.1: refused."""
    value = stage_value(TCP_CLIENT, input=tcp_server.port)
    assert value == {"error": "ECONNREFUSED"}
    assert tcp_server.received == []


def test_network_stage_cannot_reach_a_host_tcp_server(tcp_server: TcpServer) -> None:
    """effects=network is a network namespace of the stage's own: its 127.0.0.1 is not the host's.
    (More in test_network.py.)"""
    value = stage_value(TCP_CLIENT, input=tcp_server.port, effects="network")
    assert value == {"error": "ECONNREFUSED"}
    assert tcp_server.received == []


def test_host_network_stage_reaches_a_host_tcp_server(tcp_server: TcpServer) -> None:
    """Positive control: with effects=host-network the same stage reaches the host's server."""
    value = stage_value(TCP_CLIENT, input=tcp_server.port, effects="host-network")
    assert value == {"reply": "pong:ping"}
    assert tcp_server.received == [b"ping"]


UDP_CLIENT = """
import socket

def execute(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with open("/proc/net/dev") as handle:
        interfaces = sorted(line.split(":")[0].strip() for line in handle if ":" in line)
    return {
        "to host udp": attempt(sock.sendto, b"probe", ("127.0.0.1", port)),
        "to 8.8.8.8:53": attempt(sock.sendto, b"dns?", ("8.8.8.8", 53)),
        "resolve": attempt(socket.getaddrinfo, "example.com", 443),
        "interfaces": interfaces,
    }
"""


def test_pure_stage_cannot_send_udp_or_resolve_names(udp_socket: socket.socket) -> None:
    """A pure stage sends UDP to host 127.0.0.1 and 8.8.8.8:53, resolves a name: nothing out."""
    value = stage_value(UDP_CLIENT, input=udp_socket.getsockname()[1])
    with pytest.raises(TimeoutError):
        udp_socket.recvfrom(64)
    assert value["interfaces"] == ["lo"]
    assert value["to 8.8.8.8:53"] == "ENETUNREACH"
    assert value["resolve"] != "ok"


# --- environment and processes ----------------------------------------------------------------


def test_stage_cannot_read_the_kernels_secret_environment(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    """A stage looks for the kernel's env tokens in os.environ and /proc/*/environ: absent."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("GITHUB_TOKEN", secret)
    monkeypatch.setenv("PYTHONPATH", f"/nowhere/{secret}")
    result = run_stage(
        """
        import subprocess

        def execute(_):
            environ = {}
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    environ[pid] = read(f"/proc/{pid}/environ")
            child = subprocess.run(["env"], capture_output=True, text=True).stdout
            return {"os.environ": dict(os.environ), "/proc": environ, "child": child}
        """,
    )
    assert result.ok, result.stderr
    assert not {"AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "PYTHONPATH"} & set(
        result.value["os.environ"]
    )
    assert secret not in everything_shown(result)


def test_stage_sees_only_its_own_processes_and_cannot_signal_the_host() -> None:
    """A stage lists /proc and signals the test's host pid: it sees only itself, kill fails."""
    host_pid = os.getpid()
    result = run_stage(
        """
        def execute(host_pid):
            pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
            commands = {}
            for pid in pids:
                text = read(f"/proc/{pid}/cmdline").get("data", "")
                commands[str(pid)] = text.split("\\0")[0]
            return {
                "pids": pids,
                "commands": commands,
                "signal 0": attempt(os.kill, host_pid, 0),
                "SIGCONT": attempt(os.kill, host_pid, 18),
                "host cmdline": read(f"/proc/{host_pid}/cmdline").get("error", "ok"),
            }
        """,
        input=host_pid,
    )
    assert result.ok, result.stderr
    value = result.value
    assert host_pid not in value["pids"]
    assert len(value["pids"]) <= 3, value["commands"]
    assert all(
        os.path.basename(c) in ("bwrap", "python", "python3") or "python" in c
        for c in value["commands"].values()
    ), value["commands"]
    assert value["signal 0"] == "ESRCH"
    assert value["SIGCONT"] == "ESRCH"
    assert value["host cmdline"] == "ENOENT"


def test_stage_cannot_ptrace_its_parent() -> None:
    """A stage PTRACE_ATTACHes to its parent and to pid 1 of its namespace: EPERM."""
    value = stage_value(
        """
        import ctypes

        PTRACE_ATTACH, PTRACE_DETACH, WALL = 16, 17, 0x40000000

        def execute(_):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.ptrace.restype = ctypes.c_long
            libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
            out = {}
            for label, pid in (("parent", os.getppid()), ("pid 1", 1)):
                if libc.ptrace(PTRACE_ATTACH, pid, None, None) == 0:
                    os.waitpid(pid, WALL)  # let it go again, or the run hangs
                    libc.ptrace(PTRACE_DETACH, pid, None, None)
                    out[label] = "attached"
                else:
                    out[label] = _errno.errorcode[ctypes.get_errno()]
            return out
        """,
        timeout=10,
    )
    assert value == {"parent": "EPERM", "pid 1": "EPERM"}


# --- resource exhaustion ------------------------------------------------------------------------


def require_pids_cgroup() -> None:
    """Fail (never run an unbounded bomb) where `processes=` cannot be enforced.

    RLIMIT_NPROC does not bind a sandbox started by root (its uid maps to root),
    so the pids cgroup is what holds a fork bomb; without it the bomb would
    reach the host. A user other than root is held by RLIMIT_NPROC."""
    if os.geteuid() != 0:
        return
    cgroup = create_run_cgroup(64, None)
    try:
        if cgroup is None or "pids" not in cgroup.limits:
            pytest.fail(
                "no pids cgroup can be created here, so processes= is not enforced and a "
                "fork bomb in a stage would reach the host",
                pytrace=False,
            )
    finally:
        if cgroup is not None:
            cgroup.close()


def test_python_fork_bomb_is_stopped_by_the_process_limit() -> None:
    """A stage forks children that hold their pids, processes=64: EAGAIN, run ends, none left."""
    marker = unique("forkbomb")
    started = time.monotonic()
    result = run_stage(
        """
        import time

        def execute(_):
            children = 0
            while children < 2000:  # a safety valve: the limit must stop it long before
                try:
                    pid = os.fork()
                except OSError as exc:
                    return {"children": children, "error": outcome(exc)}
                if pid == 0:  # every child holds its pid
                    time.sleep(60)
                    os._exit(0)
                children += 1
            return {"children": children, "error": None}
        """,
        name=marker,
        processes=64,
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert result.ok, f"{result!r} {result.stderr[-500:]}"
    assert result.value["error"] == "EAGAIN"
    assert result.value["children"] < 64
    assert elapsed < 15, f"the fork bomb run took {elapsed:.1f} s"
    assert wait_until_gone(marker) == []
    assert os.spawnv(os.P_WAIT, "/bin/true", ["true"]) == 0  # the host can still fork


def test_a_stage_cannot_leave_its_run_cgroup_and_the_limit_still_holds() -> None:
    """Out of its cgroup, a stage would shed the process and memory limits: it looks
    for a cgroup filesystem, tries to mount its own (v2 and v1) and to write itself
    into any `tasks` or `cgroup.procs` it can reach; then forks past the limit."""
    require_pids_cgroup()
    marker = unique("cgescape")
    result = run_stage(
        """
        import ctypes
        import time

        def execute(_):
            libc = ctypes.CDLL(None, use_errno=True)
            found = []
            for line in open("/proc/self/mountinfo"):
                if " - cgroup" in line:
                    found.append(line.split()[4])
            os.makedirs("/tmp/cg", exist_ok=True)
            mounted = {}
            for fstype, data in ((b"cgroup2", None), (b"cgroup", b"pids")):
                done = libc.mount(b"none", b"/tmp/cg", fstype, 0, data)
                failed = _errno.errorcode[ctypes.get_errno()]
                mounted[fstype.decode()] = "mounted" if done == 0 else failed
            moved = []
            for top in ("/sys/fs/cgroup", "/tmp/cg", *found):
                for root, _, files in os.walk(top):
                    for name in ("tasks", "cgroup.procs"):
                        if name in files:
                            try:
                                with open(os.path.join(root, name), "w") as handle:
                                    handle.write("0")
                                moved.append(os.path.join(root, name))
                            except OSError:
                                pass
            children = 0
            while children < 500:  # a safety valve: the limit must stop it long before
                try:
                    pid = os.fork()
                except OSError as exc:
                    return {"found": found, "mounted": mounted, "moved": moved,
                            "children": children, "error": outcome(exc)}
                if pid == 0:
                    time.sleep(60)
                    os._exit(0)
                children += 1
            return {"found": found, "mounted": mounted, "moved": moved,
                    "children": children, "error": None}
        """,
        name=marker,
        processes=64,  # as the fork bomb's: a user's RLIMIT_NPROC counts all it runs
        timeout=30,
    )
    assert result.ok, f"{result!r} {result.stderr[-500:]}"
    value = result.value
    assert value["found"] == [], value
    assert value["moved"] == [], value
    assert "mounted" not in value["mounted"].values(), value
    assert (value["error"], value["children"] < 64) == ("EAGAIN", True), value
    assert wait_until_gone(marker) == []


def test_bash_fork_bomb_ends_at_the_timeout_and_leaves_nothing(
    sandbox_settings: IPyRunner,
) -> None:
    """A bash :(){ :|:& };: bomb with processes=64: killed at the timeout, nothing survives."""
    require_pids_cgroup()
    sandbox_settings.grace_period = 1
    marker = unique("bashbomb")
    started = time.monotonic()
    result = run_stage(
        "execute() {\n  bomb() { bomb | bomb & }\n  bomb\n  sleep 60\n}\n",
        "bash",
        name=marker,
        processes=64,
        timeout=3,
    )
    elapsed = time.monotonic() - started
    assert result.error is not None, result
    assert result.error.kind == "timeout", result
    assert elapsed < 3 + 1 + 1.5, f"the run took {elapsed:.1f} s"
    assert wait_until_gone(marker) == []
    assert os.spawnv(os.P_WAIT, "/bin/true", ["true"]) == 0


MEMORY_BOMB = """
def execute(_):
    chunks = []
    for _ in range(128):  # 2 GiB in 16 MiB chunks, every page touched
        chunk = bytearray(16 << 20)
        chunk[::4096] = b"x" * len(range(0, 16 << 20, 4096))
        chunks.append(chunk)
    return len(chunks)
"""


def test_memory_bomb_stage_is_reported_as_a_memory_limit(sandbox_settings: IPyRunner) -> None:
    """A stage allocates and touches 2 GiB with memory=256M: a memory-limit error, not a timeout."""
    sandbox_settings.tmp_size = "32M"  # without a cgroup, RLIMIT_AS leaves room for tmpfs
    result = run_stage(MEMORY_BOMB, memory="256M", timeout=30)
    assert result.error is not None
    assert not result.timed_out
    assert (result.error.kind, result.error.type) == ("limit", "memory limit"), result.error


def test_shared_memory_bomb_stage_is_killed_by_the_memory_limit(
    sandbox_settings: IPyRunner,
) -> None:
    """A stage touches a 2 GiB shared mapping (no RLIMIT_DATA) with memory=256M: a memory limit."""
    sandbox_settings.tmp_size = "32M"  # without a cgroup, RLIMIT_AS leaves room for tmpfs
    result = run_stage(
        """
        import mmap

        def execute(_):
            area = mmap.mmap(-1, 2 << 30)
            for offset in range(0, 2 << 30, 4096):
                area[offset] = 1
            return "survived"
        """,
        memory="256M",
        timeout=30,
    )
    assert result.error is not None
    assert not result.timed_out
    assert (result.error.kind, result.error.type) == ("limit", "memory limit"), result.error


def test_memory_bomb_script_is_reported_as_a_memory_limit(
    project: Path, sandbox_settings: IPyRunner
) -> None:
    """A script allocates and touches 2 GiB with memory=256M: limit == 'memory', not a timeout."""
    sandbox_settings.tmp_size = "32M"  # without a cgroup, RLIMIT_AS leaves room for tmpfs
    script = write_script(
        project,
        "scripts/bomb.py",
        "chunks = []\n"
        "for _ in range(128):  # 2 GiB in 16 MiB chunks, every page touched\n"
        "    chunk = bytearray(16 << 20)\n"
        "    chunk[::4096] = b'x' * len(range(0, 16 << 20, 4096))\n"
        "    chunks.append(chunk)\n",
    )
    result = run_sandboxed_script(script, memory="256M", timeout=30)
    assert result.limit == "memory", f"{result!r}\n{result.stderr[-500:]}"
    assert not result.timed_out
    assert not result.ok


FILLER = """
def fill(path, total, chunk=1 << 20):
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        block = b"x" * chunk
        while written < total:
            written += os.write(fd, block)
    except OSError as exc:
        return {"written": written, "error": outcome(exc)}
    finally:
        os.close(fd)
    return {"written": written, "error": None}
"""


def test_stage_file_in_private_tmp_stops_at_the_file_size_limit(
    sandbox_settings: IPyRunner,
) -> None:
    """A stage writes 1 GiB into its /tmp with file_size=64M: EFBIG at 64 MiB, nothing on host."""
    sandbox_settings.tmp_size = 128 << 20
    name = unique("ipyrunner-fill")
    value = stage_value(
        FILLER + "\ndef execute(name):\n    return fill('/tmp/' + name, 1 << 30)\n",
        input=name,
        file_size="64M",
        timeout=30,
    )
    assert value == {"written": 64 << 20, "error": "EFBIG"}
    assert not (Path("/tmp") / name).exists()


def test_stage_files_in_private_tmp_stop_at_the_tmpfs_size(sandbox_settings: IPyRunner) -> None:
    """A stage writes 48 MiB files into its /tmp with tmp_size=128M: ENOSPC by 128 MiB."""
    sandbox_settings.tmp_size = 128 << 20
    value = stage_value(
        FILLER
        + """
def execute(_):
    total = 0
    for number in range(10):
        done = fill(f"/tmp/part{number}", 48 << 20)
        total += done["written"]
        if done["error"]:
            return {"total": total, "error": done["error"]}
    return {"total": total, "error": None}
""",
        file_size="64M",
        timeout=30,
    )
    assert value["error"] == "ENOSPC"
    assert value["total"] <= 128 << 20


def test_stage_cannot_bypass_the_tmp_size_by_writing_elsewhere(
    sandbox_settings: IPyRunner,
) -> None:
    """A stage fills /, /etc, /dev, /dev/shm and HOME with tmp_size=128M: the root and /dev
    are read-only, the others stop by 128 MiB."""
    sandbox_settings.tmp_size = 128 << 20
    value = stage_value(
        FILLER
        + """
def execute(_):
    out = {}
    for where in ("/", "/etc", "/dev", "/dev/shm", os.environ["HOME"]):
        total = 0
        for number in range(4):  # 192 MiB, over the 128 MiB of the private tmpfs
            try:
                done = fill(os.path.join(where, f"fill{number}"), 48 << 20)
            except OSError as exc:  # refused at open: read-only
                done = {"written": 0, "error": outcome(exc)}
            total += done["written"]
            if done["error"]:
                break
        out[where] = total
        for number in range(4):
            attempt(os.unlink, os.path.join(where, f"fill{number}"))
    return out
""",
        file_size="64M",
        timeout=30,
    )
    over = {where: total for where, total in value.items() if total > 128 << 20}
    assert not over, f"bytes written past tmp_size=128M (RAM of the host): {over}"


def test_sparse_huge_file_fails_by_the_file_size_limit(project: Path) -> None:
    """A stage truncates to 100 GiB and writes at 100 GiB, in /tmp and the project: EFBIG."""
    value = stage_value(
        """
        def execute(_):
            out = {}
            for where in ("/tmp", os.environ["PROJECT_DIRECTORY"]):
                path = os.path.join(where, "sparse")
                with open(path, "wb") as handle:
                    out[where + " truncate"] = attempt(handle.truncate, 100 << 30)
                fd = os.open(path, os.O_WRONLY)
                out[where + " pwrite"] = attempt(os.pwrite, fd, b"x", 100 << 30)
                os.close(fd)
            return out
        """,
        effects="fs-write",
        file_size="64M",
    )
    assert_denied(value, {"EFBIG"})
    assert (project / "sparse").stat().st_size == 0


def test_fs_write_stage_big_file_in_the_project_stops_at_the_file_size_limit(
    project: Path,
) -> None:
    """A stage writes 1 GiB into a project file with file_size=64M: EFBIG, host file 64 MiB."""
    value = stage_value(
        FILLER
        + """
def execute(_):
    return fill(os.path.join(os.environ["PROJECT_DIRECTORY"], "big"), 1 << 30)
""",
        effects="fs-write",
        file_size="64M",
        timeout=30,
    )
    assert value == {"written": 64 << 20, "error": "EFBIG"}
    assert (project / "big").stat().st_size == 64 << 20


def test_output_flood_is_killed_at_max_output() -> None:
    """A stage prints without end with max_output=64K: killed as an output flood, truncated."""
    started = time.monotonic()
    result = run_stage(
        "def execute(_):\n    while True:\n        print('x' * 1000)\n",
        max_output="64K",
        timeout=30,
    )
    assert result.error is not None, result
    assert result.error.kind == "output", result
    assert result.truncated
    assert len(result.stdout) + len(result.stderr) <= 64 << 10
    assert time.monotonic() - started < 10


# --- processes that try to outlive the run --------------------------------------------------------


def test_grandchild_ignoring_sigterm_is_killed_after_the_timeout(
    sandbox_settings: IPyRunner,
) -> None:
    """A grandchild ignores SIGTERM and holds the pipes past the timeout: killed in time, gone."""
    sandbox_settings.grace_period = 1
    marker = unique("stubborn")
    started = time.monotonic()
    result = run_stage(
        """
        import signal, subprocess, sys, time

        STUBBORN = (
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
        )

        def execute(marker):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            subprocess.Popen([sys.executable, "-c", STUBBORN, marker])  # inherits stdout/stderr
            print("grandchild started", flush=True)
            time.sleep(60)
        """,
        input=marker,
        timeout=2,
    )
    elapsed = time.monotonic() - started
    assert "grandchild started" in result.stdout
    assert result.timed_out
    assert result.error is not None
    assert result.error.kind == "timeout"
    assert elapsed < 2 + 1 + 1, f"the run returned after {elapsed:.1f} s"
    assert wait_until_gone(marker, 0.2) == []


def test_double_forked_setsid_daemon_does_not_survive_the_run() -> None:
    """A stage double-forks a setsid() daemon with closed stdio and returns: the daemon is gone."""
    marker = unique("daemon")
    result = run_stage(
        """
        import sys, time

        def execute(marker):
            pid = os.fork()
            if pid == 0:
                os.setsid()
                if os.fork() == 0:
                    null = os.open(os.devnull, os.O_RDWR)
                    for fd in (0, 1, 2):
                        os.dup2(null, fd)
                    sleeper = [sys.executable, "-c", "import time; time.sleep(60)", marker]
                    os.execv(sys.executable, sleeper)
                os._exit(0)
            os.waitpid(pid, 0)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # return once the daemon runs
                for entry in os.listdir("/proc"):
                    if entry.isdigit() and marker in read(f"/proc/{entry}/cmdline").get("data", ""):
                        return int(entry)
                time.sleep(0.01)
            return None
        """,
        input=marker,
        timeout=20,
    )
    assert result.ok, result.stderr
    assert isinstance(result.value, int), "the daemon never started"
    assert wait_until_gone(marker, 0.2) == []


# --- the terminal and the result channel ------------------------------------------------------


def test_stage_cannot_inject_terminal_input_with_tiocsti() -> None:
    """A stage pushes a character into the terminal (TIOCSTI on /dev/tty, fds 0-2): refused."""
    value = stage_value(
        """
        import fcntl, termios

        def execute(_):
            out = {}
            for fd in (0, 1, 2):
                out[f"fd {fd}"] = attempt(fcntl.ioctl, fd, termios.TIOCSTI, b"x")
            try:
                tty = os.open("/dev/tty", os.O_RDWR)
            except OSError as exc:
                out["/dev/tty"] = outcome(exc)
            else:
                out["/dev/tty"] = attempt(fcntl.ioctl, tty, termios.TIOCSTI, b"x")
            return out
        """,
    )
    working = {what: how for what, how in value.items() if how == "ok"}
    assert not working, f"TIOCSTI worked: {working}"


FIND_RESULT_FD = """
def result_fds():
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if int(name) > 2 and target.startswith("pipe:"):
            found.append(int(name))
    return found
"""


def test_stage_closing_the_result_descriptor_gets_a_clear_failure() -> None:
    """A stage finds the result pipe via /proc/self/fd and closes it: a clear failure, no crash."""
    result = run_stage(
        FIND_RESULT_FD
        + """
def execute(_):
    fds = result_fds()
    for fd in fds:
        os.close(fd)
    print("closed", fds, flush=True)
    return "a value that cannot arrive"
""",
    )
    assert "closed [" in result.stdout
    assert "closed []" not in result.stdout
    assert not result.ok
    assert result.error is not None
    assert result.error.kind in ("exit", "decode")
    with pytest.raises((StageFailed, ResultDecodeError)) as raised:
        result.check()
    assert str(raised.value)


@pytest.mark.parametrize("then", ["returns", "exits"])
def test_stage_writing_garbage_to_the_result_descriptor_is_a_decode_error(
    tmp_path: Path, then: str
) -> None:
    """A stage writes a pickle and Python code to the result pipe: ResultDecodeError, no eval."""
    marker = tmp_path / "evaluated"
    result = run_stage(
        FIND_RESULT_FD
        + """
def execute(marker):
    payload = (
        b"cos\\nsystem\\n(S'touch " + marker.encode() + b"'\\ntR."
        + b"__import__('pathlib').Path(" + repr(marker).encode() + b").touch()\\n"
    )
    fds = result_fds()
    for fd in fds:
        os.write(fd, payload)
    if THEN == "exits":
        os._exit(0)
    return fds
""".replace("THEN", repr(then)),
        input=str(marker),
    )
    assert result.error is not None
    assert result.error.kind == "decode", result.error
    with pytest.raises(ResultDecodeError):
        result.check()
    assert not marker.exists()


# --- scripts and the other languages ------------------------------------------------------------


def test_project_script_cannot_write_outside_the_project_or_read_env(
    project: Path, outside: Path, secret: str
) -> None:
    """A project script (default fs-write) writes outside the project and reads .env: refused."""
    (project / ".env").write_text(f"API_KEY={secret}\n")
    home_target = Path.home() / unique("ipyrunner-attack")
    etc_target = Path("/etc") / unique("ipyrunner-attack")
    targets = [str(outside / "from-script.txt"), str(home_target), str(etc_target)]
    script = write_script(
        project,
        "scripts/attack.py",
        "import json, os, sys\n"
        "out = {}\n"
        "for target in sys.argv[1:]:\n"
        "    try:\n"
        "        with open(target, 'w') as handle:\n"
        "            handle.write('from the script')\n"
        "        out[target] = 'ok'\n"
        "    except OSError as exc:\n"
        "        out[target] = exc.strerror\n"
        "try:\n"
        "    with open('.env') as handle:\n"
        "        out['.env'] = handle.read()\n"
        "except OSError as exc:\n"
        "    out['.env'] = exc.strerror\n"
        "with open('inside.txt', 'w') as handle:\n"
        "    handle.write('fine')\n"
        "print(json.dumps(out))\n",
    )
    try:
        result = run_sandboxed_script(script, *targets, timeout=30)
        assert result.returncode == 0, result.stderr
        assert secret not in everything_shown(result)
        written = [t for t in targets if os.path.exists(t)]
        assert written == [], f"the script wrote on the host: {written}"
        assert (outside / "from-script.txt").name not in os.listdir(outside)
        assert (project / "inside.txt").read_text() == "fine"
    finally:
        for target in (home_target, etc_target):
            with suppress(OSError):
                target.unlink()


def test_project_script_cannot_read_the_kernels_secret_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    """A project script prints its environment and /proc/*/environ: the kernel's token is absent."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    script = write_script(
        project,
        "scripts/env.sh",
        "env\ncat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'\n",
    )
    result = run_sandboxed_script(script, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "PATH=" in result.stdout
    assert secret not in everything_shown(result)


def test_javascript_stage_cannot_read_shadow() -> None:
    """A JavaScript stage reads /etc/shadow: not found."""
    value = stage_value(
        """
        const fs = require("fs");
        function execute(input) {
          try {
            return { size: fs.readFileSync("/etc/shadow").length };
          } catch (err) {
            return { error: err.code };
          }
        }
        """,
        "js",
    )
    assert value == {"error": "ENOENT"}


def test_bash_stage_cannot_read_shadow() -> None:
    """A bash stage cats /etc/shadow: it fails."""
    value = stage_value(
        """
        execute() {
          if wc -c </etc/shadow >/dev/null 2>&1; then echo '"readable"'
          else echo '"unreadable"'; fi
        }
        """,
        "bash",
    )
    assert value == "unreadable"


def test_bash_stage_cannot_escape_with_unshare() -> None:
    """A bash stage runs `unshare -r id -u` to become root in a new user namespace: it fails."""
    value = stage_value(
        """
        execute() {
          if out=$(unshare -r id -u 2>&1); then echo "\\"became $out\\""; else echo '"refused"'; fi
        }
        """,
        "bash",
    )
    assert value == "refused"
