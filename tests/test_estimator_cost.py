"""The state estimator's allocation and heap facts under real MicroPython.

A short run of ``benchmarks/estimator_cost.py`` (16 cells, 16 sensors, the cell
model from ``cells/sim-nmc.json``, two drive cycles of 120 estimation periods,
no timing). Only facts that are deterministic are asserted: ``sample()`` runs in
the control step and must allocate nothing, and the live heap must not grow from
one drive cycle to the next. Times are never asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from benchmark_module import load_benchmark as load_module

from cellguard.sim.runtime import MicroPythonRuntime

pytestmark = pytest.mark.timeout(120)


def load_benchmark() -> ModuleType:
    return load_module("estimator_cost")


cost = load_benchmark()


@pytest.fixture(scope="module")
def figures() -> Iterator[Any]:
    rt = MicroPythonRuntime()  # fresh: the heap figures count the estimator's import
    try:
        yield cost.measure(rt, 16, 16, "cell file", cycles=2)
    finally:
        rt.close()


def test_drive_exercised_load_rest_and_balancing(figures: Any) -> None:
    """The figures cover runs at load and at rest, with the balancer bleeding."""
    periods = sum(p for _, p, _ in cost.CYCLE)
    assert figures.periods == 2 * periods
    assert figures.load.count > 0 and figures.rest.count > 0
    assert figures.load.count + figures.rest.count == figures.periods - 1
    assert figures.balanced
    assert figures.load.max > 0, "run() allocated nothing: the measurement is not working"


def test_sample_allocates_nothing(figures: Any) -> None:
    """sample() runs every control step: no allocation, not even under heap_lock."""
    assert figures.sample_max == 0
    assert figures.sample_locked_ok, "sample() raised MemoryError under heap_lock"


def test_live_heap_does_not_grow(figures: Any) -> None:
    first, second = figures.heap.live
    assert second == first, figures.heap
    assert figures.heap.code > 0 and figures.heap.objects > 0 and figures.heap.filters > 0


def test_a_run_allocates_at_most_2_kb(figures: Any) -> None:
    """Issue 18: an estimation step leaves at most 2 KB of garbage on the real
    runtime (at load and at rest; the first run, which builds the filters, apart)."""
    assert figures.load.max <= 2048, figures.load
    assert figures.rest.max <= 2048, figures.rest


@pytest.fixture(scope="module")
def collections() -> Iterator[Any]:
    rt = MicroPythonRuntime()
    try:
        yield cost.measure(rt, 4, 2, "profile", cycles=2, gc_reps=3).gc
    finally:
        rt.close()


def test_gc_pause_times_real_collections(collections: Any) -> None:
    """Issue 18: the pause timed is a full collection's. This port runs a gc.collect()
    when the request returns to JavaScript: inside the call it freed nothing, the
    control requests freed nothing, and each timed request brought the full heap (the
    RP2040's worth in use) back to its live size."""
    g = collections
    assert g is not None and g.reps == 3
    assert g.deferred, "gc.collect() freed the heap inside the call: the port changed"
    assert g.collected, "a timed request did not collect, or a control request did"
    assert g.live < cost.RP2040_HEAP <= g.full
    assert g.fill_runs > 0
    assert 0 < g.blocks_live <= g.blocks_full
    assert g.blocks_full * cost.GC_BLOCK >= g.full
    assert g.full_us > 0 and g.reference_us > 0  # measured; never a bound on time
