"""Which library serves malloc, proven from inside any executable's shape: PIE or not, taking
malloc's address or not, exporting every symbol or defining malloc itself.

Each shape is a small C program that embeds this Python (the interpreter's own library) and
asks ``malloc_provider()``: exactly what a Python executable of that shape does. Debian's
``/usr/bin/python3.11`` is non-PIE and takes malloc's address, so the dynamic linker makes the
executable's PLT stub malloc's canonical address; Debian 13's python3.13 does the same. The
proof once named the executable there and refused every server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import has_library

from stair_stepper import allocators

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = sysconfig.get_config_var("INCLUDEPY")
LIBDIR = sysconfig.get_config_var("LIBDIR")
SHARED = sysconfig.get_config_var("Py_ENABLE_SHARED")
VERSION = sysconfig.get_config_var("VERSION")

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None
    or not SHARED
    or not INCLUDE
    or not Path(INCLUDE, "Python.h").exists(),
    reason="needs gcc and this Python's headers and shared library to embed it",
)

EMBED = r"""
#include <Python.h>
#include <stdlib.h>
%(extra)s
int main(int argc, char **argv) {
    Py_Initialize();
    int rc = PyRun_SimpleString(argv[1]);
    Py_Finalize();
    return rc;
}
"""
#: code that takes malloc's address: compiled without PIC, the linker makes the executable's
#: PLT stub its canonical address (an undefined symbol with a value in the executable's .dynsym)
TAKES_ADDRESS = """
void *(*volatile kept)(size_t);
__attribute__((constructor)) static void keep(void) { kept = malloc; }
"""
#: an executable with an allocator of its own: malloc is defined here and wins the lookup
DEFINES_MALLOC = """
extern void *__libc_malloc(size_t); extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t); extern void *__libc_realloc(void *, size_t);
void *malloc(size_t n) { return __libc_malloc(n); }
void free(void *p) { __libc_free(p); }
void *calloc(size_t a, size_t b) { return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
"""
SHAPES = {
    "pie": (["-fPIE", "-pie"], ""),
    "pie-takes-address": (["-fPIE", "-pie"], TAKES_ADDRESS),
    "non-pie-takes-address": (["-fno-pie", "-no-pie"], TAKES_ADDRESS),
    "non-pie-exports-everything": (["-fno-pie", "-no-pie", "-rdynamic"], TAKES_ADDRESS),
    "defines-malloc": (["-fPIE", "-pie", "-rdynamic"], DEFINES_MALLOC),
}
ASK = (
    "import sys; sys.path.insert(0, {src!r})\n"
    "from stair_stepper.allocators import identify_path, malloc_provider\n"
    "print(malloc_provider())\n"
)


def build(tmp_path: Path, shape: str) -> Path:
    flags, extra = SHAPES[shape]
    source = tmp_path / f"{shape}.c"
    source.write_text(EMBED % {"extra": extra})
    program = tmp_path / shape
    command = [
        "gcc",
        *flags,
        f"-I{INCLUDE}",
        str(source),
        "-o",
        str(program),
        f"-L{LIBDIR}",
        f"-Wl,-rpath,{LIBDIR}",
        f"-lpython{VERSION}",
    ]
    subprocess.run(command, check=True, capture_output=True)
    return program


def ask(program: Path, preload: Path | None = None) -> str:
    env = dict(os.environ, PYTHONHOME=sys.base_prefix)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = str(preload)
    done = subprocess.run(
        [str(program), ASK.format(src=str(ROOT / "src"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "defines-malloc"])
def test_the_c_library_serves_malloc_whatever_the_executable_s_shape(tmp_path, shape):
    program = build(tmp_path, shape)
    assert allocators.identify_path(ask(program)) == allocators.SYSTEM


@pytest.mark.skipif(not has_library("jemalloc"), reason="libjemalloc2 is not installed")
@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "defines-malloc"])
def test_a_preloaded_allocator_is_found_whatever_the_executable_s_shape(tmp_path, shape):
    program = build(tmp_path, shape)
    library = allocators.find_library(allocators.ALLOCATORS["jemalloc"])
    assert allocators.identify_path(ask(program, library)) == "jemalloc"


def test_an_executable_with_its_own_malloc_is_named_not_mistaken_for_an_allocator(tmp_path):
    program = build(tmp_path, "defines-malloc")
    assert ask(program) == str(program)
    if has_library("jemalloc"):  # the executable's own malloc wins over a preload
        library = allocators.find_library(allocators.ALLOCATORS["jemalloc"])
        assert ask(program, library) == str(program)


@pytest.mark.skipif(not Path("/usr/bin/python3.11").exists(), reason="Debian's python3.11")
def test_debian_s_own_python_is_proven_on_glibc():
    """Debian 12's /usr/bin/python3.11 is the shape the proof once failed on."""
    done = subprocess.run(
        ["/usr/bin/python3.11", "-c", ASK.format(src=str(ROOT / "src"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert allocators.identify_path(done.stdout.strip()) == allocators.SYSTEM
