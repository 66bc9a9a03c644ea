"""`./dev docs` (``python -m analysis.publish``): the README's result tables and the figures in
docs/ rebuilt from the complete result folders in docs/results/.

Every number the README quotes from a measurement sits between
``<!-- published:NAME -->`` and ``<!-- /published:NAME -->`` and is written here,
from the folders named in ``PUBLISHED``; tests/test_published.py checks that
the README holds exactly what this derives, so text and data cannot drift.
A folder measured on a dirty tree, or whose measuring code (``MEASURING``) has
changed since its recorded revision (beyond comment lines), is refused unless
``--allow-stale``. Measuring
code is what produces or derives a published number: the package (``src/``) but the
analysis' renderers (``RENDERING``: figures, reports, publishing), and the workload. Figure
and report code is not: `./dev docs` redraws every figure from the data with today's code.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

from stair_stepper.analysis import cost, layers, summary
from stair_stepper.errors import Stale
from stair_stepper.record import results

ROOT = Path(__file__).resolve().parents[3]  # the checkout
RESULTS = Path("docs/results")
# README block -> result folders under docs/results (each a --repeat folder)
PUBLISHED = {
    "contrast": ["contrast"],
    "targets": ["contrast"],
    "idle": ["idle-0", "idle-0.2", "idle-1", "idle-5"],
    "pymalloc": ["pymalloc"],
    "arenas": ["arenas"],
    "own-asgi": ["own-asgi"],  # README "Your own service": examples/asgi_app.py, --app
    "price": ["price"],  # --preset price: glibc, jemalloc, jemalloc+bg
    "decay-cost": ["decay-cost"],  # bench/decay_cost.py: the cost measurement's known answer
    "arena-sweep": ["arena-sweep"],  # --sweep 'arena=glibc MALLOC_ARENA_MAX=1|2|4|8'
    "maintenance": ["maintenance"],  # periodic trim and recycled workers beside glibc, jemalloc+bg
    # bench/staircase.py: the sweep that chose the default's threads and batches
    "staircase-sweep": [
        f"staircase-sweep/{name}" for name in ("default", "threads-8", "batches-5")
    ],
}
#: blocks kept from an earlier measuring pass and not yet measured again with today's code:
#: exempt from the staleness rule, and each says so in its last line (the README says with
#: which settings and at which revision they were measured)
EARLIER: set[str] = {"idle"}
#: the analysis' renderers and publishing: they draw and write what the rest derived
RENDERING = ("figures", "plot", "compare", "publish", "report", "markdown")
MEASURING = (
    "src",
    *(f":(exclude)src/stair_stepper/analysis/{name}*" for name in RENDERING),
    "benchmark.yml",
    "plans",
    "examples",
)
BLOCK = re.compile(r"(<!-- published:(\S+) -->\n)(.*?)(<!-- /published:\2 -->)", re.S)


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


def measuring_changes(root: Path, rev: str) -> list[str] | None:
    """The measuring files that differ between ``rev`` and the working tree (None: ``rev`` is
    not in this checkout). A file whose changed lines are all comment lines (``#``) measures
    the same and is not counted."""
    changed = _git(root, "diff", "--name-only", rev, "--", *MEASURING)
    if changed.returncode != 0:
        return None
    return [
        f
        for f in changed.stdout.split()
        if _git(root, "diff", "--quiet", "-I", r"^\s*#", rev, "--", f).returncode != 0
    ]


def provenance_problems(folder: Path, root: Path = ROOT) -> list[str]:
    """Why ``folder`` cannot be published as the current method's result (empty: it can)."""
    try:
        prov = json.loads((folder / "meta.json").read_text()).get("provenance") or {}
    except (OSError, ValueError):
        return [f"{folder} has no readable meta.json."]
    rev = prov.get("git_rev")
    if not rev:
        return [f"{folder} records no git revision."]
    if prov.get("git_dirty"):
        return [f"{folder} was measured on a tree with uncommitted changes (at {rev[:10]})."]
    files = measuring_changes(root, rev)
    if files is None:
        return [f"{folder} was measured at {rev[:10]}, which this checkout does not have."]
    if files:
        return [
            f"{folder} was measured at {rev[:10]}; its measuring code has changed since: "
            + ", ".join(files[:12])
            + (f" and {len(files) - 12} more" if len(files) > 12 else "")
            + "."
        ]
    return []


def _repeat(folder: Path) -> dict:
    return summary.summarise_repeats(folder)


def _revision_line(folders: list[Path]) -> str:
    revs, runs = set(), 0
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        revs.add((meta.get("provenance") or {}).get("git_rev", "?")[:10])
        runs += len(summary.run_folders(folder))
    names = ", ".join(f"`docs/results/{f.name}/`" for f in folders)
    return f"Data: {names} ({runs} runs), measured at revision {', '.join(sorted(revs))}."


def contrast_block(folders: list[Path]) -> str:
    result = _repeat(folders[0])
    return summary.repeats_table(result) + "\n" + _revision_line(folders) + "\n"


IDLE_VARIANTS = ("jemalloc", "jemalloc+bg")


def idle_table(folders: list[Path]) -> dict[float, dict]:
    """Idle requests per second -> that --repeat folder's summarised variants."""
    table = {}
    for folder in folders:
        result = _repeat(folder)
        table[result["config"]["idle_rps"]] = result["variants"]
    return table


def idle_block(folders: list[Path]) -> str:
    lines = [
        "| idle requests/s during pauses | jemalloc: median settled floor, MB | "
        "jemalloc+bg: median settled floor, MB |",
        "|---|---|---|",
    ]
    for rate, variants in idle_table(folders).items():
        cells = [summary.spread_text(variants[v]["median_floor_bytes"]) for v in IDLE_VARIANTS]
        lines.append(f"| {rate:g} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n\n" + _revision_line(folders) + "\n"


def _spread(values: list[float], digits: int) -> str:
    return summary.spread_text(summary.spread(values), digits, 1)


# --- the default run's targets (bench/contrast.py prints them; ./dev docs publishes them) -

TARGETS = {"wall_s": 300.0, "rises": 3, "glibc/jemalloc+bg": 2.5, "kept_after_trim": 0.25}


def default_targets(folder: Path, step_threshold: float = summary.DEFAULT_STEP_THRESHOLD) -> dict:
    """A --repeat folder of the default run against its targets: per run its wall time,
    glibc's floors and floor-to-floor rises and the floor ratios; per target which runs met it."""
    rows = []
    for run in summary.run_folders(folder):
        meta = results.read_meta(run)
        v = summary.summarise(run, step_threshold)["variants"]
        glibc = v["glibc"]["median_floor_bytes"]
        rows.append(
            {
                "run": run.name,
                "wall_s": meta["finished_at"] - meta["started_at"],
                "floors": " → ".join(summary.mb(f) for f in v["glibc"]["floors_bytes"]),
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
    kept = summary.spread([r["kept_after_trim"] * 100 for r in rows])
    lines.append(
        f"| median (min–max) | {_spread([r['wall_s'] for r in rows], 0)} s | | "
        f"{_spread([r['rises'] for r in rows], 0)} | "
        f"{summary.spread_text(kept, 0, 1).replace(' (', ' % (')} | "
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
    return "\n".join(lines) + "\n\n" + _revision_line(folders) + "\n"


def price_block(folders: list[Path]) -> str:
    """The verdict of --preset price, then each variant's price as median (min–max)."""
    result = _repeat(folders[0])
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
    lines += summary.markdown_table(
        cost.COST_HEAD, cost.cost_table(result["variants"], summary.spread_text)
    )
    return "\n".join(lines) + "\n\n" + _revision_line(folders) + "\n"


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
    variants = _repeat(folder)["variants"]
    rows, checks = [], []
    for key, label, digits in DECAY_FIGURES:
        cells = [(variants[v].get("cost") or {}).get(key) for v in DECAY]
        rows.append([label, *(summary.spread_text(c, digits, 1) for c in cells)])
        if key in ("cpu_system_ms_per_request", "minor_faults_per_request"):
            plain, eager = cells
            checks.append((label, bool(plain and eager and eager["min"] > plain["max"])))
    return {"rows": rows, "checks": checks}


def decay_block(folders: list[Path]) -> str:
    found = decay_cost(folders[0])
    lines = summary.markdown_table(["per request", *DECAY], found["rows"])
    lines.append("")
    for label, outside in found["checks"]:
        verdict = "**yes**" if outside else "**no**"
        lines.append(f"- je-eager's {label} above every run of jemalloc's: {verdict}.")
    return "\n".join(lines) + "\n\n" + _revision_line(folders) + "\n"


def sweep_block(folders: list[Path]) -> str:
    """A --sweep's comparison (median (min–max)), then the sweep laid out along its axis."""
    result = _repeat(folders[0])
    lines = [summary.repeats_table(result)]
    lines += summary.sweep_text(result.get("sweeps") or [], result["runs"])
    return "\n".join(lines) + "\n" + _revision_line(folders) + "\n"


def maintenance_block(folders: list[Path]) -> str:
    """Strategies beside glibc and jemalloc+bg: the table, then what each strategy cost (the
    time its trims took, from the middleware's own clock)."""
    result = _repeat(folders[0])
    lines = [summary.repeats_table(result)]
    for name, v in result["variants"].items():
        spent = v.get("trims_s")
        if isinstance(spent, dict) and spent:
            lines.append(
                f"- {name} (`{v.get('settings')}`): its periodic trims took "
                f"{summary.spread_text(spent, 3, 1)} s per run."
            )
    lines += ["", *summary.price_text(result)]
    return "\n".join(lines) + "\n" + _revision_line(folders) + "\n"


GROWN = 4 * summary.MB  # an arena "grew" in a batch when its held bytes rose at least this much


def arena_growth(run_folder: Path) -> tuple[int | None, list[tuple[int, float]]]:
    """glibc's arenas at the last floor; per batch after the first, from the arena data read
    at each floor: (arenas whose held bytes grew ≥ 4 MB, MB grown in all)."""
    data, _, _ = summary.load_folder(run_folder)
    v = data.get("glibc")
    if v is None or v.arenas is None:
        return None, []
    floors = layers.arenas_by_floor(v.arenas, summary.pause_phases(v.trace))
    held = [{a["arena"]: a["system_bytes"] or 0 for a in floor} for floor in floors]
    growth = []
    for before, after in zip(held, held[1:]):  # noqa: B905 - consecutive floors
        rises = [after[a] - before.get(a, 0) for a in after]
        grown = sum(r for r in rises if r > 0) / summary.MB
        growth.append((sum(r >= GROWN for r in rises), grown))
    return (len(held[-1]) if held else None), growth


def staircase_rows(folders: list[Path]) -> tuple[list[str], list[str]]:
    """Per configuration and run: glibc's floors, rises, what the trim kept, arenas and their
    growth per batch; then one line per configuration."""
    rows, verdicts = [], []
    for folder in folders:
        rises_all, kept_all = [], []
        for run_folder in summary.run_folders(folder):
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
                + " → ".join(f"{f / summary.MB:.0f}" for f in floors)
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
        runs += len(summary.run_folders(folder))
    where = f"`docs/results/{folders[0].parent.name}/`" if folders else "nothing"
    data = f"Data: {where} ({len(folders)} configurations, {runs} runs), measured at revision "
    return "\n".join(head + rows + [""] + verdicts) + f"\n\n{data}{', '.join(sorted(revs))}.\n"


BLOCKS = {
    "contrast": contrast_block,
    "targets": targets_block,
    "idle": idle_block,
    "pymalloc": contrast_block,
    "arenas": contrast_block,
    "own-asgi": contrast_block,
    "price": price_block,
    "decay-cost": decay_block,
    "arena-sweep": sweep_block,
    "maintenance": maintenance_block,
    "staircase-sweep": staircase_block,
}


def build_blocks(
    root: Path = ROOT, allow_stale: bool = False, git_root: Path = ROOT
) -> dict[str, str]:
    """README block name -> its text, from the committed folders under ``root``."""
    blocks = {}
    for name, folder_names in PUBLISHED.items():
        folders = [root / RESULTS / f for f in folder_names]
        missing = [f for f in folders if not f.is_dir()]
        if missing:
            raise Stale(f"{missing[0]} does not exist; run the benchmark that makes it.")
        if not allow_stale and name not in EARLIER:
            problems = [p for f in folders for p in provenance_problems(f, git_root)]
            if problems:
                raise Stale(problems[0])
        blocks[name] = BLOCKS[name](folders)
        if name in EARLIER:
            blocks[name] = blocks[name].rstrip("\n") + (
                " An earlier stage's result: its measuring code has changed since, and it has "
                "not been measured again.\n"
            )
    return blocks


def rewrite(readme: str, blocks: dict[str, str]) -> str:
    """The README with every published block replaced by its derived text."""

    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in blocks:
            return match.group(0)
        return match.group(1) + blocks[name] + match.group(4)

    return BLOCK.sub(replace, readme)


#: the folders whose first run's memory figure and floors across runs go to docs/
PANELS = ("contrast", "pymalloc", "arenas", "own-asgi", "maintenance")


def figures(root: Path = ROOT) -> list[Path]:
    """docs/<name>-memory.png (first run) and docs/<name>-floors-runs.png of each folder in
    PANELS, docs/idle-traffic.png, docs/price-tradeoff.png, docs/arena-sweep.png."""
    from stair_stepper.analysis import figures as drawing

    docs = root / "docs"
    written: list[Path] = []
    for name in (n for n in PANELS if n in PUBLISHED):
        folder = root / RESULTS / name
        runs = summary.run_folders(folder)
        data, _, _ = summary.load_folder(runs[0])
        first_run = summary.summarise(runs[0])
        written += drawing.save(drawing.memory_figure(data, first_run), docs, f"{name}-memory")
        summaries = [summary.summarise(r) for r in runs]
        written += drawing.floors_across_runs(summaries, docs, f"{name}-floors-runs")
    if "price" in PUBLISHED:
        price = root / RESULTS / "price"
        runs = len(summary.run_folders(price))
        written += drawing.tradeoff(_repeat(price), docs, runs, "price-tradeoff")
    if "arena-sweep" in PUBLISHED:
        folder = root / RESULTS / "arena-sweep"
        result = _repeat(folder)
        for sweep in result.get("sweeps") or []:
            fig = drawing.sweep_figure(sweep, result["runs"])
            written += drawing.save(fig, docs, "arena-sweep")
    idle = idle_table([root / RESULTS / name for name in PUBLISHED["idle"]])
    written += drawing.floors_against_idle(idle, docs, IDLE_VARIANTS)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev docs", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--allow-stale",
        action="store_true",
        help="publish results whose measuring code has changed since",
    )
    parser.add_argument("--no-figures", action="store_true")
    args = parser.parse_args(argv)
    try:
        blocks = build_blocks(ROOT, args.allow_stale)
    except Stale as exc:
        print(f"stair-stepper docs: {exc} (--allow-stale publishes it anyway)", file=sys.stderr)
        return exc.exit_code
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = rewrite(text, blocks)
    if new != text:
        readme.write_text(new)
    print(f"README.md: {len(blocks)} result blocks {'updated' if new != text else 'unchanged'}")
    if not args.no_figures:
        for path in figures(ROOT):
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
