"""Sensor model between plant and firmware: physical values to the ADC codes
the board's front end would produce (the inverse of ``cellguard_fw.frontend``).

Quantisation is exact; noise (Gaussian, seeded) and the current sensor's
offset and gain error are optional and off by default, so a test can compare
telemetry with the plant within one LSB. The board file's ``"sensors"`` object
sets them (``SENSOR_DEFAULTS``); a caller's values override the file's.

``"adc"`` puts a Pico's or an ESP32's own ADC (``cellguard.sim.adc``) behind
the front end: every code is then what the board HAL (``hal_adc_mux``) would
hand the firmware, ``adc_samples`` modelled readings averaged and corrected.

Sensor faults are injected here (``SimulatedBoard.inject``): an open sense
wire, a frozen cell reading, an open or shorted NTC, an offset or gain error
of the current sensor, an offset of the pack-voltage sensor.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass
from typing import Any

from cellguard_fw.frontend import KELVIN_0C

from .adc import ADC_DEFAULTS, REF_V, AdcModel
from .plant import Plant

TAIL_FORMAT = "<HlbB"
"""After the u16 codes: pack-voltage code (u16, 0 without a ``pack_adc``), DC-link
voltage (i32 mV, -1 where not measured), contactor feedback (i8: 1 closed, 0 open,
-1 where not read), presence button (u8: 1 held); as ``hal_sim.SimHal`` unpacks them."""

SENSOR_DEFAULTS: dict[str, float | str | None] = {
    "noise_lsb": 0.0,  # Gaussian noise (sigma, LSB) on every ADC channel (link: mV)
    "cell_noise_lsb": None,  # on the cell channels (None: noise_lsb)
    "current_noise_lsb": None,  # on the current channel (None: noise_lsb)
    "temp_noise_c": None,  # on each temperature, degC (None: noise_lsb on its code)
    "current_offset_a": 0.0,  # the current sensor reads this much more than the truth
    "current_gain_error": 0.0,  # ... and this fraction more (0.01: 1 % high)
    "adc": None,  # the MCU's own ADC between front end and firmware: "rp2040", "esp32"
    "adc_samples": 16.0,  # ... read this many times a channel, as the board HAL does
}
"""The board file's ``"sensors"`` keys and their defaults."""


