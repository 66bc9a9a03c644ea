"""Rendering a summary as markdown (``summary.md``), the terminal's table, and the result files:
nothing here computes a figure (memray's reporters, apart from the tracker)."""

from __future__ import annotations

import json
from pathlib import Path

from stair_stepper import files
from stair_stepper.analysis import cost, verdict
from stair_stepper.analysis.html import figures_mark
from stair_stepper.analysis.production import container_text, processes_text
from stair_stepper.analysis.repeats import REPEATED_FIELDS
from stair_stepper.analysis.spread import Spread
from stair_stepper.analysis.spread import text as spread_text
from stair_stepper.analysis.summary import c_library_version, foreign
from stair_stepper.analysis.table import MB, markdown_table, mb
from stair_stepper.record.results import NOT_MEASURED


def _machine(prov: dict) -> str:
    return (
        f"Python {prov.get('python')}, C library {c_library_version(prov)}, "
        f"{prov.get('cpu_count')} CPUs, kernel {prov.get('kernel')}."
    )


def markdown(summary: dict) -> str:
    """The table people read (MB = 2^20 bytes), with a few sentences of interpretation."""
    variants = summary["variants"]
    unprobed = foreign(summary)
    asked = {name: s.get("probed", not unprobed) for name, s in variants.items()}
    n_floors = max((len(s["floors_bytes"]) for s in variants.values()), default=0)
    head = ["variant", "baseline", "peak", *[f"floor {i + 1}" for i in range(n_floors)]]
    head += ["after trim", "reclaimable", "slope/batch", "steps", "× best (median floor)"]
    rows = []
    for name, s in variants.items():
        floors = [
            mb(f) + ("" if ok else "*")
            for f, ok in zip(s["floors_bytes"], s["floors_settled"], strict=True)
        ] + ["–"] * (n_floors - len(s["floors_bytes"]))
        ratio = f"{s['ratio_to_best']:.2f}" if s["ratio_to_best"] else "–"
        row = [name, mb(s["baseline_bytes"]), mb(s["peak_bytes"]), *floors]
        row += [
            NOT_MEASURED if not asked[name] else mb(s["after_trim_bytes"]),
            NOT_MEASURED if not asked[name] else mb(s["reclaimable_bytes"]),
            mb(s["slope_bytes_per_batch"], 1),
            str(s["steps"]),
            ratio,
        ]
        rows.append(row)
    lines = markdown_table(head, rows)
    text = [f"# stair-stepper summary: {summary.get('preset') or 'trace'}", ""]
    text += verdict.verdict_text(summary)
    if summary.get("described"):
        text += [
            f"Preset `{summary.get('preset')}`: {summary['described']}. "
            + _machine(summary.get("provenance") or {}),
            "",
        ]
    text.append(
        "All memory figures are RSS in MB (2^20 bytes). A floor marked * comes from a pause "
        "whose RSS had not settled; medians and ratios leave it out."
    )
    text.append("")
    if summary.get("config"):
        text += variants_text(variants)
    text.extend(lines)
    text += ["", figures_mark("floors", "memory-rss"), ""]
    text += price_text(summary)
    text += [figures_mark("tradeoff"), ""]
    text += sweep_text(summary.get("sweeps") or [])
    text += [figures_mark("sweep-"), ""]
    text += container_text(variants)
    text += layers_text(variants)
    text += [figures_mark("layers", "arenas"), ""]
    text += processes_text(variants)
    text.extend(interpretation(summary))
    if unprobed:
        text.append(
            "- After trim, reclaimable, and the allocator's live and held bytes are "
            f"{NOT_MEASURED} where no agent answered: a --command server that is not Python "
            "(or ignores PYTHONPATH) cannot be asked to trim or to report its allocator's "
            "accounting. RSS, PSS and USS are measured, summed over its process tree (the "
            "trace's 'processes' column counts them)."
        )
    if summary.get("warnings"):
        text += ["", "Warnings:", *[f"- {w}" for w in summary["warnings"]]]
    if summary.get("status") and summary["status"] != "complete":
        text += ["", f"**This run did not complete: {summary['status']}.**"]
    return "\n".join(text) + "\n"


