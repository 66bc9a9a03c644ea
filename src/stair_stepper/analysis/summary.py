"""Numbers from a result folder: baseline, peak, pause floors, steps, trim (no matplotlib).

Definitions (the README repeats them):

- *baseline*: median RSS over the baseline phase, before any load;
- *floor* of pause k: the lowest RSS in the last second of pause k, i.e. what the
  process still holds once the requests of batch k are long gone (the lowest,
  because an allocator that decays its free pages, like jemalloc, can drop
  within that second: the floor is where it landed);
- *settled*: the pause's RSS moved less than 1 MB over its last 2 s
  (``traces.settled``); a floor from a pause that had not settled is marked, and
  the median floors and ratios use settled floors only;
- *step*: a floor higher than the floor of the pause before it by more than
  ``step_threshold_bytes`` (floor to floor: the rise from the baseline to the
  first floor is the load arriving, not a step);
- *slope*: least-squares growth of the floors, bytes per batch;
- *after trim*: the lowest RSS in the last second after the trim (``POST
  /__stair_stepper__/trim``);
- *reclaimable* = last floor − after trim: memory the allocator held as free space;
- *ratio_to_best*: a variant's median settled floor over the lowest one (the
  median, because an idle floor can be noisy, e.g. plain jemalloc's).

A ``--repeat`` folder (run-1 … run-N) is summarised run by run and then as
median (min–max) over the runs (``summarise_repeats``).

A bare ``stair-stepper record`` CSV has no phases: it gets baseline (first
second), peak and last values only.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from stair_stepper import files
from stair_stepper.analysis import cost, layers
from stair_stepper.errors import NewerFormat, NoTraces, TraceError
from stair_stepper.load.openloop import fell_behind
from stair_stepper.record import results
from stair_stepper.record.results import NOT_MEASURED
from stair_stepper.record.schema import (
    ARENAS_SUFFIX,
    BATCHES_SUFFIX,
    RUN_PREFIX,
    STRUCTURE_SUFFIX,
    Table,
    companion,
    read_batches,
    read_table,
    read_trace,
    settled,
    variant_files,
)

MB = 2**20
DEFAULT_STEP_THRESHOLD = 16 * MB
WINDOW_S = 1.0


@dataclass
class VariantData:
    name: str
    trace: Table
    batches: Table | None
    warnings: list[str] = field(default_factory=list)
    structure: Table | None = None  # the allocator's structure after each idle phase
    arenas: Table | None = None  # per arena, at the same readings


#: the trace columns the summary and the figures read (parsed, and checked, on loading)
ANALYSED = ("t_s", "phase", "rss_bytes", "live_bytes", "held_bytes")


def load_folder(folder: Path) -> tuple[dict[str, VariantData], dict, list[str]]:
    """Traces, batch logs and meta.json of a result folder (or one bare trace CSV)."""
    folder = Path(folder)
    warnings: list[str] = []
    if folder.is_file():
        files = {folder.name.removesuffix(".csv").removesuffix(".trace"): folder}
        meta: dict = {}
    elif folder.is_dir():
        files = variant_files(folder)
        if not files:
            files = {p.stem: p for p in sorted(folder.glob("*.csv")) if "batches" not in p.name}
        try:
            meta = results.read_meta(folder)  # NewerFormat: one sentence for the command line
        except NewerFormat:
            raise
        except ValueError:
            meta = {}
            warnings.append("meta.json is damaged; settings are not shown.")
    else:
        raise NoTraces(f"{folder} does not exist.")
    ran = [n for n in meta.get("config", {}).get("variants", []) if n in files]
    files = {n: files[n] for n in [*ran, *(n for n in files if n not in ran)]}  # run order
    data: dict[str, VariantData] = {}
    for name, path in files.items():
        try:
            trace = read_trace(path).parse(*ANALYSED)
        except TraceError as exc:
            warnings.append(str(exc))
            continue
        if len(trace) == 0:
            warnings.append(f"{path.name} has no samples.")
            continue
        batches = None
        batch_path = companion(path, BATCHES_SUFFIX)
        if batch_path.exists():
            try:
                batches = read_batches(batch_path)
                warnings.extend(batches.warnings)
            except TraceError as exc:
                warnings.append(str(exc))
        warnings.extend(trace.warnings)
        data[name] = VariantData(name, trace, batches)
        for suffix, attr in ((STRUCTURE_SUFFIX, "structure"), (ARENAS_SUFFIX, "arenas")):
            beside = companion(path, suffix)
            if beside.exists():
                try:
                    setattr(data[name], attr, read_table(beside, ("t_s", "phase")))
                except TraceError as exc:
                    warnings.append(str(exc))
    for name in meta.get("config", {}).get("variants", []):
        if name not in data:
            warnings.append(f"variant {name} is in meta.json but has no usable trace.")
    if not data:
        why = f": {warnings[0][:1].lower()}{warnings[0][1:]}" if warnings else "."
        raise NoTraces(f"{folder} holds no usable stair-stepper trace{why}")
    return data, meta, warnings


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _phase_window(trace: Table, phase: str, column: str = "rss_bytes", reduce=min) -> float | None:
    """``reduce`` (min by default) of ``column`` over the last WINDOW_S seconds of a phase."""
    times, values = _phase_values(trace, phase, column)
    if not times:
        return None
    end = times[-1]
    window = [
        v for t, v in zip(times, values, strict=True) if t >= end - WINDOW_S and v is not None
    ]
    return reduce(window) if window else None


def _slope(values: list[float]) -> float | None:
    """Least-squares growth per batch."""
    if len(values) < 2:
        return None
    return statistics.linear_regression(range(1, len(values) + 1), values).slope


def count_steps(floors: list[float], threshold: float) -> int:
    """Floor-to-floor rises larger than ``threshold`` (the baseline does not count)."""
    return sum(1 for a, b in zip(floors, floors[1:]) if b - a > threshold)  # noqa: B905


def _phase_values(trace: Table, phase: str, column: str) -> tuple[list, list]:
    """Times and ``column`` of the rows labelled ``phase``."""
    rows = trace.rows_where("phase", phase)
    times, values = trace.column("t_s"), trace.column(column)
    return [times[i] for i in rows], [values[i] for i in rows]


def pause_settled(v: VariantData, pause: str) -> bool:
    """What the experiment recorded for the pause, else the same rule on the trace."""
    k = int(pause.split()[1])
    if v.batches is not None and "settled" in v.batches.columns:
        for batch, flag in zip(v.batches.column("batch"), v.batches.column("settled"), strict=True):
            if batch == k and flag is not None:
                return bool(flag)
    return settled(*_phase_values(v.trace, pause, "rss_bytes"))


def pause_phases(trace: Table) -> list[str]:
    seen = [p for p in trace.distinct("phase") if p and p.startswith("pause ")]
    return sorted(seen, key=lambda p: int(p.split()[1]))


def variant_summary(v: VariantData, threshold: float) -> dict:
    trace = v.trace
    rss = trace.column("rss_bytes")
    phases = set(trace.distinct("phase")) - {None}
    if phases:
        baseline = _median(_phase_values(trace, "baseline", "rss_bytes")[1])
    else:
        t = trace.column("t_s")
        baseline = _median([r for r, s in zip(rss, t, strict=True) if s - t[0] <= WINDOW_S])
    pauses = [p for p in pause_phases(trace) if _phase_window(trace, p) is not None]
    floors = [_phase_window(trace, p) for p in pauses]
    floors_settled = [pause_settled(v, p) for p in pauses]
    pause_lengths = [
        (times[-1] - times[0]) if times else None
        for times in (_phase_values(trace, p, "rss_bytes")[0] for p in pauses)
    ]
    settled_floors = [f for f, ok in zip(floors, floors_settled, strict=True) if ok]
    after_trim = _phase_window(trace, "after trim")
    last_floor = floors[-1] if floors else None
    # The allocator is read once after each pause ("read K"); older runs polled during it.
    last_read = f"read {pauses[-1].split()[1]}" if pauses else None
    if last_read and last_read not in phases:
        last_read = pauses[-1]
    unasked = v.batches.column("pause_requests") if v.batches is not None else []
    return {
        "baseline_bytes": baseline,
        "peak_bytes": max((r for r in rss if r is not None), default=None),
        "floors_bytes": floors,
        "floors_settled": floors_settled,
        "pause_lengths_s": pause_lengths,
        "unasked_pause_requests": [u for u in unasked if u is not None],
        "last_floor_bytes": last_floor,
        "median_floor_bytes": _median(settled_floors),
        "after_trim_bytes": after_trim,
        "reclaimable_bytes": (
            last_floor - after_trim if last_floor is not None and after_trim is not None else None
        ),
        "slope_bytes_per_batch": _slope(floors),
        "steps": count_steps(floors, threshold),
        "last_floor_live_bytes": _phase_window(trace, last_read, "live_bytes", _median)
        if last_read
        else None,
        "last_floor_held_bytes": _phase_window(trace, last_read, "held_bytes", _median)
        if last_read
        else None,
        "last_rss_bytes": rss[-1],
        "samples": len(trace),
        "duration_s": trace.column("t_s")[-1],
        "ratio_to_best": None,
        "last_floor_ratio_to_best": None,
        **_where_it_sits(v, pauses, floors, after_trim, threshold),
    }


def _where_it_sits(v: VariantData, pauses: list[str], floors: list, after_trim, threshold) -> dict:
    """Layers at each floor, arenas, and the diagnosis (analysis/layers.py)."""
    by_floor = layers.variant_layers(v.structure, pauses, floors)
    last = next((layer for layer in reversed(by_floor) if layer), None)
    arena_floors = layers.arenas_by_floor(v.arenas, pauses)
    found = {
        "layers_by_floor": by_floor,
        "layers": last,
        "arenas": last.get("arenas") if last else None,
        "arena_bytes_by_floor": [[a.get("system_bytes") for a in floor] for floor in arena_floors],
        # per arena, how its held bytes split (where the allocator tells): the arenas figure
        "arena_detail": arena_floors
        if any("system_bytes" in a for f in arena_floors for a in f)
        else [],
    }
    baseline_rss = _median(_phase_values(v.trace, "baseline", "rss_bytes")[1])
    peak = max((r for r in v.trace.column("rss_bytes") if r is not None), default=None)
    baseline = layers.variant_layers(v.structure, ["pause baseline"], [baseline_rss])
    found["diagnosis"] = layers.diagnose(
        {"after_trim_bytes": after_trim, "peak_bytes": peak, "baseline_bytes": baseline_rss},
        by_floor,
        threshold,
        baseline[0],
    )
    return found


def _ratios(variants: dict[str, dict], key: str, out_key: str) -> str | None:
    present = {n: s[key] for n, s in variants.items() if s[key]}
    if not present:
        return None
    best = min(present, key=present.get)
    for s in variants.values():
        s[out_key] = s[key] / present[best] if s[key] else None
    return best


def load_files(paths: list[Path]) -> tuple[dict[str, VariantData], dict, list[str]]:
    """Several bare ``record`` CSVs as the variants of one comparison (named by file)."""
    data: dict[str, VariantData] = {}
    warnings: list[str] = []
    for path in paths:
        name = Path(path).name.removesuffix(".gz").removesuffix(".csv").removesuffix(".trace")
        loaded, _, found = load_folder(Path(path))
        warnings += found
        for v in loaded.values():
            data[name] = VariantData(name, v.trace, v.batches, v.warnings)
    return data, {}, warnings


def summarise(
    folder: Path,
    step_threshold: float = DEFAULT_STEP_THRESHOLD,
    loaded: tuple[dict[str, VariantData], dict, list[str]] | None = None,
) -> dict:
    """The numbers of one result folder (or of data already read, ``loaded``: each CSV is
    parsed once)."""
    data, meta, warnings = loaded or load_folder(folder)
    warnings = list(warnings)
    variants = {name: variant_summary(v, step_threshold) for name, v in data.items()}
    for name, s in variants.items():
        unsettled = [i + 1 for i, ok in enumerate(s["floors_settled"]) if not ok]
        if unsettled:
            lengths = ", ".join(f"{s['pause_lengths_s'][i - 1]:.1f} s" for i in unsettled)
            warnings.append(
                f"{name}: the floor{'s' if len(unsettled) > 1 else ''} of pause "
                f"{', '.join(map(str, unsettled))} ({lengths}) had not settled (RSS still moving "
                "by 1 MB or more over the last 2 s); medians and ratios use settled floors only."
            )
        if any(s["unasked_pause_requests"]) and not (meta.get("config") or {}).get("idle_rps"):
            warnings.append(
                f"{name}: requests the experiment did not send reached the service during a "
                f"pause ({s['unasked_pause_requests']}): the floors may be disturbed."
            )
    meta_variants = meta.get("variants") or {}
    for name, s in variants.items():
        s.update(_settings_of(meta, name), periodic_trim=_periodic_trim(data[name], s))
        s["cost"] = cost.variant_cost(
            data[name].batches, (meta_variants.get(name) or {}).get("trim")
        )
        warnings += _lag_warning(name, s["cost"], meta.get("config") or {})
    best = _ratios(variants, "median_floor_bytes", "ratio_to_best")
    _ratios(variants, "last_floor_bytes", "last_floor_ratio_to_best")
    return {
        "format": results.FORMAT,
        "variants": variants,
        "best_variant": best,
        "sweeps": sweep_rows(variants, (meta.get("config") or {}).get("sweeps") or ()),
        "mode": cost.mode_words(meta.get("config") or {}) if meta.get("config") else None,
        "verdict": cost.verdict(
            variants, meta_variants, meta.get("config") or {}, meta.get("provenance") or {}
        ),
        "step_threshold_bytes": step_threshold,
        "described": results.describe(meta),
        "foreign": bool((meta.get("config") or {}).get("command")),
        "preset": meta.get("config", {}).get("preset"),
        "config": meta.get("config", {}),
        "overrides": meta.get("overrides", {}),
        "provenance": meta.get("provenance", {}),
        "status": meta.get("status"),
        "warnings": warnings,
    }


def _lag_warning(name: str, c: dict | None, config: dict) -> list[str]:
    """An open-loop sender that fell behind its schedule measured less load than it says."""
    rate, lag = config.get("rate"), (c or {}).get("lag_max_ms")
    if not fell_behind(lag, rate):
        return []
    return [
        f"{name}: the open-loop sender fell behind its schedule by up to {lag:.0f} ms: the "
        "rate it reports was not what the server got; lower --rate."
    ]


def _settings_of(meta: dict, name: str) -> dict:
    """The variant's settings exactly as given, and whether every one read back as given."""
    proof = ((meta.get("variants") or {}).get(name) or {}).get("settings") or {}
    values = (proof.get("read_back") or {}).get("values") or {}
    checked = [v.get("same") for v in values.values() if isinstance(v, dict) and "same" in v]
    return {
        "settings": proof.get("described") or name,
        "settings_read_back": all(checked) if checked else None,
    }


