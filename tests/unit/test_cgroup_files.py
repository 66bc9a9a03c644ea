"""record/cgroups.py against cgroup v2's documented files (a stand-in: tests/fakes/cgroup_v2.py,
which says what it does not model) and v1's layout as /proc shows it. The real thing, v1 on
this machine, is tests/test_cgroups.py."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
import cgroup_v2  # noqa: E402  (tests/fakes/cgroup_v2.py)

from stair_stepper.errors import UserError  # noqa: E402
from stair_stepper.record import cgroups, cleanup  # noqa: E402
from stair_stepper.validate import memory_size  # noqa: E402

MIB = 1 << 20


def test_v2_is_found_where_memory_is_on_the_unified_hierarchy(tmp_path):
    proc = cgroup_v2.mount(tmp_path)
    where = cgroups.locate(proc)
    mount = tmp_path / "cgroup2"
    assert where == cgroups.Where(2, mount / "lab.slice" / "lab.scope", mount)
    # enabling memory for the children is the kernel's "+memory" write
    assert (where.parent / "cgroup.subtree_control").read_text() == "+memory"


def test_v1_is_used_where_memory_is_not_on_the_unified_hierarchy(tmp_path):
    proc = cgroup_v2.mount(tmp_path, controllers="hugetlb")
    memory = tmp_path / "v1memory"
    (memory / "lab").mkdir(parents=True)
    (proc / "cgroup").write_text("4:memory:/lab\n0::/lab.slice/lab.scope\n")
    mounts = (proc / "mounts").read_text()
    (proc / "mounts").write_text(mounts + f"cgroup {memory} cgroup rw,relatime,memory 0 0\n")
    assert cgroups.locate(proc) == cgroups.Where(1, memory / "lab", memory)


def test_no_memory_controller_is_one_sentence(tmp_path):
    proc = cgroup_v2.mount(tmp_path, controllers="cpu pids")
    assert cgroups.locate(proc) == (
        "no memory cgroup controller is mounted here (neither v2's nor v1's)"
    )


def test_a_v2_cgroup_is_limited_read_and_removed_as_documented(tmp_path):
    where = cgroups.locate(cgroup_v2.mount(tmp_path))
    group = cgroup_v2.StandInCgroup(where, "glibc", 768 * MIB, high=700 * MIB)
    assert group.path.name.startswith("stair-stepper-") and group.path.name.endswith("-glibc")
    assert (group.path / "memory.max").read_text() == str(768 * MIB)
    assert (group.path / "memory.high").read_text() == str(700 * MIB)
    assert (group.path / "memory.swap.max").read_text() == "0"  # the limit is all it gets
    assert (group.path / "memory.oom.group").read_text() == "1"  # the container dies whole
    cgroup_v2.set_counters(
        group.path, 500 * MIB, 600 * MIB, 450 * MIB, 40 * MIB, max=3, oom=1, oom_kill=2, high=7
    )
    assert group.read() == {
        "charged_bytes": 500 * MIB,
        "peak_bytes": 600 * MIB,
        "anon_bytes": 450 * MIB,
        "file_bytes": 40 * MIB,
        "oom_kills": 2,
        "oom_events": 1,
        "limit_hits": 3,
        "high_events": 7,
    }
    assert group.charged() == 500 * MIB and group.oom_kills() == 2
    group.kill()
    assert (group.path / "cgroup.kill").read_text() == "1"
    group.remove()
    assert not group.path.exists()


def test_a_run_killed_hard_leaves_cgroups_the_next_one_removes(tmp_path):
    where = cgroups.locate(cgroup_v2.mount(tmp_path))
    dead = where.parent / "stair-stepper-999999999-glibc"  # an older lab's name: no such pid
    dead.mkdir()
    alive = cgroup_v2.StandInCgroup(where, "mine", None)  # ours: this process is alive
    assert cleanup.stale(where) == [dead]
    assert alive.path.exists()


def test_what_a_lab_left_elsewhere_in_the_hierarchy_is_found_and_only_that(tmp_path):
    """A lab started from another cgroup (the previous login or session) made its cgroups
    there: they are found from here too when their lab is gone — but never a live lab's, nor
    one from another pid namespace, where the same pid is another process."""
    where = cgroups.locate(cgroup_v2.mount(tmp_path))
    elsewhere = where.mount / "session-2.scope"
    pid, start, namespace = cgroups.lab_id().split(".")
    names = {
        "gone": f"stair-stepper-999999999.{start}.{namespace}-glibc",
        "pid used again": f"stair-stepper-{pid}.{int(start) + 1}.{namespace}-jemalloc",
        "live": f"stair-stepper-{pid}.{start}.{namespace}-tcmalloc",
        "another namespace": f"stair-stepper-999999999.{start}.{int(namespace) + 1}-glibc",
        "an older lab's, not beside ours": "stair-stepper-999999999-glibc",
        "not ours": "stair-stepper-tests-glibc",
    }
    for name in names.values():
        (elsewhere / name).mkdir(parents=True)
    found = {p.name for p in cleanup.stale(where)}
    assert found == {names["gone"], names["pid used again"]}, found


def test_a_cgroup_is_named_by_its_lab_s_pid_start_and_namespace(tmp_path):
    where = cgroups.locate(cgroup_v2.mount(tmp_path))
    group = cgroup_v2.StandInCgroup(where, "glibc", None)
    assert group.path.name == f"stair-stepper-{cgroups.lab_id()}-glibc"
    pid, start, namespace = cgroups.lab_id().split(".")
    assert int(pid) == os.getpid()
    assert int(namespace) == os.stat("/proc/self/ns/pid").st_ino
    with open("/proc/self/stat") as handle:  # field 22, after "(name)"
        assert int(start) == int(handle.read().rpartition(")")[2].split()[19])


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("768M", 768 * MIB),
        ("1G", 1 << 30),
        ("512Mi", 512 * MIB),
        ("1.5GiB", 3 << 29),
        ("4096", 4096),
    ],
)
def test_memory_sizes(text, size):
    assert memory_size("--memory-limit", text) == size


@pytest.mark.parametrize("text", ["lots", "0", "-1M", "nan"])
def test_a_bad_memory_size_is_one_sentence(text):
    with pytest.raises(UserError, match="--memory-limit"):
        memory_size("--memory-limit", text)


def test_memory_plus_swap_is_limited_only_where_swap_is_on(tmp_path):
    """/proc/swaps as the kernel writes it: a heading, then a line per swap device. Without
    one, v1's memsw would be the memory counter again (and hide every limit hit)."""
    swaps = tmp_path / "swaps"
    swaps.write_text("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
    assert not cgroups._swap_on(swaps)
    swaps.write_text(
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        "/dev/vda2                               partition\t1048572\t\t0\t\t-2\n"
    )
    assert cgroups._swap_on(swaps)
    assert cgroups._swap_on(tmp_path / "absent")  # not knowable: limited as if on


def test_a_cgroup_left_behind_is_read_back_as_it_was_made_and_removed(tmp_path):
    """What a run killed hard left is taken up with its limits read from its files (v2's
    "max" is no limit), then killed and removed by the next run."""
    where = cgroups.locate(cgroup_v2.mount(tmp_path))
    made = cgroup_v2.StandInCgroup(where, "glibc", 768 * MIB, high=700 * MIB)
    again = cgroup_v2.StandInCgroup.found(where, made.path)
    assert (again.version, again.path, again.limit, again.high, again.memsw_limited) == (
        2,
        made.path,
        768 * MIB,
        700 * MIB,
        False,
    )
    unlimited = cgroup_v2.StandInCgroup(where, "jemalloc", None)
    assert cgroup_v2.StandInCgroup.found(where, unlimited.path).limit is None
    dead = where.parent / "stair-stepper-999999999-tcmalloc"  # an older lab's: no such pid
    dead.mkdir()
    cgroup_v2.fill(dead)
    (dead / "cgroup.procs").write_text("999999999\n")  # what still ran in it
    assert cleanup.remove_stale(where, cgroup_v2.StandInCgroup) == [dead]
    assert not dead.exists() and made.path.exists() and unlimited.path.exists()


def test_a_cgroup_another_run_removes_first_is_neither_ours_nor_a_failure(tmp_path, monkeypatch):
    """Every run removes what a run killed hard left before it starts, so two at once may reach
    the same cgroup: cleanup does not say it removed one another run took between its listing
    and its removal, nor that it could not."""
    where = cgroups.locate(cgroup_v2.mount(tmp_path))
    dead = where.parent / "stair-stepper-999999999-glibc"  # an older lab's: no such pid
    dead.mkdir()
    cgroup_v2.fill(dead)
    listed = cleanup.stale(where)
    assert listed == [dead]
    shutil.rmtree(dead)  # the other run's removal
    monkeypatch.setattr(cleanup, "stale", lambda _: listed)  # listed before it was taken
    assert cleanup.remove_stale(where, cgroup_v2.StandInCgroup) == []
    monkeypatch.setattr(cleanup.cgroups, "locate", lambda: where)
    monkeypatch.setattr(cleanup, "remove_stale", lambda w: [])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = cleanup.run_args(argparse.Namespace(dry_run=False))
    assert status == 0 and "could not remove" not in printed.getvalue(), printed.getvalue()
