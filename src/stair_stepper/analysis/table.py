"""The one markdown table writer and the one MB formatter of the summaries, compare, the
published blocks and the production texts."""

from __future__ import annotations

from stair_stepper.analysis.spread import MB


def mb(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value / MB:,.{digits}f}"


def markdown_table(head: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines: the one table writer of the summaries, compare and publish."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]
