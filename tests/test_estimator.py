"""The on-board state estimator (firmware/cellguard_fw/estimator.py, health.py,
balancing.py) against the project's own cell plant, and through `cellguard estimate`.

Traces come from host/cellguard/sim/plant.py (two RC pairs, cells that differ),
with the sensor errors a board has added on top: voltage noise and a current
offset. Every expectation is derived from the plant's truth, never typed in.
The accuracy benchmark against PyBaMM is benchmarks/estimator_accuracy.py.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from cellguard.boards import load_board
from cellguard.estimation import cellmodel, estimate
from cellguard.sim.plant import Plant
from cellguard_fw.balancing import Balancer
from cellguard_fw.chemistry import PROFILES
from cellguard_fw.estimator import TAU1, TAU2, CellModel, StateEstimator, current_limit, trapezoid
from cellguard_fw.health import Health

ROOT = Path(__file__).resolve().parents[1]
NMC_CELL = ROOT / "cells" / "sim-nmc.json"


class TraceMaker:
    """A plant driven by a current profile, recorded as a board would measure it."""

    def __init__(self, capacity_mah: int = 3000, initial_soc_pct: float = 90.0,
                 r0_factor: float = 1.0, offset_a: float = 0.0, noise_v: float = 0.002,
                 seed: int = 1) -> None:
        board = dict(load_board("sim-4s"))
        board["capacity_mah"] = capacity_mah
        self.plant = Plant(board, seed=seed, initial_soc_pct=initial_soc_pct)
        for c in self.plant.cells:
            c.r0_ohm *= r0_factor
        self.plant.output_closed = True
        self.rng = random.Random(seed)
        self.offset_a, self.noise_v = offset_a, noise_v
        self.trace = estimate.Trace([], [], [], [])
        self.truth: list[float] = []
        self.t = 0.0
        self._level = 0.0

    def run(self, seconds: float, current: float | str, dt: float = 1.0,
            stop_below_pct: float = -1.0) -> None:
        for k in range(int(seconds / dt)):
            if current == "pulses":  # random load steps every 20 s, mostly discharge
                if k % int(20 / dt) == 0:
                    self._level = self.rng.choice([-6.0, -3.0, -1.0, 0.5, -4.0])
                amps = self._level
            else:
                amps = float(current)
            self.plant.requested_current_a = amps
            self.plant.step(dt)
            self.t += dt
            x = self.plant.truth()
            self.trace.t_s.append(self.t)
            self.trace.current_a.append(x.current_a + self.offset_a)
            self.trace.cells_v.append([v + self.rng.gauss(0.0, self.noise_v) for v in x.cells_v])
            self.trace.temps_c.append([x.temperature_c])
            self.truth.append(x.soc_pct)
            if x.soc_pct < stop_below_pct:
                return


def errors(out: list[tuple[float, ...]], truth: list[float]) -> list[float]:
    return [o[1] - s for o, s in zip(out, truth, strict=True)]


def rmse(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values) / len(values))


@pytest.fixture(scope="module")
def model() -> cellmodel.CellModel:
    return cellmodel.load(NMC_CELL)


@pytest.fixture(scope="module")
def dynamic() -> TraceMaker:
    """40 min of random load pulses from 90 %, 2 mV noise, a 50 mA offset."""
    tm = TraceMaker(offset_a=0.05)
    tm.run(2400, "pulses")
    return tm


def test_ekf_recovers_from_a_wrong_initial_soc_and_beats_coulomb(
        model: cellmodel.CellModel, dynamic: TraceMaker) -> None:
    start = dynamic.truth[0] - 20.0  # 20 points off
    ekf = list(estimate.run(dynamic.trace, model, "ekf", start))
    coulomb = list(estimate.run(dynamic.trace, model, "coulomb", start))
    e_ekf, e_cc = errors(ekf, dynamic.truth), errors(coulomb, dynamic.truth)
    after_10_min = [abs(e) for e in e_ekf[600:]]
    assert max(after_10_min) < 3.0
    assert rmse(e_ekf[600:]) < 1.0
    assert rmse(e_ekf) < rmse(e_cc) / 5  # coulomb counting never recovers
    assert min(abs(e) for e in e_cc) > 15.0
    # the reported uncertainty shrinks from its start and covers the error: within
    # two standard deviations at least 90 % of the time after 10 minutes
    assert ekf[-1][2] < ekf[0][2] / 3 and ekf[-1][2] < 1.5
    covered = [abs(e) <= 2 * o[2] for e, o in zip(e_ekf[600:], ekf[600:], strict=True)]
    assert sum(covered) >= 0.9 * len(covered)


def test_current_sensor_bias_is_estimated(model: cellmodel.CellModel,
                                         dynamic: TraceMaker) -> None:
    out = list(estimate.run(dynamic.trace, model, "ekf"))
    assert abs(out[-1][7] - dynamic.offset_a) < 0.03
    assert abs(out[0][7]) < 0.01  # it starts at zero: it was learned


def test_capacity_relearned_between_rests_and_r0_growth(model: cellmodel.CellModel) -> None:
    """A pack faded to 90 % with R0 grown by half: a rest, a full discharge, a rest."""
    tm = TraceMaker(capacity_mah=2700, initial_soc_pct=98.0, r0_factor=1.5, offset_a=0.05)
    tm.run(2400, 0.0, dt=2.0)
    tm.run(40000, "pulses", dt=2.0, stop_below_pct=5.0)
    tm.run(2400, 0.0, dt=2.0)
    out = list(estimate.run(tm.trace, model, "ekf"))
    true_capacity = sum(c.capacity_ah for c in tm.plant.cells) / len(tm.plant.cells)
    assert model.capacity_ah == pytest.approx(3.0)  # the model said 3 Ah
    assert out[-1][5] == pytest.approx(true_capacity, rel=0.02)
    assert out[-1][6] == pytest.approx(1.5, rel=0.1)
    assert out[len(out) // 4][5] == pytest.approx(3.0)  # unchanged before the second rest


def test_micropython_runs_the_same_estimator(model: cellmodel.CellModel,
                                            dynamic: TraceMaker) -> None:
    short = estimate.Trace(dynamic.trace.t_s[:300], dynamic.trace.current_a[:300],
                           dynamic.trace.cells_v[:300], dynamic.trace.temps_c[:300])
    cpython = list(estimate.run(short, model, "ekf", runtime="cpython"))
    micropython = list(estimate.run(short, model, "ekf", runtime="micropython"))
    assert len(micropython) == len(cpython) == 300
    for a, b in zip(cpython, micropython, strict=True):
        assert a[0] == b[0]
        assert b[1] == pytest.approx(a[1], abs=0.05)  # SoC, %
        assert b[8] == pytest.approx(a[8], rel=0.01, abs=0.01)  # charge limit, A


def profile_model() -> CellModel:
    return CellModel.from_profile(PROFILES["nmc"], 3000)


def limit_a(m: CellModel, soc_pct: float, v1_v: float, v2_v: float, horizon_s: float,
            volts_limit: float, charge: bool) -> float:
    """current_limit in SI units at 25 degC (the firmware works in uV, 0.01 %, mA)."""
    per_pct = int(4096 * 100.0 * horizon_s / (3600.0 * m.capacity_ah))
    return current_limit(m, round(soc_pct * 100), round(v1_v * 1e6), round(v2_v * 1e6), 250,
                         m.decays(TAU1, horizon_s), m.decays(TAU2, horizon_s), per_pct,
                         round(volts_limit * 1e6), charge) / 1000.0


def test_current_limits_follow_soc_and_horizon() -> None:
    m = profile_model()
    v_max, v_min = 4.2, 2.85
    discharge = [limit_a(m, soc, 0.0, 0.0, 10.0, v_min, False) for soc in (90.0, 50.0, 20.0, 5.0,
                                                                            0.0)]
    assert discharge == sorted(discharge, reverse=True) and discharge[-1] == 0.0
    charge = [limit_a(m, soc, 0.0, 0.0, 10.0, v_max, True) for soc in (10.0, 50.0, 90.0, 100.0)]
    # full: only what is left between the top of the OCV curve and the charge voltage
    assert charge == sorted(charge, reverse=True) and charge[-1] < 0.02 * charge[0]
    # a short pulse may be larger than a long one; RC voltages already built up
    # (a discharge just before) lower the discharge limit
    assert limit_a(m, 50.0, 0.0, 0.0, 2.0, v_min, False) > \
        limit_a(m, 50.0, 0.0, 0.0, 300.0, v_min, False)
    assert limit_a(m, 50.0, -0.05, -0.03, 10.0, v_min, False) < discharge[1]
    # the integer solution is the model's: at 50 %, 10 s, no RC voltage, within 1 %
    m.at(5000, 250)
    a1, a2 = math.exp(-10.0 / 60.0), math.exp(-10.0 / 600.0)
    per_amp = (0.020 + 0.015 * (1 - a1) + 0.010 * (1 - a2)
               + m.slope() / 1e6 * 100.0 * 10.0 / (3600.0 * 3.0))
    assert discharge[1] == pytest.approx((m.get(0) / 1e6 - v_min) / per_amp, rel=0.01)


def test_limits_are_derated_by_temperature_and_capped_by_the_ratings() -> None:
    board = {"cells": 4, "capacity_mah": 3000, "balancing": False}
    est = StateEstimator(board, PROFILES["nmc"])
    ratings = (6.0, 12.0, 15.0, 30.0)
    for temps_dc, expect_charge in (([250, 250], True), ([-50, -50], False)):
        for _ in range(3):
            est.sample(1000, 0, 3700)
            est.run([3700] * 4, temps_dc, ratings, False)
        lim = est.limits_a
        assert lim[0] <= ratings[0] and lim[4] <= ratings[2]
        assert all(x <= ratings[1] for x in lim[1:4]) and all(x <= ratings[3] for x in lim[5:])
        # below 0 degC the charge limit is zero (the charge-temperature alarm's limit)
        assert (lim[0] > 0) == expect_charge
    # the derating factor in 1/256, on the firmware's integers (0.1 degC)
    assert trapezoid(250, 0, 100, 350, 450) == 256
    assert trapezoid(50, 0, 100, 350, 450) == 128
    assert trapezoid(450, 0, 100, 350, 450) == 0


def bleed(b: Balancer, socs_pct: list[float], allowed: bool = True,
          mv: int = 3700) -> int:
    """One 1 s balancer step with the cells' SoC in %: the firmware gives a base
    and each cell's offset from it in 0.001 % (the base here is the first cell)."""
    base = round(socs_pct[0] * 1000)
    offsets = array("i", [round(s * 1000) - base for s in socs_pct])
    return b.step(1000, base, offsets, [mv] * len(socs_pct), allowed)


