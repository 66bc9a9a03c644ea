"""Allocator settings as variants: written, checked before anything starts, and read back.

A variant is ``NAME=ALLOCATOR VAR=VALUE …`` (``--variant``; the assignments read like
``env``), or an entry of a variants file, or one value of a sweep. Only settings the
allocator itself reads are accepted, each checked against *this machine's* library by the
allocator's own module (``check``, given what a process preloaded with the variant said) and
read back in the measured process (``read_back``) or, where the allocator cannot be asked
there, from outside (``read_back_outside``). ``PYTHONMALLOC``: the allocators this
interpreter has (``mimalloc`` only from CPython 3.13, built with it); read back as whether
pymalloc holds blocks (``sys.getallocatedblocks``).

A maintenance strategy is a lowercase key: ``trim_every=S`` (the endpoints middleware asks
the allocator to trim every S seconds), ``workers=N`` and ``max_requests=M`` (Hypercorn's
own: each worker restarts after M requests). Anything else is one sentence and exit 2.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from stair_stepper.allocators import ALLOCATORS, ENV_SETTINGS, VARIANTS, Variant
from stair_stepper.errors import UserError

#: a variant's name becomes file names: letters, digits and . _ + -, at most 64
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
NAME_RULE = "letters, digits, '.', '_', '+' and '-' (at most 64, not starting with a sign)"

PYTHONMALLOC_VALUES = (
    "pymalloc",
    "malloc",
    "debug",
    "pymalloc_debug",
    "malloc_debug",
    "mimalloc",
    "mimalloc_debug",
)
#: a variant's lowercase keys: what the lab does around it (maintenance: trim_every, workers,
#: max_requests) and under which interpreter its server runs (python=PATH)
STRATEGY_KEYS = ("trim_every", "workers", "max_requests", "python", "post_fork", "limit")


def parse(spec: str) -> Variant:
    """``NAME=ALLOCATOR VAR=VALUE … key=value …``: one sentence for anything malformed."""
    try:
        words = shlex.split(spec)
    except ValueError as exc:
        raise UserError(f"--variant {spec!r} cannot be split into words: {exc}.") from None
    if not words or "=" not in words[0]:
        raise UserError(f"--variant wants 'NAME=ALLOCATOR VAR=VALUE …', got {spec!r}.")
    name, _, allocator = words[0].partition("=")
    env, strategy = {}, {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise UserError(f"--variant {name}: {word!r} is not VAR=VALUE.")
        (strategy if key.islower() else env)[key] = value
    return make(name, allocator, env, strategy, spec)


def make(name: str, allocator: str, env: dict, strategy: dict, spec: str | None = None) -> Variant:
    check_name(name)
    if allocator not in ALLOCATORS:
        raise UserError(
            f"variant {name}: unknown allocator {allocator!r}; choose one of: "
            f"{', '.join(ALLOCATORS)}."
        )
    checked = {key: _strategy(name, key, value) for key, value in strategy.items()}
    remedies = ALLOCATORS[allocator].post_fork_remedies
    if "post_fork" in checked and checked["post_fork"] not in remedies:
        given = checked["post_fork"]
        raise UserError(
            f"variant {name}: post_fork={given} is not something {allocator} turns back on "
            f"after fork (it knows: {', '.join(remedies)})."
            if remedies
            else f"variant {name}: post_fork={given}: fork turns nothing of {allocator}'s off "
            "in a child, so there is nothing to turn back on."
        )
    env = {str(k): str(v) for k, v in env.items()}
    if spec is None:
        words = [f"{k}={v}" for k, v in {**env, **strategy}.items()]
        spec = " ".join([f"{name}={allocator}", *map(shlex.quote, words)])
    return Variant(name, ALLOCATORS[allocator], env, checked, spec)


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise UserError(
            f"variant name {name!r} is not allowed: it becomes file names ({NAME_RULE})."
        )


def _strategy(name: str, key: str, value: str):
    from stair_stepper.validate import positive_float, positive_int

    if key not in STRATEGY_KEYS:
        raise UserError(
            f"variant {name}: {key!r} is not a maintenance strategy ({', '.join(STRATEGY_KEYS)})."
        )
    if key == "python":
        interpreter(value, name)  # there, and a Python: one sentence if not
        return value
    if key == "post_fork":
        return value
    if key == "limit":  # this variant's memory cgroup limit, in bytes
        from stair_stepper.validate import memory_size

        return memory_size(f"variant {name}: limit", value)
    check = positive_float if key == "trim_every" else positive_int
    return check(f"variant {name}: {key}", value)


_FACTS = (
    "import importlib.util, json, platform, sys, sysconfig\n"
    "print(json.dumps({'version': platform.python_version(), "
    "'implementation': platform.python_implementation(), "
    "'missing': [m for m in ('stair_stepper', 'hypercorn') if not importlib.util.find_spec(m)], "
    "'mimalloc': sys.version_info >= (3, 13) and bool(sysconfig.get_config_var('WITH_MIMALLOC'))}))"
)
_INTERPRETERS: dict[str, dict] = {}


def interpreter(path: str | None, name: str = "") -> dict:
    """What a variant's interpreter is (``python=PATH``; None: the lab's own): its version,
    implementation, and whether it has mimalloc for PYTHONMALLOC. Asked once per path; a
    process already running under it answers for itself (PATH may be a wrapper that does not
    exist in its own file system)."""
    from stair_stepper.selfexec import running_under

    if not path or path == sys.executable or running_under(path):  # this one
        import platform
        import sysconfig

        return {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "mimalloc": sys.version_info >= (3, 13)
            and bool(sysconfig.get_config_var("WITH_MIMALLOC")),
            "path": sys.executable,
        }
    if path in _INTERPRETERS:
        return _INTERPRETERS[path]
    import json
    import os
    import subprocess

    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise UserError(f"variant {name}: python={path} is not an executable file.")
    try:
        done = subprocess.run([path, "-c", _FACTS], capture_output=True, text=True, timeout=60)
        facts = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        raise UserError(f"variant {name}: python={path} did not answer as a Python.") from None
    if facts["missing"]:
        raise UserError(
            f"variant {name}: python={path} (Python {facts['version']}) cannot import "
            f"{' and '.join(facts['missing'])}: its server runs there, so install stair-stepper "
            f"in that interpreter's environment ({path} -m pip install <this checkout>)."
        )
    _INTERPRETERS[path] = {**facts, "path": path}
    return _INTERPRETERS[path]


def resolve(name_or_spec: str) -> Variant:
    """A built-in variant by name, or one written out (``NAME=ALLOCATOR VAR=VALUE …``)."""
    if "=" in name_or_spec:
        return parse(name_or_spec)
    if name_or_spec not in VARIANTS:
        raise UserError(
            f"unknown allocator {name_or_spec!r}; choose one of: {', '.join(VARIANTS)}, or write "
            "a variant as 'NAME=ALLOCATOR VAR=VALUE …'."
        )
    return VARIANTS[name_or_spec]


def load_file(path: str) -> list[Variant]:
    """A variants file (YAML): a mapping NAME -> "ALLOCATOR VAR=VALUE …", or NAME ->
    {allocator: …, env: {VAR: VALUE}, trim_every: …, workers: …, max_requests: …}."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"variants file {path} does not exist.") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read variants file {path}: {exc}.") from None
    if not isinstance(doc, dict) or not doc:
        raise UserError(f"variants file {path} must map variant names to their settings.")
    found = []
    for name, entry in doc.items():
        if isinstance(entry, str):
            found.append(parse(f"{name}={entry}"))
        elif isinstance(entry, dict) and "allocator" in entry:
            strategy = {k: str(v) for k, v in entry.items() if k not in ("allocator", "env")}
            found.append(make(str(name), str(entry["allocator"]), entry.get("env") or {}, strategy))
        else:
            raise UserError(f"variants file {path}: {name} needs an allocator.")
    return found


