"""The `network` effect: the run's own network namespace, wired to the outside by
pasta (user-mode networking), with none of the host's own addresses in reach."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..effects import Effects
from ..environment import MINIMAL_PATH, find_program
from ..errors import SandboxUnavailable
from ..process import Helper, Limits, run_process, start_helper
from .policy import Mount, NetworkMode
from .watch import open_pidfd, sandbox_pid, wait_gone

# What the sandbox's resolv.conf names: pasta forwards DNS sent there to the
# host's resolver (loopback ones such as systemd-resolved's included).
DNS_ADDRESS = "169.254.1.1"
FIX = "apt-get install -y passt iproute2 util-linux"
TUN_FIX = "make /dev/net/tun readable and writable by this user (chmod 0666, its usual mode)"
_NS_GET_USERNS = 0xB701  # ioctl(2) on a namespace: the user namespace that owns it
_SETUP_TIMEOUT = 10.0
# After the lookup of the namespace's own addresses (rule 0), before its routes.
_RULE = "rule add pref 100 to"


def network_mode(effects: Effects) -> NetworkMode:
    if effects.host_network:
        return "host"
    return "user" if effects.network else "none"


@dataclass(frozen=True)
class NetworkTools:
    pasta: str
    nsenter: str
    ip: str


def find_tools() -> NetworkTools:
    """pasta, and nsenter and ip to keep the host's addresses out; or why not."""
    found = {name: _find(name) for name in ("pasta", "nsenter", "ip")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise SandboxUnavailable(
            f"effect network (a network namespace of the run's own) needs "
            f"{', '.join(missing)}, not found here; fix: {FIX}"
        )
    return NetworkTools(*(path for path in found.values() if path is not None))


def _find(name: str) -> str | None:
    return find_program(name) or shutil.which(name, path="/usr/sbin:/sbin")


def resolver_mounts(mode: NetworkMode, root: Path) -> list[Mount]:
    """A resolv.conf naming pasta's DNS forwarder, for a `network` run."""
    if mode != "user":
        return []
    path = root / "resolv.conf"
    path.write_text(f"nameserver {DNS_ADDRESS}\n")
    return [Mount("ro", "/etc/resolv.conf", str(path))]


def pasta_argv(pasta: str, netns: str, pidfile: Path, userns: str | None) -> list[str]:
    """pasta for the namespace `netns`: the outside only, no port forwarded either
    way, the gateway not mapped to the host; `userns` None when running as root."""
    argv = [pasta, "--config-net", "--no-map-gw", "-t", "none", "-u", "none", "-T", "none"]
    argv += ["-U", "none", "--dns-forward", DNS_ADDRESS, "--quiet", "--foreground"]
    argv += ["--pid", str(pidfile), "--netns", netns]
    # As root, pasta keeps the capabilities to enter the namespace without its
    # owner's user namespace, and would drop to nobody (losing them) by default.
    return [*argv, "--runas", "0:0"] if userns is None else [*argv, "--userns", userns]


def host_addresses() -> list[str]:
    """The host's own addresses, loopback aside, as networks. pasta would connect
    to them on the host, where every service bound to all addresses listens."""
    found: set[str] = set()
    try:
        last = ""
        with open("/proc/net/fib_trie") as trie:
            for line in trie:
                entry = line.strip()
                if entry.startswith("|--"):
                    last = entry[3:].strip()
                elif entry.endswith("host LOCAL") and last:
                    found.add(f"{last}{entry.split()[0]}")
        inet6 = Path("/proc/net/if_inet6")  # absent on a host without IPv6
        for line in inet6.read_text().splitlines() if inet6.exists() else []:
            found.add(f"{ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))}/128")
    except (OSError, ValueError) as exc:
        raise SandboxUnavailable(f"cannot list the host's own addresses: {exc}") from None
    networks = {ipaddress.ip_network(a, strict=False) for a in found}
    return sorted(str(n) for n in networks if not n.is_loopback)


class UserNetwork:
    """A `run_process` startup hook: bwrap reports its sandbox's pid on one pipe
    and waits on another; meanwhile pasta is attached to the sandbox's network
    namespace and the host's addresses are refused there. pasta ends with the run."""

    def __init__(self, tools: NetworkTools, workdir: Path) -> None:
        self.tools = tools
        self.workdir = workdir
        self.info_read, self.info_write = os.pipe()
        self.block_read, self.block_write = os.pipe()
        self.opened = [self.info_read, self.info_write, self.block_read, self.block_write]
        self.pasta: Helper | None = None
        self.pidfd: int | None = None  # the sandbox's pid 1, to know when all of it is gone

    @property
    def pass_fds(self) -> tuple[int, int]:
        """bwrap's --info-fd and --block-fd."""
        return (self.info_write, self.block_read)

    def started(self, pid: int) -> None:
        self._close(self.info_write, self.block_read)  # the child holds its copies
        deadline = time.monotonic() + _SETUP_TIMEOUT
        child = sandbox_pid(self.info_read, deadline)
        self.pidfd = open_pidfd(child)
        if child is None:
            return  # bwrap failed before its sandbox existed: the run reports why
        netns = f"/proc/{child}/ns/net"
        try:
            # Whoever enters the namespaces must find bwrap's user mapping in place.
            _wait_for_uid_map(child, deadline)
            net = self._open(os.open(netns, os.O_RDONLY | os.O_CLOEXEC))
        except (FileNotFoundError, ProcessLookupError):
            return  # the sandbox is gone already: the run reports why
        # The namespace's owner, not the sandbox's own (bwrap nests one more).
        owner = self._open(fcntl.ioctl(net, _NS_GET_USERNS))
        userns = None if os.geteuid() == 0 else f"/proc/{os.getpid()}/fd/{owner}"
        pidfile = self.workdir / "pasta.pid"
        argv = pasta_argv(self.tools.pasta, netns, pidfile, userns)
        self.pasta = start_helper(
            argv, env={"PATH": MINIMAL_PATH}, cwd="/", log=self.workdir / "pasta.log"
        )
        self._refuse_host_addresses(net, owner)
        _wait_until_ready(self.pasta, pidfile, deadline)
        os.write(self.block_write, b"\n")
        self._close(self.block_write)

    def _refuse_host_addresses(self, net: int, owner: int) -> None:
        # Policy rules, not routes: a route would not hold for a link-local
        # address given with its interface (fe80::1%eth0).
        addresses = host_addresses()
        for family in ("-4", "-6"):
            chosen = [a for a in addresses if (":" in a) == (family == "-6")]
            if chosen:
                self._ip(net, owner, family, "".join(f"{_RULE} {a} prohibit\n" for a in chosen))

    def _ip(self, net: int, owner: int, family: str, batch: str) -> None:
        argv = [self.tools.nsenter, f"--user=/proc/self/fd/{owner}", f"--net=/proc/self/fd/{net}"]
        argv += ["--preserve-credentials", self.tools.ip, family, "-batch", "-"]
        done = run_process(
            argv,
            env={"PATH": MINIMAL_PATH},
            cwd="/",
            limits=Limits(timeout=_SETUP_TIMEOUT),
            stdin=batch.encode(),
            pass_fds=(net, owner),
        )
        if not done.ok:
            said = (done.stderr or done.stdout).strip()[-500:] or f"exit {done.returncode}"
            raise SandboxUnavailable(
                f"cannot keep the host's own addresses out of the run's network: {said}; fix: {FIX}"
            )

    def _open(self, fd: int) -> int:
        self.opened.append(fd)
        return fd

    def _close(self, *fds: int) -> None:
        for fd in fds:
            if fd in self.opened:
                self.opened.remove(fd)
                os.close(fd)

    def wait_gone(self) -> None:
        wait_gone(self.pidfd)
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def close(self) -> None:
        """Kill pasta (the installed one may not notice its namespace go) and close
        every pipe; the run's processes are gone by now."""
        self._close(*self.opened)
        if self.pasta is not None:
            self.pasta.kill()
            self.pasta = None


def _wait_for_uid_map(pid: int, deadline: float) -> None:
    # bwrap's child writes it right after its clone, while its parent reports the pid.
    while not Path(f"/proc/{pid}/uid_map").read_text().strip():
        if time.monotonic() > deadline:
            raise SandboxUnavailable("bubblewrap did not map its sandbox's user within 10 s")
        time.sleep(0.0005)


def _wait_until_ready(pasta: Helper, pidfile: Path, deadline: float) -> None:
    # In the foreground pasta writes its pid file once the namespace is wired.
    while not _written(pidfile):
        if not pasta.running():
            said = pasta.output() or "no message"
            fix = TUN_FIX if "tun" in said.lower() else f"{FIX}; python -m ipyrunner doctor"
            raise SandboxUnavailable(
                f"pasta could not set up the run's network: {said}; fix: {fix}"
            )
        if time.monotonic() > deadline:
            raise SandboxUnavailable(
                f"pasta did not set up the run's network within 10 s; fix: {FIX}"
            )
        time.sleep(0.001)


def _written(pidfile: Path) -> bool:
    try:
        return pidfile.read_bytes().endswith(b"\n")
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def user_network(effects: Effects, workdir: Path) -> Iterator[UserNetwork | None]:
    """The startup hook of a `network` run (None for any other), closed afterwards."""
    if network_mode(effects) != "user":
        yield None
        return
    network = UserNetwork(find_tools(), workdir)
    try:
        yield network
    finally:
        network.close()
