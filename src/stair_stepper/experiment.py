"""The main job: the same load on each allocator variant, in batches with pauses.

For each variant: start ``serve`` on a free loopback port, record a baseline,
run N batches with pauses (the pause floors are the stair steps), then ask the
allocator to trim and keep recording (how much of what it held was free
space). Everything lands in a fresh result folder, written as it happens:
a crash, a dead server or Ctrl-C keeps every row recorded so far.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from . import allocators, drillfile, drivers, launch, load, provenance
from .errors import UserError
from .record import Recorder
from .traces import BATCH_COLUMNS, BATCHES_SUFFIX, TRACE_SUFFIX, RowWriter

MB = 2**20


@dataclass(frozen=True)
class Config:
    preset: str = "contrast"
    # jemalloc+bg beside plain jemalloc: plain jemalloc purges only while it allocates, so
    # its idle floor depends on idle traffic; the background thread purges regardless.
    variants: tuple[str, ...] = ("glibc", "jemalloc", "jemalloc+bg")
    batches: int = 4
    pause_s: float = 5.0
    tags: str | None = None
    iterations: int = 64
    concurrency: int = 64
    sleep_ms: int = 450
    python_malloc: str = "malloc"
    offload_threads: int = 0
    driver: str = "builtin"
    baseline_s: float = 3.0
    after_trim_s: float = 3.0
    interval_s: float = 0.1
    poll_s: float = 0.5
    parallel: bool = False
    port: int = 0
    benchmark: str = "benchmark.yml"


PRESETS: dict[str, Config] = {
    # The contrast that CPython can show: small objects to the allocator, 64 requests in flight.
    "contrast": Config(preset="contrast"),
    # The original sandbox's recommendation, kept to show that pymalloc hides the difference.
    "seed": Config(
        preset="seed", tags="medium", concurrency=16, iterations=2500, python_malloc="pymalloc"
    ),
    # Closest analogue of the Rust original: many threads, so glibc makes many arenas.
    "arenas": Config(preset="arenas", tags="medium", concurrency=16, iterations=256,
                     offload_threads=16),
    # The contrast preset, small enough for tests and CI (about half a minute for two variants).
    "quick": Config(preset="quick", batches=2, pause_s=2.0, iterations=16, concurrency=16,
                    sleep_ms=100, baseline_s=1.0, after_trim_s=1.5),
}  # fmt: skip


class Fault(Exception):
    """The run cannot go on (server died, driver failed); partial results are kept."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP: ends the run like Ctrl-C (a BaseException, so nothing swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals:
    """While a run is on: SIGTERM and SIGHUP raise Terminated in the main thread, once."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __enter__(self) -> _Signals:
        self.previous: dict = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        self.fired = False
        return self

    def _handle(self, signum: int, frame) -> None:
        if not self.fired:  # a second signal must not interrupt the clean-up of the first
            self.fired = True
            raise Terminated(signum)

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


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
        c = self.config
        args = [
            "--sleep-ms", str(c.sleep_ms), "--python-malloc", c.python_malloc,
            "--offload-threads", str(c.offload_threads),
        ]  # fmt: skip
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
        self.recorder.phase = "baseline"  # labelled from the very first row
        self.recorder.start()
        self.say(
            f"serving on {self.server.base_url}, pid {self.server.pid}, "
            f"malloc from {self.server.health['malloc_provider']}"
        )

    def run(self) -> None:
        c = self.config
        self.start()
        assert self.server and self.recorder
        rec = self.recorder
        self._wait(c.baseline_s, "the baseline")
        with RowWriter(self.folder / f"{self.name}{BATCHES_SUFFIX}", BATCH_COLUMNS) as batches:
            for batch in range(1, c.batches + 1):
                rec.phase = f"batch {batch}"
                start = rec.now()
                outcome = self._load(batch)
                end = rec.now()
                self._check_alive(f"batch {batch}")
                rss_batch = rec.last["rss_bytes"] if rec.last else None
                rec.phase = f"pause {batch}"
                self._wait(c.pause_s, f"pause {batch}")
                rss_pause = rec.last["rss_bytes"] if rec.last else None
                batches.write(
                    {
                        "batch": batch, "start_s": start, "end_s": end, "pause_end_s": rec.now(),
                        "requests": outcome.requests, "failures": outcome.failures,
                        "requests_per_second": outcome.requests_per_second,
                        "p50_ms": outcome.p50_ms, "p99_ms": outcome.p99_ms,
                        "p99_9_ms": outcome.p99_9_ms, "rss_end_batch_bytes": rss_batch,
                        "rss_end_pause_bytes": rss_pause,
                    }
                )  # fmt: skip
                failed = f", {outcome.failures} FAILED" if outcome.failures else ""
                self.say(
                    f"batch {batch}/{c.batches}: {outcome.requests} requests{failed}, "
                    f"{outcome.requests_per_second or 0:.1f} req/s; RSS {_mb(rss_batch)} MB "
                    f"after the batch, {_mb(rss_pause)} MB after the pause"
                )
        rec.phase = "trim"
        try:
            trim = self.server.post("/debug/trim")
        except OSError as exc:
            self._check_alive("the trim")
            raise Fault(f"the {self.name} server did not answer /debug/trim: {exc}.") from None
        self.info["trim"] = {k: v for k, v in trim.items() if k not in ("before", "after")}
        (self.folder / f"{self.name}.trim.json").write_text(json.dumps(trim, indent=2))
        rec.phase = "after trim"
        self._wait(c.after_trim_s, "the after-trim recording")
        self.say(
            f"trim: RSS {trim['rss_before_bytes'] / MB:.0f} → {trim['rss_after_bytes'] / MB:.0f} MB"
        )

    def _load(self, batch: int) -> drivers.BatchOutcome:
        assert self.server is not None
        c = self.config
        try:
            if c.driver == "drill":
                return drivers.run_drill(
                    self.bench, self.server.base_url, self.folder, c.tags,
                    self.folder / f"{self.name}.drill.log", self.name,
                )  # fmt: skip
            progress = None
            if self.show_progress:
                label = f"[{self.name}] batch {batch}/{c.batches} "
                progress = load.ProgressBar(label=label, suffix=self._rss_mb)
            return drivers.run_builtin(self.bench, self.items, self.server.base_url, progress)
        except UserError as exc:
            raise Fault(f"the load driver failed in batch {batch}: {exc}") from None

    def cleanup(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()
        if self.server is not None:
            self.info["exit_code"] = self.server.stop()


def _mb(value: float | None) -> str:
    return "?" if value is None else f"{value / MB:.0f}"


def _write_meta(folder: Path, meta: dict) -> None:
    tmp = folder / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    tmp.replace(folder / "meta.json")


def run(config: Config, out: str | None = None) -> Path:
    """Run the experiment; returns the result folder (UserError/Fault on failure)."""
    from .inventory import probe_variant

    for name in config.variants:
        allocators.server_env(allocators.variant(name), config.python_malloc)  # fail early
    config = replace(config, driver=drivers.resolve(config.driver))
    bench = drillfile.load(
        config.benchmark, iterations=config.iterations, concurrency=config.concurrency
    )
    items = drillfile.select(bench, config.tags)
    for warning in bench.warnings:
        print(f"warning: {bench.path}: {warning}", file=sys.stderr)
    folder = result_folder(out, config.preset)
    rows = [probe_variant(allocators.VARIANTS[a]) for a in allocators.ALLOCATORS]
    meta: dict = {
        "tool": "stair-stepper experiment",
        "status": "running",
        "started_at": time.time(),
        "config": asdict(config),
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
            name, config, folder, bench, items,
            config.port + i if config.port else 0, stop, show_progress, save_meta,
        )
        for i, name in enumerate(config.variants)
    ]  # fmt: skip
    for r in runs:
        meta["variants"][r.name] = r.info
    print(
        f"stair-stepper: {config.preset}: {', '.join(config.variants)}; {config.batches} "
        f"batch{'es' if config.batches != 1 else ''} "
        f"of {bench.total_requests(items)} requests ({', '.join(i.name for i in items)}), "
        f"concurrency {config.concurrency}, SLEEP_MS={config.sleep_ms}, "
        f"PYTHONMALLOC={config.python_malloc}; results in {folder}",
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

    with _Signals():  # SIGTERM/SIGHUP end the run like Ctrl-C, clean-up included
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


def report(folder: Path, plot: bool = True) -> int:
    """After a run: summary files, figures (when matplotlib is there) and the short table."""
    from .analysis import plot as analysis

    summary, written = analysis.analyse(folder, figures=plot)
    print(analysis.numbers.short_table(summary))
    for line in analysis.numbers.interpretation(summary):
        print(line)
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    figure = next((p for p in written if p.suffix == ".png"), None)
    print(f"\nresults: {folder}" + (f"  (figure: {figure})" if figure else ""))
    return 0
