"""Accuracy of the on-board SoC estimator against physics: PyBaMM DFN ground truth.

    .venv/bin/python benchmarks/estimator_accuracy.py              # every case (~1 min warm)
    .venv/bin/python benchmarks/estimator_accuracy.py --case nmc-dst-25C lfp-cycle
    .venv/bin/python benchmarks/estimator_accuracy.py --micropython # + one case under MicroPython
    .venv/bin/python benchmarks/estimator_accuracy.py --exact       # no sensor errors (diagnosis)
    .venv/bin/python benchmarks/estimator_accuracy.py --float32     # + each EKF in single precision
    .venv/bin/python benchmarks/estimator_accuracy.py --set PackEkf.voltage_std_v=0.010

Needs PyBaMM (`make pybamm-setup`). Ground truth: PyBaMM's DFN with a lumped
thermal model (``cellguard.estimation.pybamm_traces``, cached), whose ``true_soc_pct`` is
100 % less the charge out of the cell since full over its nominal capacity.
The ``cycle`` profile (rest 1 h, C/2 discharge to the lower cut-off, rest 1 h)
is made here with a PyBaMM experiment and cached next to the others.

Measurements pass through the simulator's sensor model
(``cellguard.sim.sensors.SensorModel``) with the front end of
``boards/sim-4s.json`` and the firmware's own code-to-unit conversion
(``cellguard_fw.frontend``): cell voltage through a 16-bit, 5 V ADC with 2 mV
(rms) noise, current through a 16-bit +/-50 A channel with 10 mA (rms) noise,
a 20 mA offset and a 0.5 % gain error, temperature through the board's 12-bit
NTC channel with 0.2 degC noise; seeded per case. Every case runs with both signs
of the current errors: -20 mA and +0.5 % (both make a discharge read larger:
they add up) and the mirror, +20 mA and -0.5 % (a discharge reads smaller), so
neither estimator is scored on one lucky sign (``--sensor`` sets the first; the
mirror negates its offset and gain). Then ``cellguard.estimation.estimate.run`` runs the firmware's
estimator (the same code as on the board) over the measured trace with the
fitted cell file (``cells/lg-m50-chen2020.json``,
``cells/a123-26650-prada2013.json``), once as the EKF and once as the coulomb
baseline. Both start from the same information: the baseline's OCV table is the
fitted cell's OCV at the first measured temperature
(``estimate.coulomb_ocv_mv``), not the chemistry's generic table, and a case
with a given start SoC gives it to both.

Per case and estimator: RMSE of the SoC error over the whole run, the largest
|error| after the first 10 minutes, and the convergence time (the first time
after which |error| stays below 2 points to the end of the run). The error is
the estimate less the true SoC clamped to 0..100 % (the estimator reports
0..100 %; the DFN's electrodes hold a few percent more than the nominal
capacity, so its true SoC ends slightly below 0 %). For the ``cycle`` cases,
the capacity the estimator holds at the end (relearned between the two rests)
against the nominal capacity (the scale of the true SoC). The goals of issues 6
and 18 are checked and printed PASS/FAIL (a figure beside them that is not a
goal, NOTE); the exit status is 0 either way.

Tuning experiments without editing the firmware: ``--set CLASS.PARAM=VALUE``
replaces a keyword default of ``PackEkf`` or ``Health`` in
this process; ``--firmware DIR`` imports ``cellguard_fw`` from ``DIR`` (a
modified copy of ``firmware/``) instead.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# -- metrics (no PyBaMM needed: tests/test_estimator_accuracy_tools.py) ------------------

SETTLE_S = 600.0
"""The max error is taken after the first 10 minutes of a run."""
CONVERGENCE_BAND_PCT = 2.0
"""Converged: |error| below this (SoC points) from then on to the end of the run."""


def soc_error(estimate_pct: Sequence[float], true_pct: Sequence[float]) -> np.ndarray:
    """Estimate less truth, in SoC points; the truth clamped to 0..100 % (the
    range an estimator reports)."""
    est = np.asarray(estimate_pct, dtype=float)
    truth = np.clip(np.asarray(true_pct, dtype=float), 0.0, 100.0)
    if est.shape != truth.shape:
        raise ValueError(f"{est.shape[0]} estimates for {truth.shape[0]} true values")
    return est - truth


def rmse(err: Sequence[float]) -> float:
    e = np.asarray(err, dtype=float)
    if e.size == 0:
        raise ValueError("no errors to take the RMSE of")
    return float(np.sqrt(np.mean(e * e)))


def max_error_after(t_s: Sequence[float], err: Sequence[float],
                    after_s: float = SETTLE_S) -> float:
    """The largest |error| at ``after_s`` or more after the first sample (NaN
    when the run is shorter)."""
    t = np.asarray(t_s, dtype=float)
    e = np.asarray(err, dtype=float)
    late = (t - t[0]) >= after_s
    return float(np.max(np.abs(e[late]))) if late.any() else math.nan


def convergence_time(t_s: Sequence[float], err: Sequence[float],
                     band: float = CONVERGENCE_BAND_PCT) -> float | None:
    """Seconds from the first sample to the first one after which |error| stays
    below ``band`` to the end of the run: 0 when it never leaves the band, None
    when the run ends outside it."""
    t = np.asarray(t_s, dtype=float)
    outside = np.flatnonzero(np.abs(np.asarray(err, dtype=float)) >= band)
    if outside.size == 0:
        return 0.0
    last = int(outside[-1])
    if last == t.size - 1:
        return None
    return float(t[last + 1] - t[0])


def format_time(seconds: float | None) -> str:
    """``0 s``, ``95 s``, ``12.5 min``, ``1.25 h``; ``never`` for None."""
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


# -- the sensors ------------------------------------------------------------------------

BOARD_FILE = REPO / "boards" / "sim-4s.json"
SENSORS = {
    "cell_noise_mv": 2.0,  # rms, per reading (one per estimation period)
    "current_noise_ma": 10.0,  # rms, per reading
    "current_offset_a": -0.020,  # reads 20 mA more discharge than flows
    "current_gain_error": 0.005,  # reads 0.5 % more than flows
    "temp_noise_c": 0.2,
}
"""The sensor errors of the benchmark (with the front end of ``BOARD_FILE``)."""


def mirrored(sensors: dict[str, float]) -> dict[str, float]:
    """The same sensor errors with the current offset and gain error negated."""
    out = dict(sensors)
    out["current_offset_a"] = -sensors["current_offset_a"]
    out["current_gain_error"] = -sensors["current_gain_error"]
    return out


def sign_label(sensors: dict[str, float]) -> str:
    """How the current errors lean: "+" when a discharge reads larger than it is."""
    lean = -sensors["current_offset_a"] + sensors["current_gain_error"]
    return "exact" if sensors["current_offset_a"] == sensors["current_gain_error"] == 0 else (
        "+" if lean > 0 else "-")


@dataclass
class Measured:
    t_s: list[float]
    current_a: list[float]
    cells_v: list[list[float]]
    temps_c: list[list[float]]


def measure(t_s: Sequence[float], current_a: Sequence[float], cell_v: Sequence[float],
            temp_c: Sequence[float], seed: int, exact: bool = False,
            sensors: dict[str, float] | None = None) -> Measured:
    """One cell's trace as the board reads it: the sensor model's codes, converted
    back by the firmware's front end (integer mV, mA, 0.1 degC). ``sensors``:
    :data:`SENSORS` unless given; ``exact``: none of them (quantisation only)."""
    sens = SENSORS if sensors is None else sensors
    from cellguard.sim.sensors import SensorModel
    from cellguard_fw.frontend import Frontend

    board = json.loads(BOARD_FILE.read_text())
    fe = board["frontend"]
    cell_lsb_mv = fe["cell_adc"]["full_scale_mv"] / ((1 << fe["cell_adc"]["bits"]) - 1)
    i_adc = fe["current_adc"]
    cur_lsb_ma = i_adc["full_scale_ma"] / ((1 << i_adc["bits"]) - 1 - i_adc["zero_code"])
    config = {"noise_lsb": 0.0, "cell_noise_lsb": 0.0, "current_noise_lsb": 0.0,
              "temp_noise_c": 0.0, "current_offset_a": 0.0, "current_gain_error": 0.0}
    if not exact:
        config.update({
            "cell_noise_lsb": sens["cell_noise_mv"] / cell_lsb_mv,
            "current_noise_lsb": sens["current_noise_ma"] / cur_lsb_ma,
            "temp_noise_c": sens["temp_noise_c"],
            "current_offset_a": sens["current_offset_a"],
            "current_gain_error": sens["current_gain_error"],
        })
    sm = SensorModel(board, seed=seed, config=config)
    front = Frontend(fe)
    out = Measured([], [], [], [])
    for t, i, v, temp in zip(t_s, current_a, cell_v, temp_c, strict=True):
        out.t_s.append(float(t))
        out.current_a.append(front.current.convert(sm.current_code(sm.sensed_current_a(i)))
                             / 1000.0)
        out.cells_v.append([front.cell.convert(sm.cell_code(v)) / 1000.0])
        out.temps_c.append([front.temp.convert(sm.temp_code(temp)) / 10.0])
    return out


# -- the cases --------------------------------------------------------------------------

CELL_FILES = {"chen2020": "lg-m50-chen2020.json", "prada2013": "a123-26650-prada2013.json",
              "chayambuka2022": "nvpf-26700-chayambuka2022.json"}
CHEMISTRY = {"chen2020": "NMC", "prada2013": "LFP", "chayambuka2022": "Na-ion"}


@dataclass(frozen=True)
class Case:
    name: str
    cell: str  # pybamm_traces cell key
    profile: str  # a pybamm_traces profile, or "cycle"
    ambient_c: float
    initial_offset_pct: float | None = None  # start the EKF this far off the truth
    start_s: float = 0.0  # start the estimators this far into the trace (a reset under load)
    capacity_factor: float = 1.0  # the estimator's starting capacity / the nominal
    start_pct: float | None = None  # start the EKF here (a stored SoC from the wrong end)

    @property
    def chem(self) -> str:
        return CHEMISTRY[self.cell]

    @property
    def wrong_start(self) -> bool:
        return self.initial_offset_pct is not None or self.start_pct is not None

    @property
    def band(self) -> float:
        """The wrong-start goal's band, SoC points: 2 on NMC, 3 on the flatter OCVs."""
        return 2.0 if self.chem == "NMC" else 3.0


