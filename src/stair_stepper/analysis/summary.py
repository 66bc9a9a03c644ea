"""Numbers from a result folder: baseline, peak, pause floors, steps, trim, layers, price
(no matplotlib; reading is ``read.py``, rendering ``markdown.py``).

Definitions (docs/reading-results.md repeats them):

- *baseline*: median RSS over the baseline phase, before any load;
- *floor* of pause k: the lowest RSS in the last second of pause k, i.e. what the
  process still holds once the requests of batch k are long gone (the lowest,
  because an allocator that decays its free pages can drop within that second: the
  floor is where it landed);
- *settled*: the pause's RSS moved less than 1 MB over its last 2 s
  (``phases.settled``); a floor from a pause that had not settled is marked, and
  the median floors and ratios use settled floors only;
- *step*: a floor higher than the floor of the pause before it by more than
  ``step_threshold_bytes`` (floor to floor: the rise from the baseline to the
  first floor is the load arriving, not a step);
- *slope*: least-squares growth of the floors, bytes per batch;
- *after trim*: the lowest RSS in the last second after the trim (``POST
  /__stair_stepper__/trim``);
- *reclaimable* = last floor − after trim: memory the allocator held as free space;
- *ratio_to_best*: a variant's median settled floor over the lowest one (the
  median, because an idle floor can be noisy);
- *floor_spread*: the settled floors as a ``Spread`` over the batches: what the verdict of a
  single run judges a difference against.

A ``--repeat`` folder (run-1 … run-N) is summarised run by run and then as median
(min–max) over the runs (``repeats.py``). A bare ``stair-stepper record`` CSV has no
phases: it gets baseline (first second), peak and last values only.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from stair_stepper.analysis import cost, layers, verdict
from stair_stepper.analysis.read import (
    WINDOW_S,
    VariantData,
    load_folder,
    median,
    pause_settled,
    pauses,
    phase_last,
    phase_length,
    phase_values,
    phase_window,
)
from stair_stepper.analysis.spread import MB, Spread
from stair_stepper.load.openloop import fell_behind
from stair_stepper.record import phases, results
from stair_stepper.record.schema import PROCESS_COLUMNS

DEFAULT_STEP_THRESHOLD = 16 * MB


def _slope(values: list[float]) -> float | None:
    """Least-squares growth per batch."""
    if len(values) < 2:
        return None
    return statistics.linear_regression(range(1, len(values) + 1), values).slope


def count_steps(floors: list[float], threshold: float) -> int:
    """Floor-to-floor rises larger than ``threshold`` (the baseline does not count)."""
    return sum(1 for a, b in zip(floors, floors[1:]) if b - a > threshold)  # noqa: B905


def variant_summary(v: VariantData, threshold: float) -> dict:
    trace = v.trace
    rss = trace.column("rss_bytes")
    labels = set(trace.distinct("phase")) - {None}
    if labels:
        baseline = median(phase_values(trace, phases.BASELINE, "rss_bytes")[1])
    else:
        t = trace.column("t_s")
        baseline = median([r for r, s in zip(rss, t, strict=True) if s - t[0] <= WINDOW_S])
    numbers = [k for k in pauses(trace) if phase_window(trace, phases.pause_phase(k))]
    floors = [phase_window(trace, phases.pause_phase(k)) for k in numbers]
    floors_settled = [pause_settled(v, k) for k in numbers]
    pause_lengths = [phase_length(trace, phases.pause_phase(k)) for k in numbers]
    settled_floors = [f for f, ok in zip(floors, floors_settled, strict=True) if ok]
    after_trim = phase_window(trace, phases.AFTER_TRIM)
    last_floor = floors[-1] if floors else None
    # The allocator is read once after each pause ("read K"); older runs polled during it.
    last_read = phases.read_phase(numbers[-1]) if numbers else None
    if last_read and last_read not in labels:
        last_read = phases.pause_phase(numbers[-1])
    unasked = v.batches.column("pause_requests") if v.batches is not None else []
    spread = Spread.of(settled_floors, over="batches")
    return {
        "baseline_bytes": baseline,
        "peak_bytes": max((r for r in rss if r is not None), default=None),
        "floors_bytes": floors,
        "floors_settled": floors_settled,
        "pause_lengths_s": pause_lengths,
        "unasked_pause_requests": [u for u in unasked if u is not None],
        "last_floor_bytes": last_floor,
        "median_floor_bytes": median(settled_floors),
        "floor_spread": spread.to_json() if spread else None,
        "after_trim_bytes": after_trim,
        "reclaimable_bytes": (
            last_floor - after_trim if last_floor is not None and after_trim is not None else None
        ),
        "slope_bytes_per_batch": _slope(floors),
        "steps": count_steps(floors, threshold),
        "last_floor_live_bytes": phase_window(trace, last_read, "live_bytes", median)
        if last_read
        else None,
        "last_floor_held_bytes": phase_window(trace, last_read, "held_bytes", median)
        if last_read
        else None,
        "last_rss_bytes": rss[-1],
        "samples": len(trace),
        "duration_s": trace.column("t_s")[-1],
        "ratio_to_best": None,
        "last_floor_ratio_to_best": None,
        **_where_it_sits(v, numbers, floors, after_trim, baseline, threshold),
    }


def _where_it_sits(
    v: VariantData, numbers: list[int], floors: list, after_trim, baseline, threshold
) -> dict:
    """Layers at each floor, arenas, and the diagnosis (analysis/layers.py)."""
    reads = [phases.read_phase(k) for k in numbers]
    by_floor = layers.variant_layers(v.structure, reads, floors)
    last = next((layer for layer in reversed(by_floor) if layer), None)
    arena_floors = layers.arenas_by_floor(v.arenas, reads)
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
    peak = max((r for r in v.trace.column("rss_bytes") if r is not None), default=None)
    before_load = layers.variant_layers(
        v.structure, [phases.read_phase(phases.BASELINE)], [baseline]
    )
    found["diagnosis"] = layers.diagnose(
        {"after_trim_bytes": after_trim, "peak_bytes": peak, "baseline_bytes": baseline},
        by_floor,
        threshold,
        before_load[0],
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


def summarise(
    folder: Path,
    step_threshold: float = DEFAULT_STEP_THRESHOLD,
    loaded: tuple[dict[str, VariantData], dict, list[str]] | None = None,
) -> dict:
    """The numbers of one result folder (or of data already read, ``loaded``: each CSV is
    parsed once)."""
    data, meta, warnings = loaded or load_folder(folder)
    warnings = list(warnings)
    config = meta.get("config") or {}
    variants = {name: variant_summary(v, step_threshold) for name, v in data.items()}
    for name, s in variants.items():
        warnings += _floor_warnings(name, s, config)
    meta_variants = meta.get("variants") or {}
    for name, s in variants.items():
        ran = meta_variants.get(name) or {}
        s.update(_settings_of(meta, name), periodic_trim=_periodic_trim(data[name], s))
        # asked in-process (the widget app, --app, or a --command's agents) or not at all
        s["probed"] = ran.get("trim") != results.NOT_MEASURED
        s["processes"] = last_processes(data[name])
        s.update(container(data[name], ran))
        s["cost"] = cost.variant_cost(data[name].batches, ran.get("trim"))
        findings = (ran.get("settings") or {}).get("findings")
        s["diagnosis"] = layers.with_findings(s["diagnosis"], findings)
        warnings += _lag_warning(name, s["cost"], config)
    for name, info in meta_variants.items():  # OOM-killed before anything was recorded
        if name not in variants and (info.get("outcome") or {}).get("oom_killed"):
            variants[name] = outcome_only(meta, name)
    best = _ratios(variants, "median_floor_bytes", "ratio_to_best")
    _ratios(variants, "last_floor_bytes", "last_floor_ratio_to_best")
    summary = {
        "format": results.FORMAT,
        "variants": variants,
        "best_variant": best,
        "sweeps": sweep_rows(variants, config.get("sweeps") or ()),
        "mode": cost.mode_words(config) if config else None,
        "step_threshold_bytes": step_threshold,
        "described": results.describe(meta),
        "foreign": bool(config.get("command")) and not all(v["probed"] for v in variants.values()),
        "preset": config.get("preset"),
        "config": config,
        "overrides": meta.get("overrides", {}),
        "provenance": meta.get("provenance", {}),
        "status": meta.get("status"),
        "warnings": warnings,
    }
    summary["verdict"] = verdict.verdict(
        verdict.standings(summary), meta_variants, config, meta.get("provenance") or {}
    )
    return summary


def _floor_warnings(name: str, s: dict, config: dict) -> list[str]:
    """Floors from pauses that had not settled; requests nobody sent during a pause."""
    found = []
    unsettled = [i + 1 for i, ok in enumerate(s["floors_settled"]) if not ok]
    if unsettled:
        lengths = ", ".join(f"{s['pause_lengths_s'][i - 1]:.1f} s" for i in unsettled)
        found.append(
            f"{name}: the floor{'s' if len(unsettled) > 1 else ''} of pause "
            f"{', '.join(map(str, unsettled))} ({lengths}) had not settled (RSS still moving "
            "by 1 MB or more over the last 2 s); medians and ratios use settled floors only."
        )
    if any(s["unasked_pause_requests"]) and not config.get("idle_rps"):
        found.append(
            f"{name}: requests the experiment did not send reached the service during a "
            f"pause ({s['unasked_pause_requests']}): the floors may be disturbed."
        )
    return found


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
    read_back = proof.get("read_back") or {}
    return {
        "settings": proof.get("described") or name,
        "settings_read_back": all(checked) if checked else None,
        # the interpreter and the allocator CPython gave its objects, as the server said
        "python": (proof.get("python") or {}).get("read"),
        "python_allocator": read_back.get("python_allocator"),
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


def sweep_rows(variants: dict, sweeps, repeated: bool = False) -> list[dict]:
    """Each --sweep laid out along its axis: per value, its variant's median settled floor and
    after-trim floor, as spreads (over the runs of a --repeat folder; one run: a spread of
    one)."""

    def spread(value):
        if repeated or value is None:
            return value
        return Spread.of([value]).to_json()  # type: ignore[union-attr]

    laid = []
    for sweep in sweeps:
        rows = []
        for value, name in zip(sweep["values"], sweep["variants"], strict=True):
            v = variants.get(name) or {}
            rows.append(
                {
                    "value": value,
                    "variant": name,
                    "median_floor_bytes": spread(v.get("median_floor_bytes")),
                    "after_trim_bytes": spread(v.get("after_trim_bytes")),
                }
            )
        laid.append({"name": sweep["name"], "var": sweep["var"], "rows": rows})
    return laid


def c_library_version(provenance: dict) -> str | None:
    """The C library's version ('2.36'; older result folders said 'glibc-2.36')."""
    raw = provenance.get("glibc")
    return str(raw).removeprefix("glibc-") if raw else None


