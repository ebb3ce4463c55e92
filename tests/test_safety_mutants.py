"""Tests written to kill mutants of the safety path that survived the other tests
(``make mutation``, docs/mutation.md). Each asserts behaviour a wrong default or a
wrong operator would change."""

from __future__ import annotations

import binascii
import json
import os
import struct
from array import array
from pathlib import Path

import pytest
from test_contactor import LinkHal, run
from test_frontend import BOARDS
from test_protection import (
    CUR_ZERO,
    DT_MS,
    LIMITS,
    SIM_BOARD,
    SPEC_IDS,
    SPECS,
    FakeHal,
    Meas,
    NullPort,
    Rig,
    Spec,
    cell_code,
    isolated_limits,
    samples_to,
)

from cellguard.paths import boards_dir
from cellguard.protocol.codec import encode_frame
from cellguard.sim.flash import FlashModel
from cellguard_fw import codec, latches
from cellguard_fw.app import Bms
from cellguard_fw.contactor import OPEN, PRECHARGE, WAIT_RETRY, Contactor
from cellguard_fw.frontend import LinearChannel, NtcChannel
from cellguard_fw.latches import LatchStore, WordStore
from cellguard_fw.measurement import Measurement
from cellguard_fw.protection import (
    ABOVE,
    ALARM,
    BELOW,
    FAULT,
    MAX_DEBOUNCE,
    WARNING,
    Protection,
    check_thresholds,
)

# -- contactor ---------------------------------------------------------------


def test_opening_gives_the_precharge_its_full_attempts_again() -> None:
    """Told to open, the contactor forgets its failed attempts: the next close
    request gets all ``retries + 1`` attempts before the precharge fault latches."""
    hal = LinkHal(tau_ms=float("inf"))  # the link never charges
    cfg = {"timeout_ms": 300, "retries": 2, "retry_delay_ms": 200}
    c = Contactor(hal, cfg)
    # an attempt: a step to start it and 3 to time out; 2 steps of waiting between.
    # Two attempts time out: no fault yet
    states = run(c, hal, 4 + 2 + 4)
    assert c.attempts == 2 and not c.faults and states[-1] == WAIT_RETRY
    run(c, hal, 1, want=False)
    assert c.state == OPEN and c.attempts == 0
    # again: two more timed-out attempts do not latch the fault ...
    run(c, hal, 4 + 2 + 4)
    assert not c.faults and c.attempts == 2
    # ... the third does, with the link voltage it had reached
    run(c, hal, 2 + 3)
    assert not c.faults and c.state == PRECHARGE
    run(c, hal, 1)
    assert c.faults == codec.FAULT_PRECHARGE_FAILED and c.state == OPEN
    assert c.fault_value == 0


class PinHal(LinkHal):
    """A HAL whose link voltage and auxiliary contact the test sets directly
    (``link``: -1 without a link sensor; ``aux``: -1 without feedback)."""

    def __init__(self, link: int = -1, aux: int = -1) -> None:
        super().__init__()
        self.link = link
        self.aux = aux

    def read_link_mv(self) -> int:
        return self.link

    def output_feedback(self) -> int:
        return self.aux


def steps_until(c: Contactor, dt_ms: int, want: bool, pack_mv: int, done, limit: int) -> int:
    """Step until ``done(c)``; return how many steps it took."""
    for n in range(1, limit + 1):
        c.step(dt_ms, want, pack_mv)
        if done(c):
            return n
    raise AssertionError(f"not done after {limit} steps")


def test_precharge_defaults_are_the_documented_ones() -> None:
    """A ``precharge`` object with no keys: 0.5 s without a link sensor, 2 s
    timeout, 2 retries 5 s apart (docs/protection.md), all to the millisecond."""
    # without a link sensor: closes once it has precharged for 500 ms
    c = Contactor(PinHal(), {})
    assert steps_until(c, 1, True, 14800, lambda c: c.closed, 1000) == 1 + 500
    # a link that never charges: the first attempt times out after 2000 ms
    hal = PinHal(link=0)
    c = Contactor(hal, {})
    assert steps_until(c, 1, True, 14800, lambda c: c.state == WAIT_RETRY, 5000) == 1 + 2000
    # ... the next starts 5000 ms later
    assert steps_until(c, 1, True, 14800, lambda c: c.state == PRECHARGE, 9000) == 5000 + 1
    # ... and after the third attempt (2 retries) the fault latches
    n = steps_until(c, 100, True, 14800, lambda c: c.faults != 0, 1000)
    assert n == 20 + 50 + 1 + 20 and c.attempts == 3
    assert c.faults == codec.FAULT_PRECHARGE_FAILED and c.fault_value == 0 and c.state == OPEN
    assert not hal.precharge and not hal.main


def test_precharge_done_at_exactly_done_pct_of_the_pack() -> None:
    """The link at ``pack * done_pct // 100`` mV is enough, one mV less is not;
    default 95 %, and the board's ``done_pct`` is read."""
    pack = 14801  # 95 % of it is not a whole number of mV
    for cfg, pct in (({}, 95), ({"done_pct": 50}, 50)):
        threshold = pack * pct // 100
        hal = PinHal(link=threshold - 1)
        c = Contactor(hal, cfg)
        for _ in range(5):
            c.step(100, True, pack)
        assert c.state == PRECHARGE and hal.precharge and not hal.main
        hal.link = threshold
        c.step(100, True, pack)
        assert c.closed and hal.main and not hal.precharge


def test_precharge_without_a_link_sensor_runs_time_ms_not_a_ms_less() -> None:
    c = Contactor(PinHal(), {"time_ms": 500})
    c.step(499, True, 14800)  # starts the precharge
    c.step(499, True, 14800)
    assert c.state == PRECHARGE
    c.step(1, True, 14800)
    assert c.closed


def test_retry_waits_retry_delay_ms_to_the_millisecond() -> None:
    c = Contactor(PinHal(link=0), {"timeout_ms": 100, "retry_delay_ms": 300})
    assert steps_until(c, 1, True, 14800, lambda c: c.state == WAIT_RETRY, 1000) == 101
    assert steps_until(c, 1, True, 14800, lambda c: c.state != WAIT_RETRY, 1000) == 300


def test_opening_during_precharge_releases_the_precharge_relay() -> None:
    hal = PinHal(link=0)
    c = Contactor(hal, {})
    c.step(100, True, 14800)
    assert hal.precharge and c.state == PRECHARGE
    c.step(100, False, 14800)
    assert c.state == OPEN and not hal.precharge and not hal.main


