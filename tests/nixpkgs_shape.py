"""Python applications laid out the way nixpkgs builds them, without Nix.

Used by tests/test_launch_shapes.py (no Nix needed) and by the stand-in for
nixpkgs in tests/nix/standin (its ``toPythonApplication`` calls this file), so
both model nixpkgs in one place. What is modelled, with the nixpkgs source:

- ``wrap_application``: ``wrapPythonPrograms``
  (pkgs/development/interpreters/python/wrap.sh with the preamble of
  wrap-python.nix). The console script keeps the *bare* interpreter of the
  Python derivation in its shebang and gets one line before its first
  statement: ``import sys;import site;import functools;sys.argv[0] = '<path>';
  functools.reduce(lambda k, p: site.addsitedir(p, k), [<site dirs>],
  site._init_pathinfo());``. It is renamed ``.NAME-wrapped`` and a shell wrapper
  (makeWrapper) prefixes ``PATH``, sets ``PYTHONNOUSERSITE=true`` and execs it.
  No ``PYTHONPATH`` anywhere.
- ``bare_interpreter``: ``pkgs.python3`` itself: an interpreter that sees the
  standard library and an empty site-packages (here a venv made
  ``--without-pip``: no system site-packages, nothing installed).
- ``with_packages``: ``python.withPackages`` (wrapper.nix + sitecustomize.py):
  an environment whose interpreter sees its packages without ``PYTHONPATH``
  and whose ``sys.executable`` is the environment's own interpreter, so a child
  started with it sees them too. Modelled as a venv whose site-packages holds a
  ``.pth`` naming the packages' folders.

Not modelled: makeWrapper's binary wrappers and ``--inherit-argv0``; the
``NIX_PYTHONPREFIX``/``NIX_PYTHONEXECUTABLE`` variables (a venv reaches the
same ``sys.executable`` another way); propagated-build-inputs walking (the
caller lists every folder); byte-compilation and the sandbox.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bare_interpreter(folder: Path) -> Path:
    """A Python that sees only its standard library (``pkgs.python3``)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    return folder / "bin" / "python3"


def install_package(target: Path) -> Path:
    """stair_stepper as an installed (not editable) package: what the wheel holds."""
    target.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src" / "stair_stepper", target / "stair_stepper", ignore=ignore)
    shutil.copytree(ROOT / "analysis", target / "stair_stepper" / "analysis", ignore=ignore)
    return target


def editable_site(target: Path, work: Path) -> Path:
    """stair_stepper installed the way ``pip install -e`` does it (PEP 660), by setuptools' own
    ``build_editable`` on a copy of the checkout in ``work``: a site folder holding a ``.pth``
    whose line *imports* the editable finder (``import __editable___…_finder;
    __editable___…_finder.install()``) that lives beside it. Such a line only works when
    its folder is already on ``sys.path`` as the ``.pth`` runs."""
    import zipfile

    for name in ("pyproject.toml", "src", "analysis"):
        source = ROOT / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            shutil.copytree(source, work / name, ignore=ignore)
        else:
            shutil.copy2(source, work / name)
    wheels = work / "wheels"
    build = (
        "import sys; from setuptools import build_meta; "
        "print(build_meta.build_editable(sys.argv[1]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", build, str(wheels)], cwd=work, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"setuptools' build_editable failed: {done.stderr[-2000:]}")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels / done.stdout.split()[-1]) as wheel:
        wheel.extractall(target)
    return target


def dependencies_site(target: Path) -> Path:
    """The folder holding Quart, Hypercorn & co. here, without any stair_stepper in it."""
    import quart

    source = Path(quart.__file__).resolve().parents[1]
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name.startswith(("stair_stepper", "__editable__", "_stair_stepper")):
            continue
        (target / entry.name).symlink_to(entry)
    return target


def wrap_application(
    bin_dir: Path, name: str, interpreter: Path, site_dirs: list[Path], entry: str
) -> Path:
    """A console script for ``entry`` (``module:function``), wrapped like wrapPythonPrograms."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    module, function = entry.split(":")
    wrapped = bin_dir / f".{name}-wrapped"
    dirs = ",".join(f"'{d}'" for d in site_dirs)
    preamble = (
        f"import sys;import site;import functools;sys.argv[0] = '{wrapped}';"
        f"functools.reduce(lambda k, p: site.addsitedir(p, k), [{dirs}], site._init_pathinfo());"
    )
    # The console script pip writes, with the preamble inserted before its first statement.
    wrapped.write_text(
        f"#!{interpreter}\n# -*- coding: utf-8 -*-\n{preamble}\nimport re\nimport sys\n"
        f"from {module} import {function}\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        f"    sys.exit({function}())\n"
    )
    wrapper = bin_dir / name
    wrapper.write_text(
        "#!/bin/bash -e\n"
        f"PATH={interpreter.parent}${{PATH:+':'$PATH}}\nexport PATH\n"
        "export PYTHONNOUSERSITE='true'\n"
        f'exec -a "$0" "{wrapped}"  "$@"\n'
    )
    for path in (wrapped, wrapper):
        path.chmod(0o755)
    return wrapper


def with_packages(folder: Path, site_dirs: list[Path]) -> Path:
    """``python.withPackages``: an interpreter that sees ``site_dirs`` by itself."""
    interpreter = bare_interpreter(folder)
    done = subprocess.run(
        [str(interpreter), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    Path(done.stdout.strip(), "nix-env.pth").write_text("".join(f"{d}\n" for d in site_dirs))
    return interpreter


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without anything that would tell Python where packages are."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


def main() -> int:
    """Command line for the Nix stand-in's builders."""
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["wrap-application", "with-packages"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--interpreter", type=Path)
    parser.add_argument("--site-dir", type=Path, action="append", default=[])
    parser.add_argument("--name", default="stair-stepper")
    parser.add_argument("--entry", default="stair_stepper.cli:main")
    args = parser.parse_args()
    if args.action == "wrap-application":
        wrap_application(args.out / "bin", args.name, args.interpreter, args.site_dir, args.entry)
    else:
        interpreter = with_packages(args.out, args.site_dir)
        (args.out / "bin" / "python").unlink(missing_ok=True)
        (args.out / "bin" / "python").symlink_to(interpreter.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
