"""``experiment --find-limit``: per variant, the smallest memory limit under which the whole
workload completes, found by bisection over whole workloads.

For each variant: one run without a limit (its server still in a cgroup of its own), whose
cgroup peak is where the search starts; a run at that peak (raised by a quarter until one
passes); then bisection between the largest limit that failed and the smallest that passed
until they are within 5 % or 16 MiB of each other, whichever is larger. A run *passes* when
it completes with no OOM kill and no failed request. Every run is a complete result folder of
its own (``<variant>/unlimited``, ``<variant>/limit-<MiB>``); ``find-limit.json`` and
``find-limit.md`` say, per variant, the smallest limit that passed, the largest that failed,
how many workloads that took and how long, and the unlimited run's peak beside it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from stair_stepper.errors import Stopper, UserError
from stair_stepper.experiment.presets import Config
from stair_stepper.files import write_json
from stair_stepper.record.schema import BATCHES_SUFFIX, read_batches

MIB = 1 << 20
#: the search stops when the two limits are within this share, or MIN_STEP, of each other
SHARE, MIN_STEP = 0.05, 16 * MIB
MAX_RAISES = 4  # runs at the peak raised by a quarter before the search gives up


def outcome(folder: Path) -> dict:
    """One workload's result: passed (complete, no OOM kill, no failed request), the cgroup
    peak, and why it failed."""
    summary = json.loads((folder / "summary.json").read_text())
    [(name, v)] = summary["variants"].items()
    meta = json.loads((folder / "meta.json").read_text())
    batches = folder / f"{name}{BATCHES_SUFFIX}"
    failures = (
        sum(f or 0 for f in read_batches(batches).column("failures")) if batches.exists() else 0
    )
    killed = v.get("outcome") or {}
    why = killed.get("sentence") or (f"{failures} failed requests" if failures else None)
    if meta.get("status") != "complete":
        why = f"the run ended {meta.get('status')}"
    return {"passed": why is None, "why": why, "peak_bytes": v.get("cgroup_peak_bytes")}


def search(config: Config, out: Path, stopper: Stopper, run) -> Path:
    """Every variant's smallest limit (``run(config, folder, stopper)`` makes one workload's
    folder); the folder holding them all."""
    from stair_stepper.experiment.run import result_folder

    if config.repeat > 1:
        raise UserError("--find-limit repeats whole workloads itself: leave out --repeat.")
    if config.service.memory_limit:
        raise UserError("--find-limit finds the limit: leave out --memory-limit.")
    top = result_folder(str(out) if out else None, f"{config.preset}-find-limit")
    found: dict[str, dict] = {}
    for name in config.variants:
        found[name] = _one_variant(config.set(variants=(name,)), top / _safe(name), stopper, run)
        write_json(top / "find-limit.json", {"config": config.flat(), "variants": found})
    (top / "find-limit.md").write_text(markdown(found))
    print(markdown(found), file=sys.stderr)
    return top


def _safe(name: str) -> str:
    return name.replace("/", "_")


def _one_variant(config: Config, folder: Path, stopper: Stopper, run) -> dict:
    folder.mkdir(parents=True)
    began = time.monotonic()
    tried: list[dict] = []

    def attempt(limit: int | None) -> dict:
        stopper.check()
        where = folder / (f"limit-{limit // MIB}" if limit else "unlimited")
        run(config.set(memory_limit=limit), where, stopper)
        result = {"limit_bytes": limit, "folder": where.name, **outcome(where)}
        tried.append(result)
        said = "passed" if result["passed"] else f"failed ({result['why']})"
        shown = f"{limit // MIB} MiB" if limit else "no limit"
        print(
            f"stair-stepper: find-limit: {config.variants[0]} at {shown}: {said}", file=sys.stderr
        )
        return result

    free = attempt(None)
    peak = free["peak_bytes"]
    answer = {"unlimited_peak_bytes": peak, "tries": tried}
    if not free["passed"] or not peak:
        answer["smallest_passed_bytes"] = None
        answer["why"] = free["why"] or "its cgroup recorded no peak"
        return _finish(answer, began)
    passed, failed = None, None
    limit = _mib(peak)
    for _ in range(MAX_RAISES):
        if attempt(limit)["passed"]:
            passed = limit
            break
        failed, limit = limit, _mib(limit * 1.25)
    if passed is None:
        answer.update(smallest_passed_bytes=None, largest_failed_bytes=failed)
        answer["why"] = f"no limit up to {failed // MIB} MiB let the workload complete"
        return _finish(answer, began)
    low = failed or 0
    while passed - low > max(SHARE * passed, MIN_STEP):
        middle = _mib((passed + low) / 2) if low else _mib(passed / 2)
        if middle in (passed, low):
            break
        if attempt(middle)["passed"]:
            passed = middle
        else:
            low = middle
    answer.update(smallest_passed_bytes=passed, largest_failed_bytes=low or None)
    return _finish(answer, began)


def _mib(value: float) -> int:
    """A limit in whole MiB (rounded up: never below what was asked)."""
    return -(-int(value) // MIB) * MIB


def _finish(answer: dict, began: float) -> dict:
    answer["workloads"] = len(answer["tries"])
    answer["duration_s"] = time.monotonic() - began
    return answer


def markdown(found: dict[str, dict]) -> str:
    """The search's answer per variant, and the gap to the unlimited run's peak."""
    lines = [
        "# stair-stepper find-limit",
        "",
        "| variant | unlimited run's charged peak | smallest limit that passed | largest that "
        "failed | gap to the peak | workloads | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a in found.items():
        peak, passed, failed = (
            a.get("unlimited_peak_bytes"),
            a.get("smallest_passed_bytes"),
            a.get("largest_failed_bytes"),
        )
        gap = f"{(passed - peak) / MIB:+.0f} MiB" if passed and peak else "–"
        lines.append(
            f"| {name} | {_m(peak)} | {_m(passed)} | {_m(failed)} | {gap} | "
            f"{a['workloads']} | {a['duration_s'] / 60:.1f} min |"
        )
    lines.append("")
    for name, a in found.items():
        if a.get("smallest_passed_bytes"):
            lines.append(
                f"- {name} needs at least {_m(a['smallest_passed_bytes'])} for this workload "
                f"(it was OOM-killed or failed requests at {_m(a.get('largest_failed_bytes'))})."
            )
        else:
            lines.append(f"- {name}: no limit found ({a.get('why')}).")
    return "\n".join(lines) + "\n"


def _m(value) -> str:
    return f"{value / MIB:.0f} MiB" if value else "–"
