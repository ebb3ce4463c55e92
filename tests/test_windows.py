"""The windows the engine's own tests did not cover (issue 13, item 3): booting beyond a
limit, run-time severity changes in every direction, two protections at once, the exact
values a contactor fault reports, and the latch store's new-file and write-error paths.

These tests drive the real :class:`Measurement` from ADC codes (a HAL that returns the
codes a sim-4s board's converters would give for the cell voltages, temperatures and
current a test sets), so the whole path from code to decision is the one a board runs.
Limits and delays are the ones the chemistry and the protection table give: a test
reads them from the built ``Protection`` rather than repeating numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_protection import ALARM_BLOCKS, SPECS, Spec, isolated_limits

from cellguard.link.framing import FrameReader
from cellguard.paths import boards_dir
from cellguard.protocol.codec import build_payload, encode_frame, parse_payload
from cellguard.protocol.messages import BY_NAME
from cellguard_fw import codec
from cellguard_fw.app import Bms
from cellguard_fw.contactor import PRECHARGE
from cellguard_fw.frontend import Frontend
from cellguard_fw.hal import Hal
from cellguard_fw.latches import LatchStore
from cellguard_fw.protection import (
    Q_CELL_SPREAD_MV,
    Q_CHARGE_MA,
    Q_DISCHARGE_MA,
    Q_MAX_CELL_MV,
    Q_MAX_TEMP_DC,
    Q_MIN_CELL_MV,
    Q_MIN_TEMP_DC,
    Q_PACK_MISMATCH_MV,
    Q_STUCK_MS,
    Q_TEMP_RISE_DC,
    Q_TEMPS_RAILED,
)

DT_MS = 100


def load_board(name: str) -> dict[str, Any]:
    board: dict[str, Any] = json.loads((boards_dir() / f"{name}.json").read_text())
    return board


SIM_4S = load_board("sim-4s")


def index_of(bms: Bms, name: str) -> int:
    from cellguard_fw.protection import protection_table

    return [row[0] for row in protection_table()].index(name)


class CodeHal(Hal):
    """A board's sensors as ADC codes: a test sets mV, 0.1 degC and mA, the HAL hands
    ``Bms`` the codes the board's converters give for them (the inverse of its
    ``Frontend``). Records the output, precharge and direction switching; may model
    a DC link (precharge) and a contactor auxiliary contact."""

    def __init__(self, board: dict[str, Any], storage: str | None = None) -> None:
        self.fe = Frontend(board["frontend"])
        fe = board["frontend"]
        self.cell_max = (1 << fe["cell_adc"]["bits"]) - 1
        self.cell_fs = fe["cell_adc"]["full_scale_mv"]
        cur = fe["current_adc"]
        self.cur_max = (1 << cur["bits"]) - 1
        self.cur_zero = cur["zero_code"]
        self.cur_fs = cur["full_scale_ma"]
        self.temp_bits = fe["temp_adc"]["bits"]
        self.cells_mv = [3700] * board["cells"]
        self.temps_dc = [250] * board["temp_sensors"]
        self.current_ma = 0
        self.storage = storage
        self.outputs: list[bool] = []
        self.precharges: list[bool] = []
        self.directions: list[tuple[bool, bool]] = []
        self.link_mv = -1  # no DC-link sensor unless a test says
        self.temp_raw: list[int | None] = [None] * board["temp_sensors"]  # a code as is
        pack = fe.get("pack_adc")
        self.pack_max = (1 << pack["bits"]) - 1 if pack else 0
        self.pack_fs = pack["full_scale_mv"] if pack else 0
        self.pack_sensor_mv: int | None = None  # what the pack divider reads, if set
        self.feedback = -1  # no auxiliary contact unless a test says
        self._temp_codes: dict[int, int] = {}

    # -- the inverse converters ----------------------------------------------------
    def cell_code(self, mv: int) -> int:
        return max(0, min(self.cell_max, round(mv * self.cell_max / self.cell_fs)))

    def current_code(self, ma: int) -> int:
        lsb = self.cur_fs / (self.cur_max - self.cur_zero)
        return max(0, min(self.cur_max, self.cur_zero + round(ma / lsb)))

    def temp_code(self, dc: int) -> int:
        if dc not in self._temp_codes:
            ntc = self.fe.temp
            self._temp_codes[dc] = min(range(1, (1 << self.temp_bits) - 1),
                                       key=lambda c: abs(ntc.convert(c) - dc))
        return self._temp_codes[dc]

    # -- Hal -----------------------------------------------------------------------
    def sample(self, raw_cells: Any, raw_temps: Any) -> int:
        for i, mv in enumerate(self.cells_mv):
            raw_cells[i] = self.cell_code(mv)
        for i, dc in enumerate(self.temps_dc):
            raw = self.temp_raw[i]
            raw_temps[i] = self.temp_code(dc) if raw is None else raw
        return self.current_code(self.current_ma)

    def read_pack_code(self) -> int:
        if self.pack_sensor_mv is None or not self.pack_max:
            return -1
        return max(0, min(self.pack_max, round(self.pack_sensor_mv * self.pack_max
                                               / self.pack_fs)))

    def set_output(self, closed: bool) -> None:
        self.outputs.append(bool(closed))

    def set_precharge(self, on: bool) -> None:
        self.precharges.append(bool(on))

    def set_directions(self, charge: Any, discharge: Any) -> None:
        self.directions.append((bool(charge), bool(discharge)))

    def read_link_mv(self) -> int:
        return self.link_mv

    def output_feedback(self) -> int:
        return self.feedback

    def unique_id(self) -> bytes:
        return b"\x01\x02\x03\x04\x05\x06\x07\x08"

    def storage_dir(self) -> str | None:
        return self.storage


class Port:
    """The board's serial port: the host's requests in, every frame out kept."""

    def __init__(self) -> None:
        self.rx = bytearray()
        self.tx = bytearray()

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n

    def write(self, data: Any) -> int:
        self.tx += data
        return len(data)

    def frames(self) -> list[tuple[str, dict[str, Any]]]:
        names = {spec.msg_id: name for name, spec in BY_NAME.items()}
        return [(names[f.msg_type], parse_payload(f.msg_type, f.payload))
                for f in FrameReader().feed(bytes(self.tx))]

    def fault_events(self) -> list[dict[str, Any]]:
        return [p for name, p in self.frames() if name == "fault_event"]


class Board:
    """A Bms on a CodeHal and a Port, stepped in board time."""

    def __init__(self, board: dict[str, Any] = SIM_4S, storage: str | None = None,
                 limits: dict[str, Any] | None = None) -> None:
        if limits is not None:
            board = {**board, "limits": {k: list(v) for k, v in limits.items()}}
        self.hal = CodeHal(board, storage)
        self.port = Port()
        self.bms = Bms(board, self.hal, self.port)
        self.p = self.bms.protection

    def run(self, n: int) -> None:
        for _ in range(n):
            self.bms.poll()
            self.bms.step(DT_MS)

    def set_config(self, key: int, value: int) -> dict[str, Any]:
        before = len(self.port.frames())
        self.port.rx += encode_frame(BY_NAME["set_config"].msg_id, 7,
                                     build_payload("set_config",
                                                   {"key": key, "value": value, "pin": 0}))
        self.bms.poll()
        reply = self.port.frames()[before:]
        assert [name for name, _ in reply] == ["config_value"], reply
        assert reply[0][1]["value"] == value
        return reply[0][1]

    def events_of(self, kind: int) -> list[tuple[int, int]]:
        """(code, value) of each event of ``kind`` in the board's event log."""
        ev = self.bms.events
        return [(ev.codes[i % ev.capacity], ev.values[i % ev.capacity])
                for i in ev.page(0, ev.total) if ev.kinds[i % ev.capacity] == kind]

    def samples_to_trip(self, name: str) -> int:
        i = index_of(self.bms, name)
        return max(self.p.trip_delay_ms[i] // DT_MS + 1, self.p.debounce[i])

    def samples_to_release(self, name: str) -> int:
        i = index_of(self.bms, name)
        return max(self.p.release_delay_ms[i] // DT_MS + 1, self.p.debounce[i])


SEVERITY_NAMES = {codec.SEVERITY_WARNING: "warning", codec.SEVERITY_ALARM: "alarm",
                  codec.SEVERITY_FAULT: "fault"}


# -- booting beyond a limit ---------------------------------------------------------


@pytest.mark.parametrize("name, setting", [
    ("cell_overvoltage", {"cells_mv": [4300, 4300, 4300, 4300]}),
    ("cell_undervoltage", {"cells_mv": [2700, 2700, 2700, 2700]}),
    ("overtemperature", {"temps_dc": [650, 650]}),
    ("undertemperature", {"temps_dc": [-250, -250]}),
])
def test_booting_beyond_a_limit_keeps_the_output_open_through_the_trip_delay(
        name: str, setting: dict[str, Any]) -> None:
    """The output never closes on a board that boots with a cell past a fault limit:
    not on the first step, not while the trip delay runs, not after the trip, unless
    the fault stops one direction only (a cell-voltage limit on sim-4s's separate
    charge and discharge FETs): then it closes after the trip, for the way back only."""
    b = Board()
    for attr, value in setting.items():
        setattr(b.hal, attr, value)
    bit = b.p.bit[index_of(b.bms, name)]
    n = b.samples_to_trip(name)
    for _ in range(n - 1):
        b.run(1)
        assert not b.bms.output_closed and b.bms.state == codec.STATE_STANDBY
        assert b.p.pending_trips & bit and not b.bms.faults
    b.run(1)
    assert b.bms.faults & bit and b.bms.latched & bit
    b.run(20)
    assert b.bms.state == codec.STATE_FAULT
    cw, dw = b.bms.one_way
    if bit & (cw | dw):
        assert b.bms.output_closed and b.hal.outputs == [False, True]
        assert b.hal.directions[-1] == (not bit & cw, not bit & dw)
    else:
        assert not b.bms.output_closed
        assert b.hal.outputs == [False]  # the one set_output of the contactor's start


def test_a_contactor_board_booting_beyond_a_limit_never_precharges() -> None:
    """On the sim-4s-contactor board neither the precharge relay nor the main contactor
    closes while the trip delay of a condition present at boot runs, nor after."""
    b = Board(load_board("sim-4s-contactor"))
    b.hal.link_mv = 0
    b.hal.feedback = 0
    b.hal.cells_mv = [4300] * 4
    n = b.samples_to_trip("cell_overvoltage")
    for _ in range(n - 1):
        b.run(1)
        assert b.bms.state == codec.STATE_STANDBY and not b.bms.faults
    b.run(1 + 30)
    assert b.bms.faults == codec.FAULT_CELL_OVERVOLTAGE and b.bms.state == codec.STATE_FAULT
    assert True not in b.hal.precharges and True not in b.hal.outputs


# -- severity changes at run time ---------------------------------------------------

# cell_imbalance: a warning by default; 300 mV spread trips, 200 mV releases.
IMB = "cell_imbalance"
SEVERITIES = (codec.SEVERITY_WARNING, codec.SEVERITY_ALARM, codec.SEVERITY_FAULT)
CHANGES = [(a, b) for a in SEVERITIES for b in SEVERITIES if a != b]


def imbalanced_board(start: int) -> tuple[Board, int, int]:
    b = Board()
    i = index_of(b.bms, IMB)
    b.run(3)
    assert b.bms.output_closed
    if start != b.p.severity[i]:
        b.set_config(codec.CONFIG_SEVERITY_BASE + i, start)
    return b, i, b.p.bit[i]


def assert_fault_holds(b: Board, bit: int) -> None:
    """A latched fault's hold: the output open, or, for a cell-voltage limit on sim-4s's
    separate charge and discharge FETs, the output closed with only its way stopped."""
    cw, dw = b.bms.one_way
    if bit & (cw | dw):
        assert b.bms.output_closed
        assert b.hal.directions[-1] == (not bit & cw, not bit & dw)
    else:
        assert not b.bms.output_closed


def assert_acts_as(b: Board, bit: int, severity: int, was_fault: bool) -> None:
    """Active at ``severity``: a fault opens and latches; an alarm holds its directions
    (both, for cell_imbalance) with the output closed; a warning only reports. A latch
    taken while it was a fault stays until CLEAR_FAULTS, which now clears it."""
    bms = b.bms
    if severity == codec.SEVERITY_FAULT:
        assert bms.faults & bit and bms.latched & bit
        assert not bms.output_closed and bms.state == codec.STATE_FAULT
        assert bms.clear_faults() == 0  # active: it stays
        return
    assert not bms.faults & bit
    assert bool(bms.alarms & bit) == (severity == codec.SEVERITY_ALARM)
    assert bool(bms.warnings & bit) == (severity == codec.SEVERITY_WARNING)
    if severity == codec.SEVERITY_ALARM:
        assert b.hal.directions[-1] == (False, False)
    else:
        assert b.hal.directions[-1] == (True, True)
    if was_fault:
        assert bms.latched & bit and not bms.output_closed
        assert bms.clear_faults() == bit
        b.run(2)
    assert bms.output_closed and not bms.latched


@pytest.mark.parametrize("old, new", CHANGES,
                         ids=[f"{SEVERITY_NAMES[a]}-to-{SEVERITY_NAMES[b]}" for a, b in CHANGES])
def test_a_severity_change_while_active_is_reported_and_acts_at_once(old: int, new: int) -> None:
    b, i, bit = imbalanced_board(old)
    b.hal.cells_mv[0] = 4100  # 400 mV above the others: past the 300 mV spread limit
    b.run(b.samples_to_trip(IMB))
    assert b.p.active[i] and b.port.fault_events()[-1]["severity"] == SEVERITY_NAMES[old]
    events_before = len(b.port.fault_events())
    trips_before = len(b.events_of(codec.EVENT_TRIP))
    b.set_config(codec.CONFIG_SEVERITY_BASE + i, new)
    assert b.events_of(codec.EVENT_CONFIG)[-1] == (codec.CONFIG_SEVERITY_BASE + i, new)
    b.run(1)  # the next control step acts on it, and reports it
    events = b.port.fault_events()[events_before:]
    assert len(events) == 1, events
    ev = events[0]
    assert (ev["kind"], ev["severity"], ev["fault"]) == ("trip", SEVERITY_NAMES[new], bit)
    assert ev["value"] == b.p.value(i)  # the spread, as any trip of it reports
    held = bit if new == codec.SEVERITY_FAULT or old == codec.SEVERITY_FAULT else 0
    assert ev["faults"] == held
    log = b.events_of(codec.EVENT_TRIP)
    assert len(log) == trips_before + 1 and log[-1] == (bit, b.p.value(i))
    assert_acts_as(b, bit, new, was_fault=old == codec.SEVERITY_FAULT)


@pytest.mark.parametrize("old, new", CHANGES,
                         ids=[f"{SEVERITY_NAMES[a]}-to-{SEVERITY_NAMES[b]}" for a, b in CHANGES])
def test_a_severity_change_while_inactive_acts_on_the_next_trip(old: int, new: int) -> None:
    """Changed while the condition is away: logged as a configuration change, no
    fault event (nothing is active to report), and the next trip is at the new
    severity."""
    b, i, bit = imbalanced_board(old)
    events_before = len(b.port.fault_events())
    b.set_config(codec.CONFIG_SEVERITY_BASE + i, new)
    assert b.events_of(codec.EVENT_CONFIG)[-1] == (codec.CONFIG_SEVERITY_BASE + i, new)
    b.run(5)
    assert b.port.fault_events()[events_before:] == []
    assert b.bms.output_closed and not (b.bms.faults | b.bms.alarms | b.bms.warnings)
    b.hal.cells_mv[0] = 4100
    b.run(b.samples_to_trip(IMB))
    ev = b.port.fault_events()[-1]
    assert (ev["kind"], ev["severity"], ev["fault"]) == ("trip", SEVERITY_NAMES[new], bit)
    assert_acts_as(b, bit, new, was_fault=False)


def test_raising_a_pending_condition_to_fault_keeps_the_output_open() -> None:
    """A warning whose condition holds but whose delay still runs, raised to fault, is a
    pending trip at once: a board that opened for another reason does not close onto it."""
    b, i, bit = imbalanced_board(codec.SEVERITY_WARNING)
    b.hal.cells_mv[0] = 4100
    b.run(2)
    assert not b.p.pending_trips & bit  # a warning's pending run holds nothing
    b.set_config(codec.CONFIG_SEVERITY_BASE + i, codec.SEVERITY_FAULT)
    b.run(1)
    assert b.p.pending_trips & bit


# -- two protections at once --------------------------------------------------------


def test_two_alarms_holding_opposite_directions_release_in_either_order() -> None:
    """Under-temperature for charging (an alarm that stops charging) and cell
    under-voltage made an alarm (it stops discharging): both directions held, the
    output closed, nothing latched; each release gives back its own direction only,
    in either order."""
    for first in ("charge", "discharge"):
        b = Board()
        uv = index_of(b.bms, "cell_undervoltage")
        b.set_config(codec.CONFIG_SEVERITY_BASE + uv, codec.SEVERITY_ALARM)
        b.run(3)
        b.hal.temps_dc = [-50, -50]  # below 0 degC: no charging (alarm), above -20 degC
        b.hal.cells_mv = [2750] * 4  # below 2.8 V: no discharging (now an alarm)
        b.run(max(b.samples_to_trip("undertemperature_charge"),
                  b.samples_to_trip("cell_undervoltage")))
        assert b.bms.alarms == (codec.FAULT_UNDERTEMPERATURE_CHARGE
                                | codec.FAULT_CELL_UNDERVOLTAGE)
        assert b.hal.directions[-1] == (False, False) and b.bms.output_closed
        assert not b.bms.faults and not b.bms.latched
        if first == "charge":
            b.hal.temps_dc = [250, 250]
            b.run(b.samples_to_release("undertemperature_charge"))
            assert b.hal.directions[-1] == (True, False)
            b.hal.cells_mv = [3700] * 4
            b.run(b.samples_to_release("cell_undervoltage"))
        else:
            b.hal.cells_mv = [3700] * 4
            b.run(b.samples_to_release("cell_undervoltage"))
            assert b.hal.directions[-1] == (False, True)
            b.hal.temps_dc = [250, 250]
            b.run(b.samples_to_release("undertemperature_charge"))
        assert b.hal.directions[-1] == (True, True) and b.bms.alarms == 0
        assert b.bms.output_closed


def test_an_alarm_while_a_fault_holds_the_output_open() -> None:
    """A charge alarm arriving on an open output changes nothing a fault decided; the
    fault's release and the alarm's release can come in either order, and the output
    stays open until the latch is cleared, then closes with the alarm's direction held
    if the alarm still is."""
    for order in ("fault-first", "alarm-first"):
        b = Board()
        b.run(3)
        b.hal.current_ma = -16000  # past the 15 A sustained discharge limit
        b.run(b.samples_to_trip("overcurrent_discharge"))
        assert b.bms.faults == codec.FAULT_OVERCURRENT_DISCHARGE and not b.bms.output_closed
        b.hal.current_ma = 0
        b.hal.temps_dc = [500, 500]  # 50 degC: above the 45 degC charge limit (an alarm)
        b.run(b.samples_to_trip("overtemperature_charge"))
        assert b.bms.alarms == codec.FAULT_OVERTEMPERATURE_CHARGE
        assert b.hal.directions[-1] == (False, True)
        assert not b.bms.output_closed and b.bms.state == codec.STATE_FAULT
        if order == "fault-first":
            b.run(b.samples_to_release("overcurrent_discharge"))
            assert b.bms.faults == 0 and b.bms.alarms == codec.FAULT_OVERTEMPERATURE_CHARGE
            assert b.bms.clear_faults() == codec.FAULT_OVERCURRENT_DISCHARGE
            b.run(2)
            assert b.bms.output_closed and b.hal.directions[-1] == (False, True)
            b.hal.temps_dc = [250, 250]
            b.run(b.samples_to_release("overtemperature_charge"))
            assert b.hal.directions[-1] == (True, True)
        else:
            b.hal.temps_dc = [250, 250]
            b.run(b.samples_to_release("overtemperature_charge"))
            assert b.bms.alarms == 0 and b.hal.directions[-1] == (True, True)
            assert b.bms.faults == codec.FAULT_OVERCURRENT_DISCHARGE  # its release runs
            assert not b.bms.output_closed
            b.run(b.samples_to_release("overcurrent_discharge"))
            assert b.bms.clear_faults() == codec.FAULT_OVERCURRENT_DISCHARGE
            b.run(2)
        assert b.bms.output_closed and b.bms.state == codec.STATE_ACTIVE


def contactor_board(tmp_path: Path | None = None) -> Board:
    b = Board(load_board("sim-4s-contactor"), None if tmp_path is None else str(tmp_path))
    b.hal.link_mv = 0
    b.hal.feedback = 0
    return b


def test_a_fault_arriving_during_precharge_opens_at_once() -> None:
    """The sim-4s-contactor board precharges its DC link before it closes: a fault that
    trips meanwhile drops the precharge relay on that step, the main contactor never
    closes, and the latch holds it open after the condition is gone."""
    b = contactor_board()
    b.run(1)
    assert b.bms.contactor.state == PRECHARGE and b.hal.precharges[-1] is True
    b.hal.current_ma = -60000  # a short: trips on the first sample (no delay)
    b.run(1)
    assert b.bms.faults & codec.FAULT_SHORT_CIRCUIT
    assert b.hal.precharges[-1] is False and True not in b.hal.outputs
    assert b.bms.state == codec.STATE_FAULT
    b.hal.current_ma = 0
    b.hal.link_mv = b.bms.meas.pack_mv  # the link is charged: still no close
    b.run(b.samples_to_release("short_circuit") + 5)
    assert b.bms.faults == 0 and b.bms.latched == codec.FAULT_SHORT_CIRCUIT
    assert True not in b.hal.outputs and b.hal.precharges[-1] is False
    assert b.bms.clear_faults() == codec.FAULT_SHORT_CIRCUIT
    b.run(3)
    assert b.bms.output_closed and b.hal.outputs[-1] is True


# -- exact values -------------------------------------------------------------------


def test_a_welded_contactor_reports_how_long_it_disagreed() -> None:
    """The welded fault's value is the time the auxiliary contact said closed while the
    contactor was told open: exactly the board's feedback delay, on the trip and after."""
    b = contactor_board()
    delay = load_board("sim-4s-contactor")["precharge"]["feedback_delay_ms"]
    b.hal.link_mv = 14800
    b.run(3)
    assert b.bms.output_closed
    b.hal.feedback = 1
    b.hal.current_ma = -60000  # the output opens ...
    b.run(1)
    assert not b.bms.output_closed  # ... but the contact stays closed: welded
    b.hal.current_ma = 0
    b.run(delay // DT_MS + 5)
    welded = [e for e in b.port.fault_events() if e["fault"] == codec.FAULT_CONTACTOR_WELDED]
    assert len(welded) == 1 and welded[0]["kind"] == "trip"
    assert welded[0]["value"] == delay
    assert b.bms.contactor.fault_value == delay  # not how long it has been welded since
    assert (codec.FAULT_CONTACTOR_WELDED, delay) in b.events_of(codec.EVENT_TRIP)


def test_a_failed_precharge_reports_the_link_voltage_it_reached() -> None:
    """A DC link that stops short of the 95 % the contactor waits for (a load that draws
    more than the precharge resistor gives): the fault's value is the link voltage at
    the last attempt's time-out, exactly."""
    b = contactor_board()
    b.hal.link_mv = 9000
    cfg = load_board("sim-4s-contactor")["precharge"]
    attempts_ms = (cfg["retries"] + 1) * cfg["timeout_ms"] + cfg["retries"] * (
        cfg["retry_delay_ms"] + DT_MS)
    b.run(attempts_ms // DT_MS + 10)
    failed = [e for e in b.port.fault_events() if e["fault"] == codec.FAULT_PRECHARGE_FAILED]
    assert len(failed) == 1 and failed[0]["value"] == 9000
    assert b.bms.contactor.fault_value == 9000
    assert (codec.FAULT_PRECHARGE_FAILED, 9000) in b.events_of(codec.EVENT_TRIP)
    assert True not in b.hal.outputs


# -- the latch store ----------------------------------------------------------------


def test_a_complete_new_record_beside_an_older_file_wins(tmp_path: Path) -> None:
    """Power lost after ``.new`` was closed, before the rename: both files are valid;
    the newer record (higher sequence number) is the state, and the boot finishes
    the rename."""
    path = tmp_path / "latches.bin"
    store = LatchStore(str(path))
    store.save(0b01)
    old = path.read_bytes()
    store.save(0b10)
    new = path.read_bytes()
    path.write_bytes(old)
    (tmp_path / "latches.bin.new").write_bytes(new)
    assert LatchStore(str(path)).load() == 0b10
    assert path.read_bytes() == new and not (tmp_path / "latches.bin.new").exists()
    # the order of the two files is not what decides: the sequence number is
    path.write_bytes(new)
    (tmp_path / "latches.bin.new").write_bytes(old)
    assert LatchStore(str(path)).load() == 0b10
    # and the next save is newer than both
    again = LatchStore(str(path))
    again.load()
    again.save(0b100)
    assert LatchStore(str(path)).load() == 0b100


def test_a_write_error_is_counted_and_protection_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flash that refuses the write: the save counts the error and returns, the
    output is open all the same, and the latch lives on in RAM."""
    from cellguard_fw import latches

    b = Board(SIM_4S, str(tmp_path))
    b.run(3)
    real_open = open

    def full_flash(name: str, mode: str = "r", *args: Any) -> Any:
        if "w" in mode:
            raise OSError(28, "No space left on device")
        return real_open(name, mode, *args)

    monkeypatch.setattr(latches, "open", full_flash, raising=False)
    b.hal.current_ma = -60000
    b.run(1)
    monkeypatch.undo()
    assert b.bms.latch_store.write_errors == 1
    assert b.bms.latched == codec.FAULT_SHORT_CIRCUIT and not b.bms.output_closed
    assert LatchStore(str(tmp_path / "latches.bin")).load() == 0  # nothing reached flash
    assert [e["fault"] for e in b.port.fault_events()] == [codec.FAULT_SHORT_CIRCUIT]


def test_a_failed_rename_is_a_write_error_too(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from cellguard_fw import latches

    path = tmp_path / "latches.bin"
    store = LatchStore(str(path))
    store.save(1)

    def refuse(*args: Any) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(latches.os, "rename", refuse)
    store.save(3)
    assert store.write_errors == 1
    monkeypatch.undo()
    # the new record is complete in ``.new``: the next boot takes it
    assert LatchStore(str(path)).load() == 3


# -- every protection through Bms, from ADC codes -------------------------------------

def put_beyond(hal: CodeHal, spec: Spec) -> None:
    """Sensor readings (as codes, through the HAL) that put ``spec``'s quantity past its
    trip by a margin the converters resolve; the other quantities stay nominal."""
    q = spec.quantity
    if q in (Q_MAX_CELL_MV, Q_MIN_CELL_MV):
        hal.cells_mv[0] = spec.beyond(spec.trip, 30)
    elif q in (Q_MAX_TEMP_DC, Q_MIN_TEMP_DC):
        hal.temps_dc = [spec.beyond(spec.trip, 30)] * len(hal.temps_dc)
    elif q == Q_CHARGE_MA:
        hal.current_ma = spec.beyond(spec.trip, 300)
    elif q == Q_DISCHARGE_MA:
        hal.current_ma = -spec.beyond(spec.trip, 300)
    elif q == Q_CELL_SPREAD_MV:
        hal.cells_mv[0] = 3700 + spec.beyond(spec.trip, 30)
    elif q == Q_TEMPS_RAILED:
        hal.temp_raw[0] = 0  # a shorted NTC: the code at the bottom rail
    elif q == Q_PACK_MISMATCH_MV:
        hal.pack_sensor_mv = sum(hal.cells_mv) + spec.beyond(spec.trip, 100)
    else:
        raise AssertionError(f"no sensor reading puts {spec.name} past its limit")


def put_normal(hal: CodeHal, board: dict[str, Any]) -> None:
    hal.cells_mv = [3700] * board["cells"]
    hal.temps_dc = [250] * board["temp_sensors"]
    hal.temp_raw = [None] * board["temp_sensors"]
    hal.current_ma = 0
    hal.pack_sensor_mv = None


# A rise in temperature per minute needs a ramp (tests/test_protection.py feeds it
# through a forced measurement); a stuck reading is a time with current flowing (below).
CODE_SPECS = [s for s in SPECS if s.quantity not in (Q_TEMP_RISE_DC, Q_STUCK_MS)]


@pytest.mark.parametrize("spec", CODE_SPECS, ids=[s.name for s in CODE_SPECS])
def test_each_protection_from_adc_codes_trips_latches_across_a_reset_and_clears(
        spec: Spec, tmp_path: Path) -> None:
    limits = isolated_limits(spec)
    b = Board(SIM_4S, str(tmp_path), limits)
    b.run(3)
    assert b.bms.output_closed and b.bms.state == codec.STATE_ACTIVE
    put_beyond(b.hal, spec)
    b.run(spec.samples_to_trip() - 1)
    bms = b.bms
    assert bms.output_closed and not (bms.faults | bms.alarms | bms.warnings) & spec.bit
    b.run(1)
    ev = b.port.fault_events()[-1]
    assert (ev["kind"], ev["fault"], ev["severity"]) == ("trip", spec.bit,
                                                         SEVERITY_NAMES[spec.severity])
    assert ev["value"] == b.p.value(index_of(bms, spec.name))
    if spec.severity == codec.SEVERITY_WARNING:
        assert bms.warnings == spec.bit and bms.output_closed and not bms.latched
        return
    if spec.severity == codec.SEVERITY_ALARM:
        blocks = ALARM_BLOCKS[spec.name]
        assert bms.alarms == spec.bit and bms.output_closed and not bms.latched
        assert b.hal.directions[-1] == (not blocks & 1, not blocks & 2)
        put_normal(b.hal, SIM_4S)
        b.run(spec.samples_to_release())
        assert bms.alarms == 0 and b.hal.directions[-1] == (True, True)
        return
    assert bms.faults == spec.bit and bms.latched == spec.bit
    assert bms.state == codec.STATE_FAULT
    assert_fault_holds(b, spec.bit)
    put_normal(b.hal, SIM_4S)
    b.run(spec.samples_to_release() + 5)
    assert bms.faults == 0 and bms.latched == spec.bit
    assert_fault_holds(b, spec.bit)
    again = Board(SIM_4S, str(tmp_path), limits)  # a reset, the same flash
    assert again.bms.latched == spec.bit
    again.run(20)
    assert_fault_holds(again, spec.bit)
    if not again.bms.output_closed:
        assert again.hal.outputs == [False]
    assert again.bms.clear_faults() == spec.bit
    again.run(2)
    assert again.bms.output_closed and again.bms.state == codec.STATE_ACTIVE
    assert Board(SIM_4S, str(tmp_path), limits).bms.latched == 0


def test_a_stuck_reading_from_adc_codes_trips_on_the_first_sample_past_its_limit() -> None:
    """Codes that do not move while 1 A flows (above the C/10 the stuck clock needs):
    the stuck time grows a control period a sample and trips on the first sample
    where it is past the limit, at once (no trip delay)."""
    spec = next(s for s in SPECS if s.name == "sensor_stuck")
    b = Board(SIM_4S, None, isolated_limits(spec))
    b.run(3)
    b.hal.current_ma = -1000
    i = index_of(b.bms, spec.name)
    steps = 0
    while not b.bms.faults and steps < 2 * spec.trip // DT_MS:
        b.run(1)
        steps += 1
        stuck = b.bms.meas.stuck_ms
        assert bool(b.bms.faults) == (stuck > spec.trip), (steps, stuck)
    assert b.bms.faults == spec.bit and b.p.value(i) == spec.trip + DT_MS
    assert not b.bms.output_closed


def test_an_active_fault_cannot_be_cleared(tmp_path: Path) -> None:
    spec = next(s for s in SPECS if s.name == "cell_overvoltage")
    b = Board(SIM_4S, str(tmp_path), isolated_limits(spec))
    put_beyond(b.hal, spec)
    b.run(spec.samples_to_trip())
    assert b.bms.clear_faults() == 0 and b.bms.latched == spec.bit
    assert_fault_holds(b, spec.bit)
    assert b.hal.directions[-1] == (False, True)  # sim-4s: the charge FET stays open


def test_severity_and_debounce_from_the_board_file(tmp_path: Path) -> None:
    """A board file may make over-voltage an alarm (charge stopped, discharge allowed)
    and ask for 20 samples past the limit before it counts."""
    spec = next(s for s in SPECS if s.name == "cell_overvoltage")
    board = {**SIM_4S, "severity": {"cell_overvoltage": "alarm"},
             "debounce": {"cell_overvoltage": 20}}
    b = Board(board, str(tmp_path))
    b.run(2)
    put_beyond(b.hal, spec)
    b.run(19)  # past the 1000 ms delay, short of 20 samples
    assert b.bms.alarms == 0
    b.run(1)
    assert b.bms.alarms == spec.bit and b.bms.faults == 0 and b.bms.output_closed
    assert b.hal.directions[-1] == (False, True)


# -- the severity change under real MicroPython --------------------------------------

MP_REGRADE = """
import json
from cellguard_fw.app import Bms
from cellguard_fw import codec
from cellguard_fw.hal import Hal

class _Hal(Hal):
    def __init__(self, n, t):
        self.cells = [48500] * n  # ~3.70 V
        self.temps = [2000] * t  # ~25 degC
        self.current = 32768  # 0 A
    def sample(self, raw_cells, raw_temps):
        for i in range(len(self.cells)):
            raw_cells[i] = self.cells[i]
        for i in range(len(self.temps)):
            raw_temps[i] = self.temps[i]
        return self.current
    def set_output(self, closed):
        pass
    def unique_id(self):
        return b"\\x01"
    def storage_dir(self):
        return None

class _Port:
    def readinto(self, buf):
        return 0
    def write(self, data):
        return len(data)

board = json.loads(BOARD)
hal = _Hal(board["cells"], board["temp_sensors"])
bms = Bms(board, hal, _Port())
p = bms.protection
i = INDEX
for _ in range(3):
    bms.step(100)
hal.cells[0] = 53740  # ~4.10 V: 400 mV above the others
for _ in range(STEPS):
    bms.step(100)
ev = bms.events
def trips():
    return sum(1 for k in range(ev.total) if ev.kinds[k % ev.capacity] == codec.EVENT_TRIP)
before = trips()
print("warning", p.active[i], bms.warnings, bms.faults, bms.latched, bms.output_closed)
bms.config.set(codec.CONFIG_SEVERITY_BASE + i, 2)
bms.step(100)
print("fault", trips() - before, bms.warnings, bms.faults, bms.latched, bms.output_closed)
"""


def test_a_severity_raised_while_active_is_reported_under_micropython() -> None:
    from cellguard.sim.runtime import MicroPythonRuntime

    b = Board()
    i = index_of(b.bms, IMB)
    bit = b.p.bit[i]
    source = (MP_REGRADE.replace("BOARD", repr(json.dumps(SIM_4S)))
              .replace("INDEX", str(i)).replace("STEPS", str(b.samples_to_trip(IMB)))
              # the board's modules fold the protocol's numbers: the script gets literals
              .replace("codec.EVENT_TRIP", str(codec.EVENT_TRIP))
              .replace("codec.CONFIG_SEVERITY_BASE", str(codec.CONFIG_SEVERITY_BASE)))
    rt = MicroPythonRuntime()
    try:
        lines = rt.exec(source).strip().splitlines()
    finally:
        rt.close()
    assert lines == [f"warning 1 {bit} 0 0 True", f"fault 1 0 {bit} {bit} False"], lines