def _periodic_trim(v: VariantData, s: dict) -> dict | None:
    """A periodic-trim variant's trims, as the server timed them: count, seconds, share of the
    run's time."""
    if v.batches is None or "trims" not in v.batches.columns:
        return None
    counts = [c for c in v.batches.column("trims") if c is not None]
    seconds = [t for t in v.batches.column("trims_s") if t is not None]
    if not counts:
        return None
    total, duration = (seconds[-1] if seconds else None), s.get("duration_s")
    return {
        "count": counts[-1],
        "total_s": total,
        "share": total / duration if total is not None and duration else None,
    }


def sweep_rows(variants: dict, sweeps) -> list[dict]:
    """Each --sweep laid out along its axis: per value, its variant's median settled floor and
    after-trim floor (one run: the values; a --repeat folder: their spreads)."""
    laid = []
    for sweep in sweeps:
        rows = []
        for value, name in zip(sweep["values"], sweep["variants"], strict=True):
            v = variants.get(name) or {}
            rows.append(
                {
                    "value": value,
                    "variant": name,
                    "median_floor_bytes": v.get("median_floor_bytes"),
                    "after_trim_bytes": v.get("after_trim_bytes"),
                }
            )
        laid.append({"name": sweep["name"], "var": sweep["var"], "rows": rows})
    return laid


