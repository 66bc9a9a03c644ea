"""What a run will do and how long it should take: printed before the first request.

A run that a user cannot stop in time is worse than no run: a benchmark file with 2,500
iterations a batch once made the default preset a 95-minute run that said nothing about it.
So every experiment says its plan first (variants, batches, requests a batch, in flight, the
pauses) with a duration range: the least it can take (each pause as short as it may be, each
request as fast as its known delay allows) and the most the pauses allow (each to its cap).
The batches' own time is only known for the widget app (its SLEEP_MS a request) and an open
loop (requests / rate); for a user's service the estimate says it does not know it.
"""

from __future__ import annotations

import math

from stair_stepper.experiment.presets import AUTO, Config
from stair_stepper.record.phases import SETTLE_WINDOW_S

#: what starting a server and proving its allocator take, seconds (measured: 1–2 s here)
START_S = 2.0
#: the trim and its answer, seconds
TRIM_S = 1.0


def batch_seconds(config: Config, requests: int, items: int) -> float | None:
    """The least one batch can take: an open loop's requests / rate; a closed loop's rounds
    (iterations / concurrency, each running every item in turn) × the widget app's SLEEP_MS;
    None for a user's service (its time per request is not known)."""
    if config.load.rate:
        return requests / config.load.rate
    if config.service.app or config.service.command:
        return None
    rounds = math.ceil((config.load.iterations or 1) / (config.load.concurrency or 1))
    return rounds * items * config.service.sleep_ms / 1000


def pause_range(config: Config, least_s: float = 0.0) -> tuple[float, float]:
    """How long a pause may last: a fixed one exactly; an automatic one at least the settle
    window (and ``least_s``, an allocator's decay) and at most the cap."""
    if config.pacing.pause != AUTO:
        return float(config.pacing.pause), float(config.pacing.pause)
    low = min(max(SETTLE_WINDOW_S, least_s), config.pacing.pause_cap_s)
    return low, config.pacing.pause_cap_s


def duration_range(
    config: Config, requests: int, items: int, least_pause_s: float = 0.0
) -> tuple[float, float, bool]:
    """(least seconds for the whole run, most seconds its pauses may take, batches known)."""
    batch = batch_seconds(config, requests, items)
    low_pause, high_pause = pause_range(config, least_pause_s)
    fixed = START_S + config.pacing.baseline_s + TRIM_S + config.pacing.after_trim_s
    one_low = fixed + config.pacing.batches * ((batch or 0.0) + low_pause)
    copies = (1 if config.parallel else len(config.variants)) * config.repeat
    return one_low * copies, config.pacing.batches * high_pause * copies, batch is not None


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def plan_lines(
    config: Config, requests: int, names: list[str], least_pause_s=0.0, variants=None
) -> list[str]:
    """The plan, in a few lines, as printed before anything is sent; each variant written out
    (``variants``: name → Variant) on a line of its own, as it will run."""
    how = "side by side" if config.parallel else "one after another"
    planned = [v.allocator.planned_pause_s(v.env) for v in (variants or {}).values()]
    least_pause_s = max([least_pause_s, *planned])
    load = (
        f"an open loop at {config.load.rate:g} requests a second"
        if config.load.rate
        else f"{config.load.concurrency} in flight"
    )
    low_pause, high_pause = pause_range(config, least_pause_s)
    decay = f", at least {least_pause_s:g} s for the allocator's decay" if least_pause_s else ""
    pauses = (
        f"pauses of {low_pause:g} s"
        if config.pacing.pause != AUTO
        else f"pauses until RSS settles ({low_pause:g}–{high_pause:g} s each{decay})"
    )
    least, pausing, known = duration_range(config, requests, len(names), least_pause_s)
    repeat = f", {config.repeat} runs" if config.repeat > 1 else ""
    plural = "s" if len(config.variants) != 1 else ""
    batches = config.pacing.batches
    lines = [
        f"plan: {len(config.variants)} variant{plural} ({', '.join(config.variants)}) {how}"
        f"{repeat}; {batches} batch{'es' if batches != 1 else ''} of {requests} "
        f"requests ({config.load.iterations} iterations × {len(names)} item"
        f"{'s' if len(names) != 1 else ''}: {', '.join(names)}), {load}; {pauses}",
    ]
    why = (
        "each request no faster than the open loop sends it"
        if config.load.rate
        else "each request no faster than its SLEEP_MS"
        if known
        else "not counting the batches, whose time depends on your service"
    )
    more = (
        f"; the pauses may take up to {_minutes(pausing)} in all (each to its cap)"
        if config.pacing.pause == AUTO
        else ""
    )
    lines.append(f"duration: at least {_minutes(least)} ({why}){more}")
    for variant in (variants or {}).values():
        if not variant.builtin:
            lines.append(f"variant {variant.spec}")
    return lines
