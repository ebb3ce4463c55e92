"""The contactor state machine against a simulated DC link and auxiliary contact."""

from __future__ import annotations

import math
from typing import Any

from cellguard_fw import codec
from cellguard_fw.contactor import CLOSED, OPEN, PRECHARGE, WAIT_RETRY, Contactor
from cellguard_fw.hal import Hal

PACK_MV = 14800
DT_MS = 100


class LinkHal(Hal):
    """A load's DC link: a capacitor charged through the precharge resistor
    (time constant ``tau_ms``), tied to the pack when the main contactor is closed,
    bled by the load when both are open. Records every switching."""

    def __init__(self, tau_ms: float = 150.0, sensor: bool = True, feedback: bool = False,
                 welded: bool = False) -> None:
        self.tau_ms = tau_ms
        self.link_mv = 0.0
        self.main = False
        self.precharge = False
        self.sensor = sensor
        self.feedback = feedback
        self.welded = welded
        self.log: list[tuple[str, bool]] = []

    def set_output(self, closed: bool) -> None:
        self.main = closed
        self.log.append(("main", closed))

    def set_precharge(self, on: bool) -> None:
        self.precharge = on
        self.log.append(("precharge", on))

    def read_link_mv(self) -> int:
        return round(self.link_mv) if self.sensor else -1

    def output_feedback(self) -> int:
        if not self.feedback:
            return -1
        return 1 if (self.main or self.welded) else 0

    def advance(self, dt_ms: int) -> None:
        if self.main or self.welded:
            self.link_mv = PACK_MV
        elif self.precharge and math.isfinite(self.tau_ms):
            self.link_mv += (PACK_MV - self.link_mv) * (1 - math.exp(-dt_ms / self.tau_ms))
        else:
            self.link_mv *= math.exp(-dt_ms / 2000)


def run(c: Contactor, hal: LinkHal, steps: int, want: bool = True) -> list[int]:
    states = []
    for _ in range(steps):
        hal.advance(DT_MS)
        c.step(DT_MS, want, PACK_MV)
        states.append(c.state)
    return states


PRECHARGE_CFG: dict[str, Any] = {"timeout_ms": 1000, "retries": 2, "retry_delay_ms": 500}


def test_fet_board_closes_at_once_and_opens_on_request() -> None:
    hal = LinkHal()
    c = Contactor(hal, None)
    assert run(c, hal, 1) == [CLOSED] and hal.main
    assert run(c, hal, 1, want=False) == [OPEN] and not hal.main


def test_precharge_then_main_then_precharge_off() -> None:
    hal = LinkHal(tau_ms=150)
    c = Contactor(hal, PRECHARGE_CFG)
    states = run(c, hal, 10)
    assert states[0] == PRECHARGE and states[-1] == CLOSED
    switching = [e for e in hal.log if e[1]]  # the "on" edges, in order
    assert switching == [("precharge", True), ("main", True)]
    assert hal.log.index(("main", True)) < hal.log.index(("precharge", False), 2)
    # the main contactor closed only once the link had reached 95 % of the pack
    closed_at = states.index(CLOSED)
    assert closed_at >= 4  # 1 - e^(-t/150 ms) >= 0.95 needs t >= 450 ms
    assert not hal.precharge


def test_failed_precharge_is_retried_then_faults() -> None:
    hal = LinkHal(tau_ms=math.inf)  # broken precharge resistor: the link never rises
    c = Contactor(hal, PRECHARGE_CFG)
    states = run(c, hal, 60)
    assert c.faults == codec.FAULT_PRECHARGE_FAILED
    assert states.count(WAIT_RETRY) == 2 * 5  # two retries of 500 ms
    assert [e for e in hal.log if e == ("precharge", True)] == [("precharge", True)] * 3
    assert not hal.main and not hal.precharge and c.state == OPEN
    assert c.clear() == codec.FAULT_PRECHARGE_FAILED
    assert run(c, hal, 1) == [PRECHARGE]  # a clear allows a new attempt


def test_without_a_link_sensor_precharge_is_timed() -> None:
    hal = LinkHal(sensor=False)
    c = Contactor(hal, {"time_ms": 300})
    states = run(c, hal, 5)
    assert states[:4] == [PRECHARGE, PRECHARGE, PRECHARGE, CLOSED]  # 300 ms of precharge


def test_welded_contactor_is_detected() -> None:
    hal = LinkHal(feedback=True)
    c = Contactor(hal, None)
    run(c, hal, 3)
    hal.welded = True
    run(c, hal, 1, want=False)
    assert c.faults == 0  # one sample of mismatch is not yet a fault
    run(c, hal, 2, want=False)
    assert c.faults == codec.FAULT_CONTACTOR_WELDED
    assert c.fault_value == 200  # the feedback delay: how long it disagreed when found


def test_feedback_agreeing_is_no_fault() -> None:
    hal = LinkHal(feedback=True)
    c = Contactor(hal, PRECHARGE_CFG)
    run(c, hal, 20)
    run(c, hal, 20, want=False)
    run(c, hal, 20)
    assert c.faults == 0 and c.state == CLOSED


def test_bms_latches_a_failed_precharge(tmp_path: Any) -> None:
    import json

    from cellguard.paths import boards_dir
    from cellguard_fw.app import Bms
    from cellguard_fw.codec import STATE_FAULT, STATE_PRECHARGE

    board = json.loads((boards_dir() / "sim-4s.json").read_text())
    board["precharge"] = PRECHARGE_CFG

    class BoardHal(LinkHal):
        def sample(self, raw_cells: Any, raw_temps: Any) -> int:
            for i in range(len(raw_cells)):
                raw_cells[i] = 48500  # ~3.7 V
            for i in range(len(raw_temps)):
                raw_temps[i] = 2048  # 25 degC
            return 32768  # 0 A

        def unique_id(self) -> bytes:
            return b"\x01"

        def storage_dir(self) -> str:
            return str(tmp_path)

    class Port:
        def readinto(self, buf: Any) -> int:
            return 0

        def write(self, data: Any) -> int:
            return len(data)

    hal = BoardHal(tau_ms=math.inf)
    bms = Bms(board, hal, Port())
    states = []
    for _ in range(60):
        hal.advance(DT_MS)
        bms.step(DT_MS)
        states.append(bms.state)
    assert STATE_PRECHARGE in states and states[-1] == STATE_FAULT
    assert bms.latched == codec.FAULT_PRECHARGE_FAILED and not hal.main
    again = Bms(board, BoardHal(), Port())  # a reset keeps the latch
    assert again.latched == codec.FAULT_PRECHARGE_FAILED
