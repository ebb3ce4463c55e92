"""Sensor model between plant and firmware: physical values to the ADC codes
the board's front end would produce (the inverse of ``cellguard_fw.frontend``).

Quantisation is exact; noise (in LSB, Gaussian, seeded) is optional and off by
default so a test can compare telemetry with the plant within one LSB.
"""

from __future__ import annotations

import math
import random
import struct
from typing import Any

from cellguard_fw.frontend import KELVIN_0C

from .plant import Plant


class SensorModel:
    def __init__(self, board: dict[str, Any], seed: int = 1, noise_lsb: float = 0.0) -> None:
        fe = board["frontend"]
        self.n_cells = board["cells"]
        self.n_temps = board["temp_sensors"]
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
        self.noise_lsb = noise_lsb
        self.rng = random.Random(seed ^ 0x5E5)
        self._fmt = f"<{self.n_cells + 1 + self.n_temps}H"

    def cell_lsb_v(self) -> float:
        """Voltage of one cell-ADC code (the resolution of a cell reading)."""
        return self.cell_fs_v / self.cell_max

    def _quantise(self, x: float, max_code: int) -> int:
        if self.noise_lsb:
            x += self.rng.gauss(0.0, self.noise_lsb)
        return min(max(round(x), 0), max_code)

    def cell_code(self, v: float) -> int:
        return self._quantise(v / self.cell_fs_v * self.cell_max, self.cell_max)

    def current_code(self, a: float) -> int:
        span = self.cur_max - self.cur_zero
        return self._quantise(self.cur_zero + a / self.cur_fs_a * span, self.cur_max)

    def temp_code(self, celsius: float) -> int:
        t_k = celsius + KELVIN_0C
        r = self.r25 * math.exp(self.beta * (1.0 / t_k - 1.0 / (25.0 + KELVIN_0C)))
        return self._quantise(self.temp_max * r / (r + self.pullup), self.temp_max)

    def codes(self, plant: Plant, temps_c: list[float] | None = None) -> bytes:
        """All codes of one sample, packed as the firmware's SimHal expects."""
        cells = [self.cell_code(v) for v in plant.cells_v()]
        if temps_c is None:
            temps_c = [plant.temperature_c] * self.n_temps
        temps = [self.temp_code(t) for t in temps_c]
        return struct.pack(self._fmt, *cells, self.current_code(plant.current_a), *temps)
