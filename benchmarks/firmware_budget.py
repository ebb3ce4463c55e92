"""Memory and time budget of the firmware's control step, under real MicroPython.

Run from the repository root::

    .venv/bin/python benchmarks/firmware_budget.py [--steps N] [--reps R] [--no-timing]

Everything runs in the MicroPython 1.27 WebAssembly port (the simulator's
``MicroPythonRuntime``), one fresh interpreter per board, for boards built from
``boards/sim-4s.json`` with 4 cells and 2 sensors, 8 cells and 2 sensors, and 16
cells and 16 sensors; then the 16-cell board once more with the firmware
precompiled by ``mpy-cross`` (heap figures only); then the 16-cell BQ76952 board
``boards/pico-bq76952-16s.json`` as deployed (``--no-chip`` skips it).

The BQ76952 board runs ``Bms(board, Bq76952Hal(board, bus), port)``, the firmware
as ``.mpy`` with the driver and the HAL, over ``bus``: the driver tests' register
image (``tests/bq76952_bus.py``'s ``ImageBus``, allocation-free) which loads the
drive's next scenario, in the chip's units (cells mV, temperatures 0.1 K, current
in the HAL's user-amps, stack cV), when the driver starts a measurement cycle,
and counts what crosses the bus: the driver's ``machine.I2C`` calls, STARTs,
STOPs, address, register, data and CRC bytes. The chip's I2C traffic per control
step is then counted on a fresh Bms with CRC off and on over one drive cycle:
steady steps, steps that open or close the FETs, one balancing change; the bus
time at 400 kHz counts 9 clocks a byte and one per START, repeated START and STOP.

The firmware is driven through its public interface only: ``Bms(board, hal,
port)`` and ``Bms.step(dt_ms)``, with a bench HAL whose ``sample`` copies
precomputed ADC codes out of preallocated arrays (checked to allocate nothing
under ``micropython.heap_lock()``, so every byte counted is the firmware's own)
and a port that only counts what it is given. The codes follow a 200-step cycle
(100 ms steps): normal; every limit but discharge current beyond its furthest
trip while charging; between release and trip (the basic faults hold);
discharge current beyond every trip; normal long enough for every release. A
latched fault whose condition is gone is cleared between steps, as a host would.

This port never collects garbage inside a call from JavaScript: ``gc.collect()``
only marks a collection that runs when the request returns. So every step is
its own request (``_do(4)`` then ``gc.collect()``), and ``gc.mem_alloc()`` at the
start of a request is the live heap.

Figures:

allocation per control step
    ``gc.mem_alloc()`` just before and after each ``Bms.step``, the heap
    collected before every step. Max and mean over ``--steps`` steps, for all
    steps, steps that sent nothing (and among them those with a fault active),
    telemetry steps and steps that sent a FAULT_EVENT (a trip or a release).
measurement path
    ``HAL.sample`` + the pack reading + ``Measurement.update`` as ``Bms.step`` runs
    them, through every scenario, with ``gc.mem_alloc`` around each call and then
    under ``micropython.heap_lock()`` (on the BQ76952 board: the driver's reads).
protection step
    The same for ``Protection.load(m)`` + ``Protection.step(dt)`` over the same
    cycle, then the same calls under ``micropython.heap_lock()`` inside a
    function (any allocation raises MemoryError; the lock is released in a
    ``finally``).
heap
    ``gc.mem_alloc()`` of the collected heap before the firmware is imported is
    the baseline; then after the import (bytecode compiled from the ``.py``
    sources, module dicts, interned names), after ``Bms`` is built, before
    every step and after the steps. The high-water is the largest live heap
    before a step plus what that step allocated. The WebAssembly heap grows on
    demand, so these are bytes in use, not a limit that was reached.
time
    ``time.ticks_us`` around interleaved batches of about 100 ms (this port's
    clock ticks in whole milliseconds) of protection steps, reference loops
    (1,000 integer additions into a preallocated array) and full control
    steps, ``--reps`` times: medians per call and the median of each
    repetition's ratio to the reference loop. Only the ratios mean anything off
    this machine: WebAssembly under Node is not an RP2040.

This is a benchmark: it checks that the drive did what it says (trips,
releases, telemetry) but never asserts timing; the goal lines say PASS or FAIL
and the exit status is 0 either way. ``tests/test_budget.py`` runs a short
version and asserts the allocation goals.
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
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from cellguard.paths import boards_dir, firmware_dir
from cellguard.sim.runtime import MicroPythonRuntime
from cellguard_fw import codec as fw_codec
from cellguard_fw.app import board_limits
from cellguard_fw.frontend import Frontend

BUILD_TOOL = Path(__file__).resolve().parents[1] / "tools" / "build_mpy.py"
BOARDS: tuple[tuple[int, int], ...] = ((4, 2), (8, 2), (16, 16))  # (cells, temp sensors)
GOAL_STEP_BYTES = 1024  # a full control step allocates less than this
# Heap high-water of the 16-cell control firmware as deployed (.mpy): 2 KB under the
# 48 KB it is meant to live in, so that what comes next has room.
GOAL_HEAP_BYTES = 46 * 1024
REFERENCE_ADDS = 1000  # integer additions per reference loop
BASIC_FAULTS = 0x3F  # the six basic protections' bits

# The drive cycle, in control steps: (scenario, steps). The lengths assume the
# default delays at 100 ms (trips within 2 s, releases within 10 s); the run
# checks that every protection tripped and released.
NORMAL, BEYOND, HOLD, DISCHARGE = 0, 1, 2, 3
CYCLE: tuple[tuple[int, int], ...] = ((NORMAL, 20), (BEYOND, 30), (HOLD, 20), (DISCHARGE, 20),
                                      (NORMAL, 110))
SCENARIO_NAMES = ("normal", "beyond trip", "hold", "discharge overcurrent")


# -- the board and its ADC codes (computed under CPython) -----------------------------


def make_board(cells: int, temps: int) -> dict[str, Any]:
    """The control firmware's board: the state estimator (floats, once a second,
    outside the control step; ``benchmarks/estimator_cost.py``) is left out, so
    these figures are the protection firmware's."""
    board: dict[str, Any] = json.loads((boards_dir() / "sim-4s.json").read_text())
    board["name"] = f"bench-{cells}s"
    board["cells"] = cells
    board["temp_sensors"] = temps
    board["estimator"] = "none"
    return board


def _inverse(convert: Callable[[int], int], target: int, max_code: int) -> int:
    """The code whose conversion is nearest ``target`` (``convert`` is monotonic)."""
    rising = convert(max_code) > convert(0)
    lo, hi = 0, max_code
    while lo < hi:  # first code at or past the target
        mid = (lo + hi) // 2
        if (convert(mid) >= target) if rising else (convert(mid) <= target):
            hi = mid
        else:
            lo = mid + 1
    best = min((c for c in (lo - 1, lo) if 0 <= c <= max_code),
               key=lambda c: abs(convert(c) - target))
    return best


@dataclass(frozen=True)
class Scenario:
    cells_mv: list[int]
    temps_dc: list[int]
    current_ma: int


# Limits by the side they guard; the drive goes past the furthest one present, so a
# protection added on the same quantity (deep discharge, peak current, ...) trips too.
HIGH_CELL = ("cell_ov_mv",)
LOW_CELL = ("cell_uv_mv", "deep_discharge_mv")
HOT = ("temp_max_dc", "temp_charge_max_dc")
COLD = ("temp_min_dc", "temp_charge_min_dc")
CHARGE = ("charge_current_max_ma", "charge_current_peak_ma")
DISCHARGE_KEYS = ("discharge_current_max_ma", "discharge_current_peak_ma", "short_circuit_ma")


