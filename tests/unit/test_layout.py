"""The house keeps the shape docs/architecture.md shows: every module of a folder named on
its row, every module named there present, and no module over 400 lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "stair_stepper"
FOLDERS = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())


def row(folder: str) -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    found = re.search(rf"^\| `{folder}/` \|(.*)$", text, re.M)
    assert found, f"docs/architecture.md has no row for {folder}/"
    return found.group(1)


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_architecture_page_names_every_module_of_each_folder(folder):
    named = set(re.findall(r"`([a-z_*]+)\.py`", row(folder)))
    modules = {p.stem for p in (PACKAGE / folder).glob("*.py") if p.stem != "__init__"}
    unnamed = {
        m
        for m in modules
        if m not in named and not any(n.endswith("*") and m.startswith(n[:-1]) for n in named)
    }
    assert not unnamed, f"docs/architecture.md's {folder}/ row does not name {sorted(unnamed)}"
    gone = {n for n in named if "*" not in n and n not in modules | {"__init__"}}
    assert not gone, f"docs/architecture.md's {folder}/ row names {sorted(gone)}, not there"


def test_no_module_is_over_400_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, long
