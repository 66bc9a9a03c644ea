"""``stair-stepper experiment``: its flags, the configuration they make, and how the command
ends (the run itself is ``run.py``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from stair_stepper import allocators, validate
from stair_stepper.allocators import settings
from stair_stepper.errors import Fault, NoSpace, OomKilled, Stopper, Terminated, UserError
from stair_stepper.experiment import command_server, schedule
from stair_stepper.experiment.console import report
from stair_stepper.experiment.endings import ending
from stair_stepper.experiment.presets import FLAT, PRESETS, Config
from stair_stepper.experiment.run import prepare, run
from stair_stepper.files import no_space, write_json
from stair_stepper.load import batch as drivers
from stair_stepper.load import openloop
from stair_stepper.record import results

COUNT = validate.flag(validate.non_negative_int)
AT_LEAST_ONE = validate.flag(validate.positive_int)
SECONDS = validate.flag(validate.positive_float)


def _variant_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The experiment's flags, in groups as ``--help`` shows them; each ``dest`` is the
    ``Config`` field (flat name) it sets."""
    p.add_argument(
        "--preset",
        default="contrast",
        choices=list(PRESETS),
        help="what to run (default contrast); every other flag overrides it",
    )
    _variant_flags(p.add_argument_group("variants: which allocators and settings"))
    _load_flags(p.add_argument_group("load: what each batch sends, and how"))
    _run_flags(p.add_argument_group("run: batches, pauses, repeats, sampling"))
    _service_flags(p.add_argument_group("service: the widget app, or yours"))
    p.add_argument("--out", help="result folder (default results/<UTC time>-<preset>)")
    p.add_argument("--no-plot", action="store_true", help="tables only, no figures")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and print the plan with its expected duration; start nothing",
    )
    p.add_argument(
        "--find-limit",
        action="store_true",
        help="per variant, the smallest memory limit under which the whole workload completes "
        "(no OOM kill, no failed request): bisection over whole workloads, within 5%% or 16 MiB",
    )


def _variant_flags(p) -> None:
    """Which allocators, settings and sweeps run."""
    p.add_argument(
        "--allocators",
        dest="variants",
        type=_variant_list,
        help=f"comma-separated variants: {', '.join(allocators.VARIANTS)}",
    )
    p.add_argument(
        "--variant",
        dest="variant_specs",
        action="append",
        metavar="'NAME=ALLOCATOR VAR=VALUE …'",
        help="a variant of your own, e.g. 'je-eager=jemalloc MALLOC_CONF=dirty_decay_ms:0' or "
        "'trim5=glibc trim_every=5' (repeatable; added to --allocators or the preset's)",
    )
    p.add_argument(
        "--variants",
        dest="variants_file",
        metavar="FILE.yml",
        help="variants of your own from a file: NAME: 'ALLOCATOR VAR=VALUE …'",
    )
    p.add_argument(
        "--sweep",
        dest="sweep_specs",
        action="append",
        metavar="'NAME=ALLOCATOR VAR=V1|V2|…'",
        help="one setting over several values, a variant each (NAME-V1 …; values may hold commas)",
    )


def _load_flags(p) -> None:
    """What a batch sends and how: drill's closed loop or an open loop."""
    p.add_argument(
        "--rate",
        type=validate.flag(validate.positive_float),
        help="open loop: send requests at this many a second whatever the answers, latency "
        "measured from when each was due (default: closed loop, drill's way)",
    )
    p.add_argument(
        "--arrivals",
        choices=openloop.ARRIVALS,
        help="with --rate: evenly spaced (constant) or a Poisson process",
    )
    p.add_argument("--tags", help="plan tags to run (default: the preset's)")
    p.add_argument("--iterations", type=AT_LEAST_ONE, help="iterations per batch")
    p.add_argument("--concurrency", type=AT_LEAST_ONE)
    p.add_argument("--driver", choices=drivers.DRIVERS)
    p.add_argument(
        "--benchmark",
        help="drill benchmark file (default ./benchmark.yml); its "
        "base is pointed at the server under test, all its items run, and each batch keeps "
        "the preset's iterations and concurrency (see --batch-from-file)",
    )
    p.add_argument(
        "--batch-from-file",
        action="store_true",
        help="with --benchmark: each batch runs the file's own iterations and concurrency",
    )


