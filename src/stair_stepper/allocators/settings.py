"""Allocator settings as variants: written, checked before anything starts, and read back.

A variant is ``NAME=ALLOCATOR VAR=VALUE …`` (``--variant``; the assignments read like
``env``), or an entry of a variants file, or one value of a sweep. Only settings the
allocator itself reads are accepted, each checked against *this machine's* library:

- glibc: its malloc variables (``MALLOC_ARENA_MAX`` …, the aliases glibc's
  ``elf/dl-tunables.list`` gives its malloc tunables) and ``GLIBC_TUNABLES``, every name in
  it one that ``ld.so --list-tunables`` lists here; read back as ``ld.so --list-tunables``
  reports them under the variant's environment (a value glibc refuses, outside a tunable's
  range, stays the default there);
- jemalloc: ``MALLOC_CONF``, tried in a process preloaded with this jemalloc: its
  "Invalid conf pair/value" on stderr refuses the variant; read back in the measured
  process through ``mallctl("opt.<name>")`` (the types jemalloc's manual gives);
- mimalloc: ``MIMALLOC_*``: the names this mimalloc prints with ``MIMALLOC_VERBOSE=1`` (or
  a legacy name it warns about); read back through ``mi_option_get`` at the index of that
  printed list;
- gperftools' tcmalloc: the ``TCMALLOC_*`` variables its source reads (2.10); four of them
  are read back through ``MallocExtension``;
- ``PYTHONMALLOC``: the allocators this interpreter has (``mimalloc`` only from CPython 3.13,
  built with it); read back as whether pymalloc holds blocks (``sys.getallocatedblocks``).

A maintenance strategy is a lowercase key: ``trim_every=S`` (the endpoints middleware asks
the allocator to trim every S seconds), ``workers=N`` and ``max_requests=M`` (Hypercorn's
own: each worker restarts after M requests). Anything else is one sentence and exit 2.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from stair_stepper.allocators import ALLOCATORS, GLIBC_ALIASES, VARIANTS, Variant, reads
from stair_stepper.errors import UserError

#: a variant's name becomes file names: letters, digits and . _ + -, at most 64
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
NAME_RULE = "letters, digits, '.', '_', '+' and '-' (at most 64, not starting with a sign)"

PYTHONMALLOC_VALUES = ("pymalloc", "malloc", "debug", "pymalloc_debug", "malloc_debug")
STRATEGY_KEYS = ("trim_every", "workers", "max_requests")
#: the variables each allocator reads (glibc also GLIBC_TUNABLES); PYTHONMALLOC for every one
READS = {
    "glibc": "MALLOC_ARENA_MAX, MALLOC_TRIM_THRESHOLD_ … and GLIBC_TUNABLES",
    "jemalloc": "MALLOC_CONF",
    "mimalloc": "MIMALLOC_*",
    "tcmalloc": "TCMALLOC_*",
}


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
    check = positive_float if key == "trim_every" else positive_int
    return check(f"variant {name}: {key}", value)


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


def check(var: Variant, probe: dict | None = None) -> None:
    """Every setting of ``var`` is one its allocator reads and takes here (one sentence if not).
    ``probe``: what a process preloaded with the variant said (allocator_trials), for the
    checks that need the library itself."""
    what = READS[var.allocator.name]
    for key, value in var.env.items():
        if key == "PYTHONMALLOC":
            _check_pythonmalloc(var.name, value)
        elif key == "LD_PRELOAD":
            raise UserError(
                f"variant {var.name}: LD_PRELOAD is the variant's allocator's library; name the "
                "allocator instead."
            )
        elif not reads(var.allocator.name, key):
            raise UserError(
                f"variant {var.name}: {key} is not a setting {var.allocator.name} reads (it reads "
                f"{what}, and PYTHONMALLOC); your application's own settings reach the server "
                "through the environment."
            )
    if var.allocator.name == "glibc":
        _check_glibc(var)
    elif probe is not None:
        problem = _probe_problem(var, probe)
        if problem:
            raise UserError(f"variant {var.name}: {problem}")


def _check_pythonmalloc(name: str, value: str) -> None:
    if value in ("mimalloc", "mimalloc_debug"):
        import sysconfig

        if sys.version_info < (3, 13) or not sysconfig.get_config_var("WITH_MIMALLOC"):
            raise UserError(
                f"variant {name}: PYTHONMALLOC={value} needs CPython 3.13 or later built with "
                f"mimalloc; this is CPython {sys.version.split()[0]}, which has no mimalloc."
            )
    elif value not in PYTHONMALLOC_VALUES:
        raise UserError(
            f"variant {name}: PYTHONMALLOC={value} is not one of this Python's allocators "
            f"({', '.join(PYTHONMALLOC_VALUES)})."
        )


def loader() -> str:
    """The dynamic linker this interpreter runs under (for ``--list-tunables``)."""
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            path = line.split(maxsplit=5)[-1].strip()
            if "/ld-linux" in path or "/ld-musl" in path:
                return path
    return "/lib64/ld-linux-x86-64.so.2"


def tunables(env: dict[str, str]) -> dict[str, tuple[str, str, str]]:
    """``ld.so --list-tunables`` under ``env``: tunable -> (value as glibc took it, min, max)."""
    done = subprocess.run([loader(), "--list-tunables"], env=env, capture_output=True, text=True)
    found = {}
    for line in done.stdout.splitlines():
        row = re.match(r"(\S+): (\S+) \(min: (\S+), max: (\S+)\)", line)
        if row:
            found[row.group(1)] = (row.group(2), row.group(3), row.group(4))
    return found


def glibc_read_back(var: Variant) -> dict:
    """The glibc variant's tunables as ``ld.so --list-tunables`` reports them under its
    environment (glibc has no call that tells a running process its tunables)."""
    given = glibc_given(var)
    taken = tunables({k: v for k, v in var.env.items() if k != "PYTHONMALLOC"}) if given else {}
    return {
        "values": {
            t: {
                "given": v,
                "read": taken.get(t, (None,))[0],
                "same": same_number(taken.get(t, ("",))[0], v),
                "how": "ld.so --list-tunables under the variant's environment",
            }
            for t, v in given.items()
        }
    }


def glibc_given(var: Variant) -> dict[str, str]:
    """The tunables a glibc variant sets: its aliases and GLIBC_TUNABLES' malloc entries."""
    given = {GLIBC_ALIASES[k]: v for k, v in var.env.items() if k in GLIBC_ALIASES}
    for entry in filter(None, var.env.get("GLIBC_TUNABLES", "").split(":")):
        key, sep, value = entry.partition("=")
        if not sep:
            raise UserError(
                f"variant {var.name}: GLIBC_TUNABLES entry {entry!r} is not name=value."
            )
        given[key] = value
    return given


