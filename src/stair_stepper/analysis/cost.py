"""The price of each variant (latency, throughput, CPU, page faults, trims) and the verdict.

Per variant, from its batch log (``<variant>.batches.csv``):

- ``throughput_rps``: the median over its batches of requests answered a second (a closed
  loop at saturation: what the server sustains; an open loop: the rate it kept up with);
- ``latency_p50_ms``, ``latency_p99_ms``, ``latency_p99_9_ms``: the median over its batches of
  each batch's nearest-rank percentile (open loop: from when each request was due);
- ``cpu_user_ms_per_request``, ``cpu_system_ms_per_request``: the server's CPU over its batches
  (from /proc/<pid>/stat, the tree's for a tree) divided by the requests answered;
- ``minor_faults_per_request``, ``major_faults_per_request``: the same for page faults;
- ``failures``; ``lag_max_ms``: the open-loop sender's worst lateness; ``trim_s``: how long the
  trim held the allocator.

With ``--repeat`` every figure is a spread (median, min, max over the runs), and a change is
"within noise" when the two variants' run ranges overlap, the rule ``compare`` uses too.
"""

from __future__ import annotations

import statistics

from stair_stepper import allocators

MB = 2**20
COST_FIELDS = (
    "throughput_rps",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_p99_9_ms",
    "cpu_user_ms_per_request",
    "cpu_system_ms_per_request",
    "cpu_ms_per_request",
    "minor_faults_per_request",
    "major_faults_per_request",
    "failures",
    "lag_max_ms",
    "trim_s",
)


def _median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _per_request(spent: list, requests: list, scale: float = 1.0) -> float | None:
    pairs = [(s, r) for s, r in zip(spent, requests, strict=True) if s is not None and r]
    if not pairs:
        return None
    return sum(s for s, _ in pairs) * scale / sum(r for _, r in pairs)


def variant_cost(batches, trim: dict | None) -> dict | None:
    """The cost figures of one variant's batch log (None without one)."""
    if batches is None or "requests" not in batches.columns:
        return None
    col = batches.column
    requests = col("requests")
    user = _per_request(col("cpu_user_s"), requests, 1000)
    system = _per_request(col("cpu_system_s"), requests, 1000)
    return {
        "throughput_rps": _median(col("requests_per_second")),
        "latency_p50_ms": _median(col("p50_ms")),
        "latency_p99_ms": _median(col("p99_ms")),
        "latency_p99_9_ms": _median(col("p99_9_ms")),
        "cpu_user_ms_per_request": user,
        "cpu_system_ms_per_request": system,
        "cpu_ms_per_request": user + system if user is not None and system is not None else None,
        "minor_faults_per_request": _per_request(col("minor_faults"), requests),
        "major_faults_per_request": _per_request(col("major_faults"), requests),
        "failures": sum(f for f in col("failures") if f is not None),
        "lag_max_ms": max((x for x in col("lag_max_ms") if x is not None), default=None),
        "trim_s": (trim or {}).get("took_s") if isinstance(trim, dict) else None,
    }


def mode_words(config: dict) -> str:
    """How the numbers were produced: what they can be compared with."""
    load = (
        f"an open loop at {config['rate']:g} requests a second ({config.get('arrivals')} "
        "arrivals), latency from when each request was due"
        if config.get("rate")
        else f"a closed loop of {config.get('concurrency')} requests in flight, latency from "
        "each send"
    )
    side = (
        "the variants side by side, sharing the cores: their latencies compare with each other "
        "but are not capacities"
        if config.get("parallel")
        else "the variants one after another, each with the machine to itself"
    )
    return f"{load}; {side}"


def within_noise(a, b) -> bool:
    """Two spreads whose run ranges overlap (several runs each): no change worth a number."""
    if not (isinstance(a, dict) and isinstance(b, dict) and a and b):
        return False
    return a["n"] > 1 and b["n"] > 1 and a["min"] <= b["max"] and b["min"] <= a["max"]


def _mid(value):
    return value["median"] if isinstance(value, dict) else value


def _change(mine, theirs, better_low: bool = True, unit: str = "%") -> str:
    """A variant's change against the reference, in words: ±x % (range) or within noise."""
    if _mid(mine) is None or not _mid(theirs):
        return "not measured"
    if within_noise(mine, theirs):
        return "within noise"
    ratio = _mid(mine) / _mid(theirs) - 1
    words = f"{ratio:+.0%}"
    if isinstance(mine, dict) and isinstance(theirs, dict) and mine.get("n", 1) > 1:
        lo, hi = mine["min"] / theirs["max"] - 1, mine["max"] / theirs["min"] - 1
        words += f" ({lo:+.0%} to {hi:+.0%})"
    return words


