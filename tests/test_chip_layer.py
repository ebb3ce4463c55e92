"""The application's side of a monitor chip (the second protection layer): a trip
the chip reports is latched and reported like the firmware's own, naming the chip;
a sensor bus that stops answering opens the output; the chip is armed from the
firmware's limits at boot. The chip itself and its driver: test_bq76952_*.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cellguard.boards import load_board
from cellguard.link.framing import FrameReader
from cellguard.protocol import codec
from cellguard.sim.plant import Plant
from cellguard.sim.sensors import SensorModel
from cellguard_fw import codec as fw
from cellguard_fw.hal_sim import SimBoard

COV = 0x08  # Safety Status A: cell over-voltage
SCD = 0x80  # Safety Status A: short circuit in discharge


class Bench:
    """The firmware's SimBoard for sim-4s with the chip's answers set by the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.board = load_board("sim-4s")
        self.plant = Plant(self.board)
        self.sensors = SensorModel(self.board)
        self.sim = SimBoard(json.dumps(self.board), storage=str(tmp_path))
        self.chip = 0
        self.dead = False
        self.armed: list[list[int]] = []
        self._wire()
        self.reader = FrameReader()

    def _wire(self) -> None:
        hal = self.sim.hal
        hal.chip_trips = lambda: -1 if self.dead else self.chip

    def reboot(self) -> None:
        hal = self.sim.hal
        hal.arm = lambda trip: self.armed.append(list(trip))
        self.sim.boot()

    def run(self, periods: int = 1, rx: bytes = b"") -> list[dict[str, Any]]:
        events = []
        for i in range(periods):
            tx, _ = self.sim.step(100, self.sensors.codes(self.plant), rx if i == 0 else b"")
            for frame in self.reader.feed(tx):
                if frame.msg_type == fw.MSG_FAULT_EVENT:
                    events.append(codec.parse_payload(frame.msg_type, frame.payload))
        return events

    def clear(self) -> list[dict[str, Any]]:
        request = codec.encode_frame(fw.MSG_CLEAR_FAULTS, 9, b"")
        return self.run(1, request)

    @property
    def closed(self) -> bool:
        return bool(self.sim.hal.output_closed)


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    b = Bench(tmp_path)
    b.run(30)
    assert b.closed, "a healthy pack closes its output"
    return b


def _bits(event: dict[str, Any]) -> int:
    return int(event["fault"])


def test_a_chip_trip_opens_the_output_latches_and_names_the_chip(bench: Bench) -> None:
    bench.chip = COV
    events = bench.run(1)
    assert not bench.closed
    trip = [e for e in events if _bits(e) & fw.FAULT_AFE_PROTECTION]
    assert len(trip) == 1 and trip[0]["value"] == COV and trip[0]["kind"] == "trip"
    assert bench.sim.bms.latched & fw.FAULT_AFE_PROTECTION
    bench.chip = 0  # the chip recovered by itself: the firmware keeps the output open
    bench.run(20)
    assert not bench.closed


def test_a_chip_trip_clears_only_once_the_chip_has_recovered(bench: Bench) -> None:
    bench.chip = SCD
    bench.run(2)
    bench.clear()
    bench.run(10)
    assert not bench.closed and bench.sim.bms.latched & fw.FAULT_AFE_PROTECTION
    bench.chip = 0
    bench.run(1)
    events = bench.clear()
    assert any(e["kind"] == "clear" and _bits(e) & fw.FAULT_AFE_PROTECTION for e in events)
    bench.run(30)
    assert bench.closed


def test_a_second_chip_trip_while_one_holds_is_reported(bench: Bench) -> None:
    bench.chip = COV
    bench.run(1)
    bench.chip = COV | (0x10 << 8)  # and over-temperature in charge (Safety Status B)
    events = bench.run(1)
    assert [e["value"] for e in events if _bits(e) & fw.FAULT_AFE_PROTECTION] == [COV | 0x1000]


def test_a_dead_sensor_bus_opens_the_output_and_latches(bench: Bench) -> None:
    bench.dead = True
    events = bench.run(1)
    assert not bench.closed
    assert any(_bits(e) & fw.FAULT_SENSOR_BUS and e["kind"] == "trip" for e in events)
    bench.dead = False
    bench.run(20)
    assert not bench.closed  # latched until cleared
    bench.clear()
    bench.run(30)
    assert bench.closed


def test_the_chip_is_armed_with_the_firmwares_trip_limits_at_boot(bench: Bench) -> None:
    bench.reboot()
    assert len(bench.armed) == 1
    assert bench.armed[0] == list(bench.sim.bms.protection.trip)
    assert bench.armed[0][0] == bench.sim.bms.config.get(1)  # cell OV trip, key 1


def test_the_host_names_the_chips_protections_in_an_event() -> None:
    from cellguard.link.client import chip_trip_names, format_fault_value

    assert format_fault_value(fw.FAULT_AFE_PROTECTION, SCD) == "chip: SCD"
    assert chip_trip_names(COV | 0x10 << 8 | 0x80 << 16) == ["COV", "OTC", "OCD3"]
    assert format_fault_value(fw.FAULT_AFE_PROTECTION, 0) == "chip: none"
    assert format_fault_value(fw.FAULT_CELL_OVERVOLTAGE, 4300) == "4.3 V"  # others as ever


def test_the_chips_own_trips_count_as_harmful_events_once_each(bench: Bench) -> None:
    """The lifetime record counts a chip trip by its kind (COV: overcharge, OTC:
    over-temperature, SCD: short circuit), once per edge however long it holds, with
    the measurement of the step it came in as its value."""
    life = bench.sim.bms.lifetime
    m = bench.sim.bms.meas
    base = list(life.w[23:28])
    bench.chip = COV
    bench.run(1)
    highest_mv = m.max_cell_mv  # the step the trip came in
    bench.run(4)
    bench.chip = COV | (0x10 << 8)
    bench.run(1)
    hottest_dc = m.max_temp_dc
    bench.run(4)
    bench.chip = 0
    bench.run(3)
    bench.chip = SCD
    bench.run(1)
    current_ma = abs(m.current_ma)
    bench.run(1)
    counts = [n - b for n, b in zip(life.w[23:28], base, strict=True)]
    assert counts == [0, 1, 1, 0, 1]  # deep, overcharge, overtemperature, overcurrent, short
    total = life.w[51]
    ring = [list(life.w[52 + 4 * (i % 4):56 + 4 * (i % 4)]) for i in range(total - 3, total)]
    assert [r[0] for r in ring] == [2, 3, 5]
    assert [r[3] for r in ring] == [highest_mv, max(hottest_dc, 0), current_ma]
    assert 3000 < highest_mv < 4300 and 100 < hottest_dc < 500
