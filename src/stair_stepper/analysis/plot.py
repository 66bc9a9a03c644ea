"""`stair-stepper plot RESULTS… [-o DIR]`: summary tables and figures from result folders.

Also runnable as ``python -m stair_stepper.analysis.plot RESULTS``: one implementation
behind both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stair_stepper.analysis.markdown import markdown_repeats, short_table, write
from stair_stepper.analysis.read import load_files, load_folder, run_folders
from stair_stepper.analysis.repeats import summarise_repeats
from stair_stepper.analysis.spread import MB
from stair_stepper.analysis.summary import DEFAULT_STEP_THRESHOLD, summarise
from stair_stepper.errors import NoTraces
from stair_stepper.validate import flag, non_negative_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `plot` command line, defined once (``stair-stepper plot`` and ``python -m``)."""
    parser.add_argument(
        "results",
        nargs="+",
        type=Path,
        help="result folder(s), --repeat folder(s), or record CSV(s)",
    )
    parser.add_argument("-o", "--out", type=Path, help="where to write (default: each folder)")
    parser.add_argument(
        "--step-threshold-mb",
        type=flag(non_negative_float),
        default=DEFAULT_STEP_THRESHOLD / MB,
        help="a floor rising more than this over the previous one is a step (default 16)",
    )


def run_args(args: argparse.Namespace) -> int:
    return run(args.results, args.out, args.step_threshold_mb * MB)


def analyse(
    folder: Path,
    out: Path | None = None,
    step_threshold: float = DEFAULT_STEP_THRESHOLD,
    figures: bool = True,
    loaded: tuple | None = None,
    stop=None,
) -> tuple[dict, list[Path]]:
    """Summary (json + md) and figures for one folder; returns the summary and files written.
    ``stop`` (an Event): once set, no figure is started (the experiment was signalled)."""
    loaded = loaded or load_folder(folder)
    summary = summarise(folder, step_threshold, loaded)
    out = Path(out or (folder if Path(folder).is_dir() else Path(folder).parent))
    out.mkdir(parents=True, exist_ok=True)
    written = list(write(out, summary))
    if figures and not (stop is not None and stop.is_set()):
        try:
            from stair_stepper.analysis import figures_all as drawing
        except ImportError:
            summary["warnings"].append(
                "matplotlib is not installed (pip install 'stair-stepper[analysis]'): no figures."
            )
            write(out, summary)
        else:
            written += drawing.draw_all(loaded[0], summary, out)
    written.append(page(out, summary))
    return summary, written


def page(out: Path, summary: dict) -> Path:
    """report.html beside summary.md, from its text and the figures drawn (analysis/html.py)."""
    from stair_stepper.analysis import html

    title = f"stair-stepper: {summary.get('preset') or 'trace'}"  # the same for the same data
    return html.write(out, (Path(out) / "summary.md").read_text(), title)


def analyse_repeats(
    folder: Path, out: Path | None, step_threshold: float, figures: bool = True, stop=None
) -> tuple[dict, list[Path]]:
    """A --repeat folder: each run analysed in its own folder, then median (min–max) over
    the runs at the top, with the floors of all runs as bands."""
    out = Path(out or folder)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    summaries = []
    for run_folder in run_folders(folder):
        try:
            target = out / run_folder.name if out != Path(folder) else None
            summary, files = analyse(run_folder, target, step_threshold, figures, stop=stop)
        except NoTraces:
            continue
        summaries.append(summary)
        written += files
    result = summarise_repeats(folder, step_threshold)
    written += list(write(out, result))
    if figures and summaries and not (stop is not None and stop.is_set()):
        try:
            from stair_stepper.analysis import figures_floors, figures_price
        except ImportError:
            result["warnings"].append("matplotlib is not installed: no figures.")
        else:
            written += figures_floors.floors_across_runs(summaries, out)
            written += figures_floors.sweeps(result, out, result["runs"])
            written += figures_price.tradeoff(result, out, result["runs"])
    written.append(page(out, result))
    return result, written


def _report(summary: dict, written: list[Path]) -> None:
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(short_table(summary))
    print("wrote " + ", ".join(str(p) for p in written))


def run(results: list[Path], out: Path | None, step_threshold: float) -> int:
    """Folders one by one (several: plus floors across them); bare CSVs together, as one
    comparison (the variants are the files)."""
    if all(Path(r).is_file() for r in results) and len(results) > 1:
        target = out or Path(results[0]).parent
        summary, written = analyse(target, target, step_threshold, loaded=load_files(results))
        _report(summary, written)
        return 0
    summaries = []
    for folder in results:
        target = out / Path(folder).name if out and len(results) > 1 else out
        if run_folders(folder):
            result, written = analyse_repeats(folder, target, step_threshold)
            for warning in result["warnings"]:
                print(f"warning: {warning}", file=sys.stderr)
            print(markdown_repeats(result))
            print("wrote " + ", ".join(str(p) for p in written))
            continue
        summary, written = analyse(folder, target, step_threshold)
        summaries.append(summary)
        _report(summary, written)
    if len(summaries) > 1:
        try:
            from stair_stepper.analysis import figures_floors
        except ImportError:
            return 0
        band_dir = out or Path(results[0]).parent
        paths = figures_floors.floors_across_runs(summaries, band_dir)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m stair_stepper.analysis.plot``: the same as ``stair-stepper plot``."""
    from stair_stepper import cli

    return cli.main(["plot", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
