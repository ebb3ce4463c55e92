"""The PyBaMM plant (``SimulatedBoard(plant="pybamm")``, ``cellguard sim --plant
pybamm``): the firmware measures a PyBaMM cell, the truth follows the charge,
the switches cut the current, and a cut-off or a solver failure is a clear
error. PyBaMM is optional (``make pybamm-setup``) and not in CI: those tests
skip without it; the option checks run everywhere."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cellguard.boards import BoardFileError, load_board
from cellguard.cli import main
from cellguard.estimation import cellmodel
from cellguard.link.client import BoardClient
from cellguard.paths import repo_root
from cellguard.sim import SimulatedBoard
from cellguard.sim.plant import OUT_CHARGE, OUT_CLOSED, OUT_DISCHARGE

SKIP_REASON = "PyBaMM is not installed (optional extra: `make pybamm-setup`)"


@pytest.fixture
def pybamm() -> Any:
    return pytest.importorskip("pybamm", reason=SKIP_REASON)


def read_telemetry(client: BoardClient, settle_s: float = 0.05) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    quiet_until = time.monotonic() + settle_s
    while time.monotonic() < quiet_until:
        msgs = client.receive()
        if msgs:
            out += [m.payload for m in msgs if m.name == "telemetry"]
            quiet_until = time.monotonic() + settle_s
        else:
            time.sleep(0.002)
    return out


# -- without PyBaMM ------------------------------------------------------------------


def test_bad_plant_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="plant must be one of ecm, pybamm"):
        SimulatedBoard(plant="p2d")
    with pytest.raises(ValueError, match="pybamm_model must be one of spme, dfn"):
        SimulatedBoard(plant="pybamm", pybamm_model="p2d")
    with pytest.raises(ValueError, match="parameter_set must be one of chen2020, prada2013"):
        SimulatedBoard(plant="pybamm", parameter_set="marquis2019")
    with pytest.raises(ValueError, match="go with plant=\"pybamm\""):
        SimulatedBoard(parameter_set="chen2020")


def test_cli_pybamm_options_need_the_pybamm_plant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--pybamm-model", "dfn"]) == 1
    assert "--pybamm-model and --parameter-set go with --plant pybamm" in capsys.readouterr().err


# -- with PyBaMM ---------------------------------------------------------------------


def test_firmware_reads_a_pybamm_cell_and_the_soc_follows_the_charge(pybamm: Any) -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True, initial_soc_pct=60.0,
                        plant="pybamm") as sim:
        # The board's cells are the PyBaMM cell now: the firmware is set up for them.
        assert sim.board["chemistry"] == "nmc" and sim.board["capacity_mah"] == 5000
        assert sim.board["cell_model"]["name"].startswith("LG M50")
        client = BoardClient(sim.port)
        try:
            sim.advance(3.0)
            rest = read_telemetry(client)[-1]
            rest_truth = sim.truth()
            sim.set_current(-5.0)  # 1C discharge for five minutes
            telemetry: list[dict[str, Any]] = []
            for _ in range(30):
                sim.advance(10.0)
                telemetry += read_telemetry(client, 0.0)
            telemetry += read_telemetry(client)
            truth = sim.truth()
            sampled = sim.truth_at(telemetry[-1]["board_time_ms"])
        finally:
            client.close()
    # At rest: the Chen2020 OCV at 60 %, as its fitted cell file has it (3.850 V).
    ocv = cellmodel.load(repo_root() / "cells" / "lg-m50-chen2020.json").ocv(60.0, 25.0)
    assert rest_truth.cells_v == pytest.approx([ocv] * 4, abs=0.005)
    assert [mv / 1000.0 for mv in rest["cells_mv"]] == pytest.approx(rest_truth.cells_v,
                                                                     abs=0.002)
    # Under 1C: what the firmware measured is the plant, a little lower than at rest.
    last = telemetry[-1]
    assert sampled is not None
    assert [mv / 1000.0 for mv in last["cells_mv"]] == pytest.approx(sampled.cells_v, abs=0.002)
    assert all(3.45 < v < 3.70 for v in truth.cells_v)
    assert last["current_ma"] == pytest.approx(-5000, abs=5)
    assert last["state"] == "active" and last["faults"] == 0
    # The cells differ a little (seeded capacity and resistance offsets).
    assert max(truth.cells_v) - min(truth.cells_v) > 0.0005
    # SoC truth: 5 A for 300 s is 0.4167 Ah, 8.33 % of 5 Ah (each cell its own capacity).
    assert truth.charge_out_ah == pytest.approx(5.0 * 300.0 / 3600.0, rel=1e-9)
    assert truth.extra["pybamm_soc_pct"] == pytest.approx(60.0 - 8.333, abs=0.01)
    for soc, cell in zip(truth.cells_soc_pct, sim.plant.cells, strict=True):
        drop = 100.0 * 5.0 * 300.0 / 3600.0 / cell.capacity_ah
        assert 60.0 - soc == pytest.approx(drop, abs=0.01)
    # The firmware's SoC (its filter on the fitted LG M50 model) follows the truth.
    assert last["soc_cpct"] / 100.0 == pytest.approx(sampled.soc_pct, abs=3.0)
    # One PyBaMM solve a second or so (plus one at each current change).
    assert truth.extra["pybamm_solves"] <= 310


def test_opening_the_output_cuts_the_pybamm_current(pybamm: Any) -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True, initial_soc_pct=50.0,
                        plant="pybamm") as sim:
        sim.set_current(-5.0)
        sim.advance(20.0)
        loaded = sim.truth()
        assert loaded.output_closed and loaded.current_a == -5.0
        # The firmware opens on a fault (an open sense wire): no more current.
        sim.inject("open_wire", cell=1)
        sim.advance(2.0)
        opened = sim.truth()
        assert not opened.output_closed and opened.current_a == 0.0
        soc = opened.extra["pybamm_soc_pct"]
        sim.advance(30.0)
        rested = sim.truth()
        assert rested.current_a == 0.0 and rested.extra["pybamm_soc_pct"] == soc
        # The PyBaMM cell relaxes towards its OCV without the load.
        assert rested.extra["pybamm_cell_v"] > loaded.extra["pybamm_cell_v"] + 0.05
        # Back-to-back FETs (sim-4s): with only the discharge FET on, no charge flows.
        plant = sim.plant
        plant.outputs = OUT_CLOSED | OUT_DISCHARGE
        plant.requested_current_a = 3.0
        assert plant.current_a == 0.0
        plant.outputs = OUT_CLOSED | OUT_CHARGE
        assert plant.current_a == 3.0


def test_a_short_circuit_trips_the_firmware(pybamm: Any) -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True, initial_soc_pct=60.0,
                        plant="pybamm") as sim:
        sim.set_current(-2.0)
        sim.advance(2.0)
        sim.inject("short_circuit")  # 0.05 ohm across the output
        t0 = sim.time_ms
        sim.advance(1.0)
        after = [t for ms, t in sim.history if ms > t0]
        assert sim.runtime is not None
        faults = sim.runtime.firmware.bms.faults  # type: ignore[attr-defined]
    assert faults & 0x800  # FAULT_SHORT_CIRCUIT
    assert after[0].current_a < -50.0  # what the shunt saw: a short, held over the period
    assert all(2.5 < v < 3.5 for v in after[0].cells_v)  # the PyBaMM cells under 20C
    assert all(t.current_a == 0.0 for t in after[2:])  # opened at once


def test_balancing_bleeds_the_derived_cells(pybamm: Any) -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True, initial_soc_pct=60.0,
                        plant="pybamm") as sim:
        sim.advance(1.0)
        assert sim.runtime is not None
        sim.runtime.firmware.hal.set_balancing(0b0101)
        soc0 = [c.soc for c in sim.plant.cells]
        sim.advance(200.0)
        truth = sim.truth()
    assert truth.balancing_mask == 0b0101
    assert [a > 0.1 for a in truth.balance_a] == [True, False, True, False]
    for k, c in enumerate(sim.plant.cells):
        leak_ah = c.self_discharge_a * 200.0 / 3600.0
        lost_ah = (soc0[k] - c.soc) * c.capacity_ah
        assert lost_ah == pytest.approx(sim.plant.balance_ah[k] + leak_ah, rel=1e-6)
    v = truth.cells_v
    assert max(v[0], v[2]) < min(v[1], v[3])


def test_a_cutoff_is_a_clear_error_and_the_plant_stays_failed(pybamm: Any) -> None:
    from cellguard.sim.pybamm_plant import PlantError, PybammPlant, pybamm_board

    plant = PybammPlant(pybamm_board(load_board("sim-4s"), "chen2020"), initial_soc_pct=5.0)
    plant.output_closed = True  # nothing opens it: no firmware here
    plant.requested_current_a = -10.0
    with pytest.raises(PlantError, match=r"lower voltage cut-off \(2\.2 V\)") as err:
        for _ in range(3000):
            plant.step(0.1)
    assert "-10 A (positive = charging)" in str(err.value)
    assert "LG M50" in str(err.value) and "SPMe" in str(err.value)
    with pytest.raises(PlantError, match="lower voltage cut-off"):
        plant.step(0.1)


def test_a_current_beyond_a_cutoff_at_once_is_refused(pybamm: Any) -> None:
    from cellguard.sim.pybamm_plant import PlantError, PybammPlant, pybamm_board

    plant = PybammPlant(pybamm_board(load_board("sim-4s"), "chen2020"), initial_soc_pct=2.0)
    plant.output_closed = True
    plant.requested_current_a = -400.0
    with pytest.raises(PlantError, match=r"-400 A \(positive = charging\) would take the "
                                         r"PyBaMM cell beyond its lower voltage cut-off "
                                         r"\(2\.2 V\) at once"):
        plant.step(0.1)


def test_a_solver_failure_is_a_clear_error(pybamm: Any, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    from cellguard.sim.pybamm_plant import PlantError

    with SimulatedBoard(runtime="cpython", lockstep=True, plant="pybamm") as sim:
        sim.set_current(-2.0)
        sim.advance(3.0)

        def fail(*args: Any, **kwargs: Any) -> None:
            raise pybamm.SolverError("IDA_CONV_FAIL: convergence test failed repeatedly")

        monkeypatch.setattr(sim.plant.ref.solver, "step", fail)  # type: ignore[attr-defined]
        with pytest.raises(PlantError, match="the PyBaMM solver failed "
                                             r"\(SolverError: IDA_CONV_FAIL"):
            sim.advance(2.0)


def test_cli_ends_with_a_clear_error_at_the_cutoff(pybamm: Any, tmp_path: Path) -> None:
    script = tmp_path / "weld.txt"
    script.write_text("at 0 inject welded_contactor\nat 1h end\n")  # nothing stops the load
    proc = subprocess.run(
        [sys.executable, "-m", "cellguard.cli", "sim", "--plant", "pybamm", "--runtime",
         "cpython", "--speed", "0", "--soc", "3", "--current", "-10", "--script", str(script)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("cellguard: error: PyBaMM plant"), proc.stderr
    assert "lower voltage cut-off" in proc.stderr
    assert "PyBaMM plant (spme, chen2020)" in proc.stdout


def test_dfn_and_prada2013_an_lfp_board(pybamm: Any) -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True, initial_soc_pct=50.0,
                        plant="pybamm", pybamm_model="dfn", parameter_set="prada2013") as sim:
        assert sim.board["chemistry"] == "lfp" and sim.board["capacity_mah"] == 2300
        sim.set_current(-2.3)
        sim.advance(30.0)
        truth = sim.truth()
    assert truth.output_closed and truth.current_a == -2.3
    assert all(3.1 < v < 3.35 for v in truth.cells_v)  # the LFP plateau under 1C
    assert truth.extra["pybamm_model"] == "dfn"
    assert truth.extra["pybamm_soc_pct"] == pytest.approx(50.0 - 100.0 * 2.3 * 29.9 / 3600 / 2.3,
                                                          abs=0.1)


def test_chayambuka2022_a_sodium_ion_board(pybamm: Any) -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True, initial_soc_pct=40.0,
                        plant="pybamm", parameter_set="chayambuka2022") as sim:
        # The firmware is set up for the scaled 1.8 Ah NVPF cell and its fitted model.
        assert sim.board["chemistry"] == "sodium_ion" and sim.board["capacity_mah"] == 1800
        assert sim.board["cell_model"]["name"].startswith("NVPF 26700 (PyBaMM Chayambuka2022")
        sim.advance(2.0)
        rest = sim.truth()
        sim.set_current(-1.8)  # 1C
        sim.advance(30.0)
        truth = sim.truth()
        assert sim.runtime is not None
        faults = sim.runtime.firmware.bms.faults  # type: ignore[attr-defined]
    # At rest: the set's OCV at 40 % (3.585 V); the fitted file has it 4 mV lower.
    ocv = cellmodel.load(repo_root() / "cells" / "nvpf-26700-chayambuka2022.json").ocv(40.0, 25.0)
    assert rest.cells_v == pytest.approx([ocv] * 4, abs=0.010)
    assert truth.output_closed and truth.current_a == -1.8 and faults == 0
    # Under 1C it drops by about 0.2 ohm x 1.8 A: a resistive cell (the set's).
    assert all(3.1 < v < 3.3 for v in truth.cells_v)
    assert truth.extra["pybamm_soc_pct"] == pytest.approx(40.0 - 100.0 * 30.0 / 3600.0, abs=0.1)


def test_initial_soc_outside_pybamm_range_is_a_clear_error(pybamm: Any) -> None:
    from cellguard.sim.pybamm_plant import PlantError

    with pytest.raises(PlantError, match="starts between"):
        SimulatedBoard(plant="pybamm", initial_soc_pct=-20.0)
    with pytest.raises(BoardFileError):
        SimulatedBoard(board={**load_board("sim-4s"), "plant": {"r0_mohm": -1}}, plant="pybamm")
