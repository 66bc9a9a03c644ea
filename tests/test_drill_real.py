"""Real drill against our known answers (runs where real drill is: `nix develop`, or
$STAIR_STEPPER_TEST_DRILL): the tables of tests/unit/test_drillfile.py are drill's behaviour,
not only our reading of its source."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import needs_drill, real_drill
from helpers import SETTINGS_TABLE, drill_plan


def _drill_header(drill: Path, path: Path) -> tuple[int, int, int]:
    done = subprocess.run(
        [str(drill), "--benchmark", str(path), "--stats"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = dict(re.findall(r"^(Concurrency|Iterations|Rampup) (\d+)", done.stdout, re.M))
    return int(found["Iterations"]), int(found["Concurrency"]), int(found["Rampup"])


@needs_drill
@pytest.mark.parametrize(
    ("numbers", "expected", "warns"), [r for r in SETTINGS_TABLE if r[1] != "error"]
)
def test_real_drill_reads_the_numbers_the_same_way(
    tmp_path, glibc_server, numbers, expected, warns
):
    """The table above is drill's behaviour, not our reading of its source."""
    if expected[2] > 0:
        numbers = numbers.replace("rampup: 5", "rampup: 0")  # keep the run short
        expected = (*expected[:2], 0)
    path = drill_plan(tmp_path, numbers, glibc_server.base_url)
    assert _drill_header(real_drill(), path) == expected