def test_clear_gives_the_precharge_its_full_attempts_again() -> None:
    c = Contactor(PinHal(link=0), {"timeout_ms": 100, "retries": 1, "retry_delay_ms": 100})
    first = steps_until(c, 100, True, 14800, lambda c: c.faults != 0, 100)
    assert c.clear() == codec.FAULT_PRECHARGE_FAILED and c.attempts == 0
    assert steps_until(c, 100, True, 14800, lambda c: c.faults != 0, 100) == first


def test_welded_contactor_trips_after_exactly_the_feedback_delay() -> None:
    """Closed when told to open (from boot, after a normal close and open, and
    again after a clear): ``contactor_welded`` after 200 ms (default) of it,
    with the time as its value."""
    for cfg in ({}, {"feedback_delay_ms": 300}):
        delay = cfg.get("feedback_delay_ms", 200)
        hal = PinHal(link=20000, aux=1)  # welded from boot
        c = Contactor(hal, cfg)
        n = steps_until(c, 50, False, 14800, lambda c: c.faults != 0, 100)
        assert n == delay // 50 and c.fault_value == delay
        assert c.faults == codec.FAULT_CONTACTOR_WELDED
        assert c.clear() == codec.FAULT_CONTACTOR_WELDED and not c.faults
        n = steps_until(c, 50, False, 14800, lambda c: c.faults != 0, 100)
        assert n == delay // 50 and c.fault_value == delay
    hal = PinHal(link=20000, aux=0)
    c = Contactor(hal, {})
    c.step(50, True, 14800)
    hal.aux = 1  # closed as told
    for _ in range(3):
        c.step(50, True, 14800)
    assert c.closed and not c.faults
    n = steps_until(c, 50, False, 14800, lambda c: c.faults != 0, 100)
    assert n == 4 and c.fault_value == 200


def test_an_aux_contact_that_bounces_shorter_than_the_delay_does_not_trip() -> None:
    """The 200 ms count only while the contact reads closed without interruption."""
    hal = PinHal(aux=0)
    c = Contactor(hal, {})
    for _ in range(10):
        hal.aux = 1
        c.step(150, False, 14800)
        hal.aux = 0
        c.step(150, False, 14800)
    assert not c.faults


def test_a_welded_contactor_after_a_failed_precharge_adds_its_bit() -> None:
    hal = PinHal(link=0, aux=0)
    c = Contactor(hal, {"timeout_ms": 100, "retries": 0})
    steps_until(c, 100, True, 14800, lambda c: c.faults != 0, 10)
    assert c.faults == codec.FAULT_PRECHARGE_FAILED
    hal.aux = 1
    for _ in range(4):
        c.step(100, True, 14800)
    assert c.faults == codec.FAULT_PRECHARGE_FAILED | codec.FAULT_CONTACTOR_WELDED


# -- protection --------------------------------------------------------------

# The directions an alarm holds at zero current, per protection: what
# docs/protection.md says each guards against (bit 0 charge, bit 1 discharge
# allowed, as in telemetry).
ALLOWED_WHILE_ALARM = {
    "cell_overvoltage": 0b10, "cell_undervoltage": 0b01, "overtemperature": 0b00,
    "undertemperature": 0b00, "overcurrent_charge": 0b10, "overcurrent_discharge": 0b01,
    "deep_discharge": 0b00, "overtemperature_charge": 0b10, "undertemperature_charge": 0b10,
    "overcurrent_charge_peak": 0b10, "overcurrent_discharge_peak": 0b01,
    "short_circuit": 0b01, "cell_imbalance": 0b00, "open_wire": 0b00, "sensor_range": 0b00,
    "sensor_disconnected": 0b00, "sensor_stuck": 0b00, "pack_voltage_mismatch": 0b00,
    "temperature_rise": 0b00,
}


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_an_alarm_holds_its_directions_and_only_those(spec: Spec) -> None:
    rig = Rig(spec)
    rig.p = Protection(isolated_limits(spec), severities={spec.name: ALARM})
    rig.feed(spec.normal, 3)
    assert rig.p.allowed == 0b11
    rig.trip_now()
    assert rig.p.alarms == spec.bit and rig.p.faults == 0
    assert rig.p.allowed == ALLOWED_WHILE_ALARM[spec.name]


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_pending_trips_name_the_faults_whose_delay_runs(spec: Spec) -> None:
    """While a fault's condition holds but its delay (or debounce) runs, its bit
    is pending (the output must not close onto it); never a warning's or an
    alarm's, and no longer once it has tripped. ``changed`` holds the bit on the
    step it trips and on no other."""
    for severity in (WARNING, ALARM, FAULT):
        rig = Rig(spec)
        rig.p = Protection(isolated_limits(spec), severities={spec.name: severity})
        rig.feed(spec.normal, 3)
        assert rig.p.pending_trips == 0
        n = spec.samples_to_trip()
        for _ in range(n - 1):
            rig.feed(spec.beyond(spec.trip))
            assert rig.p.pending_trips == (spec.bit if severity == FAULT else 0)
            assert not rig.tripped() and rig.p.changed == 0
        rig.feed(spec.beyond(spec.trip))
        assert rig.tripped() and rig.p.pending_trips == 0 and rig.p.changed == spec.bit
        rig.feed(spec.beyond(spec.trip))
        assert rig.tripped() and rig.p.changed == 0


def test_a_one_ms_delay_never_trips_on_the_first_sample() -> None:
    """Only a delay of 0 (with a debounce of 1) trips on one sample."""
    spec = SPECS[0]
    rig = Rig(spec)
    rig.p = Protection(isolated_limits(spec), {spec.name: (1, 1)})
    rig.feed(spec.beyond(spec.trip))
    assert not rig.tripped()
    rig.feed(spec.beyond(spec.trip))
    assert rig.tripped()
    rig.feed(spec.normal)
    assert rig.tripped()
    rig.feed(spec.normal)
    assert not rig.tripped()


def test_bad_severity_and_debounce_are_refused_by_name() -> None:
    with pytest.raises(ValueError) as e:
        Protection(LIMITS, severities={"overtemperature": 3})
    assert str(e.value) == "severity of overtemperature must be 0, 1 or 2"
    for bad in (0, MAX_DEBOUNCE + 1):
        with pytest.raises(ValueError) as e:
            Protection(LIMITS, debounces={"open_wire": bad})
        assert str(e.value) == "debounce count of open_wire must be 1..1000"
    assert Protection(LIMITS, debounces={"open_wire": 1000}).debounce[13] == 1000


