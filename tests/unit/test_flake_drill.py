"""The flake's drill override against each known drill source line: it patches the old bound
where the source has it and leaves a source that carries upstream's fix alone.

The override's shell text is read from flake.nix itself and run the way stdenv runs a phase
(bash, ``set -eu -o pipefail``), with ``substituteInPlace`` modelled on nixpkgs'
``pkgs/stdenv/generic/setup.sh`` (``substituteStream``: ``--replace-fail`` on a pattern that
does not occur prints "ERROR: pattern … doesn't match anything in …" and returns 1, which fails
the build). Not modelled: the rest of stdenv, and whether the pin's drill builds at all.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: the histogram line of drill's src/main.rs (compute_stats), as each version has it
SOURCES = {
    # drill 0.8.3 and 0.9.0 (github.com/fcsonline/drill, tags 0.8.3 and 0.9.0, line 108)
    "0.8.3": "  let mut hist = Histogram::<u64>::new_with_bounds(1, 60 * 60 * 1000, 2).unwrap();\n",
    "0.9.0": "  let mut hist = Histogram::<u64>::new_with_bounds(1, 60 * 60 * 1000, 2).unwrap();\n"
    "  let mut group_by_status = HashMap::new();\n",
    # upstream's fix: an hour in microseconds (the line the pin's drill may carry)
    "fixed": "  let mut hist = Histogram::<u64>::new_with_bounds(1, 60 * 60 * 1_000_000, 2)"
    ".unwrap();\n",
}
#: nixpkgs' substituteInPlace for --replace-fail (pkgs/stdenv/generic/setup.sh)
SUBSTITUTE = r"""
substituteInPlace() {
    local file="$1"; shift
    local content; content="$(cat "$file"; printf x)"; content="${content%x}"
    while (( "$#" )); do
        case "$1" in
            --replace-fail)
                local pattern="$2" replacement="$3"; shift 3
                if ! [[ "$content" == *"$pattern"* ]]; then
                    printf "substituteStream() in derivation drill: ERROR: pattern %q doesn't \
match anything in file '%s'\n" "$pattern" "$file" >&2
                    return 1
                fi
                content="${content//"$pattern"/"$replacement"}"
                ;;
            *) echo "substituteInPlace: unsupported $1" >&2; return 1 ;;
        esac
    done
    printf '%s' "$content" > "$file"
}
"""


def override_script(flake: str) -> str:
    """The shell text of the drill override's postPatch, as Nix makes it of the '' string (its
    common indentation removed, ''$ and ''' unescaped)."""
    start = flake.index("drill = pkgs.drill.overrideAttrs")
    body = flake[flake.index("''", start) + 2 :]
    body = body[: re.search(r"(?<!')''(?!['$])", body).start()]
    lines = body.split("\n")[1:]
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    text = "\n".join(line[indent:] for line in lines)
    return text.replace("''$", "$").replace("'''", "''")


def patch(tmp_path: Path, source: str, script: str) -> tuple[subprocess.CompletedProcess, str]:
    (tmp_path / "src").mkdir()
    main = tmp_path / "src" / "main.rs"
    main.write_text(source)
    done = subprocess.run(
        ["bash", "-c", f"set -eu -o pipefail\n{SUBSTITUTE}\n{script}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    return done, main.read_text()


pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="stdenv's shell is bash")


@pytest.mark.parametrize("version", ["0.8.3", "0.9.0"])
def test_the_old_bound_is_raised_to_an_hour_in_microseconds(tmp_path, version):
    done, patched = patch(
        tmp_path, SOURCES[version], override_script((ROOT / "flake.nix").read_text())
    )
    assert done.returncode == 0, done.stderr
    assert "new_with_bounds(1, 60 * 60 * 1000 * 1000, 2)" in patched
    assert "60 * 60 * 1000, 2)" not in patched


def test_a_source_with_upstream_s_fix_builds_unpatched(tmp_path):
    done, patched = patch(
        tmp_path, SOURCES["fixed"], override_script((ROOT / "flake.nix").read_text())
    )
    assert done.returncode == 0, done.stderr
    assert patched == SOURCES["fixed"]


def test_the_unconditional_replace_fail_would_break_a_fixed_drill(tmp_path):
    """The override as it once was: on the fixed source, the build fails (the model is strict
    enough to catch what the guard prevents)."""
    once = (
        "substituteInPlace src/main.rs --replace-fail \\\n"
        '  "new_with_bounds(1, 60 * 60 * 1000, 2)" "new_with_bounds(1, 60 * 60 * 1000 * 1000, 2)"\n'
    )
    done, patched = patch(tmp_path, SOURCES["fixed"], once)
    assert done.returncode == 1
    assert "ERROR: pattern" in done.stderr and "doesn't match anything" in done.stderr
    assert patched == SOURCES["fixed"]
