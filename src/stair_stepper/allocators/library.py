"""Finding an allocator's library, preloading it, and proving which library serves ``malloc``.

From outside a process, ``/proc/<pid>/maps`` shows which allocator libraries it has mapped
(``allocator_in_maps``). Inside it, ``malloc_provider`` finds the library whose code ``malloc``
really runs: that is the proof that a preload took effect, made in every served process
before it serves.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sysconfig
from ctypes import POINTER, c_char_p, c_int, c_size_t, c_uint16, c_void_p
from pathlib import Path

from stair_stepper.allocators.base import REGISTRY, Allocator, Variant
from stair_stepper.errors import UserError

#: CPython's own allocators (PYTHONMALLOC) that every interpreter has; mimalloc from 3.13
PYTHON_MALLOC_MODES = ("pymalloc", "malloc")


def library_dirs() -> list[Path]:
    """The usual Debian/Ubuntu (multiarch) and generic library folders."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"
    dirs = [
        f"/usr/lib/{multiarch}",
        f"/lib/{multiarch}",
        "/usr/local/lib",
        "/usr/lib64",
        "/usr/lib",
    ]
    return [Path(d) for d in dirs]


def find_library(alloc: Allocator, environ: dict[str, str] | None = None) -> Path | None:
    """Path of the allocator's library, or None when it is not installed.

    The per-allocator environment variable wins; a variable that points at a
    missing file is an error of its own (a typo must not silently fall back).
    """
    if not alloc.preloaded:
        return None
    environ = os.environ if environ is None else environ
    configured = environ.get(alloc.env_var or "")
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise UserError(
                f"{alloc.env_var} points at {configured}, which is not a file; "
                f"fix the variable or unset it to use the system {alloc.name}."
            )
        return path
    for folder in library_dirs():
        for soname in alloc.sonames:
            candidate = folder / soname
            if candidate.is_file():
                return candidate
    return None


def require_library(alloc: Allocator, environ: dict[str, str] | None = None) -> Path:
    path = find_library(alloc, environ)
    if path is None:
        packages = " or ".join(alloc.packages)
        raise UserError(
            f"{alloc.name} is not installed here: install the Debian/Ubuntu package "
            f"{packages} (apt-get install {alloc.package}) or set {alloc.env_var} "
            f"to the library file."
        )
    return path


def controlled(key: str) -> bool:
    """A variable a variant controls: inherited values are removed so a label never lies (a
    shell's own MALLOC_ARENA_MAX would otherwise change the 'glibc' baseline unseen)."""
    return key in ("LD_PRELOAD", "PYTHONMALLOC") or any(a.reads(key) for a in REGISTRY.values())


