"""The verdict: for each variant against the system's allocator, the memory saved and the price
paid, judged against the measurements' own noise; the best variant and the environment that
reproduces it.

A difference is a finding only when the two variants' ranges do not overlap: over the runs
with ``--repeat``, over the batches of the one run otherwise (a run's batches are its only
repeated measurement; a difference inside their spread is "within noise"). One value on a side
judges nothing and says so (``spread.change``). The best variant is the lowest settled floor
without a failed request, and only if its floors are lower than the reference's beyond that
noise; otherwise nothing is to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stair_stepper import allocators
from stair_stepper.analysis import cost
from stair_stepper.analysis.spread import MB, Spread, change, one_of

#: how the verdict's last paragraph begins (its caveats): where the verdict ends on a page
CAVEATS = "Measured on this machine"


@dataclass(frozen=True)
class Standing:
    """What the verdict compares for one variant: its settled floors and its price."""

    floor: Spread | None
    cost: dict[str, Spread | None] = field(default_factory=dict)
    failures: float = 0
    #: under a memory limit: the OOM kill's sentence (one run), or in how many runs of how many
    oom: str | None = None
    survived: str | None = None


def standings(summary: dict) -> dict[str, Standing]:
    """Each variant's standing in a summary: a run's (floors and price over its batches), or a
    --repeat folder's (over its runs)."""
    repeated = "runs" in summary
    found = {}
    for name, v in summary["variants"].items():
        c = v.get("cost") or {}
        costs = {key: Spread.from_json(c.get(key)) for key in cost.SPREAD_FIELDS}
        if repeated:
            floor = Spread.from_json(v.get("median_floor_bytes"))
            failures = (Spread.from_json(c.get("failures")) or Spread(0, 0, 0, 1)).max
        else:
            floor = Spread.from_json(v.get("floor_spread"))
            failures = c.get("failures") or 0
        found[name] = Standing(floor, costs, failures, *_container(name, v))
    return found


def _container(name: str, v: dict) -> tuple[str | None, str | None]:
    """(the OOM kill in words, or None; survival of the limit in words, or None)."""
    limit, peak = v.get("limit_bytes"), v.get("cgroup_peak_bytes")
    runs = v.get("oom_runs")
    if runs is not None:  # a --repeat folder: in how many runs
        killed, total = runs
        if killed:
            return f"{name}: OOM-killed at {limit / MB:.0f} MiB in {killed} of {total} runs", None
    elif v.get("outcome"):
        return v["outcome"]["sentence"], None
    if limit:
        charged = f" (charged peak {peak / MB:.0f} MiB)" if peak else ""
        return None, f"{name}: survives the {limit / MB:.0f} MiB limit{charged}"
    return None, None


def verdict(
    ranks: dict[str, Standing], meta_variants: dict, config: dict, provenance: dict
) -> dict:
    """For each variant against the system's allocator (or the first variant): memory saved and
    the price in latency, throughput and CPU; the best variant and the environment that
    reproduces it."""
    names = list(ranks)
    if not names:
        return {"lines": [], "best": None, "environment": []}
    reference = allocators.SYSTEM if allocators.SYSTEM in ranks else names[0]
    ref = ranks[reference]
    lines = []
    for name in names:
        if name == reference:
            continue
        v = ranks[name]
        memory = (
            _memory_words(v.floor, ref.floor)
            if v.floor and ref.floor and v.floor.median and ref.floor.median
            else "memory not compared (no settled floors)"
        )
        prices = ", ".join(
            f"{words} {change(v.cost.get(key), ref.cost.get(key))}"
            for words, key in (
                ("p99 latency", "latency_p99_ms"),
                ("throughput", "throughput_rps"),
                ("CPU per request", "cpu_ms_per_request"),
            )
        )
        lines.append(f"{name} against {reference}: {memory}; {prices}.")
    for name in names:  # under a memory limit: killed or survived, each said
        if ranks[name].oom or ranks[name].survived:
            lines.append(f"{ranks[name].oom or ranks[name].survived}.")
    for name in names:  # what a process ran with that nobody asked for: never a silent floor
        settings = (meta_variants.get(name) or {}).get("settings") or {}
        remedies = getattr(
            allocators.get(settings.get("allocator") or ""), "post_fork_remedies", ()
        )
        for found in settings.get("findings") or []:
            fix = (
                f" (a variant with post_fork={remedies[0]} measures the remedy)" if remedies else ""
            )
            lines.append(
                f"{name}: **{found['sentence']}**; its floors were measured that way{fix}."
            )
    best = _best(ranks)
    if best and best != reference and not _beyond_noise(ranks[best].floor, ref.floor):
        best = reference  # lower, but not beyond the measurements' own spread: nothing to change
    over = next((s.floor.over for s in ranks.values() if s.floor), "runs")
    return {
        "reference": reference,
        "lines": lines,
        "best": best,
        "over": over,
        "environment": environment(meta_variants.get(best) or {}, config) if best else [],
        "caveats": (
            f"{CAVEATS} ({provenance.get('cpu_count')} CPUs, kernel "
            f"{provenance.get('kernel')}, Python {provenance.get('python')}) with this workload "
            f"and {cost.mode_words(config)}; your service's allocation pattern and load decide "
            "for it: measure it with --app or --command before changing production."
        ),
    }


