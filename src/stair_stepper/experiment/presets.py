"""What an experiment runs: its configuration and the presets (plain data, nothing started).

Every field of ``Config`` is one ``experiment`` flag of the same meaning (the flag's
``dest`` is the field's name), lands in ``meta.json`` as it is, and is named in the
figures' titles when it differs from the preset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from stair_stepper.record.results import AUTO  # --pause auto: until RSS settles


@dataclass(frozen=True)
class Config:
    preset: str = "contrast"
    # jemalloc+bg beside plain jemalloc: plain jemalloc purges only while it allocates, so
    # its idle floor depends on idle traffic; the background thread purges regardless.
    variants: tuple[str, ...] = ("glibc", "jemalloc", "jemalloc+bg")
    batches: int = 4
    pause: float | str = AUTO  # seconds, or AUTO
    pause_cap_s: float = 30.0
    idle_rps: float = 0.0  # light requests per second during pauses (0: a quiet service)
    tags: str | None = None
    iterations: int | None = 64  # None: the benchmark file's own (a user's --benchmark)
    concurrency: int | None = 64
    sleep_ms: int = 450
    python_malloc: str = "malloc"
    offload_threads: int = 0
    repeat: int = 1
    driver: str = "builtin"
    baseline_s: float = 3.0
    after_trim_s: float = 3.0
    interval_s: float = 0.1
    poll_s: float = 0.5
    parallel: bool = False
    port: int = 0
    benchmark: str = "benchmark.yml"
    app: str | None = None  # the user's ASGI/WSGI app (serve --app), MODULE:ATTR
    app_dir: str | None = None
    command: str | None = None  # any HTTP server, "CMD … {port} …", its tree recorded
    health_path: str | None = None
    trace_python: bool = False  # tracemalloc in the served process: Python's own layer
    rate: float | None = None  # open loop: requests a second, latency from when each was due
    arrivals: str = "constant"  # constant or poisson, with --rate
    #: variants written out (--variant, --variants, --sweep): "NAME=ALLOCATOR VAR=VALUE …";
    #: ``variants`` names them among the built-in ones, in the order they run
    definitions: tuple[str, ...] = ()
    #: each --sweep laid out: {"name", "var", "values", "variants"}
    sweeps: tuple[dict, ...] = ()
    #: what the run changed in what was asked, and why (printed at its start, kept in meta)
    notes: tuple[str, ...] = ()


PRESETS: dict[str, Config] = {
    # The default: glibc's staircase and the contrast, in one short run. 32 offload threads
    # share glibc's 16 arenas (its cap is 8 a core), and each arena's high-water mark ratchets
    # up whenever the requests its threads work on at once need more than it held. With 8
    # threads (the earlier default, with 5 batches) the marks ratchet too, from lower floors,
    # and side by side the steps showed in about half the runs (bench/staircase.py, README
    # "Why the floors climb"). Eight batches give the marks their chances; the variants run
    # side by side (same machine conditions, a third of the wall time), pauses last until RSS
    # settles.
    "contrast": Config(preset="contrast", batches=8, offload_threads=32, parallel=True),
    # The original sandbox's recommendation, kept to show that pymalloc hides the difference.
    "seed": Config(
        preset="seed", tags="medium", concurrency=16, iterations=2500, python_malloc="pymalloc"
    ),
    # Closest analogue of the Rust original: many threads, so glibc makes many arenas.
    "arenas": Config(
        preset="arenas", tags="medium", concurrency=16, iterations=256, offload_threads=16
    ),
    # The price: what each allocator costs in latency, throughput and CPU, measured below
    # saturation (10 requests a second, Poisson arrivals, the same seeded schedule for every
    # variant; saturated, the widget app serves about 13.6 a second at these settings on the
    # 2-core machine, so 10 is 74 % of it: bench/driver_cost.py, README "At what price"; 8
    # offload threads, not the default's 32, which serve fewer a second), one variant after another
    # so that each has the machine, three runs with the order rotated (interleaved repeats).
    "price": Config(
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
    # but capped at 10 s, one variant after another.
    "quick": Config(
        preset="quick",
        batches=2,
        pause_cap_s=10.0,
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
    base, mine = asdict(preset), asdict(config)
    return {k: v for k, v in mine.items() if k not in _NOT_MEASURED and v != base[k]}


def variant_of(config: Config, name: str):
    """The variant called ``name`` in this configuration: written out, or a built-in one."""
    from stair_stepper.allocators.settings import parse, resolve

    for spec in config.definitions:
        if spec.partition("=")[0] == name:
            return parse(spec)
    return resolve(name)
