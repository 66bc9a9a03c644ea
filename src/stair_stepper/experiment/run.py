"""`stair-stepper experiment`, the main job: the same load on each allocator variant, in
batches with pauses, into a fresh result folder.

For each variant (``variant.VariantRun``): start its server on a free loopback port,
record a baseline, run N batches with pauses (the pause floors are the stair steps), then
ask the allocator to trim and keep recording. Variants run on threads of their own, side
by side or one after another, while the main thread only waits: a signal is a request to
stop (``errors.Stopper``), never an exception inside someone else's code. Everything
lands in the result folder as it happens; how the run ended is its ``meta.json`` status,
decided in one place (``_ending``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, fields, replace
from datetime import UTC, datetime
from pathlib import Path

from stair_stepper import allocators, validate
from stair_stepper.allocators import settings
from stair_stepper.errors import (
    Crashed,
    Fault,
    NoSpace,
    Stopped,
    Stopper,
    Terminated,
    UserError,
)
from stair_stepper.experiment import launch, provenance, schedule
from stair_stepper.experiment.console import Console, report
from stair_stepper.experiment.presets import PRESETS, Config, overrides, variant_of
from stair_stepper.experiment.variant import VariantRun
from stair_stepper.files import full, no_space, write_json
from stair_stepper.load import batch as drivers
from stair_stepper.load import drillfile, openloop
from stair_stepper.record import results
from stair_stepper.record.schema import RUN_PREFIX

# --- the command line ------------------------------------------------------------------

COUNT = validate.flag(validate.non_negative_int)
AT_LEAST_ONE = validate.flag(validate.positive_int)
SECONDS = validate.flag(validate.positive_float)


def _variant_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The experiment's flags, in groups as ``--help`` shows them; each ``dest`` is the
    ``Config`` field it sets."""
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
        config = replace(config, tags=None)
        if getattr(args, "batch_from_file", False):  # ... or at the file's own
            config = replace(config, iterations=None, concurrency=None)
    else:
        config = replace(config, benchmark=default_benchmark())
    names = {f.name for f in fields(Config)} - {"preset"}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    config = replace(config, **given)
    config = _with_own_variants(config, args)
    fixed = config.command and launch.fixed_port(config.command)
    # side by side because the preset says so, not the user: then one after another
    if fixed and config.parallel and args.parallel is None and len(config.variants) > 1:
        note = (
            f"the command binds the fixed port {config.port}, so its variants run one "
            "after another (the preset runs them side by side)."
        )
        config = replace(config, parallel=False, notes=(*config.notes, note))
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
    return replace(
        config, variants=tuple(names), definitions=tuple(v.spec for v in own), sweeps=tuple(sweeps)
    )


def default_benchmark() -> str:
    return os.environ.get("STAIR_STEPPER_BENCHMARK") or "benchmark.yml"


def run_args(args: argparse.Namespace) -> int:
    """The command: run, then report; every ending is one line and its exit code."""
    config = config_from_args(args)
    if args.dry_run:
        config, workload = prepare(config)
        for line in schedule.plan_lines(config, workload.requests, workload.names):
            print(line)
        return 0
    folder = None
    with Stopper() as stopper:
        try:
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
    return 0


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
        meta.update(_ending(exc), during="report")
        write_json(folder / "meta.json", meta)
        print(
            f"stair-stepper: {how} while writing the report; every measurement is complete "
            f"(stair-stepper plot {folder} writes the report).",
            file=sys.stderr,
        )
    else:
        print(f"stair-stepper: {how}; partial results are kept.", file=sys.stderr)
    return code


# --- the run -----------------------------------------------------------------------------


def prepare(config: Config) -> tuple[Config, drivers.Workload]:
    """Check everything a user can get wrong, before anything starts; the workload read."""
    for name in config.variants:  # every setting of every variant, before anything starts
        var = variant_of(config, name)
        allocators.server_env(var, config.python_malloc)  # the library is there
        settings.checked(var, config.python_malloc)
    _check_service(config)
    if config.port and config.port + len(config.variants) - 1 > 65535:
        raise UserError(f"--port {config.port} leaves no room for {len(config.variants)} servers.")
    config = replace(config, driver=drivers.resolve(config.driver))
    bench = drillfile.read_benchmark(
        config.benchmark, iterations=config.iterations, concurrency=config.concurrency
    )
    config = replace(config, iterations=bench.iterations, concurrency=bench.concurrency)
    for warning in bench.warnings:
        print(f"warning: {bench.path}: {warning}", file=sys.stderr)
    return config, drivers.Workload(bench, drillfile.select(bench, config.tags), config.tags)


