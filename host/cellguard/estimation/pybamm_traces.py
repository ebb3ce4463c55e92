"""Reference traces from PyBaMM: a DFN cell with a lumped thermal model.

The physics ground truth for the cell characterisation (``cellguard
characterize``) and the estimator benchmark. PyBaMM is an optional extra
(``make pybamm-setup``); this module imports it only when a trace is run, so
the current profiles below serve tests and the simulator without it.

Cells: ``chen2020`` (LG M50 21700, NMC811/graphite-SiOx, 5 Ah, PyBaMM's
Chen2020 set), ``prada2013`` (A123 ANR26650, LFP/graphite, 2.3 Ah, PyBaMM's
Prada2013 set, which is isothermal: the thermal parameters it lacks are filled
in here, see ``_PRADA_THERMAL``) and ``chayambuka2022`` (sodium-ion, NVPF/hard
carbon, PyBaMM's Chayambuka2022 set: a 3 mAh coin cell, isothermal, scaled
here to the electrodes of a 26700 can, 1.8 Ah, with thermal parameters filled
in; see ``_CHAYAMBUKA_PARAMETERS``). All three solve with PyBaMM's lithium-ion
DFN (:func:`pybamm_model`).

Profiles (PyBaMM no longer bundles drive cycles, so they are built here, each
from full charge unless said otherwise, in the cell's nominal capacity C):

- ``cc``: 60 s rest, 1C discharge to the lower cut-off.
- ``low_rate``: 10 min rest, C/20 discharge to the lower cut-off (10 s samples;
  C/50 for chayambuka2022: the cell's ``low_rate_h``).
- ``low_rate_charge``: from empty, 10 min rest, C/20 charge to the upper cut-off
  (10 s samples; C/50 for chayambuka2022).
- ``dst``: the USABC Dynamic Stress Test (the 360 s power-step cycle of
  :data:`DST_STEPS`), repeated to the lower cut-off; 100 % power is the power
  that draws :data:`DST_PEAK_C` times C at the cell's nominal voltage.
- ``pulses``: a seeded random pulse train (``--seed``): steps of 2 to 60 s, a
  quarter of them rests, the others uniform between 2C discharge and 1C charge
  (a charge that would pass 90 % SoC discharges instead), to the lower cut-off.
- ``hppc``: an HPPC-style pulse test: at 100, 90, ..., 10 % SoC a 10 s 1C
  discharge pulse, 40 s rest, a 10 s 0.75C charge pulse, 40 s rest, then 10 % of
  C discharged at C/2 and a 1 h rest.

The trace CSV: ``t_s,current_a,cell1_v,temp1_c,true_soc_pct``. ``current_a`` is
positive when charging and is the current that flowed over the interval that
ends at ``t_s`` (it steps between two samples); ``cell1_v`` is the terminal
voltage and ``temp1_c`` the cell's (lumped) temperature at ``t_s``;
``true_soc_pct`` is 100 % less the charge out of the cell since it was full
(OCV at the upper cut-off; for chayambuka2022 at 4.14 V, see
``_CHAYAMBUKA_PARAMETERS``) over the cell's nominal capacity: the charge PyBaMM
counts ("Discharge capacity [A.h]") plus, for a run that starts below full,
what was missing at its start (PyBaMM's capacity between its 0 % and 100 %
states, which may differ from the nominal, times 1 - the initial SoC). So
every trace of a cell shares one SoC scale, 1 % being 1 % of the nominal
capacity: a run from empty (OCV at the lower cut-off) starts at about -3 % for
Chen2020, whose electrodes hold 5.15 Ah between its cut-offs.

A dynamic profile ends where the terminal voltage reaches the lower cut-off (a
charging one at the upper); a dynamic profile charging near full charge may
pass the upper cut-off for a moment, so only the profile's own end stops a run.

Runs are cached (``$CELLGUARD_CACHE_DIR``, else ``$XDG_CACHE_HOME/cellguard``,
else ``~/.cache/cellguard``; key: the cell, every step of the profile, the
ambient, this module's trace version and PyBaMM's version), so reruns are
instant.

    python -m cellguard.estimation.pybamm_traces --cell chen2020 --profile dst --ambient 25 \
        --out trace.csv
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CellguardError, SetupError
from ..files import atomic_output, copy_file, write_text

TRACE_VERSION = 2
"""Bump when a profile or the way a trace is made changes (invalidates the cache)."""

COLUMNS = ("t_s", "current_a", "cell1_v", "temp1_c", "true_soc_pct")

# -- the cells ---------------------------------------------------------------------


@dataclass(frozen=True)
class CellSpec:
    key: str
    parameter_set: str
    chemistry: str
    name: str
    capacity_ah: float  # nominal ("Nominal cell capacity [A.h]")
    nominal_v: float  # for scaling power profiles
    v_min: float  # the parameter set's lower and upper cut-offs
    v_max: float
    parameters: tuple[tuple[str, float], ...] = ()
    """Values set on top of the parameter set (a scaled electrode, thermal
    parameters it lacks): in the spec, so they are in the cache key."""
    family: str = "lithium_ion"
    """The PyBaMM model family whose DFN and SPMe solve the set (:func:`pybamm_model`)."""
    low_rate_h: float = 20.0
    """The low-rate tests run at C / low_rate_h (C/20; slower for a cell whose
    electrodes take hours to relax, where C/20 is far from its OCV)."""


# Chayambuka2022 (PyBaMM's sodium-ion set: hard carbon | Na3V2(PO4)2F3, NVPF,
# the chemistry of e.g. Tiamat's cylindrical cells) is a coin cell of 2.54 cm2
# (3 mAh), isothermal. Scaled here to the electrodes of a 26700 can: a
# double-coated strip 60 mm high and 1.40 m long, wound, makes 2 x 0.060 x 1.40
# = 0.168 m2 of electrode pairs; with the set's 64 + 25 + 68 um stack and
# aluminium collectors that is about 30 cm3, what a 26 mm x 70 mm can holds
# around its mandrel (the A123 26650 of Prada2013 winds 0.18 m2 of thinner
# electrodes). Only the area is scaled: the set's loading (11.3 Ah/m2, 1.1 mAh/cm2
# a side: thin, power-type electrodes) makes that 1.90 Ah between its 0 and
# 100 % states; 1.8 Ah nominal (C/50 delivers 1.87 Ah at 25 degC, C/20 1.84,
# C/5 1.73, 1C 1.43: the set is strongly diffusion-limited), 3.6 V nominal (the
# mean voltage at C/20).
# 100 % is taken at an OCV of 4.14 V, not the set's 4.2 V: at 4.2 V the NVPF
# electrode sits on the last point of the set's OCP data (stoichiometry 0.21),
# and any charge from there (the HPPC's charge pulse at 100 %) takes it off the
# data, where the extrapolated OCP rises by volts; 4.14 V leaves 1 % of the
# capacity (4.2 V stays the charge cut-off).
# The low-rate tests run at C/50 (``low_rate_h``): at C/20 the cell is far from
# its OCV (up to 110 mV, its hard carbon's solid diffusion time R^2/D is about
# 11 h), and a C/20 charge stops at the 4.2 V cut-off at 71 % SoC.
# Thermal parameters it lacks: Chen2020's electrode and separator properties
# (as for Prada2013), aluminium collectors on both sides (Chen2020's positive
# one: sodium does not alloy with aluminium, sodium-ion cells use it for the
# negative too), the 26700 can (volume pi r^2 h, cooling area its whole
# surface), 10 W/(m2 K) to ambient. The set has no temperature dependence of
# its own (no Arrhenius terms, no entropic heat): only the RT/F of the kinetics
# and the electrolyte, so its overpotentials grow a little with temperature
# (docs/estimation.md, "Sodium-ion").
_R26700_M, _H26700_M = 0.013, 0.070
_AL_FOIL = {"conductivity [S.m-1]": 36914000.0, "density [kg.m-3]": 2700.0,
            "specific heat capacity [J.kg-1.K-1]": 897.0,
            "thermal conductivity [W.m-1.K-1]": 237.0, "thickness [m]": 1.6e-05}
_CHAYAMBUKA_PARAMETERS: tuple[tuple[str, float], ...] = (
    ("Electrode height [m]", 0.060),
    ("Electrode width [m]", 2 * 1.40),
    ("Nominal cell capacity [A.h]", 1.8),
    ("Open-circuit voltage at 100% SOC [V]", 4.14),
    *((f"{side} current collector {prop}", value)
      for side in ("Negative", "Positive") for prop, value in _AL_FOIL.items()),
    ("Negative electrode density [kg.m-3]", 1657.0),
    ("Negative electrode specific heat capacity [J.kg-1.K-1]", 700.0),
    ("Negative electrode thermal conductivity [W.m-1.K-1]", 1.7),
    ("Positive electrode density [kg.m-3]", 3262.0),
    ("Positive electrode specific heat capacity [J.kg-1.K-1]", 700.0),
    ("Positive electrode thermal conductivity [W.m-1.K-1]", 2.1),
    ("Separator density [kg.m-3]", 397.0),
    ("Separator specific heat capacity [J.kg-1.K-1]", 700.0),
    ("Separator thermal conductivity [W.m-1.K-1]", 0.16),
    ("Total heat transfer coefficient [W.m-2.K-1]", 10.0),
    ("Cell volume [m3]", math.pi * _R26700_M**2 * _H26700_M),
    ("Cell cooling surface area [m2]", 2 * math.pi * _R26700_M * (_R26700_M + _H26700_M)),
)

CELLS: dict[str, CellSpec] = {
    "chen2020": CellSpec("chen2020", "Chen2020", "nmc", "LG M50 (PyBaMM Chen2020)",
                         5.0, 3.63, 2.5, 4.2),
    "prada2013": CellSpec("prada2013", "Prada2013", "lfp", "A123 ANR26650 (PyBaMM Prada2013)",
                          2.3, 3.3, 2.0, 3.6),
    "chayambuka2022": CellSpec("chayambuka2022", "Chayambuka2022", "sodium_ion",
                               "NVPF 26700 (PyBaMM Chayambuka2022, scaled)", 1.8, 3.6, 2.0,
                               4.2, _CHAYAMBUKA_PARAMETERS, low_rate_h=50.0),
}

# Prada2013 is an isothermal set. For the lumped thermal model it gets the
# material properties Chen2020 uses (copper and aluminium collectors, electrode
# and separator heat capacities and conductivities) and the geometry of a
# 26650 can (26 mm by 65 mm: volume pi r^2 h, cooling area its whole surface)
# with the same 10 W/(m^2 K) to ambient.
_CHEN_THERMAL_KEYS = (
    "Negative current collector conductivity [S.m-1]",
    "Negative current collector density [kg.m-3]",
    "Negative current collector specific heat capacity [J.kg-1.K-1]",
    "Negative current collector thermal conductivity [W.m-1.K-1]",
    "Negative current collector thickness [m]",
    "Negative electrode density [kg.m-3]",
    "Negative electrode specific heat capacity [J.kg-1.K-1]",
    "Negative electrode thermal conductivity [W.m-1.K-1]",
    "Positive current collector conductivity [S.m-1]",
    "Positive current collector density [kg.m-3]",
    "Positive current collector specific heat capacity [J.kg-1.K-1]",
    "Positive current collector thermal conductivity [W.m-1.K-1]",
    "Positive current collector thickness [m]",
    "Positive electrode density [kg.m-3]",
    "Positive electrode specific heat capacity [J.kg-1.K-1]",
    "Positive electrode thermal conductivity [W.m-1.K-1]",
    "Separator density [kg.m-3]",
    "Separator specific heat capacity [J.kg-1.K-1]",
    "Separator thermal conductivity [W.m-1.K-1]",
    "Total heat transfer coefficient [W.m-2.K-1]",
)
_R26650_M, _H26650_M = 0.013, 0.065
_PRADA_THERMAL: dict[str, float] = {
    "Cell volume [m3]": math.pi * _R26650_M**2 * _H26650_M,
    "Cell cooling surface area [m2]": 2 * math.pi * _R26650_M * (_R26650_M + _H26650_M),
}

# -- the profiles ------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    value: float  # A (or W for a power profile), positive = charging
    duration_s: float


@dataclass(frozen=True)
class Profile:
    name: str
    mode: str  # "current" or "power"
    segments: tuple[Segment, ...]
    dt_s: float  # sample period of the trace
    initial_soc: float  # 0..1
    until: str  # the cut-off that ends it: "v_min" (discharging) or "v_max" (charging)

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.segments)


# USABC Dynamic Stress Test: the 360 s cycle of power steps, (duration s,
# percent of the maximum power, positive = discharge as the manual writes it,
# negative = regenerative charge). From the USABC Electric Vehicle Battery Test
# Procedures Manual, rev. 2 (1996), appendix "Dynamic Stress Test" (the same
# table appears in e.g. He, Xiong et al., Energies 2011 and many SoC papers).
# Net discharge: 12.5 % of the maximum power on average over a cycle.
DST_STEPS: tuple[tuple[float, float], ...] = (
    (16, 0), (28, 12.5), (12, 25), (8, -12.5),
    (16, 0), (24, 12.5), (12, 25), (8, -12.5),
    (16, 0), (24, 12.5), (12, 25), (8, -12.5),
    (16, 0), (36, 12.5), (8, 100), (24, 62.5), (8, -25), (32, 25), (8, -50),
    (44, 0),
)
DST_PEAK_C = 2.0
"""100 % DST power: the power that draws this many C at the nominal voltage."""

DST_REST_STARTS = (10, 75, 95)
"""The DST drives that start rested at a SoC other than full (``dst_rest75``:
10 minutes of rest at 75 %, then DST cycles to the cut-off): a board that boots
after a long rest, with a stored SoC that may be wrong (issue 18)."""
DST_REST_S = 600.0
PROFILE_NAMES = ("cc", "low_rate", "low_rate_charge", "dst", "pulses", "hppc",
                 *(f"dst_rest{soc}" for soc in DST_REST_STARTS))

HPPC_DISCHARGE_C = 1.0
HPPC_CHARGE_C = 0.75
HPPC_PULSE_S = 10.0
HPPC_PULSE_REST_S = 40.0
HPPC_STEP_C = 0.5  # the 10 % SoC steps between levels
HPPC_LEVEL_REST_S = 3600.0


def dst_cycle(p_max_w: float) -> list[Segment]:
    """One DST cycle in W, positive = charging."""
    return [Segment(-pct / 100.0 * p_max_w, float(d)) for d, pct in DST_STEPS]


def hppc_segments(capacity_ah: float, levels: int = 10,
                  level_rest_s: float = HPPC_LEVEL_REST_S) -> list[Segment]:
    """The HPPC-style pulse test (see the module text) in A, positive = charging."""
    c = capacity_ah
    segs = [Segment(0.0, 60.0)]
    step_s = 3600.0 * (1.0 / levels) / HPPC_STEP_C
    for _ in range(levels):
        segs += [
            Segment(-HPPC_DISCHARGE_C * c, HPPC_PULSE_S),
            Segment(0.0, HPPC_PULSE_REST_S),
            Segment(HPPC_CHARGE_C * c, HPPC_PULSE_S),
            Segment(0.0, HPPC_PULSE_REST_S),
            Segment(-HPPC_STEP_C * c, step_s),
            Segment(0.0, level_rest_s),
        ]
    return segs


def random_pulses(capacity_ah: float, seed: int = 1, duration_s: float = 12 * 3600.0
                  ) -> list[Segment]:
    """A seeded random pulse train in A (long enough to reach the cut-off); a
    charge pulse that would take the SoC above 90 % discharges instead."""
    rng = random.Random(seed)
    segs: list[Segment] = [Segment(0.0, 60.0)]
    t, soc = 60.0, 1.0
    while t < duration_s:
        d = float(rng.randint(2, 60))
        i = 0.0 if rng.random() < 0.25 else round(rng.uniform(-2.0, 1.0) * capacity_ah, 4)
        if i > 0 and soc + i * d / 3600.0 / capacity_ah > 0.9:
            i = -i
        soc += i * d / 3600.0 / capacity_ah
        segs.append(Segment(i, d))
        t += d
    return segs


def build_profile(name: str, cell: CellSpec, seed: int = 1) -> Profile:
    c = cell.capacity_ah
    if name == "cc":
        return Profile(name, "current", (Segment(0.0, 60.0), Segment(-c, 2.5 * 3600.0)),
                       1.0, 1.0, "v_min")
    low = (c / cell.low_rate_h, 1.25 * cell.low_rate_h * 3600.0)  # A, s (to the cut-off)
    if name == "low_rate":
        return Profile(name, "current", (Segment(0.0, 600.0), Segment(-low[0], low[1])),
                       10.0, 1.0, "v_min")
    if name == "low_rate_charge":
        return Profile(name, "current", (Segment(0.0, 600.0), Segment(low[0], low[1])),
                       10.0, 0.0, "v_max")
    if name == "dst":
        p_max = DST_PEAK_C * c * cell.nominal_v
        cycles = math.ceil(12 * 3600.0 / 360.0)
        return Profile(name, "power", tuple(dst_cycle(p_max) * cycles), 1.0, 1.0, "v_min")
    if name.startswith("dst_rest") and name in PROFILE_NAMES:
        p_max = DST_PEAK_C * c * cell.nominal_v
        cycles = math.ceil(12 * 3600.0 / 360.0)
        return Profile(name, "power", (Segment(0.0, DST_REST_S), *dst_cycle(p_max) * cycles),
                       1.0, int(name[len("dst_rest"):]) / 100.0, "v_min")
    if name == "pulses":
        return Profile(name, "current", tuple(random_pulses(c, seed)), 1.0, 1.0, "v_min")
    if name == "hppc":
        return Profile(name, "current", tuple(hppc_segments(c)), 1.0, 1.0, "v_min")
    raise CellguardError(f"no profile {name!r}; profiles: {', '.join(PROFILE_NAMES)}")


def profile_samples(profile: Profile) -> tuple[list[float], list[float]]:
    """Sample times and the value held over the interval ending at each (the
    trace's convention), every ``dt_s`` and at each segment's end."""
    times, values = [0.0], [profile.segments[0].value]
    t0 = 0.0
    for seg in profile.segments:
        n = max(1, round(seg.duration_s / profile.dt_s))
        for k in range(1, n + 1):
            times.append(t0 + seg.duration_s * k / n)
            values.append(seg.value)
        t0 += seg.duration_s
    return times, values


# -- running PyBaMM ------------------------------------------------------------------


def cache_dir() -> Path:
    env = os.environ.get("CELLGUARD_CACHE_DIR")
    if env:
        return Path(env) / "pybamm-traces"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "cellguard" / "pybamm-traces"


def _import_pybamm() -> Any:
    os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")  # no network here
    try:
        import pybamm
    except ImportError:
        raise SetupError("PyBaMM is not installed: run `make pybamm-setup` (installs the "
                         "`pybamm` extra into .venv)") from None
    pybamm.set_logging_level("ERROR")
    return pybamm


def _parameters(pybamm: Any, cell: CellSpec, ambient_c: float, initial_soc: float) -> Any:
    p = pybamm.ParameterValues(cell.parameter_set)
    p.update(dict(cell.parameters), check_already_exists=False)
    if cell.key == "prada2013":
        chen = pybamm.ParameterValues("Chen2020")
        p.update({k: chen[k] for k in _CHEN_THERMAL_KEYS}, check_already_exists=False)
        p.update(_PRADA_THERMAL, check_already_exists=False)
    p.set_initial_state(initial_soc)
    t_k = ambient_c + 273.15
    p.update({"Ambient temperature [K]": t_k, "Initial temperature [K]": t_k})
    return p


def pybamm_model(pybamm: Any, spec: CellSpec, kind: str = "DFN",
                 options: dict[str, str] | None = None) -> Any:
    """The PyBaMM model that solves ``spec``'s parameter set (its ``family``):
    ``kind`` "DFN" or "SPMe", with ``options``.

    Every cell here is ``lithium_ion``, the sodium-ion set (Chayambuka2022)
    too: PyBaMM's ``sodium_ion`` family has only a ``BasicDFN`` (isothermal,
    driven by current only: no lumped thermal model, no power steps), whose
    equations are the lithium-ion DFN's with the same parameter names; on
    Chayambuka2022 the two agree within a millivolt (tests/test_pybamm_traces.py)."""
    if kind not in ("DFN", "SPMe"):
        raise CellguardError(f"no PyBaMM model {kind!r} here: DFN or SPMe")
    return getattr(getattr(pybamm, spec.family), kind)(options=options or {})


def _theoretical_capacity_ah(pybamm: Any, spec: CellSpec, ambient_c: float) -> float:
    """Charge between PyBaMM's 0 % and 100 % states: the lithium the negative
    electrode takes between them."""
    conc = []
    for soc in (1.0, 0.0):
        p = _parameters(pybamm, spec, ambient_c, soc)
        conc.append(p["Initial concentration in negative electrode [mol.m-3]"])
    volume = (p["Negative electrode active material volume fraction"]
              * p["Negative electrode thickness [m]"] * p["Electrode height [m]"]
              * p["Electrode width [m]"]
              * p["Number of electrodes connected in parallel to make a cell"])
    return (conc[0] - conc[1]) * volume * 96485.33212 / 3600.0


def _cache_key(spec: CellSpec, prof: Profile, ambient_c: float, version: str) -> str:
    """What a trace depends on: the cell, the profile's every step, the ambient,
    this module's trace version and PyBaMM's version."""
    key = json.dumps({"cell": repr(spec), "profile": repr(prof), "ambient_c": float(ambient_c),
                      "trace_version": TRACE_VERSION, "pybamm": version}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass
class TraceResult:
    path: Path
    cached: bool
    run_s: float  # the PyBaMM run's wall time (from the cache's record when cached)
    rows: int
    end: str  # why the run ended


def run_trace(cell: str, profile: str, ambient_c: float = 25.0, seed: int = 1,
              use_cache: bool = True) -> TraceResult:
    """Run (or fetch from the cache) one trace; returns where its CSV is."""
    if cell not in CELLS:
        raise CellguardError(f"no cell {cell!r}; cells: {', '.join(CELLS)}")
    spec = CELLS[cell]
    prof = build_profile(profile, spec, seed)
    pybamm = _import_pybamm()
    key = _cache_key(spec, prof, ambient_c, pybamm.__version__)
    folder = cache_dir()
    stem = f"{cell}-{profile}-{ambient_c:g}C-{key}"
    path, meta_path = folder / f"{stem}.csv", folder / f"{stem}.json"
    if use_cache and path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return TraceResult(path, True, meta["run_s"], meta["rows"], meta["end"])
    t0 = time.perf_counter()
    rows, end = _simulate(pybamm, spec, prof, ambient_c)
    run_s = time.perf_counter() - t0
    folder.mkdir(parents=True, exist_ok=True)
    # The cache's own files: replaced (force), each through a temporary file, the
    # record last, so a trace without its record is run again.
    with atomic_output(path, force=True) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for t, i, v, temp, soc in rows:
            w.writerow([f"{t:.3f}", f"{i:.6f}", f"{v:.6f}", f"{temp:.4f}", f"{soc:.5f}"])
    meta = {"cell": cell, "profile": profile, "ambient_c": ambient_c, "seed": seed,
            "pybamm": pybamm.__version__, "trace_version": TRACE_VERSION, "run_s": run_s,
            "rows": len(rows), "end": end}
    write_text(meta_path, json.dumps(meta, indent=2) + "\n", force=True)
    return TraceResult(path, False, run_s, len(rows), end)


def _simulate(pybamm: Any, spec: CellSpec, prof: Profile, ambient_c: float
              ) -> tuple[list[tuple[float, float, float, float, float]], str]:
    import numpy as np

    times, values = profile_samples(prof)
    # The profile as a function of time: piecewise constant, each step a 1 ms
    # ramp (the solver steps through it; a sample sits on each segment's end).
    kt, kv = [0.0], [-prof.segments[0].value]  # PyBaMM: positive = discharge
    t0 = 0.0
    for k, seg in enumerate(prof.segments):
        if k:
            kt.append(t0 + 1e-3)
            kv.append(-seg.value)
        t0 += seg.duration_s
        kt.append(t0)
        kv.append(-seg.value)
    params = _parameters(pybamm, spec, ambient_c, prof.initial_soc)
    drive = pybamm.Interpolant(np.array(kt), np.array(kv), pybamm.t, interpolator="linear")
    # The profile's own cut-off stops it; the other one moves 0.5 V away (PyBaMM
    # stops on either, and a dynamic profile may pass the other for a moment).
    if prof.until == "v_min":
        params.update({"Upper voltage cut-off [V]": spec.v_max + 0.5})
    else:
        params.update({"Lower voltage cut-off [V]": spec.v_min - 0.5})
    if prof.mode == "power":
        params.update({"Power function [W]": drive}, check_already_exists=False)
        options = {"thermal": "lumped", "operating mode": "power"}
    else:
        params.update({"Current function [A]": drive})
        options = {"thermal": "lumped"}
    model = pybamm_model(pybamm, spec, "DFN", options)
    sim = pybamm.Simulation(model, parameter_values=params, solver=pybamm.IDAKLUSolver())
    # The solver stops at every breakpoint (else it can step over a short
    # pulse) and interpolates the samples in between.
    t_eval = np.array(times)
    sol = sim.solve(np.array(kt), t_interp=t_eval)
    t_end = float(sol["Time [s]"].entries[-1])
    keep = t_eval <= t_end + 1e-9
    ts = t_eval[keep]
    if ts[-1] < t_end - 1e-6:  # the sample where the cut-off stopped it
        ts = np.append(ts, t_end)
    v = sol["Voltage [V]"](ts)
    temp = sol["Volume-averaged cell temperature [K]"](ts) - 273.15
    q_out = sol["Discharge capacity [A.h]"](ts)
    current = -sol["Current [A]"](ts)  # positive = charging
    held = np.array(values[: len(ts)])
    if prof.mode == "current":
        # The held value of the profile (PyBaMM's is the same but for the 1 ms ramps).
        current = np.where(np.arange(len(ts)) < len(held), held, current)
    else:
        # Power steps: the mean current over each sample interval, from the
        # charge PyBaMM counted (the current itself varies within a step).
        dq = np.diff(q_out, prepend=q_out[0]) * 3600.0
        dt = np.diff(ts, prepend=ts[0])
        current = np.where(dt > 0, -dq / np.where(dt > 0, dt, 1.0), current)
    missing_ah = (1.0 - prof.initial_soc) * _theoretical_capacity_ah(pybamm, spec, ambient_c)
    soc = 100.0 - 100.0 * (missing_ah + q_out) / spec.capacity_ah
    end = str(sol.termination)
    rows = list(zip(ts.tolist(), current.tolist(), v.tolist(), temp.tolist(), soc.tolist(),
                    strict=True))
    return rows, end


# -- command line ------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m cellguard.estimation.pybamm_traces",
        description="Reference traces from PyBaMM (DFN, lumped thermal) as cellguard CSV.")
    p.add_argument("--cell", nargs="+", default=["chen2020"], choices=[*CELLS, "all"])
    p.add_argument("--profile", nargs="+", default=["dst"], choices=[*PROFILE_NAMES, "all"])
    p.add_argument("--ambient", nargs="+", type=float, default=[25.0],
                   help="ambient (and initial) temperature(s), degC (default 25)")
    p.add_argument("--seed", type=int, default=1, help="seed of the random pulse train")
    p.add_argument("--out", help="CSV to write (one cell, profile and ambient)")
    p.add_argument("--out-dir", help="folder to write CELL-PROFILE-AMBIENTC.csv files into")
    p.add_argument("--no-cache", action="store_true", help="run PyBaMM even if cached")
    p.add_argument("--force", action="store_true",
                   help="replace existing files at --out or in --out-dir")
    args = p.parse_args(argv)
    cells = list(CELLS) if "all" in args.cell else args.cell
    profiles = list(PROFILE_NAMES) if "all" in args.profile else args.profile
    runs = [(c, pr, a) for c in cells for pr in profiles for a in args.ambient]
    if args.out and len(runs) > 1:
        p.error("--out takes one cell, one profile and one ambient (use --out-dir for more)")
    try:
        for c, pr, a in runs:
            res = run_trace(c, pr, a, seed=args.seed, use_cache=not args.no_cache)
            dest = None
            if args.out:
                dest = Path(args.out)
            elif args.out_dir:
                dest = Path(args.out_dir) / f"{c}-{pr}-{a:g}C.csv"
            if dest is not None:
                dest.parent.mkdir(parents=True, exist_ok=True)
                copy_file(res.path, dest, force=args.force)
            how = "cached" if res.cached else "ran"
            print(f"{c:10} {pr:16} {a:5g} degC  {res.rows:6} rows  {how} "
                  f"(PyBaMM {res.run_s:.1f} s)  end: {res.end}  -> {dest or res.path}",
                  flush=True)
    except CellguardError as exc:
        print(f"pybamm_traces: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
