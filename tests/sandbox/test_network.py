"""The `network` effect: a network namespace of the run's own, wired to the outside
by pasta, from which nothing listening on the host is in reach; `host-network` as
the explicit, visible opt-in to the host's own namespace.

Attacks on the host's loopback run against servers in this test process. Traffic
to "the outside" goes to a test host the tests build themselves: a throwaway user
and network namespace (`unshare --user --map-root-user --net --mount`, which needs
no privilege, so the same tests run as root and as uid 65534) holding a veth pair
to a second namespace on TEST-NET-2 (198.51.100.2, web and DNS server). ipyrunner
itself runs inside the first namespace, which is then the "host" pasta serves; no
packet of these tests leaves the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ipyrunner import SandboxUnavailable, Stage
from ipyrunner.config import IPyRunner
from ipyrunner.process import Helper, start_helper
from ipyrunner.sandbox import network
from ipyrunner.sandbox.network import DNS_ADDRESS, NetworkTools, find_tools
from ipyrunner.sinks import NullSink, RunStatus
from tests.conftest import processes_running, unavailable, write_script
from tests.sandbox.conftest import PRELUDE, run_sandboxed_script, run_stage, stage_value


@pytest.fixture(scope="session", autouse=True)
def pasta_usable() -> None:
    try:
        find_tools()
        os.close(os.open("/dev/net/tun", os.O_RDWR))
    except (SandboxUnavailable, OSError) as exc:
        unavailable(f"the network backend is unusable here: {exc}")


# --- the host's own services ------------------------------------------------------------------


@dataclass
class HostServices:
    """Listeners of this test process, by name, and what each was sent."""

    ports: dict[str, int] = field(default_factory=dict)
    received: list[tuple[str, bytes]] = field(default_factory=list)  # what the stages sent
    foreign: list[tuple[str, bytes]] = field(default_factory=list)  # anything else that came
    sockets: list[socket.socket] = field(default_factory=list)

    def record(self, name: str, data: bytes) -> None:
        # Only what this file's clients send counts: a port the kernel handed out may
        # have been a finished test's, and a ZeroMQ socket of a kernel client still
        # reconnects to it (seen in CI: a ZMTP greeting on the 127.0.0.1 listener).
        (self.received if data.startswith(PROBES) else self.foreign).append((name, data))


PROBES = (b"ping", b"probe")


def _listen(services: HostServices, name: str, family: int, kind: int, address: str) -> None:
    sock = socket.socket(family, kind)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if address == "::" else 1)
    try:
        sock.bind((address, 0))
    except OSError:
        sock.close()  # no IPv6 here: those targets are left out
        return
    sock.settimeout(0.05)
    services.sockets.append(sock)
    services.ports[name] = sock.getsockname()[1]
    if kind == socket.SOCK_STREAM:
        sock.listen(8)
    threading.Thread(target=_serve, args=(services, name, sock), daemon=True).start()


def _serve(services: HostServices, name: str, sock: socket.socket) -> None:
    while True:
        try:
            if sock.type == socket.SOCK_DGRAM:
                data, _ = sock.recvfrom(64)
                services.record(name, data)
                continue
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            data = b""
            with suppress(OSError):
                data = conn.recv(64)
            services.record(name, data)
            with suppress(OSError):
                conn.sendall(b"pong:" + data)


@pytest.fixture
def host_services() -> Iterator[HostServices]:
    """TCP and UDP on 127.0.0.1 and ::1, and TCP on every address of the host."""
    services = HostServices()
    for name, family, address in [
        ("4", socket.AF_INET, "127.0.0.1"),
        ("6", socket.AF_INET6, "::1"),
        ("all", socket.AF_INET6, "::"),
    ]:
        _listen(services, f"tcp{name}", family, socket.SOCK_STREAM, address)
        if name != "all":
            _listen(services, f"udp{name}", family, socket.SOCK_DGRAM, address)
    if "tcpall" not in services.ports:  # a host without IPv6
        _listen(services, "tcpall", socket.AF_INET, socket.SOCK_STREAM, "0.0.0.0")
    try:
        yield services
    finally:
        for sock in services.sockets:
            sock.close()


TCP_CLIENT = """
import socket

