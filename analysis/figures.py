"""The pictures: memory over time, floors by batch, floors across runs (matplotlib, Agg).

Every figure is written as PNG (for people) and SVG (for documents) beside
the data. Needs the ``[analysis]`` extra; nothing else in stair-stepper does.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import statistics  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402

from .summary import MB, WINDOW_S, glibc_version  # noqa: E402

COLORS = ("#d1495b", "#00798c", "#edae49", "#66a182", "#2e4057", "#8d96a3")


def save(fig, folder: Path, stem: str) -> list[Path]:
    """PNG and SVG, byte for byte the same from the same data (no dates, fixed SVG ids)."""
    paths = []
    plt.rcParams["svg.hashsalt"] = "stair-stepper"
    for ext in ("png", "svg"):
        path = Path(folder) / f"{stem}.{ext}"
        metadata = {"Software": None} if ext == "png" else {"Date": None, "Creator": None}
        fig.savefig(path, dpi=130 if ext == "png" else None, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths


def _title(summary: dict, what: str) -> str:
    """What, which preset and how the variants ran; then every setting that differs from the
    preset (from meta.json's ``overrides``), then the main settings and the machine."""
    prov = summary.get("provenance") or {}
    c = summary.get("config") or {}
    mode = "side by side" if c.get("parallel") else "one after another"
    first = f"{what} — preset {summary.get('preset') or 'trace'}"
    if c:
        first += f", variants {mode}"
    lines = [first]
    overrides = summary.get("overrides") or {}
    if overrides:
        lines.append(
            "changed from the preset: "
            + ", ".join(f"{k}={_setting(v)}" for k, v in overrides.items())
        )
    facts = []
    if c:
        facts.append(
            f"PYTHONMALLOC={c.get('python_malloc')}, concurrency {c.get('concurrency')}, "
            f"SLEEP_MS={c.get('sleep_ms')}, {c.get('tags') or 'all sizes'}, "
            f"offload threads {c.get('offload_threads')}, idle {c.get('idle_rps', '–')} req/s"
        )
    if prov.get("python"):
        facts.append(f"Python {prov['python']}")
    if prov.get("glibc"):
        facts.append(f"glibc {glibc_version(prov)}")
    if facts:
        lines.append("; ".join(facts))
    return "\n".join(lines)


def _setting(value) -> str:
    if value is None:
        return "auto"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


SCREEN_COLUMNS = 2000  # more than the ~1,600 pixel columns of a 12-inch figure at 130 dpi


def decimate(xs, ys, columns: int = SCREEN_COLUMNS) -> tuple[list, list]:
    """The lowest and the highest point of every screen column, in x order, so drawing costs
    the same for a 10-minute and a 10-hour trace while every peak and floor survives (a
    one-sample spike too). NaN in ``xs`` (a gap from ``with_gaps``) stays a gap."""
    import numpy as np

    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(x) <= 2 * columns:
        return list(xs), list(ys)
    gaps = np.flatnonzero(np.isnan(x))
    if len(gaps):
        out_x: list = []
        out_y: list = []
        for part in np.split(np.arange(len(x)), gaps):
            part = part[~np.isnan(x[part])]
            if len(part):
                if out_x:
                    out_x.append(float("nan"))
                    out_y.append(float("nan"))
                px, py = decimate(x[part], y[part], columns)
                out_x += list(px)
                out_y += list(py)
        return out_x, out_y
    span = x[-1] - x[0]
    if span <= 0:
        return list(xs), list(ys)
    column = np.minimum(((x - x[0]) / span * columns).astype(int), columns - 1)
    order = np.lexsort((y, column))  # by column, then by value
    starts = np.r_[0, np.flatnonzero(np.diff(column[order])) + 1]
    ends = np.r_[starts[1:], len(order)] - 1
    keep = np.unique(np.r_[order[starts], order[ends], 0, len(x) - 1])
    return x[keep].tolist(), y[keep].tolist()


def with_gaps(xs: list, ys: list, max_gap: float) -> tuple[list, list]:
    """Points with NaN inserted wherever two readings are more than ``max_gap`` apart: a line
    is drawn only between readings that were really taken close together."""
    out_x, out_y = [], []
    for x, y in zip(xs, ys, strict=True):
        if out_x and x - out_x[-1] > max_gap:
            out_x.append(float("nan"))
            out_y.append(float("nan"))
        out_x.append(x)
        out_y.append(y)
    return out_x, out_y


def _spans(trace, prefix: str) -> list[tuple[float, float, str]]:
    """(start, end, phase) for each run of phases starting with ``prefix``."""
    spans: list[tuple[float, float, str]] = []
    for t, phase in zip(trace.column("t_s"), trace.column("phase"), strict=True):
        if not phase or not phase.startswith(prefix):
            continue
        if spans and spans[-1][2] == phase:
            spans[-1] = (spans[-1][0], t, phase)
        else:
            spans.append((t, t, phase))
    return spans


MAX_GAP_S = 1.0  # allocator readings further apart than this are not joined by a line


def _panel(ax, name: str, v, s: dict, color: str) -> None:
    """One variant: RSS, allocator held and live, batches, settled floors, the trim."""
    t = v.trace.column("t_s")
    ax.plot(
        *decimate(t, [r / MB for r in v.trace.column("rss_bytes")]),
        color=color,
        lw=1.8,
        label="RSS",
        gid="rss_bytes",
    )
    for column, style, label in (
        ("held_bytes", "--", "allocator held"),
        ("live_bytes", ":", "allocator live"),
    ):
        points = [
            (x, y / MB) for x, y in zip(t, v.trace.column(column), strict=True) if y is not None
        ]
        if not points:
            continue
        xs, ys = with_gaps([p[0] for p in points], [p[1] for p in points], MAX_GAP_S)
        ax.plot(*decimate(xs, ys), color=color, lw=1.0, ls=style, label=label, gid=column)
        # A reading with no neighbour close by (the one read after each pause) is a marker:
        # no line leads to it, and it must still show.
        lone = [
            (x, y)
            for i, (x, y) in enumerate(points)
            if all(
                abs(x - points[j][0]) > MAX_GAP_S for j in (i - 1, i + 1) if 0 <= j < len(points)
            )
        ]
        if lone:
            ax.plot(
                [p[0] for p in lone],
                [p[1] for p in lone],
                ls="none",
                marker="o",
                ms=4,
                color=color,
                mfc="white" if column == "live_bytes" else color,
            )
    for start, end, _ in _spans(v.trace, "batch"):
        ax.axvspan(start, end, color=color, alpha=0.08, lw=0)
    floors = zip(
        _spans(v.trace, "pause"),
        s.get("floors_bytes", []),
        s.get("floors_settled", []),
        strict=False,
    )
    for (_, end, _), floor, ok in floors:
        # A floor from a pause that had not settled is dotted: never read as a floor.
        ax.plot(
            [end - WINDOW_S, end],
            [floor / MB] * 2,
            color="black",
            lw=4 if ok else 1.5,
            ls="-" if ok else (0, (1, 1)),
            solid_capstyle="butt",
        )
    trims = _spans(v.trace, "trim") or _spans(v.trace, "after trim")
    if trims:
        ax.axvline(trims[0][0], color="black", ls="-.", lw=0.9)
        ax.text(
            trims[0][0], 0.95, " trim", transform=ax.get_xaxis_transform(), fontsize=9, va="top"
        )
    ax.text(
        0.005,
        0.95,
        name,
        transform=ax.transAxes,
        fontsize=12,
        fontweight="bold",
        color=color,
        va="top",
    )
    ax.grid(alpha=0.3)
    ax.set_ylabel("MB")


def memory_figure(data: dict, summary: dict):
    """One panel per variant (shared y axis), for slides: readable at 100 % on a laptop."""
    n = max(1, len(data))
    fig, axes = plt.subplots(
        n, 1, figsize=(12, 2.4 * n + 1.6), sharex=True, sharey=True, squeeze=False
    )
    for i, (name, v) in enumerate(data.items()):
        _panel(axes[i][0], name, v, summary["variants"].get(name, {}), COLORS[i % len(COLORS)])
    axes[0][0].set_ylim(bottom=0)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=3,
        fontsize=10,
        frameon=False,
        bbox_to_anchor=(0.5, -0.01),
    )
    axes[-1][0].set_xlabel(
        "seconds since the variant's start — tint: batches; black ticks: "
        "settled pause floors (dotted: not settled)"
    )
    fig.suptitle(_title(summary, "Memory over time (MB = 2^20 bytes)"), fontsize=11)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def rss_overlay_figure(data: dict, summary: dict):
    """RSS of every variant on one axis, to compare them at a glance."""
    fig, ax = plt.subplots(figsize=(12, 5))
    for i, (name, v) in enumerate(data.items()):
        ax.plot(
            *decimate(v.trace.column("t_s"), [r / MB for r in v.trace.column("rss_bytes")]),
            color=COLORS[i % len(COLORS)],
            lw=1.8,
            label=name,
        )
    ax.set_xlabel("seconds since the variant's start")
    ax.set_ylabel("RSS, MB (2^20 bytes)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10)
    ax.set_title(_title(summary, "RSS over time"), fontsize=11)
    fig.tight_layout()
    return fig


def memory_over_time(data: dict, summary: dict, folder: Path) -> list[Path]:
    return save(memory_figure(data, summary), folder, "memory") + save(
        rss_overlay_figure(data, summary), folder, "memory-rss"
    )


def floors_by_batch(summary: dict, folder: Path) -> list[Path]:
    variants = summary["variants"]
    n = max((len(s["floors_bytes"]) for s in variants.values()), default=0)
    labels = ["baseline", *[f"after batch {i + 1}" for i in range(n)], "after trim"]
    fig, ax = plt.subplots(figsize=(10, 4.8))
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


def floors_across_runs(
    summaries: list[dict], folder: Path, stem: str = "floors-runs"
) -> list[Path]:
    """Median line and min–max band of each variant's floors over several runs."""
    names: list[str] = []
    for s in summaries:
        names += [n for n in s["variants"] if n not in names]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    longest = 0
    for i, name in enumerate(names):
        color = COLORS[i % len(COLORS)]
        runs = [s["variants"][name] for s in summaries if name in s["variants"]]
        series = [[r["baseline_bytes"], *r["floors_bytes"], r["after_trim_bytes"]] for r in runs]
        width = max(len(x) for x in series)
        lows, highs, mids = [], [], []
        for k in range(width):
            column = [x[k] for x in series if k < len(x) and x[k] is not None]
            lows.append(min(column) / MB if column else float("nan"))
            highs.append(max(column) / MB if column else float("nan"))
            mids.append(statistics.median(column) / MB if column else float("nan"))
        xs = range(width)
        longest = max(longest, width)
        ax.fill_between(xs, lows, highs, color=color, alpha=0.2, lw=0)
        ax.plot(xs, mids, color=color, marker="o", label=f"{name} (median of {len(runs)} runs)")
    ticks = ["baseline", *[f"after batch {k}" for k in range(1, longest - 1)], "after trim"]
    ax.set_xticks(range(longest), ticks)
    ax.set_ylabel("RSS floor, MB (2^20 bytes); band: min–max")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(f"Floors across {len(summaries)} runs")
    ax.legend(fontsize=8)
    return save(fig, folder, stem)


def floors_against_idle(table: dict, folder: Path, stem: str = "idle-traffic") -> list[Path]:
    """Median settled floor (band: min–max over the runs) against idle requests per second.

    ``table``: idle rate -> a --repeat summary's ``variants``."""
    fig, ax = plt.subplots(figsize=(10, 5))
    rates = sorted(table)
    positions = range(len(rates))
    names = [n for n in ("jemalloc", "jemalloc+bg") if all(n in table[r] for r in rates)]
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
    ax.set_xlabel("idle traffic during the pauses, requests per second (GET /healthz)")
    ax.set_ylabel("median settled pause floor, MB (2^20 bytes)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title("Pause floors against idle traffic (GET /healthz during the pauses)")
    ax.legend(fontsize=10)
    fig.tight_layout()
    return save(fig, folder, stem)


def draw_all(data: dict, summary: dict, folder: Path) -> list[Path]:
    return memory_over_time(data, summary, folder) + floors_by_batch(summary, folder)