def _cases() -> list[Case]:
    cases = []
    for cell, tag in (("chen2020", "nmc"), ("prada2013", "lfp"), ("chayambuka2022", "naion")):
        cases += [
            Case(f"{tag}-cc-25C", cell, "cc", 25.0),
            Case(f"{tag}-dst-0C", cell, "dst", 0.0),
            Case(f"{tag}-dst-25C", cell, "dst", 25.0),
            Case(f"{tag}-dst-45C", cell, "dst", 45.0),
            Case(f"{tag}-pulses-0C", cell, "pulses", 0.0),
            Case(f"{tag}-pulses-25C", cell, "pulses", 25.0),
            Case(f"{tag}-cycle-25C", cell, "cycle", 25.0),
            Case(f"{tag}-cycle-25C-cap90", cell, "cycle", 25.0, capacity_factor=0.9),
            # Wrong starts (issue 18): a board that boots rested with a stored SoC 20
            # points off either way, or from the wrong end, then drives; and a reset
            # under load an hour into a drive.
            Case(f"{tag}-dst-rest75-start-20", cell, "dst_rest75", 25.0, initial_offset_pct=-20.0),
            Case(f"{tag}-dst-rest75-start+20", cell, "dst_rest75", 25.0, initial_offset_pct=20.0),
            Case(f"{tag}-dst-rest10-start95", cell, "dst_rest10", 25.0, start_pct=95.0),
            Case(f"{tag}-dst-rest95-start10", cell, "dst_rest95", 25.0, start_pct=10.0),
            Case(f"{tag}-dst-25C-reset1h-20", cell, "dst", 25.0, initial_offset_pct=-20.0,
                 start_s=3600.0),
            Case(f"{tag}-dst-25C-reset1h+20", cell, "dst", 25.0, initial_offset_pct=20.0,
                 start_s=3600.0),
        ]
    return cases


