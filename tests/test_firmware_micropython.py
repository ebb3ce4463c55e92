"""The firmware under REAL MicroPython (the WebAssembly port run by Node).

Allocation-free hot paths are checked with ``micropython.heap_lock()``: any heap
allocation in the locked region raises MemoryError, which the harness catches,
unlocks and reports as "ALLOCATED". Results computed under MicroPython are also
compared with the same computation under CPython.
"""

from __future__ import annotations

import itertools
import json
import struct
from array import array
from collections.abc import Iterator

import pytest

from cellguard.paths import boards_dir
from cellguard.sim.runtime import FirmwareCrash, MicroPythonRuntime
from cellguard_fw import codec
from cellguard_fw.app import board_limits
from cellguard_fw.frontend import Frontend
from cellguard_fw.measurement import Measurement
from cellguard_fw.protection import Protection, protection_table

BOARD_NAMES = sorted(p.stem for p in boards_dir().glob("*.json"))
ADC_BOARD_NAMES = [n for n in BOARD_NAMES
                   if "type" not in json.loads((boards_dir() / f"{n}.json").read_text())[
                       "frontend"]]
"""Boards whose front end converts ADC codes (a monitor chip's measurement path:
tests/test_budget.py and tests/test_bq76952_micropython.py)."""
ALL_FAULTS = sum(entry[1] for entry in protection_table())  # every severity
DISCHARGE_BITS = (codec.FAULT_OVERCURRENT_DISCHARGE | codec.FAULT_OVERCURRENT_DISCHARGE_PEAK
                  | codec.FAULT_SHORT_CIRCUIT)
# Protections the hold phase keeps between their release and trip thresholds.
HOLD_BITS = (codec.FAULT_CELL_OVERVOLTAGE | codec.FAULT_CELL_UNDERVOLTAGE
             | codec.FAULT_OVERTEMPERATURE | codec.FAULT_UNDERTEMPERATURE
             | codec.FAULT_OVERCURRENT_CHARGE)
STEP_ALLOCATION_LIMIT = 1024  # bytes per Bms step

# An exception escaping a heap-locked region can wedge the interpreter: fail fast.
pytestmark = pytest.mark.timeout(120)


def board_text(name: str = "sim-4s") -> str:
    return (boards_dir() / f"{name}.json").read_text()


# Runs in MicroPython once per module: the locked-region harness.
HARNESS = """
import gc, json, micropython
from array import array
from binascii import hexlify
from cellguard_fw.app import Bms, board_limits
from cellguard_fw.frontend import Frontend
from cellguard_fw.measurement import Measurement
from cellguard_fw import codec
from cellguard_fw.protection import Protection

def locked(fn, arg):
    # fn(arg) with the heap locked: prints ALLOCATED if it allocated, else NO-ALLOC
    gc.collect()
    micropython.heap_lock()
    try:
        fn(arg)
    except MemoryError:
        micropython.heap_unlock()
        print("ALLOCATED")
        return
    except BaseException:
        micropython.heap_unlock()
        raise
    micropython.heap_unlock()
    print("NO-ALLOC")

def alloc_list(n):
    return [n, n]

def alloc_bytearray(n):
    return bytearray(n)

def alloc_big_int(n):
    return n << 40

def arithmetic_only(n):
    s = 0
    for k in range(n):
        s += k * 3 // 2
    return s
"""

# Plain Python shared by both interpreters: drives a Protection through normal
# operation, trips of every protection, hysteresis holds and releases, recording
# the fault bits of every sample in a preallocated bytearray.
PROTECTION_DRIVE = """
def drive_protection(p, m, trace):
    for k in range(len(trace)):
        phase = k % 600
        if phase < 100 or phase >= 350:  # normal (250 samples: longer than any release)
            m.max_cell_mv = 3700
            m.min_cell_mv = 3650
            m.max_temp_dc = 250
            m.min_temp_dc = 240
            m.current_ma = 0
            m.temps_railed = 0
            m.stuck_ms = 0
            m.pack_mismatch_mv = 0
            m.temp_rise_dc = 0
        elif phase < 200:  # every limit but discharge current beyond its trip
            m.max_cell_mv = 4900
            m.min_cell_mv = 300
            m.max_temp_dc = 650
            m.min_temp_dc = -250
            m.current_ma = 13000
            m.temps_railed = 1
            m.stuck_ms = 70000
            m.pack_mismatch_mv = 500
            m.temp_rise_dc = 50
        elif phase < 300:  # between release and trip: the basic faults hold
            m.max_cell_mv = 4200
            m.min_cell_mv = 2820
            m.max_temp_dc = 575
            m.min_temp_dc = -175
            m.current_ma = 4500
            m.temps_railed = 0
            m.stuck_ms = 0
            m.pack_mismatch_mv = 0
            m.temp_rise_dc = 0
        else:  # discharge overcurrent, its peak level and a short circuit
            m.current_ma = -51000
        p.load(m)
        trace[k] = p.step(100) | p.warnings | p.alarms
"""

