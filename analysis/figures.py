"""The pictures: memory over time, floors by batch, floors across runs (matplotlib, Agg).

Every figure is written as PNG (for people) and SVG (for documents) beside
the data. Needs the ``[analysis]`` extra; nothing else in stair-stepper does.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import summary as numbers  # noqa: E402

MB = numbers.MB
COLORS = ("#d1495b", "#00798c", "#edae49", "#66a182", "#2e4057", "#8d96a3")


def _save(fig, folder: Path, stem: str) -> list[Path]:
    paths = []
    for ext in ("png", "svg"):
        path = Path(folder) / f"{stem}.{ext}"
        fig.savefig(path, dpi=130 if ext == "png" else None, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _title(summary: dict, what: str) -> str:
    """Two lines: what and which preset; then the settings every variant shared."""
    prov = summary.get("provenance") or {}
    c = summary.get("config") or {}
    first = f"{what} — preset {summary.get('preset') or 'trace'}"
    facts = []
    if c:
        facts.append(
            f"PYTHONMALLOC={c.get('python_malloc')}, concurrency {c.get('concurrency')}, "
            f"SLEEP_MS={c.get('sleep_ms')}, {c.get('tags') or 'all sizes'}"
        )
    if prov.get("python"):
        facts.append(f"Python {prov['python']}")
    if prov.get("glibc"):
        facts.append(f"glibc {numbers.glibc_version(prov)}")
    return first + ("\n" + "; ".join(facts) if facts else "")


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


def memory_over_time(data: dict, summary: dict, folder: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(11, 5.5))
    strip = ax.get_xaxis_transform()  # x in data, y in axes fraction: the batch strips
    for i, (name, v) in enumerate(data.items()):
        color = COLORS[i % len(COLORS)]
        t = v.trace.column("t_s")
        ax.plot(t, [r / MB for r in v.trace.column("rss_bytes")], color=color, lw=1.8,
                label=f"{name} — RSS")  # fmt: skip
        for column, style, label in (("held_bytes", "--", "held"), ("live_bytes", ":", "live")):
            # Only where the allocator answered (a busy server answers late): joined points.
            points = [(x, y / MB) for x, y in zip(t, v.trace.column(column), strict=True)
                      if y is not None]  # fmt: skip
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, color=color, lw=0.9, ls=style,
                        label=f"{name} — allocator {label} (where it answered)")  # fmt: skip
        for start, end, _ in _spans(v.trace, "batch"):
            ax.axvspan(start, end, color=color, alpha=0.06, lw=0)
            ax.add_patch(plt.Rectangle((start, 0.005 + 0.022 * i), end - start, 0.016,
                                       transform=strip, color=color, alpha=0.8, lw=0))  # fmt: skip
        s = summary["variants"].get(name, {})
        floors = zip(_spans(v.trace, "pause"), s.get("floors_bytes", []),
                     s.get("floors_settled", []), strict=False)  # fmt: skip
        for (_, end, _), floor, ok in floors:
            # A floor from a pause that had not settled: hollow, so it is never read as one.
            ax.plot([end - numbers.WINDOW_S, end], [floor / MB] * 2, color=color,
                    lw=4 if ok else 1.5, ls="-" if ok else (0, (1, 1)),
                    solid_capstyle="butt")  # fmt: skip
        trims = _spans(v.trace, "trim") or _spans(v.trace, "after trim")
        if trims:
            ax.axvline(trims[0][0], color=color, ls="-.", lw=0.9)
            ax.text(trims[0][0], 0.97 - 0.07 * i, "trim ", transform=strip, color=color,
                    fontsize=8, rotation=90, va="top", ha="right")  # fmt: skip
    ax.set_xlabel("seconds since the variant's start (bars at the bottom and tint: batches; "
                  "thick ticks: settled pause floors, dotted: not settled)")  # fmt: skip
    ax.set_ylabel("MB (2^20 bytes)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(_title(summary, "Memory over time"))
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    return _save(fig, folder, "memory")


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
                ax.text(x, v / MB, f"{v / MB:.0f}{'' if good else '*'}", ha="center",
                        va="bottom", fontsize=7)  # fmt: skip
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("RSS floor, MB (2^20 bytes)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(_title(summary, "Floors by batch (* hatched: pause had not settled)"))
    ax.legend(fontsize=8)
    return _save(fig, folder, "floors")


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
            mids.append(numbers.statistics.median(column) / MB if column else float("nan"))
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
    return _save(fig, folder, stem)


def draw_all(data: dict, summary: dict, folder: Path) -> list[Path]:
    return memory_over_time(data, summary, folder) + floors_by_batch(summary, folder)
