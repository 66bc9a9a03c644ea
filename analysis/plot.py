"""`stair-stepper plot RESULTS… [-o DIR]`: summary tables and figures from result folders.

Also runnable from a checkout as ``python -m analysis.plot RESULTS``: one
implementation behind both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stair_stepper.analysis import summary as numbers


def analyse(
    folder: Path,
    out: Path | None = None,
    step_threshold: float = numbers.DEFAULT_STEP_THRESHOLD,
    figures: bool = True,
) -> tuple[dict, list[Path]]:
    """Summary (json + md) and figures for one folder; returns the summary and files written."""
    data, _, _ = numbers.load_folder(folder)
    summary = numbers.summarise(folder, step_threshold)
    out = Path(out or (folder if Path(folder).is_dir() else Path(folder).parent))
    out.mkdir(parents=True, exist_ok=True)
    written = list(numbers.write(out, summary))
    if figures:
        try:
            from stair_stepper.analysis import figures as drawing
        except ImportError:
            summary["warnings"].append(
                "matplotlib is not installed (pip install 'stair-stepper[analysis]'): no figures."
            )
            numbers.write(out, summary)
        else:
            written += drawing.draw_all(data, summary, out)
    return summary, written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stair-stepper plot", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="result folder(s) or trace CSV(s)")
    parser.add_argument("-o", "--out", type=Path, help="where to write (default: each folder)")
    parser.add_argument(
        "--step-threshold-mb", type=float, default=numbers.DEFAULT_STEP_THRESHOLD / numbers.MB,
        help="a floor rising more than this over the previous one is a step (default 16)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    return run(args.results, args.out, args.step_threshold_mb * numbers.MB)


def analyse_repeats(
    folder: Path, out: Path | None, step_threshold: float, figures: bool = True
) -> tuple[dict, list[Path]]:
    """A --repeat folder: each run analysed in its own folder, then median (min–max) over
    the runs at the top, with the floors of all runs as bands."""
    out = Path(out or folder)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    summaries = []
    for run in numbers.run_folders(folder):
        try:
            summary, files = analyse(run, out / run.name if out != folder else None,
                                     step_threshold, figures)  # fmt: skip
        except numbers.NoTraces:
            continue
        summaries.append(summary)
        written += files
    result = numbers.summarise_repeats(folder, step_threshold)
    written += list(numbers.write_repeats(out, result))
    if figures and summaries:
        try:
            from stair_stepper.analysis import figures as drawing
        except ImportError:
            result["warnings"].append("matplotlib is not installed: no figures.")
        else:
            written += drawing.floors_across_runs(summaries, out)
    return result, written


def run(results: list[Path], out: Path | None, step_threshold: float) -> int:
    summaries = []
    for folder in results:
        if numbers.run_folders(folder):
            target = out / Path(folder).name if out and len(results) > 1 else out
            try:
                result, written = analyse_repeats(folder, target, step_threshold)
            except numbers.NoTraces as exc:
                print(f"stair-stepper: {exc}", file=sys.stderr)
                return 2
            for warning in result["warnings"]:
                print(f"warning: {warning}", file=sys.stderr)
            print(numbers.markdown_repeats(result))
            print("wrote " + ", ".join(str(p) for p in written))
            continue
        target = out / Path(folder).name if out and len(results) > 1 else out
        try:
            summary, written = analyse(folder, target, step_threshold)
        except numbers.NoTraces as exc:
            print(f"stair-stepper: {exc}", file=sys.stderr)
            return 2
        summaries.append(summary)
        for warning in summary["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        print(numbers.short_table(summary))
        print("wrote " + ", ".join(str(p) for p in written))
    if len(summaries) > 1:
        try:
            from stair_stepper.analysis import figures as drawing
        except ImportError:
            return 0
        band_dir = out or Path(results[0]).parent
        paths = drawing.floors_across_runs(summaries, band_dir)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
