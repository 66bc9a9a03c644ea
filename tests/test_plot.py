"""The plot and compare commands end to end on synthetic folders: tables and figures drawn
(matplotlib makes these the slow half of the analysis' tests; the numbers are tests/unit's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import assert_images, cli
from helpers import synthetic_repeat, synthetic_variant

from stair_stepper.record.schema import TRACE_COLUMNS, RowWriter

MB = 2**20


def test_a_repeat_folder_is_plotted_run_by_run_and_as_bands(tmp_path):
    folder = tmp_path / "rep"
    synthetic_repeat(folder)
    done = run_plot(folder)
    assert done.returncode == 0, done.stderr
    assert (folder / "summary.md").exists() and (folder / "run-2" / "summary.json").exists()
    assert (folder / "floors-runs.png").exists()


def run_plot(*args) -> subprocess.CompletedProcess:
    return cli("plot", *map(str, args))


def test_plot_command_writes_tables_and_figures(synthetic, tmp_path):
    out = tmp_path / "figs"
    done = run_plot(synthetic, "-o", out)
    assert done.returncode == 0, done.stderr
    assert_images(out)
    assert (out / "summary.json").exists() and (out / "summary.md").exists()
    assert "200 → 260 → 262" in done.stdout


def test_the_analysis_runs_as_a_module_too(synthetic, tmp_path):
    root = Path(__file__).resolve().parents[1]
    out = str(tmp_path / "o")
    command = [sys.executable, "-m", "stair_stepper.analysis.plot", str(synthetic), "-o", out]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (
        json.loads((tmp_path / "o" / "summary.json").read_text())["variants"]["glibc"]["steps"] == 1
    )


def test_damaged_input_still_plots_what_it_can(synthetic):
    (synthetic / "jemalloc.trace.csv").write_text("")  # empty trace
    with open(synthetic / "glibc.trace.csv", "a") as handle:
        handle.write("99.0,1.0,after tr")  # truncated last line
    meta = json.loads((synthetic / "meta.json").read_text())
    meta["config"]["variants"].append("mimalloc")  # a variant that left nothing
    (synthetic / "meta.json").write_text(json.dumps(meta))
    done = run_plot(synthetic)
    assert done.returncode == 0, done.stderr
    assert "jemalloc.trace.csv is empty" in done.stderr
    assert "dropped a truncated last line" in done.stderr
    assert "variant mimalloc is in meta.json but has no usable trace" in done.stderr
    assert "Traceback" not in done.stderr
    assert_images(synthetic)
    s = json.loads((synthetic / "summary.json").read_text())
    assert (
        list(s["variants"]) == ["glibc"] and s["variants"]["glibc"]["after_trim_bytes"] == 60 * MB
    )


def test_a_bare_record_csv_gets_baseline_and_peak(tmp_path):
    path = tmp_path / "app.csv"
    with RowWriter(path, TRACE_COLUMNS) as w:
        for i in range(50):
            w.write({"t_s": i / 10, "rss_bytes": (10 + i) * MB})
    done = run_plot(path)
    assert done.returncode == 0, done.stderr
    s = json.loads((tmp_path / "summary.json").read_text())["variants"]["app"]
    assert s["peak_bytes"] == 59 * MB and s["baseline_bytes"] == 15 * MB and s["floors_bytes"] == []


def test_several_runs_get_min_max_bands_and_compare(synthetic, tmp_path):
    other = tmp_path / "run2"
    other.mkdir()
    synthetic_variant(other, "glibc", 50, [220, 280, 300], 60, 400)
    synthetic_variant(other, "jemalloc", 50, [90, 95, 100], 70, 300)
    out = tmp_path / "both"
    done = run_plot(synthetic, other, "-o", out)
    assert done.returncode == 0, done.stderr
    assert_images(out, ("floors-runs",))
    assert_images(out / "run2")
    done = cli("compare", str(synthetic), str(other))
    assert done.returncode == 0, done.stderr
    assert "| glibc | 260 | 280 | 1.08 |" in done.stdout
