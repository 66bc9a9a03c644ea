"""`stair-stepper compare A B`: two result folders side by side (``python -m analysis.compare``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stair_stepper.analysis import read, repeats, summary
from stair_stepper.analysis.spread import Spread
from stair_stepper.analysis.table import markdown_table, mb

FIELDS = (
    ("median floor", "median_floor_bytes"),
    ("last floor", "last_floor_bytes"),
    ("after trim", "after_trim_bytes"),
    ("peak", "peak_bytes"),
)


def figures_of(folder: Path) -> tuple[dict, str, int]:
    """variant -> key -> (median, min, max): one run (min = max), or a --repeat folder."""
    if read.run_folders(folder):
        result = repeats.summarise_repeats(folder)
        table = {
            name: {
                key: (fields[key]["median"], fields[key]["min"], fields[key]["max"])
                if fields.get(key)
                else None
                for _, key in FIELDS
            }
            for name, fields in result["variants"].items()
        }
        return table, result.get("preset"), result["runs"]
    one = summary.summarise(folder)
    table = {
        name: {
            key: (v[key], v[key], v[key]) if v.get(key) is not None else None for _, key in FIELDS
        }
        for name, v in one["variants"].items()
    }
    return table, one.get("preset"), 1


def _cell(value: tuple | None, runs: int) -> str:
    if value is None:
        return "–"
    if runs == 1:
        return mb(value[0])
    return f"{mb(value[0])} ({mb(value[1])}–{mb(value[2])})"


def compare(a: Path, b: Path) -> str:
    """B against A per variant; with repeats, a change whose run ranges overlap is
    "within noise" rather than a ratio that looks like a finding."""
    ta, preset_a, runs_a = figures_of(a)
    tb, preset_b, runs_b = figures_of(b)
    names = list(dict.fromkeys([*ta, *tb]))
    head = ["variant"]
    for label, _ in FIELDS:
        head += [f"{label} A", f"{label} B", "B/A"]
    lines = [
        f"A = {a} (preset {preset_a}, {runs_a} run{'s' if runs_a > 1 else ''}), "
        f"B = {b} (preset {preset_b}, {runs_b} run{'s' if runs_b > 1 else ''}); "
        "MB = 2^20 bytes; with repeats: median (min–max)",
        "",
    ]
    rows = []
    for name in names:
        va, vb = ta.get(name, {}), tb.get(name, {})
        row = [name]
        for _, key in FIELDS:
            x, y = va.get(key), vb.get(key)
            ratio = "–"
            if x and y and x[0] and y[0]:
                a = Spread(x[0], x[1], x[2], runs_a)
                b = Spread(y[0], y[1], y[2], runs_b)
                overlap = a.judged and b.judged and a.overlaps(b)
                ratio = "within noise" if overlap else f"{y[0] / x[0]:.2f}"
            row += [_cell(x, runs_a), _cell(y, runs_b), ratio]
        rows.append(row)
    return "\n".join(lines + markdown_table(head, rows))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `compare` command line, defined once (``stair-stepper compare`` and ``python -m``)."""
    parser.add_argument("a", type=Path, help="result folder A")
    parser.add_argument("b", type=Path, help="result folder B")


def main(argv: list[str] | None = None) -> int:
    """``python -m stair_stepper.analysis.compare``: the same as ``stair-stepper compare``."""
    from stair_stepper import cli

    return cli.main(["compare", *(sys.argv[1:] if argv is None else argv)])


def run_args(args: argparse.Namespace) -> int:
    print(compare(args.a, args.b))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
