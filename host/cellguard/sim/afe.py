"""A battery-monitor chip on a simulated board: the chip model on an I2C bus, fed
from the plant through the sensor model, running its own protections on the board's
clock and driving the plant's FETs (docs/bq76952.md).

A board file with an ``"afe"`` object has one: ``{"chip": "bq76952", "address": 8,
"crc": true, "shunt_uohm": 300, "i2c_hz": 400000}``. The simulated board
(``board.py``) and the virtual dev board (``virtual.py``) both use
:class:`MonitorChip`: each plant tick they :meth:`feed` it and :meth:`advance` its
clock, and the plant's switches follow :meth:`outputs`; the firmware reaches the chip
through :meth:`transfer` (the step-based board) or the virtual board's ``machine.I2C``.
"""

from __future__ import annotations

import math
from typing import Any

from ..boards import CHIPS
from .i2c import I2cBus
from .plant import OUT_BALANCE_SHIFT, OUT_CHARGE, OUT_CLOSED, OUT_DISCHARGE, Plant
from .sensors import SensorModel

SHORTED_C = 150.0
"""What a shorted thermistor shows the chip: its hottest reading (°C)."""



class MonitorChip:
    """The board's monitor chip and its bus. The chip counts the bus time of the
    bytes it sees on its own clock (``bus_hz``); the bus counts the transfers."""

    def __init__(self, board: dict[str, Any]) -> None:
        afe = board["afe"]
        kind = afe.get("chip")
        if kind not in CHIPS:
            raise ValueError(f"board {board.get('name')!r}: afe.chip must be one of "
                             f"{', '.join(CHIPS)}, not {kind!r}")
        from .bq76952 import Bq76952

        self.address = int(afe.get("address", 8))
        self.hz = float(afe.get("i2c_hz", 400000))
        cells = int(board["cells"])
        self.chip = Bq76952(cells=cells, cell_inputs=afe.get("cells"),
                            shunt_ohm=float(afe["shunt_uohm"]) * 1e-6,
                            crc=bool(afe.get("crc", False)), address=self.address,
                            bus_hz=self.hz)
        # What each of the board's temperature sensors is: a thermistor on TS1..TS3 or
        # the chip's die ("int"), as the firmware's HAL reads them.
        self.sources: list[str] = list(afe.get("ts") or ["ts1", "ts2", "ts3"][
            :int(board["temp_sensors"])])
        self.bus = I2cBus("afe")
        self.bus.attach(self.address, self.chip)
        self.clock_ms = 0.0  # the board's time at the start of the firmware's step

    def feed(self, sensors: SensorModel, plant: Plant) -> None:
        """The plant as the chip's pins see it now (the sensor model's faults on top)."""
        x = sensors.chip_inputs(plant)
        ts: list[float | None] = [25.0, 25.0, 25.0]  # an unused TS pin: not a thermistor
        die = 25.0
        for source, t in zip(self.sources, x.temps_c, strict=False):
            # A shorted thermistor reads as hot as the chip's table goes.
            value = SHORTED_C if t is not None and math.isinf(t) else t
            if source == "int":
                die = 25.0 if value is None else value
            elif source in ("ts1", "ts2", "ts3"):
                ts[int(source[2]) - 1] = value
        self.chip.stack_offset_v = x.stack_offset_v
        self.chip.set_inputs(cells_v=x.cells_v, current_a=x.current_a, ts_c=ts, die_c=die,
                             pack_v=x.pack_v)

    def advance(self, to_ms: float) -> None:
        self.chip.advance(to_ms)

    def start_step(self, board_ms: float) -> None:
        """The firmware's step begins at ``board_ms`` (its transfers then follow one
        another on the chip's clock, each its bus time later)."""
        self.clock_ms = float(board_ms)

    def transfer(self, ops: list[str]) -> list[str]:
        """One transfer of the firmware's I2C controller (``runtime.I2cTransport``)."""
        return self.bus.transfer(ops, self.clock_ms)

    def outputs(self) -> int:
        """The plant's ``OUT_*`` flags from the chip's FETs and balancing."""
        chg, dsg = self.chip.chg_on, self.chip.dsg_on
        flags = ((OUT_CLOSED if chg or dsg else 0) | (OUT_CHARGE if chg else 0)
                 | (OUT_DISCHARGE if dsg else 0))
        return flags | (self.chip.balancing_mask << OUT_BALANCE_SHIFT)


class ChipWiring:
    """The virtual dev board's wiring (``wiring.PinWiring``'s part) when a monitor chip
    measures the cells: no ADC pin carries a cell, the chip sits on the board's I2C
    pins (``"pins": {"i2c": {"scl": .., "sda": ..}}``) and drives the FETs itself."""

    def __init__(self, monitor: MonitorChip, sensors: SensorModel) -> None:
        self.monitor = monitor
        self.sensors = sensors
        self.watch: list[int] = []  # no MCU pin drives the plant
        self.manual: set[int] = set()
        self.feedback: int | None = None

    def options(self, tick_ms: float) -> dict[str, Any]:
        return {"cell_pin": -1, "select": [], "watch": [], "tick_ms": tick_ms}

    def outputs(self, levels: list[int]) -> int:
        return self.monitor.outputs()

    def code_lines(self, plant: Plant) -> list[str]:
        """The chip's inputs follow the plant; no ADC pin has codes to send."""
        self.monitor.feed(self.sensors, plant)
        return []
