"""Where the memory sits, at each floor, and why it stays: layers and a diagnosis per variant.

At each floor the allocator is read once (``<variant>.structure.csv``, the phase
``phases.read_phase(K)``),
and RSS splits into layers:

- *live*: what the allocator counts as allocated (of which Python's traced bytes, when
  tracemalloc ran: ``--trace-python``);
- *allocator metadata* (``metadata_bytes``, where the allocator counts it): its own
  bookkeeping, resident;
- *free held*: the allocator's held bytes less the live ones (and its metadata), by kind where the
  allocator tells (each allocator's module names its kinds: ``Allocator.free_kinds``, e.g. free
  chunks in bins, pages waiting for a decay timer); the rest (partly used pages, metadata);
- *not heap*: RSS less the allocator's held bytes (code, stacks, the interpreter). An allocator
  may count as held the free chunks a trim has handed back with MADV_DONTNEED, so after a trim
  this can be negative; at a floor, before the trim, it is not.

The diagnosis (``diagnose``), in this order, each with the numbers that decided it:

- ``unknown``: the allocator was not asked (a ``--command`` server, several workers);
- ``leak``: live bytes at the floors rise batch over batch by more than the step threshold
  (in at least half of the floor-to-floor steps, and from the first floor to the last);
- ``returned``: the free space held at the last floor, beyond what the allocator held free
  before any load, is under the step threshold or under a tenth of what the load brought
  (peak − baseline), and so is the growth of what lies outside its heap: the floor came back
  near the live bytes;
- ``outside-heap``: the allocator holds little free, but the floor's *not heap* layer grew by
  more than that bound since before any load: memory the allocator neither holds nor can
  return, most often CPython's own object allocator (``PYTHONMALLOC``: pymalloc's arenas or
  3.13's mimalloc segments are mapped by CPython, not the C allocator). With another verdict
  such growth is added to its why;
- ``lazy-return``: at least half of that free space is pages held for a decay or release
  timer (``Allocator.timed_kinds``), which time or a background thread gives back;
- ``fragmentation``: free space held inside the heap that a settled pause did not return and
  the trim did (RSS after the trim at least half of it lower), or, without a trim, free
  space the allocator keeps in its heap (not confirmed by a trim, said so).
"""

from __future__ import annotations

from stair_stepper import allocators

MB = 2**20

#: which structure column is which kind of free space, and in words (the allocators' own)
FREE_KINDS = allocators.free_kinds()
#: free space left at a floor under this share of what the load brought (peak − baseline), or
#: under the step threshold, counts as returned
RETURNED_SHARE = 0.10
#: the kinds that a timer or a background thread gives back
TIMED_KINDS = allocators.timed_kinds()
#: the kinds held inside the heap, which only a trim gives back
HEAP_KINDS = tuple(k for k in FREE_KINDS if k not in TIMED_KINDS)


def _reading(table, phase: str) -> dict | None:
    """The structure row of one read (e.g. "read 3"), as a dict."""
    if table is None:
        return None
    rows = table.rows_where("phase", phase)
    if not rows:
        return None
    i = rows[-1]
    return {name: table.column(name)[i] for name in table.columns}


def layers_at(reading: dict | None, rss: float | None) -> dict | None:
    """RSS at a floor split into live, free held (by kind) and not heap."""
    if not reading or rss is None or reading.get("live_bytes") is None:
        return None
    live, held = reading["live_bytes"], reading.get("held_bytes")
    overhead = reading.get("metadata_bytes") or 0  # the allocator's own, resident: not free
    free = held - live - overhead if held is not None else None
    kinds = {k: reading.get(k) for k in FREE_KINDS if reading.get(k) is not None}
    if free is not None and kinds:
        kinds["other_free_bytes"] = free - sum(kinds.values())
    return {
        "rss_bytes": rss,
        "allocator_live_bytes": live,
        "python_traced_bytes": reading.get("python_traced_bytes"),
        "tracemalloc_bytes": reading.get("tracemalloc_bytes"),
        "free_held_bytes": free,
        "free_kinds": kinds,
        "allocator_metadata_bytes": reading.get("metadata_bytes"),
        "not_heap_bytes": rss - held if held is not None else None,
        # CPython's own object arenas (PYTHONMALLOC=pymalloc), mapped outside the heap
        "python_arena_bytes": reading.get("pymalloc_arena_bytes"),
        "python_arena_used_bytes": reading.get("pymalloc_used_bytes"),
        "arenas": reading.get("arenas"),
    }