def _check_glibc(var: Variant) -> None:
    given = glibc_given(var)
    if not given:
        return
    taken = tunables({k: v for k, v in var.env.items() if k != "PYTHONMALLOC"})
    for tunable, value in given.items():
        if tunable not in taken:
            raise UserError(
                f"variant {var.name}: {tunable} is not a tunable of this glibc (ld.so "
                "--list-tunables lists them)."
            )
        read, low, high = taken[tunable]
        try:
            inside = int(low, 0) <= int(value, 0) <= int(high, 0)
        except ValueError:
            inside = False
        if not inside or not same_number(read, value):
            alias = [k for k, t in GLIBC_ALIASES.items() if t == tunable and k in var.env]
            written = f"{alias[0]}={value} ({tunable})" if alias else f"{tunable}={value}"
            raise UserError(
                f"variant {var.name}: glibc does not take {written}: it takes {low} to {high}, "
                f"and would run with {read}."
            )


def same_number(a: str, b: str) -> bool:
    try:
        return int(str(a), 0) == int(str(b), 0)
    except ValueError:
        return str(a) == str(b)


def checked(var: Variant, python_malloc: str = "pymalloc") -> dict | None:
    """``check`` with the allocator itself: a process preloaded with the variant is asked
    first (not for glibc, whose tunables ld.so lists). Returns what that process said, for
    the read-back (``for_child``)."""
    from stair_stepper.allocators.trials import probe_variant

    probe = None
    if var.env and var.allocator.name != "glibc":
        probe = probe_variant(var, python_malloc, for_child(var))
        if probe["problem"]:
            raise UserError(f"variant {var.name}: {probe['problem']}")
    check(var, probe)
    if probe and probe.get("read_back"):  # the library took each setting as given?
        wrong = verify(var, probe["read_back"])
        if wrong:
            raise UserError(f"variant {var.name}: the allocator does not take {'; '.join(wrong)}.")
    return probe


def _probe_problem(var: Variant, probe: dict) -> str | None:
    """What the allocator said about the variant's settings in a probe process."""
    stderr = probe.get("stderr") or ""
    if var.allocator.name == "jemalloc":
        bad = list(dict.fromkeys(re.findall(JEMALLOC_REFUSED, stderr)))
        if bad:
            return f"jemalloc refused MALLOC_CONF: {'; '.join(bad)}."
    if var.allocator.name == "mimalloc":
        names = set(re.findall(r"mimalloc: option '([a-z_0-9]+)'", stderr))
        legacy = set(
            re.findall(r'environment option "mimalloc_([a-z_0-9]+)" is deprecated', stderr)
        )
        for key in (k for k in var.env if k.startswith("MIMALLOC_")):
            option = key.removeprefix("MIMALLOC_").lower()
            if option not in names | legacy and names:
                return f"{key} is not an option of this mimalloc ({probe.get('version')})."
        invalid = re.findall(r"environment option (mimalloc_\S+) has an invalid value", stderr)
        if invalid:
            return f"mimalloc refused the value of {invalid[0].upper()}."
    return None