def sensor_parameters(board: dict[str, Any],
                      overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The board's ``"sensors"`` object with ``overrides`` over it, over
    :data:`SENSOR_DEFAULTS`, checked (ValueError names a bad key or value)."""
    given = {**(board.get("sensors") or {}), **(overrides or {})}
    unknown = sorted(set(given) - set(SENSOR_DEFAULTS))
    if unknown:
        raise ValueError(f"board {board.get('name')!r}: unknown sensors key "
                         f"{', '.join(unknown)}; valid keys: {', '.join(SENSOR_DEFAULTS)}")
    p = {**SENSOR_DEFAULTS, **given}
    adc = p["adc"]
    if adc is not None and adc not in ADC_DEFAULTS:
        raise ValueError(f"sensors.adc must be one of {', '.join(ADC_DEFAULTS)}, not {adc!r}")
    samples = p["adc_samples"]
    if (isinstance(samples, bool) or not isinstance(samples, int | float)
            or samples != int(samples) or not 1 <= samples <= 256):
        raise ValueError(f"sensors.adc_samples must be a whole number 1..256, not {samples!r}")
    for key, value in p.items():
        if key == "adc" or (value is None and SENSOR_DEFAULTS[key] is None):
            continue
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value)):
            raise ValueError(f"sensors.{key} must be a finite number, not {value!r}")
        if key.endswith(("_lsb", "_c")) and value < 0:
            raise ValueError(f"sensors.{key} must be 0 or more, not {value!r}")
        if key == "current_gain_error" and value <= -1:
            raise ValueError(f"sensors.{key} must be above -1, not {value!r}")
        p[key] = float(value)
    return p


@dataclass
class ChipInputs:
    """A monitor chip's analog inputs (SI units; current positive when charging)."""

    cells_v: list[float]
    current_a: float
    temps_c: list[float | None]  # None: open thermistor; inf: shorted
    pack_v: float
    stack_offset_v: float  # the chip's own top-of-stack reading errs by this much


TEMP_OPEN = "open"  # NTC open: the pull-up takes the input to the top rail
TEMP_SHORTED = "shorted"  # NTC shorted: the input sits at 0


class SensorModel:
    def __init__(self, board: dict[str, Any], seed: int = 1, noise_lsb: float | None = None,
                 config: dict[str, Any] | None = None) -> None:
        """``config``: ``"sensors"`` keys over the board file's; ``noise_lsb``
        (if given) over both."""
        fe = board["frontend"]
        self.n_cells = board["cells"]
        self.n_temps = board["temp_sensors"]
        # A monitor chip (``"type": "bq76952"``) measures by itself: its cells to 1 mV,
        # its current through the shunt and its thermistors through its own pull-ups.
        # What the model gives it is the physical inputs (:meth:`chip_inputs`); the
        # codes below describe the chip's resolution (1 mV a cell, 1 mA, 0.1 K).
        self.chip: str | None = fe.get("type")
        if self.chip is not None:
            fe = {"cell_adc": {"bits": 16, "full_scale_mv": 65535},
                  "current_adc": {"bits": 16, "full_scale_ma": fe["current_adc"]["full_scale_ma"],
                                  "zero_code": 32768},
                  "temp_adc": {"bits": 16, "ntc_r25_ohm": 10000, "ntc_beta": 3435,
                               "pullup_ohm": 10000}}
        c, i, t = fe["cell_adc"], fe["current_adc"], fe["temp_adc"]
        self.cell_max = (1 << c["bits"]) - 1
        self.cell_fs_v = c["full_scale_mv"] / 1000.0
        self.cur_max = (1 << i["bits"]) - 1
        self.cur_zero = i["zero_code"]
        self.cur_fs_a = i["full_scale_ma"] / 1000.0
        self.temp_max = (1 << t["bits"]) - 1
        self.r25 = float(t["ntc_r25_ohm"])
        self.beta = float(t["ntc_beta"])
        self.pullup = float(t["pullup_ohm"])
        pack = fe.get("pack_adc")  # optional: a divider from the pack's top terminal
        self.pack_max = (1 << pack["bits"]) - 1 if pack else 0
        self.pack_fs_v = pack["full_scale_mv"] / 1000.0 if pack else 0.0
        precharge = board.get("precharge") or {}
        self.link_sensor = bool(precharge.get("link_sensor", False))
        self.contactor_feedback = bool(board.get("contactor_feedback", False))
        self.presence = False  # the board's presence button, held (set_presence)
        overrides = dict(config or {})
        if noise_lsb is not None:
            overrides["noise_lsb"] = noise_lsb
        cfg = sensor_parameters(board, overrides)
        self.config = cfg
        self.noise_lsb: float = cfg["noise_lsb"] or 0.0
        cell_noise, current_noise = cfg["cell_noise_lsb"], cfg["current_noise_lsb"]
        self.cell_noise_lsb: float = self.noise_lsb if cell_noise is None else cell_noise
        self.current_noise_lsb: float = self.noise_lsb if current_noise is None else current_noise
        self.temp_noise_c: float | None = cfg["temp_noise_c"]
        # The sensor's own errors, from the board file (injections come on top).
        self.base_current_offset_a: float = cfg["current_offset_a"] or 0.0
        self.base_current_gain_error: float = cfg["current_gain_error"] or 0.0
        self.rng = random.Random(seed ^ 0x5E5)
        # The MCU's own ADC (None: the front end's codes reach the firmware exactly).
        self.adc: AdcModel | None = None
        self.adc_samples = int(cfg["adc_samples"])
        if cfg["adc"] is not None:
            self.adc = AdcModel(cfg["adc"], seed=seed)
        self._fmt = f"<{self.n_cells + 1 + self.n_temps}H"
        # Injected faults (empty/neutral when absent).
        self.open_wires: set[int] = set()  # cells whose top sense wire is open
        self.stuck_codes: dict[int, int] = {}  # cell -> the code its reading froze at
        self.temp_faults: dict[int, str] = {}  # sensor -> TEMP_OPEN / TEMP_SHORTED
        self.current_offset_a = 0.0
        self.current_gain = 1.0
        self.pack_offset_v = 0.0
        self.last_cell_codes: list[int] | None = None  # what the firmware read last

    @property
    def has_pack_adc(self) -> bool:
        return self.pack_max > 0

    def cell_lsb_v(self) -> float:
        """Voltage of one cell-ADC code (the resolution of a cell reading)."""
        return self.cell_fs_v / self.cell_max

    def pack_lsb_v(self) -> float:
        """Voltage of one pack-ADC code (0 on a board without a pack ADC)."""
        return self.pack_fs_v / self.pack_max if self.pack_max else 0.0

    def _quantise(self, x: float, max_code: int, noise_lsb: float | None = None) -> int:
        sigma = self.noise_lsb if noise_lsb is None else noise_lsb
        if sigma:
            x += self.rng.gauss(0.0, sigma)
        if self.adc is not None:  # through the MCU's ADC and the board HAL's averaging
            code16 = self.adc.hal_code(max(x, 0.0) / max_code * REF_V, self.adc_samples)
            return min(round(code16 * max_code / 65535), max_code)
        return min(max(round(x), 0), max_code)

    def cell_code(self, v: float) -> int:
        return self._quantise(v / self.cell_fs_v * self.cell_max, self.cell_max,
                              self.cell_noise_lsb)

    def current_code(self, a: float) -> int:
        span = self.cur_max - self.cur_zero
        return self._quantise(self.cur_zero + a / self.cur_fs_a * span, self.cur_max,
                              self.current_noise_lsb)

    def temp_code(self, celsius: float) -> int:
        noise_lsb = None
        if self.temp_noise_c is not None:  # noise on the temperature, not on the code
            if self.temp_noise_c:
                celsius += self.rng.gauss(0.0, self.temp_noise_c)
            noise_lsb = 0.0
        t_k = celsius + KELVIN_0C
        r = self.r25 * math.exp(self.beta * (1.0 / t_k - 1.0 / (25.0 + KELVIN_0C)))
        return self._quantise(self.temp_max * r / (r + self.pullup), self.temp_max, noise_lsb)

    def pack_code(self, v: float) -> int:
        """The pack-voltage code; 0 on a board without a pack ADC."""
        if not self.pack_max:
            return 0
        return self._quantise(v / self.pack_fs_v * self.pack_max, self.pack_max)

    # -- what the firmware sees --------------------------------------------------
    def sensed_cells_v(self, cells_v: list[float]) -> list[float]:
        """Cell voltages as the sense wires present them to the ADC.

        Tap k+1 is the top of cell k (tap 0 the pack's negative). An open wire
        leaves its tap floating down to the tap below, so the cell under it reads
        0 V and the cell above it reads both cells together.
        """
        taps = [0.0]
        for v in cells_v:
            taps.append(taps[-1] + v)
        for k in sorted(self.open_wires):  # bottom up: adjacent open wires cascade
            taps[k + 1] = taps[k]
        return [taps[k + 1] - taps[k] for k in range(len(cells_v))]

    def sensed_current_a(self, amps: float) -> float:
        """What the current sensor measures: the truth times its gain error (board
        file) and the injected gain, plus its offset and the injected offset."""
        gain = (1.0 + self.base_current_gain_error) * self.current_gain
        return amps * gain + self.base_current_offset_a + self.current_offset_a

    def cell_codes(self, plant: Plant) -> list[int]:
        codes = [self.cell_code(v) for v in self.sensed_cells_v(plant.cells_v())]
        for k, code in self.stuck_codes.items():
            codes[k] = code
        return codes

    def temp_codes(self, temps_c: list[float]) -> list[int]:
        codes = [self.temp_code(t) for t in temps_c]
        for j, kind in self.temp_faults.items():
            codes[j] = self.temp_max if kind == TEMP_OPEN else 0
        return codes

    def freeze_cell(self, cell: int, plant: Plant) -> int:
        """Freeze a cell's reading at the code the firmware read last (or would
        read now, before the first sample); return that code."""
        codes = self.last_cell_codes
        if codes is None:
            codes = self.cell_codes(plant)
        self.stuck_codes[cell] = codes[cell]
        return codes[cell]

    def tail_values(self, pack_v: float, link_v: float, closed: bool) -> bytes:
        """The codes tail (``TAIL_FORMAT``) for a true pack voltage, DC-link
        voltage and contact state: each as the board reads it, or the value that
        says it does not (0 for the pack code, -1 for the link and the feedback)."""
        pack = self.pack_code(pack_v + self.pack_offset_v)
        link_mv = -1
        if self.link_sensor:
            link = link_v * 1000.0  # 1 LSB = 1 mV for the noise
            if self.noise_lsb:
                link += self.rng.gauss(0.0, self.noise_lsb)
            link_mv = max(round(link), 0)
        feedback = int(closed) if self.contactor_feedback else -1
        return struct.pack(TAIL_FORMAT, pack, link_mv, feedback, int(self.presence))

    def tail(self, plant: Plant) -> bytes:
        """The pack code, DC-link mV and contactor feedback of the plant now."""
        pack_v = plant.pack_voltage_v()
        closed = plant.output_closed
        return self.tail_values(pack_v, pack_v if closed else plant.link_voltage_v(), closed)

    def chip_inputs(self, plant: Plant) -> ChipInputs:
        """What a monitor chip's pins see now, the injected faults included: the
        cells through their sense wires (a frozen reading stays at its mV), the
        current through the sensor's errors, each thermistor (None: open, inf:
        shorted), the pack voltage and the injected error of the chip's stack
        measurement."""
        cells = self.sensed_cells_v(plant.cells_v())
        if self.cell_noise_lsb:  # the chip's own noise, 1 LSB = 1 mV
            cells = [v + self.rng.gauss(0.0, self.cell_noise_lsb) / 1000.0 for v in cells]
        for k, code in self.stuck_codes.items():
            cells[k] = code / 1000.0  # a chip's code is its mV
        self.last_cell_codes = [round(v * 1000.0) for v in cells]
        temps: list[float | None] = list(plant.sensors_temperature_c())
        for j, kind in self.temp_faults.items():
            temps[j] = None if kind == TEMP_OPEN else math.inf
        return ChipInputs(cells, self.sensed_current_a(plant.current_a), temps,
                          plant.pack_voltage_v(), self.pack_offset_v)

    def codes(self, plant: Plant, temps_c: list[float] | None = None) -> bytes:
        """All codes of one sample, packed as the firmware's SimHal expects."""
        cells = self.cell_codes(plant)
        self.last_cell_codes = cells
        if temps_c is None:
            temps_c = plant.sensors_temperature_c()
        temps = self.temp_codes(temps_c)
        current = self.current_code(self.sensed_current_a(plant.current_a))
        return struct.pack(self._fmt, *cells, current, *temps) + self.tail(plant)