PROTECTION_SAMPLES = 1800


def python_protection_trace(board: dict[str, object]) -> bytes:
    namespace: dict[str, object] = {}
    exec(PROTECTION_DRIVE, namespace)
    trace = array("L", [0] * PROTECTION_SAMPLES)
    drive = namespace["drive_protection"]
    assert callable(drive)
    drive(Protection(board_limits(board)), Measurement(4, 2), trace)
    return list(trace)


@pytest.fixture(scope="module")
def mp() -> Iterator[MicroPythonRuntime]:
    rt = MicroPythonRuntime()
    try:
        rt.exec(HARNESS)
        yield rt
    finally:
        rt.close()


def run(rt: MicroPythonRuntime, source: str) -> list[str]:
    return rt.exec(source).strip().splitlines()


# -- the runtime and the harness ---------------------------------------------


def test_runtime_is_micropython(mp: MicroPythonRuntime) -> None:
    out = run(mp, "import sys\nprint(sys.implementation.name)\nprint(micropython.heap_lock)")
    assert out[0] == "micropython"


@pytest.mark.parametrize("fn", ["alloc_list", "alloc_bytearray", "alloc_big_int"])
def test_heap_lock_bites(mp: MicroPythonRuntime, fn: str) -> None:
    """Allocating under heap_lock raises MemoryError here, so the checks below
    cannot pass vacuously."""
    assert run(mp, f"locked({fn}, 1 << 20)") == ["ALLOCATED"]
    # and the heap is usable again afterwards
    assert run(mp, "print(len([1, 2, 3]))") == ["3"]


def test_heap_lock_raises_memory_error_directly(mp: MicroPythonRuntime) -> None:
    # (in a function: storing a new global under the lock would itself allocate)
    out = run(mp, """
def _direct():
    micropython.heap_lock()
    try:
        x = [1, 2, 3]
    except MemoryError:
        micropython.heap_unlock()
        return "MemoryError"
    micropython.heap_unlock()
    return "no error: %d" % len(x)
print(_direct())
""")
    assert out == ["MemoryError"]


def test_harness_passes_allocation_free_code(mp: MicroPythonRuntime) -> None:
    assert run(mp, "locked(arithmetic_only, 1000)") == ["NO-ALLOC"]


def test_firmware_errors_surface(mp: MicroPythonRuntime) -> None:
    with pytest.raises(FirmwareCrash, match="ZeroDivisionError"):
        mp.exec("1 // 0")


# -- (a) protection ----------------------------------------------------------


@pytest.fixture(scope="module")
def protection_trace(mp: MicroPythonRuntime) -> list[str]:
    board = board_text()
    return run(mp, PROTECTION_DRIVE + f"""
_p = Protection(board_limits(json.loads({board!r})))
_m = Measurement(4, 2)
from array import array
_trace = array("L", [0] * {PROTECTION_SAMPLES})
locked(lambda trace: drive_protection(_p, _m, trace), _trace)
print(hexlify(_trace).decode())
""")


def test_protection_step_allocates_nothing(protection_trace: list[str]) -> None:
    assert protection_trace[0] != "ALLOCATED", "Protection.load/step allocated under heap_lock"
    assert protection_trace[0] == "NO-ALLOC"


def test_protection_trips_and_releases_under_lock(protection_trace: list[str]) -> None:
    """The locked run really exercised trips, holds and releases of every protection."""
    trace = decode_trace(protection_trace[1])
    assert len(trace) == PROTECTION_SAMPLES
    seen = 0
    for f in trace:
        seen |= f
    assert seen == ALL_FAULTS
    trips = sum(1 for a, b in itertools.pairwise(trace) if not a and b)
    releases = sum(1 for a, b in itertools.pairwise(trace) if a and not b)
    assert trips == 3 and releases == 3
    assert trace[-1] == 0
    # everything but the discharge-current protections tripped in the charge phase
    assert trace[150] == ALL_FAULTS & ~DISCHARGE_BITS
    assert trace[299] & HOLD_BITS == HOLD_BITS  # held between release and trip
    assert trace[349] & DISCHARGE_BITS == DISCHARGE_BITS


