"""The BQ76952 HAL under real MicroPython: one measurement cycle of a 16-cell
board (``Bq76952Hal.sample``) and the FET and balancing commands, with CRC off
and on, allocate nothing (``micropython.heap_lock``), and read what CPython reads.

The bus is ``bq76952_bus.ImageBus`` (copied onto MicroPython's filesystem): a
preallocated register image the reads copy from, so the lock measures the driver.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bq76952_bus import ImageBus

from cellguard.sim.runtime import MicroPythonRuntime
from cellguard_fw.hal_bq76952 import Bq76952Hal

pytestmark = pytest.mark.timeout(180)
BUS = Path(__file__).with_name("bq76952_bus.py")


def board(crc: bool) -> dict[str, Any]:
    return {
        "name": "t", "cells": 16, "temp_sensors": 3, "chemistry": "lfp",
        "capacity_mah": 100000, "charge_current_max_ma": 50000,
        "discharge_current_max_ma": 100000, "control_period_ms": 100,
        "afe": {"chip": "bq76952", "address": 8, "crc": crc, "shunt_uohm": 500,
                "ts": ["ts1", "ts3", "int"]},
        "frontend": {"type": "bq76952", "cell_adc": {"full_scale_mv": 5000},
                     "current_adc": {"full_scale_ma": 300000}},
    }


SETUP = """
def fill(bus):
    for i in range(16):
        bus.set16(0x14 + 2 * i, 3200 + 11 * i)
    bus.set16(0x34, 5300)
    bus.set16(0x3A, -4321)
    for i in range(7):
        bus.set16(0x68 + 2 * i, 2900 + 10 * i)
    bus.regs[0x03] = 0x08
    bus.regs[0x7F] = 0x00  # FETs off, as blocked
"""


@pytest.fixture(scope="module")
def rt() -> Any:
    runtime = MicroPythonRuntime()
    yield runtime
    runtime.close()


@pytest.mark.parametrize("crc", [False, True])
def test_sample_allocates_nothing_under_micropython(rt: Any, crc: bool) -> None:
    cfg = board(crc)
    # CPython: what the same image reads as
    bus = ImageBus(8, crc)
    hal = Bq76952Hal(json.loads(json.dumps(cfg)), bus)
    scope: dict[str, Any] = {}
    exec(SETUP, scope)
    scope["fill"](bus)
    cells, temps = [0] * 16, [0] * 3
    current = hal.sample(cells, temps)
    want = [cells, temps, current, hal.chip_trips(), hal.read_pack_code()]
    out = rt.exec(f"""
import sys, json, gc, micropython
from array import array
with open("/fw/bq76952_bus.py", "w") as f:
    f.write({BUS.read_text()!r})
sys.modules.pop("bq76952_bus", None)
from bq76952_bus import ImageBus
from cellguard_fw.hal_bq76952 import Bq76952Hal
{SETUP}
bus = ImageBus(8, {crc})
hal = Bq76952Hal(json.loads({json.dumps(cfg)!r}), bus)
fill(bus)
bus.record = False
cells = array("H", [0] * 16)
temps = array("H", [0] * 3)
current = hal.sample(cells, temps)
trips = fault = pack = 0  # globals exist before the lock: storing them allocates nothing
alloc = ""
gc.collect()
micropython.heap_lock()
try:
    current = hal.sample(cells, temps)
    trips = hal.chip_trips()
    fault = hal.chip_trips()
    pack = hal.read_pack_code()
    hal.set_output(True)  # ALL_FETS_ON
    hal.set_directions(True, False)  # DSG_PDSG_OFF
    hal.set_balancing(0b101)  # CB_ACTIVE_CELLS, read back
    micropython.heap_unlock()
    alloc = "NO-ALLOC"
except MemoryError:
    micropython.heap_unlock()
    alloc = "ALLOCATED"
    current = trips = pack = None
print(json.dumps([list(cells), list(temps), current, trips, pack]))
print(bus.cb_active, hal.sent, hal.balanced)
print(alloc)
""")
    lines = out.strip().splitlines()
    assert lines[-1] == "NO-ALLOC", out
    assert json.loads(lines[-3]) == want
    assert lines[-2] == "5 2 5"  # the commands reached the chip under the lock
    assert want[0][0] == 3200 and want[2] == -4321 * 10  # 10 mA user-amps


def test_start_up_code_is_released_after_start_arm_and_a_reset(rt: Any) -> None:
    """``bq76952_setup`` (data memory, CONFIG_UPDATE, the settings) is imported for
    the HAL's start, its front end, ``arm`` and the re-arm after a chip reset, and
    released after each: not in ``sys.modules`` nor the package, and its code is
    garbage (what the HAL keeps after all of it is less than the module alone).
    The WebAssembly port collects when a request returns: one request per phase."""
    cfg = board(True)
    rt.exec(f"""
