from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipyrunner.errors import PathNotAllowed
from ipyrunner.paths import project_directory, resolve_in_project


@pytest.mark.parametrize(
    "path",
    ["../../etc/passwd", "/etc/passwd", "scripts/../../x.py", "scripts/../x.py", "..", ""],
)
def test_traversal_and_absolute_paths_are_rejected(project: Path, path: str) -> None:
    with pytest.raises(PathNotAllowed):
        resolve_in_project(path, project)


def test_nul_byte_is_rejected(project: Path) -> None:
    with pytest.raises(PathNotAllowed, match="NUL"):
        resolve_in_project("scripts/a\x00.py", project)


def test_symlink_leading_outside_is_rejected(project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("print('escaped')")
    (project / "scripts" / "link.py").symlink_to(outside)
    with pytest.raises(PathNotAllowed, match="outside the project"):
        resolve_in_project("scripts/link.py", project)


def test_symlinked_directory_component_leading_outside_is_rejected(
    project: Path, tmp_path: Path
) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.py").write_text("")
    (project / "lib").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PathNotAllowed):
        resolve_in_project("lib/x.py", project)


def test_dangling_symlink_to_outside_is_rejected(project: Path) -> None:
    (project / "scripts" / "dangling.py").symlink_to("/nonexistent/file.py")
    with pytest.raises(PathNotAllowed):
        resolve_in_project("scripts/dangling.py", project)


def test_symlink_inside_project_is_followed(project: Path) -> None:
    (project / "scripts" / "real.py").write_text("")
    (project / "alias.py").symlink_to(project / "scripts" / "real.py")
    assert resolve_in_project("alias.py", project) == (project / "scripts" / "real.py").resolve()


def test_plain_relative_path_resolves_inside(project: Path) -> None:
    assert resolve_in_project("scripts/clean.py", project) == project / "scripts" / "clean.py"


def test_project_directory_defaults_to_cwd(project: Path) -> None:
    assert project_directory() == project.resolve()


def test_project_directory_from_dotenv_in_a_parent(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "data").mkdir()
    (project / ".env").write_text("PROJECT_DIRECTORY=data\nSECRET=1\n")
    sub = project / "notebooks"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert project_directory() == (project / "data").resolve()


def test_environment_wins_over_dotenv(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / ".env").write_text("PROJECT_DIRECTORY=.\n")
    monkeypatch.setenv("PROJECT_DIRECTORY", str(tmp_path))
    assert project_directory() == tmp_path.resolve()


def test_edited_dotenv_takes_effect_without_reload(project: Path) -> None:
    (project / "a").mkdir()
    (project / "b").mkdir()
    (project / ".env").write_text("PROJECT_DIRECTORY=a\n")
    assert project_directory().name == "a"
    (project / ".env").write_text("PROJECT_DIRECTORY=b\n")
    assert project_directory().name == "b"


def test_project_directory_that_is_missing_is_an_error(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROJECT_DIRECTORY", str(project / "missing"))
    with pytest.raises(PathNotAllowed, match="not a directory"):
        project_directory()


def test_a_deleted_current_directory_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ipyrunner import Stage, run_script

    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(PathNotAllowed, match=r"current directory no longer exists.*fix: %cd"):
        project_directory()
    with pytest.raises(PathNotAllowed, match="current directory no longer exists"):
        Stage("def execute(x):\n    return x\n").run(1)
    with pytest.raises(PathNotAllowed, match="current directory no longer exists"):
        run_script("scripts/x.py")


_component = st.sampled_from(["a", "b", "..", ".", "link", "up", "deep", "x.py", "", "/"])


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_component, min_size=1, max_size=6), lead=st.sampled_from(["", "/", "./"]))
def test_no_accepted_path_resolves_outside_the_project(
    tmp_path: Path, parts: list[str], lead: str
) -> None:
    root = tmp_path / "prop" / "project"
    if not root.exists():
        (root / "a" / "deep").mkdir(parents=True)
        (root / "b").mkdir()
        (root / "link").symlink_to(root / "a")
        (root / "up").symlink_to(tmp_path / "prop")
        (root / "a" / "deep" / "up").symlink_to(tmp_path)
    candidate = lead + "/".join(parts)
    try:
        resolved = resolve_in_project(candidate, root)
    except PathNotAllowed:
        return
    real = Path(os.path.realpath(root / candidate))
    assert real == resolved
    assert real.is_relative_to(root.resolve())
