"""The plant and sensor models against physics and against the firmware's front end."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cellguard.boards import board_names, load_board
from cellguard.sim.plant import (
    OUT_CHARGE,
    OUT_CLOSED,
    OUT_DISCHARGE,
    OUT_PRECHARGE,
    RESET_OUTPUTS,
    Plant,
    ocv_v,
    sensor_cell,
)
from cellguard.sim.sensors import SensorModel
from cellguard_fw.chemistry import PROFILES
from cellguard_fw.frontend import Frontend


def test_charge_moves_soc_by_amp_hours() -> None:
    board = load_board("sim-4s")
    plant = Plant(board, seed=3, initial_soc_pct=20.0)
    plant.output_closed = True
    plant.requested_current_a = 1.5
    for _ in range(3600):
        plant.step(1.0)
    for cell in plant.cells:  # what flowed in, less what the cell leaked meanwhile
        assert cell.self_discharge_a > 0
        assert cell.soc == pytest.approx(
            0.20 + (1.5 - cell.self_discharge_a) / cell.capacity_ah, rel=1e-9)
    assert plant.charge_in_ah == pytest.approx(1.5)


def test_open_output_carries_no_current() -> None:
    plant = Plant(load_board("sim-4s"))
    plant.requested_current_a = -10.0
    plant.output_closed = False
    before = [c.soc for c in plant.cells]
    plant.step(100.0)
    assert plant.current_a == 0.0
    # Only the cells' own self-discharge moves them.
    assert [c.soc for c in plant.cells] == pytest.approx(
        [s - c.self_discharge_a * 100.0 / (3600.0 * c.capacity_ah)
         for s, c in zip(before, plant.cells, strict=True)], rel=1e-12)


def test_terminal_voltage_is_ocv_plus_ir_and_relaxes() -> None:
    board = load_board("sim-4s")
    plant = Plant(board, initial_soc_pct=50.0)
    table = PROFILES["nmc"]["ocv_mv"]
    plant.output_closed = True
    plant.requested_current_a = 3.0
    plant.step(0.001)
    c = plant.cells[0]
    assert plant.cells_v()[0] == pytest.approx(ocv_v(table, c.soc) + 3.0 * c.r0_ohm, abs=1e-4)
    plant.requested_current_a = 0.0
    for _ in range(3600):
        plant.step(1.0)
    assert plant.cells_v()[0] == pytest.approx(ocv_v(table, c.soc), abs=1e-6)


def test_cells_differ_but_repeat_with_the_seed() -> None:
    board = load_board("sim-4s")
    a, b, c = Plant(board, seed=1), Plant(board, seed=1), Plant(board, seed=2)
    caps = [x.capacity_ah for x in a.cells]
    assert len(set(caps)) == len(caps)
    assert caps == [x.capacity_ah for x in b.cells]
    assert caps != [x.capacity_ah for x in c.cells]


def test_heating_reaches_the_expected_steady_state() -> None:
    board = load_board("sim-4s")
    plant = Plant(board, ambient_c=20.0)
    plant.output_closed = True
    plant.requested_current_a = 5.0
    for _ in range(20000):
        plant.step(1.0)
    loss_w = sum(5.0**2 * (c.r0_ohm + c.r1_ohm + c.r2_ohm) for c in plant.cells)
    expected = 20.0 + loss_w * plant.thermal_resistance_k_per_w
    assert plant.temperature_c == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("chemistry", sorted(PROFILES))
def test_ocv_is_the_table_and_runs_away_beyond_it(chemistry: str) -> None:
    table = PROFILES[chemistry]["ocv_mv"]
    for i, mv in enumerate(table):
        assert ocv_v(table, i * 0.05) == pytest.approx(mv / 1000.0)
    assert ocv_v(table, 1.02) > table[-1] / 1000.0 + 0.01
    assert ocv_v(table, -0.02) < table[0] / 1000.0 - 0.01


ADC_BOARDS = [n for n in board_names() if "type" not in load_board(n)["frontend"]]
"""Boards whose MCU's ADC reads codes (a monitor chip's: test_bq76952_*.py)."""


@pytest.mark.parametrize("name", ADC_BOARDS)
@given(volts=st.floats(0.5, 4.9), amps=st.floats(-29.0, 29.0), celsius=st.floats(-20.0, 70.0))
def test_sensor_codes_read_back_through_the_firmware_front_end(
    name: str, volts: float, amps: float, celsius: float
) -> None:
    board = json.loads(json.dumps(load_board(name)))
    sensors = SensorModel(board)
    fe = Frontend(board["frontend"])
    assert abs(fe.cell.convert(sensors.cell_code(volts)) - volts * 1000) <= math.ceil(
        sensors.cell_lsb_v() * 1000) + 1
    cur_lsb_ma = board["frontend"]["current_adc"]["full_scale_ma"] / (
        (1 << board["frontend"]["current_adc"]["bits"]) - 1 - board["frontend"]["current_adc"][
            "zero_code"])
    assert abs(fe.current.convert(sensors.current_code(amps)) - amps * 1000) <= cur_lsb_ma + 1
    assert abs(fe.temp.convert(sensors.temp_code(celsius)) / 10 - celsius) <= 0.6


def test_output_flags_mirror_the_firmware() -> None:
    from cellguard_fw import hal_sim

    assert (OUT_CLOSED, OUT_PRECHARGE, OUT_CHARGE, OUT_DISCHARGE) == (
        hal_sim.OUT_CLOSED, hal_sim.OUT_PRECHARGE, hal_sim.OUT_CHARGE, hal_sim.OUT_DISCHARGE)
    hal = hal_sim.SimHal(1, 1, b"\x00")
    assert hal.outputs() == RESET_OUTPUTS  # what a board drives right after boot


def _flows(plant: Plant, outputs: int, amps: float) -> float:
    plant.outputs = outputs
    plant.requested_current_a = amps
    return plant.current_a


@pytest.mark.parametrize("name", ["sim-4s", "sim-4s-contactor"])
def test_directions_gate_the_current_only_on_a_dual_switch_board(name: str) -> None:
    board = load_board(name)
    dual = board.get("switches") == "dual"
    plant = Plant(board)
    for amps in (4.0, -4.0):
        direction = OUT_CHARGE if amps > 0 else OUT_DISCHARGE
        other = OUT_DISCHARGE if amps > 0 else OUT_CHARGE
        assert _flows(plant, OUT_CHARGE | OUT_DISCHARGE, amps) == 0.0  # switch open
        assert _flows(plant, OUT_CLOSED | direction, amps) == amps
        blocked = _flows(plant, OUT_CLOSED | other, amps)
        assert blocked == (0.0 if dual else amps)  # elsewhere the flags are only reported
        plant.step(1.0)
        truth = plant.truth()
        assert truth.output_closed
        assert (truth.charge_allowed, truth.discharge_allowed) == (
            bool(other & OUT_CHARGE), bool(other & OUT_DISCHARGE))


def test_welded_switch_passes_both_directions_whatever_is_driven() -> None:
    plant = Plant(load_board("sim-4s"))
    plant.welded = True
    assert plant.output_closed
    assert _flows(plant, 0, 2.0) == 2.0
    assert _flows(plant, OUT_CHARGE, -2.0) == -2.0


def _ideal_link_board() -> dict[str, Any]:
    """The contactor board with cells of no series resistance, so the pack
    voltage the precharge sees does not sag with the precharge current."""
    board = load_board("sim-4s-contactor")
    board["plant"] = {**board["plant"], "r0_mohm": 0.0, "r1_mohm": 1e-9}
    return board


def test_dc_link_precharges_exactly_through_the_resistor() -> None:
    plant = Plant(_ideal_link_board())
    vp = plant.pack_voltage_v()
    c_f = plant.dc_link_uf * 1e-6
    rp, rl = plant.precharge_ohm, plant.load_ohm
    v_inf = vp * rl / (rp + rl)
    tau = c_f * rp * rl / (rp + rl)
    plant.outputs = OUT_PRECHARGE | RESET_OUTPUTS
    drawn_c = 0.0
    t = 0.0
    for _ in range(300):
        plant.step(0.001)
        t += 0.001
        drawn_c -= plant.current_a * 0.001  # the precharge current comes from the pack
        assert plant.link_voltage_v() == pytest.approx(
            v_inf * (1.0 - math.exp(-t / tau)), rel=1e-6, abs=1e-9)
    assert plant.truth().precharge and not plant.truth().output_closed
    # Charge balance: what left the pack sits in the capacitor or went through the bleed.
    bled_c = v_inf * (t - tau * (1.0 - math.exp(-t / tau))) / rl
    assert drawn_c == pytest.approx(c_f * plant.link_voltage_v() + bled_c, rel=1e-6)
    # One long step lands where many short ones do: the integration is exact (up
    # to the pack's own sag as the precharge takes charge out of the cells).
    coarse = Plant(_ideal_link_board())
    coarse.outputs = OUT_PRECHARGE | RESET_OUTPUTS
    coarse.step(t)
    assert coarse.link_voltage_v() == pytest.approx(plant.link_voltage_v(), rel=1e-6)


def test_dc_link_follows_the_closed_switch_and_bleeds_when_open() -> None:
    plant = Plant(load_board("sim-4s-contactor"))
    plant.outputs = OUT_CLOSED | RESET_OUTPUTS
    plant.step(0.1)
    assert plant.truth().link_v == plant.truth().pack_v
    v0 = plant.link_voltage_v()
    plant.outputs = RESET_OUTPUTS
    plant.step(0.5)
    tau = plant.dc_link_uf * 1e-6 * plant.load_ohm
    assert plant.link_voltage_v() == pytest.approx(v0 * math.exp(-0.5 / tau), rel=1e-9)
    assert plant.current_a == 0.0


def test_shorted_dc_link_never_reaches_the_precharge_threshold() -> None:
    board = load_board("sim-4s-contactor")
    plant = Plant(board)
    plant.link_short_ohm = 1.0
    plant.outputs = OUT_PRECHARGE | RESET_OUTPUTS
    for _ in range(100):
        plant.step(0.1)
    done = board["precharge"]["done_pct"] / 100.0
    assert plant.link_voltage_v() < done * plant.pack_voltage_v()
    assert plant.current_a < 0.0  # the precharge resistor keeps feeding the short


def test_short_circuit_draws_the_pack_voltage_through_both_resistances() -> None:
    board = load_board("sim-4s")
    plant = Plant(board)
    plant.short_circuit_ohm = 0.05
    plant.requested_current_a = 1.0  # a short overrides what the load asks
    assert _flows(plant, RESET_OUTPUTS, 1.0) == 0.0  # open: nothing flows
    plant.outputs = OUT_CLOSED | RESET_OUTPUTS
    ocv = sum(ocv_v(plant.table, c.soc) for c in plant.cells)  # at rest: no RC voltage
    r_int = sum(c.r0_ohm for c in plant.cells)
    assert plant.current_a == pytest.approx(-ocv / (0.05 + r_int), rel=1e-12)
    # The terminal voltage is what the short's resistance drops.
    assert plant.pack_voltage_v() == pytest.approx(-plant.current_a * 0.05, rel=1e-9)
    if board.get("switches") == "dual":  # the discharge FET stops a short
        assert _flows(plant, OUT_CLOSED | OUT_CHARGE, 1.0) == 1.0


def test_internal_short_drains_its_cell_only_with_the_output_open() -> None:
    plant = Plant(load_board("sim-4s"), initial_soc_pct=60.0)
    plant.internal_short_ohm[2] = 5.0
    before = [c.soc for c in plant.cells]
    ocv = ocv_v(plant.table, plant.cells[2].soc)
    for _ in range(60):
        plant.step(1.0)
    assert plant.current_a == 0.0
    drained = (ocv / 5.0) * 60.0 / (3600.0 * plant.cells[2].capacity_ah)
    assert before[2] - plant.cells[2].soc == pytest.approx(drained, rel=1e-3)
    assert [c.soc for i, c in enumerate(plant.cells) if i != 2] == pytest.approx([
        s - plant.cells[i].self_discharge_a * 60.0 / (3600.0 * plant.cells[i].capacity_ah)
        for i, s in enumerate(before) if i != 2], rel=1e-12)  # only their self-discharge
    assert plant.temperature_c > plant.ambient_c  # the leak heats the pack


@pytest.mark.parametrize("name", board_names())
def test_temperature_sensors_sit_on_cells_and_overrides_show(name: str) -> None:
    board = load_board(name)
    plant = Plant(board, ambient_c=21.0)
    n, m = board["cells"], board["temp_sensors"]
    assert plant.sensors_temperature_c() == [21.0] * m
    for j in range(m):
        cell = sensor_cell(j, n, m)
        assert cell == j * n // m
        plant.cell_temperature_override_c[cell] = 40.0 + j
        assert plant.sensors_temperature_c()[j] == 40.0 + j
        assert plant.truth().cells_temperature_c[cell] == 40.0 + j
    assert plant.temperature_c == 21.0  # the lumped node is not the override