def booted(cells_mv: list[int], switches: str = "dual") -> tuple[Bms, FakeHal]:
    """A Bms on the sim board whose real Measurement reads these cells (ADC codes);
    ``switches`` "single": one switch for both directions, any fault opens it."""
    hal = FakeHal(SIM_BOARD["cells"], SIM_BOARD["temp_sensors"], CUR_ZERO)
    hal.cells = [cell_code(mv) for mv in cells_mv]
    hal.temps = [2000] * SIM_BOARD["temp_sensors"]
    return Bms({**SIM_BOARD, "switches": switches}, hal, NullPort()), hal


def test_booting_past_a_limit_keeps_the_output_open_through_the_trip_delay() -> None:
    ov = next(s for s in SPECS if s.name == "cell_overvoltage")
    bms, hal = booted([ov.trip + 30, 3700, 3700, 3700])
    for _ in range(samples_to(ov.trip_delay_ms) - 1):
        bms.step(DT_MS)
        assert not bms.output_closed and True not in hal.outputs
        assert bms.protection.pending_trips == ov.bit and bms.faults == 0
    bms.step(DT_MS)
    assert bms.faults == ov.bit and bms.latched == ov.bit
    # sim-4s has separate charge and discharge FETs: once the fault has tripped, the
    # output closes for the way back only (discharging), the charge FET stopped first
    assert bms.output_closed and hal.directions == [(True, True), (False, True)]
    assert hal.outputs == [False, True]


# -- latches -----------------------------------------------------------------


def record(path: Path) -> tuple[int, ...]:
    """A one-word record as the docstring of latches.py lays it out: the word,
    the sequence number, the CRC-32 of both (little-endian u32s)."""
    data = path.read_bytes()
    assert len(data) == 12
    word, seq, crc = struct.unpack("<LLL", data)
    assert crc == binascii.crc32(data[:8])
    return word, seq


def test_a_latch_record_is_the_word_a_sequence_number_and_a_crc(tmp_path: Path) -> None:
    path = tmp_path / "latches.bin"
    LatchStore(str(path)).save(0b101)
    assert record(path) == (0b101, 1)
    LatchStore(str(path)).save(0b111)  # a new store (a reset) continues the sequence
    assert record(path) == (0b111, 2)
    store = LatchStore(str(path))
    assert store.load() == 0b111
    store.save(0b1)
    store.save(0b11)
    assert record(path) == (0b11, 4) and not (tmp_path / "latches.bin.new").exists()


def test_the_sequence_number_wraps_at_32_bits(tmp_path: Path) -> None:
    path = tmp_path / "latches.bin"
    data = struct.pack("<LL", 0b10, 0xFFFFFFFE)
    path.write_bytes(data + struct.pack("<L", binascii.crc32(data)))
    store = LatchStore(str(path))
    store.save(0b100)
    assert record(path) == (0b100, 0xFFFFFFFF)
    store.save(0b1000)
    assert record(path) == (0b1000, 0)


def test_a_record_of_the_earlier_format_loads_and_is_superseded(tmp_path: Path) -> None:
    path = tmp_path / "latches.bin"
    word = struct.pack("<L", 0b110)
    path.write_bytes(word + struct.pack("<L", binascii.crc32(word)))  # no sequence number
    store = LatchStore(str(path))
    assert store.load() == 0b110
    store.save(0b1)
    assert record(path) == (0b1, 1) and LatchStore(str(path)).load() == 0b1


def test_the_newer_record_wins_in_either_file(tmp_path: Path) -> None:
    path = tmp_path / "latches.bin"
    new = tmp_path / "latches.bin.new"
    store = LatchStore(str(path))
    store.save(0b1)
    older = path.read_bytes()
    store.save(0b10)
    newer = path.read_bytes()
    # power lost after the new record was closed, before the rename
    path.write_bytes(older)
    new.write_bytes(newer)
    assert LatchStore(str(path)).load() == 0b10
    assert path.read_bytes() == newer and not new.exists()  # the rename is finished
    # a stale ``.new`` beside a newer main file is not believed nor renamed
    new.write_bytes(older)
    assert LatchStore(str(path)).load() == 0b10
    assert path.read_bytes() == newer


def test_a_failing_flash_counts_write_errors_and_keeps_the_last_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "latches.bin"
    store = LatchStore(str(path))
    store.save(0b1)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(5, "EIO")

    monkeypatch.setattr(latches, "open", broken, raising=False)
    store.save(0b11)  # does not raise: protection goes on
    store.save(0b111)
    assert store.write_errors == 2
    monkeypatch.undo()
    assert LatchStore(str(path)).load() == 0b1


class FatOs:
    """``os`` of a FAT volume: a rename onto an existing file fails."""

    def __init__(self, fail_rename: bool = False) -> None:
        self.fail_rename = fail_rename
        self.removed: list[str] = []

    def rename(self, old: str, new: str) -> None:
        if self.fail_rename or os.path.exists(new):
            raise OSError(17, "EEXIST")
        os.rename(old, new)

    def remove(self, path: str) -> None:
        self.removed.append(path)
        os.remove(path)


