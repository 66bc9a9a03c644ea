"""The floors' figures: each variant's floors by batch, the floors of several runs as bands,
floors against idle traffic, and a sweep along its axis."""

from __future__ import annotations

import statistics
from pathlib import Path

from stair_stepper.analysis.figures import COLORS, _title, new_figure, save
from stair_stepper.analysis.repeats import floor_columns
from stair_stepper.analysis.spread import MB, Spread

MAX_BARS = 24


def floors_by_batch(summary: dict, folder: Path) -> list[Path]:
    variants = summary["variants"]
    n = max((len(s["floors_bytes"]) for s in variants.values()), default=0)
    if n > MAX_BARS:
        return save(floors_as_lines(summary, n), folder, "floors")
    labels = ["baseline", *[f"after batch {i + 1}" for i in range(n)], "after trim"]
    fig, ax = new_figure()
    width = 0.8 / max(1, len(variants))
    for i, (name, s) in enumerate(variants.items()):
        values = [s["baseline_bytes"], *s["floors_bytes"]]
        values += [None] * (n + 1 - len(values)) + [s["after_trim_bytes"]]
        ok = [True, *s.get("floors_settled", [True] * n)]
        ok += [True] * (len(values) - len(ok))
        xs = [x + (i - (len(variants) - 1) / 2) * width for x in range(len(labels))]
        heights = [v / MB if v is not None else 0 for v in values]
        bars = ax.bar(xs, heights, width, color=COLORS[i % len(COLORS)], label=name)
        for bar, x, v, good in zip(bars, xs, values, ok, strict=True):
            if not good:  # not settled: hatched and starred, never read as a floor
                bar.set_hatch("///")
                bar.set_alpha(0.45)
            if v is not None:
                ax.text(
                    x,
                    v / MB,
                    f"{v / MB:.0f}{'' if good else '*'}",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("RSS floor, MB (2^20 bytes)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(_title(summary, "Floors by batch (* hatched: pause had not settled)"))
    ax.legend(fontsize=8)
    return save(fig, folder, "floors")


def floors_as_lines(summary: dict, n: int):
    """Floors of a long run (more than MAX_BARS batches): a line per variant, hollow
    markers where the pause had not settled; 0 is the baseline, n + 1 after the trim."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = new_figure()
    for i, (name, s) in enumerate(summary["variants"].items()):
        color = COLORS[i % len(COLORS)]
        values = [s["baseline_bytes"], *s["floors_bytes"]]
        values += [None] * (n + 1 - len(values)) + [s["after_trim_bytes"]]
        ok = [True, *s.get("floors_settled", [True] * n)]
        ok += [True] * (len(values) - len(ok))
        ys = [v / MB if v is not None else float("nan") for v in values]
        ax.plot(range(len(ys)), ys, color=color, lw=1.5, label=name)
        loose = [(x, y) for x, (y, good) in enumerate(zip(ys, ok, strict=True)) if not good]
        if loose:
            xs, ys_ = zip(*loose, strict=True)
            ax.plot(
                xs,
                ys_,
                ls="none",
                marker="o",
                ms=5,
                mfc="white",
                color=color,
                gid=f"unsettled-{name}",
            )
    ax.xaxis.set_major_locator(MaxNLocator(12, integer=True))
    ax.set_xlabel(f"after batch (0: baseline; {n + 1}: after the trim)")
    ax.set_ylabel("RSS floor, MB (2^20 bytes)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(_title(summary, "Floors by batch (hollow: pause had not settled)"))
    ax.legend(fontsize=8)
    return fig


def floors_across_runs(
    summaries: list[dict], folder: Path, stem: str = "floors-runs"
) -> list[Path]:
    return save(floors_runs_figure(summaries), folder, stem)


def floors_runs_figure(summaries: list[dict]):
    """Median line and min–max band of each variant's floors over several runs."""
    labels, columns = floor_columns(summaries)
    fig, ax = new_figure()
    for i, (name, cells) in enumerate(columns.items()):
        color = COLORS[i % len(COLORS)]
        runs = sum(1 for s in summaries if name in s["variants"])
        nan = float("nan")
        lows = [min(c) / MB if c else nan for c in cells]
        highs = [max(c) / MB if c else nan for c in cells]
        mids = [statistics.median(c) / MB if c else nan for c in cells]
        xs = range(len(cells))
        ax.fill_between(xs, lows, highs, color=color, alpha=0.2, lw=0)
        ax.plot(xs, mids, color=color, marker="o", label=f"{name} (median of {runs} runs)")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("RSS floor, MB (2^20 bytes); band: min–max")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(f"Floors across {len(summaries)} runs")
    ax.legend(fontsize=8)
    return fig


def floors_against_idle(
    table: dict, folder: Path, names: tuple[str, ...], stem: str = "idle-traffic"
) -> list[Path]:
    """Median settled floor (band: min–max over the runs) against idle requests per second.

    ``table``: idle rate -> a --repeat summary's ``variants``; ``names``: the variants drawn."""
    fig, ax = new_figure(figsize=(10, 5))
    rates = sorted(table)
    positions = range(len(rates))
    names = [n for n in names if all(n in table[r] for r in rates)]
    for i, name in enumerate(names):
        color = COLORS[1 + 1 * i]
        spreads = [table[r][name]["median_floor_bytes"] for r in rates]
        lows, highs = [sp["min"] / MB for sp in spreads], [sp["max"] / MB for sp in spreads]
        ax.fill_between(positions, lows, highs, color=color, alpha=0.2, lw=0)
        ax.plot(
            positions,
            [sp["median"] / MB for sp in spreads],
            marker="o",
            color=color,
            label=f"{name} (median of {spreads[0]['n']} runs; band: min–max)",
        )
    ax.set_xticks(positions, [f"{r:g}" for r in rates])
    ax.set_xlabel(
        "idle traffic during the pauses, requests per second (GET /__stair_stepper__/healthz)"
    )
    ax.set_ylabel("median settled pause floor, MB (2^20 bytes)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title("Pause floors against idle traffic (health checks during the pauses)")
    ax.legend(fontsize=10)
    fig.tight_layout()
    return save(fig, folder, stem)


def sweep_figure(sweep: dict, runs: int = 1):
    """A sweep along its axis: median settled floor and after-trim floor against the setting's
    value, with the run-to-run range as a band when there are several runs."""
    fig, ax = new_figure(figsize=(10, 4.8))
    values = [r["value"] for r in sweep["rows"]]
    xs = range(len(values))
    for i, (key, label) in enumerate(
        (("median_floor_bytes", "median settled floor"), ("after_trim_bytes", "after trim"))
    ):
        color = COLORS[i]
        cells = [Spread.from_json(r[key]) for r in sweep["rows"]]
        nan = float("nan")
        mid = [c.median / MB if c else nan for c in cells]
        ax.plot(xs, mid, color=color, marker="o", lw=1.8, label=label)
        if runs > 1:
            lows = [c.min / MB if c else nan for c in cells]
            highs = [c.max / MB if c else nan for c in cells]
            ax.fill_between(xs, lows, highs, color=color, alpha=0.2, lw=0)
    ax.set_xticks(xs, values)
    ax.set_xlabel(f"{sweep['var']} (variants {', '.join(r['variant'] for r in sweep['rows'])})")
    ax.set_ylabel("RSS, MB (2^20 bytes)" + ("; band: min–max over the runs" if runs > 1 else ""))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    what = f", median of {runs} runs" if runs > 1 else ""
    ax.set_title(f"Sweep {sweep['name']}: floors against {sweep['var']}{what}")
    ax.legend(fontsize=9)
    return fig


def sweeps(summary: dict, folder: Path, runs: int = 1) -> list[Path]:
    written = []
    for sweep in summary.get("sweeps") or []:
        written += save(sweep_figure(sweep, runs), folder, f"sweep-{sweep['name']}")
    return written