CASES = _cases()
QUICK_CASE = "nmc-cc-25C"  # one hour at 1C: the shortest trace

# -- the cycle trace: rest, full discharge, rest ------------------------------------------

CYCLE_VERSION = 1
CYCLE_REST_S = 3600.0
CYCLE_C_RATE = 0.5


def cycle_trace(cell: str, ambient_c: float) -> tuple[Path, bool, float]:
    """Rest 1 h, C/2 discharge to the lower cut-off, rest 1 h (1 s samples), from
    full, as a pybamm_traces CSV (cached alongside its traces). Returns the
    path, whether it was cached, and PyBaMM's run time."""
    from cellguard.estimation import pybamm_traces as pt
    from cellguard.files import atomic_output, write_text

    spec = pt.CELLS[cell]
    pybamm = pt._import_pybamm()
    steps = ["Rest for 1 hour", f"Discharge at {spec.capacity_ah * CYCLE_C_RATE:g} A until "
             f"{spec.v_min:g} V", "Rest for 1 hour"]
    key = hashlib.sha256(json.dumps({
        "cell": repr(spec), "steps": steps, "ambient_c": float(ambient_c),
        "cycle_version": CYCLE_VERSION, "trace_version": pt.TRACE_VERSION,
        "pybamm": pybamm.__version__}, sort_keys=True).encode()).hexdigest()[:12]
    folder = pt.cache_dir()
    path = folder / f"{cell}-cycle-{ambient_c:g}C-{key}.csv"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        return path, True, json.loads(meta_path.read_text())["run_s"]
    t0 = time.perf_counter()
    params = pt._parameters(pybamm, spec, ambient_c, 1.0)
    params.update({"Upper voltage cut-off [V]": spec.v_max + 0.5})
    experiment = pybamm.Experiment(steps, period="1 second")
    sim = pybamm.Simulation(pt.pybamm_model(pybamm, spec, "DFN", {"thermal": "lumped"}),
                            parameter_values=params, experiment=experiment,
                            solver=pybamm.IDAKLUSolver())
    sol = sim.solve()
    run_s = time.perf_counter() - t0
    t = sol["Time [s]"].entries
    q = sol["Discharge capacity [A.h]"].entries
    v = sol["Voltage [V]"].entries
    temp = sol["Volume-averaged cell temperature [K]"].entries - 273.15
    keep = np.concatenate(([True], np.diff(t) > 1e-6))  # steps share their end points
    t, q, v, temp = t[keep], q[keep], v[keep], temp[keep]
    # The mean current over the interval ending at each sample (positive charging).
    dt = np.diff(t, prepend=t[0])
    current = np.where(dt > 0, -np.diff(q, prepend=q[0]) * 3600.0 / np.where(dt > 0, dt, 1.0),
                       0.0)
    soc = 100.0 - 100.0 * q / spec.capacity_ah
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, force=True) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(pt.COLUMNS)
        for row in zip(t, current, v, temp, soc, strict=True):
            w.writerow([f"{row[0]:.3f}", f"{row[1]:.6f}", f"{row[2]:.6f}", f"{row[3]:.4f}",
                        f"{row[4]:.5f}"])
    write_text(meta_path, json.dumps({"cell": cell, "profile": "cycle", "steps": steps,
                                      "ambient_c": ambient_c, "pybamm": pybamm.__version__,
                                      "run_s": run_s, "rows": len(t)}, indent=2) + "\n",
               force=True)
    return path, False, run_s


@dataclass
class Truth:
    t: np.ndarray
    i: np.ndarray
    v: np.ndarray
    temp: np.ndarray
    soc: np.ndarray
    cached: bool
    pybamm_s: float


def truth(case: Case) -> Truth:
    from cellguard.estimation import pybamm_traces
    from cellguard.estimation.characterize import read_trace

    if case.profile == "cycle":
        path, cached, run_s = cycle_trace(case.cell, case.ambient_c)
    else:
        res = pybamm_traces.run_trace(case.cell, case.profile, case.ambient_c)
        path, cached, run_s = res.path, res.cached, res.run_s
    tr = read_trace(path)
    assert tr.temp is not None and tr.true_soc is not None
    k = int(np.searchsorted(tr.t, tr.t[0] + case.start_s))
    return Truth(tr.t[k:], tr.i[k:], tr.v[k:], tr.temp[k:], tr.true_soc[k:], cached, run_s)


def initial_soc(case: Case, tr: Truth) -> float | None:
    """The SoC the EKF starts from: None (from the OCV, as a board without a stored
    SoC), the case's absolute start, or the truth at the start plus the case's
    offset, kept within 0..100 %."""
    if case.start_pct is not None:
        return case.start_pct
    if case.initial_offset_pct is None:
        return None
    return min(max(float(tr.soc[0]) + case.initial_offset_pct, 0.0), 100.0)


def first_current_s(tr: Truth, capacity_ah: float) -> float:
    """When the drive starts: the first sample whose current is above C/20, s
    from the start of the run."""
    moving = np.flatnonzero(np.abs(tr.i) > capacity_ah / 20.0)
    return float(tr.t[moving[0]] - tr.t[0]) if moving.size else 0.0


# -- running a case ---------------------------------------------------------------------