def expand_sweep(spec: str) -> tuple[list[Variant], dict]:
    """``NAME=ALLOCATOR VAR=V1|V2|V3 [VAR=VALUE …]``: one variant per value of the one
    setting written with ``|`` (values may hold commas, as MALLOC_CONF's do), named
    ``NAME-V`` (the value's characters that a name cannot hold become '-')."""
    try:
        words = shlex.split(spec)
    except ValueError as exc:
        raise UserError(f"--sweep {spec!r} cannot be split into words: {exc}.") from None
    swept = [i for i, w in enumerate(words) if i and "|" in w.partition("=")[2]]
    if not words or "=" not in words[0] or len(swept) != 1:
        raise UserError(
            f"--sweep wants 'NAME=ALLOCATOR VAR=V1|V2|…' (one VAR with |), got {spec!r}."
        )
    name = words[0].partition("=")[0]
    var, _, joined = words[swept[0]].partition("=")
    values = joined.split("|")
    variants = []
    for value in values:
        label = re.sub(r"[^A-Za-z0-9._+-]", "-", value).strip("-") or "empty"
        one = [f"{name}-{label}={words[0].partition('=')[2]}", *words[1:]]
        one[swept[0]] = f"{var}={value}"
        variants.append(parse(shlex.join(one)))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise UserError(f"--sweep {spec!r}: two values give the same variant name.")
    return variants, {"name": name, "var": var, "values": values, "variants": names}


# --- checks before anything starts ---------------------------------------------------------