def scenarios(board: dict[str, Any], nominal_mv: int = 3700) -> list[Scenario]:
    """Normal (cells about ``nominal_mv``); beyond every trip but discharge current
    (charging); between release and trip of the six basic protections; beyond every
    discharge-current trip (clipped to what the sensor measures). In engineering units."""
    n, t = board["cells"], board["temp_sensors"]
    limits = board_limits(board)

    def trips(keys: tuple[str, ...]) -> list[int]:
        return [limits[k][0] for k in keys if k in limits]

    def mid(key: str) -> int:
        return (limits[key][0] + limits[key][1]) // 2

    def pack(first_mv: int, last_mv: int, hot_dc: int, cold_dc: int, ma: int) -> Scenario:
        cells = [nominal_mv + (i * 7) % 11 - 5 for i in range(n)]
        temps = [250 + (i * 3) % 7 - 3 for i in range(t)]
        cells[0], cells[-1] = first_mv, last_mv
        temps[0], temps[-1] = hot_dc, cold_dc
        return Scenario(cells, temps, ma)

    return [
        pack(nominal_mv + 10, nominal_mv - 10, 260, 240, 500),
        pack(max(trips(HIGH_CELL)) + 50, min(trips(LOW_CELL)) - 100, max(trips(HOT)) + 50,
             min(trips(COLD)) - 50, max(trips(CHARGE)) + 1000),
        pack(mid("cell_ov_mv"), mid("cell_uv_mv"), mid("temp_max_dc"), mid("temp_min_dc"),
             mid("charge_current_max_ma")),
        pack(nominal_mv + 10, nominal_mv - 10, 260, 240, -max(trips(DISCHARGE_KEYS)) - 1000),
    ]


@dataclass(frozen=True)
class Codes:
    cells: list[int]  # scenario-major
    temps: list[int]
    currents: list[int]
    schedule: bytes  # scenario of each step of the cycle


def adc_codes(board: dict[str, Any]) -> Codes:
    """The codes of every scenario, checked to convert back beyond or within the limits."""
    fe_cfg = board["frontend"]
    fe = Frontend(fe_cfg)
    cell_max = (1 << fe_cfg["cell_adc"]["bits"]) - 1
    cur_max = (1 << fe_cfg["current_adc"]["bits"]) - 1
    temp_max = (1 << fe_cfg["temp_adc"]["bits"]) - 1
    cells: list[int] = []
    temps: list[int] = []
    currents: list[int] = []
    seen: list[Scenario] = []
    for s in scenarios(board):
        c = [_inverse(fe.cell.convert, mv, cell_max) for mv in s.cells_mv]
        t = [_inverse(fe.temp.convert, dc, temp_max) for dc in s.temps_dc]
        i = _inverse(fe.current.convert, s.current_ma, cur_max)
        cells += c
        temps += t
        currents.append(i)
        seen.append(Scenario([fe.cell.convert(x) for x in c], [fe.temp.convert(x) for x in t],
                             fe.current.convert(i)))
    _check_scenarios(board, seen)
    schedule = bytes(s for s, steps in CYCLE for _ in range(steps))
    return Codes(cells, temps, currents, schedule)


CHIP_BOARD = "pico-bq76952-16s"
IMAGE_BUS = Path(__file__).resolve().parents[1] / "tests" / "bq76952_bus.py"


def make_chip_board(board: dict[str, Any] | None = None) -> dict[str, Any]:
    """A BQ76952 board (default the 16-cell ``pico-bq76952-16s`` as its file has it, CRC
    on), estimator off."""
    if board is None:
        board = json.loads((boards_dir() / f"{CHIP_BOARD}.json").read_text())
    board = json.loads(json.dumps(board))
    board["estimator"] = "none"
    return board


def image_bus_source() -> str:
    """``tests/bq76952_bus.py``: the driver tests' allocation-free register image."""
    return IMAGE_BUS.read_text() + "\n"


def _file_module(name: str, path: Path) -> ModuleType:
    """A module loaded once from a file outside any package (tools/, tests/)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _image_bus() -> Any:
    return _file_module("cellguard_benchmarks_bq76952_bus", IMAGE_BUS).ImageBus


def chip_codes(board: dict[str, Any]) -> tuple[Codes, str]:
    """The drive in the chip's units (cells mV, temperatures 0.1 K, current in the
    user-amps the HAL picks, stack in cV), checked through the chip's front end like
    the ADC codes; and the harness globals saying which registers hold them."""
    from cellguard_fw.bq76952_setup import frontend as chip_frontend
    from cellguard_fw.hal_bq76952 import Bq76952Hal

    hal = Bq76952Hal(json.loads(json.dumps(board)), _image_bus()(8, board["afe"]["crc"]))
    fe = chip_frontend(board["frontend"])
    unit = (1, 10, 100, 1000)[hal.da & 3]  # 0.1 mA
    cv = 10 if hal.da & 4 else 1  # stack in cV or mV
    lim = board_limits(board)
    nominal = (lim["cell_ov_mv"][1] + lim["cell_uv_mv"][1]) // 2
    cells: list[int] = []
    temps: list[int] = []
    currents: list[int] = []
    stacks: list[int] = []
    seen: list[Scenario] = []
    for s in scenarios(board, nominal):
        t = [dc + 2732 for dc in s.temps_dc]
        code = max(-32768, min(32767, round(s.current_ma * 10 / unit)))
        cells += s.cells_mv
        temps += t
        currents.append(code)
        stacks.append(round(sum(s.cells_mv) / cv))
        ma = code * unit // 10 if unit >= 10 else round(code * unit / 10)
        seen.append(Scenario([fe.cell.convert(c) for c in s.cells_mv],
                             [fe.temp.convert(x) for x in t], ma))
    _check_scenarios(board, seen)
    schedule = bytes(s for s, steps in CYCLE for _ in range(steps))
    extra = (f"_stacks = array('H', {stacks!r})\n"
             f"_cell_regs = bytes({[0x14 + 2 * i for i in hal.cell_idx]!r})\n"
             f"_temp_regs = bytes({[0x68 + 2 * i for i in hal.ts_idx]!r})\n"
             "_Hal = None\n")
    return Codes(cells, temps, currents, schedule), extra


def _check_scenarios(board: dict[str, Any], seen: list[Scenario]) -> None:
    lim = board_limits(board)
    normal, beyond, hold, dis = seen

    def within(s: Scenario) -> bool:
        return (lim["cell_uv_mv"][1] < min(s.cells_mv) and max(s.cells_mv) < lim["cell_ov_mv"][1]
                and lim["temp_min_dc"][1] < min(s.temps_dc)
                and max(s.temps_dc) < lim["temp_max_dc"][1])

    def between(value: int, pair: tuple[int, int]) -> bool:
        return min(pair) < value < max(pair)

    ok = (
        within(normal) and within(dis) and 0 <= normal.current_ma < lim["charge_current_max_ma"][1]
        and max(beyond.cells_mv) > lim["cell_ov_mv"][0]
        and min(beyond.cells_mv) < lim["cell_uv_mv"][0]
        and max(beyond.temps_dc) > lim["temp_max_dc"][0]
        and min(beyond.temps_dc) < lim["temp_min_dc"][0]
        and beyond.current_ma > lim["charge_current_max_ma"][0]
        and between(max(hold.cells_mv), lim["cell_ov_mv"])
        and between(min(hold.cells_mv), lim["cell_uv_mv"])
        and between(max(hold.temps_dc), lim["temp_max_dc"])
        and between(min(hold.temps_dc), lim["temp_min_dc"])
        and between(hold.current_ma, lim["charge_current_max_ma"])
        and -dis.current_ma > lim["discharge_current_max_ma"][0]
    )
    if not ok:
        raise SystemExit(f"the drive scenarios do not straddle the limits {lim}: {seen}")


# -- the MicroPython side -------------------------------------------------------------

# Defined before the baseline is taken, so none of it is counted as the firmware's.
HARNESS_HEAD = r"""
import gc, json, micropython, sys, time
from array import array
"""

# The ADC boards: a bench HAL that copies precomputed ADC codes.
ADC_HARNESS = r"""
from cellguard_fw.hal import Hal


