"""A seccomp filter for the sandbox, as classic BPF bytes for `bwrap --seccomp`.

The sandbox runs with host root's uid mapped in (so that `fs-write` can write
the user's files), which makes two things dangerous that bwrap alone does not
stop: a file in a writable tree made set-user-ID (it stays setuid-root on the
host), and ptrace-like access to the sandbox's own processes. The filter
refuses, with EPERM:

- chmod/fchmod/fchmodat/fchmodat2 with S_ISUID or S_ISGID in the mode;
- open/openat/creat/mknod/mknodat creating a file with those bits;
- ptrace, process_vm_readv/writev and pidfd_getfd;
and with ENOSYS (so libc falls back) openat2 and io_uring, whose arguments a
filter cannot inspect, and the kernel keyring (keyctl, add_key, request_key):
keyrings are not namespaced, so a stage could read the kernel's session keys
or plant keys for later runs; it sees a kernel built without keys instead.
A call through a foreign ABI (i386, x32) kills the process.
"""

from __future__ import annotations

import errno
import functools
import platform
import struct
from dataclasses import dataclass

# BPF opcodes (linux/filter.h, linux/bpf_common.h)
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_KILL_PROCESS = 0x80000000
_SETID = 0o6000
_CREATING = 0o100 | 0o20000000  # O_CREAT | __O_TMPFILE
_X32_BIT = 0x40000000


@dataclass(frozen=True)
class Abi:
    arch: int  # AUDIT_ARCH_*
    mode_arg: dict[int, int]  # syscall -> index of its mode argument
    creating: dict[int, tuple[int, int]]  # syscall -> (flags arg, mode arg)
    denied: tuple[int, ...]  # EPERM
    unsupported: tuple[int, ...]  # ENOSYS


_X86_64 = Abi(
    arch=0xC000003E,
    # chmod, fchmod, fchmodat, fchmodat2, creat, mknod, mknodat
    mode_arg={90: 1, 91: 1, 268: 2, 452: 2, 85: 1, 133: 1, 259: 2},
    creating={2: (1, 2), 257: (2, 3)},  # open, openat
    denied=(101, 310, 311, 438),  # ptrace, process_vm_readv/writev, pidfd_getfd
    # openat2, io_uring_setup/enter/register; add_key, request_key, keyctl
    unsupported=(437, 425, 426, 427, 248, 249, 250),
)
_AARCH64 = Abi(
    arch=0xC00000B7,
    mode_arg={52: 1, 53: 2, 452: 2, 33: 2},  # fchmod, fchmodat, fchmodat2, mknodat
    creating={56: (2, 3)},  # openat
    denied=(117, 270, 271, 438),
    unsupported=(437, 425, 426, 427, 217, 218, 219),
)
ABIS = {"x86_64": _X86_64, "aarch64": _AARCH64}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> tuple[int, int, int, int]:
    return (code, jt, jf, k)


def _arg(index: int) -> int:
    return 16 + 8 * index  # low 32 bits of args[index] in struct seccomp_data


def build_filter(abi: Abi) -> bytes:
    """The filter program for `abi`, as `struct sock_filter` array bytes."""
    # Each checked syscall gets a small block; a block ends by allowing the call
    # or refusing it. Blocks are laid out after the dispatch table.
    blocks: list[list[tuple[int, int, int, int]]] = []
    targets: list[tuple[int, int]] = []  # (syscall, block index)
    eperm = _insn(_RET_K, _ERRNO | errno.EPERM)
    allow = _insn(_RET_K, _ALLOW)
    for nr, index in abi.mode_arg.items():
        targets.append((nr, len(blocks)))
        blocks.append([_insn(_LD_W_ABS, _arg(index)), _insn(_JSET_K, _SETID, 0, 1), eperm, allow])
    for nr, (flags, mode) in abi.creating.items():
        targets.append((nr, len(blocks)))
        blocks.append(
            [
                _insn(_LD_W_ABS, _arg(flags)),
                _insn(_JSET_K, _CREATING, 0, 3),
                _insn(_LD_W_ABS, _arg(mode)),
                _insn(_JSET_K, _SETID, 0, 1),
                eperm,
                allow,
            ]
        )
    for nr in abi.denied:
        targets.append((nr, len(blocks)))
        blocks.append([eperm])
    for nr in abi.unsupported:
        targets.append((nr, len(blocks)))
        blocks.append([_insn(_RET_K, _ERRNO | errno.ENOSYS)])

    head = [
        _insn(_LD_W_ABS, 4),  # arch
        _insn(_JEQ_K, abi.arch, 1, 0),
        _insn(_RET_K, _KILL_PROCESS),
        _insn(_LD_W_ABS, 0),  # syscall number
        _insn(_JGE_K, _X32_BIT, 0, 1),
        _insn(_RET_K, _KILL_PROCESS),
    ]
    # Dispatch: one JEQ per target, then allow everything else.
    dispatch_len = len(targets) + 1
    starts: list[int] = []
    offset = 0
    for block in blocks:
        starts.append(offset)
        offset += len(block)
    program = list(head)
    for position, (nr, index) in enumerate(targets):
        # Distance from the instruction after this JEQ to the block's start.
        jump = (dispatch_len - position - 1) + starts[index]
        if jump > 255:
            raise ValueError("seccomp filter too large for short jumps")
        program.append(_insn(_JEQ_K, nr, jump, 0))
    program.append(allow)
    for block in blocks:
        program += block
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


@functools.cache
def host_filter() -> bytes | None:
    """The filter for this machine's ABI, or None where we have no table."""
    abi = ABIS.get(platform.machine())
    return build_filter(abi) if abi is not None else None