def _check_service(config: Config) -> None:
    """The service options that cannot go together, each refused in one sentence."""
    if config.command and config.app:
        raise UserError("give --app or --command, not both.")
    if config.rate and config.driver == "drill":
        raise UserError(
            "--rate needs the built-in driver: drill has no rate mode (it sends "
            "as fast as its concurrency allows)."
        )
    if config.trace_python and config.command:
        raise UserError("--trace-python needs a Python process of ours: the widget app or --app.")
    if config.health_path and not config.command:
        raise UserError("--health-path goes with --command (served apps have their own).")
    if config.health_path and not config.health_path.startswith("/"):
        raise UserError(f"--health-path must start with /, got {config.health_path!r}.")
    if config.command:
        launch.check_port(config.command, config.port)
    if _fixed_port(config) and config.parallel and len(config.variants) > 1:
        raise UserError(
            f"--command always binds port {config.port}, so its variants cannot run side "
            "by side: leave out --parallel (or put {port} in the command)."
        )
    if config.app:
        from stair_stepper.service import endpoints as service

        service.load_app(config.app, config.app_dir)  # a typo is one sentence, before any run


def _fixed_port(config: Config) -> bool:
    """A --command that binds the port it was built for: every variant gets --port."""
    return bool(config.command) and launch.fixed_port(config.command or "")


def result_folder(out: str | None, preset: str) -> Path:
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = f"results/{stamp}-{preset}"
    folder = Path(out)
    if folder.exists():
        raise UserError(f"result folder {folder} already exists; choose another --out.")
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"cannot create result folder {folder}: {exc.strerror}.") from None
    return folder


def run(config: Config, out: str | None = None, stopper: Stopper | None = None) -> Path:
    """Run the experiment (``config.repeat`` times); returns the result folder.

    Fault on failure (UserError before anything started), KeyboardInterrupt/Terminated when
    stopped; every run's partial results are kept, and meta.json says how each ended.
    """
    from stair_stepper.allocators.trials import probe_variant

    stopper = stopper or Stopper()
    config, workload = prepare(config)
    stopper.check()
    folder = result_folder(out, config.preset)
    for line in schedule.plan_lines(config, workload.requests, workload.names):
        print(f"stair-stepper: {line}", file=sys.stderr, flush=True)
    rows = [probe_variant(allocators.VARIANTS[a]) for a in allocators.ALLOCATORS]
    meta = _meta(config, rows)
    if config.repeat == 1:
        _run_once(config, meta, folder, workload, stopper)
        return folder
    meta.update(repeat=config.repeat, runs=[])
    with _recorded(meta, folder):
        for k in range(1, config.repeat + 1):
            Console().run_of(k, config.repeat)
            meta["runs"].append(f"{RUN_PREFIX}{k}")
            write_json(folder / "meta.json", meta, shrink=True)
            (folder / f"{RUN_PREFIX}{k}").mkdir()
            order = _rotated(config.variants, k - 1) if not config.parallel else config.variants
            this = replace(config, variants=order)
            _run_once(this, _meta(this, rows), folder / f"{RUN_PREFIX}{k}", workload, stopper)
    return folder


def _rotated(names: tuple[str, ...], k: int) -> tuple[str, ...]:
    """One after another, run k starts with the (k+1)th variant: no variant always runs first
    (on a fresh machine) or last; the repeats interleave."""
    k %= max(1, len(names))
    return names[k:] + names[:k]


def _meta(config: Config, rows: list[dict]) -> dict:
    return {
        "format": results.FORMAT,
        "tool": "stair-stepper experiment",
        "status": "running",
        "started_at": time.time(),
        "config": asdict(config),
        "overrides": overrides(config),
        "provenance": provenance.collect(rows),
    }


def _run_once(
    config: Config, meta: dict, folder: Path, workload: drivers.Workload, stopper: Stopper
) -> None:
    """One comparison of every variant into ``folder`` (which exists and is empty)."""
    meta.update(requests_per_batch=workload.requests, items=workload.names, variants={})
    lock = threading.Lock()

    def save() -> None:
        with lock:
            write_json(folder / "meta.json", meta, shrink=True)

    console = Console(bars=not config.parallel)
    runs = [
        VariantRun(name, config, folder, workload, _port(config, i), stopper.event, console, save)
        for i, name in enumerate(config.variants)
    ]
    for r in runs:
        meta["variants"][r.name] = r.info
    save()
    console.begin(meta, folder, workload.requests, workload.names)
    with _recorded(meta, folder, save):
        try:
            _run_variants(runs, config.parallel, stopper)
        except BaseException:
            stopper.event.set()  # whatever is still running stops now
            raise
        finally:
            for r in runs:
                r.cleanup()


