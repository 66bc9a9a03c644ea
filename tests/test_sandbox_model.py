"""The model of Nix's build sandbox (tests/nix/sandbox.py) is as strict as the real one in
what our build script meets: each property below, from Nix's and nixpkgs' source, is run in
a minimal model (stdenv's tools and an interpreter, nothing else) and must hold. A kinder
model (``$out`` made for the build, no ``set -u``, pipes for output, bwrap as PID 1, all of
``/usr`` for a Debian interpreter) fails these tests; the full run is
``python tests/nix/sandbox.py``."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "nix"))
import sandbox  # noqa: E402  (tests/nix/sandbox.py)

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or os.geteuid() != 0,
    reason="the sandbox model needs bubblewrap, as root",
)
_names = itertools.count()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    work = tmp_path_factory.mktemp("sandbox")
    yield work, sandbox.minimal(work)
    os.system(f"chmod -R u+w {work}")


def build(model, script: str) -> tuple[int, str]:
    """``script`` as a build of its own (a fresh ``$out``)."""
    work, base = model
    fresh = dict(base, out=base["store"] / f"out-{next(_names)}")
    return sandbox.run(work, fresh, script)


def test_the_build_makes_out_itself(model):
    code, log = build(model, "true")
    assert code == 1 and "failed to produce output path" in log
    assert build(model, 'touch "$out"') == (0, "")


def test_inputs_are_read_only_and_the_store_takes_new_paths(model):
    code, log = build(model, 'for d in "$NIX_STORE"/*-stdenv-tools; do touch "$d/new"; done')
    assert code != 0 and "Permission denied" in log
    assert build(model, 'mkdir "$out" && touch "$out/made"')[0] == 0


@pytest.mark.parametrize(
    "script",
    [
        'false | true; touch "$out"',  # pipefail
        'echo "$NOT_SET"; touch "$out"',  # nounset
        'x=$(false; echo y); touch "$out"',  # inherit_errexit
        'false; touch "$out"',  # errexit
    ],
)
def test_the_script_runs_as_stdenv_runs_it(model, script):
    assert build(model, script)[0] != 0


def test_output_is_a_terminal_and_input_is_empty(model):
    code, log = build(model, '[ -t 1 ] && [ -t 2 ] && [ ! -t 0 ] && ! read -r x && touch "$out"')
    assert code == 0, log


def test_the_builder_is_pid_1(model):
    code, log = build(model, '[ "$$" = 1 ] && touch "$out"')
    assert code == 0, log


@pytest.mark.skipif(not Path("/usr/bin/python3.11").exists(), reason="Debian's python3.11")
def test_an_interpreter_in_usr_brings_only_its_own_files(tmp_path):
    files = sandbox.interpreter_files(Path("/usr"), Path("/usr/bin/python3.11"))
    assert Path("/usr") not in files and Path("/usr/lib/python3.11") in files
    work = tmp_path / "w"
    model = sandbox.minimal(work, files)
    try:
        script = (
            "/usr/bin/python3.11 -c 'import json, ssl, sqlite3' && [ ! -e /usr/bin/env ] "
            '&& [ ! -e /usr/bin/gcc ] && [ ! -e /usr/share ] && touch "$out"'
        )
        code, log = sandbox.run(work, model, script)
        assert code == 0, log
    finally:
        os.system(f"chmod -R u+w {work}")
