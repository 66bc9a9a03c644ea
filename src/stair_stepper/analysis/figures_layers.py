"""The figures of where the memory sits: RSS in layers over time with the free space by kind at
each floor, and the arenas at each floor, as each allocator's module names them."""

from __future__ import annotations

import numpy as np

from stair_stepper import allocators
from stair_stepper.analysis.figures import (
    COLORS,
    MAX_GAP_S,
    _below,
    _spans,
    _title,
    decimate,
    new_figure,
    with_gaps,
)
from stair_stepper.analysis.spread import MB

LAYER_COLORS = {"live": "#2e4057", "free": "#f3d9a4", "not heap": "#c5cad3"}
KIND_PALETTE = ("#d1495b", "#f4a259", "#00798c", "#66a182", "#8d96a3", "#2e4057")
#: each kind of free space the allocators name, in a colour of its own; the rest in brown
KIND_COLORS = {
    **dict(zip(allocators.free_kinds(), KIND_PALETTE * 4, strict=False)),
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

    shown = {
        k
        for s in summary["variants"].values()
        for layer in s.get("layers_by_floor") or []
        if layer
        for k in layer.get("free_kinds") or {}
    }
    handles += [
        Patch(color=c, label=k.removesuffix("_bytes").replace("_", " "))
        for k, c in KIND_COLORS.items()
        if k in shown
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
