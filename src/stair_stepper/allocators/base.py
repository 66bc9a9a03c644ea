"""The interface every allocator module implements, the registry it joins, and what a variant is.

An *allocator* is a malloc implementation: glibc's own, or a library put in front of it with
``LD_PRELOAD``. Each lives in a module of its own in this package, as one subclass of
``Allocator`` that says everything the lab knows of it, in three groups:

- **finding it** (outside the served process): its table entry (name, the variable that names
  its library file, the file names to look for, the Debian packages that ship it, the prefix
  that marks it in ``/proc/<pid>/maps``) and its built-in variants;
- **its settings**: which environment variables it reads, the check of a variant's settings
  against this machine's library (``check``, given what a preloaded trial process said), and
  what the served process needs to read them back (``child_spec``);
- **inside the served process** (through ctypes, only when asked): its accounting (live and held
  bytes), its structure (arenas, pages waiting), a trim, its version, the settings read back,
  and after a fork what the child lost (``after_fork``);
- **for the analysis**: the kinds of free space its structure names (``free_kinds``), which of
  them a timer gives back (``timed_kinds``), and how long a pause must last before RSS
  stillness may end it (``least_pause_s``).

A subclass registers itself when its module is imported (``__init_subclass__``): the registry
is the import line in ``allocators/__init__.py``. A method an allocator cannot answer returns
None or an empty answer, never an invented number.
"""

from __future__ import annotations

from collections import namedtuple

#: every allocator, in the order their modules were imported: name -> the one instance
REGISTRY: dict[str, Allocator] = {}
#: the variable that carries a variant's settings to the served process, which reads them back
ENV_SETTINGS = "STAIR_STEPPER_SETTINGS"