@dataclass
class Score:
    rmse: float
    max_late: float
    converge_s: float | None
    end_error: float
    to_band_s: float | None = None  # time to 2 points, from the first current
    max_after_drive: float = math.nan  # largest |error| from 10 min after the first current
    # (or over the run's last minute when it ends sooner)
    coverage: float = math.nan  # share of samples after 10 min with |error| <= 2 sigma
    nees: float = math.nan  # mean of (error / sigma)^2 over them


@dataclass
class Result:
    case: Case
    sign: str  # sensor errors: "+" a discharge reads larger, "-" smaller, "exact" none
    hours: float
    end_true_soc: float
    temp_max_c: float
    ekf: Score
    coulomb: Score
    capacity_ah: float  # what the estimator holds at the end
    capacity_start_ah: float
    capacity_true_ah: float
    relearned: bool
    soc_std_end: float
    bias_end_a: float
    worst_at_true_soc: float  # true SoC where the EKF's late error is largest
    seconds: float
    trace_cached: bool
    ekf_soc: np.ndarray
    coulomb_soc: np.ndarray
    truth: Truth
    seed: int = 1
    drive_s: float = 0.0  # when the first current flows, from the start
    late_samples: int = 0  # samples 10 min or more after the start (coverage's)
    ekf_rmse_after_drive: float = math.nan  # from 10 min after the first current
    coulomb_rmse_after_drive: float = math.nan

    @property
    def capacity_error_pct(self) -> float:
        return 100.0 * (self.capacity_ah / self.capacity_true_ah - 1.0)


def score(t: np.ndarray, est: np.ndarray, true_soc: np.ndarray, drive_s: float = 0.0,
          std: np.ndarray | None = None) -> Score:
    """The figures of one run: ``drive_s`` is when its first current flows (from
    the start); ``std``: the reported 1-sigma band (none for the baseline)."""
    err = soc_error(est, true_soc)
    conv = convergence_time(t, err)
    after = max_error_after(t, err, drive_s + SETTLE_S)
    if math.isnan(after):  # the run ends sooner (a drive from 10 % to the cut-off): its last minute
        after = max_error_after(t, err, max(float(t[-1] - t[0]) - 60.0, 0.0))
    out = Score(rmse(err), max_error_after(t, err), conv, float(err[-1]),
                None if conv is None else max(conv - drive_s, 0.0), after)
    if std is not None:
        late = (t - t[0]) >= SETTLE_S
        sd = np.maximum(np.asarray(std, dtype=float)[late], 1e-9)
        if late.any():
            z = err[late] / sd
            out.coverage = float(np.mean(np.abs(z) <= 2.0))
            out.nees = float(np.mean(z * z))
    return out


def model_for(case: Case) -> Any:
    from cellguard.estimation import cellmodel

    model = cellmodel.load(REPO / "cells" / CELL_FILES[case.cell])
    if case.capacity_factor != 1.0:
        model = replace(model, capacity_ah=round(model.capacity_ah * case.capacity_factor, 3))
    return model


def run_case(case: Case, seed: int, exact: bool = False,
             sensors: dict[str, float] | None = None, label: int = 1) -> Result:
    """One case with the sensor noise of ``seed``; ``label``: the seed it is
    reported under (the user's)."""
    from cellguard.estimation import estimate, pybamm_traces

    t0 = time.perf_counter()
    tr = truth(case)
    meas = measure(tr.t, tr.i, tr.v, tr.temp, seed, exact, sensors)
    trace = estimate.Trace(meas.t_s, meas.current_a, meas.cells_v, meas.temps_c)
    model = model_for(case)
    start = initial_soc(case, tr)
    ekf_rows = list(estimate.run(trace, model, "ekf", start))
    # the baseline: coulomb counting from the true start
    true_start = min(max(float(tr.soc[0]), 0.0), 100.0)
    cc_rows = list(estimate.run(trace, model, "coulomb", true_start))
    ekf_soc = np.array([r[1] for r in ekf_rows])
    cc_soc = np.array([r[1] for r in cc_rows])
    drive_s = first_current_s(tr, pybamm_traces.CELLS[case.cell].capacity_ah)
    ekf = score(tr.t, ekf_soc, tr.soc, drive_s, np.array([r[2] for r in ekf_rows]))
    err = soc_error(ekf_soc, tr.soc)
    late = (tr.t - tr.t[0]) >= SETTLE_S
    worst = int(np.flatnonzero(late)[np.argmax(np.abs(err[late]))]) if late.any() else 0
    capacities = [r[5] for r in ekf_rows]
    sens = SENSORS if sensors is None else sensors
    return Result(
        case=case, sign="exact" if exact else sign_label(sens),
        hours=float((tr.t[-1] - tr.t[0]) / 3600.0), end_true_soc=float(tr.soc[-1]),
        temp_max_c=float(np.max(tr.temp)), ekf=ekf,
        coulomb=score(tr.t, cc_soc, tr.soc, drive_s),
        capacity_ah=float(capacities[-1]), capacity_start_ah=float(model.capacity_ah),
        capacity_true_ah=pybamm_traces.CELLS[case.cell].capacity_ah,
        relearned=any(abs(c - model.capacity_ah) > 1e-9 for c in capacities),
        soc_std_end=float(ekf_rows[-1][2]), bias_end_a=float(ekf_rows[-1][7]),
        worst_at_true_soc=float(tr.soc[worst]), seconds=time.perf_counter() - t0,
        trace_cached=tr.cached, ekf_soc=ekf_soc, coulomb_soc=cc_soc, truth=tr, seed=label,
        drive_s=drive_s, late_samples=int(np.count_nonzero(late)),
        ekf_rmse_after_drive=_rmse_after(tr, err, drive_s + SETTLE_S),
        coulomb_rmse_after_drive=_rmse_after(tr, soc_error(cc_soc, tr.soc), drive_s + SETTLE_S))


def _rmse_after(tr: Truth, err: np.ndarray, after_s: float) -> float:
    keep = (tr.t - tr.t[0]) >= after_s
    return rmse(err[keep]) if keep.any() else math.nan