def connect(host, port):
    if host.startswith("fe80:"):  # link-local: try it on every interface
        outcomes = [reply(f"{host}%{name}", port) for _, name in socket.if_nameindex()]
        return next((o for o in outcomes if o.startswith("reply")), "/".join(sorted(set(outcomes))))
    return reply(host, port)

def reply(host, port):
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(b"ping")
            return "reply:" + conn.recv(64).decode()
    except Exception as exc:
        return outcome(exc)

def execute(targets):
    return {f"{host} {port}": connect(host, port) for host, port in targets}
"""


def test_network_stage_cannot_reach_tcp_servers_on_the_hosts_loopback(
    host_services: HostServices,
) -> None:
    """A `network` stage connects to the host's 127.0.0.1, 127.0.0.2, ::1 and localhost:
    its own loopback answers (refused); no host server hears from it."""
    ports = host_services.ports
    targets = [["127.0.0.1", ports["tcp4"]], ["127.0.0.2", ports["tcp4"]]]
    targets += [["localhost", ports["tcp4"]], ["127.0.0.1", ports["tcpall"]]]
    if "tcp6" in ports:
        targets += [["::1", ports["tcp6"]], ["::1", ports["tcpall"]]]
    value = stage_value(TCP_CLIENT, input=targets, effects="network")
    assert set(value.values()) == {"ECONNREFUSED"}, value
    assert host_services.received == []


def host_addresses() -> list[str]:
    """Every address of this host but loopback, as `ip` lists them."""
    listed = subprocess.run(
        [network._find("ip") or "ip", "-j", "address", "show"],
        capture_output=True,
        text=True,
        check=True,
    )
    found = [a["local"] for link in json.loads(listed.stdout) for a in link.get("addr_info", [])]
    return [a for a in found if not a.startswith("127.") and a != "::1"]


def test_network_stage_cannot_reach_a_server_on_every_host_address(
    host_services: HostServices,
) -> None:
    """A server bound to all of the host's addresses (v4 and v6): a `network` stage tries
    each of them, link-local ones on every interface; none reaches it."""
    addresses = host_addresses()
    targets = [[a, host_services.ports["tcpall"]] for a in addresses]
    value = stage_value(TCP_CLIENT, input=targets, effects="network")
    assert len(value) == len(addresses)
    assert not [k for k, v in value.items() if v.startswith("reply")], value
    assert host_services.received == [], value


UDP_CLIENT = """
import socket

def execute(targets):
    out = {}
    for host, port in targets:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            out[f"{host} {port}"] = attempt(sock.sendto, b"probe", (host, port))
    return out
"""


def test_network_stage_cannot_send_udp_to_the_hosts_loopback(host_services: HostServices) -> None:
    """Datagrams to the host's 127.0.0.1 and ::1 sockets stay in the stage's own loopback."""
    ports = host_services.ports
    targets = [["127.0.0.1", ports["udp4"]]] + ([["::1", ports["udp6"]]] if "udp6" in ports else [])
    stage_value(UDP_CLIENT, input=targets, effects="network")
    # The positive control below shows the same datagram arrives within this wait.
    threading.Event().wait(0.5)
    assert host_services.received == []


def test_host_network_stage_reaches_the_loopback_and_says_so(host_services: HostServices) -> None:
    """Positive control: with host-network the same stages reach the host's servers, and
    the result says it shared the host's network: repr, HTML card and status line."""
    targets = [["127.0.0.1", host_services.ports["tcp4"]]]
    result = run_stage(TCP_CLIENT, input=targets, effects="host-network")
    assert result.value == {f"127.0.0.1 {host_services.ports['tcp4']}": "reply:pong:ping"}
    stage_value(
        UDP_CLIENT, input=[["127.0.0.1", host_services.ports["udp4"]]], effects="host-network"
    )
    threading.Event().wait(0.5)
    assert sorted(host_services.received) == [("tcp4", b"ping"), ("udp4", b"probe")]
    assert result.host_network
    assert "host network" in repr(result)
    assert "host-network" in result._repr_html_()
    assert "host network" in RunStatus.final(result, 1, 1 << 20).describe()