class BenchHal(Hal):
    # Copies precomputed codes out of preallocated arrays: allocates nothing.
    def __init__(self, n_cells, n_temps, cells, temps, currents, schedule):
        self.n_cells = n_cells
        self.n_temps = n_temps
        self.cells = cells
        self.temps = temps
        self.currents = currents
        self.schedule = schedule
        self.tick = 0
        self.closed = False
        self.switches = 0

    def fill(self, s, raw_cells, raw_temps):
        c = self.cells
        n = self.n_cells
        base = s * n
        for i in range(n):
            raw_cells[i] = c[base + i]
        t = self.temps
        n = self.n_temps
        base = s * n
        for i in range(n):
            raw_temps[i] = t[base + i]
        return self.currents[s]

    def sample(self, raw_cells, raw_temps):
        s = self.schedule[self.tick]
        self.tick += 1
        if self.tick >= len(self.schedule):
            self.tick = 0
        return self.fill(s, raw_cells, raw_temps)

    def set_output(self, closed):
        self.closed = closed
        self.switches += 1

    def unique_id(self):
        return b"\x5e\x11\xbe\x9c\x00\x00\x00\x01"

    def storage_dir(self):
        return None


"""

# The BQ76952 board: the real driver and HAL over a register image (tests/bq76952_bus.py's
# ImageBus, prepended) that the drive fills in the chip's units, counting the bus traffic.
CHIP_HARNESS = r"""
import cellguard_fw  # the package, as the ADC harness has it before the baseline


class BenchBus(ImageBus):
    # The image of the scenario due is loaded when the driver starts a measurement cycle
    # (reads Safety Alert A, 0x02), as BenchHal.sample advances its schedule. ``count``:
    # driver calls, STARTs (repeated STARTs included), STOPs, address bytes, register
    # bytes, data bytes, CRC bytes. Nothing here allocates.
    def __init__(self, crc):
        ImageBus.__init__(self, 8, crc)
        self.record = False
        self.commands = None
        self.count = array("l", [0] * 7)
        self.subs = 0  # subcommands the chip ran
        self.last = 0  # the last one
        self.tick = 0
        self.drive = True
        self.set16(0x68, 2982)  # die temperature 25 degC
        self.load(0)

    def load(self, s):
        r = self.regs
        v = _cells
        at = _cell_regs
        n = len(at)
        base = s * n
        for i in range(n):
            x = v[base + i]
            r[at[i]] = x & 0xFF
            r[at[i] + 1] = x >> 8
        v = _temps
        at = _temp_regs
        n = len(at)
        base = s * n
        for i in range(n):
            x = v[base + i]
            r[at[i]] = x & 0xFF
            r[at[i] + 1] = x >> 8
        x = _stacks[s]
        r[0x34] = x & 0xFF
        r[0x35] = x >> 8
        x = _currents[s] & 0xFFFF
        r[0x3A] = x & 0xFF
        r[0x3B] = x >> 8

    def _cycle(self):
        if self.drive:
            s = _sched[self.tick]
            self.tick += 1
            if self.tick >= len(_sched):
                self.tick = 0
            self.load(s)

    def readfrom_mem_into(self, addr, reg, buf):
        c = self.count
        c[0] += 1
        c[1] += 2  # START, repeated START
        c[2] += 1
        c[3] += 2
        c[4] += 1
        c[5] += len(buf)
        if reg == 0x02:
            self._cycle()
        ImageBus.readfrom_mem_into(self, addr, reg, buf)

    def writeto_mem(self, addr, reg, buf):
        c = self.count
        c[0] += 1
        c[1] += 1
        c[2] += 1
        c[3] += 1
        c[4] += 1
        c[5] += len(buf)
        ImageBus.writeto_mem(self, addr, reg, buf)

    def writeto(self, addr, buf, stop=True):
        c = self.count
        c[0] += 1
        c[1] += 1
        c[3] += 1
        c[4] += 1
        n = len(buf) - 1
        if stop:
            c[2] += 1
            if self.crc:  # register, then each data byte and its CRC
                c[5] += n // 2
                c[6] += n // 2
            else:
                c[5] += n
        elif buf[0] == 0x02:  # the register of a CRC read: the cycle starts
            self._cycle()
        return ImageBus.writeto(self, addr, buf, stop)

    def readfrom_into(self, addr, buf):
        c = self.count
        c[0] += 1
        c[1] += 1  # the repeated START after the register
        c[2] += 1
        c[3] += 1
        n = len(buf)
        if self.crc:
            c[5] += n // 2
            c[6] += n // 2
        else:
            c[5] += n
        ImageBus.readfrom_into(self, addr, buf)

    def _run(self, cmd):
        self.subs += 1
        self.last = cmd
        ImageBus._run(self, cmd)
        r = self.regs
        if cmd == 0x0095:  # ALL_FETS_OFF; FET Status: bit 0 CHG, 2 DSG
            r[0x7F] = 0
        elif cmd == 0x0096:  # ALL_FETS_ON
            r[0x7F] = 0x05
        elif cmd == 0x0094:  # CHG_PCHG_OFF
            r[0x7F] &= 0xFC
        elif cmd == 0x0093:  # DSG_PDSG_OFF
            r[0x7F] &= 0xF3

    def _apply(self, cmd, payload, k):
        self.subs += 1
        self.last = cmd
        ImageBus._apply(self, cmd, payload, k)


def _import_hal():
    global _Hal
    from cellguard_fw.hal_bq76952 import Bq76952Hal
    _Hal = Bq76952Hal


def _no_storage():
    return None


def _make_hal(board):
    hal = _Hal(board, _bus)
    hal.storage_dir = _no_storage  # nothing persisted, as with the bench HAL
    return hal


def _scenario_raw(s, raw_cells, raw_temps):
    bus = _bus
    bus.drive = False
    bus.load(s)
    r = _hal.sample(raw_cells, raw_temps)
    bus.drive = True
    return r


def _traffic(crc, n):
    # A fresh chip image, HAL and Bms with CRC on or off, driven through n steps of the
    # cycle (the host clears a latch once its condition is gone); the bus counts of
    # each step, of the boot (Bms built: the chip configured and armed), and of one
    # balancing change (Bms.estimate's set_balancing, after a control step).
    global _bus
    keep = _bus
    board = json.loads(_board_text)
    board["afe"]["crc"] = crc
    bus = _bus = BenchBus(crc)
    c = bus.count
    hal = _Hal(board, bus)
    hal.storage_dir = _no_storage
    bms = _Bms(board, hal, BenchPort())
    boot = list(c) + [bus.subs]
    steps = []
    for k in range(n):
        before = list(c)
        subs = bus.subs
        bms.step(_dt)
        steps.append([c[i] - before[i] for i in range(7)] + [bus.subs - subs, bus.last])
        if bms.latched and not bms.faults:
            bms.clear_faults()
    before = list(c)
    subs = bus.subs
    hal.set_balancing(0b0101)
    balance = [c[i] - before[i] for i in range(7)] + [bus.subs - subs, bus.last]
    _bus = keep
    return [crc, boot, steps, balance, list(hal.bus_errors())]
"""

# Everything else, for both kinds of board.
COMMON_HARNESS = r"""
class BenchPort:
    def __init__(self):
        self.frames = 0
        self.nbytes = 0

    def readinto(self, buf):
        return 0

    def write(self, data):
        self.frames += 1
        self.nbytes += len(data)
        return len(data)


def _do(op):
    # One phase of the heap measurement per exec request: the WebAssembly port only
    # collects when control returns to JavaScript (gc.collect() marks a collection
    # pending), so each request ends with gc.collect() and the next one reads the
    # live heap. Every request is "_do(<small int>)", the same size of code object.
    global _Bms, _bms, _hal, _port, _has_latch, _k
    r = _heap
    if op == 0:
        r[0] = gc.mem_alloc()  # baseline: nothing of the firmware loaded
    elif op == 1:
        from cellguard_fw.app import Bms
        _Bms = Bms