#: a process's columns in the summary (processes.csv's, but its time and phase)
PROCESS_FIELDS = PROCESS_COLUMNS[2:]


#: a variant summary's fields that are lists
_LISTS = (
    "floors_bytes",
    "floors_settled",
    "pause_lengths_s",
    "unasked_pause_requests",
    "layers_by_floor",
    "arena_bytes_by_floor",
    "arena_detail",
)
_NUMBERS = (
    "baseline_bytes peak_bytes last_floor_bytes median_floor_bytes floor_spread after_trim_bytes "
    "reclaimable_bytes slope_bytes_per_batch steps last_floor_live_bytes last_floor_held_bytes "
    "last_rss_bytes samples duration_s ratio_to_best last_floor_ratio_to_best layers arenas "
    "diagnosis periodic_trim processes cost cgroup_peak_bytes cgroup_anon_peak_bytes "
    "last_floor_lazyfree_bytes"
).split()


def outcome_only(meta: dict, name: str) -> dict:
    """A variant OOM-killed before its first sample: its settings and outcome, nothing
    measured (every number None, every list empty)."""
    info = (meta.get("variants") or {}).get(name) or {}
    cgroup = info.get("cgroup") or {}
    return {
        **dict.fromkeys(_NUMBERS),
        **{k: [] for k in _LISTS},
        **_settings_of(meta, name),
        "probed": False,
        "limit_bytes": cgroup.get("limit_bytes") or (info.get("outcome") or {}).get("limit_bytes"),
        "cgroup_version": cgroup.get("version"),
        "outcome": info.get("outcome"),
    }


