"""The plant and sensor models against physics and against the firmware's front end."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cellguard.boards import board_names, load_board
from cellguard.sim.plant import Plant, ocv_v
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
    for cell in plant.cells:
        assert cell.soc == pytest.approx(0.20 + 1.5 / cell.capacity_ah, rel=1e-9)
    assert plant.charge_in_ah == pytest.approx(1.5)


def test_open_output_carries_no_current() -> None:
    plant = Plant(load_board("sim-4s"))
    plant.requested_current_a = -10.0
    plant.output_closed = False
    before = [c.soc for c in plant.cells]
    plant.step(100.0)
    assert plant.current_a == 0.0
    assert [c.soc for c in plant.cells] == before


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
    loss_w = sum(5.0**2 * (c.r0_ohm + c.r1_ohm) for c in plant.cells)
    expected = 20.0 + loss_w * plant.thermal_resistance_k_per_w
    assert plant.temperature_c == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("chemistry", sorted(PROFILES))
def test_ocv_is_the_table_and_runs_away_beyond_it(chemistry: str) -> None:
    table = PROFILES[chemistry]["ocv_mv"]
    for i, mv in enumerate(table):
        assert ocv_v(table, i * 0.05) == pytest.approx(mv / 1000.0)
    assert ocv_v(table, 1.02) > table[-1] / 1000.0 + 0.01
    assert ocv_v(table, -0.02) < table[0] / 1000.0 - 0.01


@pytest.mark.parametrize("name", board_names())
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
