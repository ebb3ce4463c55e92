"""The BQ76952 boards on the virtual dev board: the unchanged board code (main.py,
board_main.run(), ``hal_bq76952`` over ``machine.I2C``) measures a 16S pack through the
simulated chip on the board file's I2C pins, and both protection layers act on the
board's own clock (docs/bq76952.md, docs/virtual_board.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from board_harness import set_cell_socs

from cellguard.hil.client import HilClient
from cellguard.sim.virtual import VirtualBoard, install_firmware

BOARDS = ("pico-bq76952-16s", "esp32-bq76952-16s")
CELL_ACCURACY_V = 0.004  # the chip's 1 mV steps and its noise (0.8 mV sigma)


@pytest.fixture(params=BOARDS)
def vboard(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VirtualBoard]:
    install_firmware(tmp_path, str(request.param))
    with VirtualBoard(str(request.param), flash=tmp_path, seed=3) as vb:
        yield vb


@pytest.fixture
def client(vboard: VirtualBoard) -> Iterator[HilClient]:
    c = HilClient(vboard.port, min_speed=1.0)
    try:
        c.hello(timeout_s=10)
        yield c
    finally:
        c.close()


@pytest.mark.timeout(600)
def test_the_board_reads_16_cells_through_the_chip_and_both_layers_protect(
        vboard: VirtualBoard, client: HilClient) -> None:
    assert vboard.chip is not None
    chip = vboard.chip.chip
    set_cell_socs(vboard, [0.3 + 0.02 * k for k in range(16)])
    vboard.set_current(-20.0)
    t = client.wait_telemetry("the load's current", lambda t: t.current_a < -19.0, 10.0)
    truth = vboard.truth()
    assert len(t.cells_v) == 16
    for read, true in zip(t.cells_v, truth.cells_v, strict=True):
        assert read == pytest.approx(true, abs=CELL_ACCURACY_V)
    assert t.state == "active" and chip.chg_on and chip.dsg_on
    pins = vboard.board["pins"]["i2c"]
    assert vboard.i2c_bus((pins["scl"], pins["sda"])).transfers > 0 and not vboard.i2c_errors
    # The firmware's over-voltage first: it opens the chip's CHG FET through the chip
    # (back-to-back FETs: the DSG FET stays on, the way back).
    vboard.set_current(0.0)
    mark = client.mark()
    socs = [0.5] * 16
    # Cell 10 overcharged past the firmware's trip (3650 mV), not the chip's COV (the
    # firmware's trip + 100 mV, armed at boot): 3716 mV at rest. (At 1.05, 3860 mV,
    # the chip's COV tripped too, 2 s after the onset, which a loaded host saw.)
    socs[9] = 1.03
    set_cell_socs(vboard, socs)
    client.wait_event("trip", "cell_overvoltage", 5.0, since=mark)
    client.next_telemetry()
    assert not chip.chg_on and chip.dsg_on
    assert not [tr for tr in chip.trips if tr.name == "COV"]
    # A hang with a short: the chip alone opens, in microseconds; the firmware comes
    # back after its watchdog reset and reports the chip's trip.
    back = client.mark()
    set_cell_socs(vboard, [0.5] * 16)
    client.wait_event("release", "cell_overvoltage", 5.0, since=back)
    client.clear_faults()
    client.wait_telemetry("the output closed again", lambda t: t.state == "active", 10.0)
    mark = client.mark()
    vboard.hang(10.0)
    vboard.inject("short_circuit", ohms=0.001)
    vboard.wait_time(vboard.time_ms + 500)
    scd = next(tr for tr in chip.trips if tr.name == "SCD")
    assert scd.trip_ms - scd.onset_ms <= 0.075
    assert not chip.dsg_on
    vboard.clear("short_circuit")
    vboard.wait_reset("watchdog", timeout_s=30)
    client.hello(timeout_s=10)
    event = client.wait_event("trip", "afe_protection", 10.0, since=mark)
    assert event["value"] & 0x80  # SCD, in Safety Status A
    assert not chip.dsg_on