def container(v: VariantData, info: dict) -> dict:
    """What its memory cgroup says: the limit, the charge's peak, its anonymous part at that
    peak, LazyFree at the last floor (memory the kernel may take back without a kill), and
    how the variant ended under the limit (``outcome``: an OOM kill, or None)."""
    trace = v.trace
    charged = [c for c in trace.column("cgroup_bytes") if c is not None]
    peaks = [c for c in trace.column("cgroup_peak_bytes") if c is not None]
    peak = max(peaks + charged) if peaks or charged else None
    anon = [a for a in trace.column("cgroup_anon_bytes") if a is not None]
    numbers = [k for k in pauses(trace) if phase_window(trace, phases.pause_phase(k))]
    lazy = None
    if numbers:  # the settled window's median, else the pause's last reading (the rollup is
        # paced to its share of a core: on a large process one every few seconds)
        last = phases.pause_phase(numbers[-1])
        lazy = phase_window(trace, last, "lazyfree_bytes", median)
        lazy = phase_last(trace, last, "lazyfree_bytes") if lazy is None else lazy
    cgroup = info.get("cgroup") or {}
    return {
        "limit_bytes": cgroup.get("limit_bytes"),
        "cgroup_version": cgroup.get("version"),
        "cgroup_peak_bytes": peak,
        "cgroup_anon_peak_bytes": max(anon) if anon else None,
        "last_floor_lazyfree_bytes": lazy,
        "outcome": info.get("outcome"),
    }


def last_processes(v: VariantData) -> list[dict] | None:
    """A process tree's members at the last reading after a pause (None: one process)."""
    table = v.processes
    if table is None or not len(table):
        return None
    readings = [p for p in table.distinct("phase") if p and p.startswith("read ")]
    pauses = [p for p in readings if p.removeprefix("read ").isdigit()]
    if not pauses:
        return None
    rows = table.rows_where("phase", pauses[-1])
    return [{k: table.column(k)[r] for k in PROCESS_FIELDS} for r in rows]


def foreign(summary: dict) -> bool:
    """A --command server some variant of which could not be asked (no agent answered): no
    allocator accounting and no trim for it."""
    return bool(summary.get("foreign"))
