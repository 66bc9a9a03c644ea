"""What an experiment says on the terminal while it runs, and the report after it.

Apart from the run itself (memray keeps its reporters apart from the tracker): the
experiment and its variants call these; none of them computes anything. Progress lines
go to stderr, the results table to stdout.
"""

from __future__ import annotations

import sys
import threading

MB = 2**20


def _mb(value: float | None) -> str:
    return "?" if value is None else f"{value / MB:.0f}"


class Console:
    """Progress lines, one per event; a progress bar on a terminal when variants run one
    after another (side by side, several bars would overwrite each other)."""

    def __init__(self, stream=None, bars: bool = False) -> None:
        self._stream = stream  # None: sys.stderr as it is when a line is written
        self.bars = bars and (stream or sys.stderr).isatty()
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            print(text, file=self._stream or sys.stderr, flush=True)

    def say(self, variant: str, text: str) -> None:
        self.line(f"[{variant}] {text}")

    def begin(self, meta: dict, folder, requests: int, items: list[str]) -> None:
        from stair_stepper.record.results import describe

        c = meta["config"]
        self.line(
            f"stair-stepper: {c['preset']}: {', '.join(c['variants'])}; {requests} requests a "
            f"batch ({', '.join(items)}); {describe(meta)}; results in {folder}"
        )
        for note in c.get("notes") or ():
            self.line(f"stair-stepper: {note}")

    def run_of(self, k: int, n: int) -> None:
        self.line(f"stair-stepper: run {k} of {n}")

    def serving(self, variant: str, server) -> None:
        self.say(
            variant,
            f"serving on {server.base_url}, pid {server.pid}, "
            f"malloc from {server.health['malloc_provider']}",
        )

    def batch(self, variant: str, row, batches: int) -> None:
        failed = f", {row.failures} FAILED" if row.failures else ""
        how = "settled" if row.settled else "NOT settled"
        self.say(
            variant,
            f"batch {row.batch}/{batches}: {row.requests} requests{failed}, "
            f"{row.requests_per_second or 0:.1f} req/s; RSS {_mb(row.rss_end_batch_bytes)} MB "
            f"after the batch, {_mb(row.rss_end_pause_bytes)} MB after a {row.pause_s:.1f} s "
            f"pause ({how})",
        )

    def trim(self, variant: str, trim: dict) -> None:
        self.say(
            variant,
            f"trim: RSS {_mb(trim['rss_before_bytes'])} → {_mb(trim['rss_after_bytes'])} MB",
        )

    def progress(self, variant: str, k: int, batches: int, recorder):
        """A progress bar for batch k (None when not on a terminal or side by side)."""
        if not self.bars:
            return None
        from stair_stepper.load.command import ProgressBar

        def rss() -> str:
            last = recorder.last if recorder else None
            return f"RSS {last['rss_bytes'] / MB:.0f} MB" if last else "RSS ? MB"

        return ProgressBar(label=f"[{variant}] batch {k}/{batches} ", suffix=rss)


def report(folder, figures: bool = True, stop: threading.Event | None = None) -> None:
    """After a run: summary files, figures (when matplotlib is there) and the short table.
    Between the summary and the figures it stops early if ``stop`` is set (a signal)."""
    from stair_stepper.analysis import markdown, plot, read, summary, verdict

    if read.run_folders(folder):
        result, _ = plot.analyse_repeats(
            folder, None, summary.DEFAULT_STEP_THRESHOLD, figures, stop=stop
        )
        print(markdown.markdown_repeats(result))  # the verdict at its top
        for warning in result["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"\nresults: {folder}")
        return
    result, written = plot.analyse(folder, figures=figures, stop=stop)
    print(markdown.short_table(result))
    for line in markdown.interpretation(result):
        print(line)
    print("\n".join(verdict.verdict_text(result)))
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    figure = next((p for p in written if p.suffix == ".png"), None)
    print(f"\nresults: {folder}" + (f"  (figure: {figure})" if figure else ""))
