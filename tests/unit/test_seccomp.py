"""The filter is checked by decoding it; tests/sandbox runs it for real."""

from __future__ import annotations

import struct

from ipyrunner.sandbox.seccomp import ABIS, build_filter


def decode(program: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]


def run_filter(program: bytes, arch: int, nr: int, args: tuple[int, ...] = ()) -> int:
    """A tiny classic-BPF interpreter for the instructions the filter uses."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, *(list(args) + [0] * (6 - len(args))))
    insns = decode(program)
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == 0x06:
            return k
        else:
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf


X86 = ABIS["x86_64"]
ALLOW, EPERM, ENOSYS = 0x7FFF0000, 0x00050001, 0x00050026


def test_setuid_chmod_is_refused_and_plain_chmod_allowed() -> None:
    program = build_filter(X86)
    assert run_filter(program, X86.arch, 90, (0, 0o4755)) == EPERM  # chmod
    assert run_filter(program, X86.arch, 268, (0, 0, 0o2755)) == EPERM  # fchmodat
    assert run_filter(program, X86.arch, 90, (0, 0o755)) == ALLOW


def test_creating_a_setuid_file_is_refused_but_opening_is_not() -> None:
    program = build_filter(X86)
    o_creat = 0o100
    assert run_filter(program, X86.arch, 257, (0, 0, o_creat, 0o4755)) == EPERM  # openat
    assert run_filter(program, X86.arch, 257, (0, 0, o_creat, 0o644)) == ALLOW
    # Without O_CREAT the mode register is garbage and must not matter.
    assert run_filter(program, X86.arch, 257, (0, 0, 0, 0o7777)) == ALLOW


def test_ptrace_is_refused_and_uninspectable_calls_are_unsupported() -> None:
    program = build_filter(X86)
    assert run_filter(program, X86.arch, 101) == EPERM
    assert run_filter(program, X86.arch, 437) == ENOSYS  # openat2
    assert run_filter(program, X86.arch, 425) == ENOSYS  # io_uring_setup
    assert run_filter(program, X86.arch, 0) == ALLOW  # read


def test_foreign_abis_are_killed() -> None:
    program = build_filter(X86)
    kill = 0x80000000
    assert run_filter(program, 0x40000003, 90) == kill  # i386
    assert run_filter(program, X86.arch, 0x40000000 | 90) == kill  # x32


def test_every_abi_builds() -> None:
    for abi in ABIS.values():
        assert len(build_filter(abi)) % 8 == 0


AARCH64 = ABIS["aarch64"]
# (add_key, request_key, keyctl) by ABI: x86_64's own table, aarch64's asm-generic one.
KEYRING_CALLS = {"x86_64": (248, 249, 250), "aarch64": (217, 218, 219)}


def test_the_kernel_keyring_is_unsupported_on_every_abi() -> None:
    for machine, calls in KEYRING_CALLS.items():
        abi = ABIS[machine]
        program = build_filter(abi)
        for nr in calls:
            assert run_filter(program, abi.arch, nr) == ENOSYS, (machine, nr)
        # KEYCTL_GET_KEYRING_ID of the session keyring: refused whatever the arguments.
        assert run_filter(program, abi.arch, calls[2], (0, 0xFFFFFFFD)) == ENOSYS


def test_neighbours_of_the_keyring_calls_stay_allowed() -> None:
    # x86_64 247 waitid, 251 ioprio_set; aarch64 216 mremap, 220 clone.
    assert run_filter(build_filter(X86), X86.arch, 247) == ALLOW
    assert run_filter(build_filter(X86), X86.arch, 251) == ALLOW
    assert run_filter(build_filter(AARCH64), AARCH64.arch, 216) == ALLOW
    assert run_filter(build_filter(AARCH64), AARCH64.arch, 220) == ALLOW
