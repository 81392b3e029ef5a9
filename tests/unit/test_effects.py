from __future__ import annotations

import pytest

from ipyrunner.effects import PURE, Effects, parse_effects
from ipyrunner.errors import InvalidOption, PathNotAllowed


@pytest.mark.parametrize("spec", [None, "", "pure", [], ["pure"]])
def test_no_effects_is_pure(spec: str | list[str] | None) -> None:
    assert parse_effects(spec) == PURE


def test_effects_parse_paths_and_network() -> None:
    effects = parse_effects("network, fs-read:data, fs-write:out/, fs-read")
    assert effects == Effects(network=True, read=("", "data"), write=("out",))
    assert effects.canonical() == ["fs-read", "fs-read:data", "fs-write:out", "network"]


def test_a_path_granted_for_writing_needs_no_read_grant() -> None:
    assert parse_effects("fs-read:data,fs-write:data").read == ()


@pytest.mark.parametrize(
    "spec",
    ["netwrk", "fs-exec", "network:1", "pure:x", "fs-read:", "FS-READ", "net work"],
)
def test_unknown_or_malformed_effects_fail_closed(spec: str) -> None:
    with pytest.raises(InvalidOption):
        parse_effects(spec)


def test_canonical_form_is_order_independent() -> None:
    assert (
        parse_effects("fs-write,network").canonical()
        == parse_effects(["network", "fs-write"]).canonical()
    )


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("fs-write:/", "has an absolute path"),
        ("fs-read://", "has an absolute path"),
        ("fs-read:/etc", "has an absolute path"),
        ("fs-write:///tmp", "has an absolute path"),
        ("fs-read:a/../b", "has '..' in its path"),
        ("fs-read:..", "has '..' in its path"),
        ("fs-write:data/..", "has '..' in its path"),
        ("fs-read:a\x00b", "has a NUL byte in its path"),
        ("fs-read:.", "names the whole project"),
        ("fs-write:./", "names the whole project"),
        ("fs-write:", "has an empty path"),
    ],
)
def test_odd_effect_paths_are_refused_never_the_whole_project(spec: str, problem: str) -> None:
    name = spec.partition(":")[0]
    with pytest.raises(InvalidOption) as caught:
        parse_effects(spec)
    message = str(caught.value)
    assert message == (
        f"effect {spec!r} {problem}: give {name}:PATH with PATH relative to the project "
        f"directory and inside it, or {name} alone for the whole project"
    )
    assert "\n" not in message


@pytest.mark.parametrize(
    ("spec", "path"),
    [("fs-read:data/", "data"), ("fs-read:./data", "data"), ("fs-read:a//b/./c/", "a/b/c")],
)
def test_relative_effect_paths_are_normalised(spec: str, path: str) -> None:
    assert parse_effects(spec).read == (path,)


def test_host_network_is_its_own_effect() -> None:
    effects = parse_effects("host-network, fs-read")
    assert effects == Effects(host_network=True, read=("",))
    assert not effects.network
    assert effects.canonical() == ["fs-read", "host-network"]
    assert str(effects) == "fs-read,host-network"


def test_host_network_changes_the_identity() -> None:
    assert parse_effects("host-network").canonical() != parse_effects("network").canonical()


@pytest.mark.parametrize("spec", ["network,host-network", ["host-network", "network"]])
def test_network_and_host_network_exclude_each_other(spec: str | list[str]) -> None:
    with pytest.raises(InvalidOption, match="network and host-network exclude each other"):
        parse_effects(spec)


@pytest.mark.parametrize(
    "spec",
    ["host-network:1", "host-network:", "network:", "net", "hostnetwork", "host_network"],
)
def test_other_network_spellings_fail_closed(spec: str) -> None:
    with pytest.raises(InvalidOption, match="host-network"):
        parse_effects(spec)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"network": True, "host_network": True},
        {"read": ("/",)},
        {"write": ("/etc",)},
        {"read": ("a/../b",)},
        {"write": ("data/",)},
        {"read": (".",)},
    ],
)
def test_a_hand_built_effects_value_holds_to_the_same_rules(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidOption):
        Effects(**kwargs)  # type: ignore[arg-type]


def test_a_refused_effect_path_is_both_a_bad_option_and_a_path_not_allowed() -> None:
    # InvalidOption: the magics turn it into a UsageError; PathNotAllowed: what
    # the one resolver raises for the same path given to %runscript.
    with pytest.raises(InvalidOption) as caught:
        parse_effects("fs-read:../outside")
    assert isinstance(caught.value, PathNotAllowed)
