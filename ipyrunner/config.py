"""Settings: one traitlets Configurable, overridable from the environment.

`%config IPyRunner.timeout = 60` sets a value in a session; `IPYRUNNER_TIMEOUT=60`
in the environment sets it for every session. Explicit configuration wins over
the environment, which wins over the defaults.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from typing import Any

from traitlets import Bool, Enum, Float, Int, List, TraitError, TraitType, Unicode
from traitlets.config import SingletonConfigurable

from .errors import InvalidOption

ENV_PREFIX = "IPYRUNNER_"
RUNTIMES = ("auto", "host", "venv", "nix")
# nixpkgs pinned to one revision: the same interpreter on every machine.
DEFAULT_NIX_FLAKE = "github:NixOS/nixpkgs/e9f00bd893984bc8ce46c895c3bf7cac95331127"
ISOLATION_MODES = ("auto", "bwrap", "none")

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str | int, allow_zero: bool = False) -> int:
    """Parse a byte size such as `65536`, `64K`, `10M`, `1.5GiB` (binary units);
    `allow_zero` lets 0 through (a limit of 0 means none)."""
    if isinstance(value, bool):
        raise InvalidOption(f"invalid size {value!r}: give bytes or a size like 64K, 10M, 1G")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(str(value))
        if not match:
            raise InvalidOption(f"invalid size {value!r}: give bytes or a size like 64K, 10M, 1G")
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < 0 or (size == 0 and not allow_zero):
        raise InvalidOption(f"invalid size {value!r}: it must be greater than zero")
    return size


def parse_seconds(value: str | float, what: str = "timeout") -> float:
    """Parse a positive, finite number of seconds."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InvalidOption(f"invalid {what} {value!r}: give a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidOption(f"invalid {what} {value!r}: it must be a positive number of seconds")
    return seconds


def parse_count(value: str | int, what: str = "retries") -> int:
    """Parse a non-negative whole number."""
    try:
        count = int(str(value), 10)
    except ValueError:
        raise InvalidOption(f"invalid {what} {value!r}: give a whole number >= 0") from None
    if count < 0:
        raise InvalidOption(f"invalid {what} {value!r}: it must be 0 or more")
    return count


class ByteSize(TraitType[int, int | str]):
    """A size in bytes that also accepts strings like `"64K"` or `"10M"`."""

    info_text = "a size in bytes, such as 65536, '64K' or '10M'"

    def __init__(self, default_value: int, allow_zero: bool = False, **kwargs: Any) -> None:
        super().__init__(default_value, **kwargs)
        self.allow_zero = allow_zero

    def validate(self, obj: Any, value: Any) -> int:
        try:
            return parse_size(value, self.allow_zero)
        except InvalidOption as exc:
            raise TraitError(str(exc)) from None

    def from_string(self, s: str) -> int:
        return parse_size(s, self.allow_zero)