def check(var: Variant, trial: dict | None = None) -> None:
    """Every setting of ``var`` is one its allocator reads and takes here (one sentence if not).
    ``trial``: what a process preloaded with the variant said (``trials.probe_variant``), for
    the checks that need the library itself."""
    alloc = var.allocator
    for key, value in var.env.items():
        if key == "PYTHONMALLOC":
            _check_pythonmalloc(var.name, value, var.strategy.get("python"))
        elif key == "LD_PRELOAD":
            raise UserError(
                f"variant {var.name}: LD_PRELOAD is the variant's allocator's library; name the "
                "allocator instead."
            )
        elif not alloc.reads(key):
            raise UserError(
                f"variant {var.name}: {key} is not a setting {alloc.name} reads (it reads "
                f"{alloc.settings_words}, and PYTHONMALLOC); your application's own settings "
                "reach the server through the environment."
            )
    problem = alloc.check(var, trial) if (trial is not None or not alloc.needs_trial(var)) else None
    if problem:
        raise UserError(f"variant {var.name}: {problem}")


def _check_pythonmalloc(name: str, value: str, python: str | None = None) -> None:
    """PYTHONMALLOC against the variant's interpreter (the lab's own without python=PATH)."""
    if value in ("mimalloc", "mimalloc_debug"):
        facts = interpreter(python, name)
        if not facts["mimalloc"]:
            raise UserError(
                f"variant {name}: PYTHONMALLOC={value} needs CPython 3.13 or later built with "
                f"mimalloc; this is {facts['implementation']} {facts['version']}, which has no "
                "mimalloc."
            )
    elif value not in PYTHONMALLOC_VALUES:
        raise UserError(
            f"variant {name}: PYTHONMALLOC={value} is not one of this Python's allocators "
            f"({', '.join(PYTHONMALLOC_VALUES)})."
        )


def checked(var: Variant, python_malloc: str = "pymalloc") -> dict | None:
    """``check`` with the allocator itself: a process preloaded with the variant is asked
    first where the allocator needs it. Returns what that process said, for the read-back
    (``for_child``)."""
    from stair_stepper.allocators.trials import probe_variant

    trial = None
    if var.env and var.allocator.needs_trial(var):
        trial = probe_variant(var, python_malloc, for_child(var))
        if trial["problem"]:
            raise UserError(f"variant {var.name}: {trial['problem']}")
    check(var, trial)
    if trial and trial.get("read_back"):  # the library took each setting as given?
        wrong = verify(var, trial["read_back"])
        if wrong:
            raise UserError(f"variant {var.name}: the allocator does not take {'; '.join(wrong)}.")
    return trial


# --- read back, and compared --------------------------------------------------------------


def verify(var: Variant, read_back: dict, log: str = "", python_malloc: str = "") -> list[str]:
    """Settings that did not take: a read-back value that differs, or the allocator's own
    complaint in the server's output. Each item names the setting. ``python_malloc``: the
    run's PYTHONMALLOC (a variant's own wins)."""
    problems = []
    for key, value in (read_back.get("values") or {}).items():
        if value.get("read") is not None and not value.get("same", True):
            problems.append(f"{key}={value['given']} (the process runs with {value['read']})")
    for said in var.allocator.complaints(log):
        problems.append(f"{var.allocator.settings_words} ({said})")
    wanted = var.env.get("PYTHONMALLOC") or python_malloc
    running = read_back.get("python_allocator")
    if wanted and running is not None:
        if python_allocator_of(wanted) != running:
            problems.append(f"PYTHONMALLOC={wanted} (the interpreter runs {running})")
    elif wanted and read_back.get("pymalloc") is not None:  # older read-backs: pymalloc or not
        wants_pymalloc = python_allocator_of(wanted) == "pymalloc"
        if read_back["pymalloc"] != wants_pymalloc:
            problems.append(f"PYTHONMALLOC={wanted} (pymalloc in use: {read_back['pymalloc']})")
    return problems


def python_allocator_of(value: str) -> str:
    """The allocator a PYTHONMALLOC value makes CPython use for its objects ("debug" adds hooks
    to a release build's pymalloc)."""
    return {"debug": "pymalloc", "pymalloc_debug": "pymalloc", "malloc_debug": "malloc"}.get(
        value, value.removesuffix("_debug")
    )


def describe(var: Variant) -> str:
    """The variant's settings exactly as given (titles, legends, tables)."""
    words = [f"{k}={v}" for k, v in var.env.items()]
    words += [f"{k}={v}" for k, v in var.strategy_text.items()]
    return f"{var.allocator.name} " + " ".join(words) if words else var.allocator.name


def for_child(var: Variant, trial: dict | None = None) -> dict[str, str]:
    """What the served process needs to read its settings back (``probe.read_back``), as its
    allocator's module says (``child_spec``)."""
    import json

    return {ENV_SETTINGS: json.dumps(var.allocator.child_spec(var, trial))}