import sys, json, gc
with open("/fw/bq76952_bus.py", "w") as f:
    f.write({BUS.read_text()!r})
sys.modules.pop("bq76952_bus", None)
from bq76952_bus import ImageBus
import cellguard_fw
from cellguard_fw.hal_bq76952 import Bq76952Hal
{SETUP}
def loaded():
    return ("cellguard_fw.bq76952_setup" in sys.modules
            or hasattr(cellguard_fw, "bq76952_setup"))
bus = ImageBus(8, True)
bus.record = False  # no log of the transfers or commands: it would grow the heap
bus.commands = None
fill(bus)
board = json.loads({json.dumps(cfg)!r})
cells = [0] * 16
temps = [0] * 3
hal = fe = armed = kept = None
after = []
mem = [0] * 4
gc.collect()
""")
    rt.exec("mem[0] = gc.mem_alloc()\nhal = Bq76952Hal(board, bus)\nafter.append(loaded())\n"
            "fe = hal.frontend(board['frontend'])\nafter.append(loaded())\n"
            "armed = hal.arm([3650, 2500, 600, -200, 50000, 100000, 2000, 450, 0, 100000, "
            "200000, 400000])\nafter.append(loaded())\ngc.collect()")
    # the chip resets: data memory back to blank, POR set; the next sample re-arms it
    rt.exec("mem[1] = gc.mem_alloc()\nbus.dm = bytearray(len(bus.dm))\nbus.regs[0x12] |= 8\n"
            "hal.sample(cells, temps)\nafter.append(loaded())\ngc.collect()")
    rt.exec("mem[2] = gc.mem_alloc()\nimport cellguard_fw.bq76952_setup as kept\ngc.collect()")
    out = rt.exec("mem[3] = gc.mem_alloc()\nprint(json.dumps([after, armed, "
                  "[bus.dm_get(0x9261, 1), bus.dm_get(0x9303, 1) == hal.da, hal.armed], "
                  "list(mem), fe.temp.convert(2982)]))")
    after, armed, rearmed, mem, celsius = json.loads(out.strip().splitlines()[-1])
    assert after == [False, False, False, False]
    assert armed and rearmed == [0xFC, True, True]
    assert celsius == 250  # the front end works without the module
    hal_bytes, module_bytes = mem[1] - mem[0], mem[3] - mem[2]
    # the re-arm left nothing of the module behind (a few hundred bytes move: the
    # fresh data-memory image, the HAL's new settings)
    assert abs(mem[2] - mem[1]) < 512 < module_bytes, mem
    assert hal_bytes < module_bytes, (hal_bytes, module_bytes)


def test_a_chip_board_does_not_load_hal_py() -> None:
    """Bq76952Hal has the whole HAL interface itself: building it, its front end and
    arming it leave ``cellguard_fw.hal`` unimported (about 1.4 KB of heap on a chip
    board)."""
    runtime = MicroPythonRuntime()
    try:
        out = runtime.exec(f"""
import sys, json
with open("/fw/bq76952_bus.py", "w") as f:
    f.write({BUS.read_text()!r})
from bq76952_bus import ImageBus
from cellguard_fw.hal_bq76952 import Bq76952Hal
board = json.loads({json.dumps(board(True))!r})
hal = Bq76952Hal(board, ImageBus(8, True))
fe = hal.frontend(board["frontend"])
hal.arm([3650, 2500, 600, -200, 50000, 100000, 2000, 450, 0, 100000, 200000, 400000])
print(json.dumps([sorted(k for k in sys.modules if k.startswith("cellguard_fw")),
                  hal.read_link_mv(), hal.output_feedback(), hal.set_precharge(True)]))
""")
    finally:
        runtime.close()
    modules, link_mv, feedback, precharge = json.loads(out.strip().splitlines()[-1])
    assert "cellguard_fw.hal_bq76952" in modules and "cellguard_fw.bq76952" in modules
    assert "cellguard_fw.hal" not in modules, modules
    assert (link_mv, feedback, precharge) == (-1, -1, None)
