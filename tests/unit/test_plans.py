"""The request bodies: committed plan files equal the generator's default output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli

from stair_stepper.errors import UserError
from stair_stepper.load import drillfile, plans

ROOT = Path(__file__).resolve().parents[2]
RECORD_FIELDS = {
    "_id",
    "index",
    "guid",
    "isActive",
    "balance",
    "picture",
    "age",
    "eyeColor",
    "name",
    "gender",
    "company",
    "email",
    "phone",
    "address",
    "about",
    "registered",
    "latitude",
    "longitude",
    "tags",
    "friends",
    "greeting",
    "favoriteFruit",
}


def test_committed_plans_equal_the_default_output(tmp_path):
    done = cli("plans", "generate", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    for tag in plans.DEFAULT_SIZES:
        assert (tmp_path / f"{tag}.yml").read_bytes() == (
            ROOT / "plans" / f"{tag}.yml"
        ).read_bytes()


@pytest.mark.parametrize("tag", list(plans.DEFAULT_SIZES))
def test_bodies_have_the_right_size_and_shape(tag):
    bench = drillfile.read_benchmark(ROOT / "benchmark.yml")
    (item,) = [i for i in bench.items if i.name == tag]
    body = item.body
    assert abs(len(body) - plans.DEFAULT_SIZES[tag]) <= 0.03 * plans.DEFAULT_SIZES[tag]
    assert body.isascii() and "{{" not in body
    doc = json.loads(body)
    assert doc["eventType"] == "mem-test"
    records = doc["payload"]["body"]
    assert len(records) >= 10
    assert all(set(r) == RECORD_FIELDS for r in records)
    assert len({r["guid"] for r in records}) == len(records)  # varied, not copies
    assert all(set(f) == {"id", "name"} for r in records for f in r["friends"])


def test_expected_sizes_documented_by_the_issue():
    assert plans.DEFAULT_SIZES == {
        "tiny": 31_000,
        "small": 306_000,
        "medium": 605_000,
        "large": 1_970_000,
    }


def test_seed_changes_content_but_not_size():
    a, b = plans.make_body(50_000, seed=1), plans.make_body(50_000, seed=2)
    assert a != b and abs(len(a) - len(b)) < 100
    assert plans.make_body(50_000, seed=1) == a


def test_custom_sizes(tmp_path):
    written = plans.generate(tmp_path, plans.parse_sizes(["huge=3mb"]) | {}, seed=None)
    assert (tmp_path / "huge.yml") in written
    assert plans.parse_sizes(["x=40k"])["x"] == 40_000
    for bad in ["huge", "=5mb", "x=abc", "x=10"]:
        with pytest.raises(UserError):
            plans.parse_sizes([bad])
