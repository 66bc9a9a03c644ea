"""What an experiment runs: its configuration and the presets (plain data, nothing started).

A ``Config`` is made of the records its readers need: ``Service`` (what is served and how its
server starts: ``launch``), ``Load`` (what a batch sends and how: the driver), ``Pacing``
(batches, pauses, sampling: a variant's run), and the run's own fields (variants, repeats,
side by side). Every field is one ``experiment`` flag of the same meaning (the flag's ``dest``
is the field's name, each name in one record only), lands in ``meta.json`` flat as it is
(``Config.flat``), and is named in the figures' titles when it differs from the preset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from stair_stepper.record.results import AUTO  # --pause auto: until RSS settles


@dataclass(frozen=True)
class Service:
    """What is served, and how its server starts."""

    sleep_ms: int = 450
    python_malloc: str = "malloc"
    offload_threads: int = 0
    app: str | None = None  # the user's ASGI/WSGI app (serve --app), MODULE:ATTR
    app_dir: str | None = None
    command: str | None = None  # any HTTP server, "CMD … {port} …", its tree recorded
    health_path: str | None = None
    trace_python: bool = False  # tracemalloc in the served process: Python's own layer
    port: int = 0
    memory_limit: int | None = None  # bytes: each server in a memory cgroup with this limit
    memory_high: int | None = None  # bytes: cgroup v2's memory.high (throttling), if asked


@dataclass(frozen=True)
class Load:
    """What each batch sends, and how."""

    benchmark: str = "benchmark.yml"
    tags: str | None = None
    iterations: int | None = 64  # None: the benchmark file's own (--batch-from-file)
    concurrency: int | None = 64
    driver: str = "builtin"
    rate: float | None = None  # open loop: requests a second, latency from when each was due
    arrivals: str = "constant"  # constant or poisson, with --rate


@dataclass(frozen=True)
class Pacing:
    """Batches, the pauses between them, and sampling."""

    batches: int = 4
    pause: float | str = AUTO  # seconds, or AUTO
    pause_cap_s: float = 30.0
    idle_rps: float = 0.0  # light requests per second during pauses (0: a quiet service)
    baseline_s: float = 3.0
    after_trim_s: float = 3.0
    interval_s: float = 0.1
    poll_s: float = 0.5


RECORDS = {"service": Service, "load": Load, "pacing": Pacing}


@dataclass(frozen=True)
class Config:
    preset: str = "contrast"
    # jemalloc+bg beside plain jemalloc: plain jemalloc purges only while it allocates, so
    # its idle floor depends on idle traffic; the background thread purges regardless.
    variants: tuple[str, ...] = ("glibc", "jemalloc", "jemalloc+bg")
    repeat: int = 1
    parallel: bool = False
    service: Service = field(default_factory=Service)
    load: Load = field(default_factory=Load)
    pacing: Pacing = field(default_factory=Pacing)
    #: variants written out (--variant, --variants, --sweep): "NAME=ALLOCATOR VAR=VALUE …";
    #: ``variants`` names them among the built-in ones, in the order they run
    definitions: tuple[str, ...] = ()
    #: each --sweep laid out: {"name", "var", "values", "variants"}
    sweeps: tuple[dict, ...] = ()
    #: what the run changed in what was asked, and why (printed at its start, kept in meta)
    notes: tuple[str, ...] = ()

    @classmethod
    def make(cls, **flat) -> Config:
        return cls().set(**flat)

    def set(self, **flat) -> Config:
        """The same configuration with these fields (by their flat names) changed."""
        own = {k: v for k, v in flat.items() if k in OWN}
        changed = replace(self, **own)
        for name, record in RECORDS.items():
            mine = {k: v for k, v in flat.items() if k in _names(record)}
            if mine:
                changed = replace(changed, **{name: replace(getattr(changed, name), **mine)})
        unknown = set(flat) - set(FLAT)
        if unknown:
            raise TypeError(f"no configuration field {sorted(unknown)[0]!r}")
        return changed

    def flat(self) -> dict:
        """Every field by its flat name (meta.json's "config", the flags' dests)."""
        found = {k: getattr(self, k) for k in OWN}
        for name in RECORDS:
            found.update(asdict(getattr(self, name)))
        return found


def _names(record) -> tuple[str, ...]:
    return tuple(f.name for f in fields(record))


OWN = tuple(f.name for f in fields(Config) if f.name not in RECORDS)
#: every field's flat name: the run's own and each record's
FLAT = OWN + tuple(n for record in RECORDS.values() for n in _names(record))


PRESETS: dict[str, Config] = {
    # The default: glibc's staircase and the contrast, in one short run. 32 offload threads
    # share glibc's 16 arenas (its cap is 8 a core), and each arena's high-water mark ratchets
    # up whenever the requests its threads work on at once need more than it held. With 8
    # threads (the earlier default, with 5 batches) the marks ratchet too, from lower floors,
    # and side by side the steps showed in about half the runs (bench/staircase.py, README
    # "Why the floors climb"). Eight batches give the marks their chances; the variants run
    # side by side (same machine conditions, a third of the wall time), pauses last until RSS
    # settles.
    "contrast": Config.make(preset="contrast", batches=8, offload_threads=32, parallel=True),
    # The original sandbox's recommendation, kept to show that pymalloc hides the difference.
    "seed": Config.make(
        preset="seed", tags="medium", concurrency=16, iterations=2500, python_malloc="pymalloc"
    ),
    # Closest analogue of the Rust original: many threads, so glibc makes many arenas.
    "arenas": Config.make(
        preset="arenas", tags="medium", concurrency=16, iterations=256, offload_threads=16
    ),
    # The price: what each allocator costs in latency, throughput and CPU, measured below
    # saturation (10 requests a second, Poisson arrivals, the same seeded schedule for every
    # variant; saturated, the widget app serves about 13.6 a second at these settings on the
    # 2-core machine, so 10 is 74 % of it: bench/driver_cost.py, README "At what price"; 8
    # offload threads, not the default's 32, which serve fewer a second), one variant after another
    # so that each has the machine, three runs with the order rotated (interleaved repeats).
    "price": Config.make(
        preset="price",
        batches=3,
        iterations=32,
        concurrency=16,  # drill's rule (no more than iterations); the open loop ignores it
        offload_threads=8,
        rate=10.0,
        arrivals="poisson",
        repeat=3,
    ),
    # Small enough for tests, CI and a first look: pauses until settled like the main job's,
    # but capped at 25 s, one variant after another. The cap leaves room for jemalloc+bg's
    # decay (twice its 10 s dirty_decay_ms, the least a pause lasts there: its background
    # thread sleeps a whole decay time between wakes) and then the 2 s settle window: at a
    # cap below that, jemalloc+bg's RSS could still fall after a pause ended, so the floor of
    # the variant a first look most needs would not be the one it settles to.
    "quick": Config.make(
        preset="quick",
        batches=2,
        pause_cap_s=25.0,
        iterations=16,
        concurrency=16,
        sleep_ms=100,
        baseline_s=1.0,
        after_trim_s=1.5,
    ),
}

#: where the files are and how the load is sent, not what was measured: never an override
_NOT_MEASURED = {"benchmark", "port", "driver", "notes", "definitions", "sweeps"}


def overrides(config: Config) -> dict:
    """The settings that differ from the preset's (figure titles say them)."""
    preset = PRESETS.get(config.preset)
    if preset is None:
        return {}
    base, mine = preset.flat(), config.flat()
    return {k: v for k, v in mine.items() if k not in _NOT_MEASURED and v != base[k]}
