"""Python applications laid out the way nixpkgs builds them, without Nix.

Used by tests/test_launch_shapes.py (no Nix needed), by the stand-in for nixpkgs in
tests/nix/standin (its ``toPythonApplication`` and ``withPackages`` call this file) and by
the model of Nix's build sandbox (tests/nix/sandbox.py, whose Python environment is built
here), so all three model nixpkgs in one place. What is modelled, with the nixpkgs source:

- ``bare_interpreter``: ``pkgs.python3`` itself (pkgs/development/interpreters/python/
  cpython/default.nix): an interpreter that sees the standard library and an empty
  site-packages. Modelled as a venv made ``--without-pip``.
- ``package_store_paths``: ``python3.pkgs.<name>``: every Python distribution in a store
  path of its own, ``<hash>-python3.X-<name>-<version>/lib/python3.X/site-packages`` (and
  its ``bin/``), and ``requiredPythonModules``' walk over what each one requires.
- ``build_env``: ``buildEnv`` (pkgs/build-support/buildenv/builder.pl): the union of
  several store paths as a tree of symlinks. A folder that only one path provides is a
  symlink to that path's folder; a folder several provide is a real folder whose entries
  are merged the same way; a file is a symlink to the one path that provides it (two
  different files at one place are a collision, an error).
- ``binary_wrapper``: ``makeBinaryWrapper`` (pkgs/build-support/setup-hooks/
  make-binary-wrapper): a small C program that sets variables and execs its target.
- ``with_packages``: ``python.withPackages`` (pkgs/development/interpreters/python/
  wrapper.nix): ``buildEnv`` of the interpreter and the packages, whose ``bin/python3.X``
  is a binary wrapper of the interpreter with ``--inherit-argv0 --resolve-argv0 --set
  PYTHONNOUSERSITE true``; the interpreter, run under the environment's name, finds the
  environment's site-packages by itself, and ``sys.executable`` is the wrapper: a child
  started with it sees the packages too.
- ``wrap_application``: ``wrapPythonPrograms`` (wrap.sh with the preamble of
  wrap-python.nix). The console script keeps the *bare* interpreter in its shebang and gets
  one line before its first statement: ``import sys;import site;import functools;
  sys.argv[0] = '<path>';functools.reduce(lambda k, p: site.addsitedir(p, k), [<site
  dirs>], site._init_pathinfo());``. It is renamed ``.NAME-wrapped`` and a shell wrapper
  (makeShellWrapper: ``#! <stdenv's bash> -e``, never ``/bin/bash``, which the build
  sandbox does not have) prefixes ``PATH``, sets ``PYTHONNOUSERSITE=true`` and execs it.
  No ``PYTHONPATH`` anywhere.

Not modelled: the interpreter's own store layout (a venv stands in, found through its
``pyvenv.cfg`` where nixpkgs' is found by its ``lib/python3.X/os.py``; both give
``sys.prefix`` = the environment), nixpkgs' ``sitecustomize.py`` (``NIX_PYTHONPATH``,
``NIX_PYTHONEXECUTABLE``: wrapper.nix no longer sets them for the interpreter), buildEnv's
priorities, ``pathsToLink`` and ``propagated-user-env-packages``; a store path's files are
hard links of the host's installed files, not a build of them; byte-compilation; the
sandbox (tests/nix/sandbox.py models that).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_X_Y = f"python{sys.version_info.major}.{sys.version_info.minor}"
SITE = f"lib/{PYTHON_X_Y}/site-packages"


def bare_interpreter(folder: Path) -> Path:
    """A Python that sees only its standard library (``pkgs.python3``)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    return folder / "bin" / "python3"


