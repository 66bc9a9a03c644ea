"""The pictures: memory over time, floors by batch, floors across runs (matplotlib, Agg).

Every figure is written as PNG (for people) and SVG (for documents) beside
the data. Needs the ``[analysis]`` extra; nothing else in stair-stepper does.
"""

from __future__ import annotations

import statistics
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from stair_stepper import allocators

from .summary import MB, WINDOW_S, floor_columns, glibc_version

COLORS = ("#d1495b", "#00798c", "#edae49", "#66a182", "#2e4057", "#8d96a3")


def save(fig, folder: Path, stem: str) -> list[Path]:
    """PNG and SVG, byte for byte the same from the same data (no dates, fixed SVG ids).

    The tight bounding box is found once, at the PNG's resolution, and used for both
    files: ``bbox_inches="tight"`` would lay the figure out again for each. SVG text stays
    text (smaller, searchable, and much faster to write than glyph outlines)."""
    paths = []
    fig.set_dpi(130)
    with matplotlib.rc_context({"svg.hashsalt": "stair-stepper", "svg.fonttype": "none"}):
        tight = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.1)
        for ext in ("png", "svg"):
            path = Path(folder) / f"{stem}.{ext}"
            metadata = {"Software": None} if ext == "png" else {"Date": None, "Creator": None}
            fig.savefig(
                path, dpi=130 if ext == "png" else None, bbox_inches=tight, metadata=metadata
            )
            paths.append(path)
    return paths