def micropython_check(case: Case, seed: int, sensors: dict[str, float] | None = None
                      ) -> tuple[float, float, float]:
    """The EKF of one case under real MicroPython: (max |SoC difference| from
    CPython, MicroPython wall s, CPython wall s)."""
    from cellguard.estimation import estimate

    tr = truth(case)
    meas = measure(tr.t, tr.i, tr.v, tr.temp, seed, sensors=sensors)
    trace = estimate.Trace(meas.t_s, meas.current_a, meas.cells_v, meas.temps_c)
    model = model_for(case)
    start = initial_soc(case, tr)
    t0 = time.perf_counter()
    cp = np.array([r[1] for r in estimate.run(trace, model, "ekf", start)])
    t1 = time.perf_counter()
    mp = np.array([r[1] for r in estimate.run(trace, model, "ekf", start, "micropython")])
    t2 = time.perf_counter()
    return float(np.max(np.abs(mp - cp))), t2 - t1, t1 - t0


# -- single precision (--float32) ----------------------------------------------------------

FLOAT32_GOAL_PCT = 0.1
"""Single precision is as good as double: the EKF's SoC within this many points."""


@dataclass
class Float32Result:
    case: Case
    sign: str
    max_diff: float  # max |SoC(float32) - SoC(double)| over the run, points
    end_diff: float  # SoC(float32) - SoC(double) at the end
    double: Any  # estimate.RunSummary of the double-precision run
    single: Any  # estimate.RunSummary of the single-precision replay
    seconds: float  # the replay's wall time

    @property
    def ok(self) -> bool:
        s = self.single
        return (self.max_diff <= FLOAT32_GOAL_PCT and s.pd_every_step and s.finite
                and not s.stats.mixed and not s.leaks)


def _float32_follow_settings() -> None:
    """``--set`` changed the double modules' keyword defaults: give the single-precision
    copy the same (as binary32 numbers; unchanged defaults are the same numbers anyway)."""
    from cellguard.estimation import float32
    from cellguard_fw import estimator, health

    f32 = float32.load()
    for plain, single in ((estimator.PackEkf, f32.estimator.PackEkf),
                          (health.Health, f32.health.Health)):
        single.__init__.__defaults__ = float32.to_f32(plain.__init__.__defaults__)


def float32_check(case: Case, seed: int, exact: bool = False,
                  sensors: dict[str, float] | None = None) -> Float32Result:
    """The EKF of one case in double precision and replayed in single precision
    (``cellguard.estimation.float32``) on the same readings."""
    from cellguard.estimation import estimate

    tr = truth(case)
    meas = measure(tr.t, tr.i, tr.v, tr.temp, seed, exact, sensors)
    trace = estimate.Trace(meas.t_s, meas.current_a, meas.cells_v, meas.temps_c)
    model = model_for(case)
    start = initial_soc(case, tr)
    _float32_follow_settings()
    double = estimate.RunSummary("cpython")
    cp = np.array([r[1] for r in estimate.run_cpython(trace, model, "ekf", start, double)])
    t0 = time.perf_counter()
    run = estimate.run(trace, model, "ekf", start, "float32")
    sp = np.array([r[1] for r in run])
    seconds = time.perf_counter() - t0
    assert isinstance(run, estimate.ReplayRun)
    sens = SENSORS if sensors is None else sensors
    return Float32Result(case, "exact" if exact else sign_label(sens),
                         float(np.max(np.abs(sp - cp))), float(sp[-1] - cp[-1]), double,
                         run.summary, seconds)


def _pd_cell(summary: Any) -> str:
    if summary.pd_every_step:
        return "yes"
    return f"no: {summary.steps - summary.pd_steps} of {summary.steps}"