def _run_flags(p) -> None:
    """Batches, pauses, repeats, side by side, sampling."""
    p.add_argument("--batches", type=AT_LEAST_ONE)
    p.add_argument(
        "--pause",
        type=validate.flag(validate.seconds_or_auto),
        help="'auto' (default: until RSS moved < 1 MB over 2 s, at most --pause-cap) or seconds",
    )
    p.add_argument(
        "--pause-cap",
        dest="pause_cap_s",
        type=SECONDS,
        help="longest auto pause, seconds (default 30)",
    )
    p.add_argument(
        "--idle-rps",
        type=validate.flag(validate.non_negative_float),
        help="light requests per second during pauses (default 0: a quiet service)",
    )
    p.add_argument(
        "--repeat",
        type=AT_LEAST_ONE,
        help="run the whole comparison N times (run-1 … run-N in one folder)",
    )
    p.add_argument(
        "--parallel",
        action=argparse.BooleanOptionalAction,
        help="run the variants side by side, or one after another (default: the preset's)",
    )
    p.add_argument(
        "--port", type=validate.flag(validate.port), help="first server port (default: a free one)"
    )
    p.add_argument(
        "--interval",
        dest="interval_s",
        type=SECONDS,
        help="sampling interval, seconds (default 0.1)",
    )
    p.add_argument(
        "--poll-interval",
        dest="poll_s",
        type=SECONDS,
        help="seconds between allocator polls during batches (default 0.5; never during "
        "the baseline or a pause, where the allocator is read once at the end)",
    )


