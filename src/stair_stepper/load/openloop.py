"""The open loop's rules (wrk2's way): when each request is due, how many may be in flight,
and when the sender fell behind its own schedule.

Kept apart from the driver (no asyncio here): the analysis judges a recorded batch by the same
``fell_behind`` rule the driver warns with.
"""

from __future__ import annotations

#: the arrival processes ``--arrivals`` offers
ARRIVALS = ("constant", "poisson")
#: the open loop's bound on connections (requests in flight beyond it wait, and the wait is
#: in their latency, measured from when they were due)
OPEN_LOOP_CONNECTIONS = 1024


def schedule(total: int, rate: float, arrivals: str, seed: int = 1) -> list[float]:
    """Seconds from the start at which each request is due: every 1/rate (constant), or a
    Poisson process of that rate (exponential gaps from a seeded generator, so runs repeat)."""
    if arrivals == "constant":
        return [k / rate for k in range(total)]
    import random

    rng, at, due = random.Random(seed), 0.0, []
    for _ in range(total):
        due.append(at)
        at += rng.expovariate(rate)
    return due


def fell_behind(lag_max_ms: float | None, rate: float | None) -> bool:
    """Did an open loop's sender fall behind its schedule, so that the server got less load than
    the rate says? When its worst lateness exceeds one interval between arrivals (1/rate), and
    at least 50 ms (below that, a busy machine's scheduling, not a lost request's worth)."""
    if not rate or lag_max_ms is None:
        return False
    return lag_max_ms > max(50.0, 1000.0 / rate)