def test_on_fat_the_old_record_is_removed_before_the_rename(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "latches.bin"
    fat = FatOs()
    monkeypatch.setattr(latches, "os", fat)
    store = LatchStore(str(path))
    store.save(0b1)
    assert fat.removed == []
    store.save(0b10)
    assert fat.removed == [str(path)]
    assert record(path) == (0b10, 2) and not (tmp_path / "latches.bin.new").exists()
    assert LatchStore(str(path)).load() == 0b10


def test_a_rename_that_fails_at_boot_still_loads_the_newer_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "latches.bin"
    store = LatchStore(str(path))
    store.save(0b1)
    older = path.read_bytes()
    store.save(0b100)
    (tmp_path / "latches.bin.new").write_bytes(path.read_bytes())
    path.write_bytes(older)
    monkeypatch.setattr(latches, "os", FatOs(fail_rename=True))
    assert LatchStore(str(path)).load() == 0b100


def test_a_store_of_several_words_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "health.bin"
    WordStore(str(path), words=3).save_words(7, 0xFFFFFFFF, 0)
    assert WordStore(str(path), words=3).load_words() == (7, 0xFFFFFFFF, 0)
    assert len(path.read_bytes()) == 3 * 4 + 8


# -- measurement -------------------------------------------------------------


class Same:
    """A channel that reads its code as the value (what Measurement does with the
    values is seen alone); ``max_code`` of a 12-bit converter."""

    max_code = 4095
    open_code = 4095 - 40  # NtcChannel's: within 1 % of the rail

    def convert(self, code: int) -> int:
        return code


class SameFrontend:
    cell = Same()
    temp = Same()
    current = Same()


def measured(cells: list[int], temps: list[int], current: int = 0, dt_ms: int = 100,
             pack_sensor_mv: int = -1, m: Measurement | None = None) -> Measurement:
    m = m or Measurement(len(cells), len(temps))  # the stuck clock runs from 1 A
    for i, c in enumerate(cells):
        m.raw_cells[i] = c
    for i, t in enumerate(temps):
        m.raw_temps[i] = t
    m.update(SameFrontend(), current, dt_ms, pack_sensor_mv)
    return m


def test_pack_figures_from_the_cells() -> None:
    m = measured([3700, 3650, 3720, 3690], [300, 250])
    assert (m.pack_mv, m.min_cell_mv, m.max_cell_mv) == (14760, 3650, 3720)
    assert (m.min_temp_dc, m.max_temp_dc, m.current_ma) == (250, 300, 0)
    assert list(m.cells_mv) == [3700, 3650, 3720, 3690]
    m = measured([0, 0], [2000])  # a front end that reads nothing
    assert (m.pack_mv, m.min_cell_mv, m.max_cell_mv) == (0, 0, 0)


def test_a_temperature_channel_within_1_percent_of_a_rail_is_railed() -> None:
    """12 bits: codes 0..40 (shorted) and 4055..4095 (open) are railed."""
    for code, railed in ((40, 1), (41, 0), (4054, 0), (4055, 1), (0, 1), (4095, 1)):
        assert measured([3700], [2000, code]).temps_railed == railed, code
    assert measured([3700], [40, 4055]).temps_railed == 2
    # 16 bits: 0..655 and 64880..65535
    m = Measurement(1, 6)
    m.raw_temps[:] = array("H", [655, 656, 64879, 64880, 0, 65535])
    m.update(Wide(), 0, 100, -1)
    assert m.temps_railed == 4


class Same16(Same):
    """A 16-bit temperature channel (railed is judged on the code)."""

    max_code = 65535
    open_code = 65535 - 655

    def convert(self, code: int) -> int:
        return 250


class Wide(SameFrontend):
    temp = Same16()


def test_the_pack_sensor_against_the_sum_of_cells() -> None:
    assert measured([3700, 3700], [2000], pack_sensor_mv=7350).pack_mismatch_mv == 50
    assert measured([3700, 3700], [2000], pack_sensor_mv=7460).pack_mismatch_mv == 60
    # a pack sensor that reads 0 V (its divider open) differs by the whole pack
    assert measured([3700, 3700], [2000], pack_sensor_mv=0).pack_mismatch_mv == 7400
    assert measured([3700, 3700], [2000]).pack_mismatch_mv == 0  # no sensor


def test_the_stuck_clock_runs_from_the_stuck_current_in_either_direction() -> None:
    for current, runs in ((1000, True), (999, False), (-1000, True), (-999, False)):
        m = measured([3700, 3701], [2000], current)
        measured([3700, 3701], [2000], current, m=m)
        measured([3700, 3701], [2000], current, m=m)
        assert m.stuck_ms == (200 if runs else 0), current
        measured([3700, 3702], [2000], current, m=m)  # cell 1 moved: cell 0 is stuck
        assert m.stuck_ms == (300 if runs else 0), current
        measured([3699, 3702], [2000], current, m=m)
        assert m.stuck_ms == (100 if runs else 0), current


def test_a_cell_reading_zero_from_boot_is_stuck_from_the_first_sample() -> None:
    m = measured([0, 3700], [2000], 5000)
    assert m.stuck_ms == 100
    measured([0, 3701], [2000], 5000, m=m)
    assert m.stuck_ms == 200


def test_the_stuck_clock_stops_at_its_cap() -> None:
    m = measured([3700], [2000], 5000, dt_ms=0)
    for _ in range(4):
        measured([3700], [2000], 5000, dt_ms=1 << 28, m=m)
    assert m.stuck_ms == 1 << 29


@pytest.mark.parametrize("rest_s", [120, 150])
def test_the_temperature_rise_is_over_the_last_minute(rest_s: int) -> None:
    """A step of 5 degC shows at once as the rise and stays while a reading from
    before it is in the history (one every 6 s, ten of them): it is gone once
    every slot holds the new reading, 54 to 60 s after the step (here 59 s: the
    step comes 1 s after a slot was written), wherever the ring stands."""
    m = measured([3700], [250, 250], dt_ms=0)
    for _ in range(rest_s):  # minutes at 25.0 degC
        measured([3700], [250, 250], dt_ms=1000, m=m)
    assert m.temp_rise_dc == 0
    seconds = 0
    measured([3700], [250, 300], dt_ms=1000, m=m)
    while m.temp_rise_dc:
        assert m.temp_rise_dc == 50
        seconds += 1
        measured([3700], [250, 300], dt_ms=1000, m=m)
    assert seconds == 59
    measured([3700], [200, 300], dt_ms=1000, m=m)  # cooling is no rise
    assert m.temp_rise_dc == 0


def test_a_steady_temperature_shows_no_rise_while_the_history_fills() -> None:
    """From boot, before the ring of ten slots is full, the rise is against the
    first reading: a pack at a steady 25.0 degC shows no rise at any moment of
    its first two minutes (a slot never written must not count as a reading)."""
    m = measured([3700], [250, 250], dt_ms=0)
    for t_s in range(1, 121):
        measured([3700], [250, 250], dt_ms=1000, m=m)
        assert m.temp_rise_dc == 0, f"a rise of {m.temp_rise_dc} at {t_s} s"


def test_a_temperature_history_slot_is_taken_6000_ms_after_the_last_not_before() -> None:
    """The slot boundary is exact: a sample 5 999 ms after the first does not
    start a slot, the one 1 ms later does. Ten slots on (one a minute later),
    the slot holding that later sample is the oldest and the rise is measured
    against it: a warming between 5 999 and 6 000 ms is no longer in the window."""
    m = measured([3700], [200], dt_ms=0)  # slot 0 at t = 0
    measured([3700], [200], dt_ms=5999, m=m)
    measured([3700], [250], dt_ms=1, m=m)  # slot 1 at t = 6 000 ms: 25.0 degC
    assert m.temp_rise_dc == 50  # against slot 0
    for _ in range(9):  # slots 2..9, then slot 0 again at t = 60 000 ms
        measured([3700], [250], dt_ms=6000, m=m)
    assert m.temp_rise_dc == 0  # the oldest slot (1) holds 25.0 degC


# -- app: the output logic ---------------------------------------------------


def logged(bms: Bms, since: int = 0) -> list[tuple[int, int, int]]:
    """(kind, code, value) of the events logged from index ``since`` on."""
    ev = bms.events
    return [(ev.kinds[i % ev.capacity], ev.codes[i % ev.capacity], ev.values[i % ev.capacity])
            for i in range(since, ev.total)]


class DirectionsHal(FakeHal):
    def __init__(self) -> None:
        super().__init__(SIM_BOARD["cells"], SIM_BOARD["temp_sensors"], CUR_ZERO)
        self.cells = [cell_code(3700)] * SIM_BOARD["cells"]
        self.temps = [2000] * SIM_BOARD["temp_sensors"]


def test_a_fault_trips_latches_releases_and_clears_through_bms() -> None:
    ov = next(s for s in SPECS if s.name == "cell_overvoltage")
    bms, hal = booted([3700] * 4, switches="single")
    bms.step(DT_MS)
    assert bms.output_closed and bms.state == codec.STATE_ACTIVE
    start = bms.events.total
    hal.cells[2] = cell_code(ov.trip + 30)
    for _ in range(samples_to(ov.trip_delay_ms)):
        bms.step(DT_MS)
    mv = bms.meas.max_cell_mv
    assert mv > ov.trip
    assert logged(bms, start) == [(codec.EVENT_TRIP, ov.bit, mv)]
    assert (bms.faults, bms.latched, bms.tripped) == (ov.bit, ov.bit, ov.bit)
    assert not bms.output_closed and bms.state == codec.STATE_FAULT
    assert bms.clear_faults() == 0 and bms.latched == ov.bit  # active: stays latched
    assert logged(bms, start) == [(codec.EVENT_TRIP, ov.bit, mv)]
    hal.cells[2] = cell_code(3700)
    for _ in range(samples_to(ov.release_delay_ms)):
        bms.step(DT_MS)
    assert logged(bms, start)[1:] == [(codec.EVENT_RELEASE, ov.bit, bms.meas.max_cell_mv)]
    assert bms.faults == 0 and bms.latched == ov.bit and bms.tripped == ov.bit
    bms.step(DT_MS)
    assert not bms.output_closed and bms.state == codec.STATE_FAULT  # held by the latch
    assert bms.clear_faults() == ov.bit
    assert logged(bms, start)[2] == (codec.EVENT_CLEAR, ov.bit, 0)
    assert (bms.faults, bms.latched, bms.tripped) == (0, 0, 0)
    bms.step(DT_MS)
    assert bms.output_closed and bms.state == codec.STATE_ACTIVE
    assert len(logged(bms, start)) == 3


def test_an_alarm_holds_its_direction_through_the_hal_and_keeps_the_output() -> None:
    board = dict(SIM_BOARD)
    board["severity"] = {"cell_overvoltage": "alarm", "cell_undervoltage": "alarm"}
    hal = DirectionsHal()
    bms = Bms(board, hal, NullPort())
    ov = next(s for s in SPECS if s.name == "cell_overvoltage")
    bms.step(DT_MS)
    assert hal.directions == [(True, True)] and bms.output_closed
    hal.cells[0] = cell_code(ov.trip + 30)
    for _ in range(samples_to(ov.trip_delay_ms)):
        bms.step(DT_MS)
    assert bms.alarms == ov.bit and bms.faults == 0 and bms.latched == 0
    assert hal.directions == [(True, True), (False, True)] and bms.allowed == 0b10
    assert bms.output_closed and bms.state == codec.STATE_ACTIVE
    hal.cells[0] = cell_code(3700)
    for _ in range(samples_to(ov.release_delay_ms)):
        bms.step(DT_MS)
    assert bms.alarms == 0 and hal.directions[-1] == (True, True) and bms.allowed == 0b11
    assert len(hal.directions) == 3
    uv = spec_of("cell_undervoltage")
    hal.cells[3] = cell_code(uv.trip - 30)
    for _ in range(samples_to(uv.trip_delay_ms)):
        bms.step(DT_MS)
    assert bms.alarms == uv.bit and bms.allowed == 0b01 and bms.output_closed
    assert hal.directions[3:] == [(True, False)]


class DeadLinkHal(DirectionsHal):
    """A contactor board whose DC link never charges, with the aux contact read."""

    def __init__(self) -> None:
        super().__init__()
        self.main = False
        self.welded = False

    def set_output(self, closed: bool) -> None:
        self.main = closed
        super().set_output(closed)

    def read_link_mv(self) -> int:
        return 123

    def output_feedback(self) -> int:
        return 1 if self.main or self.welded else 0


def contactor_board() -> dict:
    board = json.loads((boards_dir() / "sim-4s-contactor.json").read_text())
    board["estimator"] = "none"
    return board


def test_a_failed_precharge_is_reported_latched_and_cleared_through_bms() -> None:
    board = contactor_board()
    hal = DeadLinkHal()
    bms = Bms(board, hal, NullPort())
    start = bms.events.total
    states = []
    steps = 0
    while not bms.faults and steps < 400:
        bms.step(DT_MS)
        states.append(bms.state)
        steps += 1
    # 3 attempts of 2 s, 5 s apart (the board file), one step to start each
    assert steps == 3 * (1 + 20) + 2 * 50
    # precharge while it runs and while it waits to retry; standby for the one
    # step between the wait and the next attempt
    assert states.count(codec.STATE_STANDBY) == 2 and states[-1] == codec.STATE_FAULT
    assert states.count(codec.STATE_PRECHARGE) == steps - 3
    bit = codec.FAULT_PRECHARGE_FAILED
    assert logged(bms, start) == [(codec.EVENT_TRIP, bit, 123)]
    assert bms.latched == bit and bms.state == codec.STATE_FAULT and not hal.main
    assert bms.clear_faults() == bit
    assert logged(bms, start)[1:] == [(codec.EVENT_CLEAR, bit, 0)]
    assert bms.faults == 0 and bms.latched == 0 and bms.tripped == 0
    bms.step(DT_MS)
    assert bms.state == codec.STATE_PRECHARGE  # tries again, from its first attempt
    assert bms.contactor.attempts == 0


def test_a_welded_contactor_is_reported_with_its_time_and_trips_again_after_a_clear() -> None:
    board = contactor_board()
    hal = DeadLinkHal()
    hal.welded = True
    bms = Bms(board, hal, NullPort())
    start = bms.events.total
    for _ in range(2):
        bms.step(DT_MS)
    bit = codec.FAULT_CONTACTOR_WELDED
    assert logged(bms, start) == [(codec.EVENT_TRIP, bit, 200)]
    assert bms.faults == bit and bms.latched == bit and bms.state == codec.STATE_FAULT
    assert bms.clear_faults() == bit  # the contactor's fault clears ...
    bms.step(DT_MS)
    assert bms.latched == 0 and bms.state == codec.STATE_PRECHARGE
    bms.step(DT_MS)  # ... and it is found again 200 ms later
    assert bms.faults == bit and bms.latched == bit
    assert logged(bms, start)[1:] == [(codec.EVENT_CLEAR, bit, 0), (codec.EVENT_TRIP, bit, 200)]


# -- protection: timing of a run, several protections at once ----------------


def spec_of(name: str) -> Spec:
    return next(s for s in SPECS if s.name == name)


def run_pattern(pattern: str, delay_ms: int, dt_ms: int = 100,
                release_ms: int = 100000) -> int:
    """Feed cell_overvoltage ``pattern`` ("x": past the limit, ".": not), then
    samples past it until it trips; return the 1-based sample it tripped at."""
    spec = spec_of("cell_overvoltage")
    rig = Rig(spec)
    rig.p = Protection(isolated_limits(spec), {spec.name: (delay_ms, release_ms)})
    n = 0
    for c in pattern:
        n += 1
        rig.feed(spec.beyond(spec.trip) if c == "x" else spec.normal, dt_ms=dt_ms)
        if rig.tripped():
            return n
    while n < 1000:
        n += 1
        rig.feed(spec.beyond(spec.trip), dt_ms=dt_ms)
        if rig.tripped():
            return n
    raise AssertionError("never tripped")


def test_a_condition_held_two_samples_in_three_never_trips() -> None:
    spec = spec_of("cell_overvoltage")
    rig = Rig(spec)
    for _ in range(100):
        rig.feed(spec.beyond(spec.trip), 2)
        rig.feed(spec.normal)
        assert not rig.tripped() and rig.p.pending_trips in (0, spec.bit)


def test_the_third_miss_within_8_samples_restarts_the_delay_not_one_later() -> None:
    """1 s delay at 100 ms: 11 samples from the first past the limit. Misses at
    samples 2, 5 and 9 (8 samples from the first miss to the third) end the run:
    a new one starts at sample 10 and trips 11 samples later. Misses at 2, 5 and
    10 (9 samples) do not: it trips at sample 11 as if none were missed."""
    assert run_pattern("x", 1000) == 11
    assert run_pattern("x.xx.xxx.", 1000) == 9 + 11
    assert run_pattern("x.xx.xxxx.", 1000) == 11
    # two misses right after a restart are tolerated like any two
    assert run_pattern("x.xx.xxx." + "x.x.", 1000) == 9 + 11


def test_a_restarted_run_counts_its_delay_from_its_own_first_sample() -> None:
    """An odd delay shows a timer that does not restart from 0: 1001 ms at 100 ms
    trips on the 12th sample of a run."""
    assert run_pattern("x", 1001) == 12
    assert run_pattern("x.xx.xxx.", 1001) == 9 + 12


def test_the_release_delay_counts_from_the_first_sample_inside_the_release() -> None:
    spec = spec_of("cell_overvoltage")
    rig = Rig(spec)
    rig.p = Protection(isolated_limits(spec), {spec.name: (0, 1001)})
    rig.feed(spec.beyond(spec.trip))
    assert rig.tripped()
    n = 0
    while rig.tripped():
        n += 1
        rig.feed(spec.normal)
    assert n == 12


def test_several_protections_at_once_each_keep_their_bit() -> None:
    """Two faults, two alarms and two warnings at once: every bit is in its word,
    on the step it changes in ``changed``, and the alarms (one holding charge,
    one discharge) hold both directions."""
    names = ("cell_overvoltage", "overtemperature", "overtemperature_charge",
             "cell_undervoltage", "cell_imbalance", "temperature_rise")
    sev = {"cell_overvoltage": FAULT, "overtemperature": FAULT,
           "overtemperature_charge": ALARM, "cell_undervoltage": ALARM,
           "cell_imbalance": WARNING, "temperature_rise": WARNING}
    p = Protection(LIMITS, severities=sev)
    m = Meas()
    uv, ot = spec_of("cell_undervoltage"), spec_of("overtemperature")
    m.min_cell_mv = uv.trip - 10
    m.max_cell_mv = spec_of("cell_overvoltage").trip + 10
    m.max_temp_dc = ot.trip + 10  # past both temperature limits
    m.temp_rise_dc = spec_of("temperature_rise").trip + 10
    bits = {n: spec_of(n).bit for n in names}
    changed = {}
    for step in range(1, 60):
        p.load(m)
        p.step(DT_MS)
        if step == 2:  # every delay is running, the faults' are pending
            assert p.pending_trips == bits["cell_overvoltage"] | bits["overtemperature"]
        for n in names:
            if p.changed & bits[n]:
                changed[n] = step
    assert p.faults == bits["cell_overvoltage"] | bits["overtemperature"]
    assert p.alarms == bits["overtemperature_charge"] | bits["cell_undervoltage"]
    assert p.warnings == bits["cell_imbalance"] | bits["temperature_rise"]
    assert p.allowed == 0 and p.pending_trips == 0
    for n in names:
        assert changed[n] == spec_of(n).samples_to_trip(), n
    # overtemperature and its charge alarm (both 2 s) trip on the same step
    assert changed["overtemperature"] == changed["overtemperature_charge"]


# -- frontend ----------------------------------------------------------------


def test_a_linear_channel_takes_up_to_16_bits_and_scales_below_2_to_the_21() -> None:
    assert LinearChannel(16, 5000).max_code == 65535
    with pytest.raises(ValueError) as e:
        LinearChannel(17, 5000)
    assert str(e.value) == "ADC codes wider than 16 bits are not supported"
    # 2**21 - 1 and 65535 share no factor: the fraction stays as it is
    ch = LinearChannel(16, (1 << 21) - 1)
    assert (ch.num, ch.den) == ((1 << 21) - 1, 65535)
    assert ch.convert(65535) == (1 << 21) - 1 and ch.convert(0) == 0
    with pytest.raises(ValueError) as e:
        LinearChannel(16, 1 << 21)
    assert str(e.value) == "front-end scale too large for integer conversion"
    # the same bound on the denominator (full scale 1 keeps the fraction as it is;
    # the zero code far below 0 stretches the span)
    assert LinearChannel(16, 1, 65535 - ((1 << 21) - 1)).den == (1 << 21) - 1
    with pytest.raises(ValueError) as e:
        LinearChannel(16, 1, 65535 - (1 << 21))
    assert str(e.value) == "front-end scale too large for integer conversion"


def test_a_bipolar_channel_is_signed_around_its_zero_code() -> None:
    ch = LinearChannel(16, 50000, 32768)  # the sim boards' +/-50 A shunt
    assert ch.convert(32768) == 0
    assert ch.convert(32767) == -ch.convert(32769) == round(-50000 / 32767)
    assert ch.convert(65535) == 50000 and ch.convert(0) == -round(32768 * 50000 / 32767)


def test_an_ntc_open_or_shorted_reads_the_ends_of_its_range() -> None:
    """Open (full scale): -55.0 degC; shorted (code 0): 150.0 degC, the limits of
    the table (and beyond the rail too)."""
    ch = NtcChannel(12, 10000, 3435, 10000)
    assert ch.convert(4095) == -550 and ch.convert(0) == 1500
    assert ch.convert(0xFFFF) == -550
    ch = NtcChannel(12, 10000, 3435, 10000, min_dc=-400, max_dc=1200)
    assert ch.convert(4095) == -400 and ch.convert(0) == 1200


def ntc_configs() -> list[tuple[int, int, int, int]]:
    """(bits, r25_ohm, beta, pullup_ohm): every board's NTC front end, and one whose
    table ends far from its clamp (a small pull-up: -9 degC at 63/64 of full scale)."""
    out = {(t["bits"], t["ntc_r25_ohm"], t["ntc_beta"], t["pullup_ohm"])
           for t in (b["frontend"]["temp_adc"] for b in BOARDS.values())}
    return sorted(out | {(12, 10000, 3950, 1000), (16, 10000, 3435, 10000)})


@pytest.mark.parametrize("bits,r25,beta,pullup", ntc_configs())
def test_one_adc_code_never_moves_an_ntc_reading_more_than_its_table_slope(
        bits: int, r25: int, beta: int, pullup: int) -> None:
    """The reading is the table interpolated: between adjacent codes it moves at
    most the local slope (rounded up) plus one tenth of rounding, up to the last
    code. A jump would turn one LSB of ADC noise into a temperature step."""
    ch = NtcChannel(bits, r25, beta, pullup)
    step, table = ch.step, ch.table

    def slope(code: int) -> int:
        i = min(code // step, len(table) - 2)
        return -(-abs(table[i + 1] - table[i]) // step)

    prev = ch.convert(0)
    for code in range(1, ch.max_code + 1):
        now = ch.convert(code)
        bound = max(slope(code - 1), slope(code)) + 1
        assert abs(now - prev) <= bound, f"{bits} bits: jump of {prev - now} at code {code}"
        prev = now


@pytest.mark.parametrize("bits", range(1, 17))  # any ADC width, down to 1 bit
def test_the_ntc_table_is_as_fine_as_its_points_allow(bits: int) -> None:
    """65 points (130 bytes a channel, docs/boards.md), spaced by the smallest
    whole step whose 64 intervals reach full scale: a wider step spreads the
    points over codes the ADC never gives (and coarsens the interpolation)."""
    ch = NtcChannel(bits, 10000, 3435, 10000)
    assert len(ch.table) == 65
    intervals = len(ch.table) - 1
    assert intervals * ch.step >= ch.max_code
    assert intervals * (ch.step - 1) < ch.max_code


def test_an_ntc_reading_is_a_whole_number_of_tenths() -> None:
    """Integer units on the safety path: every code converts to an int."""
    ch = NtcChannel(12, 10000, 3435, 10000)
    assert all(type(ch.convert(code)) is int for code in range(4096))


def test_a_corrupt_main_file_beside_a_complete_new_record_loads_the_new(
        tmp_path: Path) -> None:
    path = tmp_path / "latches.bin"
    store = LatchStore(str(path))
    store.save(0b1)
    store.save(0b11)
    (tmp_path / "latches.bin.new").write_bytes(path.read_bytes())
    path.write_bytes(b"\xff" * 12)  # torn while the old record was being removed (FAT)
    assert LatchStore(str(path)).load() == 0b11
    assert record(path) == (0b11, 2)


def test_a_release_threshold_may_meet_its_trip_but_not_pass_it() -> None:
    """Integers: release one inside the trip is no hysteresis, and allowed;
    one further (past the trip) is refused, by name."""
    check_thresholds("cell_overvoltage", ABOVE, 4250, 4251)
    check_thresholds("cell_undervoltage", BELOW, 2800, 2799)
    check_thresholds("cell_undervoltage", BELOW, 2800, 2850)
    for above, release in ((ABOVE, 4252), (BELOW, 4248)):
        with pytest.raises(ValueError) as e:
            check_thresholds("x_limit", above, 4250, release)
        assert str(e.value) == "release threshold of x_limit is beyond its trip"


class FramePort(NullPort):
    """A port the test can put host frames into."""

    def __init__(self) -> None:
        super().__init__()
        self.rx = b""

    def readinto(self, buf: bytearray) -> int:
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n


def test_host_lost_trips_at_exactly_its_timeout_beside_other_faults_and_never_latches() -> None:
    board = dict(SIM_BOARD)
    board["host_timeout_ms"] = 1000
    board["estimator"] = "none"
    hal = DirectionsHal()
    port = FramePort()
    bms = Bms(board, hal, port)
    start = bms.events.total
    for _ in range(9):
        bms.step(DT_MS)
    assert bms.output_closed and bms.faults == 0
    bms.step(DT_MS)  # 1000 ms without a frame
    lost = codec.FAULT_HOST_LOST
    assert bms.faults == lost and not bms.output_closed and bms.latched == 0
    assert logged(bms, start) == [(codec.EVENT_TRIP, lost, 1000)]
    ov = spec_of("cell_overvoltage")
    hal.cells[1] = cell_code(ov.trip + 30)
    for _ in range(samples_to(ov.trip_delay_ms)):
        bms.step(DT_MS)
    assert bms.faults == lost | ov.bit and bms.latched == ov.bit
    assert bms.tripped == lost | ov.bit
    port.rx = encode_frame(codec.MSG_GET_FAULTS, 1, b"")
    bms.poll()
    bms.step(DT_MS)
    assert bms.faults == ov.bit and bms.latched == ov.bit
    assert logged(bms, start)[-1] == (codec.EVENT_RELEASE, lost, DT_MS)


class FlashHal(DirectionsHal):
    def storage_dir(self) -> str:  # type: ignore[override]
        return "/flash"


def test_a_trip_that_does_not_latch_writes_no_latch_record(flash: FlashModel) -> None:
    board = dict(SIM_BOARD)
    board["host_timeout_ms"] = 500
    board["estimator"] = "none"
    bms = Bms(board, FlashHal(), NullPort())
    for _ in range(5):
        bms.step(DT_MS)
    assert bms.faults == codec.FAULT_HOST_LOST
    assert "/latches.bin" not in flash.files and "/latches.bin.new" not in flash.files


def test_a_temperature_channel_at_the_converters_full_scale_is_railed() -> None:
    """Where the converter saturates below the rail (``open_code`` from the front
    end), a code from there up is open; a code 1 below is not."""

    class Saturating(Same16):
        open_code = 48000

    class Front(SameFrontend):
        temp = Saturating()

    m = Measurement(1, 5)
    m.raw_temps[:] = array("H", [47999, 48000, 57333, 65535, 656])
    m.update(Front(), 0, 100, -1)
    assert m.temps_railed == 3


def stepped(m: Measurement, cells: list[int], current: int) -> int:
    measured(cells, [2000], current, m=m)
    return m.stuck_ms


def test_a_reading_within_its_band_that_does_not_follow_a_current_step_is_stuck() -> None:
    """Band 5 codes, step 1000 mA: while the current holds the reference follows the
    reading; once the current is 1000 mA or more from the reference's, a reading
    within 5 codes of the reference gains a period a sample; one that leaves the
    band (by 6) takes a new reference and starts again."""
    m = Measurement(2, 1, stuck_current_ma=1000, stuck_band=5)
    assert stepped(m, [3700, 3800], 0) == 0  # first sample: both moved from 0
    assert stepped(m, [3703, 3797], 0) == 0  # the current holds: the references follow
    assert list(m.ref_cells) == [3703, 3797]
    assert stepped(m, [3705, 3795], 1000) == 100  # the current stepped: neither followed
    assert stepped(m, [3698, 3802], 1000) == 200  # -5 and +5 of the reference: within
    assert list(m.ref_cells) == [3703, 3797]  # held while the current is a step away
    assert stepped(m, [3709, 3802], 1000) == 300  # cell 0 left (+6): cell 1 still within
    assert list(m.unchanged_ms) == [0, 300]
    # cell 1 leaves (-6); cell 0 repeats its code exactly while 1000 mA flows
    assert stepped(m, [3709, 3791], 1000) == 100
    assert list(m.unchanged_ms) == [100, 0]
    assert list(m.ref_cells) == [3709, 3791] and list(m.ref_ma) == [1000, 1000]


def test_a_reference_that_follows_the_reading_sees_a_step_against_a_drifting_reading(
) -> None:
    """A reading drifting 1 code a sample at a steady current keeps its reference
    with it, so a current step that moves it 6 codes the other way leaves the band
    (a reference left where the reading last left its band would lag the drift by
    up to the band, and count a live cell as stuck)."""
    m = Measurement(1, 1, stuck_current_ma=1000, stuck_band=5)
    for k in range(10):
        assert stepped(m, [3700 + k], 1500) == 0
    assert stepped(m, [3709 - 6], 0) == 0  # 6 below the last reading: followed
    assert m.ref_cells[0] == 3703 and m.ref_ma[0] == 0


@pytest.mark.parametrize(("ref_ma", "current", "code", "runs"), [
    (1500, 501, 3702, False), (1500, 2499, 3698, False),  # 999 mA away
    (1500, 500, 3701, True), (1500, 2500, 3699, True),  # 1000 mA away
    (1500, 0, 3704, True),  # the current stopped, the reading did not follow
    (-1500, -501, 3696, False), (-1500, -500, 3695, True), (0, -1000, 3705, True),
    (0, 999, 3701, False),
])
def test_the_current_step_counts_from_the_reference_current(
        ref_ma: int, current: int, code: int, runs: bool) -> None:
    m = Measurement(1, 1, stuck_current_ma=1000, stuck_band=5)
    stepped(m, [3700], ref_ma)  # the reading moves here: reference 3700 at ref_ma
    assert stepped(m, [code], current) == (100 if runs else 0)
    # not a step: the reference followed to the reading and the current
    assert (m.ref_cells[0], m.ref_ma[0]) == ((3700, ref_ma) if runs else (code, current))


def test_with_a_band_an_exact_repeat_counts_only_while_current_flows() -> None:
    """A converter or buffer that repeats its code: stuck while the stuck current
    flows (either direction), held while it does not; a code that moves within the
    band with no current step starts the clock again."""
    for current, runs in ((1000, True), (-1000, True), (999, False), (-999, False)):
        m = Measurement(1, 1, stuck_current_ma=1000, stuck_band=5)
        stepped(m, [3700], current)
        assert stepped(m, [3700], current) == (100 if runs else 0), current
        assert stepped(m, [3700], current) == (200 if runs else 0), current
        assert stepped(m, [3701], current) == 0, current


def test_the_board_file_states_the_band_in_mv() -> None:
    """``stuck_band_mv`` at the cell, in codes of the cell channel rounded up:
    pico-4s 15 mV of 5000 mV full scale = 196.6 -> 197 codes; none: 0."""
    from cellguard.boards import load_board
    from cellguard_fw.app import Bms
    from cellguard_fw.hal_sim import SimHal, SimPort

    def bms_of(board: dict) -> Bms:
        board["estimator"] = "none"
        hal = SimHal(board["cells"], board["temp_sensors"], b"12345678")
        return Bms(board, hal, SimPort())

    board = load_board("pico-4s")
    assert (board["stuck_band_mv"], board["stuck_current_ma"]) == (15, 1000)
    bms = bms_of(board)
    assert bms.meas.stuck_band == 197 and bms.meas.stuck_current_ma == 1000
    board["stuck_band_mv"] = 1  # 13.1 codes: 14
    assert bms_of(board).meas.stuck_band == 14
    sim = load_board("sim-4s")
    bms = bms_of(sim)
    assert bms.meas.stuck_band == 0
    assert bms.meas.stuck_current_ma == sim["capacity_mah"] // 10


def test_a_reading_that_starts_within_its_band_of_zero_counts_from_zero_current() -> None:
    """Before the first sample the reference is code 0 at 0 mA: a reading that
    starts within the band of 0 (a dead channel) counts once the current is a
    step away from 0, and not at 1 mA less."""
    for current, want in ((1000, 100), (-1000, 100), (999, 0)):
        m = Measurement(1, 1, stuck_current_ma=1000, stuck_band=5)
        assert stepped(m, [3], current) == want, current