def server_env(
    var: Variant, python_malloc: str = "pymalloc", base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment a server of this variant runs in (raises if the library is missing)."""
    if python_malloc not in PYTHON_MALLOC_MODES:
        raise UserError(f"--python-malloc must be one of {', '.join(PYTHON_MALLOC_MODES)}.")
    env = {k: v for k, v in (os.environ if base is None else base).items() if not controlled(k)}
    if var.allocator.preloaded:
        env["LD_PRELOAD"] = str(require_library(var.allocator, env))
    if python_malloc == "malloc":
        env["PYTHONMALLOC"] = "malloc"
    env.update(var.env)  # the variant's own PYTHONMALLOC wins over the run's --python-malloc
    return env


# --- from outside: /proc/<pid>/maps --------------------------------------------------------


def mapped_libraries(pid: int | str = "self") -> list[str]:
    """Paths of the shared objects mapped into a process."""
    paths: list[str] = []
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and ".so" in parts[5]:
                path = parts[5].strip()
                if path not in paths:
                    paths.append(path)
    return paths


def identify_path(path: str) -> str | None:
    """Which allocator a library path belongs to (None: not an allocator library)."""
    base = os.path.basename(path)
    for alloc in REGISTRY.values():
        if alloc.maps_prefix and base.startswith(alloc.maps_prefix):
            return alloc.name
    return None


def allocator_in_maps(pid: int | str = "self") -> str:
    """The allocator a process has mapped, judged from outside via /proc/<pid>/maps.

    An LD_PRELOAD allocator library in the maps means that allocator; none of
    them means glibc. (Inside the process, ``malloc_provider`` is stricter:
    it finds the library that actually serves ``malloc``.)
    """
    system = next((a.name for a in REGISTRY.values() if not a.preloaded), None)
    found = {identify_path(p) for p in mapped_libraries(pid)} - {None, system}
    if len(found) > 1:
        return "+".join(sorted(found))  # type: ignore[arg-type]
    return found.pop() if found else system  # type: ignore[return-value]


# --- from inside: which library's code ``malloc`` runs -------------------------------------

RTLD_LAZY, RTLD_NOLOAD = 0x1, 0x4  # <dlfcn.h>, glibc
RTLD_DL_SYMENT = 1  # dladdr1's flag: the symbol table entry (<dlfcn.h>)
SHN_UNDEF = 0  # <elf.h>


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", c_char_p),
        ("dli_fbase", c_void_p),
        ("dli_sname", c_char_p),
        ("dli_saddr", c_void_p),
    ]


class _Elf64Sym(ctypes.Structure):  # ElfW(Sym) on a 64-bit system (<elf.h>)
    _fields_ = [
        ("st_name", ctypes.c_uint32),
        ("st_info", ctypes.c_uint8),
        ("st_other", ctypes.c_uint8),
        ("st_shndx", ctypes.c_uint16),
        ("st_value", ctypes.c_uint64),
        ("st_size", ctypes.c_uint64),
    ]


class _PhdrInfo(ctypes.Structure):  # struct dl_phdr_info's first fields (<link.h>)
    _fields_ = [
        ("dlpi_addr", c_size_t),
        ("dlpi_name", c_char_p),
        ("dlpi_phdr", c_void_p),
        ("dlpi_phnum", c_uint16),
    ]


_PHDR_CALLBACK = ctypes.CFUNCTYPE(c_int, POINTER(_PhdrInfo), c_size_t, c_void_p)


def _dl() -> ctypes.CDLL:
    """The dynamic linker's functions: in libc since glibc 2.34, in libdl before."""
    process = ctypes.CDLL(None)
    if hasattr(process, "dladdr") and hasattr(process, "dl_iterate_phdr"):
        return process
    return ctypes.CDLL("libdl.so.2")


def _dladdr(dl: ctypes.CDLL, addr: int) -> _DlInfo | None:
    dl.dladdr.argtypes, dl.dladdr.restype = [c_void_p, POINTER(_DlInfo)], c_int
    info = _DlInfo()
    return info if dl.dladdr(addr, ctypes.byref(info)) else None


def _defines(dl: ctypes.CDLL, addr: int) -> bool | None:
    """Is the symbol at ``addr`` a definition (a section of its own), not an undefined symbol
    whose value is a PLT stub? None where ``dladdr1`` cannot tell."""
    if not hasattr(dl, "dladdr1") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    dl.dladdr1.argtypes = [c_void_p, POINTER(_DlInfo), POINTER(c_void_p), c_int]
    dl.dladdr1.restype = c_int
    info, entry = _DlInfo(), c_void_p()
    if not dl.dladdr1(addr, ctypes.byref(info), ctypes.byref(entry), RTLD_DL_SYMENT):
        return None
    if not entry.value:
        return None
    return _Elf64Sym.from_address(entry.value).st_shndx != SHN_UNDEF


def loaded_objects(dl: ctypes.CDLL | None = None) -> list[str]:
    """The names of the objects loaded in this process, in the dynamic linker's search order
    (``dl_iterate_phdr``: the program first, with an empty name, then the preloads, then the
    libraries they need)."""
    dl = dl or _dl()
    names: list[str] = []

    def each(info, size, data) -> int:
        names.append((info.contents.dlpi_name or b"").decode(errors="replace"))
        return 0

    dl.dl_iterate_phdr.argtypes = [_PHDR_CALLBACK, c_void_p]
    dl.dl_iterate_phdr(_PHDR_CALLBACK(each), None)
    return names


def _defined_in(dl: ctypes.CDLL, name: str, symbol: bytes) -> int | None:
    """The address of ``symbol`` if the loaded object ``name`` itself defines it (a handle's
    lookup also searches the object's dependencies: those answers are not its own)."""
    dl.dlopen.argtypes, dl.dlopen.restype = [c_char_p, c_int], c_void_p
    dl.dlsym.argtypes, dl.dlsym.restype = [c_void_p, c_char_p], c_void_p
    dl.dlclose.argtypes = [c_void_p]
    handle = dl.dlopen(name.encode(), RTLD_LAZY | RTLD_NOLOAD)
    if not handle:
        return None
    try:
        addr = dl.dlsym(handle, symbol)
    finally:
        dl.dlclose(handle)
    info = _dladdr(dl, addr) if addr else None
    return addr if info and (info.dli_fname or b"").decode(errors="replace") == name else None


def _mapping(addr: int) -> str:
    """The file (or ``[anonymous]``) mapped at ``addr`` in /proc/self/maps."""
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if start <= addr < end:
                return parts[5].strip() if len(parts) == 6 else "[anonymous]"
    return "[unknown]"


def malloc_provider() -> str:
    """Path of the mapped library whose code ``malloc`` runs in this process.

    The dynamic linker's answer for ``malloc`` (``dlsym(RTLD_DEFAULT)``) is usually it, but
    not in an executable that takes ``malloc``'s address in non-PIC code (Debian's
    ``/usr/bin/python3.11``, a non-PIE build, and Debian 13's ``python3.13``): there the
    linker makes the executable's own PLT stub ``malloc``'s canonical address, an undefined
    symbol that only jumps on. When the answer lies in the executable and the executable does
    not define ``malloc`` itself (its symbol table entry, from ``dladdr1``, is undefined: a PLT
    stub), each loaded object is asked in the linker's search order, and the first that
    defines ``malloc`` is the one.
    """
    dl = _dl()
    addr = ctypes.cast(ctypes.CDLL(None).malloc, c_void_p).value or 0
    found = _mapping(addr)
    program = os.path.realpath("/proc/self/exe")
    if os.path.realpath(found) != program:
        return found
    info = _dladdr(dl, addr)
    named = bool(info and info.dli_sname == b"malloc" and info.dli_saddr == addr)
    if named and _defines(dl, addr) is not False:
        return found  # the program defines malloc itself (an allocator linked in)
    for name in loaded_objects(dl)[1:]:
        defined = _defined_in(dl, name, b"malloc") if name else None
        if defined:
            return _mapping(defined)
    return found
