"""The main job: the same load on each allocator variant, in batches with pauses.

For each variant: start ``serve`` on a free loopback port, record a baseline,
run N batches with pauses (the pause floors are the stair steps), then ask the
allocator to trim and keep recording (how much of what it held was free
space). Everything lands in a fresh result folder, written as it happens:
a crash, a dead server or Ctrl-C keeps every row recorded so far.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from . import allocators, drillfile, drivers, launch, load, provenance, service
from .analysis.summary import NOT_MEASURED, service_words
from .errors import Terminated, UserError, on_termination
from .record import Recorder
from .traces import (
    BATCH_COLUMNS,
    BATCHES_SUFFIX,
    RUN_PREFIX,
    SETTLE_WINDOW_S,
    TRACE_SUFFIX,
    RowWriter,
)

MB = 2**20


@dataclass(frozen=True)
class Config:
    preset: str = "contrast"
    # jemalloc+bg beside plain jemalloc: plain jemalloc purges only while it allocates, so
    # its idle floor depends on idle traffic; the background thread purges regardless.
    variants: tuple[str, ...] = ("glibc", "jemalloc", "jemalloc+bg")
    batches: int = 4
    pause_s: float | None = None  # None: --pause auto (until RSS settles, at most pause_cap_s)
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


PRESETS: dict[str, Config] = {
    # The default: glibc's staircase and the contrast, in one short run. Eight offload threads
    # give glibc arenas to fragment, five batches show the steps, the variants run side by
    # side (same machine conditions, a third of the wall time), pauses last until RSS settles.
    "contrast": Config(preset="contrast", batches=5, offload_threads=8, parallel=True),
    # The original sandbox's recommendation, kept to show that pymalloc hides the difference.
    "seed": Config(
        preset="seed", tags="medium", concurrency=16, iterations=2500, python_malloc="pymalloc"
    ),
    # Closest analogue of the Rust original: many threads, so glibc makes many arenas.
    "arenas": Config(
        preset="arenas", tags="medium", concurrency=16, iterations=256, offload_threads=16
    ),
    # Small enough for tests, CI and a first look (fixed 2 s pauses, sequential).
    "quick": Config(
        preset="quick",
        batches=2,
        pause_s=2.0,
        iterations=16,
        concurrency=16,
        sleep_ms=100,
        baseline_s=1.0,
        after_trim_s=1.5,
    ),
}


class Fault(Exception):
    """The run cannot go on (server died, driver failed); partial results are kept."""


def overrides(config: Config) -> dict:
    """The settings that differ from the preset's (figure titles say them)."""
    preset = PRESETS.get(config.preset)
    if preset is None:
        return {}
    base, mine = asdict(preset), asdict(config)
    skip = {"benchmark", "port", "driver"}  # where the files are, not what was measured
    return {k: v for k, v in mine.items() if k not in skip and v != base[k]}


def default_benchmark() -> str:
    return os.environ.get("STAIR_STEPPER_BENCHMARK") or "benchmark.yml"


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


