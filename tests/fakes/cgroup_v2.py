"""STAND-IN FOR CGROUP V2'S MEMORY CONTROLLER, FOR TESTS ONLY. This machine's memory
controller is cgroup v1, so the v2 side of record/cgroups.py is checked against a folder
laid out as the kernel lays out a cgroup2 mount, with the file formats of
Documentation/admin-guide/cgroup-v2.rst ("Memory Interface Files", "Core Interface Files"):

- ``cgroup.controllers`` (space-separated) and ``cgroup.subtree_control`` (a "+memory" write
  enables the controller for the children);
- a child made by mkdir gets ``memory.current``, ``memory.peak`` (single values),
  ``memory.max``, ``memory.high``, ``memory.swap.max`` ("max" until written),
  ``memory.oom.group`` ("0"), ``memory.events`` (flat-keyed: low, high, max, oom, oom_kill,
  oom_group_kill, sock_throttled), ``memory.stat`` (flat-keyed, new keys "in the middle":
  anon, file, kernel, … in the kernel's order), ``cgroup.procs`` and ``cgroup.kill``;
- rmdir of a cgroup removes its folder and files, and fails (EBUSY) while it holds processes.

Not modelled: the "No Internal Process Constraint" (a non-root cgroup holding processes refuses
"+memory" with EBUSY: ``locate`` then says so in one sentence), any limit enforced, any charge
(the counters are what the test writes), OOM kills, reclaim, migration of a process by writing
its pid (written pids are only listed), memory.peak's per-descriptor reset, PAGE_SIZE rounding,
the root cgroup's missing files, delegation and permissions, cgroup.events and notifications.
"""

from __future__ import annotations

import errno
from pathlib import Path

from stair_stepper.record import cgroups

#: memory.stat's keys in the kernel's order (cgroup-v2.rst), a value each
STAT_KEYS = (
    "anon file kernel kernel_stack pagetables sec_pagetables percpu sock vmalloc shmem "
    "zswap zswapped file_mapped file_dirty file_writeback swapcached anon_thp file_thp "
    "shmem_thp inactive_anon active_anon inactive_file active_file unevictable "
    "slab_reclaimable slab_unreclaimable slab workingset_refault_anon pgscan pgsteal"
).split()
EVENTS = ("low", "high", "max", "oom", "oom_kill", "oom_group_kill", "sock_throttled")


def mount(root: Path, our_cgroup: str = "/lab.slice/lab.scope", controllers="cpu io memory pids"):
    """A cgroup2 mount at ``root`` with our cgroup in it, and /proc/self's two files saying
    so; returns the fake /proc/self folder (for ``cgroups.locate(proc=...)``)."""
    ours = root / "cgroup2" / our_cgroup.lstrip("/")
    ours.mkdir(parents=True)
    (ours / "cgroup.controllers").write_text(controllers + "\n")
    (ours / "cgroup.subtree_control").write_text("\n")
    (ours / "cgroup.procs").write_text("")
    proc = root / "proc-self"
    proc.mkdir()
    (proc / "cgroup").write_text(f"0::{our_cgroup}\n")
    (proc / "mounts").write_text(
        f"sysfs /sys sysfs rw,nosuid 0 0\ncgroup2 {root / 'cgroup2'} cgroup2 rw,nosuid 0 0\n"
    )
    return proc


def fill(path: Path) -> None:
    """What mkdir of a cgroup2 folder with the memory controller makes (cgroup-v2.rst)."""
    for name, text in (
        ("memory.current", "0\n"),
        ("memory.peak", "0\n"),
        ("memory.max", "max\n"),
        ("memory.high", "max\n"),
        ("memory.swap.max", "max\n"),
        ("memory.oom.group", "0\n"),
        ("memory.events", "".join(f"{e} 0\n" for e in EVENTS)),
        ("memory.stat", "".join(f"{k} 0\n" for k in STAT_KEYS)),
        ("cgroup.procs", ""),
        ("cgroup.kill", ""),
        ("cgroup.controllers", ""),
        ("cgroup.subtree_control", ""),
    ):
        (path / name).write_text(text)


def set_counters(path: Path, current: int, peak: int, anon: int, file: int, **events: int):
    (path / "memory.current").write_text(f"{current}\n")
    (path / "memory.peak").write_text(f"{peak}\n")
    values = {k: 4096 for k in STAT_KEYS} | {"anon": anon, "file": file}
    (path / "memory.stat").write_text("".join(f"{k} {values[k]}\n" for k in STAT_KEYS))
    (path / "memory.events").write_text("".join(f"{e} {events.get(e, 0)}\n" for e in EVENTS))


class StandInCgroup(cgroups.Cgroup):
    """``cgroups.Cgroup`` on the stand-in: mkdir fills the folder, rmdir empties it first."""

    def _make(self) -> None:
        super()._make()
        fill(self.path)

    def _rmdir(self) -> None:
        if (self.path / "cgroup.procs").read_text().split():
            raise OSError(errno.EBUSY, "Device or resource busy")
        for child in self.path.iterdir():
            child.unlink()
        super()._rmdir()

    def kill(self) -> None:  # cgroup.kill: the processes are gone (none really ran)
        super().kill()
        (self.path / "cgroup.procs").write_text("")