def test_balancer_by_soc_with_hysteresis_and_a_thermal_limit() -> None:
    b = Balancer(3, balance_ohm=33.0, start_pct=2.0, stop_pct=1.0, r_th_k_per_w=60.0,
                 tau_s=120.0, max_rise_k=40.0, cool_k=10.0)
    assert bleed(b, [50.0, 51.5, 50.0]) == 0  # 1.5 points: not yet
    assert bleed(b, [50.0, 52.5, 50.0]) == 0b010  # past the start
    assert bleed(b, [50.0, 51.5, 50.0]) == 0b010  # still above stop
    assert bleed(b, [50.0, 50.9, 50.0]) == 0  # within stop: done
    assert bleed(b, [50.0, 55.0, 50.0], allowed=False) == 0  # pack not within limits
    assert bleed(b, [5.0, 9.0, 5.0]) == 0  # too empty to bleed
    # 3.7 V over 33 ohm is 0.41 W: 25 K of rise at 60 K/W, below the limit ...
    for _ in range(2000):
        bleed(b, [50.0, 55.0, 50.0])
    assert b.mask == 0b010 and b.rise_k[1] == pytest.approx(0.415 * 60.0, rel=0.02)
    # ... a hotter resistor (100 K/W) stops at 40 K and resumes 10 K lower
    hot = Balancer(2, r_th_k_per_w=100.0, tau_s=120.0)
    masks = [bleed(hot, [50.0, 60.0]) for _ in range(2000)]
    low = Balancer(1)  # one cell is never above the lowest: never bleeds
    assert bleed(low, [60.0]) == 0
    assert 0 in masks[100:] and 0b10 in masks[100:]  # it cut out and came back
    assert max(hot.rise_k) <= 40.0 + 0.5


