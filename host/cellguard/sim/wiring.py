"""The virtual dev board's wiring to its plant, from the board file (docs/virtual_board.md).

What each pin of a Pico or ESP32 board carries, as ``cellguard.sim.fake_machine.AdcBench``
describes it for the board HAL under CPython: the mux select pins pick which cell the
cell ADC pin sees (through the front end's divider/amplifier: ``full_scale_mv`` at the
cell is 3.3 V at the pin), the shunt amplifier and the NTCs sit on their ADC pins, and
the output pin (with the precharge, charge/discharge enable and balancing pins where
the board has them) drives the plant's switch. The front end is the simulated board's
:class:`SensorModel` (its noise and its injected faults: open wires, a stuck reading,
an open or shorted NTC, current offset and gain); the MCU's own converter is
:class:`AdcModel` (seeded noise, the RP2040's DNL steps, the ESP32's curve and its
calibration), sampled here on the host.

The board reads ADC codes from rings the host refills at every plant tick:
``adc_samples`` modelled readings per pin (and per mux channel on the cell pin), each
a ``read_u16`` value and, on an ESP32, the ``read_uv`` its calibration gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .adc import REF_V, AdcModel, _u16
from .plant import (
    OUT_BALANCE_SHIFT,
    OUT_CHARGE,
    OUT_CLOSED,
    OUT_DISCHARGE,
    OUT_PRECHARGE,
    Plant,
)
from .sensors import SensorModel


class PinWiring:
    """A board file's pins wired to a plant through a sensor model and an ADC model."""

    def __init__(self, board: dict[str, Any], sensors: SensorModel, adc: AdcModel,
                 samples: int = 16) -> None:
        pins = board["pins"]
        self.board = board
        self.sensors = sensors
        self.adc = adc
        self.samples = samples
        self.cell_pin: int = pins["cell_adc"]
        self.select: list[int] = list(pins["mux_select"])
        self.current_pin: int = pins["current_adc"]
        self.temp_pins: list[int] = list(pins["temp_adcs"])
        self.pack_pin: int | None = pins.get("pack_adc")
        self.output: int = pins["output"]
        self.precharge: int | None = pins.get("precharge")
        self.charge_enable: int | None = pins.get("charge_enable")
        self.discharge_enable: int | None = pins.get("discharge_enable")
        self.balance: list[int] = list(pins.get("balance") or [])
        self.feedback: int | None = pins.get("feedback")
        self.n_cells: int = board["cells"]
        self.manual: set[int] = set()  # ADC pins the host set by hand (set_adc_mv)

    @property
    def watch(self) -> list[int]:
        """The pins whose levels drive the plant (reported at every tick)."""
        extra = [p for p in (self.precharge, self.charge_enable, self.discharge_enable)
                 if p is not None]
        return [self.output, *extra, *self.balance]

    def options(self, tick_ms: float) -> dict[str, Any]:
        """What the board process needs to know of the wiring."""
        return {"cell_pin": self.cell_pin, "select": self.select, "watch": self.watch,
                "tick_ms": tick_ms}

    def outputs(self, levels: list[int]) -> int:
        """The plant's ``OUT_*`` flags from the levels of :attr:`watch`'s pins."""
        level = dict(zip(self.watch, levels, strict=True))
        out = OUT_CLOSED if level[self.output] else 0
        if self.precharge is not None and level[self.precharge]:
            out |= OUT_PRECHARGE
        # A board without separate enables lets both directions through its one switch.
        if self.charge_enable is None or level[self.charge_enable]:
            out |= OUT_CHARGE
        if self.discharge_enable is None or level[self.discharge_enable]:
            out |= OUT_DISCHARGE
        mask = sum(level[p] << i for i, p in enumerate(self.balance))
        return out | (mask << OUT_BALANCE_SHIFT)

    def pin_voltages(self, plant: Plant) -> dict[str, float]:
        """Every wired ADC input's voltage now: ``"pin"``, or ``"pin:channel"`` for
        each mux channel of the cell pin (a channel without a cell is grounded)."""
        s = self.sensors
        volts: dict[str, float] = {}
        cells = s.cell_codes(plant)  # open wires, stuck readings, the front end's noise
        s.last_cell_codes = cells
        for k in range(1 << len(self.select)):
            code = cells[k] if k < len(cells) else 0
            volts[f"{self.cell_pin}:{k}"] = code / s.cell_max * REF_V
        current = s.current_code(s.sensed_current_a(plant.current_a))
        volts[str(self.current_pin)] = current / s.cur_max * REF_V
        for pin, code in zip(self.temp_pins, s.temp_codes(plant.sensors_temperature_c()),
                             strict=True):
            volts[str(pin)] = code / s.temp_max * REF_V
        if self.pack_pin is not None and s.pack_max:
            code = s.pack_code(plant.pack_voltage_v() + s.pack_offset_v)
            volts[str(self.pack_pin)] = code / s.pack_max * REF_V
        return {k: v for k, v in volts.items() if int(k.split(":")[0]) not in self.manual}

    def readings(self, volts: list[float]) -> tuple[np.ndarray, np.ndarray | None]:
        """``samples`` modelled readings of each pin at ``volts``, in one draw: rows of
        read_u16 values and (ESP32) of the read_uv values its calibration makes of the
        same conversions."""
        raw = self.adc.codes(np.repeat(np.asarray(volts, dtype=float)[:, None],
                                       self.samples, axis=1))
        return _u16(raw), self.adc.uv_of(raw) if self.adc.kind == "esp32" else None

    def code_lines(self, plant: Plant) -> list[str]:
        """The board process's ``codes`` lines for the plant now (each < 4096 bytes)."""
        pins = self.pin_voltages(plant)
        if not pins:
            return []
        u16, uv = self.readings(list(pins.values()))
        return [f"codes {key} {','.join(map(str, u16[i].tolist()))} "
                f"{','.join(map(str, uv[i].tolist())) if uv is not None else '-'}"
                for i, key in enumerate(pins)]
