"""mimalloc (Debian's libmimalloc2.0, or libmimalloc3 from Debian 13), preloaded.

Settings: ``MIMALLOC_*``, the names this mimalloc prints with ``MIMALLOC_VERBOSE=1`` (or a
legacy name it warns about); read back through ``mi_option_get`` at the index of that printed
list (the options are printed in enum order at start-up, src/options.c
``_mi_options_init``). Inside the process: ``mi_process_info`` (committed bytes; mimalloc keeps
no cheap count of live bytes) and ``mi_collect(true)``.
"""

from __future__ import annotations

import ctypes
import re
from ctypes import POINTER, byref, c_int, c_size_t

from stair_stepper.allocators import native
from stair_stepper.allocators.base import Allocator, Variant

_OPTION = r"mimalloc: option '([a-z_0-9]+)'"


def option_indexes(stderr: str) -> dict[str, int]:
    """option name -> its index in mi_option_t, from a verbose mimalloc's list."""
    names = re.findall(_OPTION, stderr)
    return {name: i for i, name in enumerate(dict.fromkeys(names))}


class Mimalloc(Allocator):
    name = "mimalloc"
    env_var = "STAIR_STEPPER_MIMALLOC"
    sonames = ("libmimalloc.so.2", "libmimalloc.so.3", "libmimalloc.so")
    packages = ("libmimalloc2.0", "libmimalloc3")
    maps_prefix = "libmimalloc"
    settings_words = "MIMALLOC_*"
    variants = {"mimalloc": {}}

    def reads(self, key: str) -> bool:
        return key.startswith("MIMALLOC_")

    def trial_env(self, var: Variant) -> dict[str, str]:
        if any(k.startswith("MIMALLOC_") for k in var.env):
            return {"MIMALLOC_VERBOSE": "1"}  # it then prints every option as it took it
        return {}

    def check(self, var: Variant, trial: dict | None) -> str | None:
        trial = trial or {}
        stderr = trial.get("stderr") or ""
        names = set(re.findall(_OPTION, stderr))
        legacy = set(
            re.findall(r'environment option "mimalloc_([a-z_0-9]+)" is deprecated', stderr)
        )
        for key in (k for k in var.env if k.startswith("MIMALLOC_")):
            option = key.removeprefix("MIMALLOC_").lower()
            if option not in names | legacy and names:
                return f"{key} is not an option of this mimalloc ({trial.get('version')})."
        invalid = re.findall(r"environment option (mimalloc_\S+) has an invalid value", stderr)
        if invalid:
            return f"mimalloc refused the value of {invalid[0].upper()}."
        return None

    def child_spec(self, var: Variant, trial: dict | None) -> dict:
        """The settings, the index of each option and the value the library took in the trial
        (the same library, the same environment)."""
        spec = super().child_spec(var, trial)
        stderr = (trial or {}).get("stderr") or ""
        spec["indexes"] = option_indexes(stderr)
        spec["expected"] = {
            name: int(value) for name, value in re.findall(_OPTION + r": (-?\d+)", stderr)
        }
        legacy = re.findall(
            r'"mimalloc_([a-z_0-9]+)" is deprecated -- use "mimalloc_([a-z_0-9]+)"', stderr
        )
        for old, new in legacy:  # a legacy name reads back as the option it stands for
            spec["indexes"][old] = spec["indexes"].get(new)
            spec["expected"][old] = spec["expected"].get(new)
        return spec

    # --- inside the served process -----------------------------------------------------------

    def accounting(self) -> dict:
        fn = native.global_symbols().mi_process_info
        values = [c_size_t() for _ in range(8)]
        fn.argtypes = [POINTER(c_size_t)] * 8
        fn(*[byref(v) for v in values])
        names = (
            "elapsed_ms",
            "user_ms",
            "system_ms",
            "current_rss",
            "peak_rss",
            "current_commit",
            "peak_commit",
            "page_faults",
        )
        info = dict(zip(names, (v.value for v in values), strict=True))
        return {
            "live_bytes": None,  # mimalloc keeps no cheap count of live bytes
            "held_bytes": info["current_commit"],
            "details": {
                "committed_bytes": info["current_commit"],
                "peak_committed_bytes": info["peak_commit"],
            },
        }

    def trim(self) -> dict:
        fn = native.global_symbols().mi_collect
        fn.argtypes = [ctypes.c_bool]
        fn(True)
        return {"call": "mi_collect(true)", "returned_memory": None}

    def version(self) -> str:
        fn = native.global_symbols().mi_version
        fn.restype = c_int
        v = fn()
        return f"{v // 100}.{(v % 100) // 10}.{v % 10}"

    def read_back(self, spec: dict) -> dict:
        fn = native.global_symbols().mi_option_get
        fn.argtypes, fn.restype = [c_int], ctypes.c_long
        env, indexes = spec.get("env") or {}, spec.get("indexes") or {}
        expected = spec.get("expected") or {}
        values = {}
        for key in (k for k in env if k.startswith("MIMALLOC_")):
            option = key.removeprefix("MIMALLOC_").lower()
            entry = {"given": env[key], "read": None, "how": "not read back: no index for it"}
            if indexes.get(option) is not None:
                read = fn(indexes[option])
                entry.update(read=read, same=read == expected.get(option), how="mi_option_get")
            values[key] = entry
        return values