def _service_flags(p) -> None:
    """What is served: the widget app's knobs, or an app or command of yours."""
    p.add_argument("--sleep-ms", type=COUNT)
    p.add_argument("--python-malloc", choices=allocators.PYTHON_MALLOC_MODES)
    p.add_argument("--offload-threads", type=COUNT)
    p.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="serve your own ASGI or WSGI application instead of the widget app",
    )
    p.add_argument("--app-dir", metavar="DIR", help="import --app from here (default: .)")
    p.add_argument(
        "--command",
        metavar='"CMD … {port} …"',
        help="run any HTTP server instead: {host} and {port} are filled in (or give --port "
        "for one that binds a fixed port); its whole process tree is recorded",
    )
    p.add_argument(
        "--health-path",
        metavar="PATH",
        help="with --command: GET this until it answers 2xx/3xx (default: a TCP connect)",
    )
    p.add_argument(
        "--memory-limit",
        type=validate.flag(validate.memory_size),
        metavar="SIZE",
        help="each server (a --command's whole tree) in a memory cgroup with this limit, e.g. "
        "768M or 1G; an OOM kill ends that variant as an outcome (per variant: limit=SIZE)",
    )
    p.add_argument(
        "--memory-high",
        type=validate.flag(validate.memory_size),
        metavar="SIZE",
        help="cgroup v2's memory.high for each server: the throttling threshold below the limit",
    )
    p.add_argument(
        "--trace-python",
        action="store_true",
        default=None,
        help="tracemalloc in the served process: Python's traced bytes beside the allocator's "
        "(it costs memory and time per request; the summary says how much)",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """The preset with every flag the user gave on top (flags land on fields of their name)."""
    config = PRESETS[args.preset]
    if args.benchmark:  # the user's own workload: all its items, at the preset's batch size
        config = config.set(tags=None)
        if getattr(args, "batch_from_file", False):  # ... or at the file's own
            config = config.set(iterations=None, concurrency=None)
    else:
        config = config.set(benchmark=default_benchmark())
    names = set(FLAT) - {"preset"}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    config = _with_own_variants(config.set(**given), args)
    command = config.service.command
    fixed = command and command_server.fixed_port(command)
    # side by side because the preset says so, not the user: then one after another
    if fixed and config.parallel and args.parallel is None and len(config.variants) > 1:
        note = (
            f"the command binds the fixed port {config.service.port}, so its variants run one "
            "after another (the preset runs them side by side)."
        )
        config = config.set(parallel=False, notes=(*config.notes, note))
    return config


def _with_own_variants(config: Config, args: argparse.Namespace) -> Config:
    """--variant, --variants and --sweep, written out in ``definitions`` and added by name."""
    own = [settings.parse(spec) for spec in getattr(args, "variant_specs", None) or ()]
    if getattr(args, "variants_file", None):
        own += settings.load_file(args.variants_file)
    sweeps = []
    for spec in getattr(args, "sweep_specs", None) or ():
        variants, sweep = settings.expand_sweep(spec)
        own += variants
        sweeps.append(sweep)
    names = [*config.variants, *(v.name for v in own)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"two variants are called {twice[0]}: give each its own name.")
    return config.set(
        variants=tuple(names), definitions=tuple(v.spec for v in own), sweeps=tuple(sweeps)
    )


def default_benchmark() -> str:
    return os.environ.get("STAIR_STEPPER_BENCHMARK") or "benchmark.yml"


def run_args(args: argparse.Namespace) -> int:
    """The command: run, then report; every ending is one line and its exit code."""
    config = config_from_args(args)
    if args.dry_run:
        plan = prepare(config)
        config, workload = plan.config, plan.workload
        for line in schedule.plan_lines(
            config, workload.requests, workload.names, variants=plan.variants
        ):
            print(line)
        return 0
    folder = None
    with Stopper() as stopper:
        try:
            if args.find_limit:
                from stair_stepper.experiment import find_limit

                def one(config: Config, where: Path, stopper: Stopper) -> None:
                    _report(run(config, str(where), stopper), False, stopper)

                folder = find_limit.search(config, args.out, stopper, one)
                print(f"results: {folder}")
                return 0
            folder = run(config, args.out, stopper)
            _report(folder, not args.no_plot, stopper)
            stopper.check()
        except (KeyboardInterrupt, Terminated) as exc:
            return _stopped(exc, folder)
        except FileNotFoundError as exc:
            gone = exc.filename and not Path(exc.filename).parent.exists()
            if not gone:
                raise
            raise Fault(
                f"the result folder was moved or deleted during the run "
                f"({Path(exc.filename).parent} is gone); nothing more could be written."
            ) from None
    return _oom_status(folder)


def _oom_status(folder: Path) -> int:
    """0, or OomKilled's exit status with one line for each variant that was OOM-killed (in
    every run of a --repeat: in how many of how many)."""
    meta = results.read_meta(folder)
    runs = [results.read_meta(folder / r) for r in meta.get("runs") or []] or [meta]
    killed: dict[str, list[str]] = {}
    for one in runs:
        for name, info in (one.get("variants") or {}).items():
            outcome = info.get("outcome") or {}
            if outcome.get("oom_killed"):
                killed.setdefault(name, []).append(outcome["sentence"])
    for sentences in killed.values():
        tail = f" (in {len(sentences)} of {len(runs)} runs)" if len(runs) > 1 else ""
        print(f"stair-stepper: {sentences[0]}{tail}", file=sys.stderr)
    return OomKilled.exit_code if killed else 0


def _report(folder: Path, figures: bool, stopper: Stopper) -> None:
    """The summary, figures and verdict; on a full file system, one sentence and meta.json
    saying the report is missing (every measurement is complete)."""
    try:
        report(folder, figures=figures, stop=stopper.event)
    except OSError as exc:
        if not no_space(exc):
            raise
        meta = results.read_meta(folder)
        meta["report"] = "not written: no space left on the result folder's file system"
        with contextlib.suppress(OSError):  # said below: every measurement, no report
            write_json(folder / "meta.json", meta, shrink=True)
        raise NoSpace(
            f"the file system under {folder} is full ({exc.strerror}): every measurement is "
            f"complete, but the report could not be written; free some space and run "
            f"`stair-stepper plot {folder}`."
        ) from None


def _stopped(exc: BaseException, folder: Path | None) -> int:
    """A stop by a signal: one line, and 130 (Ctrl-C) or 128 + the signal's number."""
    name, code = ("", 130) if isinstance(exc, KeyboardInterrupt) else (str(exc), exc.exit_code)
    how = "interrupted" if not name else f"terminated by {name}"
    if folder is not None:  # every measurement is done: only the report was cut short
        meta = results.read_meta(folder)
        meta.update(ending(exc), during="report")
        write_json(folder / "meta.json", meta)
        print(
            f"stair-stepper: {how} while writing the report; every measurement is complete "
            f"(stair-stepper plot {folder} writes the report).",
            file=sys.stderr,
        )
    else:
        print(f"stair-stepper: {how}; partial results are kept.", file=sys.stderr)
    return code
