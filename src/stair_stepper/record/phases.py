"""The phases of a trace and when a pause has settled: the vocabulary the experiment writes
into every row's ``phase`` and the analysis reads back, defined here once."""

from __future__ import annotations

# What a trace row's ``phase`` says:
#
# baseline, batch K, pause K, read K (the one allocator read after pause K; "read baseline"
# after the baseline, "read after trim" after the trim), trim, after trim. The recorder writes
# whatever the experiment sets; the analysis finds phases through these functions, never by
# parsing the words itself.

BASELINE = "baseline"
TRIM = "trim"
AFTER_TRIM = "after trim"


def batch_phase(k: int) -> str:
    return f"batch {k}"


def pause_phase(k: int) -> str:
    return f"pause {k}"


def read_phase(after: int | str) -> str:
    """The allocator read after pause ``after`` (a number), or after the baseline or the trim
    (``BASELINE``, ``AFTER_TRIM``)."""
    return f"read {after}"


def numbered(phase: str | None, kind: str) -> int | None:
    """K of a phase "<kind> K" ("pause 3" -> 3), None for any other phase."""
    if not phase or not phase.startswith(kind + " "):
        return None
    number = phase[len(kind) + 1 :]
    return int(number) if number.isdigit() else None


def pause_number(phase: str | None) -> int | None:
    return numbered(phase, "pause")


# A pause's floor counts as *settled* when RSS moved less than SETTLE_BYTES over the
# pause's last SETTLE_WINDOW_S seconds. Defined here, once: the experiment uses it to end
# `--pause auto`, the analysis to mark floors from pauses that had not settled.
SETTLE_WINDOW_S = 2.0
SETTLE_BYTES = 2**20


def settled(
    times: list, rss: list, window_s: float = SETTLE_WINDOW_S, tolerance: float = SETTLE_BYTES
) -> bool:
    """True when the samples cover ``window_s`` and their last ``window_s`` seconds of RSS
    span less than ``tolerance`` bytes."""
    pairs = [(t, r) for t, r in zip(times, rss, strict=True) if t is not None and r is not None]
    if not pairs or pairs[-1][0] - pairs[0][0] < window_s:
        return False
    end = pairs[-1][0]
    recent = [r for t, r in pairs if t >= end - window_s]
    return max(recent) - min(recent) < tolerance