#IMPORT_HAL
    elif op == 2:
        r[1] = gc.mem_alloc()  # firmware code loaded
        board = json.loads(_board_text)
        hal = MAKE_HAL
        port = BenchPort()
        _bms = _Bms(board, hal, port)
        _hal = hal
        _port = port
        _has_latch = hasattr(_bms, "clear_faults") and hasattr(_bms, "latched")
    elif op == 3:
        r[2] = gc.mem_alloc()  # Bms built
        _k = 0
    elif op == 4:
        _one_step(_k)
        _k += 1
    elif op == 5:
        r[3] = gc.mem_alloc()  # live after the steps


def _one_step(k):
    bms = _bms
    port = _port
    frames = port.frames
    seq = bms.telemetry_seq
    a = gc.mem_alloc()
    bms.step(_dt)
    b = gc.mem_alloc()
    _before[k] = a
    _delta[k] = b - a
    _frames[k] = port.frames - frames
    _tele[k] = bms.telemetry_seq - seq
    _faults[k] = bms.faults
    # The host's CLEAR_FAULTS once a latched fault's condition is gone, after the
    # figures are taken (its garbage is collected before the next step).
    if _has_latch and bms.latched and not bms.faults:
        bms.clear_faults()


def _protection_alloc(n, dt):
    # mem_alloc around every Protection.load + step, collector disabled
    p = _bms.protection
    ms = _scen_meas
    sched = _sched
    cycle = len(sched)
    worst = 0
    total = 0
    for k in range(n):
        m = ms[sched[k % cycle]]
        a = gc.mem_alloc()
        p.load(m)
        p.step(dt)
        d = gc.mem_alloc() - a
        total += d
        if d > worst:
            worst = d
    return worst, total


def _protection_locked(n, dt):
    # The same calls with the heap locked: 0 = nothing allocated, 1 = MemoryError.
    p = _bms.protection
    ms = _scen_meas
    sched = _sched
    cycle = len(sched)
    out = _pfaults
    result = 0
    micropython.heap_lock()
    try:
        for k in range(n):
            p.load(ms[sched[k % cycle]])
            out[k] = p.step(dt)
    except MemoryError:
        result = 1
    finally:
        micropython.heap_unlock()
    return result


def _hal_locked(n):
    hal = _hal
    m = _scen_meas[0]
    result = 0
    micropython.heap_lock()
    try:
        for k in range(n):
            hal.sample(m.raw_cells, m.raw_temps)
    except MemoryError:
        result = 1
    finally:
        micropython.heap_unlock()
    return result


def _reference(buf):
    for i in range(_REFERENCE_ADDS):
        buf[i & 15] += i


def _batch(kind, count):
    # Microseconds taken by one batch: 0 the driving loop alone, 1 protection steps,
    # 2 reference loops, 3 full control steps. ticks_us ticks in whole milliseconds in
    # this port, so batches are long and start on a tick.
    p = _bms.protection
    bms = _bms
    ms = _scen_meas
    sched = _sched
    cycle = len(sched)
    dt = _dt
    buf = _refbuf
    ref = _reference
    ticks_us = time.ticks_us
    for i in range(16):
        buf[i] = 0
    t = ticks_us()
    while ticks_us() == t:
        pass
    t0 = ticks_us()
    if kind == 0:
        for k in range(count):
            m = ms[sched[k % cycle]]
    elif kind == 1:
        for k in range(count):
            m = ms[sched[k % cycle]]
            p.load(m)
            p.step(dt)
    elif kind == 2:
        for k in range(count):
            ref(buf)
    else:
        for k in range(count):
            bms.step(dt)
    return time.ticks_diff(ticks_us(), t0)
"""


def harness_data(board: dict[str, Any], codes: Codes, steps: int) -> str:
    """The arrays and globals the harness fills: all preallocated before the baseline."""
    return f"""
_board_text = {json.dumps(board)!r}
_cells = array("H", {codes.cells!r})
_temps = array("H", {codes.temps!r})
_currents = array("{'h' if min(codes.currents) < 0 else 'H'}", {codes.currents!r})
_sched = bytes({codes.schedule!r})
_dt = {board["control_period_ms"]}
_before = array("l", [0] * {steps})
_delta = array("l", [0] * {steps})
_frames = bytearray({steps})
_tele = bytearray({steps})
_faults = array("l", [0] * {steps})
_pfaults = array("l", [0] * {steps})
_heap = array("l", [0] * 8)
_refbuf = array("l", [0] * 16)
_REFERENCE_ADDS = {REFERENCE_ADDS}
_Bms = None
_bms = None
_k = 0
_hal = None
_port = None
_scen_meas = None
_has_latch = False
"""


# After the drive (its names are not interned before it): a Measurement per scenario for
# the protection figures, and the measurement path's figures.
AFTER_STEPS = """
from cellguard_fw.measurement import Measurement
_scen_meas = []
for _s in range({scenarios}):
    _m = Measurement(len(_bms.meas.raw_cells), len(_bms.meas.raw_temps))
    _m.update(_bms.frontend, {fill}(_s, _m.raw_cells, _m.raw_temps), 0, -1)
    _scen_meas.append(_m)


def _meas_alloc(n, dt):
    # The measurement path of Bms.step (HAL.sample, the pack reading, Measurement.update),
    # mem_alloc around each call; then the same calls with the heap locked.
    hal = _hal
    m = _bms.meas
    fe = _bms.frontend
    pack = fe.pack
    worst = 0
    total = 0
    for k in range(n):
        a = gc.mem_alloc()
        raw = hal.sample(m.raw_cells, m.raw_temps)
        code = hal.read_pack_code()
        m.update(fe, raw, dt, pack.convert(code) if code >= 0 and pack is not None else -1)
        d = gc.mem_alloc() - a
        total += d
        if d > worst:
            worst = d
    return worst, total


def _meas_locked(n, dt):
    # 0 = nothing allocated, 1 = MemoryError
    hal = _hal
    m = _bms.meas
    fe = _bms.frontend
    pack = fe.pack
    result = 0
    micropython.heap_lock()
    try:
        for k in range(n):
            raw = hal.sample(m.raw_cells, m.raw_temps)
            code = hal.read_pack_code()
            m.update(fe, raw, dt, pack.convert(code) if code >= 0 and pack is not None else -1)
    except MemoryError:
        result = 1
    finally:
        micropython.heap_unlock()
    return result


"""


def common_harness(import_hal: str, make_hal: str) -> str:
    """The harness with the HAL's import (after the baseline) and construction filled in."""
    return COMMON_HARNESS.replace("#IMPORT_HAL\n", import_hal).replace("MAKE_HAL", make_hal)


ADC_MAKE_HAL = """BenchHal(board["cells"], board["temp_sensors"], _cells, _temps, _currents,
                       _sched)"""


# -- figures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StepStats:
    count: int
    max: int
    mean: float

    @classmethod
    def of(cls, values: Sequence[int]) -> StepStats:
        if not values:
            return cls(0, 0, 0.0)
        return cls(len(values), max(values), sum(values) / len(values))


@dataclass(frozen=True)
class Heap:
    """Bytes in use above the baseline taken before the firmware was imported."""

    code: int  # live after the import
    boot: int  # live after Bms(...)
    live: int  # live after the steps
    live_max: int  # the largest live heap seen before a step
    high_water: int  # the largest live heap plus what that step allocated

    @property
    def objects(self) -> int:
        return self.boot - self.code


@dataclass(frozen=True)
class Names:
    """Interned names (qstrs: identifiers, attribute names, short strings). MicroPython
    keeps them in pools that double in size; a name that does not fit starts a new
    pool at once, so the heap grows in one step when the firmware crosses a pool."""

    count: int  # names interned after the drive, the harness's and the firmware's
    pools: int
    bytes: int  # pool and string bytes
    room: int  # names that still fit before the next pool
    next_pool_bytes: int  # what the next pool takes when it starts


@dataclass(frozen=True)
class Timing:
    reps: int
    protection_us: float
    reference_us: float
    step_us: float
    protection_ratio: float  # medians of each repetition's ratio
    step_ratio: float
    protection_ratio_iqr: tuple[float, float]
    step_ratio_iqr: tuple[float, float]


