"""The board HAL (``hal_adc_mux``) under real MicroPython: the same readings
give the same codes as under CPython, and a period's sampling (averaging, the
RP2040 correction, calibration) allocates nothing (``micropython.heap_lock``).

MicroPython gets a replaying ``machine.py`` (written into its filesystem): each
ADC pin, and each mux channel of the cell pin, replays a list of readings the
host drew from the modelled ADC; CPython replays the same lists through
``cellguard.sim.fake_machine``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from adc_bench import board, make_hal

from cellguard.sim.adc import AdcModel
from cellguard.sim.fake_machine import AdcBench
from cellguard.sim.runtime import MicroPythonRuntime

pytestmark = pytest.mark.timeout(120)
ROUNDS = 3

MP_MACHINE = """
from array import array
levels = bytearray(64)
select = SELECT
tables = TABLES  # pin -> one list of readings per mux channel (one for other pins)

class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        if value is not None:
            levels[id] = value

    def value(self, v=None):
        if v is None:
            return levels[self.id]
        levels[self.id] = v

class ADC:
    ATTN_11DB = 3
    def __init__(self, pin, atten=None):
        self.data = [array("l", t) for t in tables[pin.id]]
        self.mux = len(self.data) > 1
        self.at = array("H", [0] * len(self.data))

    def read_u16(self):
        ch = 0
        if self.mux:
            for b in range(len(select)):
                ch |= levels[select[b]] << b
        i = self.at[ch]
        self.at[ch] = i + 1
        return self.data[ch][i]

    read_uv = read_u16

def unique_id():
    return b"mp"
"""


class Replay(AdcBench):
    """The bench, replaying recorded readings instead of drawing new ones."""

    def __init__(self, cfg: dict[str, Any], tables: dict[int, list[list[int]]]) -> None:
        super().__init__(cfg, AdcModel("ideal"))
        self.tables = tables
        self.at: dict[tuple[int, int], int] = {}

    def _next(self, pin: int) -> int:
        ch = self.channel() if len(self.tables[pin]) > 1 else 0
        i = self.at.get((pin, ch), 0)
        self.at[(pin, ch)] = i + 1
        return self.tables[pin][ch][i]

    def read_u16(self, pin: int) -> int:
        return self._next(pin)

    def read_uv(self, pin: int) -> int:
        return self._next(pin)


def record(cfg: dict[str, Any], kind: str) -> dict[int, list[list[int]]]:
    """Readings of every ADC pin for ROUNDS periods, from the modelled ADC."""
    bench = AdcBench(cfg, AdcModel(kind, seed=7))
    bench.cells_v = [3.31, 3.72, 4.19, 4.26]
    bench.current_a = -3.5
    n = cfg["adc_samples"] * ROUNDS
    pins = cfg["pins"]
    read = bench.read_uv if kind == "esp32" else bench.read_u16
    tables: dict[int, list[list[int]]] = {}
    cells = []
    for ch in range(cfg["cells"]):
        for bit, p in enumerate(pins["mux_select"]):
            bench.levels[p] = (ch >> bit) & 1
        cells.append([read(pins["cell_adc"]) for _ in range(n)])
    tables[pins["cell_adc"]] = cells
    for p in [pins["current_adc"], *pins["temp_adcs"]]:
        tables[p] = [[read(p) for _ in range(n)]]
    return tables


@pytest.fixture(scope="module")
def rt() -> Any:
    runtime = MicroPythonRuntime()
    yield runtime
    runtime.close()


@pytest.mark.parametrize(("name", "kind"), [("pico-4s", "rp2040"), ("esp32-4s", "esp32")])
def test_hal_samples_alike_and_allocation_free_under_micropython(rt: Any, name: str,
                                                                  kind: str) -> None:
    cfg = board(name)
    cfg["adc_samples"] = 8
    cfg["frontend"]["cell_adc"]["calibration"] = [[1.004, -2], [0.997, 3], [1.0, 0], [1.01, 1]]
    cfg["frontend"]["current_adc"]["calibration"] = [0.99, 25]
    tables = record(cfg, kind)
    # CPython: the same readings through the fake machine
    hal = make_hal(copy.deepcopy(cfg), Replay(cfg, tables))
    want = []
    for _ in range(ROUNDS):
        cells, temps = [0] * cfg["cells"], [0] * cfg["temp_sensors"]
        current = hal.sample(cells, temps)
        want.append([cells, temps, current])
    source = MP_MACHINE.replace("SELECT", repr(cfg["pins"]["mux_select"])).replace(
        "TABLES", repr(tables))
    out = rt.exec(f"""
import sys, json, gc, micropython
from array import array
with open("/fw/machine.py", "w") as f:
    f.write({source!r})
for m in ("machine", "cellguard_fw.hal_adc_mux"):
    sys.modules.pop(m, None)
from cellguard_fw.hal_adc_mux import AdcMuxHal
hal = AdcMuxHal(json.loads({json.dumps(cfg)!r}))
cells = array("l", [0] * {cfg["cells"]})
temps = array("l", [0] * {cfg["temp_sensors"]})
got = []
for r in range({ROUNDS - 1}):
    current = hal.sample(cells, temps)
    got.append([list(cells), list(temps), current])
gc.collect()
micropython.heap_lock()
try:
    current = hal.sample(cells, temps)
    micropython.heap_unlock()
    alloc = "NO-ALLOC"
except MemoryError:
    micropython.heap_unlock()
    alloc = "ALLOCATED"
got.append([list(cells), list(temps), current])
print(json.dumps(got))
print(alloc)
""")
    lines = out.strip().splitlines()
    assert lines[-1] == "NO-ALLOC", out
    assert json.loads(lines[-2]) == want