def test_host_network_script_result_carries_the_warning(project: Path) -> None:
    """A script with host-network says so; one with network does not."""
    write_script(project, "scripts/hello.py", "print('hello')\n")
    result = run_sandboxed_script("scripts/hello.py", effects="host-network")
    assert result.ok, result.stderr
    assert "host network" in repr(result)
    assert "host-network" in result._repr_html_()
    # With fs-write (a script's default) the sandbox sits in one more user namespace.
    plain = run_sandboxed_script("scripts/hello.py", effects="network,fs-write")
    assert plain.ok, plain.stderr
    assert "host network" not in repr(plain)
    assert "host-network" not in plain._repr_html_()


ABSTRACT_CLIENT = """
import socket

def execute(name):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        return attempt(sock.connect, "\\0" + name)
"""


def test_network_stage_cannot_reach_an_abstract_unix_socket_of_the_host() -> None:
    """Abstract Unix sockets belong to a network namespace: the host's is out of reach."""
    name = f"ipyrunner-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + name)
        server.listen(1)
        server.settimeout(0.5)
        value = stage_value(ABSTRACT_CLIENT, input=name, effects="network")
        assert value != "ok"
        with pytest.raises(TimeoutError):
            server.accept()


# --- pasta: started per run, gone with it, never a silent fallback ----------------------------


@pytest.fixture
def pastas(monkeypatch: pytest.MonkeyPatch) -> list[Helper]:
    """Every pasta the runs of a test start."""
    started: list[Helper] = []

    def spy(*args: Any, **kwargs: Any) -> Helper:
        helper = start_helper(*args, **kwargs)
        started.append(helper)
        return helper

    monkeypatch.setattr(network, "start_helper", spy)
    return started


def test_pasta_does_not_outlive_the_run(pastas: list[Helper]) -> None:
    """A run that ends, one that fails and one killed at its timeout: each run's pasta is
    killed as the run ends (the installed pasta does not notice its namespace go)."""
    assert stage_value("def execute(_):\n    return 1", effects="network") == 1
    assert not run_stage("def execute(_):\n    raise ValueError('no')", effects="network").ok
    slow = run_stage(
        "import time\ndef execute(_):\n    time.sleep(30)", effects="network", timeout=1
    )
    assert slow.timed_out
    assert len(pastas) == 3
    for pasta in pastas:
        assert pasta.proc.wait(timeout=5) == -signal.SIGKILL
        assert processes_running(str(pasta.log.parent)) == []


def test_a_pasta_failure_is_sandbox_unavailable_never_the_host_network(
    sandbox_settings: IPyRunner,
    monkeypatch: pytest.MonkeyPatch,
    pastas: list[Helper],
    host_services: HostServices,
) -> None:
    """pasta exits before wiring the namespace: the run refuses with the fix, even where
    unsandboxed runs are allowed, and the stage never ran (on the host's network it
    would have reached the loopback server)."""
    sandbox_settings.isolate = "auto"
    sandbox_settings.require_sandbox = False
    tools = find_tools()
    broken = NetworkTools(shutil.which("false") or "/bin/false", tools.nsenter, tools.ip)
    monkeypatch.setattr(network, "find_tools", lambda: broken)
    stage = Stage(PRELUDE + TCP_CLIENT, effects="network")
    with pytest.raises(SandboxUnavailable, match=r"pasta could not set up the run's network.*fix:"):
        stage.run([["127.0.0.1", host_services.ports["tcp4"]]], sink=NullSink())
    assert pastas[0].proc.wait(timeout=5) is not None
    assert host_services.received == []


def test_a_missing_pasta_is_sandbox_unavailable_with_the_install_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = network._find
    monkeypatch.setattr(network, "_find", lambda name: None if name == "pasta" else real(name))
    with pytest.raises(SandboxUnavailable, match=r"needs pasta.*apt-get install -y passt"):
        Stage("def execute(_):\n    return 1", effects="network").run(None, sink=NullSink())


# --- the outside: a test host on TEST-NET-2 ---------------------------------------------------

