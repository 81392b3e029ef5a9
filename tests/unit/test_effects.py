from __future__ import annotations

import pytest

from ipyrunner.effects import PURE, Effects, parse_effects
from ipyrunner.errors import InvalidOption


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