def new_figure(rows: int = 1, figsize=(10, 4.8), **kwargs):
    """A figure of its own (no pyplot state shared between figures or threads) and its axes."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, 1, **kwargs)


def _title(summary: dict, what: str) -> str:
    """What, which preset and how the variants ran; then every setting that differs from the
    preset (from meta.json's ``overrides``), then what was measured and the machine."""
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
    if summary.get("described"):
        lines += textwrap.wrap(summary["described"].replace("`", ""), 130)
    facts = []
    if prov.get("python"):
        facts.append(f"Python {prov['python']}")
    if prov.get("glibc"):
        facts.append(f"glibc {glibc_version(prov)}")
    if prov.get("cpu_count"):
        facts.append(f"{prov['cpu_count']} CPUs")
    if facts:
        lines.append(", ".join(facts))
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
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(x) <= 2 * columns:
        return x.tolist(), y.tolist()
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


def with_gaps(xs, ys, max_gap: float):
    """Points with NaN inserted wherever two readings are more than ``max_gap`` apart: a line
    is drawn only between readings that were really taken close together."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    breaks = np.flatnonzero(np.diff(x) > max_gap) + 1
    return np.insert(x, breaks, np.nan), np.insert(y, breaks, np.nan)


def lone_points(xs, max_gap: float) -> list[int]:
    """Indices of readings with no neighbour within ``max_gap`` (no line reaches them)."""
    x = np.asarray(xs, dtype=float)
    if len(x) == 0:
        return []
    gaps = np.diff(x) > max_gap
    before = np.r_[True, gaps]  # no neighbour close on the left
    after = np.r_[gaps, True]
    return np.flatnonzero(before & after).tolist()


def _spans(trace, prefix: str) -> list[tuple[float, float, str]]:
    """(start, end, phase) for each phase starting with ``prefix``, in the order they ran."""
    t = trace.column("t_s")
    spans = []
    for phase in trace.distinct("phase"):
        if phase and phase.startswith(prefix):
            rows = trace.rows_where("phase", phase)
            spans.append((t[rows[0]], t[rows[-1]], phase))
    return spans


MAX_GAP_S = 1.0  # allocator readings further apart than this are not joined by a line


def _panel(ax, name: str, v, s: dict, color: str) -> None:
    """One variant: RSS, allocator held and live, batches, settled floors, the trim."""
    t = np.array(v.trace.column("t_s"), dtype=float)
    rss = np.array(v.trace.column("rss_bytes"), dtype=float) / MB  # None: NaN
    ax.plot(*decimate(t, rss), color=color, lw=1.8, label="RSS", gid="rss_bytes")
    for column, style, label in (
        ("held_bytes", "--", "allocator held"),
        ("live_bytes", ":", "allocator live"),
    ):
        values = np.array(v.trace.column(column), dtype=float) / MB
        read = ~np.isnan(values)
        if not read.any():
            continue
        xs, ys = t[read], values[read]
        ax.plot(
            *decimate(*with_gaps(xs, ys, MAX_GAP_S)),
            color=color,
            lw=1.0,
            ls=style,
            label=label,
            gid=column,
        )
        # A reading with no neighbour close by (the one read after each pause) is a marker:
        # no line leads to it, and it must still show.
        lone = lone_points(xs, MAX_GAP_S)
        if lone:
            ax.plot(
                xs[lone].tolist(),
                ys[lone].tolist(),
                ls="none",
                marker="o",
                ms=4,
                color=color,
                mfc="white" if column == "live_bytes" else color,
            )
    # Batches and floors are one artist each, however many batches a long run has.
    batches = [[(a, 0), (a, 1), (b, 1), (b, 0)] for a, b, _ in _spans(v.trace, "batch")]
    if batches:
        tint = PolyCollection(batches, facecolor=color, alpha=0.08, lw=0)
        tint.set_transform(ax.get_xaxis_transform())
        ax.add_collection(tint, autolim=False)
    pauses, floor_values = _spans(v.trace, "pause"), s.get("floors_bytes", [])
    # a pause without a floor draws nothing
    floors = list(zip(pauses, floor_values, s.get("floors_settled", []), strict=False))
    for settled_, width, style in ((True, 4, "-"), (False, 1.5, (0, (1, 1)))):
        # A floor from a pause that had not settled is dotted: never read as a floor.
        ticks = [(end, f / MB) for (_, end, _), f, ok in floors if bool(ok) is settled_]
        if ticks:
            ax.hlines(
                [y for _, y in ticks],
                [x - WINDOW_S for x, _ in ticks],
                [x for x, _ in ticks],
                colors="black",
                lw=width,
                linestyles=[style],
                capstyle="butt",
            )
    trims = _spans(v.trace, "trim") or _spans(v.trace, "after trim")
    if trims:
        ax.axvline(trims[0][0], color="black", ls="-.", lw=0.9)
        ax.text(
            trims[0][0], 0.95, " trim", transform=ax.get_xaxis_transform(), fontsize=9, va="top"
        )
    settings = s.get("settings")
    ax.text(
        0.005,
        0.95,
        name if not settings or settings == name else f"{name}: {settings}",
        transform=ax.transAxes,
        fontsize=12,
        fontweight="bold",
        color=color,
        va="top",
    )
    ax.grid(alpha=0.3)
    ax.set_ylabel("MB")


def _below(fig, axes, handles, labels, ncol: int, key: str, what: str, summary: dict) -> None:
    """A panel figure's legend under the panels, its time axis and its title."""
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=ncol,
        fontsize=10 if ncol <= 3 else 9,
        frameon=False,
        bbox_to_anchor=(0.5, -0.01 if ncol <= 3 else -0.02),
    )
    axes[-1][0].set_xlabel(f"seconds since the variant's start — {key}")
    fig.suptitle(_title(summary, what), fontsize=11)


