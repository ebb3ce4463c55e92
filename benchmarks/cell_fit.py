"""How well the PyBaMM-fitted cell files reproduce PyBaMM: voltage error of
each fitted model replayed over PyBaMM DFN traces.

    .venv/bin/python benchmarks/cell_fit.py                 # every cell, all profiles
    .venv/bin/python benchmarks/cell_fit.py --cell chen2020 --profile dst --ambient 25

Needs PyBaMM (`make pybamm-setup`); traces come from the cache of
``cellguard.estimation.pybamm_traces`` (run on first use). For each trace: the model runs
on the trace's current and temperature from its true SoC at the start (its
capacity counting SoC), and the table gives the RMS and max of model minus
PyBaMM terminal voltage, over the whole trace and over the part above 10 %
true SoC (below it the DFN's end-of-discharge knee dominates). Also the OCV
table against PyBaMM's bulk OCV (from a C/100 discharge) at 25 degC.

The cell files were fitted (``make pybamm-cells``) from the ``FIT_PROFILES``
traces at every ambient, so a row of one of those profiles measures the fit on
its own data: the last column says ``in-sample``; the others are ``held-out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cellguard.estimation import cellmodel, pybamm_traces
from cellguard.estimation.characterize import read_trace, simulate
from cellguard.paths import repo_root

FILES = {"chen2020": "lg-m50-chen2020.json", "prada2013": "a123-26650-prada2013.json",
         "chayambuka2022": "nvpf-26700-chayambuka2022.json"}
FIT_PROFILES = ("hppc", "low_rate", "low_rate_charge")
"""The traces the cell files were fitted from (the Makefile's PYBAMM_FIT_PROFILES)."""


def fit_label(profile: str) -> str:
    """Whether a profile's rows test the fit on data it was fitted on."""
    return "in-sample" if profile in FIT_PROFILES else "held-out"


def ocv_error_mv(cell: str, model: cellmodel.CellModel) -> np.ndarray:
    """Fitted OCV - PyBaMM bulk OCV at each SoC breakpoint at 25 degC (mV)."""
    pybamm = pybamm_traces._import_pybamm()
    spec = pybamm_traces.CELLS[cell]
    p = pybamm_traces._parameters(pybamm, spec, 25.0, 1.0)
    p.update({"Current function [A]": spec.capacity_ah / 100.0,
              "Upper voltage cut-off [V]": spec.v_max + 0.5})
    sim = pybamm.Simulation(pybamm_traces.pybamm_model(pybamm, spec, "DFN",
                                                       {"thermal": "lumped"}),
                            parameter_values=p, solver=pybamm.IDAKLUSolver())
    sol = sim.solve([0.0, 110 * 3600.0])
    soc = 100.0 * (1.0 - sol["Discharge capacity [A.h]"].entries / spec.capacity_ah)
    ocv = sol["Bulk open-circuit voltage [V]"].entries
    order = np.argsort(soc)
    grid = np.array(model.soc_pct)
    truth = np.interp(grid, soc[order], ocv[order])
    j = int(np.argmin(np.abs(np.array(model.temps_c) - 25.0)))
    return (np.array([model.ocv(s, model.temps_c[j]) for s in grid]) - truth) * 1000.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cell", nargs="+", default=list(FILES), choices=list(FILES))
    ap.add_argument("--profile", nargs="+", default=["cc", "dst", "pulses", "hppc"],
                    choices=pybamm_traces.PROFILE_NAMES)
    ap.add_argument("--ambient", nargs="+", type=float, default=[0.0, 10.0, 25.0, 45.0])
    ap.add_argument("--no-ocv", action="store_true", help="skip the OCV comparison")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: chen2020, the 1C discharge at 25 degC (the shortest "
                         "trace) and the OCV comparison")
    args = ap.parse_args(argv)
    if args.quick:
        args.cell, args.profile, args.ambient = ["chen2020"], ["cc"], [25.0]
    print(f"{'cell':14} {'profile':8} {'amb':>5}  {'RMS mV':>7} {'max mV':>7}  "
          f"{'RMS>10%':>7} {'max>10%':>7}  {'T max':>6}  data")
    for cell in args.cell:
        model = cellmodel.load(Path(repo_root()) / "cells" / FILES[cell])
        for profile in args.profile:
            for amb in args.ambient:
                res = pybamm_traces.run_trace(cell, profile, amb)
                tr = read_trace(res.path)
                assert tr.true_soc is not None and tr.temp is not None
                err = (simulate(model, tr, float(tr.true_soc[0])) - tr.v) * 1000.0
                above = tr.true_soc >= 10.0
                print(f"{cell:14} {profile:8} {amb:5g}  {np.sqrt(np.mean(err**2)):7.1f} "
                      f"{np.max(np.abs(err)):7.1f}  {np.sqrt(np.mean(err[above]**2)):7.1f} "
                      f"{np.max(np.abs(err[above])):7.1f}  {np.max(tr.temp):6.1f}  "
                      f"{fit_label(profile)}", flush=True)
        if not args.no_ocv:
            err = ocv_error_mv(cell, model)
            socs = np.array(model.soc_pct)
            mid = (socs >= 5.0) & (socs <= 95.0)
            print(f"{cell:14} OCV table - PyBaMM bulk OCV at 25 degC, 5..95 %: RMS "
                  f"{np.sqrt(np.mean(err[mid] ** 2)):.1f} mV, max {np.max(np.abs(err[mid])):.1f} "
                  f"mV; at 0 %: {err[0]:+.1f} mV, at 100 %: {err[-1]:+.1f} mV", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
