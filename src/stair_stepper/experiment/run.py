"""The experiment itself: the same load on each allocator variant, in batches with pauses, into
a fresh result folder (the command line that starts it is ``command.py``).

For each variant (``variant.VariantRun``): start its server on a free loopback port,
record a baseline, run N batches with pauses (the pause floors are the stair steps), then
ask the allocator to trim and keep recording. Variants run on threads of their own, side
by side or one after another, while the main thread only waits: a signal is a request to
stop (``errors.Stopper``), never an exception inside someone else's code. Everything
lands in the result folder as it happens; how the run ended is its ``meta.json`` status,
decided in one place (``endings.py``).
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from stair_stepper import allocators
from stair_stepper.allocators import Variant, settings
from stair_stepper.errors import (
    NoSpace,
    Stopped,
    Stopper,
    UserError,
)
from stair_stepper.experiment import command_server, provenance, schedule
from stair_stepper.experiment.console import Console
from stair_stepper.experiment.endings import as_fault, ending, no_space_fault
from stair_stepper.experiment.presets import Config, overrides
from stair_stepper.experiment.variant import VariantRun
from stair_stepper.files import no_space, write_json
from stair_stepper.load import batch as drivers
from stair_stepper.load import drillfile
from stair_stepper.record import cgroups, cleanup, results
from stair_stepper.record.schema import RUN_PREFIX


class Plan(NamedTuple):
    """A run, resolved once before anything starts: its configuration (the driver and the batch's
    numbers as they will be), the workload read, and each variant checked."""

    config: Config
    workload: drivers.Workload
    variants: dict[str, Variant]
    #: where each server's memory cgroup is made, or why none can be (one sentence)
    cgroups: cgroups.Where | str = "not looked for"


# --- the run -----------------------------------------------------------------------------


def resolve_variants(config: Config) -> dict[str, Variant]:
    """Each variant by name: written out (``config.definitions``), or a built-in one."""
    written = {spec.partition("=")[0]: spec for spec in config.definitions}
    return {
        name: settings.parse(written[name]) if name in written else settings.resolve(name)
        for name in config.variants
    }


def prepare(config: Config) -> Plan:
    """Check everything a user can get wrong, before anything starts; the workload read and
    every variant resolved and checked, once."""
    variants = resolve_variants(config)
    python_malloc = config.service.python_malloc
    for var in variants.values():  # every setting of every variant, before anything starts
        allocators.server_env(var, python_malloc)  # the library is there
        settings.checked(var, python_malloc)
        if "post_fork" in var.strategy and not config.service.command:
            raise UserError(
                f"variant {var.name}: post_fork acts in the forked workers of a --command "
                "server; the widget app and --app are served by processes that fork none."
            )
    _check_service(config)
    port = config.service.port
    if port and port + len(config.variants) - 1 > 65535:
        raise UserError(f"--port {port} leaves no room for {len(config.variants)} servers.")
    load = config.load
    bench = drillfile.read_benchmark(
        load.benchmark, iterations=load.iterations, concurrency=load.concurrency
    )
    config = config.set(
        driver=drivers.resolve(load.driver),
        iterations=bench.iterations,
        concurrency=bench.concurrency,
    )
    for warning in bench.warnings:
        print(f"warning: {bench.path}: {warning}", file=sys.stderr)
    workload = drivers.Workload(bench, drillfile.select(bench, load.tags), load.tags)
    return Plan(config, workload, variants, _cgroups(config, variants))


def _cgroups(config: Config, variants: dict[str, Variant]) -> cgroups.Where | str:
    """Where each server's memory cgroup will be: a limit asked for where none can be made is
    refused in one sentence (never a silently unlimited run); without one, the run goes on
    and says so once. What a run killed hard left behind is removed first."""
    where = cgroups.locate()
    limited = config.service.memory_limit or any("limit" in v.strategy for v in variants.values())
    if isinstance(where, str):
        if limited:
            raise UserError(f"a memory limit needs a memory cgroup, and {where}.")
        if config.service.memory_high:
            raise UserError(f"--memory-high needs a memory cgroup, and {where}.")
        return where
    if config.service.memory_high and where.version != 2:
        raise UserError(
            "--memory-high is cgroup v2's memory.high; this machine's memory controller is "
            "cgroup v1, which has none."
        )
    removed = cleanup.remove_stale(where)
    if removed:
        print(
            f"stair-stepper: removed {len(removed)} cgroup(s) an earlier run left behind "
            f"(under {where.mount or where.parent})",
            file=sys.stderr,
        )
    return where


def _check_service(config: Config) -> None:
    """The service options that cannot go together, each refused in one sentence."""
    service, load = config.service, config.load
    if service.command and service.app:
        raise UserError("give --app or --command, not both.")
    if load.rate and load.driver == "drill":
        raise UserError(
            "--rate needs the built-in driver: drill has no rate mode (it sends "
            "as fast as its concurrency allows)."
        )
    if service.trace_python and service.command:
        raise UserError("--trace-python needs a Python process of ours: the widget app or --app.")
    if service.health_path and not service.command:
        raise UserError("--health-path goes with --command (served apps have their own).")
    if service.health_path and not service.health_path.startswith("/"):
        raise UserError(f"--health-path must start with /, got {service.health_path!r}.")
    if service.command:
        command_server.check_port(service.command, service.port)
    if fixed_port(config) and config.parallel and len(config.variants) > 1:
        raise UserError(
            f"--command always binds port {service.port}, so its variants cannot run side "
            "by side: leave out --parallel (or put {port} in the command)."
        )
    if service.app:
        from stair_stepper.service import endpoints

        endpoints.load_app(service.app, service.app_dir)  # a typo: one sentence, before any run


def fixed_port(config: Config) -> bool:
    """A --command that binds the port it was built for: every variant gets --port."""
    return bool(config.service.command) and command_server.fixed_port(config.service.command or "")


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
    from stair_stepper.allocators.trials import try_all

    stopper = stopper or Stopper()
    plan = prepare(config)
    config, workload = plan.config, plan.workload
    stopper.check()
    folder = result_folder(out, config.preset)
    for line in schedule.plan_lines(
        config, workload.requests, workload.names, variants=plan.variants
    ):
        print(f"stair-stepper: {line}", file=sys.stderr, flush=True)
    rows = try_all()
    meta = _meta(config, rows)
    if config.repeat == 1:
        _run_once(plan, meta, folder, stopper)
        return folder
    meta.update(repeat=config.repeat, runs=[])
    with _recorded(meta, folder):
        for k in range(1, config.repeat + 1):
            Console().run_of(k, config.repeat)
            meta["runs"].append(f"{RUN_PREFIX}{k}")
            write_json(folder / "meta.json", meta, shrink=True)
            (folder / f"{RUN_PREFIX}{k}").mkdir()
            order = _rotated(config.variants, k - 1) if not config.parallel else config.variants
            this = plan._replace(config=replace(config, variants=order))
            _run_once(this, _meta(this.config, rows), folder / f"{RUN_PREFIX}{k}", stopper)
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
        "config": config.flat(),
        "overrides": overrides(config),
        "provenance": provenance.collect(rows),
    }


def _run_once(plan: Plan, meta: dict, folder: Path, stopper: Stopper) -> None:
    """One comparison of every variant into ``folder`` (which exists and is empty)."""
    config, workload = plan.config, plan.workload
    meta.update(requests_per_batch=workload.requests, items=workload.names, variants={})
    lock = threading.Lock()

    def save() -> None:
        with lock:
            write_json(folder / "meta.json", meta, shrink=True)

    console = Console(bars=not config.parallel)
    runs = [
        VariantRun(
            plan.variants[name],
            config,
            folder,
            workload,
            _port(config, i),
            stopper.event,
            console,
            save,
            plan.cgroups if isinstance(plan.cgroups, cgroups.Where) else None,
        )
        for i, name in enumerate(config.variants)
    ]
    if isinstance(plan.cgroups, str):
        meta["cgroups"] = f"not made: {plan.cgroups}"
        console.line(f"no memory cgroup for the servers ({plan.cgroups}): charge not recorded")
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
    port = config.service.port
    if fixed_port(config):
        return port
    return port + i if port else 0


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
    """Run the block; whatever ends it becomes meta.json's status (``ending``), and a bug's
    traceback goes to crash.log. Failures come out as Fault naming the folder; a full file
    system as NoSpace, whatever it broke first (a trace, a log, the server's own log)."""
    save = save or (lambda: write_json(folder / "meta.json", meta, shrink=True))
    raised: BaseException | None = None
    try:
        yield
        meta["status"] = "complete"
    except BaseException as exc:
        raised = as_fault(exc, folder)
        meta.update(ending(raised))
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
                raised = no_space_fault(folder, exc, META_NOT_WRITTEN)
    if raised is not None:
        raise raised from None


META_NOT_WRITTEN = "meta.json could not be updated either: it still says 'running'."
