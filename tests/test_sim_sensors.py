"""The sensor model's board-file configuration: noise, current offset and gain error,
overridden by the simulator's arguments, seeded."""

from __future__ import annotations

import statistics
import struct
from typing import Any

import pytest

from cellguard.boards import BoardFileError, load_board
from cellguard.sim import SimulatedBoard
from cellguard.sim.plant import OUT_CLOSED, RESET_OUTPUTS
from cellguard.sim.sensors import SENSOR_DEFAULTS, SensorModel
from cellguard_fw.frontend import Frontend


def board_with(**sensors: Any) -> dict[str, Any]:
    board = load_board("sim-4s")
    board["sensors"] = sensors
    return board


def test_defaults_are_an_exact_sensor() -> None:
    s = SensorModel(load_board("sim-4s"))
    assert s.config == SENSOR_DEFAULTS
    assert (s.cell_noise_lsb, s.current_noise_lsb, s.temp_noise_c) == (0.0, 0.0, None)
    assert [s.cell_code(3.7) for _ in range(5)] == [round(3.7 / s.cell_fs_v * s.cell_max)] * 5
    assert s.sensed_current_a(7.5) == 7.5


def test_current_offset_and_gain_error_from_the_board_file() -> None:
    board = board_with(current_offset_a=0.25, current_gain_error=-0.02)
    s = SensorModel(board)
    fe = Frontend(board["frontend"])
    fs = board["frontend"]["current_adc"]
    lsb_ma = fs["full_scale_ma"] / ((1 << fs["bits"]) - 1 - fs["zero_code"])
    for amps in (-20.0, -1.0, 0.0, 4.0, 12.5):
        want = amps * 0.98 + 0.25
        assert s.sensed_current_a(amps) == pytest.approx(want, rel=1e-12)
        # What the firmware's front end makes of the code.
        read_ma = fe.current.convert(s.current_code(s.sensed_current_a(amps)))
        assert abs(read_ma - want * 1000.0) <= lsb_ma + 1


def test_injections_come_on_top_of_the_configured_errors_and_clear_back_to_them() -> None:
    sim = SimulatedBoard(board=board_with(current_offset_a=0.1, current_gain_error=0.01),
                         runtime="cpython", lockstep=True)
    s = sim.sensors
    sim.inject("current_offset", amps=2.0)
    sim.inject("current_gain", factor=2.0)
    assert s.sensed_current_a(5.0) == pytest.approx(5.0 * 1.01 * 2.0 + 0.1 + 2.0)
    sim.clear()
    assert s.sensed_current_a(5.0) == pytest.approx(5.0 * 1.01 + 0.1)


def _cell_code_spread(s: SensorModel, n: int = 4000) -> tuple[float, float]:
    exact = 3.7 / s.cell_fs_v * s.cell_max
    codes = [s.cell_code(3.7) - exact for _ in range(n)]
    return statistics.fmean(codes), statistics.pstdev(codes)


def test_cell_noise_has_the_configured_sigma_and_repeats_with_the_seed() -> None:
    board = board_with(cell_noise_lsb=3.0)
    mean, sd = _cell_code_spread(SensorModel(board, seed=11))
    assert abs(mean) < 0.3 and 2.7 < sd < 3.3
    a, b, c = SensorModel(board, seed=11), SensorModel(board, seed=11), SensorModel(board, seed=12)
    codes = [[m.cell_code(3.7) for _ in range(50)] for m in (a, b, c)]
    assert codes[0] == codes[1] != codes[2]
    # Only the cells: the current channel stays exact.
    assert {a.current_code(1.0) for _ in range(20)} == {SensorModel(load_board("sim-4s"))
                                                        .current_code(1.0)}


def test_noise_lsb_is_the_default_for_every_channel_and_channels_override_it() -> None:
    s = SensorModel(board_with(noise_lsb=2.0, current_noise_lsb=0.0))
    assert (s.cell_noise_lsb, s.current_noise_lsb) == (2.0, 0.0)
    assert len({s.current_code(3.0) for _ in range(50)}) == 1
    assert len({s.cell_code(3.0) for _ in range(50)}) > 3
    assert len({s.temp_code(30.0) for _ in range(50)}) > 3  # codes of the NTC channel too


def test_temperature_noise_is_in_degrees() -> None:
    board = board_with(temp_noise_c=0.5)
    s = SensorModel(board)
    fe = Frontend(board["frontend"])
    read = [fe.temp.convert(s.temp_code(35.0)) / 10.0 - 35.0 for _ in range(3000)]
    # 0.1 degC wire resolution and the ADC step add a little on top of the 0.5 degC.
    assert abs(statistics.fmean(read)) < 0.1 and 0.45 < statistics.pstdev(read) < 0.6


def test_simulator_arguments_override_the_board_file() -> None:
    board = board_with(noise_lsb=5.0, current_offset_a=1.0)
    sim = SimulatedBoard(board=board, runtime="cpython", noise_lsb=0.0,
                         sensors={"current_offset_a": -0.5})
    assert sim.sensors.noise_lsb == 0.0 and sim.sensors.cell_noise_lsb == 0.0
    assert sim.sensors.sensed_current_a(0.0) == -0.5
    # The codes the firmware is handed carry it: 2 A reads as 1.5 A.
    sim.plant.outputs = OUT_CLOSED | RESET_OUTPUTS
    sim.set_current(2.0)
    n = sim.sensors.n_cells
    raw = sim.sensors.codes(sim.plant)
    assert struct.unpack_from("<H", raw, 2 * n)[0] == sim.sensors.current_code(1.5)


@pytest.mark.parametrize(("sensors", "words"), [
    ({"cell_noise": 1}, "unknown sensors key cell_noise"),
    ({"noise_lsb": -1}, "sensors.noise_lsb must be 0 or more"),
    ({"temp_noise_c": "hot"}, "must be a finite number"),
    ({"current_gain_error": -1.0}, "above -1"),
])
def test_bad_sensor_keys_are_refused_by_name(sensors: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        SensorModel(board_with(**sensors))
    with pytest.raises(BoardFileError, match=words):
        SimulatedBoard(runtime="cpython", sensors=sensors)
