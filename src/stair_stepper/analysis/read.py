"""Reading a result folder: its traces, batch logs, structure and meta.json, as typed tables
(no computing here), and finding a trace's phases by the schema's vocabulary."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from stair_stepper.errors import NewerFormat, NoTraces, TraceError
from stair_stepper.record import phases, results
from stair_stepper.record.phases import settled
from stair_stepper.record.schema import (
    ARENAS_SUFFIX,
    BATCHES_SUFFIX,
    PROCESSES_SUFFIX,
    RUN_PREFIX,
    STRUCTURE_SUFFIX,
    Table,
    companion,
    read_batches,
    read_table,
    read_trace,
    variant_files,
)

#: the last stretch of a phase that its floor is taken from, seconds
WINDOW_S = 1.0


@dataclass
class VariantData:
    name: str
    trace: Table
    batches: Table | None
    warnings: list[str] = field(default_factory=list)
    structure: Table | None = None  # the allocator's structure after each idle phase
    arenas: Table | None = None  # per arena, at the same readings
    processes: Table | None = None  # a tree's members at the same readings


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
        for suffix, attr in (
            (STRUCTURE_SUFFIX, "structure"),
            (ARENAS_SUFFIX, "arenas"),
            (PROCESSES_SUFFIX, "processes"),
        ):
            beside = companion(path, suffix)
            if beside.exists():
                try:
                    setattr(data[name], attr, read_table(beside, ("t_s", "phase")))
                except TraceError as exc:
                    warnings.append(str(exc))
    killed_early = {  # OOM-killed before a trace began: an outcome, not missing data
        n
        for n, v in (meta.get("variants") or {}).items()
        if (v.get("outcome") or {}) and n not in data
    }
    for name in meta.get("config", {}).get("variants", []):
        if name not in data and name not in killed_early:
            warnings.append(f"variant {name} is in meta.json but has no usable trace.")
    if not data and killed_early:
        return data, meta, warnings
    if not data:
        why = f": {warnings[0][:1].lower()}{warnings[0][1:]}" if warnings else "."
        raise NoTraces(f"{folder} holds no usable stair-stepper trace{why}")
    return data, meta, warnings


def median(values: list) -> float | None:
    """The median of the values that exist."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def phase_window(trace: Table, phase: str, column: str = "rss_bytes", reduce=min) -> float | None:
    """``reduce`` (min by default) of ``column`` over the last WINDOW_S seconds of a phase.
    Read back from the phase's last row (a trace's times only grow): a long pause costs its
    window, not its length."""
    rows = trace.rows_where("phase", phase)
    if not rows:
        return None
    times, values = trace.column("t_s"), trace.column(column)
    start, window = times[rows[-1]] - WINDOW_S, []
    for row in reversed(rows):
        if times[row] < start:
            break
        if values[row] is not None:
            window.append(values[row])
    return reduce(window[::-1]) if window else None


def phase_last(trace: Table, phase: str, column: str) -> float | None:
    """The last reading of ``column`` in a phase (None: it has none)."""
    values = trace.column(column)
    return next(
        (values[r] for r in reversed(trace.rows_where("phase", phase)) if values[r] is not None),
        None,
    )


def phase_length(trace: Table, phase: str) -> float | None:
    """Seconds from a phase's first reading to its last (None: it has none)."""
    rows, times = trace.rows_where("phase", phase), trace.column("t_s")
    return times[rows[-1]] - times[rows[0]] if rows else None


def phase_values(trace: Table, phase: str, column: str) -> tuple[list, list]:
    """Times and ``column`` of the rows labelled ``phase``."""
    rows = trace.rows_where("phase", phase)
    times, values = trace.column("t_s"), trace.column(column)
    return [times[i] for i in rows], [values[i] for i in rows]


def pauses(trace: Table) -> list[int]:
    """The numbers of the pauses a trace has, in order."""
    found = {phases.pause_number(p) for p in trace.distinct("phase")} - {None}
    return sorted(found)  # type: ignore[type-var]


def pause_settled(v: VariantData, k: int) -> bool:
    """What the experiment recorded for pause ``k``, else the same rule on the trace."""
    if v.batches is not None and "settled" in v.batches.columns:
        for batch, flag in zip(v.batches.column("batch"), v.batches.column("settled"), strict=True):
            if batch == k and flag is not None:
                return bool(flag)
    return settled(*phase_values(v.trace, phases.pause_phase(k), "rss_bytes"))


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


def run_folders(folder: Path) -> list[Path]:
    """The run-K folders of a --repeat result, in run order (empty for a single run)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    runs = [p for p in folder.glob(f"{RUN_PREFIX}*") if p.is_dir() and p.name[4:].isdigit()]
    return sorted(runs, key=lambda p: int(p.name[4:]))


def read_meta(folder: Path) -> dict:
    """A folder's meta.json (NewerFormat: one sentence; damaged: {})."""
    try:
        return results.read_meta(folder)
    except NewerFormat:
        raise
    except ValueError:
        return {}
