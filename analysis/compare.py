"""`stair-stepper compare A B`: two result folders side by side (``python -m analysis.compare``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stair_stepper.analysis import summary as numbers

FIELDS = (
    ("median floor", "median_floor_bytes"),
    ("last floor", "last_floor_bytes"),
    ("after trim", "after_trim_bytes"),
    ("peak", "peak_bytes"),
)


def compare(a: Path, b: Path) -> str:
    sa, sb = numbers.summarise(a), numbers.summarise(b)
    names = list(dict.fromkeys([*sa["variants"], *sb["variants"]]))
    head = ["variant"]
    for label, _ in FIELDS:
        head += [f"{label} A", f"{label} B", "B/A"]
    lines = [
        f"A = {a} (preset {sa.get('preset')}), B = {b} (preset {sb.get('preset')}); "
        "MB = 2^20 bytes",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name in names:
        va, vb = sa["variants"].get(name, {}), sb["variants"].get(name, {})
        row = [name]
        for _, key in FIELDS:
            x, y = va.get(key), vb.get(key)
            row += [numbers.mb(x), numbers.mb(y), f"{y / x:.2f}" if x and y else "–"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stair-stepper compare", description=__doc__)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    try:
        print(compare(args.a, args.b))
    except numbers.NoTraces as exc:
        print(f"stair-stepper: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