def _store_name(name: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()[:32]
    return f"{digest}-{name}"


def install_package(target: Path) -> Path:
    """stair_stepper as an installed (not editable) package: what the wheel holds."""
    target.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src" / "stair_stepper", target / "stair_stepper", ignore=ignore)
    return target


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def requirement_closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions ``names`` and all they require, as ``requiredPythonModules``
    walks a package's propagated Python inputs (extras not taken, markers evaluated)."""
    from packaging.requirements import Requirement

    installed = {_canonical(d.metadata["Name"]): d for d in metadata.distributions()}
    found: dict[str, metadata.Distribution] = {}
    todo = [_canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in found or name not in installed:
            continue
        found[name] = dist = installed[name]
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_canonical(req.name))
    return [found[n] for n in sorted(found)]


def package_store_paths(store: Path, names: list[str], skip: tuple[str, ...] = ()) -> list[Path]:
    """One store path per distribution of ``requirement_closure(names)`` under ``store``, its
    files (by its RECORD) hard links of (or, across file systems, copies of) what the host
    installed: site-packages files under ``lib/python3.X/site-packages``, its scripts under
    ``bin``. Real files, as in nixpkgs: a path resolved through the environment's symlinks
    ends in the package's own store path, never in a flat folder holding everything."""
    paths = []
    for dist in requirement_closure(names):
        name = _canonical(dist.metadata["Name"])
        if name in skip:
            continue
        out = store / _store_name(f"{PYTHON_X_Y}-{name}-{dist.version}")
        site = out / SITE
        for file in dist.files or []:
            source = Path(dist.locate_file(file))
            if not source.is_file() or "__pycache__" in file.parts:
                continue
            parts = file.parts
            if parts[:3] == ("..", "..", "..") and parts[3:4] == ("bin",):
                target = out / "bin" / parts[-1]
            elif ".." in parts:
                continue  # data installed outside site-packages and bin: not needed here
            else:
                target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                _link(source.resolve(), target)
        paths.append(out)
    return paths


def editable_site(target: Path, work: Path) -> Path:
    """stair_stepper installed the way ``pip install -e`` does it (PEP 660), by setuptools' own
    ``build_editable`` on a copy of the checkout in ``work``, laid out so that setuptools needs
    its finder: a site folder holding a ``.pth`` whose line *imports* the editable finder
    (``import __editable___…_finder; __editable___…_finder.install()``) that lives beside it.
    Such a line only works when its folder is already on ``sys.path`` as the ``.pth`` runs.

    Our own layout (everything under src/) gets a plain path ``.pth`` instead; a project whose
    packages setuptools must map from elsewhere (``package-dir``, as this project once had its
    analysis at the top) gets the importing one, so the copy maps one subpackage from outside
    src/, as the checkout used to."""
    import zipfile

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "src", work / "src", ignore=ignore)
    shutil.move(work / "src" / "stair_stepper" / "analysis", work / "analysis")
    pyproject = (ROOT / "pyproject.toml").read_text()
    find = '[tool.setuptools.packages.find]\nwhere = ["src"]\n'
    assert find in pyproject, "pyproject.toml's package table changed: update this model"
    packages = sorted(
        ".".join(p.parent.relative_to(work / "src").parts)
        for p in (work / "src").rglob("__init__.py")
    )
    mapped = (
        "[tool.setuptools]\n"
        'package-dir = { "" = "src", "stair_stepper.analysis" = "analysis" }\n'
        f"packages = {[*packages, 'stair_stepper.analysis']!r}\n".replace("'", '"')
    )
    (work / "pyproject.toml").write_text(pyproject.replace(find, mapped))
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


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system (or mount): a copy
        shutil.copy2(source, target)


def dependencies_site(target: Path) -> Path:
    """The folder that holds Quart, Hypercorn & co. *as this interpreter imports them*, without
    any stair_stepper in it. Not resolved through symlinks: under ``python.withPackages`` that
    folder is a buildEnv, and resolving quart's path lands in quart's own store path, which
    holds quart alone."""
    import quart

    source = Path(os.path.abspath(quart.__file__)).parents[1]
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name.startswith(("stair_stepper", "__editable__", "_stair_stepper")):
            continue
        (target / entry.name).symlink_to(entry)
    return target


def build_env(out: Path, paths: list[Path]) -> Path:
    """``buildEnv``: the union of ``paths`` as a tree of symlinks (builder.pl's rules)."""
    links: dict[tuple[str, ...], Path | None] = {(): None}  # None: a real directory

    def find(rel: tuple[str, ...], target: Path) -> None:
        if rel[-1:] in (("nix-support",), ("propagated-build-inputs",), ("perllocal.pod",)):
            return
        old = links.get(rel, "absent")
        if old == "absent":
            links[rel] = target
            return
        if old is not None and os.path.realpath(old) == os.path.realpath(target):
            return
        if not target.is_dir() or (old is not None and not old.is_dir()):
            raise RuntimeError(f"collision between {target} and {old}")
        if old is not None:
            links[rel] = None
            for entry in sorted(old.iterdir()):
                find((*rel, entry.name), entry)
        for entry in sorted(target.iterdir()):
            find((*rel, entry.name), entry)

    for path in paths:
        for entry in sorted(Path(path).iterdir()):
            find((entry.name,), entry)
    for rel, target in sorted(links.items()):
        where = out.joinpath(*rel)
        if target is None:
            where.mkdir(parents=True, exist_ok=True)
        else:
            where.parent.mkdir(parents=True, exist_ok=True)
            where.symlink_to(target)
    return out


