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
import os
from pathlib import Path

from stair_stepper.errors import UserError
from stair_stepper.record import cgroups, procfs
from stair_stepper.record.cgroups import PREFIX, Cgroup, Where


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be removed, remove nothing"
    )


def run_args(args: argparse.Namespace) -> int:
    where = cgroups.locate()
    if isinstance(where, str):
        raise UserError(f"nothing to clean up: {where}.")
    left, root = stale(where), where.mount or where.parent
    if args.dry_run:
        for path in left:
            print(f"would remove {path}")
        print(f"{len(left)} cgroup(s) left by runs that are gone, under {root}")
        return 0
    removed = remove_stale(where)
    for path in removed:
        print(f"removed {path}")
    kept = [p for p in left if p not in removed and p.exists()]  # else another run took it
    for path in kept:
        print(f"could not remove {path}")
    print(f"{len(removed)} cgroup(s) removed under {root}")
    return 1 if kept else 0


def _gone(lab: str, beside_ours: bool) -> bool:
    """Whether the lab that named a cgroup ``lab`` is gone. Judged only in our own pid
    namespace (the same pid elsewhere is another process, and a run there may be live); a pid
    that runs again but started at another time is another process. A name of the pid alone
    (an older lab's) is judged only beside our own cgroup, as that lab did."""
    parts = lab.split(".")
    if not all(part.isdigit() for part in parts):
        return False
    if len(parts) == 1:
        return beside_ours and not os.path.exists(f"/proc/{lab}")
    if len(parts) != 3 or int(parts[2]) != procfs.pid_namespace():
        return False
    return procfs.started(parts[0]) != int(parts[1])


def stale(where: Where) -> list[Path]:
    """Cgroups of ours whose lab is gone (a run killed hard), anywhere in the hierarchy: a
    lab started from another cgroup (another login, service or session) made its own there."""
    found = []
    for folder, children, _ in os.walk(where.mount or where.parent):
        ours = [c for c in children if c.startswith(PREFIX)]
        children[:] = [c for c in children if not c.startswith(PREFIX)]  # ours hold no others
        for name in sorted(ours):
            lab = name.removeprefix(PREFIX).partition("-")[0]
            if _gone(lab, Path(folder) == where.parent):
                found.append(Path(folder) / name)
    return found


def remove_stale(where: Where, kind: type[Cgroup] = Cgroup) -> list[Path]:
    """Remove the cgroups ``stale`` finds, killing what still runs in them; the removed (by
    us: a run starting meanwhile removes them too, and may take one first)."""
    removed = []
    for path in stale(where):
        if not path.exists():
            continue
        try:
            kind.found(where, path).remove()
        except OSError:
            continue
        removed.append(path)
    return removed
