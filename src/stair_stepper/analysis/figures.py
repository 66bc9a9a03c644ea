"""The pictures: memory over time, floors by batch, floors across runs (matplotlib, Agg).

Every figure is written as PNG (for people) and SVG (for documents) beside
the data. Needs the ``[analysis]`` extra; nothing else in stair-stepper does.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from stair_stepper.analysis.read import WINDOW_S
from stair_stepper.analysis.spread import MB
from stair_stepper.analysis.summary import c_library_version

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
        facts.append(f"C library {c_library_version(prov)}")
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