_WRAPPER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* makeBinaryWrapper's shape: set the variables, keep argv (--inherit-argv0), and with
   --resolve-argv0 make a bare name absolute through PATH; then exec the target. */
static char *resolve(const char *name) {
    const char *path = getenv("PATH");
    static char found[4096];
    if (strchr(name, '/') || !path) return (char *) name;
    for (const char *p = path; *p;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t) (end - p) : strlen(p);
        snprintf(found, sizeof found, "%.*s/%s", (int) n, p, name);
        if (access(found, X_OK) == 0) return found;
        if (!end) break;
        p = end + 1;
    }
    return (char *) name;
}
int main(int argc, char **argv) {
    (void) argc;
    @SETENV@
    argv[0] = resolve(argv[0]);
    execv("@TARGET@", argv);
    perror("execv @TARGET@");
    return 127;
}
"""


def binary_wrapper(target: Path, out: Path, env: dict[str, str]) -> Path:
    """A compiled wrapper of ``target`` (needs a C compiler: skip where there is none)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise FileNotFoundError("no C compiler here for the makeBinaryWrapper stand-in")
    sets = "".join(f'setenv("{k}", "{v}", 1);' for k, v in env.items())
    source = out.with_name(out.name + ".c")
    source.write_text(_WRAPPER_C.replace("@SETENV@", sets).replace("@TARGET@", str(target)))
    subprocess.run([cc, "-O2", "-o", str(out), str(source)], check=True)
    source.unlink()
    return out


def with_packages(folder: Path, paths: list[Path], store: Path | None = None) -> Path:
    """``python.withPackages``: an environment whose interpreter sees ``paths``' packages by
    itself, and whose ``sys.executable`` is that interpreter's binary wrapper. The bare
    interpreter and wrapper.nix's empty ``bin`` path are made in ``store`` (default: beside
    ``folder``)."""
    store = store or folder.parent
    python = bare_interpreter(store / _store_name(f"{PYTHON_X_Y}-bare"))
    bin_path = store / _store_name("bin")  # wrapper.nix: so that bin/ is always a real folder
    (bin_path / "bin").mkdir(parents=True, exist_ok=True)  # shared by every environment
    build_env(folder, [python.parent.parent, *paths, bin_path])
    executable = folder / "bin" / PYTHON_X_Y
    executable.unlink()
    binary_wrapper(python.parent / PYTHON_X_Y, executable, {"PYTHONNOUSERSITE": "true"})
    for name in ("python", "python3"):  # as in nixpkgs' python: links to python3.X
        (folder / "bin" / name).unlink(missing_ok=True)
        (folder / "bin" / name).symlink_to(PYTHON_X_Y)
    return executable


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
    shell = shutil.which("bash")  # stdenv's bash, on PATH: the sandbox has no /bin/bash
    wrapper.write_text(
        f"#! {shell} -e\n"
        f"PATH={interpreter.parent}${{PATH:+':'$PATH}}\nexport PATH\n"
        "export PYTHONNOUSERSITE='true'\n"
        f'exec -a "$0" "{wrapped}"  "$@"\n'
    )
    for path in (wrapped, wrapper):
        path.chmod(0o755)
    return wrapper


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without anything that would tell Python where packages are."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


#: what stair-stepper needs at run time (pyproject.toml's dependencies)
RUNTIME = ["quart", "hypercorn", "pyyaml", "aiohttp", "psutil"]
#: the flake's devPython: the runtime and what the tests need
DEV_PYTHON = [*RUNTIME, "matplotlib", "pytest", "pytest-xdist", "gunicorn", "uvicorn"]


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
        # The environment is $out itself, as wrapper.nix's buildEnv is: $out/bin/python works
        # from anywhere. The bare interpreter it wraps lives in $out/store (one derivation).
        store = args.out / "store"
        store.mkdir(parents=True)
        packages = [d.parent.parent.parent for d in args.site_dir]
        with_packages(args.out, packages, store)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
