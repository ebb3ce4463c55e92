"""The metric functions of benchmarks/estimator_accuracy.py (no PyBaMM needed):
SoC error against a clamped truth, RMSE, max error after the first 10 minutes,
convergence time."""

from __future__ import annotations

import math
from types import ModuleType

import pytest
from benchmark_module import load_benchmark as load_module


def load_benchmark() -> ModuleType:
    return load_module("estimator_accuracy")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark()


def test_the_definitions(bench: ModuleType) -> None:
    assert bench.SETTLE_S == 600.0 and bench.CONVERGENCE_BAND_PCT == 2.0


def test_soc_error_clamps_the_truth_to_the_reported_range(bench: ModuleType) -> None:
    err = bench.soc_error([0.0, 50.0, 100.0, 1.0], [-3.0, 49.0, 100.5, 0.5])
    assert err.tolist() == pytest.approx([0.0, 1.0, 0.0, 0.5])
    with pytest.raises(ValueError):
        bench.soc_error([1.0, 2.0], [1.0])


def test_rmse(bench: ModuleType) -> None:
    assert bench.rmse([3.0, -4.0]) == pytest.approx(math.sqrt(12.5))
    assert bench.rmse([0.0, 0.0, 0.0]) == 0.0
    with pytest.raises(ValueError):
        bench.rmse([])


def test_max_error_after_ten_minutes(bench: ModuleType) -> None:
    t = [0.0, 300.0, 599.0, 600.0, 900.0]
    err = [-20.0, 5.0, 4.0, -2.5, 1.0]
    assert bench.max_error_after(t, err) == 2.5  # the start-up errors do not count
    # Times are taken from the first sample, not from zero.
    assert bench.max_error_after([100.0, 699.0, 700.0], [9.0, 8.0, -1.0]) == 1.0
    assert bench.max_error_after(t, err, after_s=0.0) == 20.0
    assert math.isnan(bench.max_error_after([0.0, 60.0], [1.0, 1.0]))


def test_convergence_time(bench: ModuleType) -> None:
    t = [0.0, 10.0, 20.0, 30.0, 40.0]
    # Out of the band at 10 s, back in from 20 s on: converged at 20 s.
    assert bench.convergence_time(t, [5.0, 2.5, 1.9, -1.0, 0.0]) == 20.0
    # Never out of the band: 0.
    assert bench.convergence_time(t, [1.0, -1.9, 0.0, 1.5, 0.1]) == 0.0
    # Converged, left the band again, came back: the last entry counts.
    assert bench.convergence_time(t, [0.0, 0.0, -3.0, 0.5, 0.5]) == 30.0
    # Exactly at the band counts as outside (|error| must stay below it).
    assert bench.convergence_time(t, [0.0, 0.0, 0.0, 2.0, 1.0]) == 40.0
    # Ends outside the band: never.
    assert bench.convergence_time(t, [0.0, 0.0, 0.0, 0.0, 2.5]) is None
    # Relative to the first sample; another band.
    assert bench.convergence_time([50.0, 60.0, 70.0], [1.5, 0.9, 0.1], band=1.0) == 10.0


def test_format_time(bench: ModuleType) -> None:
    assert bench.format_time(None) == "never"
    assert bench.format_time(0.0) == "0 s"
    assert bench.format_time(95.0) == "95 s"
    assert bench.format_time(750.0) == "12.5 min"
    assert bench.format_time(4500.0) == "75.0 min"
    assert bench.format_time(9000.0) == "2.50 h"


def test_every_case_is_named_once_and_the_goals_are_covered(bench: ModuleType) -> None:
    names = [c.name for c in bench.CASES]
    assert len(names) == len(set(names))
    chems = {c.chem for c in bench.CASES}
    assert chems == {"NMC", "LFP", "Na-ion"}
    assert {0.0, 25.0, 45.0} <= {c.ambient_c for c in bench.CASES}
    assert {"cc", "dst", "pulses", "cycle"} <= {c.profile for c in bench.CASES}
    assert any(c.wrong_start for c in bench.CASES)
