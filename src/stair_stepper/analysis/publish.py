"""`./dev docs` (``python -m analysis.publish``): the result blocks of the README and of every
page in docs/, and the figures in docs/, rebuilt from the complete result folders in
docs/results/.

Every number the README or a page of docs/ quotes from a measurement sits between
``<!-- published:NAME -->`` and ``<!-- /published:NAME -->`` and is written here,
from the folders named in ``PUBLISHED``; tests/test_published.py checks that
each page holds exactly what this derives, so text and data cannot drift.
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
import subprocess
import sys
from pathlib import Path

from stair_stepper.analysis import publish_blocks, publish_production, read, summary
from stair_stepper.analysis.publish_blocks import IDLE_VARIANTS, idle_table, repeated
from stair_stepper.errors import Stale

ROOT = Path(__file__).resolve().parents[3]  # the checkout
RESULTS = Path("docs/results")
# README block -> result folders under docs/results (each a --repeat folder)
PUBLISHED = {
    "contrast": ["contrast"],
    # every allocator as it comes (and jemalloc+bg) side by side on the default workload
    "allocators": ["allocators"],
    "verdict": ["contrast"],  # the front page: the default run's verdict
    "targets": ["contrast"],
    "idle": ["idle-0", "idle-0.2", "idle-1", "idle-5"],
    "pymalloc": ["pymalloc"],
    "arenas": ["arenas"],
    "seed": ["seed"],  # --preset seed: the original sandbox's recommendation (pymalloc)
    "own-asgi": ["own-asgi"],  # README "Your own service": examples/asgi_app.py, --app
    "price": ["price"],  # --preset price: glibc, jemalloc, jemalloc+bg
    "decay-cost": ["decay-cost"],  # bench/decay_cost.py: the cost measurement's known answer
    "arena-sweep": ["arena-sweep"],  # --sweep 'arena=glibc MALLOC_ARENA_MAX=1|2|4|8'
    "maintenance": ["maintenance"],  # periodic trim and recycled workers beside glibc, jemalloc+bg
    # bench/staircase.py: the sweep that chose the default's threads and batches
    "staircase-sweep": [
        f"staircase-sweep/{name}" for name in ("default", "threads-8", "batches-5")
    ],
    "pythons": ["pythons"],  # bench/pythons.py: 3.11 and Debian 13's 3.13 side by side
    "prefork": ["prefork"],  # bench/prefork.py: gunicorn, forked gthread workers
    "container": ["container"],  # bench/container.py: a limit between two peaks, 5 runs
    "find-limit": ["find-limit"],  # bench/find_limits.py: --find-limit on the default run
}

#: README/docs block -> the function that builds it from its folders
BLOCKS = {
    "contrast": publish_blocks.contrast_block,
    "allocators": publish_blocks.contrast_block,
    "verdict": publish_blocks.verdict_block,
    "targets": publish_blocks.targets_block,
    "idle": publish_blocks.idle_block,
    "pymalloc": publish_blocks.contrast_block,
    "arenas": publish_blocks.contrast_block,
    "seed": publish_blocks.contrast_block,
    "own-asgi": publish_blocks.contrast_block,
    "price": publish_blocks.price_block,
    "decay-cost": publish_blocks.decay_block,
    "arena-sweep": publish_blocks.sweep_block,
    "maintenance": publish_blocks.maintenance_block,
    "staircase-sweep": publish_blocks.staircase_block,
    "pythons": publish_production.pythons_block,
    "prefork": publish_production.prefork_block,
    "container": publish_production.container_block,
    "find-limit": publish_production.find_limit_block,
}
#: blocks whose folders the next measuring pass makes for the first time: until then the
#: block says so and names the command (the block's folder, once there, is published as any)
PENDING = {
    "pythons": "python bench/pythons.py --out docs/results/pythons",
    "prefork": "python bench/prefork.py --out docs/results/prefork",
    "container": "python bench/container.py --out docs/results/container",
    "find-limit": "python bench/find_limits.py --out docs/results/find-limit",
    "seed": "stair-stepper experiment --preset seed --repeat 2 --out docs/results/seed",
    "allocators": "stair-stepper experiment --allocators "
    "glibc,jemalloc,jemalloc+bg,mimalloc,tcmalloc,tbbmalloc --repeat 3 "
    "--out docs/results/allocators",
}
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
    """git's answer; without git (Nix's build sandbox has none) a failed one, as for a
    revision this checkout does not have."""
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    except FileNotFoundError:
        return subprocess.CompletedProcess(["git", *args], 127, "", "git is not installed")


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


def result_folders(folder: Path) -> list[Path]:
    """The result folders ``folder`` holds: itself when it has a meta.json (a run, or a
    --repeat folder over its runs), else those below it (bench/container.py's ``limited`` and
    ``unlimited``, bench/find_limits.py's folder per variant and limit)."""
    if (folder / "meta.json").exists() or not folder.is_dir():
        return [folder]
    found = [
        f for child in sorted(folder.iterdir()) if child.is_dir() for f in result_folders(child)
    ]
    return [f for f in found if (f / "meta.json").exists()] or [folder]


def provenance_problems(folder: Path, root: Path = ROOT) -> list[str]:
    """Why ``folder`` cannot be published as the current method's result (empty: it can);
    a folder of result folders is checked in each of them."""
    inner = result_folders(folder)
    if inner != [folder]:
        return [p for f in inner for p in provenance_problems(f, root)]
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


def build_blocks(
    root: Path = ROOT, allow_stale: bool = False, git_root: Path = ROOT
) -> dict[str, str]:
    """README block name -> its text, from the committed folders under ``root``."""
    blocks = {}
    for name, folder_names in PUBLISHED.items():
        folders = [root / RESULTS / f for f in folder_names]
        missing = [f for f in folders if not f.is_dir()]
        if missing and name in PENDING:
            where = ", ".join(f"`{f.relative_to(root)}/`" for f in missing)
            blocks[name] = (
                f"Not measured yet: the measuring pass makes {where} with `{PENDING[name]}`.\n"
            )
            continue
        if missing:
            raise Stale(f"{missing[0]} does not exist; run the benchmark that makes it.")
        problems = (
            [] if allow_stale else [p for f in folders for p in provenance_problems(f, git_root)]
        )
        if problems:
            raise Stale(problems[0])
        blocks[name] = BLOCKS[name](folders)
    return blocks


def pages(root: Path = ROOT) -> list[Path]:
    """The files that hold published blocks: the README and every page in docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def rewrite(readme: str, blocks: dict[str, str]) -> str:
    """The README with every published block replaced by its derived text."""

    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in blocks:
            return match.group(0)
        return match.group(1) + blocks[name] + match.group(4)

    return BLOCK.sub(replace, readme)


#: the folders whose first run's memory figure and floors across runs go to docs/
PANELS = ("contrast", "allocators", "pymalloc", "arenas", "own-asgi", "maintenance")


def figures(root: Path = ROOT) -> list[Path]:
    """docs/<name>-memory.png (first run) and docs/<name>-floors-runs.png of each folder in
    PANELS, docs/idle-traffic.png, docs/price-tradeoff.png, docs/arena-sweep.png."""
    from stair_stepper.analysis import figures as drawing
    from stair_stepper.analysis import figures_floors, figures_price

    docs = root / "docs"
    written: list[Path] = []
    for name in (n for n in PANELS if n in PUBLISHED):
        folder = root / RESULTS / name
        if name in PENDING and not folder.is_dir():
            continue  # not measured yet: its block says so
        runs = read.run_folders(folder)
        data, _, _ = read.load_folder(runs[0])
        first_run = summary.summarise(runs[0])
        written += drawing.save(drawing.memory_figure(data, first_run), docs, f"{name}-memory")
        summaries = [summary.summarise(r) for r in runs]
        written += figures_floors.floors_across_runs(summaries, docs, f"{name}-floors-runs")
    if "price" in PUBLISHED:
        price = root / RESULTS / "price"
        runs = len(read.run_folders(price))
        written += figures_price.tradeoff(repeated(price), docs, runs, "price-tradeoff")
    if "arena-sweep" in PUBLISHED:
        folder = root / RESULTS / "arena-sweep"
        result = repeated(folder)
        for sweep in result.get("sweeps") or []:
            fig = figures_floors.sweep_figure(sweep, result["runs"])
            written += drawing.save(fig, docs, "arena-sweep")
    idle = idle_table([root / RESULTS / name for name in PUBLISHED["idle"]])
    written += figures_floors.floors_against_idle(idle, docs, IDLE_VARIANTS)
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
    for page in pages(ROOT):
        text = page.read_text()
        new = rewrite(text, blocks)
        held = len(BLOCK.findall(text))
        if new != text:
            page.write_text(new)
        if held:
            said = "updated" if new != text else "unchanged"
            print(f"{page.relative_to(ROOT)}: {held} result blocks {said}")
    if not args.no_figures:
        for path in figures(ROOT):
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
