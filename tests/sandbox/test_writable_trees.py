"""Attacks on writable grants: protected files by construction, nothing a run wrote trusted.

Each test is one class of attack from a run granted `fs-write`; the assertion is
about the host afterwards (what survived, what landed, what ran) and what the
user was told. Runs write into an overlay; only the commit filter's output
lands on the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ipyrunner import run_script
from ipyrunner.config import IPyRunner
from ipyrunner.errors import InvalidOption, SandboxUnavailable
from ipyrunner.sandbox.commit import MAX_DEPTH
from ipyrunner.sinks import NullSink
from tests.conftest import write_script
from tests.sandbox.conftest import everything_shown, run_sandboxed_script, run_stage, stage_value


def make_repository(path: Path, config: str = "[core]\n\tbare = false\n") -> Path:
    """A minimal git directory at `path` (what `git init` makes, without git)."""
    (path / "objects").mkdir(parents=True)
    (path / "refs" / "heads").mkdir(parents=True)
    (path / "hooks").mkdir()
    (path / "HEAD").write_text("ref: refs/heads/main\n")
    (path / "config").write_text(config)
    return path


def refused_names(result: object) -> set[str]:
    return {Path(r.path).name for r in getattr(result, "refused", ())}


# --- 1. cleanup never deletes what the run could not touch ----------------------------------


def test_renaming_a_directory_keeps_its_masked_env_and_nested_repository(project: Path) -> None:
    """A run renames services/ (holding services/api/.env) and vendor/ (holding a nested
    repository): the secret and the repository's history are still there afterwards."""
    (project / "services" / "api").mkdir(parents=True)
    (project / "services" / "api" / ".env").write_text("TOKEN=real\n")
    (project / "services" / "main.py").write_text("print(1)\n")
    make_repository(project / "vendor" / "lib" / ".git")
    (project / "vendor" / "lib" / "code.c").write_text("int x;\n")
    result = run_stage(
        """
        import shutil
        def execute(_):
            root = os.environ["PROJECT_DIRECTORY"]
            out = {}
            for name in ("services", "vendor"):
                source, target = os.path.join(root, name), os.path.join(root, name + "2")
                out[name] = attempt(shutil.move, source, target)
                out[name + " rmtree"] = attempt(shutil.rmtree, os.path.join(root, name))
            return out
        """,
        effects="fs-write",
    )
    assert result.ok, result.stderr
    assert (project / "services" / "api" / ".env").read_text() == "TOKEN=real\n"
    assert (project / "vendor" / "lib" / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (project / "vendor" / "lib" / ".git" / "config").exists()
    # What the run could copy did land; the secret's copy did not.
    assert (project / "services2" / "main.py").read_text() == "print(1)\n"
    assert not (project / "services2" / "api" / ".env").exists()


def test_deleting_the_project_spares_protected_files(project: Path) -> None:
    """A run deletes everything it can: ordinary files go, protected ones stay."""
    (project / ".env").write_text("A=1\n")
    (project / "data" / ".git").mkdir(parents=True)
    (project / "data" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "data" / "rows.csv").write_text("a,b\n")
    result = run_stage(
        """
        import shutil
        def execute(_):
            root = os.environ["PROJECT_DIRECTORY"]
            for name in os.listdir(root):  # as rm -rf does: on past what cannot go
                path = os.path.join(root, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    attempt(os.unlink, path)
            return sorted(os.listdir(root))
        """,
        effects="fs-write",
    )
    assert result.ok, result.stderr
    assert not (project / "data" / "rows.csv").exists()
    assert (project / ".env").read_text() == "A=1\n"
    assert (project / "data" / ".git" / "HEAD").exists()


# --- 2. planted metadata at a vacated path --------------------------------------------------


def test_planted_git_with_fsmonitor_where_a_repository_stood_does_not_land(
    project: Path, tmp_path: Path
) -> None:
    """A run moves a repository away and creates its own .git (core.fsmonitor set) where the
    old one stood: the user's next `git status` there runs nothing of the run's, and the
    original repository is intact."""
    make_repository(project / "repo" / ".git")
    (project / "repo" / "code.py").write_text("x = 1\n")
    marker = tmp_path / "fsmonitor-ran"
    result = run_stage(
        """
        import shutil
        def execute(marker):
            root = os.environ["PROJECT_DIRECTORY"]
            repo = os.path.join(root, "repo")
            moved = attempt(shutil.move, repo, os.path.join(root, "moved"))
            shutil.rmtree(repo, ignore_errors=True)
            git = os.path.join(repo, ".git")
            for sub in ("objects", "refs"):
                attempt(os.makedirs, os.path.join(git, sub), 0o755, True)
            write(os.path.join(git, "HEAD"), "ref: refs/heads/main\\n")
            config = f"[core]\\n\\tfsmonitor = touch {marker}\\n"
            return {"moved": moved, "config": write(os.path.join(git, "config"), config)}
        """,
        input=str(marker),
        effects="fs-write",
    )
    assert result.ok, result.stderr
    git = project / "repo" / ".git"
    assert "fsmonitor" not in (git / "config").read_text()
    assert (git / "HEAD").read_text() == "ref: refs/heads/main\n"
    if shutil.which("git"):
        subprocess.run(["git", "status"], cwd=project / "repo", capture_output=True, check=False)
    assert not marker.exists()


# --- 3. no directory name is skipped ---------------------------------------------------------


@pytest.mark.parametrize("directory", ["node_modules", "__pycache__", ".mypy_cache", "a/b/c"])
def test_env_under_any_directory_is_masked_and_none_can_be_planted_there(
    project: Path, directory: str
) -> None:
    """A .env under a directory an old scan skipped by name is masked for fs-read, and a run
    cannot put one there either."""
    (project / directory).mkdir(parents=True)
    (project / directory / ".env").write_text("SECRET=under-a-skipped-name\n")
    value = stage_value(
        """
        def execute(directory):
            root = os.environ["PROJECT_DIRECTORY"]
            return {
                "read": read(os.path.join(root, directory, ".env")),
                "plant": write(os.path.join(root, directory, "pkg", ".env.local")),
            }
        """,
        input=directory,
        effects="fs-write",
    )
    assert "data" not in value["read"]
    assert not (project / directory / "pkg" / ".env.local").exists()
    later = stage_value(
        "def execute(d):\n    return read(os.path.join(os.environ['PROJECT_DIRECTORY'], d, '.env'))\n",  # noqa: E501
        input=directory,
        effects="fs-read",
    )
    assert "data" not in later


# --- 4. no scan to overflow, blind or outrun ------------------------------------------------


def test_many_entries_do_not_let_a_planted_env_through(project: Path) -> None:
    """A run creates many entries and hides .env files among them: none lands, all else
    does, and the next run works. (No count is too many: the commit has no cap to pass.)"""
    result = run_stage(
        """
        def execute(_):
            root = os.path.join(os.environ["PROJECT_DIRECTORY"], "flood")
            for i in range(21):
                d = os.path.join(root, f"d{i}")
                os.makedirs(d)
                for j in range(1000):
                    os.close(os.open(os.path.join(d, f"f{j}"), os.O_CREAT | os.O_WRONLY))
            write(os.path.join(root, "d20", ".env"), "PYTHON_EXECUTABLE=/tmp/x\\n")
            return write(os.path.join(root, ".env.local"), "X=1\\n")
        """,
        effects="fs-write",
        timeout=240,
    )
    assert result.ok, result.stderr
    names = [n for _, _, files in os.walk(project / "flood") for n in files]
    assert len(names) == 21_000
    assert not [n for n in names if n.startswith(".env")]
    assert stage_value("def execute(_):\n    return 2\n", effects="fs-read") == 2


def test_a_tree_deeper_than_the_commit_allows_is_refused_and_later_runs_work(
    project: Path,
) -> None:
    """A run nests directories past Python's recursion limit with a .env at the bottom:
    the depth past the cap is refused, the kernel is fine, the next run on the tree works."""
    result = run_stage(
        """
        def execute(levels):
            os.chdir(os.environ["PROJECT_DIRECTORY"])
            os.mkdir("deep")
            os.chdir("deep")
            for _ in range(levels):
                os.mkdir("d")
                os.chdir("d")
            return write(".env", "PROJECT_DIRECTORY=/\\n")
        """,
        input=1200,
        effects="fs-write",
        timeout=120,
    )
    assert result.ok, result.stderr
    assert any(f"deeper than {MAX_DEPTH}" in r.reason for r in result.refused)
    assert not any(name == ".env" for _, _, names in os.walk(project / "deep") for name in names)
    assert stage_value("def execute(_):\n    return 7\n", effects="fs-write") == 7


def test_an_unlistable_directory_does_not_hide_a_planted_env(project: Path) -> None:
    """A run plants .env in a directory it then makes unreadable and untraversable."""
    result = run_stage(
        """
        def execute(_):
            d = os.path.join(os.environ["PROJECT_DIRECTORY"], "locked")
            os.mkdir(d)
            write(os.path.join(d, ".env"), "A=1\\n")
            write(os.path.join(d, "kept.txt"), "kept\\n")
            os.chmod(d, 0)
            return "ok"
        """,
        effects="fs-write",
    )
    assert result.ok, result.stderr
    locked = project / "locked"
    locked.chmod(0o700)
    assert (locked / "kept.txt").read_text() == "kept\n"
    assert not (locked / ".env").exists()
    assert ".env" in refused_names(result)


# --- 5. repositories by content, whatever their name -----------------------------------------


def test_a_bare_repository_made_by_a_run_does_not_land(project: Path) -> None:
    """A run makes a directory git would open (HEAD, objects/, refs/, a config with
    core.fsmonitor) under an innocent name: refused, and the user is told."""
    result = run_stage(
        """
        def execute(_):
            d = os.path.join(os.environ["PROJECT_DIRECTORY"], "innocent")
            for sub in ("objects", "refs/heads"):
                os.makedirs(os.path.join(d, sub))
            write(os.path.join(d, "HEAD"), "ref: refs/heads/main\\n")
            return write(os.path.join(d, "config"), "[core]\\n\\tfsmonitor = id\\n")
        """,
        effects="fs-write",
    )
    assert result.ok, result.stderr
    assert not (project / "innocent").exists()
    assert "innocent (would make a directory git opens as a repository)" in result.stderr


def test_completing_a_repository_in_an_existing_directory_is_refused(project: Path) -> None:
    """objects/ and refs/ exist in the project; the run adds HEAD: that would make a repo."""
    (project / "store" / "objects").mkdir(parents=True)
    (project / "store" / "refs").mkdir()
    result = run_stage(
        """
        def execute(_):
            head = os.path.join(os.environ["PROJECT_DIRECTORY"], "store", "HEAD")
            return write(head, "ref: refs/heads/x\\n")
        """,
        effects="fs-write",
    )
    assert result.ok, result.stderr
    assert not (project / "store" / "HEAD").exists()


def test_an_existing_bare_repository_is_hidden_and_cannot_get_hooks(project: Path) -> None:
    make_repository(project / "mirror.git", "[remote]\n\turl = https://token@host/x\n")
    value = stage_value(
        """
        def execute(_):
            d = os.path.join(os.environ["PROJECT_DIRECTORY"], "mirror.git")
            return {
                "config": read(os.path.join(d, "config")),
                "hook": write(os.path.join(d, "hooks", "post-update"), "#!/bin/sh\\nid\\n"),
            }
        """,
        effects="fs-write",
    )
    assert value["config"] == {"error": "ENOENT"}
    assert value["hook"] != "ok"
    assert not (project / "mirror.git" / "hooks" / "post-update").exists()
    assert "token" in (project / "mirror.git" / "config").read_text()


# --- 6. nothing a run wrote is imported or trusted ------------------------------------------


def test_a_module_planted_in_the_kernels_directory_cannot_shadow_an_installed_one(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run writes tenacity.py, json.py and an ipyrunner/ package where the kernel imports
    from (its working directory, '' on sys.path): none lands; an ordinary module does."""
    monkeypatch.setattr(sys, "path", ["", *sys.path])
    marker = tmp_path / "imported"
    result = run_stage(
        """
        def execute(marker):
            root = os.environ["PROJECT_DIRECTORY"]
            body = f"open({marker!r}, 'w').close()\\n"
            out = {}
            for name in ("tenacity.py", "json.py", "ipyrunner/__init__.py", "my_helpers.py"):
                os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
                out[name] = write(os.path.join(root, name), body)
            return out
        """,
        input=str(marker),
        effects="fs-write",
    )
    assert result.ok, result.stderr
    assert (project / "my_helpers.py").exists()
    for name in ("tenacity.py", "json.py", "ipyrunner"):
        assert not (project / name).exists(), name
    subprocess.run(
        [sys.executable, "-c", "import tenacity, json"], cwd=project, check=True, timeout=60
    )
    assert not marker.exists()


def test_the_project_interpreter_stays_read_only_for_every_language(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PYTHON_EXECUTABLE is a venv inside the project: bash stages and scripts with fs-write
    can neither plant a .pth in it nor rewrite its pyvenv.cfg."""
    venv = project / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    monkeypatch.setenv("PYTHON_EXECUTABLE", ".venv/bin/python")
    config_before = (venv / "pyvenv.cfg").read_text()
    site = next(venv.glob("lib/python3*/site-packages"))
    result = run_stage(
        f"""execute() {{
  echo 'import os; os.system("id")' > {site}/evil.pth 2>/dev/null && echo planted >&2
  echo 'home = /tmp' > {venv}/pyvenv.cfg 2>/dev/null && echo rewrote >&2
  echo '"done"'
}}
""",
        "bash",
        effects="fs-write",
    )
    assert result.ok, result.stderr
    script = write_script(
        project, "scripts/plant.py", f"open({str(site / 'evil2.pth')!r}, 'w').write('x')\n"
    )
    run_sandboxed_script(script, effects="fs-write")
    assert not (site / "evil.pth").exists()
    assert not (site / "evil2.pth").exists()
    assert (venv / "pyvenv.cfg").read_text() == config_before


# --- 7. links and two runs at once ------------------------------------------------------------


def test_a_git_symlink_cannot_be_replaced_by_a_planted_directory(
    project: Path, tmp_path: Path
) -> None:
    """The --separate-git-dir layout: .git is a link to a repository elsewhere. A run
    replaces it with its own directory: the link survives, the plant does not."""
    real = make_repository(tmp_path / "elsewhere.git")
    (project / "work").mkdir()
    os.symlink(real, project / "work" / ".git")
    result = run_stage(
        """
        def execute(_):
            git = os.path.join(os.environ["PROJECT_DIRECTORY"], "work", ".git")
            removed = attempt(os.unlink, git)
            os.makedirs(os.path.join(git, "hooks"), exist_ok=True)
            hook = write(os.path.join(git, "hooks", "pre-commit"), "id")
            return {"removed": removed, "hook": hook}
        """,
        effects="fs-write",
    )
    assert result.ok, result.stderr
    assert os.readlink(project / "work" / ".git") == str(real)
    assert not (real / "hooks" / "pre-commit").exists()


def test_a_link_inside_git_metadata_does_not_blank_the_tree(project: Path) -> None:
    """.git/hooks -> .. (the project itself): the project stays readable and writable."""
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    os.symlink("..", project / ".git" / "hooks")
    (project / "data.txt").write_text("rows\n")
    value = stage_value(
        """
        def execute(_):
            root = os.environ["PROJECT_DIRECTORY"]
            data = read(os.path.join(root, "data.txt"))
            return {"read": data, "write": write(os.path.join(root, "out.txt"))}
        """,
        effects="fs-write",
    )
    assert value == {"read": {"data": "rows\n"}, "write": "ok"}
    assert (project / "out.txt").exists()


def test_two_runs_at_once_never_unmask_each_other(project: Path) -> None:
    """Run B plants .env and waits; run A starts meanwhile, and writes .env after B ended
    (B's planted file, where A's mask stood, is gone by then): no .env lands from either."""
    results: dict[str, object] = {}

    def run_b() -> None:
        results["b"] = run_stage(
            """
            import time
            def execute(_):
                planted = write(os.path.join(os.environ["PROJECT_DIRECTORY"], ".env"), "B=1\\n")
                time.sleep(1.5)
                return planted
            """,
            effects="fs-write",
            timeout=60,
        )

    b = threading.Thread(target=run_b)
    b.start()
    time.sleep(0.7)
    a = run_stage(
        """
        import time
        def execute(_):
            time.sleep(2.5)
            path = os.path.join(os.environ["PROJECT_DIRECTORY"], ".env")
            return {"read": read(path), "write": write(path, "PROJECT_DIRECTORY=/\\n")}
        """,
        effects="fs-write",
        timeout=60,
    )
    b.join(60)
    assert a.ok, a.stderr
    assert getattr(results["b"], "ok", False), results["b"]
    assert not (project / ".env").exists()
    assert "data" not in a.value["read"]


def test_two_runs_at_once_both_land_their_writes(project: Path) -> None:
    def run(name: str) -> None:
        stage_value(
            "import time\n"
            "def execute(n):\n"
            "    time.sleep(0.5)\n"
            "    return write(os.path.join(os.environ['PROJECT_DIRECTORY'], n))\n",
            input=name,
            effects="fs-write",
        )

    threads = [threading.Thread(target=run, args=(f"out{i}.txt",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(p.name for p in project.glob("out*.txt")) == ["out0.txt", "out1.txt", "out2.txt"]


# --- 8. size and residue ----------------------------------------------------------------------


def test_nine_hundred_nested_repositories_do_not_break_runs(project: Path) -> None:
    long = "a-rather-long-vendored-library-directory-name-" * 3
    for number in range(900):
        make_repository(project / "vendor" / f"{long}{number}" / ".git")
    assert stage_value("def execute(_):\n    return 5\n", effects="fs-read") == 5
    assert stage_value("def execute(_):\n    return 6\n", effects="fs-write") == 6


def test_masks_leave_no_files_behind(project: Path) -> None:
    (project / "a").mkdir()
    (project / "a" / ".env").write_text("X=1\n")
    (project / ".git").mkdir()
    os.symlink(".env.target-that-does-not-exist", project / ".env")
    before = sorted(str(p.relative_to(project)) for p in project.rglob("*"))
    stage_value("def execute(_):\n    return 1\n", effects="fs-write")
    stage_value("def execute(_):\n    return 1\n", effects="fs-read")
    after = sorted(str(p.relative_to(project)) for p in project.rglob("*"))
    assert after == before


# --- 9. forwarded variables reach the sandboxed program only --------------------------------


def test_ld_preload_reaches_only_the_sandboxed_program(project: Path, tmp_path: Path) -> None:
    """--env LD_PRELOAD=lib.so, where the library writes a marker when loaded: no launcher on
    the host loads it; the sandboxed program sees the variable."""
    marker = tmp_path / "outside" / "loaded-on-the-host"
    marker.parent.mkdir()
    source = tmp_path / "evil.c"
    source.write_text(
        "#include <stdio.h>\n"
        "__attribute__((constructor)) static void hit(void) {\n"
        f'  FILE *f = fopen("{marker}", "a"); if (f) {{ fputs("x", f); fclose(f); }}\n'
        "}\n"
    )
    library = project / "evil.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    script = write_script(
        project, "scripts/env.py", "import os\nprint('preload=' + os.environ['LD_PRELOAD'])\n"
    )
    result = run_sandboxed_script(script, env=[f"LD_PRELOAD={library}"], effects="fs-read")
    assert result.ok, result.stderr
    assert f"preload={library}" in result.stdout
    assert not marker.exists(), "a host-side launcher loaded the forwarded LD_PRELOAD"


def test_forwarded_values_never_appear_on_a_command_line(project: Path) -> None:
    """Every user of the host can read /proc/PID/cmdline: a forwarded token is not there."""
    token = f"tok-{os.getpid()}-{time.monotonic_ns()}"
    seen: list[str] = []
    script = write_script(project, "scripts/wait.py", "import time\ntime.sleep(1.5)\n")
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        if token.encode() in (entry / "cmdline").read_bytes():
                            seen.append(entry.name)
                    except OSError:
                        pass
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run_sandboxed_script(script, env=[f"API_TOKEN={token}"])
    finally:
        done.set()
        watcher.join()
    assert result.ok, result.stderr
    assert seen == []


# --- the home directory ---------------------------------------------------------------------


def test_fs_write_on_the_home_directory_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / "scripts").mkdir(parents=True)
    (home / "scripts" / "x.py").write_text("print(1)\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    with pytest.raises(InvalidOption, match="grant a sub-path"):
        run_script("scripts/x.py", sink=NullSink())
    result = run_script("scripts/x.py", effects="fs-write:scripts", sink=NullSink())
    assert result.stdout == "1\n"
    assert "x.py" not in everything_shown(result) or result.ok


def test_writes_appear_when_the_run_ends_even_on_failure(project: Path) -> None:
    """Written files land after the run, whatever ended it: here an exception."""
    script = write_script(
        project,
        "scripts/fail.py",
        textwrap.dedent(
            """
            open("partial.txt", "w").write("half\\n")
            raise SystemExit(3)
            """
        ),
    )
    result = run_sandboxed_script(script)
    assert result.returncode == 3
    assert (project / "partial.txt").read_text() == "half\n"


def test_a_staging_directory_that_cannot_hold_an_overlay_is_refused_not_weakened(
    project: Path, sandbox_settings: IPyRunner, tmp_path: Path
) -> None:
    """A staging path overlayfs cannot take (a comma would split its options): the run is
    a SandboxUnavailable with the fix, and nothing ran."""
    sandbox_settings.write_staging = str(tmp_path / "a,b")
    script = write_script(project, "scripts/touch.py", "open('ran', 'w').close()\n")
    with pytest.raises(SandboxUnavailable, match="write_staging"):
        run_script(script, sink=NullSink())
    assert not (project / "ran").exists()