def variants_text(variants: dict) -> list[str]:
    """Each variant's settings exactly as given, whether they read back so, and the time a
    periodic trim took."""
    lines = ["Variants, their settings as given (read back in each variant's own process):", ""]
    for name, s in variants.items():
        checked = {True: "read back as given", False: "READ BACK DIFFERENTLY", None: ""}
        note = checked[s.get("settings_read_back")]
        line = f"- {name}: `{s.get('settings', name)}`" + (f" ({note})" if note else "")
        if s.get("python"):
            objects = s.get("python_allocator")
            line += f"; Python {s['python']}" + (f", objects on {objects}" if objects else "")
        trims = s.get("periodic_trim")
        if trims and trims.get("total_s") is not None:
            share = f", {trims['share']:.2%} of the run" if trims.get("share") else ""
            line += f"; {trims['count']} trims took {trims['total_s'] * 1000:.0f} ms{share}"
        spent = Spread.from_json(s.get("trims_s"))
        if spent is not None:
            line += f"; the trims took {spent.text(3, 1)} s per run"
        lines.append(line)
    return [*lines, ""]


def price_text(summary: dict) -> list[str]:
    """What each variant costs, and how the numbers were produced: median (min–max) over the
    batches of one run, or over the runs of a repeat."""
    repeated = "runs" in summary
    rows = cost.cost_table(summary["variants"], repeated)
    if not any(r[1] != "–" for r in rows):
        return []
    over = "the runs" if repeated else "this run's batches"
    return [
        f"The price ({summary.get('mode')}; median (min–max) over {over}):",
        "",
        *markdown_table(cost.COST_HEAD, rows),
        "",
    ]


def layers_text(variants: dict) -> list[str]:
    """Where the memory sits at the last floor, and each variant's diagnosis with its numbers."""
    rows = []
    for name, s in variants.items():
        layer = s.get("layers")
        if not layer:
            continue
        kinds = ", ".join(
            f"{k.removesuffix('_bytes').replace('_', ' ')} {mb(v)}"
            for k, v in (layer.get("free_kinds") or {}).items()
            if v and abs(v) >= MB / 2  # not a "-0": what rounds to nothing is not a kind
        )
        traced = layer.get("python_traced_bytes")
        arenas = layer.get("python_arena_bytes")
        rows.append(
            [
                name,
                mb(layer["rss_bytes"]),
                mb(layer["allocator_live_bytes"]) + (f" ({mb(traced)} Python)" if traced else ""),
                mb(layer["free_held_bytes"]) + (f" ({kinds})" if kinds else ""),
                mb(layer.get("allocator_metadata_bytes")),
                mb(layer["not_heap_bytes"]) + (f" ({mb(arenas)} Python arenas)" if arenas else ""),
                str(layer.get("arenas") if layer.get("arenas") is not None else "–"),
            ]
        )
    text = []
    if rows:
        head = [
            "variant",
            "RSS",
            "live",
            "free held (by kind)",
            "allocator metadata",
            "not heap",
            "arenas",
        ]
        text += [
            "Where the memory sits at the last floor (MB; the allocator read after the pause):",
            "",
            *markdown_table(head, rows),
            "",
        ]
        traced = [
            s["layers"].get("tracemalloc_bytes")
            for s in variants.values()
            if s.get("layers") and s["layers"].get("tracemalloc_bytes")
        ]
        if traced:
            text += [
                f"tracemalloc (--trace-python) held {mb(max(traced))} MB of its own at the "
                "last floor (in the live bytes above); its cost in time per request is in "
                "docs/benchmarks.md.",
                "",
            ]
    diagnosed = [(n, s["diagnosis"]) for n, s in variants.items() if s.get("diagnosis")]
    if diagnosed:
        text += ["Diagnosis:", ""]
        text += [f"- {name}: **{d['verdict']}**: {d['why']}." for name, d in diagnosed]
        text.append("")
    return text


def sweep_text(sweeps: list[dict], runs: int = 1) -> list[str]:
    """Each sweep as a table along its axis."""
    text = []
    for sweep in sweeps:
        head = [sweep["var"], "variant", "median settled floor, MB", "after trim, MB"]
        rows = [
            [
                r["value"],
                r["variant"],
                spread_text(Spread.from_json(r["median_floor_bytes"])),
                spread_text(Spread.from_json(r["after_trim_bytes"])),
            ]
            for r in sweep["rows"]
        ]
        what = f" (median (min–max) over {runs} runs)" if runs > 1 else ""
        text += [
            f"Sweep `{sweep['name']}` over {sweep['var']}{what}:",
            "",
            *markdown_table(head, rows),
            "",
        ]
    return text


