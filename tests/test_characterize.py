"""`cellguard characterize` against equivalent circuits with known parameters.

The traces come from the project's own plant (host/cellguard/sim/plant.py) and
from a small ECM written here whose parameters depend on SoC and temperature,
run through the HPPC-style pulse test and C/20 discharge of
``cellguard.estimation.pybamm_traces`` (its profiles need no PyBaMM). The data are exact
for the model characterize fits, so what is left is the method's own error:
the tolerances below are set from it (R0 within 5 %, the RC pairs within 10 %,
OCV within 5 mV; the OCV tables bend at 5 % breakpoints, which the fit's
0.1 % smoothing rounds by up to (slope change) x 0.1 % / 4, about 3 mV at the
NMC table's 5 % knee).
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cellguard.boards import load_board
from cellguard.cli import main
from cellguard.errors import SetupError
from cellguard.estimation import cellmodel, pybamm_traces
from cellguard.estimation.characterize import (
    CharacterizeError,
    characterize,
    read_trace,
    replay,
)
from cellguard.sim.plant import Plant, ocv_v
from cellguard_fw.chemistry import PROFILES

CAP_AH = 3.0
R0, R1, TAU1, R2, TAU2 = 0.020, 0.015, 60.0, 0.010, 600.0
NMC = PROFILES["nmc"]["ocv_mv"]
LFP = PROFILES["lfp"]["ocv_mv"]


def write_trace(path: Path, rows: list[tuple[float, float, float, float, float]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "current_a", "cell1_v", "temp1_c", "true_soc_pct"])
        for row in rows:
            w.writerow([f"{x:.6f}" for x in row])
    return path


def segments_to_currents(segs: list[pybamm_traces.Segment], dt: float) -> list[float]:
    out = []
    for s in segs:
        out += [s.value] * max(1, round(s.duration_s / dt))
    return out


def plant_trace(path: Path, segs: list[pybamm_traces.Segment], dt: float = 1.0,
                soc_pct: float = 100.0) -> Path:
    """The built-in plant (sim-4s cut to one cell, no spreads, no self-discharge)."""
    board = load_board("sim-4s")
    board.update(cells=1, temp_sensors=1)
    board["plant"] = {**board["plant"], "capacity_spread": 0.0, "resistance_spread": 0.0,
                      "self_discharge_pct_per_month": 0.0, "r0_mohm": R0 * 1e3,
                      "r1_mohm": R1 * 1e3, "tau1_s": TAU1, "r2_mohm": R2 * 1e3,
                      "tau2_s": TAU2}
    plant = Plant(board, initial_soc_pct=soc_pct)
    plant.output_closed = True
    cell = plant.cells[0]
    rows = [(0.0, 0.0, plant.cells_v()[0], plant.temperature_c, cell.soc * 100)]
    t = 0.0
    for i in segments_to_currents(segs, dt):
        plant.requested_current_a = i
        plant.step(dt)
        t += dt
        rows.append((t, i, plant.cells_v()[0], plant.temperature_c, cell.soc * 100))
    return write_trace(path, rows)


def ecm_trace(path: Path, segs: list[pybamm_traces.Segment], *, r0: Callable[[float], float],
              temp_c: float, table: tuple[int, ...] = NMC, dt: float = 1.0,
              soc_pct: float = 100.0, noise_v: float = 0.0) -> Path:
    """An ECM whose R0 follows ``r0(soc 0..1)``, exact over each step."""
    rng = np.random.default_rng(7)
    soc = soc_pct / 100.0
    x1 = x2 = 0.0
    rows = [(0.0, 0.0, ocv_v(table, soc), temp_c, soc * 100)]
    t = 0.0
    d1, d2 = math.exp(-dt / TAU1), math.exp(-dt / TAU2)
    for i in segments_to_currents(segs, dt):
        soc += i * dt / 3600.0 / CAP_AH
        x1 = x1 * d1 + R1 * (1 - d1) * i
        x2 = x2 * d2 + R2 * (1 - d2) * i
        t += dt
        v = ocv_v(table, soc) + r0(soc) * i + x1 + x2 + rng.normal(0.0, noise_v)
        rows.append((t, i, v, temp_c, soc * 100))
    return write_trace(path, rows)


def hppc(level_rest_s: float = 3600.0) -> list[pybamm_traces.Segment]:
    return pybamm_traces.hppc_segments(CAP_AH, level_rest_s=level_rest_s)


def low_rate() -> list[pybamm_traces.Segment]:
    S = pybamm_traces.Segment
    return [S(0.0, 600.0), S(-CAP_AH / 20.0, 20 * 3600.0), S(0.0, 600.0)]


@pytest.fixture(scope="module")
def plant_fit(tmp_path_factory: pytest.TempPathFactory) -> cellmodel.CellModel:
    d = tmp_path_factory.mktemp("plant")
    pulse = plant_trace(d / "hppc.csv", hppc())
    slow = plant_trace(d / "low.csv", low_rate(), dt=10.0)
    model, _ = characterize([read_trace(pulse), read_trace(slow)], chemistry="nmc",
                            capacity_ah=CAP_AH)
    return model


def test_fit_recovers_the_plant(plant_fit: cellmodel.CellModel) -> None:
    m = plant_fit
    assert len(m.temps_c) == 1 and 25.0 <= m.temps_c[0] < 30.0  # the plant warms a little
    for soc in m.soc_pct:
        p = m.params(soc, m.temps_c[0])
        assert p.r0_ohm == pytest.approx(R0, rel=0.05), soc
        assert p.r1_ohm == pytest.approx(R1, rel=0.10), soc
        assert p.tau1_s == pytest.approx(TAU1, rel=0.10), soc
        assert p.r2_ohm == pytest.approx(R2, rel=0.10), soc
        assert p.tau2_s == pytest.approx(TAU2, rel=0.10), soc
        assert p.ocv_v == pytest.approx(ocv_v(NMC, soc / 100.0), abs=0.005), soc


def test_fitted_model_replays_a_dynamic_plant_trace(plant_fit: cellmodel.CellModel,
                                                    tmp_path: Path) -> None:
    # The random pulse train from 100 % to 10 %: a load the fit never saw.
    segs, soc = [], 100.0
    for s in pybamm_traces.random_pulses(CAP_AH, seed=3):
        soc += s.value * s.duration_s / 36.0 / CAP_AH
        if soc < 10.0:
            break
        segs.append(s)
    tr = read_trace(plant_trace(tmp_path / "pulses.csv", segs))
    r = replay(plant_fit, tr)
    assert r.initial_soc_pct == 100.0
    assert r.rms_mv < 3.0 and r.max_mv < 15.0


def test_soc_and_temperature_dependence(tmp_path: Path) -> None:
    # R0 rises towards empty and is twice as high in the cold; the fitted tables
    # follow at the levels the pulse test visits (10, 20, ... 90 %).
    def r0_warm(soc: float) -> float:
        return 0.015 + 0.020 * (1.0 - soc) ** 2

    def r0_cold(soc: float) -> float:
        return 2 * r0_warm(soc)

    files = [
        ecm_trace(tmp_path / "hppc-40.csv", hppc(), r0=r0_warm, temp_c=40.0, noise_v=3e-4),
        ecm_trace(tmp_path / "low-40.csv", low_rate(), r0=r0_warm, temp_c=40.0, dt=10.0),
        ecm_trace(tmp_path / "hppc-5.csv", hppc(), r0=r0_cold, temp_c=5.0, noise_v=3e-4),
    ]
    m, report = characterize([read_trace(f) for f in files], chemistry="nmc",
                             capacity_ah=CAP_AH)
    assert m.temps_c == [5.0, 40.0]
    for soc in range(10, 100, 10):
        assert m.value("r0_ohm", soc, 40.0) == pytest.approx(r0_warm(soc / 100), rel=0.05)
        assert m.value("r0_ohm", soc, 5.0) == pytest.approx(r0_cold(soc / 100), rel=0.05)
        assert m.value("r0_ohm", soc, 22.5) == pytest.approx(1.5 * r0_warm(soc / 100),
                                                            rel=0.05)
        for t in (5.0, 40.0):
            p = m.params(soc, t)
            assert p.tau1_s == pytest.approx(TAU1, rel=0.10)
            assert p.r1_ohm == pytest.approx(R1, rel=0.10)
            assert p.r2_ohm == pytest.approx(R2, rel=0.10)
    # 40 degC has a C/20 discharge: OCV within 5 mV. 5 degC has none: its OCV
    # comes from the long rests' asymptotes (exact, at the levels' SoC, 10 %
    # apart), linear in between: off by what the table bends between levels.
    for soc in m.soc_pct:
        assert m.ocv(soc, 40.0) == pytest.approx(ocv_v(NMC, soc / 100), abs=0.005)
    cold = report.groups[0]
    assert "rest asymptotes" in cold.ocv_source
    long_rests = [(s, v) for f in cold.rc for s, v, d in f.asymptotes if d >= 3000]
    assert len(long_rests) == 10
    for soc, v in long_rests:
        assert v == pytest.approx(ocv_v(NMC, soc / 100), abs=0.001)
    for soc in range(10, 100, 10):
        assert m.ocv(soc, 5.0) == pytest.approx(ocv_v(NMC, soc / 100), abs=0.015)
    assert "low-rate discharge" in report.groups[1].ocv_source


def test_lfp_charge_and_discharge_average(tmp_path: Path) -> None:
    # A C/20 charge from empty and a C/20 discharge from full: the OCV is their
    # mean (the IR drops cancel), the chemistry guessed from the curve.
    S = pybamm_traces.Segment
    charge = [S(0.0, 600.0), S(CAP_AH / 20.0, 20 * 3600.0), S(0.0, 600.0)]
    files = [
        ecm_trace(tmp_path / "hppc.csv", hppc(), r0=lambda s: R0, temp_c=25.0, table=LFP),
        ecm_trace(tmp_path / "dis.csv", low_rate(), r0=lambda s: R0, temp_c=25.0, table=LFP,
                  dt=10.0),
        ecm_trace(tmp_path / "chg.csv", charge, r0=lambda s: R0, temp_c=25.0, table=LFP,
                  dt=10.0, soc_pct=0.0),
    ]
    m, report = characterize([read_trace(f) for f in files])
    assert report.chemistry == "lfp" and report.chemistry_guessed
    assert report.capacity_ah == pytest.approx(CAP_AH, rel=1e-6)  # the C/20 discharge
    assert "mean of the low-rate charge and discharge" in report.groups[0].ocv_source
    for soc in m.soc_pct:
        assert m.ocv(soc) == pytest.approx(ocv_v(LFP, soc / 100), abs=0.005)


# -- errors ----------------------------------------------------------------------------


def test_missing_columns(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("t_s,current_a\n0,0\n")
    with pytest.raises(CharacterizeError, match=r"missing column cell1_v \(has: t_s, "):
        read_trace(p)


def test_too_short(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("t_s,current_a,cell1_v\n" + "".join(f"{k},0,3.7\n" for k in range(10)))
    with pytest.raises(CharacterizeError, match="too short"):
        read_trace(p)


def test_bad_numbers_and_time(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("t_s,current_a,cell1_v\n0,0,3.7\n1,x,3.7\n")
    with pytest.raises(CharacterizeError, match=r"t\.csv:3: current_a is not a number: 'x'"):
        read_trace(p)
    p.write_text("t_s,current_a,cell1_v\n" + "".join(f"{k % 50},0,3.7\n" for k in range(100)))
    with pytest.raises(CharacterizeError, match=r"t\.csv:52: t_s must rise: 0 follows 49"):
        read_trace(p)


def test_trace_without_pulses(tmp_path: Path) -> None:
    S = pybamm_traces.Segment
    cc = plant_trace(tmp_path / "cc.csv", [S(0.0, 60.0), S(-CAP_AH, 1800.0)])
    with pytest.raises(CharacterizeError, match="neither a pulse test"):
        characterize([read_trace(cc)], capacity_ah=CAP_AH)
    slow = plant_trace(tmp_path / "low.csv", low_rate(), dt=60.0)
    with pytest.raises(CharacterizeError, match="no pulses at 25"):
        characterize([read_trace(slow)], capacity_ah=CAP_AH)


def test_capacity_needed_without_low_rate(tmp_path: Path) -> None:
    pulse = plant_trace(tmp_path / "hppc.csv", hppc(level_rest_s=600.0))
    with pytest.raises(CharacterizeError, match="give the capacity"):
        characterize([read_trace(pulse)])


# -- the command -----------------------------------------------------------------------


def test_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pulse = plant_trace(tmp_path / "hppc.csv", hppc(level_rest_s=1800.0))
    slow = plant_trace(tmp_path / "low.csv", low_rate(), dt=20.0)
    out = tmp_path / "cell.json"
    code = main(["characterize", "--input", str(pulse), "--input", str(slow), "--out", str(out),
                 "--chemistry", "nmc", "--name", "plant cell", "--validate", str(pulse)])
    text = capsys.readouterr().out
    assert code == 0
    m = cellmodel.load(out)
    assert m.name == "plant cell" and m.chemistry == "nmc"
    assert m.capacity_ah == pytest.approx(CAP_AH, rel=1e-6)
    assert "capacity 3 Ah (discharged by the low-rate test low.csv)" in text
    assert "hppc.csv: voltage error RMS" in text
    assert f"wrote {out}" in text


def test_command_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "t.csv"
    p.write_text("time,amps\n")
    code = main(["characterize", "--input", str(p), "--out", str(tmp_path / "c.json")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("cellguard: error: ") and "missing column t_s" in err
    assert "Traceback" not in err


# -- the PyBaMM profiles (no PyBaMM needed) ------------------------------------------------


def test_dst_table() -> None:
    steps = pybamm_traces.DST_STEPS
    assert len(steps) == 20 and sum(d for d, _ in steps) == 360
    assert max(p for _, p in steps) == 100 and min(p for _, p in steps) == -50
    # Net discharge 12.5 % of the maximum power over a cycle.
    assert sum(d * p for d, p in steps) / 360 == pytest.approx(12.5)
    cycle = pybamm_traces.dst_cycle(40.0)
    assert cycle[14] == pybamm_traces.Segment(-40.0, 8.0)  # the 100 % step, discharging
    assert cycle[18] == pybamm_traces.Segment(20.0, 8.0)  # -50 %: regenerative charge


def test_profiles() -> None:
    cell = pybamm_traces.CELLS["chen2020"]
    h = pybamm_traces.build_profile("hppc", cell)
    # Ten levels; each takes out 10 % of C plus the pulses' net 10 s x 0.25C.
    out_ah = -sum(min(s.value, 0) * s.duration_s for s in h.segments) / 3600
    in_ah = sum(max(s.value, 0) * s.duration_s for s in h.segments) / 3600
    assert out_ah - in_ah == pytest.approx(cell.capacity_ah * (1 + 10 * 10 * 0.25 / 3600))
    a = pybamm_traces.random_pulses(5.0, seed=4)
    assert a == pybamm_traces.random_pulses(5.0, seed=4) != pybamm_traces.random_pulses(5.0, 5)
    assert all(2 <= s.duration_s <= 60 and -10.0 <= s.value <= 5.0 for s in a[1:])
    times, values = pybamm_traces.profile_samples(pybamm_traces.Profile(
        "x", "current", (pybamm_traces.Segment(0.0, 2.0), pybamm_traces.Segment(-1.0, 3.0)),
        1.0, 1.0, "v_min"))
    # The value at t is what flowed over the interval that ends at t.
    assert times == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert values == [0.0, 0.0, 0.0, -1.0, -1.0, -1.0]
    for name in pybamm_traces.PROFILE_NAMES:
        assert pybamm_traces.build_profile(name, pybamm_traces.CELLS["prada2013"]).segments


def test_without_pybamm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pybamm", None)  # import fails as if not installed
    with pytest.raises(SetupError, match="make pybamm-setup"):
        pybamm_traces.run_trace("chen2020", "cc", 25.0)