def test_health_persists_across_a_reset(tmp_path: Path) -> None:
    path = str(tmp_path / "health.bin")
    h = Health(3.0, path)
    h.capacity_ah, h.r0_growth = 2.75, 1.31
    h.save()
    again = Health(3.0, path)
    assert again.capacity_ah == pytest.approx(2.75, abs=0.001)
    assert again.r0_growth == pytest.approx(1.31, abs=0.001)
    assert again.capacity_pct == pytest.approx(100 * 2.75 / 3.0, abs=0.05)
    assert Health(3.0, None).capacity_ah == 3.0  # nothing stored: rated


def test_estimate_command_writes_a_csv(tmp_path: Path, dynamic: TraceMaker) -> None:
    trace = tmp_path / "trace.csv"
    with open(trace, "w") as f:
        f.write("t_s,current_a,cell1_v,cell2_v,cell3_v,cell4_v,temp1_c\n")
        for k in range(120):
            tr = dynamic.trace
            f.write(",".join(str(x) for x in (tr.t_s[k], tr.current_a[k], *tr.cells_v[k],
                                               tr.temps_c[k][0])) + "\n")
    out = tmp_path / "est.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "cellguard.cli", "estimate", "--input", str(trace), "--cell",
         str(NMC_CELL), "--initial-soc", "60", "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    assert lines[0].split(",") == list(estimate.OUTPUT_COLUMNS)
    assert len(lines) == 121
    bad = tmp_path / "bad.csv"
    bad.write_text("t_s,current_a,cell1_v\n0,1,3.7\n0,1,3.7\n")
    proc = subprocess.run(
        [sys.executable, "-m", "cellguard.cli", "estimate", "--input", str(bad), "--cell",
         str(NMC_CELL), "--out", str(out), "--force"], capture_output=True, text=True,
        timeout=60)
    assert proc.returncode != 0 and "line 3" in proc.stderr and "Traceback" not in proc.stderr
    assert len(out.read_text().splitlines()) == 121  # the good run's output stays whole


@pytest.mark.parametrize("bad, message", [
    ("t_s,cell1_v\n", "current_a"),
    ("t_s,current_a,cell1_v\n0,x,3.7\n1,0,3.7\n", "line 2"),
    ("t_s,current_a,cell1_v\n0,0,nan\n1,0,3.7\n", "line 2: cell1_v is not a finite number"),
    ("t_s,current_a,cell1_v\n0,0,3.7\n", "fewer than two"),
])
def test_bad_traces_are_refused_clearly(tmp_path: Path, bad: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(bad)
    with pytest.raises(estimate.TraceError, match=message):
        estimate.read_trace(path)