def float32_report(cases: Sequence[Case], sign_sets: Sequence[dict[str, float]], seed: int,
                   exact: bool = False) -> list[Float32Result]:
    """``--float32``: every selected case's EKF replayed in single precision beside the
    double run; a table and the goal line."""
    results: list[Float32Result] = []
    for case in cases:
        for sens in sign_sets:
            r = float32_check(case, seed * 1000 + CASES.index(case), exact, sens)
            results.append(r)
            print(f"  {case.name:24} {r.sign:5} float32 replay in {r.seconds:5.1f} s", flush=True)
    head = ("case", "errors", "max |dSoC|", "end dSoC", "P PD (f32)", "P PD (f64)",
            "min pivot f32 / f64", "NaN/inf steps", "subnormal", "doubles met", "replay s")
    rows = [[r.case.name, r.sign, f"{r.max_diff:.2g}", f"{r.end_diff:+.2g}",
             _pd_cell(r.single), _pd_cell(r.double),
             f"{r.single.min_pivot:.2g} / {r.double.min_pivot:.2g}",
             str(r.single.nonfinite_steps), str(r.single.stats.subnormals),
             str(r.single.stats.mixed + len(r.single.leaks)), f"{r.seconds:.0f}"]
            for r in results]
    print("\nsingle precision: the EKF replayed with every float a binary32 "
          "(cellguard.estimation.float32) beside the double run, same readings; dSoC = "
          "float32 - double, SoC points; P PD: the pack filter's covariance positive "
          "definite after every step; min pivot: smallest Cholesky pivot over its diagonal "
          "element")
    widths = [max(len(h), *(len(c[k]) for c in rows)) for k, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for cells in rows:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
    if results:
        worst = max(results, key=lambda r: r.max_diff)
        bad = [r for r in results if not r.ok]
        print(f"  {'PASS' if not bad else 'FAIL'}  single precision: within "
              f"{FLOAT32_GOAL_PCT:g} SoC points of double, P positive definite, no NaN, every "
              f"case: worst {worst.max_diff:.2g} points ({worst.case.name} {worst.sign}); "
              f"{len(bad)} of {len(results)} cases fail")
    return results


# -- the goals ----------------------------------------------------------------------------


@dataclass
class Goal:
    text: str
    measured: str
    ok: bool
    goal: bool = True  # False: a figure printed beside the goals (NOTE), not one of them


def goals(results: list[Result]) -> list[Goal]:
    out: list[Goal] = []
    # The accuracy goals: cases that start as a board would (from the OCV, with
    # the cell file's capacity); the wrong start and the wrong capacity have
    # goals of their own.
    right = [r for r in results if not r.case.wrong_start and r.case.capacity_factor == 1.0]

    def add(text: str, rs: list[Result], limit: float, key: Any, what: str) -> None:
        if not rs:
            return
        w = max(rs, key=key)
        out.append(Goal(text, f"worst {key(w):.2f} % ({w.case.name} {w.sign}, seed {w.seed}; "
                        f"{what})", all(key(r) <= limit for r in rs)))

    nmc25 = [r for r in right if r.case.chem == "NMC" and r.case.ambient_c == 25.0]
    add("NMC at 25 degC: EKF RMSE <= 1.0 %", nmc25, 1.0, lambda r: r.ekf.rmse,
        f"{len(nmc25)} runs")
    add("NMC at 25 degC: EKF max error after 10 min <= 3 %", nmc25, 3.0,
        lambda r: r.ekf.max_late, f"{len(nmc25)} runs")
    flat = [r for r in right if r.case.chem != "NMC"]
    add("LFP and sodium-ion: EKF RMSE <= 3 %", flat, 3.0, lambda r: r.ekf.rmse,
        f"{len(flat)} runs")
    cold = [r for r in right if r.case.ambient_c == 0.0]
    add("0 degC: EKF RMSE <= 3 %", cold, 3.0, lambda r: r.ekf.rmse, f"{len(cold)} runs")
    def losses_goal(text: str, rs: list[Result], margin: Callable[[Result], float],
                    goal: bool = True) -> None:
        if not rs:
            return
        losses = [r for r in rs if margin(r) > 0]
        w = max(rs, key=margin)
        out.append(Goal(text, f"{len(losses)} of {len(rs)} worse (worst: {w.case.name} "
                        f"{w.sign} seed {w.seed}, {margin(w):+.2f} points)" + "".join(
                            f"; {r.case.name} {r.sign} s{r.seed} {margin(r):+.2f}"
                            for r in losses if r is not w), not losses, goal))

    # Issue 18, item 5: every run that starts as a board would, over the whole run.
    losses_goal("never worse than coulomb counting from the true start (RMSE), every run "
                "from the OCV", [r for r in results if not r.case.wrong_start],
                lambda r: r.ekf.rmse - r.coulomb.rmse)
    # A wrong start against a counter given the truth the EKF was denied: the
    # price of the start, from 10 minutes after the first current. Not one of the
    # issues' goals (a wrong start's is the band below): a NOTE.
    losses_goal("a wrong start against coulomb counting given the true start (RMSE from 10 "
                "min after the first current)", [r for r in results if r.case.wrong_start],
                lambda r: r.ekf_rmse_after_drive - r.coulomb_rmse_after_drive, goal=False)
    cyc = [r for r in results if r.case.profile == "cycle"]
    if cyc:
        w = max(cyc, key=lambda r: abs(r.capacity_error_pct))
        out.append(Goal("capacity within 2 % after one full cycle",
                        f"worst {w.capacity_error_pct:+.2f} % ({w.case.name}; "
                        f"{len(cyc)} runs)",
                        all(r.relearned and abs(r.capacity_error_pct) <= 2.0 for r in cyc)))
    wrong = [r for r in results if r.case.wrong_start]
    if wrong:
        w = max(wrong, key=lambda r: r.ekf.max_after_drive - r.case.band)
        out.append(Goal("a wrong start: within 2 points (NMC; 3 on LFP and sodium-ion) from 10 "
                        "min after the first current to the end",
                        f"worst {w.ekf.max_after_drive:.2f} points ({w.case.name} {w.sign}, seed "
                        f"{w.seed}; slowest to 2 points: {format_time(slowest(wrong))})",
                        all(r.ekf.max_after_drive <= r.case.band for r in wrong)))
    scored = [r for r in results if not math.isnan(r.ekf.coverage)]
    if scored:
        n = sum(r.late_samples for r in scored)
        cov = sum(r.ekf.coverage * r.late_samples for r in scored) / n
        worst = min(scored, key=lambda r: r.ekf.coverage)
        out.append(Goal("uncertainty: the error within 2 sigma 90-99 % of the time after 10 min "
                        "(all runs pooled; 95 % if calibrated)",
                        f"{100 * cov:.1f} % of {n} samples (lowest run: {worst.case.name} "
                        f"{worst.sign} seed {worst.seed}, {100 * worst.ekf.coverage:.1f} %)",
                        0.90 <= cov <= 0.99))
    return out


def slowest(rs: list[Result]) -> float | None:
    """The longest time to 2 points from the first current (None: one never got there)."""
    times = [r.ekf.to_band_s for r in rs]
    return None if any(x is None for x in times) else max(x for x in times if x is not None)


# -- the report ---------------------------------------------------------------------------

HEADER = ("case", "errors", "seed", "h", "EKF RMSE", "EKF max>10m", "EKF to 2", "EKF 2s cov",
          "NEES", "CC RMSE", "CC max>10m", "CC to 2", "capacity")


def _capacity_cell(r: Result) -> str:
    if r.case.profile != "cycle":
        return "-"
    how = "" if r.relearned else " (not relearned)"
    return (f"{r.capacity_start_ah:.2f} -> {r.capacity_ah:.3f} Ah "
            f"({r.capacity_error_pct:+.2f} %){how}")


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f} %"


def row_cells(r: Result) -> list[str]:
    return [r.case.name, r.sign, str(r.seed), f"{r.hours:.1f}",
            f"{r.ekf.rmse:.2f}", f"{r.ekf.max_late:.2f}", format_time(r.ekf.to_band_s),
            _pct(r.ekf.coverage), "-" if math.isnan(r.ekf.nees) else f"{r.ekf.nees:.2f}",
            f"{r.coulomb.rmse:.2f}", f"{r.coulomb.max_late:.2f}",
            format_time(r.coulomb.to_band_s), _capacity_cell(r)]