def mimalloc_indexes(stderr: str) -> dict[str, int]:
    """option name -> its index in mi_option_t, from a verbose mimalloc's list (printed in
    enum order at start-up, src/options.c ``_mi_options_init``), legacy names too."""
    names = re.findall(r"mimalloc: option '([a-z_0-9]+)'", stderr)
    return {name: i for i, name in enumerate(dict.fromkeys(names))}


# --- read back, and compared --------------------------------------------------------------

ENV_SETTINGS = "STAIR_STEPPER_SETTINGS"  # the served process reads back what this names
#: what jemalloc prints when it does not take a MALLOC_CONF pair (src/jemalloc.c, conf parsing)
JEMALLOC_REFUSED = r"<jemalloc>: ((?:Invalid conf (?:pair|value)|Out-of-range conf value): \S+)"


def verify(var: Variant, read_back: dict, log: str = "", python_malloc: str = "") -> list[str]:
    """Settings that did not take: a read-back value that differs, or the allocator's own
    complaint in the server's output. Each item names the setting. ``python_malloc``: the
    run's PYTHONMALLOC (a variant's own wins)."""
    problems = []
    for key, value in (read_back.get("values") or {}).items():
        if value.get("read") is not None and not value.get("same", True):
            problems.append(f"{key}={value['given']} (the process runs with {value['read']})")
    for said in dict.fromkeys(re.findall(JEMALLOC_REFUSED, log)):
        problems.append(f"MALLOC_CONF ({said})")
    wanted = var.env.get("PYTHONMALLOC") or python_malloc
    if wanted and read_back.get("pymalloc") is not None:
        wants_pymalloc = wanted in ("pymalloc", "debug", "pymalloc_debug")
        if read_back["pymalloc"] != wants_pymalloc:
            problems.append(f"PYTHONMALLOC={wanted} (pymalloc in use: {read_back['pymalloc']})")
    return problems


def describe(var: Variant) -> str:
    """The variant's settings exactly as given (titles, legends, tables)."""
    words = [f"{k}={v}" for k, v in var.env.items()]
    words += [f"{k}={v}" for k, v in var.strategy_text.items()]
    return f"{var.allocator.name} " + " ".join(words) if words else var.allocator.name


def proof(
    var: Variant, health: dict, log: str, foreign: bool, python_malloc: str = ""
) -> tuple[dict, list[str]]:
    """meta.json's record of a started variant's settings, and what did not take: given as
    written, read back in the measured process (or, for glibc, as ld.so lists them under
    its environment; for a foreign --command, only what its environment holds)."""
    entry: dict = {
        "spec": var.spec,
        "described": describe(var),
        "allocator": var.allocator.name,
        "given": dict(var.env),
        "strategy": var.strategy_text,
    }
    if foreign:
        read_back = proven_from_outside(health.get("pid") or 0, var)
    elif var.allocator.name == "glibc":
        read_back = {
            **glibc_read_back(var),
            **{k: v for k, v in (health.get("settings") or {}).items() if k != "values"},
        }
    else:
        read_back = health.get("settings") or {"values": {}}
    entry["read_back"] = read_back
    if not foreign:
        entry["python_malloc"] = var.env.get("PYTHONMALLOC") or python_malloc
    return entry, verify(var, read_back, log, "" if foreign else python_malloc)


def proven_from_outside(pid: int, var: Variant) -> dict:
    """For a --command server that is not ours: which settings its environment really holds
    (/proc/<pid>/environ); none is proven applied, the allocator cannot be asked."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        raw = []
    environ = dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)
    return {
        "in_environment": {k: environ.get(k) == v for k, v in var.env.items()},
        "applied": "not proven: a foreign process cannot be asked what its allocator runs with",
    }


def for_child(var: Variant, probe: dict | None = None) -> dict[str, str]:
    """What the served process needs to read its settings back (``probes.read_back``): the
    settings, and for mimalloc the index of each option and the value the library took in
    the probe (the same library, the same environment)."""
    import json

    spec: dict = {"allocator": var.allocator.name, "env": var.env}
    if var.allocator.name == "mimalloc" and probe:
        stderr = probe.get("stderr") or ""
        spec["indexes"] = mimalloc_indexes(stderr)
        spec["expected"] = {
            name: int(value)
            for name, value in re.findall(r"mimalloc: option '([a-z_0-9]+)': (-?\d+)", stderr)
        }
        legacy = re.findall(
            r'"mimalloc_([a-z_0-9]+)" is deprecated -- use "mimalloc_([a-z_0-9]+)"', stderr
        )
        for old, new in legacy:  # a legacy name reads back as the option it stands for
            spec["indexes"][old] = spec["indexes"].get(new)
            spec["expected"][old] = spec["expected"].get(new)
    return {ENV_SETTINGS: json.dumps(spec)}
