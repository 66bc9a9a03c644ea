"""``stair-stepper report FOLDER``: the folder's ``report.html`` (written again from its data:
summary, figures and the page), and where it is. Every experiment writes one at its end; this
makes it for a folder analysed before there were pages, or after a change of the renderers."""

from __future__ import annotations

import argparse
from pathlib import Path

from stair_stepper.analysis import plot
from stair_stepper.analysis.read import run_folders
from stair_stepper.analysis.summary import DEFAULT_STEP_THRESHOLD
from stair_stepper.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="a result folder or a --repeat folder")
    parser.add_argument(
        "--no-figures", action="store_true", help="the page without figures (no matplotlib)"
    )


def run_args(args: argparse.Namespace) -> int:
    folder = args.folder
    if not folder.is_dir():
        raise UserError(f"{folder} is not a result folder.")
    figures = not args.no_figures
    if run_folders(folder):
        plot.analyse_repeats(folder, None, DEFAULT_STEP_THRESHOLD, figures)
    else:
        plot.analyse(folder, figures=figures)
    print(folder / "report.html")
    return 0
