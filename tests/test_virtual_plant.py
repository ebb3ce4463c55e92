"""The virtual dev board wired to its plant: the unchanged firmware (main.py,
board_main.run(), hal_adc_mux) measures and protects a simulated pack through the
board file's pins, held to the plant's truth (docs/virtual_board.md, "The plant").

Every board test runs real MicroPython (WebAssembly port under Node) from a flash
folder that holds the working tree's firmware, on the board's own clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from board_harness import set_cell_socs

from cellguard.boards import load_board
from cellguard.hil.client import HilClient
from cellguard.sim.adc import AdcModel
from cellguard.sim.plant import (
    OUT_BALANCE_SHIFT,
    OUT_CHARGE,
    OUT_CLOSED,
    OUT_DISCHARGE,
    OUT_PRECHARGE,
    Plant,
)
from cellguard.sim.sensors import SensorModel
from cellguard.sim.virtual import VirtualBoard, install_firmware
from cellguard.sim.wiring import PinWiring

BOARDS = ("pico-4s", "esp32-4s")
# What the firmware reads of a cell through the mux, the front end and the MCU's ADC
# (16 samples averaged): within 8 mV of the truth (12-bit LSB at the cell: 1.2 mV on
# the Pico, 1.6 mV on the ESP32; the RP2040's reference ripple and DNL, the ESP32's
# calibration rounding and noise come on top).
CELL_ACCURACY_V = 0.008
CURRENT_ACCURACY_A = 0.1
TEMP_ACCURACY_C = 1.0


@pytest.fixture(params=BOARDS)
def board_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def vboard(board_name: str, tmp_path: Path) -> Iterator[VirtualBoard]:
    install_firmware(tmp_path, board_name)
    with VirtualBoard(board_name, flash=tmp_path, seed=3) as vb:
        yield vb


@pytest.fixture
def client(vboard: VirtualBoard) -> Iterator[HilClient]:
    c = HilClient(vboard.port, min_speed=1.0)
    try:
        c.hello(timeout_s=10)
        c.time_sync()
        yield c
    finally:
        c.close()


# -- the board through its pins --------------------------------------------------------
def test_the_firmware_reads_the_plants_cells_current_and_temperatures(
        vboard: VirtualBoard, client: HilClient) -> None:
    # Four different cells: the mux select pins must pick each one in its place.
    set_cell_socs(vboard, [0.2, 0.45, 0.7, 0.95])
    vboard.set_current(-3.0)
    mark = client.mark()
    t = client.wait_telemetry("the plant's current", lambda t: t.current_a < -2.5, 5.0)
    truth = vboard.truth()
    assert len(set(round(v, 2) for v in truth.cells_v)) == 4  # the cells differ
    for read, true in zip(t.cells_v, truth.cells_v, strict=True):
        assert read == pytest.approx(true, abs=CELL_ACCURACY_V)
    assert t.current_a == pytest.approx(truth.current_a, abs=CURRENT_ACCURACY_A)
    for read, true in zip(t.temps_c, truth.temps_c, strict=True):
        assert read == pytest.approx(true, abs=TEMP_ACCURACY_C)
    assert t.state == "active" and truth.output_closed
    assert vboard.pins()[vboard.board["pins"]["output"]]["level"] == 1
    assert client.since(mark, "fault_event") == []


def test_an_over_voltage_opens_the_output_through_hal_adc_mux_and_the_real_pins(
        vboard: VirtualBoard, client: HilClient) -> None:
    client.wait_telemetry("the output closed", lambda t: t.state == "active", 5.0)
    assert vboard.truth().output_closed
    mark = client.mark()
    set_cell_socs(vboard, [0.5, 0.5, 1.08, 0.5])  # cell 3 overcharged, above 4.25 V
    assert vboard.truth().cells_v[2] > 4.3
    event = client.wait_event("trip", "cell_overvoltage", 3.0, since=mark)
    assert event["kind"] == "trip"
    # The plant's switch opened: driven by the output pin, low now.
    assert not vboard.truth().output_closed
    assert vboard.pins()[vboard.board["pins"]["output"]]["level"] == 0
    t = client.next_telemetry()
    assert t.state != "active" and t.cells_v[2] > 4.25


def test_a_starved_watchdog_resets_the_board_with_the_output_open_and_the_latches_kept(
        vboard: VirtualBoard, client: HilClient) -> None:
    output = vboard.board["pins"]["output"]
    client.wait_telemetry("the output closed", lambda t: t.state == "active", 5.0)
    # 1. A hang with the output closed: the pads hold it closed until the watchdog
    # bites; the reset returns the pad to its default and the plant's switch opens.
    hang_ms = vboard.time_ms
    vboard.hang(10.0)
    vboard.wait_reset("watchdog", timeout_s=20)
    vboard.wait_time(vboard.time_ms + 100)
    after = [(ms, truth.output_closed) for ms, truth in list(vboard.history) if ms >= hang_ms]
    opened_ms = next(ms for ms, closed in after if not closed)
    # Closed all through the hang, open once the watchdog bit (2 s without a feed).
    assert opened_ms - hang_ms >= vboard.board.get("watchdog_ms", 2000) - 100
    assert opened_ms - hang_ms < 10_000
    client.hello(timeout_s=10)
    client.wait_telemetry("the output closed again", lambda t: t.state == "active", 5.0)
    assert vboard.truth().output_closed
    # 2. A latched trip, the cell back to normal, then a hang: the board boots again
    # with the fault still latched and the output open.
    set_cell_socs(vboard, [0.5, 0.5, 1.08, 0.5])
    client.wait_event("trip", "cell_overvoltage", 3.0)
    set_cell_socs(vboard, [0.5, 0.5, 0.5, 0.5])
    assert "cell_overvoltage" in client.fault_state()["latched"]
    vboard.hang(10.0)
    vboard.wait_reset("watchdog", timeout_s=20)
    assert vboard.watchdog_resets == 2 and "reset" not in vboard.resets
    client.hello(timeout_s=10)
    assert "cell_overvoltage" in client.fault_state()["latched"]
    client.run(1.0)
    assert not vboard.truth().output_closed
    assert vboard.pins()[output]["level"] == 0


def test_a_host_pause_stops_the_boards_clock_and_never_starves_the_watchdog(
        vboard: VirtualBoard, client: HilClient) -> None:
    # A loaded CI machine can stop the board's process for seconds. That is not a
    # board event: the board's clock stops with it, as a halted chip's would.
    client.wait_telemetry("the output closed", lambda t: t.state == "active", 5.0)
    watchdog_ms = vboard.board.get("watchdog_ms", 2000)
    vboard.freeze(1.5 * watchdog_ms / 1000.0)
    client.hello(timeout_s=10)
    client.run(0.5)
    assert vboard.watchdog_resets == 0 and vboard.resets.count("reset") == 0
    assert vboard.truth().output_closed


# -- the wiring, without a board -------------------------------------------------------
def _wiring(board: dict[str, Any], seed: int) -> tuple[PinWiring, Plant]:
    sensors = SensorModel(board, seed=seed)
    return PinWiring(board, sensors, AdcModel(board["mcu"], seed=seed)), Plant(board, seed=seed)


@pytest.mark.parametrize("name", BOARDS)
def test_the_adc_codes_are_seeded(name: str) -> None:
    board = load_board(name)
    a, plant_a = _wiring(board, 1)
    b, plant_b = _wiring(board, 1)
    c, plant_c = _wiring(board, 2)
    lines_a = a.code_lines(plant_a)
    assert lines_a == b.code_lines(plant_b)  # the same seed: the same conversions
    assert lines_a != c.code_lines(plant_c)
    keys = [line.split()[1] for line in lines_a]
    pins = board["pins"]
    assert keys[:4] == [f"{pins['cell_adc']}:{k}" for k in range(4)]
    assert {str(pins["current_adc"]), *map(str, pins["temp_adcs"])} <= set(keys)
    # Every line goes through the control pipe in one piece.
    assert max(len(line) for line in lines_a) < 4096
    # An ESP32 reading has its calibrated read_uv beside it; an RP2040 has none.
    uv = lines_a[0].split()[3]
    assert (uv != "-") == (board["mcu"] == "esp32")


def test_the_output_precharge_enable_and_balance_pins_drive_the_plant() -> None:
    board = json.loads(json.dumps(load_board("pico-4s")))
    board["pins"].update(precharge=5, charge_enable=6, discharge_enable=7,
                         balance=[8, 9, 10, 11])
    wiring, _ = _wiring(board, 1)
    assert wiring.watch == [15, 5, 6, 7, 8, 9, 10, 11]
    assert wiring.outputs([1, 0, 1, 0, 1, 0, 0, 1]) == (
        OUT_CLOSED | OUT_CHARGE | (0b1001 << OUT_BALANCE_SHIFT))
    assert wiring.outputs([0, 1, 0, 1, 0, 0, 0, 0]) == OUT_PRECHARGE | OUT_DISCHARGE
    plain, _ = _wiring(load_board("pico-4s"), 1)
    assert plain.watch == [15]
    # One switch for both directions: both always allowed, the pin opens and closes it.
    assert plain.outputs([1]) == OUT_CLOSED | OUT_CHARGE | OUT_DISCHARGE
    assert plain.outputs([0]) == OUT_CHARGE | OUT_DISCHARGE


def test_an_open_sense_wire_reaches_the_mux_channels() -> None:
    board = load_board("pico-4s")
    wiring, plant = _wiring(board, 1)
    before = wiring.pin_voltages(plant)
    wiring.sensors.open_wires.add(1)  # the top of cell 2 floats down to cell 1's
    after = wiring.pin_voltages(plant)
    assert after["26:1"] == pytest.approx(0.0, abs=0.001)
    # Cell 3 reads cells 2 and 3 together: 7.5 V, beyond the 5 V front end, at the rail.
    assert before["26:1"] + before["26:2"] > 3.3
    assert after["26:2"] == pytest.approx(3.3, abs=0.001)
    assert after["26:0"] == pytest.approx(before["26:0"], abs=0.001)