SUMMARY_HEADER = ("chemistry", "runs", "EKF RMSE mean / worst", "EKF max>10m worst",
                  "EKF to 2 slowest", "EKF 2s cov (pooled)", "NEES mean", "CC RMSE mean / worst",
                  "CC max>10m worst")


def summary_rows(results: list[Result]) -> list[list[str]]:
    rows = []
    for chem in dict.fromkeys(r.case.chem for r in results):
        rs = [r for r in results if r.case.chem == chem]
        n = sum(r.late_samples for r in rs if not math.isnan(r.ekf.coverage))
        cov = (sum(r.ekf.coverage * r.late_samples for r in rs
                   if not math.isnan(r.ekf.coverage)) / n) if n else math.nan
        nees = [r.ekf.nees for r in rs if not math.isnan(r.ekf.nees)]
        rows.append([chem, str(len(rs)),
                     f"{np.mean([r.ekf.rmse for r in rs]):.2f} / {max(r.ekf.rmse for r in rs):.2f}",
                     f"{max(r.ekf.max_late for r in rs):.2f}", format_time(slowest(rs)),
                     _pct(cov), f"{np.mean(nees):.2f}" if nees else "-",
                     f"{np.mean([r.coulomb.rmse for r in rs]):.2f} / "
                     f"{max(r.coulomb.rmse for r in rs):.2f}",
                     f"{max(r.coulomb.max_late for r in rs):.2f}"])
    return rows


def print_table(results: list[Result], markdown: bool, header: Sequence[str] = HEADER,
                rows: list[list[str]] | None = None) -> None:
    rows = [row_cells(r) for r in results] if rows is None else rows
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for cells in rows:
            print("| " + " | ".join(cells) + " |")
        return
    widths = [max(len(h), *(len(c[k]) for c in rows)) for k, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for cells in rows:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))


def print_details(results: list[Result]) -> None:
    print("\nper case: end of run (true SoC, EKF and coulomb error, EKF sigma, bias) and where "
          "the EKF's late error peaks")
    for r in results:
        print(f"  {r.case.name:24} {r.sign:5} end true {r.end_true_soc:6.2f} %  EKF err "
              f"{r.ekf.end_error:+6.2f}  CC err {r.coulomb.end_error:+6.2f}  sigma "
              f"{r.soc_std_end:5.2f}  bias {1000 * r.bias_end_a:+6.1f} mA  worst at true "
              f"{r.worst_at_true_soc:6.2f} %  ({r.seconds:.1f} s"
              f"{', PyBaMM run' if not r.trace_cached else ''})")


def print_bands(results: list[Result]) -> None:
    """EKF RMSE by true-SoC band: where the error lives."""
    bands = ((80, 101), (50, 80), (20, 50), (10, 20), (-5, 10))
    print("\nEKF RMSE by true SoC band (after 10 min): " +
          "  ".join(f"{lo}-{min(hi, 100)} %" for lo, hi in bands))
    for r in results:
        tr = r.truth
        late = (tr.t - tr.t[0]) >= SETTLE_S
        err = soc_error(r.ekf_soc, tr.soc)
        parts = []
        for lo, hi in bands:
            m = late & (tr.soc >= lo) & (tr.soc < hi)
            parts.append(f"{rmse(err[m]):6.2f}" if m.any() else "     -")
        print(f"  {r.case.name:24} {r.sign:5} " + "  ".join(parts))


def write_csvs(folder: Path, results: list[Result]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for r in results:
        tr = r.truth
        suffix = {"+": "-errors+", "-": "-errors-"}.get(r.sign, "")
        with (folder / f"{r.case.name}{suffix}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t_s", "current_a", "cell_v", "temp_c", "true_soc_pct", "ekf_soc_pct",
                        "coulomb_soc_pct"])
            for k in range(len(tr.t)):
                w.writerow([f"{tr.t[k]:.1f}", f"{tr.i[k]:.4f}", f"{tr.v[k]:.5f}",
                            f"{tr.temp[k]:.2f}", f"{tr.soc[k]:.3f}", f"{r.ekf_soc[k]:.3f}",
                            f"{r.coulomb_soc[k]:.3f}"])


# -- tuning knobs (a copy of the firmware, or changed defaults) -----------------------------


def use_firmware(folder: str) -> None:
    """Import ``cellguard_fw`` from ``folder`` (a copy of ``firmware/``)."""
    path = Path(folder).resolve()
    if not (path / "cellguard_fw" / "estimator.py").exists():
        raise SystemExit(f"--firmware {folder}: no cellguard_fw/estimator.py in it")
    for name in [m for m in sys.modules if m == "cellguard_fw" or m.startswith("cellguard_fw.")]:
        del sys.modules[name]
    sys.path.insert(0, str(path))


def apply_settings(settings: Sequence[str]) -> None:
    """``CLASS.PARAM=VALUE``: replace a keyword default of PackEkf or
    Health (this process only)."""
    import inspect

    from cellguard_fw import estimator, health

    classes = {"PackEkf": estimator.PackEkf,
               "Health": health.Health}
    for item in settings:
        try:
            target, value = item.split("=", 1)
            cls_name, param = target.split(".", 1)
            cls = classes[cls_name]
            number = float(value)
        except (ValueError, KeyError):
            raise SystemExit(f"--set {item!r}: want CLASS.PARAM=NUMBER, CLASS one of "
                             f"{', '.join(classes)}") from None
        init = cls.__init__
        names = list(inspect.signature(init).parameters)
        defaults = list(init.__defaults__ or ())
        first = len(names) - len(defaults)
        if param not in names[first:]:
            raise SystemExit(f"--set {item!r}: {cls_name} has no keyword {param!r} "
                             f"({', '.join(names[first:])})")
        defaults[names.index(param) - first] = number
        init.__defaults__ = tuple(defaults)
        print(f"  {cls_name}.{param} = {number:g} (this run only)")