def variant_layers(structure, reads: list[str], floors: list) -> list[dict | None]:
    """The layers at each floor (``reads``: the allocator's read after each, in order —
    ``phases.read_phase``; ``floors``: their RSS floors), from the structure table; None where
    the allocator was not read."""
    return [
        layers_at(_reading(structure, phase), floor)
        for phase, floor in zip(reads, floors, strict=True)
    ]


def arenas_by_floor(table, reads: list[str]) -> list[list[dict]]:
    """Per floor, each arena's bytes (as its allocator splits them: held, in use, free…)."""
    if table is None:
        return []
    found = []
    names = list(table.columns)
    for phase in reads:
        rows = table.rows_where("phase", phase)
        found.append(
            [{n: table.column(n)[i] for n in names if n not in ("t_s", "phase")} for i in rows]
        )
    return found


def diagnose(
    s: dict, by_floor: list[dict | None], threshold: float, baseline: dict | None = None
) -> dict:
    """``leak``, ``returned``, ``outside-heap``, ``lazy-return``, ``fragmentation`` or
    ``unknown``, with why. ``baseline``: the layers before any load (the free space an idle
    allocator keeps anyway, and what lay outside its heap then)."""
    measured = [layer for layer in by_floor if layer]
    if not measured:
        return {"verdict": "unknown", "why": "the allocator was not asked (no live bytes)"}
    live = [layer["allocator_live_bytes"] for layer in measured]
    rises = [b - a for a, b in zip(live, live[1:])]  # noqa: B905
    if (
        rises
        and sum(r > threshold for r in rises) * 2 >= len(rises)
        and (live[-1] - live[0] > threshold)
    ):
        return {
            "verdict": "leak",
            "why": "live bytes at the floors rise batch over batch: "
            + " → ".join(f"{b / MB:.0f}" for b in live)
            + f" MB (step threshold {threshold / MB:.0f} MB)",
            "live_floors_bytes": live,
        }
    last = measured[-1]
    free, floor = last["free_held_bytes"], last["rss_bytes"]
    numbers = {
        "free_held_bytes": free,
        "live_bytes": last["allocator_live_bytes"],
        "floor_bytes": floor,
    }
    if free is None:
        return {"verdict": "unknown", "why": "the allocator gives no held bytes", **numbers}
    idle_free = (baseline or {}).get("free_held_bytes") or 0
    brought = (s.get("peak_bytes") or 0) - (s.get("baseline_bytes") or 0)  # what the load added
    bound = max(threshold, RETURNED_SHARE * brought)
    outside = _outside(last, baseline, bound)
    if outside:
        numbers["outside_heap_bytes"] = outside
    if free - idle_free < bound and outside:
        trimmed = s.get("after_trim_bytes")
        trim = f"; the trim left the floor at {trimmed / MB:.0f} MB" if trimmed else ""
        return {
            "verdict": "outside-heap",
            "why": f"the allocator holds {free / MB:.0f} MB free beside "
            f"{last['allocator_live_bytes'] / MB:.0f} MB live, but {outside / MB:.0f} MB more "
            f"of the {floor / MB:.0f} MB floor than before any load lie outside its heap: "
            f"{_outside_words(last)}{trim}",
            **numbers,
        }
    found = _by_free_space(s, last, numbers, free - idle_free < bound, idle_free)
    return with_outside(found, last)


