"""``stair-stepper cleanup``: remove the memory cgroups a run killed hard left behind.

A run removes its servers' cgroups when it ends, whatever ends it, but not when it is
SIGKILLed (nothing runs then): its cgroups stay, named ``stair-stepper-<lab>-<variant>``
(``cgroups.lab_id``: the lab's pid, start time and pid namespace). The next run removes
every one whose lab is gone before it starts, anywhere in the memory hierarchy; this command
does the same at any time, killing whatever still runs in them first. A cgroup of a run still
going is never touched, nor one made from another pid namespace.
"""

from __future__ import annotations

import argparse

from stair_stepper.errors import UserError
from stair_stepper.record import cgroups


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be removed, remove nothing"
    )


def run_args(args: argparse.Namespace) -> int:
    where = cgroups.locate()
    if isinstance(where, str):
        raise UserError(f"nothing to clean up: {where}.")
    left, root = cgroups.stale(where), where.mount or where.parent
    if args.dry_run:
        for path in left:
            print(f"would remove {path}")
        print(f"{len(left)} cgroup(s) left by runs that are gone, under {root}")
        return 0
    removed = cgroups.remove_stale(where)
    for path in removed:
        print(f"removed {path}")
    kept = [p for p in left if p not in removed]
    for path in kept:
        print(f"could not remove {path}")
    print(f"{len(removed)} cgroup(s) removed under {root}")
    return 1 if kept else 0
