"""How long a pause lasts at least before RSS stillness may end it: each allocator's decay as
read back. jemalloc's background thread sleeps a whole decay time between wakes when an arena
holds few dirty pages (src/decay.c, decay_ns_until_purge), so with it the last pages of a burst
leave up to twice the decay time after the burst: a pause that stops at one decay time and
2 s of stillness ends between two of its wakes (CI saw a forked remedy's floor 52 MB above
what it settled to)."""

from __future__ import annotations

from stair_stepper.allocators import settings


def least(spec: str, **effective) -> float:
    var = settings.parse(spec)
    return var.allocator.least_pause_s({"effective": effective})


def planned(spec: str) -> float:
    var = settings.parse(spec)
    return var.allocator.planned_pause_s(var.env)


def test_jemalloc_waits_its_decay_and_twice_it_with_a_background_thread():
    assert least("j=jemalloc", dirty_decay_ms=10_000, background_thread=False) == 10.0
    assert least("j=jemalloc", dirty_decay_ms=10_000, background_thread=True) == 20.0
    assert least("j=jemalloc", dirty_decay_ms=2_000, muzzy_decay_ms=1_000) == 3.0  # then muzzy
    assert least("j=jemalloc", dirty_decay_ms=-1, background_thread=True) == 0.0  # never decays


def test_the_plan_expects_what_the_settings_ask_for():
    assert planned("j=jemalloc") == 10.0
    assert planned("j=jemalloc MALLOC_CONF=background_thread:true") == 20.0
    assert planned("j=jemalloc MALLOC_CONF=background_thread:true,dirty_decay_ms:1000") == 2.0
    assert planned("j=jemalloc MALLOC_CONF=dirty_decay_ms:0") == 0.0


def test_a_forked_worker_without_its_thread_waits_one_decay_time():
    """The trap: asked for, turned off by fork. Nothing purges in a quiet pause then, and the
    lab does not wait twice for a thread that is not there."""
    assert least("j=jemalloc", background_thread_option=True, background_thread=False) == 10.0


def test_allocators_without_a_decay_have_no_least_pause():
    assert least("g=glibc") == 0.0
    assert planned("g=glibc") == 0.0