@dataclass
class VariantRun:
    """One variant's server, recorder and batch log."""

    name: str
    config: Config
    folder: Path
    bench: drillfile.Benchmark
    items: tuple[drillfile.RequestItem, ...]
    port: int
    stop_event: threading.Event
    show_progress: bool
    save_meta: Callable[[], None]
    server: launch.RunningServer | None = None
    recorder: Recorder | None = None
    info: dict = field(default_factory=dict)

    def say(self, text: str) -> None:
        print(f"[{self.name}] {text}", file=sys.stderr, flush=True)

    def _rss_mb(self) -> str:
        last = self.recorder.last if self.recorder else None
        return f"RSS {last['rss_bytes'] / MB:.0f} MB" if last else "RSS ? MB"

    def _check_alive(self, during: str) -> None:
        assert self.server is not None
        if not self.server.alive() or (self.recorder and self.recorder.gone):
            code = self.server.process.poll()
            raise Fault(
                f"the {self.name} server died during {during} (exit code {code}); "
                f"its log is {self.server.log_path}."
            )
        if self.recorder and not self.recorder.healthy():
            why = self.recorder.error
            reason = f"{type(why).__name__}: {why}" if why else "its thread ended"
            raise Fault(f"the {self.name} recorder stopped during {during} ({reason}).")

    def _wait(self, seconds: float, during: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.stop_event.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
                raise Fault("stopped because another variant failed.")
            self._check_alive(during)

    def start(self) -> None:
        if self.config.command:
            self._start_command()
        else:
            self._start_serve()
        assert self.server is not None and self.recorder is not None
        self.recorder.phase = "baseline"  # labelled from the very first row
        self.recorder.start()
        self.say(
            f"serving on {self.server.base_url}, pid {self.server.pid}, "
            f"malloc from {self.server.health['malloc_provider']}"
        )

    def _start_command(self) -> None:
        """Any HTTP server: its tree is recorded; no allocator accounting, no trim."""
        c = self.config
        self.server = launch.start_command(
            c.command or "",
            self.name,
            python_malloc=c.python_malloc,
            port=self.port,
            health_path=c.health_path,
            log_path=self.folder / f"{self.name}.server.log",
        )
        self.info.update(pid=self.server.pid, url=self.server.base_url, health=self.server.health)
        self.save_meta()
        self.recorder = Recorder(
            self.server.pid,
            self.folder / f"{self.name}{TRACE_SUFFIX}",
            c.interval_s,
            include_children=True,
        )

    def _start_serve(self) -> None:
        c = self.config
        args = [
            "--sleep-ms",
            str(c.sleep_ms),
            "--python-malloc",
            c.python_malloc,
            "--offload-threads",
            str(c.offload_threads),
        ]
        if c.app:
            args += ["--app", c.app, "--app-dir", str(Path(c.app_dir or ".").resolve())]
        self.server = launch.start_server(
            self.name,
            port=self.port,
            extra_args=tuple(args),
            log_path=self.folder / f"{self.name}.server.log",
        )
        self.info.update(pid=self.server.pid, url=self.server.base_url, health=self.server.health)
        self.save_meta()  # the pid is on disk before any load: nothing can be orphaned unseen
        self.recorder = Recorder(
            self.server.pid,
            self.folder / f"{self.name}{TRACE_SUFFIX}",
            self.config.interval_s,
            service_url=self.server.base_url,
            poll_interval=self.config.poll_s,
        )

    def run(self) -> None:
        c = self.config
        self.start()
        assert self.server and self.recorder
        rec = self.recorder
        rec.quiet()  # the baseline is idle too: no polls until it has been measured
        self._wait(c.baseline_s, "the baseline")
        ledger = _Ledger(rec, self._read_allocator("baseline"))
        with RowWriter(self.folder / f"{self.name}{BATCHES_SUFFIX}", BATCH_COLUMNS) as batches:
            for batch in range(1, c.batches + 1):
                rec.phase = f"batch {batch}"
                rec.resume()
                start = rec.now()
                outcome = self._load(batch)
                end = rec.now()
                self._check_alive(f"batch {batch}")
                rss_batch = rec.last["rss_bytes"] if rec.last else None
                rec.phase = f"pause {batch}"
                rec.quiet()
                polls_before_pause = rec.polls_sent
                pause_s, settled, idle_sent = self._pause(batch)
                rss_pause = rec.last["rss_bytes"] if rec.last else None
                reading = self._read_allocator(str(batch))
                unasked = ledger.close_pause(reading, outcome.requests, polls_before_pause)
                batches.write(
                    {
                        "batch": batch,
                        "start_s": start,
                        "end_s": end,
                        "pause_end_s": rec.now(),
                        "requests": outcome.requests,
                        "failures": outcome.failures,
                        "requests_per_second": outcome.requests_per_second,
                        "p50_ms": outcome.p50_ms,
                        "p99_ms": outcome.p99_ms,
                        "p99_9_ms": outcome.p99_9_ms,
                        "rss_end_batch_bytes": rss_batch,
                        "rss_end_pause_bytes": rss_pause,
                        "pause_s": pause_s,
                        "settled": int(settled),
                        "pause_requests": unasked,
                        "idle_requests_sent": idle_sent,
                    }
                )
                failed = f", {outcome.failures} FAILED" if outcome.failures else ""
                how = "settled" if settled else "NOT settled"
                self.say(
                    f"batch {batch}/{c.batches}: {outcome.requests} requests{failed}, "
                    f"{outcome.requests_per_second or 0:.1f} req/s; RSS {_mb(rss_batch)} MB "
                    f"after the batch, {_mb(rss_pause)} MB after a {pause_s:.1f} s pause ({how})"
                )
        if c.command:
            self.info["trim"] = NOT_MEASURED
            self.say("trim: not measured (a --command server cannot be asked to trim)")
            return
        rec.phase = "trim"
        try:
            trim = self.server.post(service.TRIM)
        except OSError as exc:
            self._check_alive("the trim")
            raise Fault(f"the {self.name} server did not answer the trim: {exc}.") from None
        self.info["trim"] = {k: v for k, v in trim.items() if k not in ("before", "after")}
        (self.folder / f"{self.name}.trim.json").write_text(json.dumps(trim, indent=2))
        rec.phase = "after trim"
        self._wait(c.after_trim_s, "the after-trim recording")
        self._read_allocator("after trim")
        self.say(
            f"trim: RSS {trim['rss_before_bytes'] / MB:.0f} → {trim['rss_after_bytes'] / MB:.0f} MB"
        )

    def _read_allocator(self, after: str) -> dict | None:
        """The one allocator read (service.MEMORY) after an idle phase, in a phase of its own
        ("read K"), so the request cannot touch the floor it follows; held until a sample
        carries it."""
        rec = self.recorder
        assert rec is not None
        rec.phase = f"read {after}"
        reading = rec.poll_now()
        taken = rec.samples
        deadline = time.monotonic() + 1.0
        while rec.samples == taken and time.monotonic() < deadline:
            time.sleep(0.01)
        return reading

    def _pause(self, batch: int) -> tuple[float, bool, int]:
        """One pause: fixed, or until RSS settles (--pause auto, capped). No request reaches
        the service but the idle traffic asked for; the allocator is read once, at the end.
        Returns (length, settled, idle requests sent)."""
        c, rec = self.config, self.recorder
        assert rec is not None and self.server is not None
        idle = _IdleTraffic(self.server.base_url, c.idle_rps) if c.idle_rps > 0 else None
        start = rec.now()
        try:
            if c.pause_s is not None:
                self._wait(c.pause_s, f"pause {batch}")
            else:
                self._wait(SETTLE_WINDOW_S, f"pause {batch}")
                while not rec.settled_since(start) and rec.now() - start < c.pause_cap_s:
                    self._wait(0.2, f"pause {batch}")
        finally:
            sent = idle.stop() if idle else 0
        length = rec.now() - start
        return length, rec.settled_since(start), sent

    def _load(self, batch: int) -> drivers.BatchOutcome:
        assert self.server is not None
        c = self.config
        try:
            if c.driver == "drill":
                return drivers.run_drill(
                    self.bench,
                    self.server.base_url,
                    self.folder,
                    c.tags,
                    self.folder / f"{self.name}.drill.log",
                    self.name,
                    self.stop_event,
                )
            progress = None
            if self.show_progress:
                label = f"[{self.name}] batch {batch}/{c.batches} "
                progress = load.ProgressBar(label=label, suffix=self._rss_mb)
            return drivers.run_builtin(
                self.bench, self.items, self.server.base_url, progress, self.stop_event
            )
        except UserError as exc:
            raise Fault(f"the load driver failed in batch {batch}: {exc}") from None

    def cleanup(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()
        if self.server is not None:
            self.info["exit_code"] = self.server.stop()


class _Ledger:
    """Counts the requests the service answered that the experiment did not ask for.

    The service counts every request it answers (``requests_served`` in service.MEMORY);
    between two end-of-pause reads it must equal the batch, the recorder's polls and the
    idle traffic. Anything more reached it from elsewhere during the pause.
    """

    def __init__(self, recorder: Recorder, reading: dict | None) -> None:
        self.recorder = recorder
        self.served, self.polls = (reading or {}).get("requests_served"), recorder.polls_sent

    def close_pause(
        self, reading: dict | None, batch_requests: int, polls_before_pause: int
    ) -> int | None:
        """Requests answered since the last read beyond the batch, the polls made before the
        pause began and this read: what reached the service during the pause. Exactly the
        idle traffic (0 at --idle-rps 0); a poll during the pause would count here too."""
        served, polls = (reading or {}).get("requests_served"), self.recorder.polls_sent
        unasked = None
        if served is not None and self.served is not None:
            asked = batch_requests + (polls_before_pause - self.polls) + 1  # + this read
            unasked = served - self.served - asked
        self.served, self.polls = served, polls
        return unasked


class _IdleTraffic(threading.Thread):
    """Light requests (GET service.HEALTH) at ``rps`` per second: the `--idle-rps` knob."""

    def __init__(self, base_url: str, rps: float) -> None:
        super().__init__(name="idle-traffic", daemon=True)
        parts = urlsplit(base_url)
        self.host, self.port, self.period = parts.hostname, parts.port, 1.0 / rps
        self.sent = 0
        self._stop_event = threading.Event()
        self.start()

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        tick = time.monotonic()
        try:
            while not self._stop_event.is_set():
                try:
                    self.sent += 1
                    conn.request("GET", service.HEALTH)
                    conn.getresponse().read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
                tick += self.period
                self._stop_event.wait(max(0.0, tick - time.monotonic()))
        finally:
            conn.close()

    def stop(self) -> int:
        self._stop_event.set()
        self.join(10)
        return self.sent


def _pause_words(config: Config) -> str:
    if config.pause_s is None:
        return f"until RSS settles (at most {config.pause_cap_s:g} s)"
    return f"{config.pause_s:g} s"


def _mb(value: float | None) -> str:
    return "?" if value is None else f"{value / MB:.0f}"


def _write_meta(folder: Path, meta: dict) -> None:
    tmp = folder / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    tmp.replace(folder / "meta.json")


def run(config: Config, out: str | None = None) -> Path:
    """Run the experiment (``config.repeat`` times); returns the result folder.

    UserError/Fault on failure, KeyboardInterrupt/Terminated when stopped; every run's
    partial results are kept, and the top meta.json says how the whole ended.
    """
    from .allocator_trials import probe_variant

    for name in config.variants:
        allocators.server_env(allocators.variant(name), config.python_malloc)  # fail early
    _check_service(config)
    if config.port and config.port + len(config.variants) - 1 > 65535:
        raise UserError(f"--port {config.port} leaves no room for {len(config.variants)} servers.")
    config = replace(config, driver=drivers.resolve(config.driver))
    bench = drillfile.read_benchmark(
        config.benchmark, iterations=config.iterations, concurrency=config.concurrency
    )
    config = replace(config, iterations=bench.iterations, concurrency=bench.concurrency)
    items = drillfile.select(bench, config.tags)
    for warning in bench.warnings:
        print(f"warning: {bench.path}: {warning}", file=sys.stderr)
    folder = result_folder(out, config.preset)
    rows = [probe_variant(allocators.VARIANTS[a]) for a in allocators.ALLOCATORS]
    if config.repeat == 1:
        with on_termination():
            return _run_once(config, folder, bench, items, rows)
    meta: dict = {
        "tool": "stair-stepper experiment",
        "status": "running",
        "started_at": time.time(),
        "config": asdict(config),
        "overrides": overrides(config),
        "repeat": config.repeat,
        "runs": [],
        "provenance": provenance.collect(rows),
    }
    _write_meta(folder, meta)
    with on_termination():
        try:
            for i in range(1, config.repeat + 1):
                print(f"stair-stepper: run {i} of {config.repeat}", file=sys.stderr)
                meta["runs"].append(f"{RUN_PREFIX}{i}")
                _write_meta(folder, meta)
                sub = folder / f"{RUN_PREFIX}{i}"
                sub.mkdir()
                _run_once(config, sub, bench, items, rows)
            meta["status"] = "complete"
        except KeyboardInterrupt:
            meta["status"] = "interrupted"
            raise
        except Terminated as exc:
            meta["status"], meta["signal"] = "terminated", str(exc)
            raise
        except Fault as exc:
            meta["status"] = f"failed: {exc}"
            raise
        finally:
            meta["finished_at"] = time.time()
            _write_meta(folder, meta)
    return folder


def _fixed_port(config: Config) -> bool:
    """A --command that binds the port it was built for: every variant gets --port."""
    return bool(config.command) and launch.fixed_port(config.command or "")


def _check_service(config: Config) -> None:
    """The service options that cannot go together, each refused in one sentence."""
    if config.command and config.app:
        raise UserError("give --app or --command, not both.")
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
        from . import service

        service.load_app(config.app, config.app_dir)  # a typo is one sentence, before any run


def _run_once(
    config: Config,
    folder: Path,
    bench: drillfile.Benchmark,
    items: tuple[drillfile.RequestItem, ...],
    rows: list[dict],
) -> Path:
    """One comparison of every variant into ``folder`` (which exists and is empty)."""
    meta: dict = {
        "tool": "stair-stepper experiment",
        "status": "running",
        "started_at": time.time(),
        "config": asdict(config),
        "overrides": overrides(config),
        "requests_per_batch": bench.total_requests(items),
        "items": [i.name for i in items],
        "provenance": provenance.collect(rows),
        "variants": {},
    }
    _write_meta(folder, meta)
    stop = threading.Event()
    show_progress = sys.stderr.isatty() and not config.parallel
    meta_lock = threading.Lock()

    def save_meta() -> None:
        with meta_lock:
            _write_meta(folder, meta)

    runs = [
        VariantRun(
            name,
            config,
            folder,
            bench,
            items,
            config.port if _fixed_port(config) else (config.port + i if config.port else 0),
            stop,
            show_progress,
            save_meta,
        )
        for i, name in enumerate(config.variants)
    ]
    for r in runs:
        meta["variants"][r.name] = r.info
    print(
        f"stair-stepper: {config.preset}: {', '.join(config.variants)}; {config.batches} "
        f"batch{'es' if config.batches != 1 else ''} "
        f"of {bench.total_requests(items)} requests ({', '.join(i.name for i in items)}), "
        f"concurrency {config.concurrency}, {service_words(asdict(config))}, "
        f"PYTHONMALLOC={config.python_malloc}, "
        f"pauses {_pause_words(config)}, idle traffic {config.idle_rps:g} req/s"
        f"{', side by side' if config.parallel else ''}; results in {folder}",
        file=sys.stderr,
    )
    errors: list[BaseException] = []

    def guarded(r: VariantRun) -> None:
        """One variant, always cleaned up; its failure (or Ctrl-C) stops the others."""
        try:
            r.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the main thread
            errors.append(exc)
            stop.set()
        finally:
            r.cleanup()
            save_meta()

    try:
        _run_variants(config, runs, guarded, stop)
        if errors:
            raise errors[0]
        meta["status"] = "complete"
    except KeyboardInterrupt:
        meta["status"] = "interrupted"
        raise
    except Terminated as exc:
        meta["status"] = "terminated"
        meta["signal"] = str(exc)
        raise
    except (Fault, UserError) as exc:
        meta["status"] = f"failed: {exc}"
        raise Fault(f"{exc} Partial results are kept in {folder}.") from None
    except Exception as exc:  # a bug of ours: one line here, the traceback in a file
        log = folder / "crash.log"
        log.write_text("".join(traceback.format_exception(exc)))
        why = f"{type(exc).__name__}: {exc}"
        meta["status"] = f"crashed: {why}"
        raise Fault(
            f"the run crashed ({why}); the traceback is in {log}. "
            f"Partial results are kept in {folder}."
        ) from None
    finally:
        stop.set()
        for r in runs:
            r.cleanup()
        meta["finished_at"] = time.time()
        save_meta()
    return folder


def _run_variants(config: Config, runs: list[VariantRun], guarded, stop) -> None:
    """Sequentially, or side by side with --parallel (the main thread keeps taking signals)."""
    if config.parallel:
        threads = [threading.Thread(target=guarded, args=(r,), daemon=True) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    else:
        for r in runs:
            if stop.is_set():
                break
            guarded(r)


def report(folder: Path, figures: bool = True) -> int:
    """After a run: summary files, figures (when matplotlib is there) and the short table."""
    from .analysis import plot, summary

    if summary.run_folders(folder):
        result, _ = plot.analyse_repeats(folder, None, summary.DEFAULT_STEP_THRESHOLD, figures)
        print(summary.markdown_repeats(result))
        for warning in result["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"\nresults: {folder}")
        return 0
    result, written = plot.analyse(folder, figures=figures)
    print(summary.short_table(result))
    for line in summary.interpretation(result):
        print(line)
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    figure = next((p for p in written if p.suffix == ".png"), None)
    print(f"\nresults: {folder}" + (f"  (figure: {figure})" if figure else ""))
    return 0
