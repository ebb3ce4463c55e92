"""A PyBaMM cell as the simulated board's plant (``SimulatedBoard(plant="pybamm")``).

One PyBaMM cell (SPMe or DFN, lumped thermal model; PyBaMM's Chen2020 LG M50,
Prada2013 A123 or Chayambuka2022 sodium-ion set, see
``cellguard.estimation.pybamm_traces``) is simulated; the N
cells of the string are derived from it outside PyBaMM, with seeded per-cell
differences (the same draws as the built-in plant):

- each cell has its own capacity (``capacity_spread``) and self-discharge, and
  its own charge: its SoC is counted from its own current (the string's, less
  its balancing bleed and any internal short) over its own capacity;
- its voltage is the PyBaMM cell's plus the OCV difference between its SoC and
  the PyBaMM cell's (OCV from the parameter set's electrode potentials, at
  25 degC) plus ``i * dR`` (``resistance_spread`` around the cell's R0, taken
  from the shipped fitted cell file).

So every cell has the PyBaMM cell's dynamics (diffusion, kinetics,
temperature) with a small SoC offset and resistance offset. Running N PyBaMM
cells would cost N times the solver time (a 4-cell board under MicroPython:
about 70x real time with SPMe and 20x with DFN, against 120x and 61x with one
cell; docs/simulator.md), so one is run, whatever the number of cells.

Stepping: PyBaMM's current is an input parameter (``"Current function [A]"``,
positive = discharge; cellguard's is positive = charging). The cell is solved
ahead in chunks of ``step_s`` (1 s) with the current held, and the board's
control periods (100 ms) read the chunk's solution interpolated linearly in
time. When the current changes inside a chunk the cell is re-solved from the
chunk's start up to that moment with the old current, and a new chunk starts
there with the new one, so a current step shows at once. The ambient (and the
heat from outside the cell, below) is taken at each chunk's start. Each solve
keeps only its own short solution (``save=False``): memory stays flat.

Heat: the PyBaMM cell's lumped temperature is the pack's node (its thermal
mass and its cooling to ambient are the parameter set's, not the board's
``thermal_mass_j_per_k`` / ``thermal_resistance_k_per_w``). Heat from outside
the cell (balancing resistors, ``set_cell_heat``, a held cell, a cell's losses
beyond the PyBaMM cell's) enters it as the equivalent rise of its ambient,
heat per cell / (h * A). Each cell runs above the node as in the built-in plant
(``cell_thermal_resistance_k_per_w``).

PyBaMM stops at its voltage cut-offs (moved ``CUTOFF_MARGIN_V`` outwards, so the
firmware's over- and under-voltage trips act first); reaching one, or a solver
failure, raises :class:`PlantError` with what happened, and the plant stays
failed.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

from ..errors import CellguardError
from ..paths import repo_root
from .plant import Cell, Plant, PlantTruth

MODELS = ("spme", "dfn")
"""PyBaMM models: ``spme`` (single particle with electrolyte, fast) or ``dfn``."""
MODEL_NAMES = {"spme": "SPMe", "dfn": "DFN"}

PARAMETER_SETS = ("chen2020", "prada2013", "chayambuka2022")
"""PyBaMM parameter sets (``cellguard.estimation.pybamm_traces.CELLS``)."""

CELL_FILES = {"chen2020": "lg-m50-chen2020.json", "prada2013": "a123-26650-prada2013.json",
              "chayambuka2022": "nvpf-26700-chayambuka2022.json"}
"""The cell file fitted to each set's DFN (``make pybamm-cells``) in ``cells/``:
the firmware's cell model, and the R0 the per-cell resistance spread is around."""

STEP_S = 1.0
"""Length of a PyBaMM solve (a chunk), s."""

CUTOFF_MARGIN_V = 0.3
"""The parameter set's voltage cut-offs move this far outwards (Chen2020: 2.2 and
4.5 V; Prada2013: 1.7 and 3.9 V; Chayambuka2022: 1.7 and 4.5 V), so the
firmware's trips come first."""

