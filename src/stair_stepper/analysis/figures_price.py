"""The price figure: memory against latency, one point per variant."""

from __future__ import annotations

import textwrap
from pathlib import Path

from stair_stepper.analysis import verdict
from stair_stepper.analysis.figures import COLORS, _title, new_figure, save
from stair_stepper.analysis.spread import MB


def non_dominated(points: dict) -> set:
    """The names no other point beats on both axes (lower floor and lower p99, at least as
    good on one and better on the other)."""
    return {
        n
        for n, (x, y) in points.items()
        if not any(
            (x2 <= x and y2 <= y) and (x2 < x or y2 < y) for m, (x2, y2) in points.items() if m != n
        )
    }


def tradeoff_figure(summary: dict, runs: int = 1):
    """Median settled floor against p99 latency, one point per variant, min–max whiskers
    over the runs, CPU per request in each label; the variants no other beats on both axes
    drawn filled, the rest hollow. None when no variant has both numbers."""
    found = {}
    for name, s in verdict.standings(summary).items():
        floor, p99, cpu = s.floor, s.cost.get("latency_p99_ms"), s.cost.get("cpu_ms_per_request")
        if floor and p99:
            found[name] = (
                (floor.median, floor.min, floor.max),
                (p99.median, p99.min, p99.max),
                (cpu.median, cpu.min, cpu.max) if cpu else None,
            )
    if not found:
        return None
    best = non_dominated({n: (f[0], p[0]) for n, (f, p, _) in found.items()})
    rank = {n: k for k, n in enumerate(sorted(found, key=lambda n: found[n][0][0]))}
    fig, ax = new_figure(figsize=(10, 5.6))
    for i, (name, (floor, p99, cpu)) in enumerate(found.items()):
        color = COLORS[i % len(COLORS)]
        x, y = floor[0] / MB, p99[0]
        ax.errorbar(
            x,
            y,
            xerr=[[x - floor[1] / MB], [floor[2] / MB - x]],
            yerr=[[y - p99[1]], [p99[2] - y]],
            fmt="o",
            ms=11,
            color=color,
            mfc=color if name in best else "white",
            mew=2,
            capsize=4,
            lw=1.4,
        )
        label = name + (f"\n{cpu[0]:.1f} ms CPU/request" if cpu else "")
        # neighbours in x take turns above and below their point, so close labels do not meet
        below = rank[name] % 2
        ax.annotate(
            label,
            (x, y),
            textcoords="offset points",
            xytext=(10, -30 if below else 8),
            fontsize=9,
        )
    # from zero (a ratio reads true) with room right and above for the labels
    ax.set_xlim(0, max(f[2] for f, _, _ in found.values()) / MB * 1.3)
    ax.set_ylim(0, max(p[2] for _, p, _ in found.values()) * 1.25)
    ax.grid(alpha=0.3)
    ax.set_xlabel("median settled floor, MB (2^20 bytes)")
    ax.set_ylabel("p99 latency, ms (median over the batches)")
    whiskers = (
        f"whiskers: min–max over {runs} runs; "
        if runs > 1
        else "whiskers: min–max over the batches; "
    )
    ax.set_title(
        _title(summary, "Memory against latency")
        + f"\n{whiskers}filled: no other variant has both a lower floor and a lower p99",
        fontsize=9,
        loc="left",
    )
    mode = summary.get("mode")
    if mode:
        ax.text(
            0.0,
            -0.16,
            "\n".join(textwrap.wrap("Load: " + mode, 150)),
            transform=ax.transAxes,
            fontsize=8,
            va="top",
        )
    return fig


def tradeoff(summary: dict, folder: Path, runs: int = 1, stem: str = "tradeoff") -> list[Path]:
    fig = tradeoff_figure(summary, runs)
    return [] if fig is None else save(fig, folder, stem)
