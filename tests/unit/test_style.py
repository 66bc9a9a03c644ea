"""The code style checks, as tests, so the one test command runs them too."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The ruff module in a venv; the ruff command in the Nix build sandbox (checks.tests puts it there).
if importlib.util.find_spec("ruff") is not None:
    RUFF = [sys.executable, "-m", "ruff"]
else:
    RUFF = [shutil.which("ruff")] if shutil.which("ruff") else None

needs_ruff = pytest.mark.skipif(RUFF is None, reason="ruff is not installed here")


@needs_ruff
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff(command):
    done = subprocess.run(
        [*RUFF, *command, "--no-cache", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