class IPyRunner(SingletonConfigurable):
    """Settings of ipyrunner, shared by the magics, the Python API and the CLI."""

    timeout = Float(300.0, help="Seconds one attempt may run before it is killed.").tag(config=True)
    grace_period = Float(
        2.0, help="Seconds between SIGTERM and SIGKILL when a run is stopped."
    ).tag(config=True)
    retries = Int(0, help="Further attempts after a failed first one.").tag(config=True)
    backoff_initial = Float(0.5, help="Seconds to wait before the first retry.").tag(config=True)
    backoff_max = Float(10.0, help="Longest wait between two attempts, in seconds.").tag(
        config=True
    )
    backoff_jitter = Float(0.5, help="Random seconds (at most) added to each wait.").tag(
        config=True
    )
    max_output = ByteSize(
        10 << 20, help="Bytes of stdout+stderr a run may write before it is killed."
    ).tag(config=True)
    max_result = ByteSize(
        32 << 20, help="Bytes a stage's JSON result may take before the stage is killed."
    ).tag(config=True)
    map_workers = Int(0, help="Parallel runs of Stage.map; 0 means one per CPU core.").tag(
        config=True
    )
    map_engine = Enum(
        ["local", "dask"],
        "local",
        help="Where Stage.map runs when no engine is given: local threads, or the default "
        "Dask client's cluster (distributed.get_client()).",
    ).tag(config=True)
    display = Enum(
        ["auto", "widget", "text", "none"],
        "auto",
        help="Live output: a widget in Jupyter, plain text elsewhere ('auto'), or off.",
    ).tag(config=True)
    display_rate = Float(10.0, help="Most display updates per second.").tag(config=True)
    display_limit = Int(
        20_000, help="Characters of live output kept on screen (the tail, in the widget)."
    ).tag(config=True)
    node_executable = Unicode("", help="Node.js for .js scripts; empty: found on PATH.").tag(
        config=True
    )
    bash_executable = Unicode("", help="bash for .sh scripts; empty: found on PATH.").tag(
        config=True
    )
    isolate = Enum(
        list(ISOLATION_MODES),
        "auto",
        help="bwrap: always sandbox (fail if unusable); none: never; auto: bwrap when usable.",
    ).tag(config=True)
    require_sandbox = Bool(False, help="Turn every unsandboxed run into an error.").tag(config=True)
    memory = ByteSize(
        4 << 30,
        allow_zero=True,
        help="Memory a run may use: its cgroup, else a user systemd scope, else RLIMIT_AS "
        "(refused where none holds it); 0: no memory limit.",
    ).tag(config=True)
    cpu_time = Float(0.0, help="CPU seconds a run may use; 0 leaves it to the timeout.").tag(
        config=True
    )
    processes = Int(512, help="Processes (and threads) a run may have at once.").tag(config=True)
    file_size = ByteSize(4 << 30, help="Largest file a run may write.").tag(config=True)
    open_files = Int(1024, help="Files a run may have open at once.").tag(config=True)
    runtime = Enum(
        list(RUNTIMES),
        "auto",
        help="Stages' interpreters: auto (venv with requirements, else host; nix when this "
        "is set to nix), host, venv or nix.",
    ).tag(config=True)
    allow_unpinned = Bool(
        False, help="Accept requirements without an exact version (name, name>=1)."
    ).tag(config=True)
    allow_source_builds = Bool(
        False, help="Let uv build packages from source (runs their build code on the host)."
    ).tag(config=True)
    venv_cache = Unicode(
        "", help="Where venvs for requirements live; empty: ~/.cache/ipyrunner/venvs."
    ).tag(config=True)
    uv_executable = Unicode("", help="uv for venvs; empty: the uv package's, else PATH.").tag(
        config=True
    )
    nix_flake = Unicode(
        DEFAULT_NIX_FLAKE, help="The flake whose packages the nix runtime uses."
    ).tag(config=True)
    nix_executable = Unicode("", help="nix; empty: found on PATH.").tag(config=True)
    nix_options = List(
        Unicode(), [], help="Extra options for nix build, e.g. ['--option', 'substituters', '']."
    ).tag(config=True)
    tmp_size = ByteSize(
        512 << 20, help="Size of the sandbox's private /tmp, HOME and working directory."
    ).tag(config=True)
    warm = Bool(
        False,
        help="Serve single Python stage calls from warm sandboxed workers (Stage.map does "
        "unless warm=False); each call starts from a pristine fork.",
    ).tag(config=True)
    warm_idle = Float(300.0, help="Seconds an idle warm worker lives before it is ended.").tag(
        config=True
    )
    write_staging = Unicode(
        "",
        help="Where a run's writes to a writable grant wait until they are committed; empty: "
        "~/.cache/ipyrunner/writes (or the temporary directory when only that is on the "
        "granted tree's filesystem).",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._apply_environment(explicit=set(kwargs))

    def _apply_environment(self, explicit: set[str]) -> None:
        explicit |= set(self.config.get(type(self).__name__, {}))
        for name, trait in self.traits(config=True).items():
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw is None or name in explicit:
                continue
            try:
                # A list comes as shell words: IPYRUNNER_NIX_OPTIONS="--option substituters ''"
                value = shlex.split(raw) if isinstance(trait, List) else trait.from_string(raw)
                setattr(self, name, value)
            except (TraitError, ValueError) as exc:
                raise InvalidOption(f"{ENV_PREFIX}{name.upper()}={raw!r}: {exc}") from None


def settings() -> IPyRunner:
    """The settings in force: the kernel's `IPyRunner` if loaded, else a default one."""
    return IPyRunner.instance()
