"""The configuration's records, the phase vocabulary and the plan's arithmetic: known answers,
no process started."""

from __future__ import annotations

import argparse

import pytest

from stair_stepper.experiment import command, schedule
from stair_stepper.experiment.presets import FLAT, PRESETS, Config, Load, Pacing, Service
from stair_stepper.record import phases


def test_each_flat_field_lands_in_its_record_and_comes_back_flat():
    config = Config.make(batches=3, sleep_ms=7, rate=2.5, repeat=2)
    assert config.pacing.batches == 3 and config.service.sleep_ms == 7
    assert config.load.rate == 2.5 and config.repeat == 2
    flat = config.flat()
    assert flat["batches"] == 3 and flat["sleep_ms"] == 7 and flat["rate"] == 2.5
    assert set(flat) == set(FLAT)  # meta.json's "config": every field, flat, once
    assert Config.make(**flat) == config
    with pytest.raises(TypeError, match="no configuration field 'bogus'"):
        config.set(bogus=1)


def test_every_experiment_flag_sets_a_field_of_the_configuration():
    """Each flag's dest is a field (a flag that sets nothing would be silently ignored)."""
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    dests = {a.dest for a in parser._actions} - {"help"}
    not_fields = {
        "out",
        "no_plot",
        "dry_run",
        "find_limit",  # a mode of its own: runs whole experiments (experiment/find_limit.py)
        "variant_specs",
        "variants_file",
        "sweep_specs",
        "batch_from_file",
    }
    assert dests - not_fields <= set(FLAT), dests - not_fields - set(FLAT)


def test_the_records_name_each_field_once():
    names = [f for record in (Service, Load, Pacing) for f in record.__dataclass_fields__]
    assert len(names) == len(set(names))


def test_the_phase_vocabulary_round_trips():
    assert phases.pause_number(phases.pause_phase(7)) == 7
    assert phases.numbered(phases.batch_phase(12), "batch") == 12
    assert phases.pause_number(phases.read_phase(3)) is None  # a read is not a pause
    assert phases.pause_number("pause baseline") is None
    assert phases.read_phase(phases.BASELINE) == "read baseline"


def test_the_plan_s_least_duration_is_its_arithmetic():
    """The quick preset alone: 2 s to start, 1 s baseline, 1 s trim, 1.5 s after it; 2 batches
    of 16 iterations, 16 at once: one round of 1 item at 100 ms; pauses at least 2 s."""
    config = PRESETS["quick"].set(variants=("glibc",), tags="tiny")
    least, pausing, known = schedule.duration_range(config, 16, 1)
    assert known and least == pytest.approx(2 + 1 + 1 + 1.5 + 2 * (0.1 + 2.0))
    assert pausing == 2 * 25.0  # each pause to its 25 s cap
    side_by_side = config.set(variants=("a", "b", "c"), parallel=True)
    assert schedule.duration_range(side_by_side, 16, 1)[0] == pytest.approx(least)
    one_after_another = config.set(variants=("a", "b", "c"), parallel=False)
    assert schedule.duration_range(one_after_another, 16, 1)[0] == pytest.approx(3 * least)
