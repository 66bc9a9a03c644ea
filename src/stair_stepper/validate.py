"""Every number a user can give us (flags, environment, ``--bind``'s port, ``--size``'s bytes),
checked in one place.

Each check takes the flag's name and its text and returns the value or raises
UserError with one sentence; ``flag(check)`` turns a check into an argparse
``type`` so the parser reports the same sentence.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from stair_stepper.errors import UserError


def non_negative_int(name: str, text: str) -> int:
    """A whole number >= 0 (digits only: no sign, no point)."""
    stripped = str(text).strip()
    if not (stripped.isascii() and stripped.isdigit()):
        raise UserError(f"{name} must be a non-negative integer, got {str(text)!r}.")
    return int(stripped)


def positive_int(name: str, text: str) -> int:
    """A whole number >= 1."""
    stripped = str(text).strip()
    if not (stripped.isascii() and stripped.isdigit()) or int(stripped) < 1:
        raise UserError(f"{name} must be a whole number of at least 1, got {str(text)!r}.")
    return int(stripped)


def port(name: str, text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    value = non_negative_int(name, text)
    if value > 65535:
        raise UserError(f"{name} must be a port number from 0 to 65535, got {str(text)!r}.")
    return value


def _finite(name: str, text: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UserError(f"{name} must be a number, got {str(text)!r}.")
    return value


def non_negative_float(name: str, text: str) -> float:
    value = _finite(name, text)
    if value < 0:
        raise UserError(f"{name} must not be negative, got {str(text)!r}.")
    return value


def positive_float(name: str, text: str) -> float:
    value = _finite(name, text)
    if value <= 0:
        raise UserError(f"{name} must be greater than 0, got {str(text)!r}.")
    return value


def seconds_or_auto(name: str, text: str) -> float | str:
    """``auto`` or a number of seconds >= 0."""
    if str(text).strip().lower() == "auto":
        return "auto"
    return non_negative_float(name, text)


def byte_size(name: str, text: str, least: int = 1000) -> int:
    """A number of bytes with an optional k/kb/m/mb suffix (powers of 1000), at least ``least``."""
    raw, multiplier = str(text).strip().lower(), 1
    for suffix, factor in (("kb", 1000), ("mb", 1_000_000), ("k", 1000), ("m", 1_000_000)):
        if raw.endswith(suffix):
            raw, multiplier = raw[: -len(suffix)], factor
            break
    value = _finite(name, raw) * multiplier
    if value < least:
        raise UserError(f"{name} must be at least {least} bytes, got {str(text)!r}.")
    return int(value)


def flag(check: Callable[[str, str], object]) -> Callable[[str], object]:
    """An argparse ``type`` that reports ``check``'s sentence (argparse names the flag)."""

    def convert(text: str) -> object:
        try:
            return check("the value", text)
        except UserError as exc:
            raise argparse.ArgumentTypeError(
                str(exc).removeprefix("the value ").rstrip(".")
            ) from None

    convert.__name__ = check.__name__.replace("_", " ")
    return convert


def memory_size(name: str, text: str) -> int:
    """``768M``, ``1G``, ``512Mi``, ``1.5GiB``, or bytes: bytes, in binary units, as cgroups
    and Kubernetes' ``Mi``/``Gi`` count."""
    raw = str(text).strip()
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    lowered = raw.lower().removesuffix("ib").removesuffix("i").removesuffix("b")
    number, unit = lowered, ""
    if lowered and lowered[-1] in units:
        number, unit = lowered[:-1], lowered[-1]
    try:
        value = float(number)
    except ValueError:
        raise UserError(f"{name} {raw!r} is not a memory size (e.g. 768M, 1G, 512Mi).") from None
    if not value > 0 or value != value:
        raise UserError(f"{name} must be more than zero, not {raw!r}.")
    return int(value * units[unit])