@dataclass(frozen=True)
class BoardBudget:
    cells: int
    temps: int
    steps: int
    source: str  # ".py": imported from the sources, as deployed; ".mpy": from mpy-cross
    step_alloc: dict[str, StepStats]
    protection_max: int
    protection_total: int
    protection_locked_ok: bool  # no MemoryError under heap_lock
    protection_locked_faults: int  # fault bits seen during the locked run
    hal_locked_ok: bool
    faults_seen: int
    trips: int  # steps at which a fault bit appeared
    releases: int  # steps at which a fault bit went away
    telemetry_frames: int
    frames_max: int  # the most frames one step sent
    bytes_per_frame_max: int  # the most a step allocated per frame it sent
    heap: Heap
    names: Names | None = None
    timing: Timing | None = None
    kind: str = "adc"  # "adc": the bench HAL's ADC codes; "bq76952": the chip's driver
    measurement_max: int = 0  # HAL.sample + Measurement.update: most allocated by one
    measurement_total: int = 0
    measurement_locked_ok: bool = True  # no MemoryError under heap_lock
    traffic: tuple[Traffic, ...] = ()  # the chip's bus traffic: CRC off, CRC on


I2C_HZ = 400_000
TRAFFIC_FIELDS = ("calls", "starts", "stops", "address", "register", "data", "crc")


@dataclass(frozen=True)
class Wire:
    """What went over the I2C bus: the driver's ``machine.I2C`` calls, START conditions
    (repeated STARTs included), STOPs (one per transfer) and the bytes by kind."""

    calls: int
    starts: int
    stops: int
    address: int
    register: int
    data: int
    crc: int
    subcommands: int = 0  # subcommands the chip ran
    last_command: int = 0  # the last of them

    @classmethod
    def of(cls, row: Sequence[int]) -> Wire:
        return cls(*row)

    @property
    def transfers(self) -> int:  # START ... STOP, a register read's repeated START inside
        return self.stops

    @property
    def nbytes(self) -> int:
        return self.address + self.register + self.data + self.crc

    @property
    def bit_times(self) -> int:
        """9 clocks a byte (8 bits and the ACK), one for each START, repeated START
        and STOP."""
        return 9 * self.nbytes + self.starts + self.stops

    def seconds(self, hz: int = I2C_HZ) -> float:
        return self.bit_times / hz

    def key(self) -> tuple[int, ...]:
        return (self.calls, self.starts, self.stops, self.address, self.register,
                self.data, self.crc)


@dataclass(frozen=True)
class Traffic:
    """The chip's bus traffic over a drive cycle, CRC on or off."""

    crc: bool
    boot: Wire  # Bms built: the chip at its defaults configured, armed, FETs blocked
    steps: tuple[Wire, ...]  # each control step
    balance: Wire  # one CB_ACTIVE_CELLS change (written, then read back)
    bus_errors: tuple[int, ...]

    @property
    def steady(self) -> tuple[Wire, ...]:
        """The steps that sent no command (FETs and balancing unchanged)."""
        return tuple(w for w in self.steps if not w.subcommands)

    @property
    def commands(self) -> dict[int, Wire]:
        """A step that sent a command, by its last command (the largest of each)."""
        out: dict[int, Wire] = {}
        for w in self.steps:
            if w.subcommands and (w.last_command not in out
                                  or w.nbytes > out[w.last_command].nbytes):
                out[w.last_command] = w
        return out


def traffic_of(raw: list[Any]) -> Traffic:
    crc, boot, steps, balance, errors = raw
    return Traffic(bool(crc), Wire.of([*boot[:7], boot[7], 0]),
                   tuple(Wire.of(r) for r in steps), Wire.of(balance), tuple(errors))


COMMAND_NAMES = {0x0093: "DSG_PDSG_OFF", 0x0094: "CHG_PCHG_OFF", 0x0095: "ALL_FETS_OFF",
                 0x0096: "ALL_FETS_ON", 0x0083: "CB_ACTIVE_CELLS"}


STEP_KINDS = ("all", "quiet", "quiet, fault active", "telemetry", "fault event")


def _classify(delta: list[int], frames: list[int], tele: list[int],
              faults: list[int]) -> dict[str, StepStats]:
    kinds: dict[str, list[int]] = {k: [] for k in STEP_KINDS}
    for d, f, t, fl in zip(delta, frames, tele, faults, strict=True):
        kinds["all"].append(d)
        if f > t:
            kinds["fault event"].append(d)
        elif t:
            kinds["telemetry"].append(d)
        else:
            kinds["quiet"].append(d)
            if fl:
                kinds["quiet, fault active"].append(d)
    return {k: StepStats.of(v) for k, v in kinds.items()}


def all_fault_bits() -> int:
    """Every FAULT_* bit of the protocol (some may have no protection yet)."""
    bits = 0
    for name, value in vars(fw_codec).items():
        if name.startswith("FAULT_") and isinstance(value, int):
            bits |= value
    return bits


def _transitions(trace: Sequence[int]) -> tuple[int, int, int]:
    """(bits seen, trips, releases), counted per bit."""
    seen = trips = releases = 0
    prev = 0
    for f in trace:
        seen |= f
        trips += bin(f & ~prev).count("1")
        releases += bin(prev & ~f).count("1")
        prev = f
    return seen, trips, releases


def _build_tool() -> ModuleType:
    """tools/build_mpy.py (tools/ is not a package): the project's one mpy-cross build."""
    return _file_module("cellguard_tools_build_mpy", BUILD_TOOL)


def build_mpy(firmware: Path | None = None) -> dict[str, bytes]:
    """The firmware package compiled as deployed ({"cellguard_fw/x.mpy": bytes}): short
    source names, so the bytes (and the heap they need) do not depend on where
    ``firmware`` (default: the repository's) sits."""
    tool = _build_tool()
    with tempfile.TemporaryDirectory(prefix="cellguard-mpy-") as tmp:
        try:
            return tool.build_package(firmware or firmware_dir(), Path(tmp))
        except tool.BuildError as e:
            raise SystemExit(str(e)) from None


def install_mpy(rt: MicroPythonRuntime, firmware: Path | None = None) -> int:
    """Compile the firmware package with mpy-cross into the runtime's filesystem, first
    on its ``sys.path``; return the bytes of .mpy written. Call before measure_board."""
    return rt.install_mpy(build_mpy(firmware))


_QSTR_INFO = re.compile(r"n_pool=(\d+), n_qstr=(\d+), n_str_data_bytes=\d+, n_total_bytes=(\d+)")

# Interns fresh names one at a time (an attribute name is interned), printing the
# pool counts after each, until a new pool starts. Run after every other figure.
NAMES_PROBE = """
class _Probe:
    pass
micropython.qstr_info()
for _i in range({limit}):
    setattr(_Probe, "zq%d" % _i, 0)
    micropython.qstr_info()
"""


def qstr_counts(text: str) -> list[tuple[int, int, int]]:
    """(pools, names, bytes) of every ``micropython.qstr_info()`` line in ``text``."""
    return [(int(a), int(b), int(c)) for a, b, c in _QSTR_INFO.findall(text)]


def measure_names(rt: MicroPythonRuntime, limit: int = 2000) -> Names:
    """The interned names now, and how many more fit before the next pool (found by
    interning throwaway names: call it last, it changes the heap)."""
    counts = qstr_counts(rt.exec(NAMES_PROBE.format(limit=limit), 120.0))
    pools, count, used = counts[0]
    for k in range(1, len(counts)):
        if counts[k][0] > pools:
            return Names(count, pools, used, k - 1, counts[k][2] - counts[k - 1][2])
    raise SystemExit(f"no new qstr pool after {limit} names")


def _json_line(rt: MicroPythonRuntime, source: str, timeout_s: float = 300.0) -> Any:
    out = rt.exec(source, timeout_s).strip().splitlines()
    return json.loads(out[-1])