def verdict(variants: dict, meta_variants: dict, config: dict, provenance: dict) -> dict:
    """For each variant against the system's allocator (or the first variant): memory saved and
    the price in
    latency, throughput and CPU; the best variant and the environment that reproduces it."""
    names = list(variants)
    if not names:
        return {"lines": [], "best": None, "environment": []}
    reference = allocators.SYSTEM if allocators.SYSTEM in variants else names[0]
    ref = variants[reference]
    lines = []
    for name in names:
        if name == reference:
            continue
        v = variants[name]
        floor, ref_floor = v.get("median_floor_bytes"), ref.get("median_floor_bytes")
        if _mid(floor) and _mid(ref_floor):
            memory = _memory_words(floor, ref_floor)
        else:
            memory = "memory not compared (no settled floors)"
        cost, ref_cost = v.get("cost") or {}, ref.get("cost") or {}
        lines.append(
            f"{name} against {reference}: {memory}; p99 latency "
            f"{_change(cost.get('latency_p99_ms'), ref_cost.get('latency_p99_ms'))}, "
            f"throughput {_change(cost.get('throughput_rps'), ref_cost.get('throughput_rps'))}, "
            f"CPU per request "
            f"{_change(cost.get('cpu_ms_per_request'), ref_cost.get('cpu_ms_per_request'))}."
        )
    best = _best(variants)
    if (
        best
        and best != reference
        and within_noise(variants[best].get("median_floor_bytes"), ref.get("median_floor_bytes"))
    ):
        best = reference  # lower, but not beyond the runs' own spread: nothing to change
    return {
        "reference": reference,
        "lines": lines,
        "best": best,
        "environment": environment(meta_variants.get(best) or {}, config) if best else [],
        "caveats": (
            f"Measured on this machine ({provenance.get('cpu_count')} CPUs, kernel "
            f"{provenance.get('kernel')}, Python {provenance.get('python')}) with this workload "
            f"and {mode_words(config)}; your service's allocation pattern and load decide for "
            "it: measure it with --app or --command before changing production."
        ),
    }


def _memory_words(floor, ref_floor) -> str:
    """``2.40× less memory at the floors (62 MB saved)``, or more, or within noise."""
    mine, theirs = _mid(floor), _mid(ref_floor)
    mb = abs(theirs - mine) / MB
    if within_noise(floor, ref_floor):
        return f"memory at the floors within noise ({(mine - theirs) / MB:+.0f} MB)"
    if mine <= theirs:
        return f"{theirs / mine:.2f}× less memory at the floors ({mb:.0f} MB saved)"
    return f"{mine / theirs:.2f}× more memory at the floors ({mb:.0f} MB more)"


def _best(variants: dict) -> str | None:
    """The lowest median settled floor among the variants that failed no request."""
    ok = {
        n: _mid(v.get("median_floor_bytes"))
        for n, v in variants.items()
        if _mid(v.get("median_floor_bytes")) and not _mid((v.get("cost") or {}).get("failures"))
    }
    return min(ok, key=ok.get) if ok else None


def environment(info: dict, config: dict) -> list[str]:
    """The lines to paste into a service's environment for this variant: its library as found
    on this machine, its settings as given, PYTHONMALLOC as the run had it."""
    health, settings = info.get("health") or {}, info.get("settings") or {}
    lines = []
    provider = health.get("malloc_provider") or ""
    allocator = allocators.get(settings.get("allocator") or "")
    if allocator is not None and allocator.preloaded and provider.startswith("/"):
        lines.append(f"LD_PRELOAD={provider}")
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
    if "workers" in strategy or "max_requests" in strategy:
        lines.append(
            f"# and hypercorn --workers {strategy.get('workers', 1)} --max-requests "
            f"{strategy.get('max_requests', '…')}"
        )
    return lines


def verdict_text(result: dict) -> list[str]:
    """The verdict, for the top of summary.md and the end of a run."""
    found = result.get("verdict") or {}
    if not found.get("lines"):
        return []
    text = ["## Verdict", ""]
    text += [f"- {line}" for line in found["lines"]]
    if found.get("best") == found.get("reference"):
        text += [
            "",
            f"No variant's floors are lower than **{found['best']}**'s beyond the runs' spread: "
            "nothing to change. The environment this run had, as found on this machine:",
            "",
            "```sh",
            *(found["environment"] or ["# (nothing set)"]),
            "```",
        ]
    elif found.get("best"):
        text += [
            "",
            f"Lowest memory without a failed request: **{found['best']}**. "
            "Its environment, as found on this machine:",
            "",
            "```sh",
            *found["environment"],
            "```",
        ]
    text += ["", found.get("caveats", ""), ""]
    return text


def cost_table(variants: dict, spread_text=None) -> list[str]:
    """The price per variant as table rows (numbers, or median (min–max) with repeats)."""

    def cell(value, digits=1):
        if isinstance(value, dict):
            return spread_text(value, digits, 1) if value else "–"
        return "–" if value is None else f"{value:,.{digits}f}"

    rows = []
    for name, v in variants.items():
        c = v.get("cost") or {}
        rows.append(
            [
                name,
                cell(c.get("throughput_rps")),
                cell(c.get("latency_p50_ms"), 0),
                cell(c.get("latency_p99_ms"), 0),
                cell(c.get("cpu_user_ms_per_request"), 2),
                cell(c.get("cpu_system_ms_per_request"), 2),
                cell(c.get("minor_faults_per_request"), 0),
                cell(c.get("failures"), 0),
            ]
        )
    return rows


COST_HEAD = [
    "variant",
    "req/s",
    "p50 ms",
    "p99 ms",
    "CPU user ms/req",
    "CPU sys ms/req",
    "minor faults/req",
    "failures",
]
