"""Plant model of a series string of cells: what the simulated board measures.

Each cell is an equivalent circuit: OCV(SoC) from its chemistry's table, a
series resistance R0 and two RC pairs (R1/tau1, R2/tau2), integrated exactly
over each step (the current is constant within a step); a self-discharge
leakage; and a balancing resistor across it that the firmware switches (the
balancing mask above the ``OUT_*`` flags). Cells differ slightly in capacity,
resistance and self-discharge (seeded, so runs repeat). The pack has one lumped
temperature node heated by the cells' losses and the balancing resistors and
cooled to ambient through a thermal resistance, also integrated exactly; each
cell runs above the node by its own heat times its thermal resistance to the
node (reached with the cell's own time constant), and a cell can be held at a
temperature (a hot spot), which then heats or cools the node through that
resistance. Units are SI (A, V, ohm, s, degC, F, W);
current is positive when charging.

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
OUT_BALANCE_SHIFT = 4  # bits 4 and up: the balancing mask (bit i: cell i bleeds)
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


HOURS_PER_MONTH = 365.25 * 24.0 / 12.0
"""What ``self_discharge_pct_per_month`` counts as a month."""

PLANT_DEFAULTS: dict[str, float] = {
    "capacity_spread": 0.02,  # each cell's capacity within +/- this fraction
    "resistance_spread": 0.05,  # each R0, R1, R2 within +/- this fraction
    "r0_mohm": 20.0,  # series resistance
    "r1_mohm": 15.0,  # fast RC pair (charge transfer)
    "tau1_s": 60.0,
    "r2_mohm": 10.0,  # slow RC pair (diffusion)
    "tau2_s": 600.0,
    "self_discharge_pct_per_month": 2.0,  # of the cell's capacity, as a constant leakage
    "self_discharge_spread": 0.2,  # each cell's leakage within +/- this fraction
    "balance_ohm": 33.0,  # balancing resistor across each cell
    "thermal_mass_j_per_k": 45.0,  # per cell
    "thermal_resistance_k_per_w": 8.0,  # per cell, node to ambient
    "cell_thermal_resistance_k_per_w": 4.0,  # from a cell to the node
    "dc_link_uf": 2000.0,
    "precharge_ohm": 47.0,
    "load_ohm": 1000.0,
}
"""The board file's ``"plant"`` keys and their defaults."""

_POSITIVE_KEYS = ("tau1_s", "tau2_s", "balance_ohm", "thermal_mass_j_per_k",
                  "thermal_resistance_k_per_w", "cell_thermal_resistance_k_per_w",
                  "dc_link_uf", "precharge_ohm", "load_ohm")
_SPREAD_KEYS = ("capacity_spread", "resistance_spread", "self_discharge_spread")


def plant_parameters(board: dict[str, Any]) -> dict[str, float]:
    """The board's ``"plant"`` object over :data:`PLANT_DEFAULTS`, checked;
    raises ValueError naming the key for an unknown key or a bad value."""
    given = board.get("plant") or {}
    name = board.get("name")
    unknown = sorted(set(given) - set(PLANT_DEFAULTS))
    if unknown:
        raise ValueError(f"board {name!r}: unknown plant key {', '.join(unknown)}; "
                         f"valid keys: {', '.join(PLANT_DEFAULTS)}")
    p = {**PLANT_DEFAULTS, **given}
    for key, value in p.items():
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value)):
            raise ValueError(f"board {name!r}: plant.{key} must be a finite number, "
                             f"not {value!r}")
        low_ok = value > 0 if key in _POSITIVE_KEYS else value >= 0
        if not low_ok or (key in _SPREAD_KEYS and value >= 1):
            bound = "above 0" if key in _POSITIVE_KEYS else "0 or more"
            if key in _SPREAD_KEYS:
                bound += " and below 1"
            raise ValueError(f"board {name!r}: plant.{key} must be {bound}, not {value!r}")
        p[key] = float(value)
    return p


