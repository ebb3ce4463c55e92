"""The PyBaMM cells of ``cellguard.estimation.pybamm_traces``: every profile
builds for every cell, the cache key follows the cell, and the sodium-ion cell
(Chayambuka2022, scaled) is what its module text says: the lithium-ion DFN
solves it as PyBaMM's own sodium-ion DFN does, and its scaled capacity and
filled-in thermal parameters are in place. The PyBaMM runs here are short (a
few seconds in all)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from cellguard.errors import CellguardError
from cellguard.estimation import pybamm_traces as pt

SKIP_REASON = "PyBaMM is not installed (optional extra: `make pybamm-setup`)"


@pytest.fixture
def pybamm() -> Any:
    pytest.importorskip("pybamm", reason=SKIP_REASON)
    return pt._import_pybamm()


# -- without PyBaMM ------------------------------------------------------------------


@pytest.mark.parametrize("cell", sorted(pt.CELLS))
def test_every_profile_builds_for_every_cell(cell: str) -> None:
    spec = pt.CELLS[cell]
    assert spec.key == cell and spec.v_min < spec.nominal_v < spec.v_max
    for name in pt.PROFILE_NAMES:
        prof = pt.build_profile(name, spec)
        assert prof.segments and prof.duration_s > 3600.0
        # Scaled to the cell: no step beyond 2C (the pulses' and the DST's peak).
        if prof.mode == "current":
            assert max(abs(s.value) for s in prof.segments) <= 2.0 * spec.capacity_ah + 1e-9
        else:
            assert max(abs(s.value) for s in prof.segments) == pytest.approx(
                pt.DST_PEAK_C * spec.capacity_ah * spec.nominal_v)


def test_the_cache_key_follows_the_cell() -> None:
    spec = pt.CELLS["chayambuka2022"]
    prof = pt.build_profile("cc", spec)
    key = pt._cache_key(spec, prof, 25.0, "26.10")
    assert key == pt._cache_key(replace(spec), prof, 25.0, "26.10")
    # A scaled electrode, a thermal parameter, the model family: each a new key.
    wider = replace(spec, parameters=tuple(
        (k, v * 1.1 if k == "Electrode width [m]" else v) for k, v in spec.parameters))
    cooler = replace(spec, parameters=(*spec.parameters,
                                       ("Total heat transfer coefficient [W.m-2.K-1]", 20.0)))
    keys = {key, pt._cache_key(wider, prof, 25.0, "26.10"),
            pt._cache_key(cooler, prof, 25.0, "26.10"),
            pt._cache_key(replace(spec, family="sodium_ion"), prof, 25.0, "26.10"),
            pt._cache_key(spec, prof, 25.0, "26.9"), pt._cache_key(spec, prof, 0.0, "26.10")}
    assert len(keys) == 6


def test_an_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(CellguardError, match="no PyBaMM model 'P2D' here: DFN or SPMe"):
        pt.pybamm_model(object(), pt.CELLS["chen2020"], "P2D")


# -- with PyBaMM ---------------------------------------------------------------------


def test_the_sodium_ion_cell_is_scaled_and_has_thermal_parameters(pybamm: Any) -> None:
    spec = pt.CELLS["chayambuka2022"]
    coin = pybamm.ParameterValues("Chayambuka2022")
    p = pt._parameters(pybamm, spec, 25.0, 1.0)
    area = p["Electrode height [m]"] * p["Electrode width [m]"]
    assert area == pytest.approx(0.168)  # a 26700 can's wound strip, both faces
    assert area / (coin["Electrode height [m]"] * coin["Electrode width [m]"]) > 600
    # Between 0 % (OCV 2.0 V) and 100 % (OCV 4.14 V): 1.90 Ah; the nominal 1.8 Ah.
    full = pt._theoretical_capacity_ah(pybamm, spec, 25.0)
    assert full == pytest.approx(1.90, abs=0.01)
    assert spec.capacity_ah == p["Nominal cell capacity [A.h]"] == 1.8 < full
    assert p["Open-circuit voltage at 100% SOC [V]"] == 4.14
    assert (p["Lower voltage cut-off [V]"], p["Upper voltage cut-off [V]"]) == (
        spec.v_min, spec.v_max) == (2.0, 4.2)
    # Thermal parameters the set lacks, filled in; aluminium on both sides.
    for key in ("Cell volume [m3]", "Cell cooling surface area [m2]",
                "Total heat transfer coefficient [W.m-2.K-1]",
                "Negative electrode specific heat capacity [J.kg-1.K-1]"):
        assert key not in coin and p[key] > 0
    assert (p["Negative current collector density [kg.m-3]"]
            == p["Positive current collector density [kg.m-3]"] == 2700.0)


def test_the_lithium_ion_dfn_solves_the_sodium_ion_set_as_pybamms_sodium_dfn(
        pybamm: Any) -> None:
    """PyBaMM's sodium-ion family has only an isothermal BasicDFN; the
    lithium-ion DFN (which has the lumped thermal model and power steps) gives
    the same voltage on the set, isothermal: 10 minutes of 1C from 90 %."""
    import numpy as np

    spec = pt.CELLS["chayambuka2022"]
    t = np.arange(0.0, 601.0, 10.0)
    volts = []
    for model in (pybamm.sodium_ion.BasicDFN(), pt.pybamm_model(pybamm, spec, "DFN")):
        p = pt._parameters(pybamm, spec, 25.0, 0.9)
        p.update({"Current function [A]": spec.capacity_ah})
        sim = pybamm.Simulation(model, parameter_values=p, solver=pybamm.IDAKLUSolver())
        volts.append(sim.solve([0.0, 600.0], t_interp=t)["Voltage [V]"].entries)
    assert len(volts[0]) == len(volts[1]) == len(t)
    assert volts[0][-1] < volts[0][0] - 0.02  # it discharged
    assert float(np.max(np.abs(volts[0] - volts[1]))) < 0.001
