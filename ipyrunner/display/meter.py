"""What the progress of many runs says, in tqdm's words: percentage, count, rate,
elapsed and time left, with failures and cancellations named."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Ending = Literal["", "interrupted", "stopped"]

# While it runs, tqdm's usual bar; once it ended, no time left to guess.
_RUNNING = "{l_bar}{bar}{r_bar}"
_ENDED = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]"


@dataclass(frozen=True)
class Counts:
    """How many of `total` runs finished (failed ones included), failed, or were
    cancelled (will never run); `ending` is None while it goes on."""

    label: str
    total: int
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    ending: Ending | None = None

    @property
    def ok(self) -> bool:
        return not (self.failed or self.cancelled or self.ending)

    def extras(self) -> str:
        said = []
        if self.failed:
            said.append(f"{self.failed} failed")
        if self.cancelled:
            said.append(f"{self.cancelled} cancelled")
        if self.ending:
            said.append(self.ending)
        return ", ".join(said)

    def meter(self, elapsed_s: float, bar: str = "{bar}") -> str:
        """Like "map clean: 38%|███▊      | 3/8 [00:01<00:02, 2.70it/s, 1 failed]"."""
        from tqdm import tqdm  # when a map shows: `%load_ext` need not pay for it

        layout = (_RUNNING if self.ending is None else _ENDED).replace("{bar}", bar)
        text: str = tqdm.format_meter(
            self.done,
            self.total,
            max(0.0, elapsed_s),
            prefix=self.label,
            postfix=self.extras() or None,
            bar_format=layout,
        )
        return text

    def split(self, elapsed_s: float) -> tuple[str, str]:
        """The text left and right of the bar, as tqdm's notebook bar shows them."""
        left, _, right = self.meter(elapsed_s, bar="<bar/>").partition("<bar/>")
        return left.rstrip("|"), right.lstrip("|")

    def style(self) -> Literal["success", "danger", ""]:
        """The bar's colour: green when all finished well, red on failures or an early end."""
        if not self.ok:
            return "danger"
        if self.ending == "" and self.done >= self.total:
            return "success"
        return ""
