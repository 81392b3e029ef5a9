"""Run options: every per-call knob, validated once into small policy values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import ISOLATION_MODES, IPyRunner
from .errors import InvalidOption
from .process import Limits
from .retry import RetryPolicy
from .sandbox.limits import ResourceLimits

RESOURCE_OPTIONS = ("memory", "cpu_time", "processes", "file_size", "open_files")
OPTIONS = ("timeout", "max_output", "retries", "isolate", *RESOURCE_OPTIONS)


@dataclass(frozen=True)
class RunOptions:
    limits: Limits
    retry: RetryPolicy
    resources: ResourceLimits
    isolate: str
    require_sandbox: bool
    tmp_size: int
    staging: str = ""  # where writable grants' overlay layers wait; "" picks one

    @classmethod
    def from_settings(cls, settings: IPyRunner, **options: Any) -> RunOptions:
        """The settings in force, with `options` (as given to a call) on top."""
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        given = {k: v for k, v in options.items() if v is not None}
        isolate = str(given.get("isolate", settings.isolate))
        if isolate not in ISOLATION_MODES:
            raise InvalidOption(f"invalid --isolate {isolate!r}: use auto, bwrap or none")
        return cls(
            limits=Limits.from_settings(settings, given.get("timeout"), given.get("max_output")),
            retry=RetryPolicy.from_settings(settings, given.get("retries")),
            resources=ResourceLimits.from_settings(
                settings, **{k: given.get(k) for k in RESOURCE_OPTIONS}
            ),
            isolate=isolate,
            require_sandbox=settings.require_sandbox,
            tmp_size=settings.tmp_size,
            staging=settings.write_staging,
        )
