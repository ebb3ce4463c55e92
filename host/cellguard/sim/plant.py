"""Plant model of a series string of cells: what the simulated board measures.

Each cell is an equivalent circuit: OCV(SoC) from its chemistry's table, a
series resistance R0 and one RC pair (R1, tau1). Cells differ slightly in
capacity and resistance (seeded, so runs repeat). The pack has one lumped
temperature node heated by I^2 R losses and cooled to ambient through a thermal
resistance; a cell's temperature can be overridden (a hot spot the lumped node
does not show). Units are SI (A, V, ohm, s, degC, F); current is positive when
charging.

The board drives the output with the ``OUT_*`` flags of ``hal_sim``: nothing
flows unless the main switch is closed; with back-to-back charge and discharge
FETs (``"switches": "dual"``) each direction flows only while it is allowed.
Between the switch and the load sits a DC link (a capacitor with a bleed
resistor) that a contactor board precharges through a resistor before it
closes. Injected faults (a short, a welded contactor, a leaking cell) live here;
sensor faults live in ``sensors.py``.
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


# What the board drives: the OUT_* flags ``hal_sim.SimBoard.step`` returns
# (mirrored here so the plant needs no firmware import; a test checks they agree).
OUT_CLOSED = 1  # main contactor / FETs closed
OUT_PRECHARGE = 2  # precharge relay on
OUT_CHARGE = 4  # charge direction allowed
OUT_DISCHARGE = 8  # discharge direction allowed
RESET_OUTPUTS = OUT_CHARGE | OUT_DISCHARGE
"""The flags right after a reset (``hal_sim.SimBoard.boot``): every switch open,
both directions allowed."""

SWITCHES = ("single", "dual")
"""Board key ``switches``: one switch for both directions (default), or
back-to-back charge and discharge FETs that gate each direction."""


def sensor_cell(sensor: int, n_cells: int, n_temps: int) -> int:
    """The cell temperature sensor ``sensor`` sits on: sensors spread evenly
    from the bottom of the string (sensor j on cell j * n_cells // n_temps)."""
    return sensor * n_cells // n_temps


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
    temperature_c: float  # the lumped thermal node
    output_closed: bool  # the main switch as it physically is (a welded one stays closed)
    charge_in_ah: float = 0.0
    charge_out_ah: float = 0.0
    charge_allowed: bool = True  # the board's direction flags, as driven
    discharge_allowed: bool = True
    precharge: bool = False  # precharge relay on
    pack_v: float = 0.0  # terminal voltage: the sum of the cells
    link_v: float = 0.0  # DC-link (load side) voltage
    cells_temperature_c: list[float] = field(default_factory=list)  # with overrides
    temps_c: list[float] = field(default_factory=list)  # at each temperature sensor
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
        self.n_temps: int = board["temp_sensors"]
        self.thermal_mass_j_per_k = p.get("thermal_mass_j_per_k", 45.0) * len(self.cells)
        self.thermal_resistance_k_per_w = p.get("thermal_resistance_k_per_w", 8.0) / len(
            self.cells
        )
        self.ambient_c = ambient_c
        self.temperature_c = ambient_c
        # A hot (or cold) spot: a cell whose temperature is not the lumped node's.
        self.cell_temperature_override_c: list[float | None] = [None] * len(self.cells)
        self.requested_current_a = 0.0
        switches = board.get("switches", "single")
        if switches not in SWITCHES:
            raise ValueError(f"board {board.get('name')!r}: switches must be one of "
                             f"{', '.join(SWITCHES)}, not {switches!r}")
        self.dual_switches = switches == "dual"
        self.has_precharge = board.get("precharge") is not None
        # The load side: a DC-link capacitor with a bleed resistor (the load at
        # rest), charged through the precharge resistor before the contactor closes.
        self.dc_link_uf = float(p.get("dc_link_uf", 2000.0))
        self.precharge_ohm = float(p.get("precharge_ohm", 47.0))
        self.load_ohm = float(p.get("load_ohm", 1000.0))
        self.outputs = RESET_OUTPUTS
        self._link_v = 0.0  # while the switch is open; closed, the link is the pack
        self._precharge_a = 0.0  # mean precharge current of the last step (from the pack)
        # Injected faults (SimulatedBoard.inject), None/empty when absent.
        self.welded = False  # the main switch stays closed whatever is driven
        self.short_circuit_ohm: float | None = None  # across the output terminals
        self.link_short_ohm: float | None = None  # a shorted/overloaded DC link
        self.internal_short_ohm: dict[int, float] = {}  # cell -> self-discharge path
        self.time_s = 0.0
        self.charge_in_ah = 0.0
        self.charge_out_ah = 0.0

    # -- the switches --------------------------------------------------------
    @property
    def output_closed(self) -> bool:
        """The main switch as it physically is: driven closed, or welded."""
        return bool(self.outputs & OUT_CLOSED) or self.welded

    @output_closed.setter
    def output_closed(self, closed: bool) -> None:
        # Driving the output by hand (tests, scripts): closed lets both
        # directions through, as a single-switch board would.
        if closed:
            self.outputs |= OUT_CLOSED | OUT_CHARGE | OUT_DISCHARGE
        else:
            self.outputs &= ~(OUT_CLOSED | OUT_PRECHARGE)

    def release_outputs(self) -> None:
        """What a reset does to the pins: everything back to ``RESET_OUTPUTS``."""
        self.outputs = RESET_OUTPUTS

    @property
    def charge_allowed(self) -> bool:
        return bool(self.outputs & OUT_CHARGE)

    @property
    def discharge_allowed(self) -> bool:
        return bool(self.outputs & OUT_DISCHARGE)

    @property
    def precharge_on(self) -> bool:
        return self.has_precharge and bool(self.outputs & OUT_PRECHARGE)

    def passes(self, charging: bool) -> bool:
        """Whether current in this direction can flow through the switches now.
        Only back-to-back FETs gate a direction; a welded switch passes both."""
        if not self.output_closed:
            return False
        if not self.dual_switches or self.welded:
            return True
        return bool(self.outputs & (OUT_CHARGE if charging else OUT_DISCHARGE))

    # -- electrical ----------------------------------------------------------
    def fault_ohm(self) -> float | None:
        """The injected resistance across the output (shorts in parallel), if any."""
        shorts = [r for r in (self.short_circuit_ohm, self.link_short_ohm) if r is not None]
        if not shorts:
            return None
        return 1.0 / sum(1.0 / r for r in shorts)

    def _load_current_a(self) -> float:
        """The current through the main switch (positive = charging)."""
        if not self.output_closed:
            return 0.0
        short = self.fault_ohm()
        if short is not None and self.passes(charging=False):
            # A short overrides what the load asks: the cells' voltage behind
            # their series resistance drives the current through both.
            v_behind = sum(ocv_v(self.table, c.soc) + c.v_rc1 for c in self.cells)
            return -v_behind / (short + sum(c.r0_ohm for c in self.cells))
        i = self.requested_current_a
        return i if i == 0.0 or self.passes(charging=i > 0) else 0.0

    @property
    def current_a(self) -> float:
        """The current that flows in the pack: what the charger/load asks where
        the switches let it through (or what a short draws), plus the precharge
        current while the DC link charges."""
        return self._load_current_a() + self._precharge_a

    def _link_load_ohm(self) -> float:
        short = self.fault_ohm()
        rl = self.load_ohm
        return rl if short is None else rl * short / (rl + short)

    def _step_link(self, dt_s: float) -> None:
        """Advance the DC link by ``dt_s`` exactly (first order: exponential)."""
        if self.output_closed:
            self._precharge_a = 0.0
            return  # the link is the pack (link_voltage_v); stored at the step's end
        c_f = self.dc_link_uf * 1e-6
        rl = self._link_load_ohm()
        v0 = self._link_v
        if self.precharge_on:
            # The pack charges the link through the precharge resistor while the
            # load bleeds it: Thevenin source v_inf behind rp || rl.
            vp = self.pack_voltage_v()
            rp = self.precharge_ohm
            v_inf = vp * rl / (rp + rl)
            tau = c_f * rp * rl / (rp + rl)
            decay = math.exp(-dt_s / tau)
            v_mean = v_inf + (v0 - v_inf) * tau / dt_s * (1.0 - decay)
            self._link_v = v_inf + (v0 - v_inf) * decay
            self._precharge_a = -(vp - v_mean) / rp  # drawn from the pack: discharging
        else:
            self._link_v = v0 * math.exp(-dt_s / (c_f * rl))
            self._precharge_a = 0.0

    def step(self, dt_s: float) -> None:
        self._step_link(dt_s)
        i = self.current_a
        heat_w = 0.0
        for k, c in enumerate(self.cells):
            leak_a = 0.0
            r_short = self.internal_short_ohm.get(k)
            if r_short is not None:
                # A self-discharge path inside the cell: the shunt never sees it.
                ocv = ocv_v(self.table, c.soc)
                leak_a = ocv / r_short
                heat_w += ocv * leak_a
            c.soc += (i - leak_a) * dt_s / (3600.0 * c.capacity_ah)
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
        if self.output_closed:  # where the link starts from once the switch opens
            self._link_v = self.pack_voltage_v()

    def cell_voltage_v(self, c: Cell) -> float:
        return ocv_v(self.table, c.soc) + self.current_a * c.r0_ohm + c.v_rc1

    def cells_v(self) -> list[float]:
        return [self.cell_voltage_v(c) for c in self.cells]

    def pack_voltage_v(self) -> float:
        """The pack's terminal voltage: the sum of the cells."""
        return sum(self.cells_v())

    def link_voltage_v(self) -> float:
        """The load-side (DC link) voltage: the pack's while the switch is closed."""
        return self.pack_voltage_v() if self.output_closed else self._link_v

    # -- temperatures ----------------------------------------------------------
    def cells_temperature_c(self) -> list[float]:
        """Each cell's temperature: the lumped node unless overridden."""
        return [self.temperature_c if t is None else t for t in self.cell_temperature_override_c]

    def sensors_temperature_c(self) -> list[float]:
        """The temperature at each sensor (see :func:`sensor_cell`)."""
        cells = self.cells_temperature_c()
        return [cells[sensor_cell(j, len(cells), self.n_temps)] for j in range(self.n_temps)]

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
            charge_allowed=self.charge_allowed,
            discharge_allowed=self.discharge_allowed,
            precharge=self.precharge_on,
            pack_v=self.pack_voltage_v(),
            link_v=self.link_voltage_v(),
            cells_temperature_c=self.cells_temperature_c(),
            temps_c=self.sensors_temperature_c(),
        )
