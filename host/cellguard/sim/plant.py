"""Plant model of a series string of cells: what the simulated board measures.

Each cell is an equivalent circuit: OCV(SoC) from its chemistry's table, a
series resistance R0 and one RC pair (R1, tau1). Cells differ slightly in
capacity and resistance (seeded, so runs repeat). The pack has one lumped
temperature node heated by I^2 R losses and cooled to ambient through a thermal
resistance. Units are SI (A, V, ohm, s, degC); current is positive when
charging. The FET/contactor cuts the current when open.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from cellguard_fw.chemistry import OCV_STEP_CPCT, PROFILES

# Beyond 0 % and 100 % the OCV keeps falling/rising this many times more
# steeply than the table's last segment, so an over-charged or over-discharged
# cell does what a real one does: its voltage runs away.
_OVERRUN_SLOPE_FACTOR = 3.0


def ocv_v(table_mv: tuple[int, ...], soc: float) -> float:
    """Open-circuit voltage (V) at state of charge ``soc`` (0..1, extrapolated)."""
    step = OCV_STEP_CPCT / 10000.0
    last = len(table_mv) - 1
    x = soc / step
    if x <= 0:
        slope = (table_mv[1] - table_mv[0]) * _OVERRUN_SLOPE_FACTOR
        return (table_mv[0] + x * slope) / 1000.0
    if x >= last:
        slope = (table_mv[last] - table_mv[last - 1]) * _OVERRUN_SLOPE_FACTOR
        return (table_mv[last] + (x - last) * slope) / 1000.0
    i = int(x)
    frac = x - i
    return (table_mv[i] + (table_mv[i + 1] - table_mv[i]) * frac) / 1000.0


@dataclass
class Cell:
    capacity_ah: float
    r0_ohm: float
    r1_ohm: float
    tau1_s: float
    soc: float  # 0..1 (may overrun slightly when abused)
    v_rc1: float = 0.0  # voltage across the RC pair, V


@dataclass
class PlantTruth:
    """The plant's true state at one instant (what no sensor distorts)."""

    time_s: float
    current_a: float
    cells_v: list[float]
    cells_soc_pct: list[float]
    temperature_c: float
    output_closed: bool
    charge_in_ah: float = 0.0
    charge_out_ah: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def soc_pct(self) -> float:
        """Pack SoC: the mean of the cells'."""
        return sum(self.cells_soc_pct) / len(self.cells_soc_pct)


class Plant:
    def __init__(
        self,
        board: dict[str, Any],
        seed: int = 1,
        initial_soc_pct: float = 50.0,
        ambient_c: float = 25.0,
    ) -> None:
        p = board.get("plant", {})
        self.table = PROFILES[board["chemistry"]]["ocv_mv"]
        rng = random.Random(seed)
        cap = board["capacity_mah"] / 1000.0
        cap_spread = p.get("capacity_spread", 0.02)
        r_spread = p.get("resistance_spread", 0.05)
        self.cells = [
            Cell(
                capacity_ah=cap * (1.0 + rng.uniform(-cap_spread, cap_spread)),
                r0_ohm=p.get("r0_mohm", 20) / 1000.0 * (1.0 + rng.uniform(-r_spread, r_spread)),
                r1_ohm=p.get("r1_mohm", 15) / 1000.0 * (1.0 + rng.uniform(-r_spread, r_spread)),
                tau1_s=p.get("tau1_s", 60.0),
                soc=initial_soc_pct / 100.0,
            )
            for _ in range(board["cells"])
        ]
        self.thermal_mass_j_per_k = p.get("thermal_mass_j_per_k", 45.0) * len(self.cells)
        self.thermal_resistance_k_per_w = p.get("thermal_resistance_k_per_w", 8.0) / len(
            self.cells
        )
        self.ambient_c = ambient_c
        self.temperature_c = ambient_c
        self.requested_current_a = 0.0
        self.output_closed = False
        self.time_s = 0.0
        self.charge_in_ah = 0.0
        self.charge_out_ah = 0.0

    @property
    def current_a(self) -> float:
        """The current that flows: what the charger/load asks, if the output is closed."""
        return self.requested_current_a if self.output_closed else 0.0

    def step(self, dt_s: float) -> None:
        i = self.current_a
        heat_w = 0.0
        for c in self.cells:
            c.soc += i * dt_s / (3600.0 * c.capacity_ah)
            decay = math.exp(-dt_s / c.tau1_s)
            c.v_rc1 = c.v_rc1 * decay + c.r1_ohm * (1.0 - decay) * i
            heat_w += i * i * c.r0_ohm + c.v_rc1 * c.v_rc1 / c.r1_ohm
        cooling_w = (self.temperature_c - self.ambient_c) / self.thermal_resistance_k_per_w
        self.temperature_c += dt_s * (heat_w - cooling_w) / self.thermal_mass_j_per_k
        if i > 0:
            self.charge_in_ah += i * dt_s / 3600.0
        else:
            self.charge_out_ah -= i * dt_s / 3600.0
        self.time_s += dt_s

    def cell_voltage_v(self, c: Cell) -> float:
        return ocv_v(self.table, c.soc) + self.current_a * c.r0_ohm + c.v_rc1

    def cells_v(self) -> list[float]:
        return [self.cell_voltage_v(c) for c in self.cells]

    def truth(self) -> PlantTruth:
        return PlantTruth(
            time_s=self.time_s,
            current_a=self.current_a,
            cells_v=self.cells_v(),
            cells_soc_pct=[c.soc * 100.0 for c in self.cells],
            temperature_c=self.temperature_c,
            output_closed=self.output_closed,
            charge_in_ah=self.charge_in_ah,
            charge_out_ah=self.charge_out_ah,
        )