def decode_trace(hex_text: str) -> list[int]:
    raw = bytes.fromhex(hex_text)
    return list(struct.unpack(f"<{len(raw) // 4}L", raw))


def test_protection_same_under_micropython_and_cpython(protection_trace: list[str]) -> None:
    board = json.loads(board_text())
    assert decode_trace(protection_trace[1]) == python_protection_trace(board)


# -- (b) measurement ---------------------------------------------------------


def measurement_codes(board: dict[str, object]) -> tuple[list[list[int]], list[list[int]],
                                                         list[int]]:
    fe = board["frontend"]
    assert isinstance(fe, dict)
    cell_max = (1 << fe["cell_adc"]["bits"]) - 1
    cur_max = (1 << fe["current_adc"]["bits"]) - 1
    temp_max = (1 << fe["temp_adc"]["bits"]) - 1
    cells: list[list[int]] = []
    temps: list[list[int]] = []
    currents: list[int] = []
    for k in range(64):
        cells.append([(k * 7919 + i * 104729) % (cell_max + 1) for i in range(4)])
        temps.append([(k * 613 + i * 1999) % (temp_max + 1) for i in range(2)])
        currents.append((k * 3571) % (cur_max + 1))
    cells[0] = [0, cell_max, cell_max // 2, 1]
    temps[0] = [0, temp_max]
    currents[0:3] = [0, cur_max, fe["current_adc"]["zero_code"]]
    # Then readings that wander within the stuck band (STUCK_BAND codes) while the
    # current steps, repeat exactly, and leave the band: every branch of the
    # stuck-reading check.
    zero = fe["current_adc"]["zero_code"]
    for k in range(32):
        wobble = (k * 37) % (2 * STUCK_BAND + 1) - STUCK_BAND if k % 4 else 0
        cells.append([cell_max // 2 + wobble + (3 * STUCK_BAND if k >= 28 else 0)] * 4)
        temps.append([temp_max // 2, temp_max - k])  # the second one near its rail
        currents.append(zero + (cur_max - zero) * (k // 8 % 2) // 4)
    return cells, temps, currents


STUCK_BAND = 50  # codes
STUCK_CURRENT_MA = 1000


def python_measurements(board: dict[str, object]) -> list[str]:
    cells, temps, currents = measurement_codes(board)
    fe = Frontend(board["frontend"])
    m = Measurement(4, 2, STUCK_CURRENT_MA, STUCK_BAND)
    lines: list[str] = []
    for c, t, i in [*zip(cells, temps, currents, strict=True)] * 20:  # the last round
        if len(lines) == len(cells):
            lines = []
        m.raw_cells[:] = array("H", c)
        m.raw_temps[:] = array("H", t)
        m.update(fe, i, 100, -1)
        lines.append(" ".join(str(v) for v in (
            *m.cells_mv, *m.temps_dc, m.current_ma, m.pack_mv,
            m.min_cell_mv, m.max_cell_mv, m.min_temp_dc, m.max_temp_dc,
            m.stuck_ms, m.temps_railed)))
    return lines


@pytest.mark.parametrize("name", ADC_BOARD_NAMES)
def test_measurement_update_allocates_nothing(mp: MicroPythonRuntime, name: str) -> None:
    board = json.loads(board_text(name))
    cells, temps, currents = measurement_codes(board)
    flat_cells = [v for row in cells for v in row]
    flat_temps = [v for row in temps for v in row]
    n = len(currents)
    out = run(mp, f"""
_fe = Frontend(json.loads({board_text(name)!r})["frontend"])
_m = Measurement(4, 2, {STUCK_CURRENT_MA}, {STUCK_BAND})
_cells = array("H", {flat_cells!r})
_temps = array("H", {flat_temps!r})
_currents = array("H", {currents!r})
_out = array("l", [0] * ({n} * 14))

def _drive(rounds):
    m = _m
    fe = _fe
    out = _out
    for r in range(rounds):
        for k in range({n}):
            for i in range(4):
                m.raw_cells[i] = _cells[4 * k + i]
            for i in range(2):
                m.raw_temps[i] = _temps[2 * k + i]
            m.update(fe, _currents[k], 100, -1)
            o = 14 * k
            for i in range(4):
                out[o + i] = m.cells_mv[i]
            out[o + 4] = m.temps_dc[0]
            out[o + 5] = m.temps_dc[1]
            out[o + 6] = m.current_ma
            out[o + 7] = m.pack_mv
            out[o + 8] = m.min_cell_mv
            out[o + 9] = m.max_cell_mv
            out[o + 10] = m.min_temp_dc
            out[o + 11] = m.max_temp_dc
            out[o + 12] = m.stuck_ms
            out[o + 13] = m.temps_railed

locked(_drive, 20)
for k in range({n}):
    print(" ".join(str(_out[14 * k + j]) for j in range(14)))
""")
    assert out[0] != "ALLOCATED", f"Measurement.update allocated under heap_lock ({name})"
    assert out[0] == "NO-ALLOC"
    # the same numbers as CPython, negative currents and extreme codes included
    expected = python_measurements(board)
    assert out[1:] == expected
    assert any(int(line.split()[6]) < 0 for line in expected)
    stuck = [int(line.split()[12]) for line in expected]
    assert max(stuck) >= 500 and stuck[-1] == 0  # the band held, then left
    assert any(int(line.split()[13]) for line in expected)


# -- (c) a whole Bms step ----------------------------------------------------

BMS_FAKE_HAL = """
from cellguard_fw.hal import Hal

class _FakeHal(Hal):
    def __init__(self, n_cells, n_temps):
        self.cells = array("H", [0] * n_cells)
        self.temps = array("H", [0] * n_temps)
        self.current = 0
        self.closed = False
        self.switches = 0

    def sample(self, raw_cells, raw_temps):
        c = self.cells
        for i in range(len(c)):
            raw_cells[i] = c[i]
        t = self.temps
        for i in range(len(t)):
            raw_temps[i] = t[i]
        return self.current

    def set_output(self, closed):
        self.closed = closed
        self.switches += 1

    def healthy(self, zero_code):
        # every cell at code 48500, every NTC at 2000, no current: inside all limits
        for i in range(len(self.cells)):
            self.cells[i] = 48500
        for i in range(len(self.temps)):
            self.temps[i] = 2000
        self.current = zero_code

    def unique_id(self):
        return b"\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08"

    def storage_dir(self):
        return None


class _NullPort:
    def __init__(self):
        self.written = 0

    def readinto(self, buf):
        return 0

    def write(self, data):
        self.written += len(data)
        return len(data)
"""

BMS_MEASURE = """
def _set_inputs(k, cells, temps, set_current):
    # normal, then an over-voltage long enough to trip, then normal to release
    phase = k % 400
    mv_code = 56000 if 100 <= phase < 150 else 48500   # ~4.27 V / ~3.70 V
    for i in range(len(cells)):
        cells[i] = mv_code
    for i in range(len(temps)):
        temps[i] = _temp_code
    set_current(_zero_code - 300 if phase < 200 else _zero_code + 200)

def _measure(n):
    bms = _bms
    deltas = _deltas
    faults = 0
    for k in range(n):
        _set_inputs(k, _cells_target, _temps_target, _set_current)
        a = gc.mem_alloc()
        bms.step(100)
        deltas[k] = gc.mem_alloc() - a
        faults |= bms.protection.faults
        if bms.latched and not bms.faults:
            bms.clear_faults()  # the host clears the latch once the condition is gone
    return faults

_N = 1000
_deltas = array("l", [0] * _N)
gc.collect()
gc.disable()
try:
    _faults = _measure(_N)
finally:
    gc.enable()
_tele = [_deltas[k] for k in range(_N) if _deltas[k]]
print(max(_deltas), sum(_deltas), len(_tele), _faults, _bms.telemetry_seq, _bms.hal_switches())
"""


def parse_measure(line: str) -> dict[str, int]:
    keys = ("max", "total", "allocating_steps", "faults", "telemetry", "switches")
    values = [int(v) for v in line.split()]
    return dict(zip(keys, values, strict=True))


def report(label: str, figures: dict[str, int]) -> None:
    print(f"\n{label}: max {figures['max']} B/step, total {figures['total']} B over 1000 steps "
          f"({figures['total'] / 1000:.1f} B/step average), "
          f"{figures['allocating_steps']} steps allocated, {figures['telemetry']} telemetry frames")


def test_bms_step_allocation_fake_hal(mp: MicroPythonRuntime) -> None:
    board = json.loads(board_text())
    fe = board["frontend"]
    out = run(mp, BMS_FAKE_HAL + f"""
_board = json.loads({board_text()!r})
_board["switches"] = "single"  # each over-voltage opens the output: a switching cycle
_hal = _FakeHal(_board["cells"], _board["temp_sensors"])
_bms = Bms(_board, _hal, _NullPort())
_bms.hal_switches = lambda: _hal.switches
_cells_target = _hal.cells
_temps_target = _hal.temps
_zero_code = {fe["current_adc"]["zero_code"]}
_temp_code = 2000

def _set_current(code):
    _hal.current = code
""" + BMS_MEASURE)
    figures = parse_measure(out[-1])
    report("Bms.step, fake HAL", figures)
    assert figures["max"] < STEP_ALLOCATION_LIMIT, figures
    # the run exercised trip, release and telemetry, so the figure covers them
    assert figures["faults"] == 0x1
    assert figures["switches"] >= 1 + 2 * 2  # open at boot, then open/close per cycle
    # telemetry at t = 100 ms (first step), then every 1000 ms up to t = 100 s
    assert figures["telemetry"] == 101
    assert figures["total"] > 0, "telemetry encoding should be visible to gc.mem_alloc"


def test_bms_step_allocation_sim_hal(mp: MicroPythonRuntime) -> None:
    """The simulator's own HAL (codes unpacked from bytes) under the same bound."""
    board = json.loads(board_text())
    fe = board["frontend"]
    out = run(mp, f"""
from struct import pack_into
from cellguard_fw.hal_sim import SimBoard
_sim = SimBoard({board_text()!r})
_bms = _sim.bms
_hal = _sim.hal
_bms.hal_switches = lambda: 0
_cells_target = array("H", [0] * _hal.n_cells)
_temps_target = array("H", [0] * _hal.n_temps)
_zero_code = {fe["current_adc"]["zero_code"]}
_temp_code = 2000

def _set_current(code):
    codes = _hal.codes
    for i in range(_hal.n_cells):
        pack_into("<H", codes, 2 * i, _cells_target[i])
    pack_into("<H", codes, 2 * _hal.n_cells, code)
    for i in range(_hal.n_temps):
        pack_into("<H", codes, 2 * (_hal.n_cells + 1 + i), _temps_target[i])
    # the pack divider reads the cells' sum: a 25 V full scale against 5 V per cell
    pack_into("<Hlb", codes, _hal.tail, _cells_target[0] * _hal.n_cells // 5, -1, -1)
""" + BMS_MEASURE)
    figures = parse_measure(out[-1])
    report("Bms.step, SimHal", figures)
    assert figures["max"] < STEP_ALLOCATION_LIMIT, figures
    assert figures["faults"] == 0x1
    assert figures["telemetry"] == 101


def test_protection_setup_is_released_under_micropython(mp: MicroPythonRuntime) -> None:
    """What builds the protection table (its rows, the board's limits) leaves RAM once
    Bms is built: no longer in sys.modules nor on the package, under the real
    runtime (a module's attributes are deleted there as under CPython); the table can
    still be read afterwards."""
    out = run(mp, BMS_FAKE_HAL + f"""
import sys
import cellguard_fw
from cellguard_fw.protection import protection_table
_board = json.loads({board_text()!r})
for _k in range(2):
    _b = Bms(_board, _FakeHal(_board["cells"], _board["temp_sensors"]), _NullPort())
    print("cellguard_fw.protection_setup" in sys.modules, hasattr(cellguard_fw, "protection_setup"),
          _b.protection.count == len(protection_table()))
print("cellguard_fw.protection_setup" in sys.modules)
""")
    assert out == ["False False True", "False False True", "True"], out


# -- (d) board time near its wrap (issue 12, item 11) --------------------------


def test_steps_past_the_clock_wrap_allocate_nothing(mp: MicroPythonRuntime) -> None:
    """Board time and host silence stay small ints: 40 quiet steps starting 2 s
    below 2**30 ms (12.4 days) run under heap_lock; the u32 clock on the wire and
    Unix time carry on across the wrap. On main, time_ms became a big int."""
    out = run(mp, BMS_FAKE_HAL + f"""
_board = json.loads({board_text()!r})
_hal = _FakeHal(_board["cells"], _board["temp_sensors"])
_hal.healthy(_board["frontend"]["current_adc"]["zero_code"])
_bms = Bms(_board, _hal, _NullPort())
for _k in range(30):
    _bms.step(100)
_start = (1 << 30) - 2000
_bms.time_ms = _start
_bms.host_silence_ms = (1 << 30) - 2000
_bms.unix_base = 200000000
_bms.telemetry_due_ms = 100000  # quiet steps: no frame in the locked run

def _quiet(n):
    for k in range(n):
        _bms.step(100)

locked(_quiet, 40)
print(_bms.time_ms < (1 << 30), _bms.host_silence_ms < (1 << 30), _bms.output_closed,
      (_bms.clock() if hasattr(_bms, "clock") else _bms.time_ms) == _start + 4000,
      _bms.unix_base)
""")
    assert out[0] == "NO-ALLOC", out
    small_time, small_silence, closed, wire_ok, unix_base = out[1].split()
    assert small_time == "True" and small_silence == "True" and closed == "True"
    assert wire_ok == "True"  # the wire clock did not jump
    assert int(unix_base) == 200_000_000 + 1_073_741  # whole seconds carried over


# -- (e) the flash model mounted under MicroPython (issue 12, items 1 and 8) ----


def test_flash_model_mounts_and_latches_survive_power_loss(mp: MicroPythonRuntime) -> None:
    """The flash model runs as a mounted VFS in the real runtime: the firmware's
    own open/os.rename reach it. Power lost at every operation of a latch save
    never brings back a word older than a closed record; a trip drives the
    output before the first flash or port write."""
    from cellguard.sim import flash as flash_module

    source = open(flash_module.__file__).read()  # noqa: SIM115 - read once, small
    out = run(mp, source + BMS_FAKE_HAL + f"""
import vfs, os
from cellguard_fw.latches import LatchStore
_fs = FlashModel()
vfs.mount(_fs, "/flash")
_order = []
_fs.on_op = lambda kind, path: _order.append(kind)
LatchStore("/flash/latches.bin").save(1)
_ops0 = _fs.ops
LatchStore("/flash/latches.bin").save(3)
_n = _fs.ops - _ops0
print(_n, " ".join(_order[-_n:]))
_bad = []
for _fail in range(_n + 1):
    _fs.files = {{}}
    _fs.blocks_of = {{}}
    _fs.reboot()
    LatchStore("/flash/latches.bin").save(1)
    _fs.fail_after = _fs.ops + _fail
    try:
        LatchStore("/flash/latches.bin").save(3)
        _done = True
    except PowerLost:
        _done = False
    _fs.reboot()
    _got = LatchStore("/flash/latches.bin").load()
    if _got not in (1, 3) or ((_done or _fail >= 3) and _got != 3):
        _bad.append((_fail, _got))
print("bad", _bad)

class _StoreHal(_FakeHal):
    def storage_dir(self):
        return "/flash"

    def set_output(self, closed):
        if closed != self.closed:
            _order.append("output-" + ("closed" if closed else "open"))
        _FakeHal.set_output(self, closed)

class _OrderPort(_NullPort):
    def write(self, data):
        _order.append("port")
        return len(data)

_board = json.loads({board_text()!r})
_board["estimator"] = "none"
_board["switches"] = "single"  # the trip opens the output (a dual board stops charging)
_hal = _StoreHal(_board["cells"], _board["temp_sensors"])
_hal.healthy(_board["frontend"]["current_adc"]["zero_code"])
_fs.files = {{}}  # a fresh flash: no latch from the runs above
_fs.blocks_of = {{}}
_bms = Bms(_board, _hal, _OrderPort())
for _k in range(30):
    _bms.step(100)
print(_hal.closed)
_hal.cells[0] = 56000
for _k in range(100):
    del _order[:]
    _bms.step(100)
    if not _hal.closed:
        break
print(" ".join(_order))
print(sorted(_fs.files))
""")
    n, kinds = out[0].split(" ", 1)
    assert int(n) == 4
    assert kinds.split() == ["open", "write", "close", "rename"]
    assert out[1] == "bad []"
    assert out[2] == "True"  # the output closed on a healthy pack
    order = out[3].split()
    assert order[0] == "output-open", order
    assert "rename" in order and "port" in order  # the latch saved, the event sent
    assert "/latches.bin" in out[4]
