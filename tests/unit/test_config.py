from __future__ import annotations

import pytest
from traitlets import TraitError
from traitlets.config import Config

from ipyrunner.config import IPyRunner, parse_seconds, parse_size
from ipyrunner.errors import InvalidOption


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("65536", 65536),
        ("64K", 65536),
        ("10M", 10 << 20),
        ("1.5k", 1536),
        ("2GiB", 2 << 30),
        (7, 7),
    ],
)
def test_sizes_parse_with_binary_units(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "10X", "-5", "0", "1e3M"])
def test_bad_sizes_are_rejected(text: str) -> None:
    with pytest.raises(InvalidOption, match="size"):
        parse_size(text)


@pytest.mark.parametrize("text", ["-1", "0", "abc", "nan", "inf"])
def test_bad_timeouts_are_rejected(text: str) -> None:
    with pytest.raises(InvalidOption, match="timeout"):
        parse_seconds(text)


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPYRUNNER_TIMEOUT", "42")
    monkeypatch.setenv("IPYRUNNER_MAX_OUTPUT", "64K")
    settings = IPyRunner()
    assert settings.timeout == 42
    assert settings.max_output == 65536


def test_explicit_configuration_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPYRUNNER_TIMEOUT", "42")
    config = Config()
    config.IPyRunner.timeout = 7.0
    assert IPyRunner(config=config).timeout == 7
    assert IPyRunner(timeout=9).timeout == 9


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPYRUNNER_RETRIES", "many")
    with pytest.raises(InvalidOption, match="IPYRUNNER_RETRIES"):
        IPyRunner()


def test_max_output_trait_accepts_size_strings() -> None:
    settings = IPyRunner()
    settings.max_output = "1M"
    assert settings.max_output == 1 << 20
    with pytest.raises(TraitError):
        settings.max_output = "lots"
