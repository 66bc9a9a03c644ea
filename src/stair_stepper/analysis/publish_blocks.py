"""The published blocks of the README and docs/, each built from its committed result
folders (``./dev docs`` writes them; ``publish.py`` decides which folders and whether they are
current)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from stair_stepper.analysis import cost, layers, read, repeats, summary
from stair_stepper.analysis.markdown import price_text, repeats_table, sweep_text
from stair_stepper.analysis.spread import MB, Spread
from stair_stepper.analysis.table import markdown_table, mb
from stair_stepper.record import phases, results


def repeated(folder: Path) -> dict:
    """A --repeat folder's summary."""
    return repeats.summarise_repeats(folder)


def revision_line(folders: list[Path], names: str | None = None) -> str:
    revs, runs = set(), 0
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        revs.add((meta.get("provenance") or {}).get("git_rev", "?")[:10])
        runs += len(read.run_folders(folder))
    names = names or ", ".join(f"`docs/results/{f.name}/`" for f in folders)
    return f"Data: {names} ({runs} runs), measured at revision {', '.join(sorted(revs))}."


def contrast_block(folders: list[Path]) -> str:
    result = repeated(folders[0])
    return repeats_table(result) + "\n" + revision_line(folders) + "\n"


def verdict_block(folders: list[Path]) -> str:
    """The default run's verdict over its runs, as summary.md opens with it."""
    from stair_stepper.analysis.verdict import verdict_text

    result = repeated(folders[0])
    lines = [line for line in verdict_text(result) if line != "## Verdict"]
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines).rstrip("\n") + "\n\n" + revision_line(folders) + "\n"


IDLE_VARIANTS = ("jemalloc", "jemalloc+bg")


def idle_table(folders: list[Path]) -> dict[float, dict]:
    """Idle requests per second -> that --repeat folder's summarised variants."""
    table = {}
    for folder in folders:
        result = repeated(folder)
        table[result["config"]["idle_rps"]] = result["variants"]
    return table