class Allocator:
    """One malloc implementation (subclass it in a module of its own)."""

    name: str = ""
    #: the variable that names its library file (the Nix flake sets it); None: glibc's own
    env_var: str | None = None
    #: file names to look for in the usual library folders, best first
    sonames: tuple[str, ...] = ()
    #: the Debian packages that ship it, alternatives best first (Debian renames them)
    packages: tuple[str, ...] = ()
    #: the basename prefix that marks it in /proc/<pid>/maps
    maps_prefix: str = ""
    #: what it reads, in words, for the one sentence that refuses a setting
    settings_words: str = "nothing"
    #: its built-in variants: name -> the environment they add
    variants: dict[str, dict[str, str]] = {}
    #: the kinds of free space its structure's totals name (column -> words)
    free_kinds: dict[str, str] = {}
    #: of those, the kinds a timer or a background thread gives back
    timed_kinds: tuple[str, ...] = ()
    #: the totals its structure gives (bytes; the structure CSV's columns): the free kinds and
    #: what else it tells
    structure_columns: tuple[str, ...] = ()
    #: the columns of each of its arenas (beside the arena's number)
    arena_columns: tuple[str, ...] = ()
    #: how an arena's held bytes (``system_bytes``) split, for the arenas figure: (column, words)
    arena_parts: tuple[tuple[str, str], ...] = ()
    #: what it can turn back on in a forked child (a variant's ``post_fork=``), and the lines a
    #: team adds to its server's post-fork hook to do the same (``remedy_code``)
    post_fork_remedies: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            REGISTRY[cls.name] = cls()

    @property
    def preloaded(self) -> bool:
        return self.env_var is not None

    @property
    def package(self) -> str:
        """The package to name in a sentence: the first of the alternatives."""
        return self.packages[0] if self.packages else ""

    def __repr__(self) -> str:
        return f"<allocator {self.name}>"

    # --- its settings, outside the served process ------------------------------------------

    def reads(self, key: str) -> bool:
        """Does it read the environment variable ``key``?"""
        return False

    def trial_env(self, var: Variant) -> dict[str, str]:
        """More environment for the trial process that checks ``var`` (e.g. a verbose mode)."""
        return {}

    def check(self, var: Variant, trial: dict | None) -> str | None:
        """What is wrong with ``var``'s settings here, in words (None: nothing). ``trial`` is
        what a process preloaded with the variant said (``trials.probe_variant``), or None for
        an allocator that needs no such process."""
        return None

    def needs_trial(self, var: Variant) -> bool:
        """Must a process preloaded with the variant be asked before it runs?"""
        return bool(var.env)

    def child_spec(self, var: Variant, trial: dict | None) -> dict:
        """What the served process needs to read ``var``'s settings back (JSON)."""
        return {"allocator": self.name, "env": dict(var.env)}

    def complaints(self, log: str) -> list[str]:
        """What it said in a process's output about settings it did not take."""
        return []

    def version_in_output(self, stderr: str) -> str | None:
        """Its version from what a trial process printed, for one that has no version call."""
        return None

    def read_back_outside(self, var: Variant) -> dict | None:
        """Settings this allocator cannot be asked about in the process, read from outside
        ({"values": …}); None: read back in the process."""
        return None

    # --- inside the served process -----------------------------------------------------------

    def accounting(self) -> dict:
        """{"live_bytes", "held_bytes", "details"}: what it counts as allocated and holds."""
        return {"live_bytes": None, "held_bytes": None, "details": {}}

    def structure(self) -> dict:
        """{"totals": {column: bytes}, "arenas": [{…}], …}: where its free space sits."""
        return {"totals": {}, "arenas": []}

    def trim(self) -> dict:
        """Ask it to give free memory back: {"call", "returned_memory"}."""
        return {"call": None, "returned_memory": None}

    def version(self) -> str | None:
        return None

    def read_back(self, spec: dict) -> dict:
        """Each setting of ``spec`` as the running allocator has it: name -> {"given", "read",
        "same", "how"}."""
        return {}

    def effective(self) -> dict:
        """What it runs with now, given or not, where that decides a result (decay times,
        background threads)."""
        return {}

    def after_fork(self, remedy: bool) -> dict:
        """In a forked child: what fork turned off here and, with ``remedy``, turned back on."""
        return {}

    # --- for the analysis and the pauses ----------------------------------------------------

    def findings(self, effective: dict) -> list[tuple[str, str]]:
        """What a process runs with that its settings did not ask for, from ``effective`` as
        read back there: (what, why) each, e.g. a feature fork turned off."""
        return []

    def remedy_code(self, remedy: str) -> str:
        """Python a server's post-fork hook runs to apply ``remedy`` in each worker."""
        return ""

    def planned_pause_s(self, env: dict[str, str]) -> float:
        """``least_pause_s`` as the plan expects it from the settings given (before any
        process can be asked)."""
        return self.least_pause_s({})

    def least_pause_s(self, read_back: dict) -> float:
        """How long, after a burst, it may keep free memory on purpose before giving it back (a
        decay time), from its settings as read back: a pause shorter than this ends on RSS
        stillness before the allocator could have returned anything."""
        return 0.0


class Variant(namedtuple("Variant", "name allocator env strategy spec")):
    """An allocator plus its settings: ``env``, what goes into the server's environment
    (checked by its allocator), and ``strategy``, what the lab does around it (``trim_every``
    seconds, ``workers``, ``max_requests``); ``spec`` is how it was written. (A named tuple,
    not a dataclass: the served process imports this, and dataclasses cost it 5 ms a start.)"""

    __slots__ = ()

    def __new__(cls, name, allocator, env=None, strategy=None, spec=None):
        env, strategy = dict(env or {}), dict(strategy or {})
        if spec is None:
            words = [f"{k}={v}" for k, v in {**env, **strategy}.items()]
            spec = " ".join([f"{name}={allocator.name}", *words])
        return super().__new__(cls, name, allocator, env, strategy, spec)

    @property
    def builtin(self) -> bool:
        """One of the allocators' own variants, exactly as they define it."""
        return self.allocator.variants.get(self.name) == self.env and not self.strategy

    @property
    def strategy_text(self) -> dict[str, str]:
        def text(key, value) -> str:
            if key == "limit":  # bytes, shown as given in binary units
                return f"{value / (1 << 20):g}M"
            return f"{value:g}" if isinstance(value, float) else str(value)

        return {k: text(k, v) for k, v in self.strategy.items()}