_OUTPUTS = ("Voltage [V]", "Volume-averaged cell temperature [K]")
_KELVIN = 273.15
_EPS_S = 1e-9


class PlantError(CellguardError):
    """The PyBaMM plant cannot go on (a voltage cut-off, a solver failure)."""


class _SolveError(Exception):
    """A failed solve, before the plant adds where it was."""


def pybamm_board(board: dict[str, Any], parameter_set: str) -> dict[str, Any]:
    """``board`` with its cells made the PyBaMM cell's: chemistry, capacity_mah
    and cell_model (the fitted cell file), so the firmware is configured for
    the cells it measures. Other keys (cells, front end, limits) stay."""
    from ..estimation import cellmodel
    from ..estimation.pybamm_traces import CELLS

    check_choice("parameter_set", parameter_set, PARAMETER_SETS)
    spec = CELLS[parameter_set]
    model = cellmodel.load(repo_root() / "cells" / CELL_FILES[parameter_set])
    out = dict(board)
    out["chemistry"] = spec.chemistry
    out["capacity_mah"] = round(spec.capacity_ah * 1000)
    out["cell_model"] = model.to_dict()
    return out


def check_choice(what: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, not {value!r}")


@dataclass
class _Chunk:
    """One solve: the current held from its start over ``length_s``."""

    current_a: float  # cellguard's sign (positive = charging)
    ambient_k: float  # PyBaMM's ambient input over the chunk
    start: Any  # the solution the chunk started from (None: the initial state)
    end: Any  # the chunk's own solution (its last state is at length_s)
    length_s: float
    t_s: list[float]  # from the chunk's start
    v: list[float]
    temp_k: list[float]
    pos_s: float = 0.0  # how far the plant is into the chunk
    stop: str | None = None  # a cut-off ended the solve at length_s: what it was

    def at(self, values: list[float]) -> float:
        """``values`` interpolated linearly at ``pos_s``."""
        t = self.t_s
        if self.pos_s >= t[-1]:
            return values[-1]
        k = max(bisect.bisect_right(t, self.pos_s) - 1, 0)
        if t[k + 1] <= t[k]:
            return values[k + 1]
        w = (self.pos_s - t[k]) / (t[k + 1] - t[k])
        return values[k] + (values[k + 1] - values[k]) * w


class PybammCell:
    """One PyBaMM cell (lumped thermal) stepped with the current and the
    ambient as input parameters."""

    def __init__(self, model: str, parameter_set: str, initial_soc_pct: float,
                 ambient_c: float) -> None:
        from ..estimation.pybamm_traces import (
            CELLS,
            _import_pybamm,
            _parameters,
            _theoretical_capacity_ah,
            pybamm_model,
        )

        check_choice("pybamm_model", model, MODELS)
        check_choice("parameter_set", parameter_set, PARAMETER_SETS)
        pybamm = _import_pybamm()
        self.pybamm = pybamm
        self.model_name = model
        self.spec = spec = CELLS[parameter_set]
        self.capacity_ah = spec.capacity_ah  # nominal: SoC's scale, as in pybamm_traces
        # PyBaMM's 0..100 % (OCV at its cut-offs) holds a little more than the
        # nominal capacity; SoC counts 1 % of the nominal from 100 % at the top.
        self.full_ah = _theoretical_capacity_ah(pybamm, spec, ambient_c)
        x0 = self._pybamm_soc(initial_soc_pct / 100.0)
        if not 0.0 <= x0 <= 1.0:
            low = 100.0 * (1.0 - self.full_ah / self.capacity_ah)
            raise PlantError(f"the PyBaMM plant starts between {low:.1f} and 100 % SoC "
                             f"({spec.name}), not {initial_soc_pct:g} %")
        p = _parameters(pybamm, spec, ambient_c, x0)  # sets the initial state first
        self.v_min = spec.v_min - CUTOFF_MARGIN_V
        self.v_max = spec.v_max + CUTOFF_MARGIN_V
        p.update({"Lower voltage cut-off [V]": self.v_min,
                  "Upper voltage cut-off [V]": self.v_max,
                  "Current function [A]": "[input]",
                  "Ambient temperature [K]": "[input]"})
        self.cooling_w_per_k = (p["Total heat transfer coefficient [W.m-2.K-1]"]
                                * p["Cell cooling surface area [m2]"])
        self._ocv_table(p)
        self.solver = pybamm.IDAKLUSolver(output_variables=list(_OUTPUTS))
        sim = pybamm.Simulation(pybamm_model(pybamm, spec, MODEL_NAMES[model],
                                             {"thermal": "lumped"}),
                                parameter_values=p, solver=self.solver)
        sim.build()
        self.built_model = sim.built_model
        self.solves = 0

    def _pybamm_soc(self, soc: float) -> float:
        """PyBaMM's SoC (0..1 between its cut-offs' OCVs) for cellguard's (0..1)."""
        return 1.0 - (1.0 - soc) * self.capacity_ah / self.full_ah

    def _ocv_table(self, p: Any) -> None:
        """OCV against SoC (cellguard's scale) from the electrode potentials at
        25 degC, where both stoichiometries stay inside 0..1."""
        import numpy as np

        pybamm = self.pybamm
        x0, x100, y100, y0 = pybamm.lithium_ion.get_min_max_stoichiometries(p)
        socs = np.arange(-0.30, 1.5001, 0.0025)
        x = np.array([self._pybamm_soc(s) for s in socs])
        sto_n = x0 + x * (x100 - x0)
        sto_p = y0 - x * (y0 - y100)
        ok = (sto_n > 1e-3) & (sto_n < 1 - 1e-3) & (sto_p > 1e-3) & (sto_p < 1 - 1e-3)
        socs, sto_n, sto_p = socs[ok], sto_n[ok], sto_p[ok]
        param = pybamm.LithiumIonParameters()
        t = pybamm.Scalar(298.15)
        u = param.p.prim.U(pybamm.Vector(sto_p), t) - param.n.prim.U(pybamm.Vector(sto_n), t)
        self.ocv_soc = [float(s) for s in socs]
        self.ocv_v = [float(v) for v in np.asarray(p.evaluate(u)).ravel()]

    def ocv(self, soc: float) -> float:
        """OCV (V) at ``soc`` (cellguard's scale, 0..1), clamped at the table's ends."""
        s, v = self.ocv_soc, self.ocv_v
        if soc <= s[0]:
            return v[0]
        if soc >= s[-1]:
            return v[-1]
        k = bisect.bisect_right(s, soc) - 1
        return v[k] + (v[k + 1] - v[k]) * (soc - s[k]) / (s[k + 1] - s[k])

    def solve(self, start: Any, dt_s: float, current_a: float, ambient_k: float
              ) -> tuple[Any, str]:
        """Solve ``dt_s`` from ``start`` (a solution, None: the initial state)
        with ``current_a`` (positive = charging); return the solution and why it
        ended ("final time", or the event). Raises _SolveError on a failure."""
        inputs = {"Current function [A]": -current_a, "Ambient temperature [K]": ambient_k}
        self.solves += 1
        try:
            sol = self.solver.step(start, self.built_model, dt_s, save=False, inputs=inputs)
        except Exception as exc:  # pybamm.SolverError and whatever the solver raises
            text = " ".join(str(exc).split())
            if "non-positive at initial conditions" in text and "voltage" in text:
                side = "lower" if "Minimum voltage" in text else "upper"
                limit = self.v_min if side == "lower" else self.v_max
                raise _SolveError(f"{current_a:+.3g} A (positive = charging) would take the "
                                  f"PyBaMM cell beyond its {side} voltage cut-off "
                                  f"({limit:g} V) at once") from None
            raise _SolveError(f"the PyBaMM solver failed ({type(exc).__name__}: "
                              f"{text[:300]})") from None
        return sol, str(sol.termination)

    def read(self, sol: Any) -> tuple[list[float], list[float], list[float]]:
        """Times (from the solution's start), voltages and temperatures (K)."""
        t = [float(x) for x in sol.t]
        v = [float(x) for x in sol["Voltage [V]"].entries]
        temp = [float(x) for x in sol["Volume-averaged cell temperature [K]"].entries]
        return [x - t[0] for x in t], v, temp


class PybammPlant(Plant):
    """The built-in plant's switches, DC link, balancing and injections around
    cells derived from one PyBaMM cell (see the module text)."""

    def __init__(
        self,
        board: dict[str, Any],
        seed: int = 1,
        initial_soc_pct: float = 50.0,
        ambient_c: float = 25.0,
        model: str = "spme",
        parameter_set: str = "chen2020",
        step_s: float = STEP_S,
    ) -> None:
        if not (step_s > 0 and math.isfinite(step_s)):
            raise ValueError(f"step_s must be above 0, not {step_s!r}")
        self.ref = PybammCell(model, parameter_set, initial_soc_pct, ambient_c)
        board = {**board, "chemistry": self.ref.spec.chemistry,
                 "capacity_mah": round(self.ref.capacity_ah * 1000)}
        super().__init__(board, seed=seed, initial_soc_pct=initial_soc_pct, ambient_c=ambient_c)
        from ..estimation import cellmodel

        fitted = cellmodel.load(repo_root() / "cells" / CELL_FILES[parameter_set])
        self.r0_ref_ohm = fitted.value("r0_ohm", 50.0, 25.0)
        r0_board = self.params["r0_mohm"] / 1000.0
        for c in self.cells:
            # The built-in plant's seeded draws, as factors on the PyBaMM cell.
            factor = c.r0_ohm / r0_board if r0_board else 1.0
            c.r0_ohm = self.r0_ref_ohm * factor
            c.r1_ohm = c.r2_ohm = 0.0  # the dynamics are PyBaMM's
            c.v_rc1 = c.v_rc2 = 0.0
        self.model_name = model
        self.parameter_set = parameter_set
        self.step_s = float(step_s)
        self.soc_ref = initial_soc_pct / 100.0  # the PyBaMM cell's (nominal capacity)
        self.outside_heat_w = 0.0  # into the node from outside the PyBaMM cell
        self._error: PlantError | None = None
        self._short_a: float | None = None  # a short's current, held over a step
        self._v_ref = 0.0
        self._chunk: _Chunk | None = None
        try:
            self._start_chunk(0.0, self.step_s)  # the initial state (and PyBaMM works)
        except _SolveError as exc:
            raise self._fail(str(exc)) from None
        self.temperature_c = self._chunk_temp_c()

    # -- the PyBaMM cell ---------------------------------------------------------
    def _ambient_k(self) -> float:
        """PyBaMM's ambient input: the ambient plus the outside heat's rise."""
        per_cell = self.outside_heat_w / len(self.cells)
        return self.ambient_c + _KELVIN + per_cell / self.ref.cooling_w_per_k

    def _start_chunk(self, current_a: float, length_s: float) -> None:
        """A new chunk from where the plant is now (re-solving the part of the
        present chunk already passed if its current changes midway)."""
        c = self._chunk
        if c is None:
            start = None
        elif c.pos_s <= _EPS_S:
            start = c.start
        elif c.pos_s >= c.length_s - _EPS_S and c.stop is None:
            start = c.end
        else:
            # PyBaMM does not step on from a solution a cut-off ended: stop just short.
            upto = min(c.pos_s, c.length_s - 1e-6) if c.stop is not None else c.pos_s
            start, why = self.ref.solve(c.start, upto, c.current_a, c.ambient_k)
            self._check_end(why, c.current_a, start)
        ambient_k = self._ambient_k()
        end, why = self.ref.solve(start, length_s, current_a, ambient_k)
        t, v, temp = self.ref.read(end)
        stop = None
        # PyBaMM stops where the voltage crosses a cut-off, but not where a
        # current step puts it beyond one at once: both count here.
        beyond = next((k for k, x in enumerate(v)
                       if x < self.ref.v_min - 1e-6 or x > self.ref.v_max + 1e-6), None)
        if beyond == 0:
            raise _SolveError(self._stop_text(v[0], current_a, at_once=True))
        if beyond is not None:
            k = beyond
            limit = self.ref.v_min if v[k] < self.ref.v_min else self.ref.v_max
            w = (limit - v[k - 1]) / (v[k] - v[k - 1])
            t = [*t[:k], t[k - 1] + w * (t[k] - t[k - 1])]
            temp = [*temp[:k], temp[k - 1] + w * (temp[k] - temp[k - 1])]
            v = [*v[:k], limit]
        if beyond is not None or why != "final time":
            # A cut-off ahead: the plant may never get there (the current may
            # change first, the firmware may open), so it fails only on passing it.
            stop = self._stop_text(v[-1], current_a, why=why)
            length_s = t[-1]
            if len(t) < 2 or length_s <= _EPS_S:
                raise _SolveError(stop)
        elif len(t) < 2 or t[-1] < length_s - 1e-6:
            raise _SolveError(f"the PyBaMM solve ended at {t[-1]:g} of {length_s:g} s")
        self._chunk = _Chunk(current_a, ambient_k, start, end, length_s, t, v, temp, stop=stop)
        self._v_ref = v[0]

    def _check_end(self, why: str, current_a: float, sol: Any) -> None:
        if why != "final time":
            v = float(sol["Voltage [V]"].entries[-1])
            raise _SolveError(self._stop_text(v, current_a, why=why))

    def _stop_text(self, v: float, current_a: float, why: str = "",
                   at_once: bool = False) -> str:
        if v <= self.ref.v_min + 1e-6:
            what = f"its lower voltage cut-off ({self.ref.v_min:g} V)"
        elif v >= self.ref.v_max - 1e-6:
            what = f"its upper voltage cut-off ({self.ref.v_max:g} V)"
        else:
            what = f"a stop ({why})"
        amps = f"{current_a:+.3g} A (positive = charging)"
        if at_once:
            return (f"{amps} would take the PyBaMM cell beyond {what} at once "
                    f"(to {v:.3f} V)")
        return f"the PyBaMM cell reached {what} at {v:.3f} V with {amps}"

    def _fail(self, text: str) -> PlantError:
        where = f" at {self.time_s:.1f} s, SoC {100.0 * self.soc_ref:.1f} %"
        self._error = PlantError(
            f"PyBaMM plant ({self.ref.spec.name}, {MODEL_NAMES[self.ref.model_name]}): "
            f"{text}{where}; the PyBaMM plant stops here (the built-in equivalent-circuit "
            "plant goes on)")
        return self._error

    def _advance_ref(self, current_a: float, dt_s: float) -> None:
        left = dt_s
        while left > _EPS_S:
            c = self._chunk
            at_end = c is not None and c.pos_s >= c.length_s - _EPS_S
            if c is not None and c.stop is not None and at_end and c.current_a == current_a:
                raise _SolveError(c.stop)  # at the cut-off, and the current goes on
            if c is None or c.current_a != current_a or at_end:
                self._start_chunk(current_a, max(self.step_s, left))
                c = self._chunk
                assert c is not None
            take = min(left, c.length_s - c.pos_s)
            c.pos_s += take
            left -= take
        assert self._chunk is not None
        self._v_ref = self._chunk.at(self._chunk.v)

    def _chunk_temp_c(self) -> float:
        assert self._chunk is not None
        return self._chunk.at(self._chunk.temp_k) - _KELVIN

    # -- the derived cells -------------------------------------------------------
    def _emf_v(self, c: Cell) -> float:
        """The cell's voltage behind its R0: the PyBaMM cell's less its own
        i * R0, plus the OCV offset of this cell's SoC."""
        chunk = self._chunk
        i_ref = chunk.current_a if chunk is not None else 0.0
        return (self._v_ref - i_ref * self.r0_ref_ohm
                + self.ref.ocv(c.soc) - self.ref.ocv(self.soc_ref))

    def _load_current_a(self) -> float:
        # A short's current depends on the cells' voltage, so it is worked out
        # once at the step's start (as the built-in plant does) and then held,
        # so the plant reports what the PyBaMM cell was solved with.
        if self._short_a is not None and self.fault_ohm() is not None:
            return self._short_a
        return super()._load_current_a()

    def step(self, dt_s: float) -> None:
        if self._error is not None:
            raise self._error
        self._short_a = None
        self._step_link(dt_s)
        i = self.current_a
        if self.fault_ohm() is not None:
            self._short_a = self._load_current_a()
        bleed = self.balance_currents_a()  # at the step's start, as the built-in plant
        try:
            self._advance_ref(i, dt_s)
        except _SolveError as exc:
            raise self._fail(str(exc)) from None
        balance_heat_w = 0.0
        for k, c in enumerate(self.cells):
            ocv = self.ref.ocv(c.soc)
            leak_a = 0.0
            r_short = self.internal_short_ohm.get(k)
            if r_short is not None:
                leak_a = ocv / r_short
            if c.soc > 0.0:
                leak_a += c.self_discharge_a
            i_cell = i - bleed[k]
            c.soc += (i_cell - leak_a) * dt_s / (3600.0 * c.capacity_ah)
            # What this cell makes beyond the PyBaMM cell's own losses.
            c.heat_w = i_cell * i_cell * c.r0_ohm - i * i * self.r0_ref_ohm + ocv * leak_a
            balance_heat_w += bleed[k] * bleed[k] * self.balance_ohm
            self.balance_ah[k] += bleed[k] * dt_s / 3600.0
        self.soc_ref += i * dt_s / (3600.0 * self.ref.capacity_ah)
        self._step_thermal(dt_s, balance_heat_w)
        if i > 0:
            self.charge_in_ah += i * dt_s / 3600.0
        else:
            self.charge_out_ah -= i * dt_s / 3600.0
        self.time_s += dt_s
        if self.output_closed:
            self._link_v = self.pack_voltage_v()

    def _step_thermal(self, dt_s: float, board_heat_w: float) -> None:
        """The node is the PyBaMM cell's temperature; the heat from outside it
        (for the next chunk's ambient) and each cell's rise over the node."""
        self.temperature_c = node = self._chunk_temp_c()
        r_cell = self.cell_thermal_resistance_k_per_w
        heat_w = board_heat_w
        for c, hold, extra in zip(self.cells, self.cell_temperature_override_c,
                                  self.cell_extra_heat_w, strict=True):
            heat_w += (c.heat_w + extra) if hold is None else (hold - node) / r_cell
        self.outside_heat_w = heat_w
        decay = math.exp(-dt_s / self.cell_tau_s)
        for c, extra in zip(self.cells, self.cell_extra_heat_w, strict=True):
            target = (c.heat_w + extra) * r_cell
            c.rise_k = target + (c.rise_k - target) * decay

    def truth(self) -> PlantTruth:
        t = super().truth()
        t.extra.update({
            "plant": "pybamm",
            "pybamm_model": self.model_name,
            "parameter_set": self.parameter_set,
            "pybamm_cell_v": self._v_ref,
            "pybamm_soc_pct": 100.0 * self.soc_ref,
            "pybamm_solves": self.ref.solves,
        })
        return t