# In a network namespace of its own: a web server and a DNS server on 198.51.100.2.
TEST_HOST = r"""
import json, os, socket, subprocess, sys, threading

print(os.getpid(), flush=True)
sys.stdin.readline()  # our end of the veth pair is here
for argv in (["lo", "up"], ["t0", "up"]):
    subprocess.run(["ip", "link", "set", *argv], check=True)
subprocess.run(["ip", "address", "add", "198.51.100.2/24", "dev", "t0"], check=True)
web = socket.create_server(("198.51.100.2", 80))
dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dns.bind(("198.51.100.2", 53))

def serve_web():
    while True:
        conn, peer = web.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"hello from the test host")

def answer(query):
    labels, at = [], 12
    while query[at]:
        labels.append(query[at + 1 : at + 1 + query[at]].decode())
        at += 1 + query[at]
    name, qtype, end = ".".join(labels).lower(), query[at + 1 : at + 3], at + 5
    print(json.dumps({"dns": name}), flush=True)
    known = name == "testhost.ipyrunner.test"
    record = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([198, 51, 100, 2])
    found = known and qtype == b"\x00\x01"
    flags = b"\x81\x80" if known else b"\x81\x83"  # NXDOMAIN for any other name
    counts = b"\x00\x01" + (b"\x00\x01" if found else b"\x00\x00") + b"\x00\x00\x00\x00"
    return query[:2] + flags + counts + query[12:end] + (record if found else b"")

threading.Thread(target=serve_web, daemon=True).start()
print("ready", flush=True)
while True:
    query, peer = dns.recvfrom(512)
    dns.sendto(answer(query), peer)
"""

# The namespace ipyrunner runs in: pasta's "host", with loopback services, another local
# address, a route to the test host and a resolv.conf naming it. Runs each stage given.
TEST_NET = r"""
import json, os, socket, subprocess, sys, threading, time

here = os.path.dirname(os.path.abspath(__file__))
spec = json.load(open(os.path.join(here, "spec.json")))

def ip(*args):
    subprocess.run(["ip", *args], check=True)

ip("link", "set", "lo", "up")
host = subprocess.Popen(
    ["unshare", "--net", sys.executable, os.path.join(here, "test_host.py")],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
)
pid = host.stdout.readline().strip()
ip("link", "add", "h0", "type", "veth", "peer", "name", "t0", "netns", pid)
ip("address", "add", "198.51.100.1/24", "dev", "h0")
ip("address", "add", "198.51.100.3/32", "dev", "lo")
ip("link", "set", "h0", "up")
ip("route", "add", "default", "via", "198.51.100.2")
host.stdin.write("go\n")
host.stdin.flush()
assert host.stdout.readline().strip() == "ready"
queries = []
threading.Thread(
    target=lambda: [queries.append(json.loads(line)["dns"]) for line in host.stdout], daemon=True
).start()
with open(os.path.join(here, "resolv.conf"), "w") as handle:
    handle.write("nameserver 198.51.100.2\n")
resolv = os.path.join(here, "resolv.conf")
subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True)

received = []
def serve(name, sock):
    while True:
        conn, _ = sock.accept()
        with conn:
            received.append(name)
            conn.sendall(b"a service of this host")

ports = {}
for name, address in [("loopback", "127.0.0.1"), ("all", "0.0.0.0")]:
    sock = socket.create_server((address, 0))
    ports[name] = sock.getsockname()[1]
    threading.Thread(target=serve, args=(name, sock), daemon=True).start()

from ipyrunner import Stage
from ipyrunner.config import IPyRunner
from ipyrunner.sinks import NullSink

settings = IPyRunner.instance()
settings.isolate, settings.require_sandbox = "bwrap", True
settings.display, settings.retries = "none", 0
results = {}
for name, (code, effects) in spec.items():
    received.clear()
    queries.clear()
    try:
        result = Stage(code, effects=effects).run(ports, sink=NullSink())
        shown = {"value": result.value, "ok": result.ok, "isolation": result.isolation,
                 "error": repr(result.error), "stderr": result.stderr[-2000:]}
    except Exception as exc:
        shown = {"raised": repr(exc)}
    time.sleep(0.2)
    results[name] = {**shown, "received": list(received), "queries": list(queries), "ports": ports}
host.kill()
print(json.dumps(results))
"""