# -- main ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--case", nargs="+", metavar="NAME",
                    help="cases to run (a name or its start: nmc, lfp-dst; default all)")
    ap.add_argument("--seed", type=int, nargs="+", default=[1], metavar="N",
                    help="sensor noise seeds (default 1; `make bench-accuracy`: 1 2 3)")
    ap.add_argument("--exact", action="store_true",
                    help="no sensor errors (quantisation only): separates model error from "
                         "sensor error")
    ap.add_argument("--sensor", action="append", default=[], metavar="KEY=VALUE",
                    help=f"change a sensor error ({', '.join(SENSORS)})")
    ap.add_argument("--micropython", nargs="?", const="nmc-dst-25C", metavar="CASE",
                    help="also run one case's EKF under real MicroPython (default nmc-dst-25C) "
                         "and compare it with CPython")
    ap.add_argument("--float32", action="store_true",
                    help="also replay every selected case's EKF in single precision (every "
                         "float a binary32, as on an RP2040 or ESP32) and compare it with the "
                         "double run")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--csv-dir", help="write each case's truth and estimates here")
    ap.add_argument("--details", action="store_true",
                    help="also print end-of-run figures and RMSE by SoC band")
    ap.add_argument("--set", action="append", default=[], metavar="CLASS.PARAM=VALUE",
                    help="tuning experiment: replace a keyword default of PackEkf or Health "
                         "in this run")
    ap.add_argument("--firmware", metavar="DIR",
                    help="tuning experiment: import cellguard_fw from DIR (a modified copy of "
                         "firmware/)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--quick", action="store_true",
                    help=f"a smoke run: the shortest case only ({QUICK_CASE}: one PyBaMM run of "
                         "about 5 s when not cached)")
    args = ap.parse_args(argv)
    if args.quick and not args.case:
        args.case = [QUICK_CASE]
    if args.list:
        for c in CASES:
            print(c.name)
        return 0
    t_start = time.perf_counter()
    cases = CASES
    if args.case:
        cases = [c for c in CASES if any(c.name == n or c.name.startswith(n) for n in args.case)]
        if not cases:
            ap.error(f"no case matches {' '.join(args.case)} (see --list)")
    if args.firmware:
        use_firmware(args.firmware)
        import cellguard_fw

        print(f"  cellguard_fw from {Path(cellguard_fw.__file__).parent} (this run only)")
    if args.set:
        apply_settings(args.set)
    from cellguard.errors import CellguardError

    s = dict(SENSORS)
    for item in args.sensor:
        key, _, value = item.partition("=")
        try:
            if key not in s:
                raise ValueError
            s[key] = float(value)
        except ValueError:
            ap.error(f"--sensor {item!r}: want KEY=NUMBER, KEY one of {', '.join(SENSORS)}")
    print(f"sensors: {BOARD_FILE.name} front end (cell ADC 16 bit / 5 V, current 16 bit / "
          f"+-50 A, NTC 12 bit); " + ("exact (quantisation only)" if args.exact else
          f"cell noise {s['cell_noise_mv']:g} mV, current noise {s['current_noise_ma']:g} mA, "
          f"offset {1000 * s['current_offset_a']:+g} mA, gain error "
          f"{100 * s['current_gain_error']:+g} % (\"+\": a discharge reads larger) and its "
          f"mirror (\"-\"), temperature noise {s['temp_noise_c']:g} degC; seeds "
          f"{' '.join(map(str, args.seed))}"))
    sign_sets = [s] if args.exact else [s, mirrored(s)]
    results: list[Result] = []
    try:
        for seed in args.seed:
            for case in cases:
                for sens in sign_sets:
                    r = run_case(case, seed * 1000 + CASES.index(case), args.exact, sens, seed)
                    results.append(r)
                    print(f"  {case.name:28} {r.sign:5} seed {seed} done in {r.seconds:5.1f} s"
                          f"{'' if r.trace_cached else ' (PyBaMM ran)'}", flush=True)
    except CellguardError as exc:
        print(f"estimator_accuracy: error: {exc}", file=sys.stderr)
        return 1
    print("\nSoC error in points (estimate - true SoC); RMSE over the run, max |error| after "
          f"the first 10 min, convergence: |error| < {CONVERGENCE_BAND_PCT:g} from then on; "
          "EKF to 2: from the first current; 2s cov: share of samples after 10 min within "
          "2 sigma; NEES: mean (error / sigma)^2 there (1 if calibrated); CC = coulomb "
          "counting from the true start")
    print_table(results, args.markdown)
    print("\nsummary")
    print_table(results, args.markdown, SUMMARY_HEADER, summary_rows(results))
    if args.details:
        print_details(results)
        print_bands(results)
    if args.csv_dir:
        write_csvs(Path(args.csv_dir), results)
        print(f"\nper-case CSVs in {args.csv_dir}")
    if args.micropython:
        mp_case = next((c for c in CASES if c.name == args.micropython), None)
        if mp_case is None:
            ap.error(f"--micropython: no case {args.micropython!r}")
        diff, mp_s, cp_s = micropython_check(mp_case, args.seed[0] * 1000 + CASES.index(mp_case),
                                             s)
        print(f"\nMicroPython: {mp_case.name} EKF under MicroPython 1.27 (WebAssembly) in "
              f"{mp_s:.1f} s (CPython {cp_s:.1f} s); max |SoC difference| {diff:.2g} points")
    if args.float32:
        float32_report(cases, sign_sets, args.seed[0], args.exact)
    print("\ngoals (issues 6 and 18):")
    for g in goals(results):
        mark = ("PASS" if g.ok else "FAIL") if g.goal else "NOTE"
        print(f"  {mark}  {g.text}: {g.measured}")
    print(f"\ntotal time {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