def measure_board(rt: MicroPythonRuntime, cells: int, temps: int, steps: int = 2000,
                  reps: int = 0, batch_ms: float = 100.0, mpy: bool = False,
                  firmware: Path | None = None) -> BoardBudget:
    """Allocation and heap figures (and with ``reps`` > 0, timing) for one board.

    ``rt`` must be a fresh runtime: the heap figures count the firmware's import. With
    ``mpy``, the firmware is imported from mpy-cross output instead of its sources
    (compiled from ``firmware``, default the repository's).
    """
    if mpy:
        install_mpy(rt, firmware)
    board = make_board(cells, temps)
    codes = adc_codes(board)
    harness = (HARNESS_HEAD + ADC_HARNESS + common_harness("", ADC_MAKE_HAL)
               + harness_data(board, codes, steps))
    return _measure(rt, board, codes, harness, steps, reps, batch_ms,
                    ".mpy" if mpy else ".py", "adc", "_hal.fill")


# What the rare modules (imported for a moment, then released) leave interned: the
# lifetime record's reader at boot, the writes' module at the first write.
RARE_IMPORTS: tuple[tuple[str, str], ...] = (
    ("boot: the lifetime record read (life_admin)",
     "from cellguard_fw import life_admin, codec_rare\nlife_admin.release()\n"
     "del life_admin, codec_rare"),
    ("the first write (admin)", "from cellguard_fw import admin\nadmin.release()\ndel admin"),
)


@dataclass(frozen=True)
class RareNames:
    """Interned names after one rare module came and went."""

    label: str
    names: int
    pools: int
    name_bytes: int  # the pools and their text on the heap (qstr_info's n_total_bytes)


def measure_rare_names(rt: MicroPythonRuntime, cells: int = 16, temps: int = 16,
                       steps: int = 50) -> list[RareNames]:
    """The .mpy firmware of a ``cells``-cell board after ``steps`` steps, then after each
    of :data:`RARE_IMPORTS` in turn: the names they intern stay, and a name past the
    last pool's room starts a new pool (``rt`` fresh)."""
    install_mpy(rt)
    board = make_board(cells, temps)
    codes = adc_codes(board)
    rt.exec(HARNESS_HEAD + ADC_HARNESS + common_harness("", ADC_MAKE_HAL)
            + harness_data(board, codes, steps))
    for op in (0, 1, 2, 3):
        rt.exec(f"_do({op})\ngc.collect()")
    for _ in range(steps):
        rt.exec("_do(4)\ngc.collect()")

    def now(label: str) -> RareNames:
        out = rt.exec("import micropython\nmicropython.qstr_info()")
        found = re.search(r"n_pool=(\d+), n_qstr=(\d+), .*n_total_bytes=(\d+)", out)
        if found is None:
            raise SystemExit(f"no qstr_info line in {out!r}")
        return RareNames(label, int(found.group(2)), int(found.group(1)), int(found.group(3)))

    out = [now("after the drive")]
    for label, source in RARE_IMPORTS:
        rt.exec(source)
        out.append(now(label))
    return out


def report_rare_names(rows: Sequence[RareNames], cells: int = 16, temps: int = 16) -> None:
    print(f"\nNames the rare modules leave interned, {cells}s/{temps}t .mpy (each imported, "
          "then released)")
    print(f"{'after':<46}{'names':>7}{'pools':>7}{'pool bytes':>12}")
    for r in rows:
        print(f"{r.label:<46}{r.names:>7}{r.pools:>7}{r.name_bytes:>10} B")
    print("  pool bytes: the names' pools and text on the heap (qstr_info's n_total_bytes); "
          "they stay\n  for good, a new pool with them.")


def measure_chip_board(rt: MicroPythonRuntime, steps: int = 2000, reps: int = 0,
                       batch_ms: float = 100.0, firmware: Path | None = None,
                       traffic_steps: int | None = None,
                       board: dict[str, Any] | None = None) -> BoardBudget:
    """The same figures for a BQ76952 board (default ``boards/pico-bq76952-16s.json``;
    estimator off) as deployed: the firmware as .mpy, ``Bms(board, Bq76952Hal(board,
    bus), port)`` over a register image of the chip that the drive fills in the chip's
    units; then the bus traffic, with CRC off and on, over ``traffic_steps`` (default
    one drive cycle; 0: no traffic run)."""
    install_mpy(rt, firmware)
    board = make_chip_board(board)
    codes, extra = chip_codes(board)
    harness = (HARNESS_HEAD + image_bus_source() + CHIP_HARNESS
               + common_harness("        _import_hal()\n", "_make_hal(board)")
               + harness_data(board, codes, steps) + extra + "\n_bus = BenchBus("
               + repr(bool(board["afe"].get("crc", False))) + ")\n")
    figures = _measure(rt, board, codes, harness, steps, reps, batch_ms, ".mpy", "bq76952",
                       "_scenario_raw")
    n = traffic_steps if traffic_steps is not None else len(codes.schedule)
    traffic = tuple(traffic_of(_json_line(rt, f"print(json.dumps(_traffic({crc}, {n})))"))
                    for crc in (False, True)) if n > 0 else ()
    return replace(figures, traffic=traffic)


