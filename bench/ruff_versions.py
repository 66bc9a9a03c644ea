"""`ruff check` and `ruff format --check` with several ruff releases, each installed from PyPI
into a temporary folder: the flake's checks use whatever ruff the pinned nixpkgs has, which
is not known here, so the code must be clean and formatted the same under all of them.

    python bench/ruff_versions.py [VERSION ...]     # default: RELEASES and the newest

Prints one line per version and exits 1 if any of them finds something. CI runs it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the oldest our configuration accepts, releases whose formatting changed, and later ones
RELEASES = ("0.9.10", "0.13.3", "0.14.0", "0.14.14", "0.15.22", "0.16.10")


def newest() -> str | None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "ruff"], capture_output=True, text=True
    )
    first = done.stdout.splitlines()[:1]
    return first[0].split("(")[1].rstrip(")") if first and "(" in first[0] else None


def check(version: str, folder: Path) -> list[str]:
    """The problems this ruff finds (empty: clean), after installing it into ``folder``."""
    target = folder / version
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            f"ruff=={version}",
        ],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        return [f"could not install ruff {version}: {install.stderr.strip()[-300:]}"]
    ruff = target / "bin" / "ruff"
    problems = []
    for command in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [str(ruff), *command, "--no-cache", str(ROOT)], cwd=ROOT, capture_output=True, text=True
        )
        if done.returncode != 0:
            problems.append(f"ruff {' '.join(command)}: {(done.stdout + done.stderr).strip()}")
    return problems


def main(argv: list[str]) -> int:
    versions = list(argv) or [*RELEASES, *filter(None, [newest()])]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="ruff-versions-") as tmp:
        for version in dict.fromkeys(versions):
            problems = check(version, Path(tmp))
            print(f"ruff {version}: " + ("clean" if not problems else "FAILED"))
            for problem in problems:
                print("  " + problem.replace("\n", "\n  "))
            failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
