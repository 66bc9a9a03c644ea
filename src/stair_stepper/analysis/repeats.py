"""A ``--repeat`` folder: each run's summary, and each figure as a ``Spread`` over the runs
(median, min, max), with pyperf's warning when a spread is wide."""

from __future__ import annotations

from pathlib import Path

from stair_stepper.analysis import cost, verdict
from stair_stepper.analysis.read import read_meta, run_folders
from stair_stepper.analysis.spread import MB, Spread
from stair_stepper.analysis.summary import DEFAULT_STEP_THRESHOLD, summarise, sweep_rows
from stair_stepper.errors import NoTraces
from stair_stepper.record import results
from stair_stepper.record.schema import RUN_PREFIX

REPEATED_FIELDS = (
    "baseline_bytes",
    "peak_bytes",
    "median_floor_bytes",
    "last_floor_bytes",
    "after_trim_bytes",
    "steps",
)
SPREAD_WARNING = 0.10  # (max − min) over the median, as pyperf's "may be unstable"


def _json(values: list) -> dict | None:
    found = Spread.of(values)
    return found.to_json() if found else None


def summarise_runs(summaries: list[dict], names: list[str] | None = None) -> dict:
    """Median (min–max) over several runs' summaries, per variant and per ratio."""
    names = names or list(dict.fromkeys(n for s in summaries for n in s["variants"]))
    variants = {
        name: {
            key: _json([s["variants"].get(name, {}).get(key) for s in summaries])
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
        ratios[f"{first}/{other}"] = _json(values)
    warnings = []
    for name, fields in variants.items():
        for key in ("median_floor_bytes", "last_floor_bytes", "after_trim_bytes"):
            sp = Spread.from_json(fields[key])
            if sp and sp.judged and sp.median and (sp.max - sp.min) > SPREAD_WARNING * sp.median:
                warnings.append(
                    f"{name}: {key.removesuffix('_bytes').replace('_', ' ')} varies "
                    f"{sp.min / MB:,.0f}–{sp.max / MB:,.0f} MB over {sp.n} runs (more than 10 % "
                    "of its median): the result may be unstable; rerun, or look at what else "
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
    meta = read_meta(folder)
    config = meta.get("config") or {}
    names = list(config.get("variants", [])) or None
    result = summarise_runs(per_run, names)
    run_meta = results.read_meta(runs[0])
    for name, fields in result["variants"].items():
        fields["cost"] = cost.over_runs(
            [(r["variants"].get(name) or {}).get("cost") for r in per_run]
        )
        # what a variant is: the same in every run
        first = next((r["variants"][name] for r in per_run if name in r["variants"]), {})
        fields["settings"] = first.get("settings", name)
        fields["settings_read_back"] = first.get("settings_read_back")
        fields["python"] = first.get("python")
        fields["limit_bytes"] = first.get("limit_bytes")
        fields["oom_runs"] = [
            sum(1 for r in per_run if ((r["variants"].get(name) or {}).get("outcome"))),
            len(per_run),
        ]
        peaks = [(r["variants"].get(name) or {}).get("cgroup_peak_bytes") for r in per_run]
        fields["cgroup_peak_bytes"] = max((p for p in peaks if p is not None), default=None)
        fields["python_allocator"] = first.get("python_allocator")
        fields["trims_s"] = _json(
            [
                ((r["variants"].get(name) or {}).get("periodic_trim") or {}).get("total_s")
                for r in per_run
            ]
        )
    result["mode"] = cost.mode_words(config or run_meta.get("config") or {})
    result.update(
        format=results.FORMAT,
        sweeps=sweep_rows(result["variants"], config.get("sweeps") or (), repeated=True),
        described=per_run[0].get("described"),
        preset=per_run[0].get("preset"),
        config=config or per_run[0].get("config"),
        overrides=meta.get("overrides") or per_run[0].get("overrides") or {},
        provenance=meta.get("provenance") or per_run[0].get("provenance"),
        status=meta.get("status"),
        run_names=[s["run"] for s in per_run],
        step_threshold_bytes=step_threshold,
    )
    result["verdict"] = verdict.verdict(
        verdict.standings(result),
        run_meta.get("variants") or {},
        config,
        meta.get("provenance") or {},
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