def _measure(rt: MicroPythonRuntime, board: dict[str, Any], codes: Codes, harness: str,
             steps: int, reps: int, batch_ms: float, source: str, kind: str,
             fill: str) -> BoardBudget:
    dt = board["control_period_ms"]
    rt.exec(harness)
    rt.exec("gc.collect()")
    for op in (0, 1, 2, 3):
        rt.exec(f"_do({op})\ngc.collect()")
    for _ in range(steps):
        rt.exec("_do(4)\ngc.collect()")
    rt.exec("_do(5)\ngc.collect()")
    raw = _json_line(rt, "print(json.dumps([list(_heap), list(_before), list(_delta), "
                         "list(_frames), list(_tele), list(_faults)]))")
    heap_raw, before, delta, frames, tele, faults = raw
    base = heap_raw[0]
    heap = Heap(code=heap_raw[1] - base, boot=heap_raw[2] - base, live=heap_raw[3] - base,
                live_max=max(before) - base,
                high_water=max(a + d for a, d in zip(before, delta, strict=True)) - base)
    seen, trips, releases = _transitions(faults)

    rt.exec(AFTER_STEPS.format(scenarios=len(SCENARIO_NAMES), fill=fill))
    p_max, p_total = _json_line(rt, f"print(json.dumps(_protection_alloc({steps}, {dt})))")
    locked = _json_line(rt, f"print(json.dumps([_protection_locked({steps}, {dt}), "
                            f"_hal_locked({len(codes.schedule)}), list(_pfaults)]))")
    p_locked, hal_locked, p_trace = locked
    p_seen, _, _ = _transitions(p_trace)
    n = len(codes.schedule)  # the measurement path through every scenario
    m_max, m_total = _json_line(rt, f"print(json.dumps(_meas_alloc({n}, {dt})))")
    m_locked = _json_line(rt, f"print(json.dumps(_meas_locked({n}, {dt})))")

    timing = time_board(rt, reps, batch_ms) if reps > 0 else None
    names = measure_names(rt)
    return BoardBudget(
        cells=board["cells"], temps=board["temp_sensors"], steps=steps, source=source,
        step_alloc=_classify(delta, frames, tele, faults),
        protection_max=p_max, protection_total=p_total,
        protection_locked_ok=p_locked == 0, protection_locked_faults=p_seen,
        hal_locked_ok=hal_locked == 0,
        faults_seen=seen, trips=trips, releases=releases, telemetry_frames=sum(tele),
        frames_max=max(frames),
        bytes_per_frame_max=max((-(-d // f) for d, f in zip(delta, frames, strict=True) if f),
                                default=0),
        heap=heap, names=names, timing=timing, kind=kind,
        measurement_max=m_max, measurement_total=m_total,
        measurement_locked_ok=m_locked == 0,
    )


def time_board(rt: MicroPythonRuntime, reps: int, batch_ms: float = 100.0) -> Timing:
    """Interleaved batches of about ``batch_ms`` each, ``reps`` times."""
    counts = []
    for kind in range(4):  # calibrate: double the count until a batch is long enough
        count = 64
        while True:
            elapsed = _json_line(rt, f"print(json.dumps(_batch({kind}, {count})))")
            if elapsed >= batch_ms * 1000 or count >= 1 << 22:
                break
            count = int(count * min(8.0, max(2.0, 1.2 * batch_ms * 1000 / max(elapsed, 1))))
        counts.append(count)
    counts[0] = counts[1]  # the driving loop is timed alone with the protection's count
    prot: list[float] = []
    ref: list[float] = []
    step: list[float] = []
    for _ in range(reps):
        overhead, t_prot, t_ref, t_step = _json_line(
            rt, "print(json.dumps([" + ", ".join(f"_batch({k}, {c})" for k, c in
                                               enumerate(counts)) + "]))", 600.0)
        prot.append((t_prot - overhead) / counts[1])
        ref.append(t_ref / counts[2])
        step.append(t_step / counts[3])
    p_ratio = [p / r for p, r in zip(prot, ref, strict=True)]
    s_ratio = [s / r for s, r in zip(step, ref, strict=True)]
    return Timing(reps, statistics.median(prot), statistics.median(ref),
                  statistics.median(step), statistics.median(p_ratio),
                  statistics.median(s_ratio), _iqr(p_ratio), _iqr(s_ratio))


def _iqr(values: list[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


# -- report ----------------------------------------------------------------------------


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


def _label(b: BoardBudget) -> str:
    chip = "bq " if b.kind == "bq76952" else ""
    return f"{chip}{b.cells}s/{b.temps}t" + (" .mpy" if b.source == ".mpy" else "")


def report(results: list[BoardBudget], mpy: list[BoardBudget], mp_version: str,
           chip: Sequence[BoardBudget] = ()) -> None:
    """Print every figure; ``mpy`` holds heap-only runs with the firmware as .mpy,
    ``chip`` the BQ76952 board's run (as deployed: .mpy)."""
    stepped = [*results, *chip]
    node = shutil.which("node")
    node_version = (subprocess.run([node, "--version"], capture_output=True, text=True,
                                   check=False).stdout.strip() if node else "?")
    print(f"MicroPython {mp_version} (WebAssembly), node {node_version}, "
          f"host {platform.machine()} {platform.system()} {platform.release()}")
    steps = results[0].steps
    cycle = sum(n for _, n in CYCLE)
    print(f"{steps} control steps of 100 ms per board; drive cycle of {cycle} steps: "
          + ", ".join(f"{SCENARIO_NAMES[s]} {n}" for s, n in CYCLE))

    print("\nBytes allocated per Bms.step (gc.mem_alloc just before and after the step; "
          "heap collected\nbefore every step)")
    print(f"{'board':<15}{'steps':<22}{'count':>7}{'max B':>8}{'mean B':>9}")
    for b in stepped:
        for i, kind in enumerate(STEP_KINDS):
            s = b.step_alloc[kind]
            print(f"{_label(b) if i == 0 else '':<15}{kind:<22}{s.count:>7}{s.max:>8}"
                  f"{s.mean:>9.1f}")
    for b in stepped:
        print(f"{_label(b)}: faults seen 0x{b.faults_seen:03x}, {b.trips} trips and "
              f"{b.releases} releases (counted per protection), {b.telemetry_frames} "
              "telemetry frames")
    n_prot = bin(all_fault_bits()).count("1")
    per_frame = max(b.bytes_per_frame_max for b in stepped)
    frames = max(b.frames_max for b in stepped)
    print(f"Per frame sent, a step allocated at most {per_frame} B; at most {frames} frames "
          f"went out in one\nstep in this drive. If all {n_prot} protections "
          f"changed state in the same step, with\ntelemetry: about {n_prot + 1} x {per_frame} "
          f"= {(n_prot + 1) * per_frame} B (an estimate, not measured).")

    print("\nProtection.load + Protection.step, the same drive cycle")
    print(f"{'board':<15}{'calls':>7}{'max B':>7}{'total B':>9}  {'under heap_lock':<36}"
          "HAL.sample under heap_lock")
    for b in stepped:
        lock = (f"no allocation, faults seen 0x{b.protection_locked_faults:03x}"
                if b.protection_locked_ok else "ALLOCATED (MemoryError)")
        hal = "no allocation" if b.hal_locked_ok else "ALLOCATED"
        print(f"{_label(b):<15}{b.steps:>7}{b.protection_max:>7}{b.protection_total:>9}  "
              f"{lock:<36}{hal}")

    print("\nMeasurement path of Bms.step (HAL.sample, the pack reading, Measurement.update), "
          f"{cycle}\ncalls through the drive cycle; bq: the BQ76952 driver over I2C "
          "(CRC on), as in the step")
    print(f"{'board':<15}{'calls':>7}{'max B':>7}{'total B':>9}  under heap_lock")
    for b in stepped:
        lock = "no allocation" if b.measurement_locked_ok else "ALLOCATED (MemoryError)"
        print(f"{_label(b):<15}{cycle:>7}{b.measurement_max:>7}"
              f"{b.measurement_total:>9}  {lock}")

    print("\nHeap in use above the baseline taken before the firmware is imported "
          "(gc.mem_alloc, collected)")
    print(f"{'board':<15}{'code':>9}{'+ Bms':>9}{'= booted':>10}{'after steps':>13}"
          f"{'max live':>10}{'high-water':>12}")
    for b in [*results, *mpy, *chip]:
        h = b.heap
        print(f"{_label(b):<15}{_kb(h.code):>9}{_kb(h.objects):>9}{_kb(h.boot):>10}"
              f"{_kb(h.live):>13}{_kb(h.live_max):>10}{_kb(h.high_water):>12}")
    print("  code: the modules Bms needs, imported (bytecode, module dicts, interned names); "
          "+ Bms: the\n  objects Bms(board, hal, port) builds, board dict included; "
          "high-water: the largest live\n  heap before a step plus what that step "
          "allocated. .mpy: the same firmware precompiled\n  with mpy-cross. The WebAssembly "
          "heap grows on demand, so these are bytes in use, not a\n  limit that was reached. "
          "1 KB = 1024 B.\n  bq: boards/pico-bq76952-16s.json (estimator off) as deployed, "
          "Bms over Bq76952Hal:\n  its code counts the driver and its HAL (which has the Hal "
          "interface itself: hal.py is\n  not loaded; the ADC rows' bench HAL, outside the "
          "figures, stands in for theirs); the\n  register image it reads is the bench's, "
          "outside the figures.")

    print("\nInterned names (qstrs) after the drive, the harness's included")
    print(f"{'board':<15}{'names':>7}{'pools':>7}{'bytes':>9}{'room':>7}{'next pool':>11}")
    for b in [*results, *mpy, *chip]:
        q = b.names
        if q is not None:
            print(f"{_label(b):<15}{q.count:>7}{q.pools:>7}{q.bytes:>9}{q.room:>7}"
                  f"{q.next_pool_bytes:>9} B")
    print("  room: names that still fit in the pools; one more starts a pool of twice the "
          "last one's\n  entries, and the heap grows by 'next pool' at once. On a board, "
          "board_main and its HAL\n  intern about as many names as this harness does.")

    timed = [b for b in stepped if b.timing is not None]
    if timed:
        reps = timed[0].timing.reps if timed[0].timing else 0
        print(f"\nTime per call, median of {reps} interleaved repetitions of ~100 ms batches "
              f"(µs on this\nmachine); reference: {REFERENCE_ADDS:,} integer additions into "
              "a preallocated array")
        print(f"{'board':<15}{'protection':>11}{'reference':>11}{'ratio':>8}{'  (IQR)':<15}"
              f"{'full step':>10}{'ratio':>8}{'  (IQR)':<13}")
        for b in timed:
            t = b.timing
            assert t is not None
            pq = f"  {t.protection_ratio_iqr[0]:.4f}–{t.protection_ratio_iqr[1]:.4f}"
            sq = f"  {t.step_ratio_iqr[0]:.3f}–{t.step_ratio_iqr[1]:.3f}"
            print(f"{_label(b):<15}{t.protection_us:>11.2f}{t.reference_us:>11.1f}"
                  f"{t.protection_ratio:>8.4f}{pq:<15}{t.step_us:>10.1f}{t.step_ratio:>8.3f}"
                  f"{sq:<13}")
        print("  protection: net of the driving loop's own cost (timed alone). full step: "
              "includes the\n  bench HAL's copy of the codes (bq: the driver's reads of "
              "the register image);\n  no garbage collection (this "
              "port collects only between\n  requests). ticks_us ticks in whole ms here. "
              "No RP2040 projection: no published\n  MicroPython figure for a comparable loop "
              "was found to scale by; compare ratios.")

    for t in (tr for b in chip for tr in b.traffic):
        report_traffic(t)

    print("\nGoals")
    print(f"{'goal':<48}{'measured':<30}result")
    for name, measured, ok in goal_checks(results, mpy, chip):
        print(f"{name:<48}{measured:<30}{'PASS' if ok else 'FAIL'}")


def report_traffic(t: Traffic) -> None:
    """The chip's I2C traffic per control period, CRC on or off."""
    steady = t.steady
    kinds = sorted({w.key() for w in steady})
    print(f"\nI2C traffic of the BQ76952 per control step, CRC {'on' if t.crc else 'off'} "
          f"({len(t.steps)} steps of the drive, counted\nat the bus; time at "
          f"{I2C_HZ // 1000} kHz: 9 clocks a byte, one per START, repeated START and STOP)")
    print(f"{'step':<34}{'transfers':>10}{'calls':>6}{'addr':>5}{'reg':>5}{'data':>6}"
          f"{'CRC':>5}{'bytes':>7}{'bus time':>11}")
    rows: list[tuple[str, Wire]] = []
    if steady:
        rows.append((f"steady ({len(steady)} steps"
                     + (", all alike)" if len(kinds) == 1 else f", {len(kinds)} kinds)"),
                     max(steady, key=lambda w: w.nbytes)))
    for cmd, w in sorted(t.commands.items()):
        rows.append((f"with {COMMAND_NAMES.get(cmd, hex(cmd))}", w))
    if steady:
        b = t.balance
        rows.append(("steady + CB_ACTIVE_CELLS change", Wire(
            *(x + y for x, y in zip(max(steady, key=lambda w: w.nbytes).key(), b.key(),
                                    strict=True)), b.subcommands, b.last_command)))
    rows.append(("  the balancing change alone", t.balance))
    rows.append(("boot: every setting written", t.boot))
    for name, w in rows:
        print(f"{name:<34}{w.transfers:>10}{w.calls:>6}{w.address:>5}{w.register:>5}"
              f"{w.data:>6}{w.crc:>5}{w.nbytes:>7}{w.seconds() * 1000:>8.2f} ms")
    if any(t.bus_errors):
        print(f"  bus errors counted by the driver: {t.bus_errors}")


def goal_checks(results: list[BoardBudget], mpy: Sequence[BoardBudget] = (),
                chip: Sequence[BoardBudget] = ()) -> list[tuple[str, str, bool]]:
    """(goal, measured, met) for each goal."""
    stepped = [*results, *chip]
    p_max = max(b.protection_max for b in stepped)
    p_ok = all(b.protection_max == 0 and b.protection_total == 0 and b.protection_locked_ok
               for b in stepped)
    worst = max(stepped, key=lambda b: b.step_alloc["all"].max)
    step_max = worst.step_alloc["all"].max
    where = (_label(worst) if sum(b.step_alloc["all"].max == step_max for b in stepped) == 1
             else "every board")
    goals = [
        ("protection step allocates 0 bytes",
         f"max {p_max} B, heap_lock {'clean' if p_ok else 'ALLOCATED'}", p_ok),
        (f"full control step < {GOAL_STEP_BYTES} B allocated",
         f"max {step_max} B ({where})", step_max < GOAL_STEP_BYTES),
    ]
    for b in mpy:  # as deployed; imported from .py it needs more (the compiler's output)
        if b.cells == 16:
            hw = b.heap.high_water
            goals.append((f"heap high-water < {GOAL_HEAP_BYTES // 1024} KB, 16 cells "
                          f"({b.source})", f"{_kb(hw)} ({hw} B)", hw < GOAL_HEAP_BYTES))
    for b in chip:
        hw = b.heap.high_water
        goals.append((f"16-cell BQ76952 heap high-water < {GOAL_HEAP_BYTES // 1024} KB "
                      f"({b.source})", f"{_kb(hw)} ({hw} B)", hw < GOAL_HEAP_BYTES))
        ok = b.measurement_max == 0 and b.measurement_total == 0 and b.measurement_locked_ok
        goals.append(("measurement path allocates 0 B (BQ76952)",
                      f"max {b.measurement_max} B, heap_lock "
                      f"{'clean' if b.measurement_locked_ok else 'ALLOCATED'}", ok))
    return goals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Firmware allocation, heap and time budget "
                                             "under real MicroPython.")
    ap.add_argument("--steps", type=int, default=2000, help="control steps per board (2000)")
    ap.add_argument("--reps", type=int, default=15, help="timing repetitions per board (15)")
    ap.add_argument("--batch-ms", type=float, default=100.0,
                    help="length of one timed batch, ms (100)")
    ap.add_argument("--no-timing", action="store_true", help="allocation and heap only")
    ap.add_argument("--no-mpy", action="store_true",
                    help="skip the heap run with the firmware precompiled by mpy-cross")
    ap.add_argument("--no-chip", action="store_true",
                    help="skip the 16-cell BQ76952 board (pico-bq76952-16s, .mpy)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run in seconds: the 4-cell board, the 16-cell .mpy run and "
                         "the BQ76952 board, one drive cycle (200 steps), one timing "
                         "repetition of 10 ms batches")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.reps < 1 or args.batch_ms <= 0:
        ap.error("--steps, --reps and --batch-ms must be positive")
    boards = BOARDS
    if args.quick:
        args.steps, args.reps, args.batch_ms = sum(n for _, n in CYCLE), 1, 10.0
        boards = BOARDS[:1]

    t0 = time.perf_counter()
    results: list[BoardBudget] = []
    mpy: list[BoardBudget] = []
    mp_version = "?"
    runs = [(cells, temps, False) for cells, temps in boards]
    if not args.no_mpy:
        runs.append((16, 16, True))
    for cells, temps, as_mpy in runs:
        rt = MicroPythonRuntime()  # a fresh interpreter: the import is counted every time
        try:
            mp_version = ".".join(str(v) for v in json.loads(rt.exec(
                "import json\nprint(json.dumps(sys.implementation.version[:3]))")))
            reps = 0 if args.no_timing or as_mpy else args.reps
            b = measure_board(rt, cells, temps, args.steps, reps, args.batch_ms, as_mpy)
        finally:
            rt.close()
        (mpy if as_mpy else results).append(b)
    for b in [*results, *mpy]:
        missing = all_fault_bits() & ~b.faults_seen
        if missing or not b.trips or not b.releases:
            print(f"NOTE: {_label(b)}: the drive did not trip and release every protection "
                  f"(bits never seen 0x{missing:x}; {b.trips} trips, {b.releases} releases)")
    chip: list[BoardBudget] = []
    if not args.no_chip:
        rt = MicroPythonRuntime()
        try:
            chip.append(measure_chip_board(rt, args.steps, 0 if args.no_timing else args.reps,
                                           args.batch_ms))
        finally:
            rt.close()
    for b in chip:
        missing = BASIC_FAULTS & ~b.faults_seen
        if missing or not b.trips or not b.releases:
            print(f"NOTE: {_label(b)}: the drive did not trip and release the basic "
                  f"protections (bits never seen 0x{missing:x})")
    report(results, mpy, mp_version, chip)
    if not args.no_mpy:
        rt = MicroPythonRuntime()
        try:
            report_rare_names(measure_rare_names(rt, steps=min(args.steps, 50)))
        finally:
            rt.close()
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