OUTSIDE_STAGES = {
    "by address": (
        """
import socket
def execute(ports):
    with socket.create_connection(("198.51.100.2", 80), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        return conn.recv(64).decode()
""",
        "network",
    ),
    "by name": (
        """
import socket
def execute(ports):
    address = socket.getaddrinfo("testhost.ipyrunner.test", 80, socket.AF_INET)[0][4][0]
    with socket.create_connection(("testhost.ipyrunner.test", 80), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        reply = conn.recv(64).decode()
    return {"address": address, "reply": reply, "resolv.conf": open("/etc/resolv.conf").read()}
""",
        "network",
    ),
    "attacks": (
        """
import errno, socket
def connect(host, port):
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            return "reply:" + conn.recv(64).decode()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, type(exc).__name__)
def execute(ports):
    return {
        # pasta maps the gateway to the host's loopback unless told not to (--no-map-gw)
        "gateway to loopback": connect("198.51.100.2", ports["loopback"]),
        "loopback": connect("127.0.0.1", ports["loopback"]),
        "own copy of the host address": connect("198.51.100.1", ports["all"]),
        "another host address": connect("198.51.100.3", ports["all"]),
        "as mapped IPv6": connect("::ffff:198.51.100.3", ports["all"]),
    }
""",
        "network",
    ),
    "host network": (
        """
import socket
def execute(ports):
    with socket.create_connection(("198.51.100.3", ports["all"]), timeout=2) as conn:
        return conn.recv(64).decode()
""",
        "host-network",
    ),
}


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each of OUTSIDE_STAGES run once by ipyrunner inside the test network."""
    for program in ("unshare", "mount"):
        if shutil.which(program) is None:
            unavailable(f"the test network needs {program} (apt-get install -y util-linux mount)")
    where = tmp_path_factory.mktemp("testnet")
    (where / "test_net.py").write_text(textwrap.dedent(TEST_NET))
    (where / "test_host.py").write_text(textwrap.dedent(TEST_HOST))
    (where / "spec.json").write_text(json.dumps(OUTSIDE_STAGES))
    env = {
        **os.environ,
        "PROJECT_DIRECTORY": str(where),
        "PATH": f"{os.environ['PATH']}:/usr/sbin:/sbin",
    }
    argv = ["unshare", "--user", "--map-root-user", "--net", "--mount", sys.executable]
    done = subprocess.run(
        [*argv, str(where / "test_net.py")],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        if "unshare failed" in done.stderr:
            unavailable(f"cannot make the test network here: {done.stderr.strip()[-300:]}")
        raise AssertionError(f"the test network failed:\n{done.stdout}\n{done.stderr}")
    results: dict[str, dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def _value(result: dict[str, Any]) -> Any:
    assert result.get("ok"), result
    assert result["isolation"] == "bwrap", result
    return result["value"]


def test_network_stage_reaches_a_test_host_outside(outside: dict[str, dict[str, Any]]) -> None:
    assert _value(outside["by address"]) == "hello from the test host"


def test_network_stage_resolves_names_through_pastas_dns_forwarder(
    outside: dict[str, dict[str, Any]],
) -> None:
    """The name is in no hosts file: only the test host's DNS server, which this
    network's resolv.conf names, knows it; the stage's resolv.conf names pasta."""
    value = _value(outside["by name"])
    assert value["address"] == "198.51.100.2"
    assert value["reply"] == "hello from the test host"
    assert value["resolv.conf"] == f"nameserver {DNS_ADDRESS}\n"
    assert "testhost.ipyrunner.test" in outside["by name"]["queries"]


def test_network_stage_reaches_no_service_of_its_host_by_any_address(
    outside: dict[str, dict[str, Any]],
) -> None:
    """Servers on the host's loopback and on all its addresses: the stage tries the
    gateway (which pasta could map to the loopback), 127.0.0.1, the host's address it
    got a copy of, another address of the host and that one as mapped IPv6."""
    value = _value(outside["attacks"])
    assert not [k for k, v in value.items() if v.startswith("reply")], value
    assert outside["attacks"]["received"] == []


def test_host_network_stage_reaches_the_hosts_services(
    outside: dict[str, dict[str, Any]],
) -> None:
    """Positive control for the attacks above: the host's server answers host-network."""
    assert _value(outside["host network"]) == "a service of this host"
    assert outside["host network"]["received"] == ["all"]