def _by_free_space(s: dict, last: dict, numbers: dict, little: bool, idle_free: float) -> dict:
    """``returned`` (``little`` free beyond the idle allocator's), else what the free space
    held at the last floor is: pages waiting for a timer, or free space inside the heap."""
    free, floor = numbers["free_held_bytes"], numbers["floor_bytes"]
    if little:
        return {
            "verdict": "returned",
            "why": f"at the last floor the allocator holds {free / MB:.0f} MB free beside "
            f"{last['allocator_live_bytes'] / MB:.0f} MB live ({idle_free / MB:.0f} MB free "
            "before any load): the floor came back near the live bytes",
            **numbers,
        }
    kinds = last["free_kinds"]
    timed = sum(kinds.get(k) or 0 for k in TIMED_KINDS)
    if timed * 2 >= free:
        named = ", ".join(
            f"{FREE_KINDS[k]} {kinds[k] / MB:.0f} MB" for k in TIMED_KINDS if kinds.get(k)
        )
        return {
            "verdict": "lazy-return",
            "why": f"{timed / MB:.0f} of the {free / MB:.0f} MB free it holds are pages "
            f"waiting for a timer ({named}): time or a background thread returns them",
            "timed_bytes": timed,
            **numbers,
        }
    trimmed = s.get("after_trim_bytes")
    inside = ", ".join(
        f"{FREE_KINDS[k]} {kinds[k] / MB:.0f} MB" for k in HEAP_KINDS if kinds.get(k)
    )
    inside = f" ({inside})" if inside else ""
    if trimmed is None:
        return {
            "verdict": "fragmentation",
            "why": f"{free / MB:.0f} MB free held inside the heap{inside} after settled "
            "pauses (not confirmed by a trim: none was made)",
            **numbers,
        }
    given_back = floor - trimmed
    if given_back * 2 >= free:
        return {
            "verdict": "fragmentation",
            "why": f"{free / MB:.0f} MB free held inside the heap{inside}, which settled pauses "
            f"did not return and the trim did ({floor / MB:.0f} → {trimmed / MB:.0f} MB)",
            "trim_returned_bytes": given_back,
            **numbers,
        }
    return {
        "verdict": "unknown",
        "why": f"{free / MB:.0f} MB free held that neither a timer explains nor the trim "
        f"returned ({floor / MB:.0f} → {trimmed / MB:.0f} MB)",
        **numbers,
    }


#: what lies outside the allocator's heap, in words
OUTSIDE = (
    "memory it neither holds nor can return (CPython's own object allocator when PYTHONMALLOC "
    "names one, an extension's own mappings, thread stacks)"
)


def _outside(last: dict, baseline: dict | None, bound: float) -> float | None:
    """How much more of the last floor lies outside the allocator's heap than before any load,
    when that is more than ``bound`` (else None)."""
    before = (baseline or {}).get("not_heap_bytes")
    now = last.get("not_heap_bytes")
    if before is None or now is None or now - before < bound:
        return None
    return now - before


def _outside_words(last: dict) -> str:
    """What lies outside the heap, in words, with CPython's object arenas where read."""
    arenas, used = last.get("python_arena_bytes"), last.get("python_arena_used_bytes")
    if not arenas:
        return OUTSIDE
    in_use = f", {used / MB:.0f} MB of it in use" if used is not None else ""
    return f"{OUTSIDE}; CPython's object arenas hold {arenas / MB:.0f} MB{in_use}"


def with_outside(diagnosis: dict, last: dict) -> dict:
    """Another verdict's why, with what grew outside the heap beside it (``outside_heap_bytes``)."""
    outside = diagnosis.get("outside_heap_bytes")
    if not outside or diagnosis["verdict"] == "outside-heap":
        return diagnosis
    why = f"{diagnosis['why']}; besides, {outside / MB:.0f} MB more than before any load lie "
    return {**diagnosis, "why": why + f"outside its heap: {_outside_words(last)}"}


def with_findings(diagnosis: dict, findings: list[dict] | None) -> dict:
    """A ``lazy-return`` in a server where a process ran without what returns those pages on
    a timer (a finding: jemalloc's background thread, off in a forked worker) is not waiting
    for time: the diagnosis says so, with the finding's own sentence."""
    if diagnosis.get("verdict") != "lazy-return" or not findings:
        return diagnosis
    said = "; ".join(f["sentence"] for f in findings)
    why = diagnosis["why"].replace(
        "time or a background thread returns them",
        f"but {said}, so they come back only as those processes allocate again",
    )
    return {**diagnosis, "why": why, "findings": [f["sentence"] for f in findings]}