@dataclass
class Cell:
    capacity_ah: float
    r0_ohm: float
    r1_ohm: float
    tau1_s: float
    soc: float  # 0..1 (may overrun slightly when abused)
    v_rc1: float = 0.0  # voltage across the fast RC pair, V
    r2_ohm: float = 0.0  # slow RC pair (0: none)
    tau2_s: float = 600.0
    v_rc2: float = 0.0  # voltage across the slow RC pair, V
    self_discharge_a: float = 0.0  # leakage inside the cell while its SoC is above 0
    heat_w: float = 0.0  # the cell's own losses over the last step
    rise_k: float = 0.0  # how much hotter than the pack's node the cell is

    def rc_step(self, i_a: float, dt_s: float) -> None:
        """Advance both RC pairs by ``dt_s`` with ``i_a`` through them: exact
        for a current constant over the step."""
        decay = math.exp(-dt_s / self.tau1_s)
        self.v_rc1 = self.v_rc1 * decay + self.r1_ohm * (1.0 - decay) * i_a
        decay = math.exp(-dt_s / self.tau2_s)
        self.v_rc2 = self.v_rc2 * decay + self.r2_ohm * (1.0 - decay) * i_a

    def rc_loss_w(self) -> float:
        """Power the RC pairs' resistors dissipate now."""
        loss = self.v_rc1 * self.v_rc1 / self.r1_ohm if self.r1_ohm else 0.0
        if self.r2_ohm:
            loss += self.v_rc2 * self.v_rc2 / self.r2_ohm
        return loss


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
    balancing_mask: int = 0  # bit i: cell i bleeds through its balancing resistor
    balance_a: list[float] = field(default_factory=list)  # each cell's bleed current
    ambient_c: float = 25.0
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
        if not 0.0 <= initial_soc_pct <= 100.0:  # also NaN
            raise ValueError(f"the initial SoC must be between 0 and 100 %, not "
                             f"{initial_soc_pct:g}")
        if not math.isfinite(ambient_c):
            raise ValueError(f"the ambient temperature must be a finite number, not {ambient_c}")
        p = plant_parameters(board)
        self.params = p
        self.table = PROFILES[board["chemistry"]]["ocv_mv"]
        rng = random.Random(seed)
        cap = board["capacity_mah"] / 1000.0
        cap_spread = p["capacity_spread"]
        r_spread = p["resistance_spread"]
        self.cells = [
            Cell(
                capacity_ah=cap * (1.0 + rng.uniform(-cap_spread, cap_spread)),
                r0_ohm=p["r0_mohm"] / 1000.0 * (1.0 + rng.uniform(-r_spread, r_spread)),
                r1_ohm=p["r1_mohm"] / 1000.0 * (1.0 + rng.uniform(-r_spread, r_spread)),
                tau1_s=p["tau1_s"],
                soc=initial_soc_pct / 100.0,
            )
            for _ in range(board["cells"])
        ]
        # Drawn from a second generator, so a seed gives the same capacities and
        # R0/R1 as before these parameters existed.
        rng2 = random.Random(seed + 0x5EED_0002)
        sd_spread = p["self_discharge_spread"]
        for c in self.cells:
            c.r2_ohm = p["r2_mohm"] / 1000.0 * (1.0 + rng2.uniform(-r_spread, r_spread))
            c.tau2_s = p["tau2_s"]
            pct = p["self_discharge_pct_per_month"] * (1.0 + rng2.uniform(-sd_spread, sd_spread))
            c.self_discharge_a = c.capacity_ah * pct / 100.0 / HOURS_PER_MONTH
        self.n_temps: int = board["temp_sensors"]
        self.balance_ohm = p["balance_ohm"]
        self.thermal_mass_j_per_k = p["thermal_mass_j_per_k"] * len(self.cells)
        self.thermal_resistance_k_per_w = p["thermal_resistance_k_per_w"] / len(self.cells)
        self.cell_thermal_resistance_k_per_w = p["cell_thermal_resistance_k_per_w"]
        # A cell's rise over the node follows its heat with its own time constant.
        self.cell_tau_s = p["thermal_mass_j_per_k"] * self.cell_thermal_resistance_k_per_w
        self.ambient_c = ambient_c
        self.temperature_c = ambient_c
        # A hot (or cold) spot: a cell held at a temperature whatever the model
        # says; it heats (cools) the node through its thermal resistance.
        self.cell_temperature_override_c: list[float | None] = [None] * len(self.cells)
        # A heat source inside a cell (W, e.g. a bad connection): the cell runs
        # hotter than the node, and the node takes the heat.
        self.cell_extra_heat_w: list[float] = [0.0] * len(self.cells)
        # A cell emulator's channel in the cell's place (V): the cell's terminals sit
        # at that voltage whatever its charge (the rig's cell emulator, hil/rigs.py).
        self.cell_voltage_override_v: list[float | None] = [None] * len(self.cells)
        self.requested_current_a = 0.0
        switches = board.get("switches", "single")
        if switches not in SWITCHES:
            raise ValueError(f"board {board.get('name')!r}: switches must be one of "
                             f"{', '.join(SWITCHES)}, not {switches!r}")
        self.dual_switches = switches == "dual"
        self.has_precharge = board.get("precharge") is not None
        # The load side: a DC-link capacitor with a bleed resistor (the load at
        # rest), charged through the precharge resistor before the contactor closes.
        self.dc_link_uf = p["dc_link_uf"]
        self.precharge_ohm = p["precharge_ohm"]
        self.load_ohm = p["load_ohm"]
        self.outputs = RESET_OUTPUTS  # OUT_* flags, the balancing mask above them
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
        self.balance_ah: list[float] = [0.0] * len(self.cells)  # bled per cell so far

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

    @property
    def balancing_mask(self) -> int:
        """Bit i: cell i bleeds through its balancing resistor (what the board
        drives in the flags' bits 4 and up; bits beyond the cells do nothing)."""
        return (self.outputs >> OUT_BALANCE_SHIFT) & ((1 << len(self.cells)) - 1)

    @balancing_mask.setter
    def balancing_mask(self, mask: int) -> None:
        self.outputs = (self.outputs & ((1 << OUT_BALANCE_SHIFT) - 1)) | (
            mask << OUT_BALANCE_SHIFT)

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
            v_behind = sum(self._emf_v(c) for c in self.cells)
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

    def _emf_v(self, c: Cell) -> float:
        """The cell's voltage behind R0: OCV plus both RC pairs."""
        return ocv_v(self.table, c.soc) + c.v_rc1 + c.v_rc2

    def balance_currents_a(self) -> list[float]:
        """Each cell's bleed current through its balancing resistor now (0 where
        its bit is off). The resistor sits across the cell's terminals, so it
        carries the terminal voltage: v = (emf + i R0) / (1 + R0 / R_bal)."""
        mask = self.balancing_mask
        if not mask:
            return [0.0] * len(self.cells)
        i = self.current_a
        rb = self.balance_ohm
        return [(self._emf_v(c) + i * c.r0_ohm) / (rb + c.r0_ohm) if mask >> k & 1 else 0.0
                for k, c in enumerate(self.cells)]

    def step(self, dt_s: float) -> None:
        """Advance the plant by ``dt_s`` with the outputs and the requested
        current held over the step."""
        self._step_link(dt_s)
        i = self.current_a
        bleed = self.balance_currents_a()
        balance_heat_w = 0.0
        for k, c in enumerate(self.cells):
            ocv = ocv_v(self.table, c.soc)
            leak_a = 0.0
            r_short = self.internal_short_ohm.get(k)
            if r_short is not None:
                # A self-discharge path inside the cell: the shunt never sees it.
                leak_a = ocv / r_short
            if c.soc > 0.0:
                leak_a += c.self_discharge_a
            i_cell = i - bleed[k]  # the bleed leaves the cell at its terminals
            c.soc += (i_cell - leak_a) * dt_s / (3600.0 * c.capacity_ah)
            c.rc_step(i_cell, dt_s)
            c.heat_w = i_cell * i_cell * c.r0_ohm + c.rc_loss_w() + ocv * leak_a
            balance_heat_w += bleed[k] * bleed[k] * self.balance_ohm
            self.balance_ah[k] += bleed[k] * dt_s / 3600.0
        self._step_thermal(dt_s, balance_heat_w)
        if i > 0:
            self.charge_in_ah += i * dt_s / 3600.0
        else:
            self.charge_out_ah -= i * dt_s / 3600.0
        self.time_s += dt_s
        if self.output_closed:  # where the link starts from once the switch opens
            self._link_v = self.pack_voltage_v()

    def _step_thermal(self, dt_s: float, board_heat_w: float) -> None:
        """Advance the lumped node by ``dt_s`` exactly (first order, the heat
        held over the step): the cells' heat and ``board_heat_w`` flow in, the
        ambient takes (T - T_amb) / R, and a held cell gives (T_hold - T) / R_cell."""
        r_amb = self.thermal_resistance_k_per_w
        r_cell = self.cell_thermal_resistance_k_per_w
        heat_w = board_heat_w
        held_sum_c = 0.0
        held = 0
        for c, hold, extra in zip(self.cells, self.cell_temperature_override_c,
                                  self.cell_extra_heat_w, strict=True):
            if hold is None:
                heat_w += c.heat_w + extra  # whatever a cell makes reaches the node
            else:
                held_sum_c += hold  # held from outside: its own heat goes there too
                held += 1
        # C dT/dt = a - b T
        a = heat_w + self.ambient_c / r_amb + held_sum_c / r_cell
        b = 1.0 / r_amb + held / r_cell
        t_inf = a / b
        tau = self.thermal_mass_j_per_k / b
        self.temperature_c = t_inf + (self.temperature_c - t_inf) * math.exp(-dt_s / tau)
        # Each cell's rise over the node: first order towards heat x R_cell.
        decay = math.exp(-dt_s / self.cell_tau_s)
        for c, extra in zip(self.cells, self.cell_extra_heat_w, strict=True):
            target = (c.heat_w + extra) * r_cell
            c.rise_k = target + (c.rise_k - target) * decay

    def _cell_v(self, k: int, c: Cell, i: float, mask: int) -> float:
        held = self.cell_voltage_override_v[k]
        if held is not None:
            return held
        emf = self._emf_v(c)
        if mask >> k & 1:
            return (emf + i * c.r0_ohm) * self.balance_ohm / (self.balance_ohm + c.r0_ohm)
        return emf + i * c.r0_ohm

    def cell_voltage_v(self, c: Cell) -> float:
        """The terminal voltage of cell ``c`` (one of :attr:`cells`)."""
        k = next(k for k, x in enumerate(self.cells) if x is c)
        return self._cell_v(k, c, self.current_a, self.balancing_mask)

    def cells_v(self) -> list[float]:
        i = self.current_a
        mask = self.balancing_mask
        return [self._cell_v(k, c, i, mask) for k, c in enumerate(self.cells)]

    def pack_voltage_v(self) -> float:
        """The pack's terminal voltage: the sum of the cells."""
        return sum(self.cells_v())

    def link_voltage_v(self) -> float:
        """The load-side (DC link) voltage: the pack's while the switch is closed."""
        return self.pack_voltage_v() if self.output_closed else self._link_v

    # -- temperatures ----------------------------------------------------------
    def cells_temperature_c(self) -> list[float]:
        """Each cell's temperature: held, or the lumped node plus the cell's rise,
        which follows the cell's own heat (its losses and any extra heat) times
        its thermal resistance to the node with the time constant
        ``cell_tau_s`` (the cell's thermal mass times that resistance)."""
        node = self.temperature_c
        return [node + c.rise_k if hold is None else hold
                for c, hold in zip(self.cells, self.cell_temperature_override_c, strict=True)]

    def sensors_temperature_c(self) -> list[float]:
        """The temperature at each sensor (see :func:`sensor_cell`)."""
        cells = self.cells_temperature_c()
        return [cells[sensor_cell(j, len(cells), self.n_temps)] for j in range(self.n_temps)]

    def truth(self) -> PlantTruth:
        cells_t = self.cells_temperature_c()
        n = len(cells_t)
        cells_v = self.cells_v()
        pack_v = sum(cells_v)
        return PlantTruth(
            time_s=self.time_s,
            current_a=self.current_a,
            cells_v=cells_v,
            cells_soc_pct=[c.soc * 100.0 for c in self.cells],
            temperature_c=self.temperature_c,
            output_closed=self.output_closed,
            charge_in_ah=self.charge_in_ah,
            charge_out_ah=self.charge_out_ah,
            charge_allowed=self.charge_allowed,
            discharge_allowed=self.discharge_allowed,
            precharge=self.precharge_on,
            pack_v=pack_v,
            link_v=pack_v if self.output_closed else self._link_v,
            cells_temperature_c=cells_t,
            temps_c=[cells_t[sensor_cell(j, n, self.n_temps)] for j in range(self.n_temps)],
            balancing_mask=self.balancing_mask,
            balance_a=self.balance_currents_a(),
            ambient_c=self.ambient_c,
        )
