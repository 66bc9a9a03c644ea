"""A figure measured more than once: its median, its range and how many times (pyperf's habit of
always showing the spread). A single measurement is a spread of one.

``over`` says what the values are: ``"runs"`` (each a run's figure, ``--repeat``) or
``"batches"`` (each a batch's figure within one run). Two spreads whose ranges overlap do not
differ beyond their own noise (``overlaps``): a change between them is "within noise", never a
percentage that looks like a finding. One value on either side cannot tell noise from a
change: ``judged`` is False and a comparison says so instead of printing a bare number.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

MB = 2**20


@dataclass(frozen=True)
class Spread:
    median: float
    min: float
    max: float
    n: int
    values: list = field(default_factory=list, compare=False)
    over: str = "runs"

    @classmethod
    def of(cls, values: list, over: str = "runs") -> Spread | None:
        """The spread of the values that exist (None when none does)."""
        present = [v for v in values if v is not None]
        if not present:
            return None
        return cls(
            statistics.median(present), min(present), max(present), len(present), values, over
        )

    @classmethod
    def from_json(cls, data: dict | None) -> Spread | None:
        if not data:
            return None
        return cls(
            data["median"],
            data["min"],
            data["max"],
            data["n"],
            data.get("values", []),
            data.get("over", "runs"),
        )

    def to_json(self) -> dict:
        return {
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "n": self.n,
            "values": self.values,
            "over": self.over,
        }

    @property
    def judged(self) -> bool:
        """Several values: a range that can be compared with another's."""
        return self.n > 1

    def overlaps(self, other: Spread) -> bool:
        """The two ranges meet: no change worth a number (both must have several values)."""
        return self.min <= other.max and other.min <= self.max

    def text(self, digits: int = 0, scale: float = MB) -> str:
        """``median (min–max)``, or the one value, in MB unless ``scale`` says otherwise."""
        f = f"{{:,.{digits}f}}"
        if self.n == 1:
            return f.format(self.median / scale)
        med, lo, hi = (f.format(x / scale) for x in (self.median, self.min, self.max))
        return f"{med} ({lo}–{hi})"

    def ratio_range(self, other: Spread) -> tuple[float, float]:
        """The lowest and highest ratio of a value of ours to one of ``other``'s."""
        return self.min / other.max, self.max / other.min


def text(spread: Spread | None, digits: int = 0, scale: float = MB) -> str:
    """A spread's text, or "–" where nothing was measured."""
    return "–" if spread is None else spread.text(digits, scale)


def of_json(data: dict | None) -> Spread | None:
    return Spread.from_json(data)


def one_of(over: str) -> str:
    """The singular of what a spread is over: "batch" of "batches", "run" of "runs"."""
    return {"batches": "batch", "runs": "run"}.get(over, over.removesuffix("s"))


def change(mine: Spread | None, theirs: Spread | None, unit: str = "%") -> str:
    """A figure's change against the reference's, in words: ``+17% (+5% to +30%)``; "within
    noise" when the two ranges overlap; "not judged" with one value on a side."""
    if mine is None or theirs is None or not theirs.median:
        return "not measured"
    if not (mine.judged and theirs.judged):
        one = one_of(mine.over if not mine.judged else theirs.over)
        return f"not judged (one {one}: --repeat 3 tells a change from noise)"
    if mine.overlaps(theirs):
        return "within noise"
    lo, hi = mine.ratio_range(theirs)
    return f"{mine.median / theirs.median - 1:+.0%} ({lo - 1:+.0%} to {hi - 1:+.0%})"
