"""The price of each variant: latency, throughput, CPU, page faults, trims.

Per variant, from its batch log (``<variant>.batches.csv``), each figure per batch, kept as a
``Spread`` over the batches (one run) or, with ``--repeat``, over the runs' medians:

- ``throughput_rps``: requests answered a second (a closed loop at saturation: what the server
  sustains; an open loop: the rate it kept up with);
- ``latency_p50_ms``, ``latency_p99_ms``, ``latency_p99_9_ms``: each batch's nearest-rank
  percentile (open loop: from when each request was due);
- ``cpu_user_ms_per_request``, ``cpu_system_ms_per_request``, ``cpu_ms_per_request``: the
  server's CPU in the batch (from /proc/<pid>/stat, the tree's for a tree) over the requests it
  answered;
- ``minor_faults_per_request``, ``major_faults_per_request``: the same for page faults;

and for the whole run ``failures``, ``lag_max_ms`` (the open-loop sender's worst lateness) and
``trim_s`` (how long the trim held the allocator).
"""

from __future__ import annotations

from stair_stepper.analysis.spread import Spread

#: figures measured per batch: a spread over the batches (one run), over the runs (repeats)
SPREAD_FIELDS = (
    "throughput_rps",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_p99_9_ms",
    "cpu_user_ms_per_request",
    "cpu_system_ms_per_request",
    "cpu_ms_per_request",
    "minor_faults_per_request",
    "major_faults_per_request",
)
#: figures of the whole run: a number (one run), a spread over the runs (repeats)
TOTAL_FIELDS = ("failures", "lag_max_ms", "trim_s")
COST_FIELDS = SPREAD_FIELDS + TOTAL_FIELDS


def _per_request(spent: list, requests: list, scale: float = 1.0) -> list:
    return [
        s * scale / r if s is not None and r else None for s, r in zip(spent, requests, strict=True)
    ]


def _batches(values: list) -> dict | None:
    found = Spread.of(values, over="batches")
    return found.to_json() if found else None


def variant_cost(batches, trim: dict | None) -> dict | None:
    """The cost figures of one variant's batch log (None without one)."""
    if batches is None or "requests" not in batches.columns:
        return None
    col = batches.column
    requests = col("requests")
    user = _per_request(col("cpu_user_s"), requests, 1000)
    system = _per_request(col("cpu_system_s"), requests, 1000)
    both = [
        u + s if u is not None and s is not None else None
        for u, s in zip(user, system, strict=True)
    ]
    per_batch = {
        "throughput_rps": col("requests_per_second"),
        "latency_p50_ms": col("p50_ms"),
        "latency_p99_ms": col("p99_ms"),
        "latency_p99_9_ms": col("p99_9_ms"),
        "cpu_user_ms_per_request": user,
        "cpu_system_ms_per_request": system,
        "cpu_ms_per_request": both,
        "minor_faults_per_request": _per_request(col("minor_faults"), requests),
        "major_faults_per_request": _per_request(col("major_faults"), requests),
    }
    return {
        **{key: _batches(values) for key, values in per_batch.items()},
        "failures": sum(f for f in col("failures") if f is not None),
        "lag_max_ms": max((x for x in col("lag_max_ms") if x is not None), default=None),
        "trim_s": (trim or {}).get("took_s") if isinstance(trim, dict) else None,
    }


def over_runs(costs: list[dict | None]) -> dict:
    """Each figure over several runs' costs: the spread of the runs' medians (a batch figure)
    or of their totals."""
    found = {}
    for key in SPREAD_FIELDS:
        found[key] = _json(Spread.of([_median((c or {}).get(key)) for c in costs]))
    for key in TOTAL_FIELDS:
        found[key] = _json(Spread.of([(c or {}).get(key) for c in costs]))
    return found


def _median(data: dict | None) -> float | None:
    found = Spread.from_json(data)
    return found.median if found else None


def _json(spread: Spread | None) -> dict | None:
    return spread.to_json() if spread else None


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


def cost_table(variants: dict[str, dict], repeated: bool) -> list[list[str]]:
    """The price per variant as table rows: median (min–max) over the batches of one run, or
    over the runs of a repeat."""

    def cell(value, digits=1) -> str:
        found = Spread.from_json(value)
        return "–" if found is None else found.text(digits, 1)

    def total(value, digits=0) -> str:
        if repeated:
            return cell(value, digits)
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
                total(c.get("failures")),
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