def interpretation(summary: dict) -> list[str]:
    """Plain sentences for the numbers that matter; nothing that was not measured."""
    variants = summary["variants"]
    best = summary.get("best_variant")
    ranks = verdict.standings(summary)
    out: list[str] = []
    for name, s in variants.items():
        if best and name != best and s["ratio_to_best"]:
            mine, theirs = ranks[name].floor, ranks[best].floor
            judged = mine and theirs and mine.judged and theirs.judged
            how = (
                "not judged (one batch)"
                if not judged
                else "within the spread of the batches' floors"
                if mine.overlaps(theirs)  # type: ignore[union-attr]
                else f"{s['ratio_to_best']:.1f}× {best}'s"
            )
            out.append(
                f"- {name}'s median pause floor against {best}'s: {how} "
                f"({mb(s['median_floor_bytes'])} vs {mb(variants[best]['median_floor_bytes'])} MB)."
            )
        if s["reclaimable_bytes"] is not None and s["last_floor_bytes"]:
            share = s["reclaimable_bytes"] / s["last_floor_bytes"]
            out.append(
                f"- {name}: trimming took RSS from {mb(s['last_floor_bytes'])} to "
                f"{mb(s['after_trim_bytes'])} MB, so {share:.0%} of its last floor was free space "
                "the allocator held, not live data."
            )
        if s["last_floor_live_bytes"] and s["last_floor_held_bytes"]:
            out.append(
                f"- {name} at its last floor: the allocator counted "
                f"{mb(s['last_floor_live_bytes'])} MB live in {mb(s['last_floor_held_bytes'])} MB "
                "held."
            )
    return out


def write(folder: Path, summary: dict) -> tuple[Path, Path]:
    """summary.json and summary.md of one run, or of a --repeat folder (``"runs"`` in it)."""
    folder = Path(folder)
    json_path, md_path = folder / "summary.json", folder / "summary.md"
    files.write_text(json_path, json.dumps(summary, indent=2) + "\n")  # whole or not at all
    text = markdown_repeats(summary) if "runs" in summary else markdown(summary)
    files.write_text(md_path, text)
    return json_path, md_path


def short_table(summary: dict) -> str:
    """The terminal table printed after an experiment."""
    rows = [("variant", "baseline", "peak", "floors after each pause", "after trim")]
    for name, s in summary["variants"].items():
        rows.append(
            (
                name,
                mb(s["baseline_bytes"]),
                mb(s["peak_bytes"]),
                " → ".join(mb(f) for f in s["floors_bytes"]) or "–",
                mb(s["after_trim_bytes"])
                if s.get("probed", not foreign(summary))
                else NOT_MEASURED,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: B905
        for r in rows
    ]
    return "MB (2^20 bytes) of RSS\n" + "\n".join(lines)


def repeats_table(result: dict) -> str:
    """The table and ratio lines of a --repeat result: median (min–max) over its runs."""
    head = ["variant", "baseline", "peak", "median floor", "last floor", "after trim", "steps"]
    rows = [
        [
            name,
            *(spread_text(Spread.from_json(f[k])) for k in REPEATED_FIELDS[:-1]),
            spread_text(Spread.from_json(f["steps"]), 0, 1),
        ]
        for name, f in result["variants"].items()
    ]
    lines = [*markdown_table(head, rows), ""]
    for pair, sp in result["ratios"].items():
        if sp:
            lines.append(
                f"- {pair}, median settled floor: {sp['median']:.2f} "
                f"({sp['min']:.2f}–{sp['max']:.2f}, {sp['n']} runs)."
            )
    return "\n".join(lines) + "\n"


def markdown_repeats(result: dict) -> str:
    """Each figure as median (min–max) over the runs."""
    text = [
        f"# stair-stepper summary: {result.get('preset')}, {result['runs']} runs",
        "",
        f"Each figure is the median over {result['runs']} runs ({', '.join(result['run_names'])})"
        ", with the lowest and highest in brackets. MB = 2^20 bytes of RSS; floors are settled "
        "pause floors.",
        "",
    ]
    if result.get("described"):
        text += [f"Preset `{result.get('preset')}`: {result['described']}.", ""]
    text[2:2] = verdict.verdict_text(result)
    text += variants_text(result["variants"])
    text.append(repeats_table(result))
    text += ["", figures_mark("floors-runs"), ""]
    text += price_text(result)
    text += [figures_mark("tradeoff"), ""]
    text += sweep_text(result.get("sweeps") or [], result["runs"])
    text += [figures_mark("sweep-"), ""]
    if result.get("warnings"):
        text += ["", "Warnings:", *[f"- {w}" for w in result["warnings"]]]
    if result.get("status") and result["status"] != "complete":
        text += ["", f"**This run did not complete: {result['status']}.**"]
    return "\n".join(text) + "\n"