def glibc_version(provenance: dict) -> str | None:
    """'2.36' (older result folders said 'glibc-2.36')."""
    raw = provenance.get("glibc")
    return str(raw).removeprefix("glibc-") if raw else None


def mb(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value / MB:,.{digits}f}"


def foreign(summary: dict) -> bool:
    """A --command server: no in-process probe, so no allocator accounting and no trim."""
    return bool(summary.get("foreign") or (summary.get("config") or {}).get("command"))


def markdown_table(head: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines: the one table writer of the summaries, compare and publish."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _machine(prov: dict) -> str:
    return (
        f"Python {prov.get('python')}, glibc {glibc_version(prov)}, "
        f"{prov.get('cpu_count')} CPUs, kernel {prov.get('kernel')}."
    )


def markdown(summary: dict) -> str:
    """The table people read (MB = 2^20 bytes), with a few sentences of interpretation."""
    variants = summary["variants"]
    unprobed = foreign(summary)
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
            NOT_MEASURED if unprobed else mb(s["after_trim_bytes"]),
            NOT_MEASURED if unprobed else mb(s["reclaimable_bytes"]),
            mb(s["slope_bytes_per_batch"], 1),
            str(s["steps"]),
            ratio,
        ]
        rows.append(row)
    lines = markdown_table(head, rows)
    text = [f"# stair-stepper summary: {summary.get('preset') or 'trace'}", ""]
    text += cost.verdict_text(summary)
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
    text.append("")
    text += price_text(summary)
    text += sweep_text(summary.get("sweeps") or [])
    text += layers_text(variants)
    text.extend(interpretation(summary))
    if unprobed:
        text.append(
            "- After trim, reclaimable, and the allocator's live and held bytes are "
            f"{NOT_MEASURED}: a --command server is a foreign process, which cannot be asked "
            "to trim or to report its allocator's accounting. RSS, PSS and USS are measured, "
            "summed over its process tree (the trace's 'processes' column counts them)."
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
        trims = s.get("periodic_trim")
        if trims and trims.get("total_s") is not None:
            share = f", {trims['share']:.2%} of the run" if trims.get("share") else ""
            line += f"; {trims['count']} trims took {trims['total_s'] * 1000:.0f} ms{share}"
        spent = s.get("trims_s")
        if isinstance(spent, dict) and spent:
            line += f"; the trims took {spread_text(spent, 3, 1)} s per run"
        lines.append(line)
    return [*lines, ""]


def price_text(summary: dict) -> list[str]:
    """What each variant costs, and how the numbers were produced."""
    rows = cost.cost_table(summary["variants"], spread_text)
    if not any(r[1] != "–" for r in rows):
        return []
    return [f"The price ({summary.get('mode')}):", "", *markdown_table(cost.COST_HEAD, rows), ""]


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
            if v
        )
        traced = layer.get("python_traced_bytes")
        rows.append(
            [
                name,
                mb(layer["rss_bytes"]),
                mb(layer["allocator_live_bytes"]) + (f" ({mb(traced)} Python)" if traced else ""),
                mb(layer["free_held_bytes"]) + (f" ({kinds})" if kinds else ""),
                mb(layer.get("allocator_metadata_bytes")),
                mb(layer["not_heap_bytes"]),
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
                "the README's benchmarks.",
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
                _mb_or_spread(r["median_floor_bytes"]),
                _mb_or_spread(r["after_trim_bytes"]),
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


def _mb_or_spread(value) -> str:
    return spread_text(value) if isinstance(value, dict) else mb(value)


def interpretation(summary: dict) -> list[str]:
    """Plain sentences for the numbers that matter; nothing that was not measured."""
    variants = summary["variants"]
    best = summary.get("best_variant")
    out: list[str] = []
    for name, s in variants.items():
        if best and name != best and s["ratio_to_best"]:
            out.append(
                f"- {name}'s median pause floor is {s['ratio_to_best']:.1f}× {best}'s "
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
    files.write_text(md_path, markdown_repeats(summary) if "runs" in summary else markdown(summary))
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
                NOT_MEASURED if foreign(summary) else mb(s["after_trim_bytes"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: B905
        for r in rows
    ]
    return "MB (2^20 bytes) of RSS\n" + "\n".join(lines)


# --- repeats ---------------------------------------------------------------------------

REPEATED_FIELDS = (
    "baseline_bytes",
    "peak_bytes",
    "median_floor_bytes",
    "last_floor_bytes",
    "after_trim_bytes",
    "steps",
)
SPREAD_WARNING = 0.10  # (max − min) over the median, as pyperf's "may be unstable"


def run_folders(folder: Path) -> list[Path]:
    """The run-K folders of a --repeat result, in run order (empty for a single run)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    runs = [p for p in folder.glob(f"{RUN_PREFIX}*") if p.is_dir() and p.name[4:].isdigit()]
    return sorted(runs, key=lambda p: int(p.name[4:]))


def spread(values: list) -> dict | None:
    """median, min, max and n of the values that exist."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {
        "median": statistics.median(present),
        "min": min(present),
        "max": max(present),
        "n": len(present),
        "values": values,
    }


def summarise_runs(summaries: list[dict], names: list[str] | None = None) -> dict:
    """Median (min–max) over several runs' summaries, per variant and per ratio."""
    names = names or list(dict.fromkeys(n for s in summaries for n in s["variants"]))
    variants = {
        name: {
            key: spread([s["variants"].get(name, {}).get(key) for s in summaries])
            for key in REPEATED_FIELDS
        }
        for name in names
    }
    ratios = {}
    first = names[0] if names else None
    for other in names[1:]:
        values = []
        for s in summaries:
            a = s["variants"].get(first, {}).get("median_floor_bytes")
            b = s["variants"].get(other, {}).get("median_floor_bytes")
            values.append(a / b if a and b else None)
        ratios[f"{first}/{other}"] = spread(values)
    warnings = []
    for name, fields in variants.items():
        for key in ("median_floor_bytes", "last_floor_bytes", "after_trim_bytes"):
            sp = fields[key]
            if (
                sp
                and sp["n"] > 1
                and sp["median"]
                and (sp["max"] - sp["min"]) > (SPREAD_WARNING * sp["median"])
            ):
                warnings.append(
                    f"{name}: {key.removesuffix('_bytes').replace('_', ' ')} varies "
                    f"{mb(sp['min'])}–{mb(sp['max'])} MB over {sp['n']} runs (more than 10 % of "
                    "its median): the result may be unstable; rerun, or look at what else "
                    "the machine was doing."
                )
    for s in summaries:
        warnings.extend(f"{s.get('run', '?')}: {w}" for w in s.get("warnings", []))
    return {"variants": variants, "ratios": ratios, "runs": len(summaries), "warnings": warnings}


def summarise_repeats(folder: Path, step_threshold: float = DEFAULT_STEP_THRESHOLD) -> dict:
    """A --repeat folder: each run's summary, and median (min–max) over them."""
    runs = run_folders(folder)
    if not runs:
        raise NoTraces(f"{folder} holds no {RUN_PREFIX}K folders.")
    per_run = []
    for run in runs:
        try:
            summary = summarise(run, step_threshold)
        except NoTraces:
            continue
        summary["run"] = run.name
        per_run.append(summary)
    if not per_run:
        raise NoTraces(f"{folder}: none of its runs holds a usable trace.")
    try:
        meta = results.read_meta(folder)
    except NewerFormat:
        raise
    except ValueError:
        meta = {}
    names = [n for n in (meta.get("config") or {}).get("variants", [])] or None
    result = summarise_runs(per_run, names)
    run_meta = results.read_meta(runs[0])
    for name, fields in result["variants"].items():
        fields["cost"] = {
            key: spread(
                [((r["variants"].get(name) or {}).get("cost") or {}).get(key) for r in per_run]
            )
            for key in cost.COST_FIELDS
        }
    result["mode"] = cost.mode_words(meta.get("config") or run_meta.get("config") or {})
    result["verdict"] = cost.verdict(
        result["variants"],
        run_meta.get("variants") or {},
        meta.get("config") or {},
        meta.get("provenance") or {},
    )
    for name, fields in result["variants"].items():  # what a variant is: the same in every run
        first = next((r["variants"][name] for r in per_run if name in r["variants"]), {})
        fields["settings"] = first.get("settings", name)
        fields["settings_read_back"] = first.get("settings_read_back")
        fields["trims_s"] = spread(
            [
                ((r["variants"].get(name) or {}).get("periodic_trim") or {}).get("total_s")
                for r in per_run
            ]
        )
    result.update(
        format=results.FORMAT,
        sweeps=sweep_rows(result["variants"], (meta.get("config") or {}).get("sweeps") or ()),
        described=per_run[0].get("described"),
        preset=per_run[0].get("preset"),
        config=meta.get("config") or per_run[0].get("config"),
        overrides=meta.get("overrides") or per_run[0].get("overrides") or {},
        provenance=meta.get("provenance") or per_run[0].get("provenance"),
        status=meta.get("status"),
        run_names=[s["run"] for s in per_run],
        step_threshold_bytes=step_threshold,
    )
    return result


def floor_columns(summaries: list[dict]) -> tuple[list[str], dict[str, list[list]]]:
    """Each variant's floors over several runs, column by column: ``baseline``, ``after batch
    1`` … ``after batch N`` (N: the most batches any run has) and ``after trim``. A run with
    fewer batches leaves the later batch columns empty; its after-trim floor is always in
    the last column, never in a longer run's batch column."""
    names = list(dict.fromkeys(n for s in summaries for n in s["variants"]))
    n = max((len(v["floors_bytes"]) for s in summaries for v in s["variants"].values()), default=0)
    labels = ["baseline", *[f"after batch {k}" for k in range(1, n + 1)], "after trim"]
    columns: dict[str, list[list]] = {}
    for name in names:
        cells: list[list] = [[] for _ in labels]
        for s in summaries:
            v = s["variants"].get(name)
            if v is None:
                continue
            for k, value in enumerate(
                [v["baseline_bytes"], *v["floors_bytes"]] + [None] * (n - len(v["floors_bytes"]))
            ):
                if value is not None:
                    cells[k].append(value)
            if v["after_trim_bytes"] is not None:
                cells[-1].append(v["after_trim_bytes"])
        columns[name] = cells
    return labels, columns


def spread_text(sp: dict | None, digits: int = 0, scale: float = MB) -> str:
    """``median (min–max)`` of a ``spread``, in MB unless ``scale`` says otherwise."""
    if not sp:
        return "–"
    f = f"{{:,.{digits}f}}"
    med, lo, hi = (f.format(sp[k] / scale) for k in ("median", "min", "max"))
    return f"{med} ({lo}–{hi})"


def repeats_table(result: dict) -> str:
    """The table and ratio lines of a --repeat result: median (min–max) over its runs."""
    head = ["variant", "baseline", "peak", "median floor", "last floor", "after trim", "steps"]
    rows = [
        [name, *(spread_text(f[k]) for k in REPEATED_FIELDS[:-1]), spread_text(f["steps"], 0, 1)]
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
    text[2:2] = cost.verdict_text(result)
    text += variants_text(result["variants"])
    text.append(repeats_table(result))
    text += price_text(result)
    text += sweep_text(result.get("sweeps") or [], result["runs"])
    if result.get("warnings"):
        text += ["", "Warnings:", *[f"- {w}" for w in result["warnings"]]]
    if result.get("status") and result["status"] != "complete":
        text += ["", f"**This run did not complete: {result['status']}.**"]
    return "\n".join(text) + "\n"