def idle_block(folders: list[Path]) -> str:
    lines = [
        "| idle requests/s during pauses | jemalloc: median settled floor, MB | "
        "jemalloc+bg: median settled floor, MB |",
        "|---|---|---|",
    ]
    for rate, variants in idle_table(folders).items():
        cells = [Spread.from_json(variants[v]["median_floor_bytes"]).text() for v in IDLE_VARIANTS]
        lines.append(f"| {rate:g} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n\n" + revision_line(folders) + "\n"


def _spread(values: list[float], digits: int) -> str:
    found = Spread.of(values)
    return found.text(digits, 1) if found else "–"


# --- the default run's targets (bench/contrast.py prints them; ./dev docs publishes them) -

TARGETS = {"wall_s": 300.0, "rises": 3, "glibc/jemalloc+bg": 2.5, "kept_after_trim": 0.25}


def default_targets(folder: Path, step_threshold: float = summary.DEFAULT_STEP_THRESHOLD) -> dict:
    """A --repeat folder of the default run against its targets: per run its wall time,
    glibc's floors and floor-to-floor rises and the floor ratios; per target which runs met it."""
    rows = []
    for run in read.run_folders(folder):
        meta = results.read_meta(run)
        v = summary.summarise(run, step_threshold)["variants"]
        glibc = v["glibc"]["median_floor_bytes"]
        rows.append(
            {
                "run": run.name,
                "wall_s": meta["finished_at"] - meta["started_at"],
                "floors": " → ".join(mb(f) for f in v["glibc"]["floors_bytes"]),
                "rises": v["glibc"]["steps"],
                # the steps were free space, not live data: what the trim kept of the last floor
                "kept_after_trim": v["glibc"]["after_trim_bytes"] / v["glibc"]["last_floor_bytes"],
                "jemalloc+bg rises": v["jemalloc+bg"]["steps"],
                "glibc/jemalloc+bg": glibc / v["jemalloc+bg"]["median_floor_bytes"],
                "glibc/jemalloc": glibc / v["jemalloc"]["median_floor_bytes"],
            }
        )
    ratio, kept = TARGETS["glibc/jemalloc+bg"], TARGETS["kept_after_trim"]
    checks = []
    for label, ok in (
        (f"wall time ≤ {TARGETS['wall_s']:.0f} s", lambda r: r["wall_s"] <= TARGETS["wall_s"]),
        (f"glibc rises ≥ {TARGETS['rises']}", lambda r: r["rises"] >= TARGETS["rises"]),
        (f"glibc/jemalloc+bg ≥ {ratio}", lambda r: r["glibc/jemalloc+bg"] >= ratio),
        (
            f"glibc after trim ≤ {kept:.0%} of its last floor",
            lambda r: r["kept_after_trim"] <= kept,
        ),
    ):
        met = [ok(r) for r in rows]
        missed = [r["run"] for r, good in zip(rows, met, strict=True) if not good]
        checks.append({"label": label, "met": sum(met), "missed": missed})
    return {"runs": rows, "checks": checks}


def targets_block(folders: list[Path]) -> str:
    """Per run and as median (min–max): wall time, glibc's floor-to-floor rises and the floor
    ratios of the default run, with one verdict line per target (default_targets)."""
    result = default_targets(folders[0])
    rows = result["runs"]
    lines = [
        "| run | wall | glibc floors, MB | rises ≥ 16 MB | glibc after trim / last floor | "
        "jemalloc+bg rises | glibc/jemalloc+bg | glibc/jemalloc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['wall_s']:.0f} s | {r['floors']} | {r['rises']} | "
            f"{r['kept_after_trim']:.0%} | {r['jemalloc+bg rises']} | "
            f"{r['glibc/jemalloc+bg']:.2f} | {r['glibc/jemalloc']:.2f} |"
        )
    kept = Spread.of([r["kept_after_trim"] * 100 for r in rows])
    lines.append(
        f"| median (min–max) | {_spread([r['wall_s'] for r in rows], 0)} s | | "
        f"{_spread([r['rises'] for r in rows], 0)} | "
        f"{kept.text(0, 1).replace(' (', ' % (') if kept else '–'} | "
        f"{_spread([r['jemalloc+bg rises'] for r in rows], 0)} | "
        f"{_spread([r['glibc/jemalloc+bg'] for r in rows], 2)} | "
        f"{_spread([r['glibc/jemalloc'] for r in rows], 2)} |"
    )
    lines.append("")
    for check in result["checks"]:
        missed = check["missed"]
        verdict = "**met**" if not missed else f"**not met** in {', '.join(missed)}"
        lines.append(f"- {check['label']}: {verdict} ({check['met']} of {len(rows)} runs).")
    lines.append("- glibc/jemalloc: no target; reported with its spread.")
    return "\n".join(lines) + "\n\n" + revision_line(folders) + "\n"


def price_block(folders: list[Path]) -> str:
    """The verdict of --preset price, then each variant's price as median (min–max)."""
    result = repeated(folders[0])
    found = result.get("verdict") or {}
    lines = [f"- {line}" for line in found.get("lines") or []]
    if found.get("best") and found.get("environment"):
        lines += [
            "",
            f"Lowest memory without a failed request: **{found['best']}**; its environment, "
            "as found on this machine:",
            "",
            "```sh",
            *found["environment"],
            "```",
        ]
    lines += ["", f"Load: {result.get('mode')}.", ""]
    lines += markdown_table(cost.COST_HEAD, cost.cost_table(result["variants"], repeated=True))
    return "\n".join(lines) + "\n\n" + revision_line(folders) + "\n"


DECAY = ("jemalloc", "je-eager")  # je-eager: MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0
DECAY_FIGURES = (
    ("cpu_system_ms_per_request", "system CPU, ms per request", 2),
    ("minor_faults_per_request", "minor faults per request", 0),
    ("cpu_user_ms_per_request", "user CPU, ms per request", 2),
    ("latency_p99_ms", "p99 latency, ms", 0),
)


def decay_cost(folder: Path) -> dict:
    """jemalloc against the same with immediate decay: the figures and whether each of the
    first two is higher for je-eager in every run than in any of plain jemalloc's."""
    variants = repeated(folder)["variants"]
    rows, checks = [], []
    for key, label, digits in DECAY_FIGURES:
        cells = [(variants[v].get("cost") or {}).get(key) for v in DECAY]
        spreads = [Spread.from_json(c) for c in cells]
        rows.append([label, *(c.text(digits, 1) if c else "–" for c in spreads)])
        if key in ("cpu_system_ms_per_request", "minor_faults_per_request"):
            plain, eager = spreads
            checks.append((label, bool(plain and eager and eager.min > plain.max)))
    return {"rows": rows, "checks": checks}


def decay_block(folders: list[Path]) -> str:
    found = decay_cost(folders[0])
    lines = markdown_table(["per request", *DECAY], found["rows"])
    lines.append("")
    for label, outside in found["checks"]:
        verdict = "**yes**" if outside else "**no**"
        lines.append(f"- je-eager's {label} above every run of jemalloc's: {verdict}.")
    return "\n".join(lines) + "\n\n" + revision_line(folders) + "\n"


def sweep_block(folders: list[Path]) -> str:
    """A --sweep's comparison (median (min–max)), then the sweep laid out along its axis."""
    result = repeated(folders[0])
    lines = [repeats_table(result)]
    lines += sweep_text(result.get("sweeps") or [], result["runs"])
    return "\n".join(lines) + "\n" + revision_line(folders) + "\n"


def maintenance_block(folders: list[Path]) -> str:
    """Strategies beside glibc and jemalloc+bg: the table, then what each strategy cost (the
    time its trims took, from the middleware's own clock)."""
    result = repeated(folders[0])
    lines = [repeats_table(result)]
    for name, v in result["variants"].items():
        spent = Spread.from_json(v.get("trims_s"))
        if spent is not None:
            lines.append(
                f"- {name} (`{v.get('settings')}`): its periodic trims took "
                f"{spent.text(3, 1)} s per run."
            )
    lines += ["", *price_text(result)]
    return "\n".join(lines) + "\n" + revision_line(folders) + "\n"


GROWN = 4 * MB  # an arena "grew" in a batch when its held bytes rose at least this much


def arena_growth(run_folder: Path) -> tuple[int | None, list[tuple[int, float]]]:
    """glibc's arenas at the last floor; per batch after the first, from the arena data read
    at each floor: (arenas whose held bytes grew ≥ 4 MB, MB grown in all)."""
    data, _, _ = read.load_folder(run_folder)
    v = data.get("glibc")
    if v is None or v.arenas is None:
        return None, []
    reads = [phases.read_phase(k) for k in read.pauses(v.trace)]
    floors = layers.arenas_by_floor(v.arenas, reads)
    held = [{a["arena"]: a["system_bytes"] or 0 for a in floor} for floor in floors]
    growth = []
    for before, after in zip(held, held[1:]):  # noqa: B905 - consecutive floors
        rises = [after[a] - before.get(a, 0) for a in after]
        grown = sum(r for r in rises if r > 0) / MB
        growth.append((sum(r >= GROWN for r in rises), grown))
    return (len(held[-1]) if held else None), growth


def staircase_rows(folders: list[Path]) -> tuple[list[str], list[str]]:
    """Per configuration and run: glibc's floors, rises, what the trim kept, arenas and their
    growth per batch; then one line per configuration."""
    rows, verdicts = [], []
    for folder in folders:
        rises_all, kept_all = [], []
        for run_folder in read.run_folders(folder):
            s = summary.summarise(run_folder)["variants"].get("glibc")
            if not s or not s.get("floors_bytes"):
                continue
            floors = s["floors_bytes"]
            kept = (s.get("after_trim_bytes") or 0) / floors[-1]
            arenas, growth = arena_growth(run_folder)
            rises_all.append(s["steps"])
            kept_all.append(kept)
            rows.append(
                f"| {folder.name} | {run_folder.name} | "
                + " → ".join(f"{f / MB:.0f}" for f in floors)
                + f" | {s['steps']} | {kept:.0%} | {'–' if arenas is None else arenas} | "
                + ", ".join(f"{n} ({mb:.0f})" for n, mb in growth)
                + " |"
            )
        if rises_all:
            overrides = json.loads((folder / "meta.json").read_text()).get("overrides") or {}
            common = ("variants", "repeat")  # the same for every configuration (glibc alone)
            changed = ", ".join(f"{k}={v}" for k, v in overrides.items() if k not in common)
            stepped = sum(r >= 3 for r in rises_all)
            verdicts.append(
                f"- {folder.name} ({changed or 'the default'}): {stepped} of "
                f"{len(rises_all)} runs with ≥ 3 rises; median rises "
                f"{statistics.median(rises_all):g}; the trim kept "
                f"{statistics.median(kept_all):.0%} of the last floor (median)."
            )
    return rows, verdicts


def staircase_block(folders: list[Path]) -> str:
    rows, verdicts = staircase_rows(folders)
    head = [
        "| configuration | run | glibc floors, MB | rises ≥ 16 MB | after trim / last floor | "
        "arenas | per later batch: arenas grown ≥ 4 MB (MB grown) |",
        "|---|---|---|---|---|---|---|",
    ]
    revs, runs = set(), 0
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        revs.add((meta.get("provenance") or {}).get("git_rev", "?")[:10])
        runs += len(read.run_folders(folder))
    where = f"`docs/results/{folders[0].parent.name}/`" if folders else "nothing"
    data = f"Data: {where} ({len(folders)} configurations, {runs} runs), measured at revision "
    return "\n".join(head + rows + [""] + verdicts) + f"\n\n{data}{', '.join(sorted(revs))}.\n"