def memory_figure(data: dict, summary: dict):
    """One panel per variant (shared y axis), for slides: readable at 100 % on a laptop."""
    n = max(1, len(data))
    fig, axes = new_figure(n, (12, 2.4 * n + 1.6), sharex=True, sharey=True, squeeze=False)
    for i, (name, v) in enumerate(data.items()):
        _panel(axes[i][0], name, v, summary["variants"].get(name, {}), COLORS[i % len(COLORS)])
    axes[0][0].set_ylim(bottom=0)
    handles, labels = axes[0][0].get_legend_handles_labels()
    _below(
        fig,
        axes,
        handles,
        labels,
        3,
        "tint: batches; black ticks: settled pause floors (dotted: not settled)",
        "Memory over time (MB = 2^20 bytes)",
        summary,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def rss_overlay_figure(data: dict, summary: dict):
    """RSS of every variant on one axis, to compare them at a glance."""
    fig, ax = new_figure(figsize=(12, 5))
    for i, (name, v) in enumerate(data.items()):
        ax.plot(
            *decimate(
                np.array(v.trace.column("t_s"), dtype=float),
                np.array(v.trace.column("rss_bytes"), dtype=float) / MB,
            ),
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


#: more batches than this and the floors are drawn as lines, not labelled bars
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
        cells = [r[key] for r in sweep["rows"]]
        mid = [_middle(c) for c in cells]
        ax.plot(xs, mid, color=color, marker="o", lw=1.8, label=label)
        if runs > 1:
            lows = [c["min"] / MB if c else float("nan") for c in cells]
            highs = [c["max"] / MB if c else float("nan") for c in cells]
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


def _middle(cell) -> float:
    if isinstance(cell, dict):
        return cell["median"] / MB if cell else float("nan")
    return cell / MB if cell is not None else float("nan")


LAYER_COLORS = {"live": "#2e4057", "free": "#f3d9a4", "not heap": "#c5cad3"}
KIND_COLORS = {
    "free_bin_bytes": "#d1495b",
    "top_bytes": "#f4a259",
    "dirty_bytes": "#00798c",
    "muzzy_bytes": "#66a182",
    "pageheap_free_bytes": "#00798c",
    "other_free_bytes": "#a07a3c",
}


def layers_figure(data: dict, summary: dict):
    """Per variant, RSS in layers over time (stacked: allocator live, free held, not heap, from
    the readings during batches and after each pause), and at each floor the free space split
    by kind (a narrow stacked bar: bins, top, dirty, muzzy … as the allocator told)."""
    names = [n for n in data if any(x is not None for x in data[n].trace.column("live_bytes"))]
    n = max(1, len(names))
    fig, axes = new_figure(n, (12, 2.4 * n + 1.6), sharex=True, sharey=True, squeeze=False)
    for i, name in enumerate(names):
        ax, v, s = axes[i][0], data[name], summary["variants"].get(name, {})
        t = np.array(v.trace.column("t_s"), dtype=float)
        rss = np.array(v.trace.column("rss_bytes"), dtype=float) / MB
        live = np.array(v.trace.column("live_bytes"), dtype=float) / MB
        held = np.array(v.trace.column("held_bytes"), dtype=float) / MB
        read = ~np.isnan(live) & ~np.isnan(held) & ~np.isnan(rss)
        tt, lv = with_gaps(t[read], live[read], MAX_GAP_S)
        _, hd = with_gaps(t[read], held[read], MAX_GAP_S)
        _, rs = with_gaps(t[read], rss[read], MAX_GAP_S)
        # free held, clipped to what is resident (an allocator may count as held the chunks a
        # trim handed back)
        free = np.minimum(np.clip(hd - lv, 0, None), np.clip(rs - lv, 0, None))
        bottom = np.zeros_like(lv)
        for top, (label, color) in zip((lv, lv + free, rs), LAYER_COLORS.items(), strict=True):
            ax.fill_between(
                tt,
                bottom,
                top,
                color=color,
                alpha=0.85,
                lw=0,
                label=f"allocator {label}" if label != "not heap" else label,
            )
            bottom = top
        ax.plot(*decimate(t, rss), color="black", lw=1.0, label="RSS")
        pauses = _spans(v.trace, "pause")
        for (_, end, _), layer in zip(pauses, s.get("layers_by_floor") or [], strict=False):
            if not layer:
                continue
            bottom = layer["allocator_live_bytes"] / MB
            for kind, value in (layer.get("free_kinds") or {}).items():
                if value and value > 0:
                    ax.bar(
                        end,
                        value / MB,
                        width=1.2,
                        bottom=bottom,
                        color=KIND_COLORS[kind],
                        edgecolor="black",
                        lw=0.4,
                        align="edge",
                    )
                    bottom += value / MB
        verdict = (s.get("diagnosis") or {}).get("verdict")
        ax.text(
            0.005,
            0.95,
            f"{name}" + (f": {verdict}" if verdict else ""),
            transform=ax.transAxes,
            fontsize=12,
            fontweight="bold",
            color=COLORS[i % len(COLORS)],
            va="top",
        )
        ax.set_ylabel("MB")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylim(bottom=0)
    handles, labels = axes[0][0].get_legend_handles_labels()
    from matplotlib.patches import Patch

    handles += [
        Patch(color=c, label=k.removesuffix("_bytes").replace("_", " "))
        for k, c in KIND_COLORS.items()
        if k != "pageheap_free_bytes"
    ]
    _below(
        fig,
        axes,
        handles,
        [h.get_label() for h in handles],
        5,
        "bars at each floor: the free space held, by kind",
        "Where the memory sits (MB = 2^20 bytes)",
        summary,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


ARENA_COLORS = ("#2e4057", "#d1495b", "#f28482", "#f4a259", "#66a182", "#8d96a3")


def arenas_figure(summary: dict):
    """Each variant's arenas at each floor, where its allocator splits them: the bytes each
    holds from the system, split as the allocator tells (in use, free in bins, top chunk…):
    how the free space spreads, and how the count grew."""
    split = {n: s for n, s in summary["variants"].items() if s.get("arena_detail")}
    if not split:
        return None
    rows = len(split)
    floors = max(len(s["arena_detail"]) for s in split.values())
    fig, axes = new_figure(rows, (12, 2.6 * rows + 1.2), squeeze=False, sharey=True)
    seen = {k for s in split.values() for floor in s["arena_detail"] for a in floor for k in a}
    parts = [
        (key, color, label)
        for (key, label), color in zip(
            [p for p in allocators.arena_parts() if p[0] in seen], ARENA_COLORS, strict=False
        )
    ]
    for r, (name, s) in enumerate(split.items()):
        ax = axes[r][0]
        x = 0
        ticks, labels = [], []
        for k, floor in enumerate(s["arena_detail"]):
            start = x
            for arena in floor:
                bottom = 0.0
                for key, color, label in parts:
                    value = (arena.get(key) or 0) / MB
                    ax.bar(
                        x,
                        value,
                        bottom=bottom,
                        color=color,
                        width=0.9,
                        label=label if (x == 0) else None,
                    )
                    bottom += value
                x += 1
            ticks.append((start + x - 1) / 2)
            labels.append(f"after batch {k + 1}\n({len(floor)} arenas)")
            x += 1.5
        ax.set_xticks(ticks, labels)
        ax.set_ylabel("MB per arena")
        ax.grid(axis="y", alpha=0.3)
        ax.text(
            0.005,
            0.95,
            f"{name}: {s.get('settings', name)}",
            transform=ax.transAxes,
            fontsize=11,
            fontweight="bold",
            va="top",
        )
    axes[0][0].legend(fontsize=9, loc="upper right")
    fig.suptitle(_title(summary, f"The arenas at each of {floors} floors"), fontsize=11)
    fig.tight_layout()
    return fig


def _spread(cell) -> tuple[float, float, float] | None:
    """(median, min, max) of a figure or a spread; None when not measured."""
    if isinstance(cell, dict):
        return (cell["median"], cell["min"], cell["max"]) if cell else None
    return None if cell is None else (cell, cell, cell)


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
    for name, v in summary["variants"].items():
        floor = _spread(v.get("median_floor_bytes"))
        p99 = _spread((v.get("cost") or {}).get("latency_p99_ms"))
        if floor and p99:
            found[name] = (floor, p99, _spread((v.get("cost") or {}).get("cpu_ms_per_request")))
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
    whiskers = f"whiskers: min–max over {runs} runs; " if runs > 1 else ""
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


def sweeps(summary: dict, folder: Path, runs: int = 1) -> list[Path]:
    written = []
    for sweep in summary.get("sweeps") or []:
        written += save(sweep_figure(sweep, runs), folder, f"sweep-{sweep['name']}")
    return written


def draw_all(data: dict, summary: dict, folder: Path) -> list[Path]:
    written = memory_over_time(data, summary, folder) + floors_by_batch(summary, folder)
    if any(s.get("layers") for s in summary["variants"].values()):
        written += save(layers_figure(data, summary), folder, "layers")
    arenas = arenas_figure(summary)
    if arenas is not None:
        written += save(arenas, folder, "arenas")
    return written + sweeps(summary, folder) + tradeoff(summary, folder)
