"""What the benchmarks claim, checked where it does not need PyBaMM: the coulomb
baseline starts from the same OCV as the EKF, the accuracy benchmark runs both
signs of the current-sensor errors, and the cell-fit benchmark marks the rows of
the profiles the cells were fitted on as in-sample."""

from __future__ import annotations

import itertools
import re
from types import ModuleType

import pytest
from benchmark_module import load_benchmark

from cellguard.estimation import cellmodel, estimate
from cellguard.paths import repo_root

LFP_CELL = repo_root() / "cells" / "a123-26650-prada2013.json"


@pytest.fixture(scope="module")
def accuracy() -> ModuleType:
    return load_benchmark("estimator_accuracy")


@pytest.fixture(scope="module")
def cell_fit() -> ModuleType:
    return load_benchmark("cell_fit")


def _rest_trace(volts: float, temp_c: float, rows: int = 5) -> estimate.Trace:
    return estimate.Trace([float(k) for k in range(rows)], [0.0] * rows,
                          [[volts] for _ in range(rows)], [[temp_c] for _ in range(rows)])


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
@pytest.mark.parametrize("soc", [20.0, 50.0, 90.0])
def test_the_coulomb_baseline_starts_from_the_cells_own_ocv(runtime: str, soc: float) -> None:
    """An LFP cell at rest at a known SoC: both estimators start from the fitted
    cell's OCV. (The chemistry's generic table put 50 % at 25.5 % and 90 % at 66 %.)"""
    model = cellmodel.load(LFP_CELL)
    trace = _rest_trace(round(model.ocv(soc, 25.0), 3), 25.0)
    coulomb = list(estimate.run(trace, model, "coulomb", runtime=runtime))
    ekf = list(estimate.run(trace, model, "ekf", runtime=runtime))
    assert coulomb[-1][1] == pytest.approx(soc, abs=1.0)
    assert coulomb[-1][1] == pytest.approx(ekf[-1][1], abs=1.0)


def test_the_coulomb_table_is_the_cells_ocv_at_the_first_temperature() -> None:
    model = cellmodel.load(LFP_CELL)
    for temp in (0.0, 25.0, 45.0):
        table = estimate.coulomb_ocv_mv(model, temp)
        assert len(table) == 21
        assert all(b > a for a, b in itertools.pairwise(table))
        for k in (0, 10, 20):
            assert abs(table[k] - model.ocv(5.0 * k, temp) * 1000) <= 1.0


def test_the_accuracy_benchmark_runs_both_signs(accuracy: ModuleType) -> None:
    base = accuracy.SENSORS
    mirror = accuracy.mirrored(base)
    assert mirror["current_offset_a"] == -base["current_offset_a"] != 0
    assert mirror["current_gain_error"] == -base["current_gain_error"] != 0
    assert {k: v for k, v in mirror.items() if not k.startswith("current_o")
            and k != "current_gain_error"} == {
        k: v for k, v in base.items() if not k.startswith("current_o")
        and k != "current_gain_error"}
    # "+": a discharge (negative current) reads larger than it is.
    assert accuracy.sign_label(base) == "+" and accuracy.sign_label(mirror) == "-"
    assert accuracy.sign_label(accuracy.mirrored(mirror)) == "+"


def test_cell_fit_marks_the_fitted_profiles_in_sample(cell_fit: ModuleType) -> None:
    makefile = (repo_root() / "Makefile").read_text()
    match = re.search(r"^PYBAMM_FIT_PROFILES := (.+)$", makefile, re.MULTILINE)
    assert match is not None
    assert tuple(match.group(1).split()) == cell_fit.FIT_PROFILES
    assert cell_fit.fit_label("hppc") == "in-sample"
    for profile in ("cc", "dst", "pulses"):
        assert cell_fit.fit_label(profile) == "held-out"
