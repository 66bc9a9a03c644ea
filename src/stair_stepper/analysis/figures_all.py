"""Every figure of one run's folder, drawn by the figure modules (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from stair_stepper.analysis import figures_layers, figures_price
from stair_stepper.analysis.figures import memory_over_time, save
from stair_stepper.analysis.figures_floors import floors_by_batch, sweeps


def draw_all(data: dict, summary: dict, folder: Path) -> list[Path]:
    """Memory over time, the floors, the layers and arenas where the allocator told, each
    sweep, and the price."""
    written = memory_over_time(data, summary, folder) + floors_by_batch(summary, folder)
    if any(s.get("layers") for s in summary["variants"].values()):
        written += save(figures_layers.layers_figure(data, summary), folder, "layers")
    arenas = figures_layers.arenas_figure(summary)
    if arenas is not None:
        written += save(arenas, folder, "arenas")
    return written + sweeps(summary, folder) + figures_price.tradeoff(summary, folder)