def _port(config: Config, i: int) -> int:
    if _fixed_port(config):
        return config.port
    return config.port + i if config.port else 0


def _run_variants(runs: list[VariantRun], parallel: bool, stopper: Stopper) -> None:
    """Each variant on a thread of its own, all at once or one after another, while this
    thread only waits; the first failure stops the others and is raised here."""
    errors: list[BaseException] = []

    def guarded(r: VariantRun) -> None:
        try:
            r.run()
        except BaseException as exc:  # noqa: BLE001 - raised again below, in this thread
            errors.append(exc)
            stopper.event.set()
        finally:
            r.cleanup()

    for group in [runs] if parallel else [[r] for r in runs]:
        if stopper.event.is_set():
            break
        threads = [
            threading.Thread(target=guarded, args=(r,), name=f"variant {r.name}", daemon=True)
            for r in group
        ]
        for t in threads:
            t.start()
        stopper.wait(threads)
    stopper.check()  # a signal before a group started (the loop broke) stops the run too
    if errors:  # a real failure before the Stopped it caused in the other variants
        raise next((e for e in errors if not isinstance(e, Stopped)), errors[0])


@contextmanager
def _recorded(meta: dict, folder: Path, save=None):
    """Run the block; whatever ends it becomes meta.json's status (``_ending``), and a bug's
    traceback goes to crash.log. Failures come out as Fault naming the folder; a full file
    system as NoSpace, whatever it broke first (a trace, a log, the server's own log)."""
    save = save or (lambda: write_json(folder / "meta.json", meta, shrink=True))
    raised: BaseException | None = None
    try:
        yield
        meta["status"] = "complete"
    except BaseException as exc:
        raised = _as_fault(exc, folder)
        meta.update(_ending(raised))
    finally:
        meta["finished_at"] = time.time()
        try:
            save()
        except OSError as exc:
            if not no_space(exc):
                raise
            if isinstance(raised, NoSpace):  # say so: meta.json still reads "running"
                raised = NoSpace(f"{raised.reason} {META_NOT_WRITTEN}", folder)
            else:
                raised = _no_space(folder, exc, META_NOT_WRITTEN)
    if raised is not None:
        raise raised from None


META_NOT_WRITTEN = "meta.json could not be updated either: it still says 'running'."


def _no_space(folder: Path, exc: BaseException | None, more: str = "") -> NoSpace:
    why = getattr(exc, "strerror", None) or "no space left"
    return NoSpace(
        f"the file system under {folder} is full ({why}): the run stopped, and every server "
        f"with it; what was measured so far is kept. {more}".rstrip(),
        folder,
    )


def _as_fault(exc: BaseException, folder: Path) -> BaseException:
    """What ``exc`` means for the run, naming its folder: a signal stays itself."""
    if isinstance(exc, KeyboardInterrupt | Terminated):
        return exc
    if no_space(exc) or (isinstance(exc, Fault) and full(folder)):
        return _no_space(folder, exc)  # e.g. a server that died writing its log
    if isinstance(exc, Fault):
        return exc.located(folder)
    if isinstance(exc, UserError | Stopped):
        return Fault(str(exc), folder)
    if isinstance(exc, Exception):
        log = folder / "crash.log"
        log.write_text("".join(traceback.format_exception(exc)))
        why = f"{type(exc).__name__}: {exc}"
        return Crashed(f"the run crashed ({why}); the traceback is in {log}.", folder, why)
    return exc


def _ending(exc: BaseException) -> dict:
    """How a run ended, as meta.json says it: the one place that names every ending."""
    if isinstance(exc, KeyboardInterrupt):
        return {"status": "interrupted"}
    if isinstance(exc, Terminated):
        return {"status": "terminated", "signal": str(exc)}
    if isinstance(exc, Crashed):
        return {"status": f"crashed: {exc.why}"}
    if isinstance(exc, NoSpace):
        return {"status": "failed: no space left on the result folder's file system"}
    if isinstance(exc, Fault):
        return {"status": f"failed: {exc.reason}"}
    return {"status": f"crashed: {type(exc).__name__}: {exc}"}