def _beyond_noise(mine: Spread | None, theirs: Spread | None) -> bool:
    return bool(mine and theirs and mine.judged and theirs.judged and not mine.overlaps(theirs))


def _memory_words(floor: Spread, ref_floor: Spread) -> str:
    """``2.40× less memory at the floors (62 MB saved)``, or more, or within noise, or not
    judged (one value on a side)."""
    mine, theirs = floor.median, ref_floor.median
    mb = abs(theirs - mine) / MB
    if not (floor.judged and ref_floor.judged):
        one = one_of(floor.over)
        return f"memory at the floors not judged (one {one}: --repeat 3 tells it from noise)"
    if floor.overlaps(ref_floor):
        return f"memory at the floors within noise ({(mine - theirs) / MB:+.0f} MB)"
    if mine <= theirs:
        return f"{theirs / mine:.2f}× less memory at the floors ({mb:.0f} MB saved)"
    return f"{mine / theirs:.2f}× more memory at the floors ({mb:.0f} MB more)"


def _best(ranks: dict[str, Standing]) -> str | None:
    """The lowest median settled floor among the variants that failed no request."""
    ok = {
        n: s.floor.median
        for n, s in ranks.items()
        if s.floor and s.floor.median and not s.failures and not s.oom
    }
    return min(ok, key=ok.get) if ok else None


def environment(info: dict, config: dict) -> list[str]:
    """The lines to paste into a service's environment for this variant, as its server ran: its
    library as found on this machine, its settings as given, PYTHONMALLOC as the run had it;
    never empty (a variant that sets nothing says so)."""
    health, settings = info.get("health") or {}, info.get("settings") or {}
    lines = []
    provider = health.get("malloc_provider") or ""
    allocator = allocators.get(settings.get("allocator") or "")
    if allocator is not None and allocator.preloaded:
        library = provider if provider.startswith("/") else health.get("library")
        lines.append(f"LD_PRELOAD={library or '<the ' + allocator.name + ' library>'}")
    elif allocator is None and not settings:
        return [
            "# not known: the run recorded no settings for this variant (an earlier format, "
            "or a variant that never started)"
        ]
    lines += [f"{k}={v}" for k, v in (settings.get("given") or {}).items()]
    python = settings.get("python_malloc")
    if python and python != "pymalloc" and "PYTHONMALLOC" not in (settings.get("given") or {}):
        lines.append(f"PYTHONMALLOC={python}")
    strategy = settings.get("strategy") or {}
    if "trim_every" in strategy:
        lines.append(
            f"# and a malloc_trim(0) every {strategy['trim_every']} s: "
            "stair-stepper's middleware made it; your service needs its own"
        )
    remedy = strategy.get("post_fork")
    if remedy and allocator is not None:
        code = allocator.remedy_code(remedy).splitlines()
        lines += [
            f"# and in every forked worker, {remedy} turned back on (gunicorn.conf.py):",
            "# def post_fork(server, worker):",
            *[f"#     {line}" if line else "#" for line in code],
        ]
    if "workers" in strategy or "max_requests" in strategy:
        lines.append(
            f"# and hypercorn --workers {strategy.get('workers', 1)} --max-requests "
            f"{strategy.get('max_requests', '…')}"
        )
    if not lines:
        name = settings.get("allocator") or "the system's allocator"
        lines.append(f"# nothing to set: {name} with its defaults, as the server ran")
    return lines


def verdict_text(result: dict) -> list[str]:
    """The verdict, for the top of summary.md and the end of a run."""
    found = result.get("verdict") or {}
    if not found.get("lines"):
        return []
    text = ["## Verdict", ""]
    text += [f"- {line}" for line in found["lines"]]
    if found.get("over") == "batches":
        text += [
            "",
            "One run: each difference above is judged against the spread of this run's "
            "batches; run with --repeat 3 to judge it against the spread between runs.",
        ]
    if found.get("best") == found.get("reference"):
        text += [
            "",
            f"No variant's floors are lower than **{found['best']}**'s beyond the measurements' "
            "spread: nothing to change. The environment this run had, as found on this machine:",
        ]
    elif found.get("best"):
        text += [
            "",
            f"Lowest memory without a failed request: **{found['best']}**. "
            "Its environment, as found on this machine:",
        ]
    if found.get("best"):
        text += ["", "```sh", *found["environment"], "```"]
    text += ["", found.get("caveats", ""), ""]
    return text
