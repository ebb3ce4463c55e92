"""Protection engine: trip delay, hysteresis and release delay of every protection,
and the Bms invariant "output open while any fault is active" under random input.

Timing contract (see the protection module docstring): a condition first seen at
sample k has "held for" ``(j - k) * dt`` at sample j, so with dt = 100 ms a
1000 ms trip delay trips on the 11th sample of a run past the limit; a run
restarts on the third sample back inside the limit within 8 (N of M).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cellguard.paths import boards_dir
from cellguard_fw import codec
from cellguard_fw.app import Bms, board_limits
from cellguard_fw.codec import STATE_ACTIVE, STATE_FAULT, STATE_STANDBY
from cellguard_fw.hal import Hal
from cellguard_fw.protection import (
    ABOVE,
    I_OPEN_WIRE,
    I_SENSOR_RANGE,
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
    Protection,
    protection_table,
)

DT_MS = 100
PROTECTIONS = protection_table()

EXPECTED_BITS: dict[str, int] = {
    "cell_overvoltage": codec.FAULT_CELL_OVERVOLTAGE,
    "cell_undervoltage": codec.FAULT_CELL_UNDERVOLTAGE,
    "overtemperature": codec.FAULT_OVERTEMPERATURE,
    "undertemperature": codec.FAULT_UNDERTEMPERATURE,
    "overcurrent_charge": codec.FAULT_OVERCURRENT_CHARGE,
    "overcurrent_discharge": codec.FAULT_OVERCURRENT_DISCHARGE,
    "deep_discharge": codec.FAULT_DEEP_DISCHARGE,
    "overtemperature_charge": codec.FAULT_OVERTEMPERATURE_CHARGE,
    "undertemperature_charge": codec.FAULT_UNDERTEMPERATURE_CHARGE,
    "overcurrent_charge_peak": codec.FAULT_OVERCURRENT_CHARGE_PEAK,
    "overcurrent_discharge_peak": codec.FAULT_OVERCURRENT_DISCHARGE_PEAK,
    "short_circuit": codec.FAULT_SHORT_CIRCUIT,
    "cell_imbalance": codec.FAULT_CELL_IMBALANCE,
    "open_wire": codec.FAULT_OPEN_WIRE,
    "sensor_range": codec.FAULT_SENSOR_RANGE,
    "sensor_disconnected": codec.FAULT_SENSOR_DISCONNECTED,
    "sensor_stuck": codec.FAULT_SENSOR_STUCK,
    "pack_voltage_mismatch": codec.FAULT_PACK_VOLTAGE_MISMATCH,
    "temperature_rise": codec.FAULT_TEMPERATURE_RISE,
}


def load_board(name: str = "sim-4s") -> dict[str, Any]:
    with open(boards_dir() / f"{name}.json") as f:
        board: dict[str, Any] = json.load(f)
    return board


SIM_BOARD = load_board()
LIMITS: dict[str, tuple[int, int]] = board_limits(SIM_BOARD)


@dataclass
class Meas:
    """The Measurement fields Protection.load reads, at nominal values."""

    max_cell_mv: int = 3700
    min_cell_mv: int = 3650
    max_temp_dc: int = 260
    min_temp_dc: int = 240
    current_ma: int = 0
    temps_railed: int = 0
    stuck_ms: int = 0
    pack_mismatch_mv: int = 0
    temp_rise_dc: int = 0

    def set(self, quantity: int, value: int) -> None:
        if quantity == Q_MAX_CELL_MV:
            self.max_cell_mv = value
        elif quantity == Q_MIN_CELL_MV:
            self.min_cell_mv = value
        elif quantity == Q_MAX_TEMP_DC:
            self.max_temp_dc = value
        elif quantity == Q_MIN_TEMP_DC:
            self.min_temp_dc = value
        elif quantity == Q_CHARGE_MA:
            self.current_ma = value
        elif quantity == Q_DISCHARGE_MA:
            self.current_ma = -value
        elif quantity == Q_CELL_SPREAD_MV:
            self.max_cell_mv = self.min_cell_mv + value
        elif quantity == Q_TEMPS_RAILED:
            self.temps_railed = value
        elif quantity == Q_STUCK_MS:
            self.stuck_ms = value
        elif quantity == Q_PACK_MISMATCH_MV:
            self.pack_mismatch_mv = value
        elif quantity == Q_TEMP_RISE_DC:
            self.temp_rise_dc = value
        else:  # pragma: no cover - a new quantity needs a branch here
            raise AssertionError(f"unknown quantity {quantity}")


@dataclass(frozen=True)
class Spec:
    name: str
    bit: int
    quantity: int
    above: bool
    trip: int
    release: int
    trip_delay_ms: int
    release_delay_ms: int
    severity: int
    debounce: int

    def beyond(self, threshold: int, by: int = 1) -> int:
        """A value just past ``threshold`` in the tripping direction."""
        return threshold + by if self.above else threshold - by

    def short_of(self, threshold: int, by: int = 1) -> int:
        """A value just short of ``threshold`` (towards normal)."""
        return threshold - by if self.above else threshold + by

    @property
    def between(self) -> int:
        """Strictly between release and trip: neither trips nor releases."""
        assert self.hysteresis, f"{self.name} has no value between release and trip"
        return (self.trip + self.release) // 2

    @property
    def hysteresis(self) -> bool:
        """Whether some value neither trips nor releases (integers: release and
        trip one apart is none)."""
        return abs(self.trip - self.release) >= 2

    def samples_to_trip(self, dt_ms: int = DT_MS) -> int:
        return max(samples_to(self.trip_delay_ms, dt_ms), self.debounce)

    def samples_to_release(self, dt_ms: int = DT_MS) -> int:
        return max(samples_to(self.release_delay_ms, dt_ms), self.debounce)

    @property
    def normal(self) -> int:
        return self.short_of(self.release, 50)


def specs() -> list[Spec]:
    out = []
    for (name, bit, quantity, above, key, trip_delay, release_delay, severity, _blocks,
         debounce) in PROTECTIONS:
        trip, release = LIMITS[key]
        out.append(Spec(name, bit, quantity, above == ABOVE, trip, release,
                        trip_delay, release_delay, severity, debounce))
    return out


SPECS = specs()
SPEC_IDS = [s.name for s in SPECS]
HYSTERESIS_SPECS = [s for s in SPECS if s.hysteresis]


def samples_to(delay_ms: int, dt_ms: int = DT_MS) -> int:
    """Consecutive samples after which a condition has held for ``delay_ms``."""
    return -(-delay_ms // dt_ms) + 1


def isolated_limits(spec: Spec) -> dict[str, tuple[int, int]]:
    """The default limits with every other protection moved out of reach, so one
    protection's timing is seen alone (deep discharge shares its quantity with
    under-voltage, the peak levels with the sustained ones)."""
    limits = dict(LIMITS)
    for name, _bit, _q, above, key, *_ in PROTECTIONS:
        if name != spec.name:
            limits[key] = (10**6, 10**6 - 1) if above == ABOVE else (-(10**6), -(10**6) + 1)
    return limits


class Rig:
    """A Protection fed from a Meas, one sample at a time."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.p = Protection(isolated_limits(spec))
        self.m = Meas()

    def feed(self, value: int, n: int = 1, dt_ms: int = DT_MS) -> int:
        faults = self.p.faults | self.p.warnings | self.p.alarms  # fed nothing: as it is
        for _ in range(n):
            self.m.set(self.spec.quantity, value)
            self.p.load(self.m)
            faults = self.p.step(dt_ms)
            assert faults == self.p.faults
            # here a warning's or an alarm's bit counts like a fault's
            faults |= self.p.warnings | self.p.alarms
        return faults

    def tripped(self) -> bool:
        return bool((self.p.faults | self.p.warnings | self.p.alarms) & self.spec.bit)

    def trip_now(self) -> None:
        self.feed(self.spec.beyond(self.spec.trip), self.spec.samples_to_trip())
        assert self.tripped()


# -- table and limits --------------------------------------------------------


def test_named_indexes_match_the_table() -> None:
    assert PROTECTIONS[I_OPEN_WIRE][0] == "open_wire"
    assert PROTECTIONS[I_SENSOR_RANGE][0] == "sensor_range"


def test_config_stems_follow_the_table() -> None:
    """The protocol names each protection's keys in the table's order."""
    from protocol.messages import PROTECTION_STEMS

    assert len(PROTECTION_STEMS) == len(PROTECTIONS) == codec.CONFIG_PROTECTION_COUNT
    for (stem, unit), row in zip(PROTECTION_STEMS, PROTECTIONS, strict=True):
        assert row[4].startswith(stem) and row[4].endswith(unit), (stem, row[4])


def test_fault_bits_match_codec() -> None:
    names = [p[0] for p in PROTECTIONS]
    assert names == list(EXPECTED_BITS), "every protection needs its own codec fault bit"
    for name, bit, *_ in PROTECTIONS:
        assert bit == EXPECTED_BITS[name], name
    codec_bits = {v for k, v in vars(codec).items() if k.startswith("_FAULT_")}
    # every fault bit is a protection's, the contactor state machine's, the policy's
    # or the board loop's (a control step that raised), or a monitor chip's (its own
    # trips, its bus)
    contactor_bits = {codec.FAULT_PRECHARGE_FAILED, codec.FAULT_CONTACTOR_WELDED,
                      codec.FAULT_HOST_LOST,  # and the host-silence policy
                      codec.FAULT_FIRMWARE, codec.FAULT_AFE_PROTECTION, codec.FAULT_SENSOR_BUS}
    assert {p[1] for p in PROTECTIONS} | contactor_bits == codec_bits
    assert len(codec_bits) == len(PROTECTIONS) + len(contactor_bits)
    for bit in codec_bits:
        assert bit & (bit - 1) == 0, f"fault {bit:#x} is not a single bit"


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_limits_and_delays(spec: Spec) -> None:
    # release lies on the safe side of trip (or one apart: no hysteresis), and the
    # sim board uses the defaults
    assert (spec.release <= spec.trip + 1) if spec.above else (spec.release >= spec.trip - 1)
    assert "delays" not in SIM_BOARD and "debounce" not in SIM_BOARD
    assert spec.trip_delay_ms % DT_MS == 0 and spec.release_delay_ms % DT_MS == 0
    # only the short circuit trips on the first sample beyond its limit; the stuck
    # reading and the temperature rise watch quantities that are times already
    assert (spec.trip_delay_ms == 0) == (spec.name in (
        "short_circuit", "sensor_stuck", "temperature_rise"))
    assert spec.release_delay_ms > 0 or spec.name == "sensor_stuck"


def test_nmc_limit_values() -> None:
    assert SIM_BOARD["chemistry"] == "nmc"
    assert LIMITS["cell_ov_mv"] == (4250, 4150)
    assert LIMITS["cell_uv_mv"] == (2800, 2850)
    assert LIMITS["temp_max_dc"] == (600, 550)
    assert LIMITS["temp_min_dc"] == (-200, -150)
    assert LIMITS["charge_current_max_ma"] == (6000, 3000)
    assert LIMITS["discharge_current_max_ma"] == (15000, 7500)


def test_release_beyond_trip_is_rejected() -> None:
    bad = dict(LIMITS)
    bad["cell_ov_mv"] = (4200, 4250)
    with pytest.raises(ValueError):
        Protection(bad)


# -- per protection ---------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_normal_values_never_trip(spec: Spec) -> None:
    rig = Rig(spec)
    assert rig.feed(spec.normal, 500) == 0
    # exactly at the trip threshold is not beyond it
    assert rig.feed(spec.trip, 500) == 0


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_trips_exactly_after_trip_delay(spec: Spec) -> None:
    rig = Rig(spec)
    rig.feed(spec.normal, 5)
    n = spec.samples_to_trip()
    assert rig.feed(spec.beyond(spec.trip), n - 1) == 0, "tripped one sample early"
    assert rig.feed(spec.beyond(spec.trip)) == spec.bit, "did not trip after its delay"
    assert rig.p.faults | rig.p.warnings | rig.p.alarms == spec.bit


@pytest.mark.parametrize("dt_ms", [30, 70, 250, 300, 1000, 3000])
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_trip_timing_with_other_sample_periods(spec: Spec, dt_ms: int) -> None:
    rig = Rig(spec)
    n = spec.samples_to_trip(dt_ms)
    assert rig.feed(spec.beyond(spec.trip, 1000), n - 1, dt_ms) == 0
    assert rig.feed(spec.beyond(spec.trip, 1000), 1, dt_ms) == spec.bit


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_pulses_with_three_gaps_in_eight_do_not_trip(spec: Spec) -> None:
    """A run restarts on the third sample inside the limit within 8: pulses one
    sample short of the delay, each followed by 3 samples inside, never trip."""
    rig = Rig(spec)
    n = spec.samples_to_trip()
    over = spec.beyond(spec.trip, 500)
    for gap in ([spec.normal] * 3, [spec.trip] * 3, [spec.normal, spec.trip, spec.normal]):
        for _ in range(3):
            assert rig.feed(over, n - 1) == 0
            for value in gap:  # a sample at the threshold itself is inside the limit
                assert rig.feed(value) == 0
    assert rig.feed(spec.normal, 200) == 0


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_two_gaps_in_eight_do_not_restart_the_delay(spec: Spec) -> None:
    """N of M: 6 of any 8 samples past the limit keep the run going, so a sample
    or two inside the limit (noise) do not restart the trip delay: it trips once
    the delay has passed since the first sample past the limit (and the debounce
    count of samples were past it)."""
    n = spec.samples_to_trip()
    if n < 3:
        return  # trips on its first or second sample: no gap fits
    over = spec.beyond(spec.trip, 500)
    for gaps in ((1,), (1, 2), (n - 2,), tuple(range(1, n - 1, 4))):
        # the sample it trips on: the delay passed and enough samples past the limit
        due = max(samples_to(spec.trip_delay_ms), spec.debounce + len(gaps)) - 1
        rig = Rig(spec)
        for k in range(due):
            value = spec.normal if k in gaps else over
            assert rig.feed(value) == 0, f"tripped early at sample {k} (gaps {gaps})"
        assert rig.feed(over) == spec.bit, f"gaps at {gaps} postponed the trip"


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_debounce_counts_samples_past_the_limit(spec: Spec) -> None:
    """The debounce count is of samples past the limit in the run, gaps not counted."""
    p = Protection(isolated_limits(spec), debounces={spec.name: 6}, delays={spec.name: (0, 0)})
    m = Meas()
    over = spec.beyond(spec.trip, 500)
    values = [over, over, spec.normal, over, over, over, spec.normal, over]
    for k, value in enumerate(values):
        m.set(spec.quantity, value)
        p.load(m)
        p.step(DT_MS)
        tripped = (p.faults | p.alarms | p.warnings) & spec.bit
        assert bool(tripped) == (k == len(values) - 1), k


@pytest.mark.parametrize("spec", HYSTERESIS_SPECS, ids=[s.name for s in HYSTERESIS_SPECS])
def test_value_between_release_and_trip_holds_the_fault(spec: Spec) -> None:
    rig = Rig(spec)
    rig.trip_now()
    hold = 5 * spec.samples_to_release()
    assert spec.short_of(spec.trip) != spec.release
    assert rig.feed(spec.between, hold) == spec.bit
    assert rig.feed(spec.short_of(spec.trip), hold) == spec.bit
    assert rig.feed(spec.release, hold) == spec.bit, "released AT the release threshold"
    assert rig.feed(spec.beyond(spec.trip, 1000), hold) == spec.bit


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_releases_exactly_after_release_delay(spec: Spec) -> None:
    rig = Rig(spec)
    rig.trip_now()
    rig.feed(spec.between if spec.hysteresis else spec.beyond(spec.trip), 3)
    n = spec.samples_to_release()
    past = spec.short_of(spec.release)
    assert rig.feed(past, n - 1) == spec.bit, "released one sample early"
    assert rig.feed(past) == 0, "did not release after its delay"
    assert not rig.tripped()
    # released: it must take a full trip delay to trip again
    assert rig.feed(spec.beyond(spec.trip), spec.samples_to_trip() - 1) == 0
    assert rig.feed(spec.beyond(spec.trip)) == spec.bit


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_interrupted_release_restarts_the_release_delay(spec: Spec) -> None:
    rig = Rig(spec)
    rig.trip_now()
    n = spec.samples_to_release()
    if n == 1:
        return  # releases on the first sample: there is nothing to interrupt
    past = spec.short_of(spec.release, 10)
    interruptions = [spec.release, spec.beyond(spec.trip)]
    if spec.hysteresis:
        interruptions.append(spec.between)
    for interruption in interruptions:
        assert rig.feed(past, n - 1) == spec.bit
        assert rig.feed(interruption, 3) == spec.bit  # 3 in 8: the run restarts
    assert rig.feed(past, n - 1) == spec.bit
    assert rig.feed(past) == 0


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_release_tolerates_two_gaps_in_eight(spec: Spec) -> None:
    rig = Rig(spec)
    rig.trip_now()
    n = spec.samples_to_release()
    if n < 4:
        return
    past = spec.short_of(spec.release, 10)
    assert rig.feed(past, 1) == spec.bit
    assert rig.feed(spec.beyond(spec.trip), 2) == spec.bit  # two back past the limit
    assert rig.feed(past, n - 4) == spec.bit
    assert rig.feed(past) == 0, "the gaps postponed the release"


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_only_its_own_bit(spec: Spec) -> None:
    """Tripping one protection sets its bit alone; others stay clear."""
    rig = Rig(spec)
    rig.trip_now()
    assert rig.p.faults | rig.p.warnings | rig.p.alarms == spec.bit
    for i in range(rig.p.count):
        assert rig.p.active[i] == (1 if rig.p.bit[i] == spec.bit else 0)


def test_zero_delay_trips_and_releases_on_one_sample() -> None:
    spec = SPECS[0]
    p = Protection(LIMITS, {spec.name: (0, 0)})
    m = Meas()
    m.set(spec.quantity, spec.beyond(spec.trip))
    p.load(m)
    assert p.step(DT_MS) == spec.bit
    m.set(spec.quantity, spec.normal)
    p.load(m)
    assert p.step(DT_MS) == 0


# -- Bms with a fake HAL, random input over time -----------------------------


class FakeHal(Hal):
    """Sensors driven by the test; set_output calls recorded."""

    def __init__(self, n_cells: int, n_temps: int, zero_code: int) -> None:
        self.cells = [0] * n_cells
        self.temps = [0] * n_temps
        self.current = zero_code
        self.outputs: list[bool] = []
        self.directions: list[tuple[bool, bool]] = []

    def sample(self, raw_cells: Any, raw_temps: Any) -> int:
        for i, c in enumerate(self.cells):
            raw_cells[i] = c
        for i, t in enumerate(self.temps):
            raw_temps[i] = t
        return self.current

    def set_output(self, closed: bool) -> None:
        self.outputs.append(closed)

    def set_directions(self, charge: Any, discharge: Any) -> None:
        self.directions.append((bool(charge), bool(discharge)))

    def unique_id(self) -> bytes:
        return b"\x01\x02\x03\x04\x05\x06\x07\x08"

    def storage_dir(self) -> None:
        return None  # nothing survives a reset


class NullPort:
    def __init__(self) -> None:
        self.written = 0

    def readinto(self, buf: Any) -> int:
        return 0

    def write(self, data: Any) -> int:
        self.written += len(data)
        return len(data)


FE = SIM_BOARD["frontend"]
CELL_MAX = (1 << FE["cell_adc"]["bits"]) - 1
CUR_MAX = (1 << FE["current_adc"]["bits"]) - 1
CUR_ZERO = FE["current_adc"]["zero_code"]
TEMP_MAX = (1 << FE["temp_adc"]["bits"]) - 1


def cell_code(mv: int) -> int:
    return max(0, min(CELL_MAX, round(mv * CELL_MAX / FE["cell_adc"]["full_scale_mv"])))


def current_code(ma: int) -> int:
    lsb = FE["current_adc"]["full_scale_ma"] / (CUR_MAX - CUR_ZERO)
    return max(0, min(CUR_MAX, CUR_ZERO + round(ma / lsb)))


# NTC divider codes from very hot to very cold (the 12-bit sim board).
TEMP_CODES = [150, 300, 500, 700, 1000, 1500, 2000, 2500, 3000, 3300, 3500, 3700,
              3800, 3900, 4000, 4050, TEMP_MAX]

cell_mv_st = st.one_of(
    st.integers(2700, 4350),
    st.sampled_from([2799, 2800, 2850, 2851, 4149, 4150, 4250, 4251]),
)
current_ma_st = st.one_of(
    st.integers(-17000, 8000),
    st.sampled_from([-15002, -15000, -7500, 0, 3000, 6000, 6002]),
)


class BmsMachine(RuleBasedStateMachine):
    """Random measurements, held for random times, through Bms.step."""

    def __init__(self) -> None:
        super().__init__()
        self.hal = FakeHal(SIM_BOARD["cells"], SIM_BOARD["temp_sensors"], CUR_ZERO)
        self.hal.cells = [cell_code(3700)] * SIM_BOARD["cells"]
        self.hal.temps = [2000] * SIM_BOARD["temp_sensors"]
        self.bms = Bms(SIM_BOARD, self.hal, NullPort())
        self.steps = 0
        self.fault_steps = 0
        self.expected_latched = 0  # the model: every trip latches until a clear

    @initialize()
    def opens_at_boot(self) -> None:
        assert self.hal.outputs == [False]
        assert not self.bms.output_closed

    @rule(i=st.integers(0, SIM_BOARD["cells"] - 1), mv=cell_mv_st)
    def set_cell(self, i: int, mv: int) -> None:
        self.hal.cells[i] = cell_code(mv)

    @rule(i=st.integers(0, SIM_BOARD["temp_sensors"] - 1), code=st.sampled_from(TEMP_CODES))
    def set_temp(self, i: int, code: int) -> None:
        self.hal.temps[i] = code

    @rule(ma=current_ma_st)
    def set_current(self, ma: int) -> None:
        self.hal.current = current_code(ma)

    @rule(code=st.integers(0, CUR_MAX))
    def set_current_raw(self, code: int) -> None:
        self.hal.current = code

    @rule()
    def all_nominal(self) -> None:
        """Everything back to normal, so faults get to release as well as trip."""
        self.hal.cells = [cell_code(3700)] * SIM_BOARD["cells"]
        self.hal.temps = [2000] * SIM_BOARD["temp_sensors"]
        self.hal.current = CUR_ZERO

    @rule()
    def clear_faults(self) -> None:
        """The host asks to clear: only latches whose condition is gone clear."""
        cleared = self.bms.clear_faults()
        assert cleared == self.expected_latched & ~self.bms.protection.faults
        self.expected_latched &= self.bms.protection.faults

    @rule(dt_ms=st.sampled_from([10, 100, 100, 100, 250, 1000]), n=st.integers(1, 120))
    def run(self, dt_ms: int, n: int) -> None:
        for _ in range(n):
            self.bms.step(dt_ms)
            self.check_step()

    def check_step(self) -> None:
        bms = self.bms
        faults = bms.protection.faults
        self.expected_latched |= faults
        held = faults | bms.latched
        self.steps += 1
        if faults:
            self.fault_steps += 1
        assert bms.latched == self.expected_latched  # a latch never clears by itself
        if _opens(bms, held):  # open on any held fault but a one-way one
            assert bms.state == STATE_FAULT and not bms.output_closed
        elif held:  # a cell-voltage fault on a dual-switch board: its direction stopped
            assert bms.state == STATE_FAULT
            charge, discharge = self.hal.directions[-1]
            cw, dw = bms.one_way
            assert not (held & cw and charge) and not (held & dw and discharge)
        elif bms.output_closed:
            assert bms.state == STATE_ACTIVE
        else:  # never closes onto a condition whose trip delay is running
            assert bms.protection.pending_trips and bms.state == STATE_STANDBY
        assert self.hal.outputs[-1] == bms.output_closed
        # set_output only on changes
        outs = self.hal.outputs
        assert len(outs) < 2 or outs[-1] != outs[-2]

    @invariant()
    def output_never_closed_with_a_fault(self) -> None:
        if _opens(self.bms, self.bms.protection.faults | self.bms.latched):
            assert not self.bms.output_closed
            assert not self.hal.outputs[-1]


def _opens(bms: Bms, held: int) -> bool:
    """Whether the held fault bits open the output: any but the cell-voltage limits of a
    dual-switch board, which stop only their direction (both at once open it)."""
    cw, dw = bms.one_way
    return bool(held & ~(cw | dw)) or bool(held & cw and held & dw)


BmsMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBmsOutput = BmsMachine.TestCase


def test_bms_machine_reaches_faults_and_recovery() -> None:
    """The random machine is not vacuous: a fixed scenario trips and releases through Bms."""
    m = BmsMachine()
    m.opens_at_boot()
    m.run(100, 5)
    assert m.bms.output_closed and m.bms.state == STATE_ACTIVE
    for i in range(SIM_BOARD["cells"]):  # every cell, so the spread stays small
        m.set_cell(i, 4300)
    m.run(100, samples_to(1000) - 1)
    assert m.bms.output_closed
    m.run(100, 1)
    # sim-4s has separate charge and discharge FETs: over-voltage stops charging only
    assert m.bms.protection.faults == codec.FAULT_CELL_OVERVOLTAGE
    assert m.bms.output_closed and m.hal.directions[-1] == (False, True)
    for i in range(SIM_BOARD["cells"]):
        m.set_cell(i, 4100)
    m.run(100, samples_to(2000))
    assert m.bms.protection.faults == 0  # the condition released ...
    assert m.bms.state == STATE_FAULT and m.hal.directions[-1] == (False, True)  # ... latched
    m.run(100, 50)
    assert m.bms.state == STATE_FAULT
    m.clear_faults()
    m.run(100, 1)
    assert m.bms.state == STATE_ACTIVE and m.hal.directions[-1] == (True, True)
    m.set_current(-16000)
    m.run(100, samples_to(500))
    assert m.bms.protection.faults == codec.FAULT_OVERCURRENT_DISCHARGE
    assert m.hal.outputs == [False, True, False]


def test_a_cell_voltage_fault_opens_the_output_of_a_single_switch_board() -> None:
    """The same over-voltage on one switch for both directions: nothing but opening."""
    hal = FakeHal(SIM_BOARD["cells"], SIM_BOARD["temp_sensors"], CUR_ZERO)
    hal.cells = [cell_code(3700)] * SIM_BOARD["cells"]
    hal.temps = [2000] * SIM_BOARD["temp_sensors"]
    bms = Bms({**SIM_BOARD, "switches": "single"}, hal, NullPort())
    assert bms.one_way == (0, 0)
    for _ in range(5):
        bms.step(100)
    hal.cells = [cell_code(4300)] * SIM_BOARD["cells"]
    for _ in range(samples_to(1000)):
        bms.step(100)
    assert bms.protection.faults == codec.FAULT_CELL_OVERVOLTAGE
    assert not bms.output_closed and hal.outputs == [False, True, False]


def test_on_a_dual_switch_board_only_the_cell_voltage_limits_stop_one_way() -> None:
    bms = BmsMachine().bms
    cw, dw = bms.one_way
    assert cw == codec.FAULT_CELL_OVERVOLTAGE
    assert dw == codec.FAULT_CELL_UNDERVOLTAGE  # deep discharge opens both: not charged


def test_a_warning_is_reported_but_never_opens_or_latches() -> None:
    m = BmsMachine()
    m.opens_at_boot()
    m.run(100, 5)
    m.set_cell(0, 4100)  # 400 mV above the others: imbalance, no voltage limit crossed
    m.run(100, samples_to(5000))
    bms = m.bms
    assert bms.warnings == codec.FAULT_CELL_IMBALANCE
    assert bms.protection.faults == 0 and bms.latched == 0
    assert bms.output_closed and bms.state == STATE_ACTIVE
    m.set_cell(0, 3700)
    m.run(100, samples_to(10000))
    assert bms.warnings == 0 and bms.output_closed


# -- every protection through Bms: severity, latch across a reset, clear ---------


class StoredHal(FakeHal):
    """FakeHal with a flash folder (latches survive a new Bms)."""

    def __init__(self, storage: str) -> None:
        super().__init__(SIM_BOARD["cells"], SIM_BOARD["temp_sensors"], CUR_ZERO)
        self.storage = storage

    def storage_dir(self) -> str:  # type: ignore[override]
        return self.storage


@dataclass
class ForcedMeasurement(Meas):
    """The measurement a test dictates: Bms.step's update() leaves it as it is, so
    one quantity at a time can be put past a limit without finding ADC codes."""

    def __post_init__(self) -> None:
        n, t = SIM_BOARD["cells"], SIM_BOARD["temp_sensors"]
        self.raw_cells, self.raw_temps = [0] * n, [0] * t  # the HAL fills, nobody reads
        self.cells_mv, self.temps_dc = [3700] * n, [250] * t
        self.pack_mv = 3700 * n

    def update(self, *args: Any) -> None:
        pass


def forced_bms(spec: Spec, storage: str) -> tuple[Bms, StoredHal, ForcedMeasurement]:
    board = dict(SIM_BOARD)
    board["limits"] = {k: list(v) for k, v in isolated_limits(spec).items()}
    hal = StoredHal(storage)
    bms = Bms(board, hal, NullPort())
    forced = ForcedMeasurement()
    bms.meas = forced  # type: ignore[assignment]
    return bms, hal, forced


def run_steps(bms: Bms, n: int) -> None:
    for _ in range(n):
        bms.step(DT_MS)


# Which direction an alarm of each protection stops (the table's BLOCKS_* column).
ALARM_BLOCKS = {row[0]: row[8] for row in PROTECTIONS}


# The rest run from ADC codes through the real Measurement (tests/test_windows.py):
# a rise per minute and a stuck time are what a forced measurement expresses directly.
FORCED_SPECS = [s for s in SPECS if s.quantity in (Q_TEMP_RISE_DC, Q_STUCK_MS)]


@pytest.mark.parametrize("spec", FORCED_SPECS, ids=[s.name for s in FORCED_SPECS])
def test_each_protection_in_bms_latches_across_a_reset_and_clears(
        spec: Spec, tmp_path: Any) -> None:
    bms, hal, forced = forced_bms(spec, str(tmp_path))
    run_steps(bms, 3)
    assert bms.output_closed and bms.state == STATE_ACTIVE
    forced.set(spec.quantity, spec.beyond(spec.trip))
    run_steps(bms, spec.samples_to_trip() - 1)
    assert bms.output_closed and not (bms.faults | bms.alarms | bms.warnings) & spec.bit
    run_steps(bms, 1)
    if spec.severity == codec.SEVERITY_WARNING:
        assert bms.warnings == spec.bit and bms.output_closed and not bms.latched
        return
    if spec.severity == codec.SEVERITY_ALARM:
        # the output stays closed; the alarm's direction is stopped, the other is not
        blocks = ALARM_BLOCKS[spec.name]
        assert bms.alarms == spec.bit and bms.output_closed and not bms.latched
        assert hal.directions[-1] == (not blocks & 1, not blocks & 2)
        forced.set(spec.quantity, spec.normal)
        run_steps(bms, spec.samples_to_release())
        assert bms.alarms == 0 and hal.directions[-1] == (True, True)  # released by itself
        return
    assert bms.faults == spec.bit and bms.latched == spec.bit
    assert not bms.output_closed and bms.state == STATE_FAULT
    forced.set(spec.quantity, spec.normal)
    run_steps(bms, spec.samples_to_release() + 5)
    assert bms.faults == 0 and bms.latched == spec.bit and not bms.output_closed
    # a reset: a new firmware instance on the same flash boots with the latch
    bms, hal, forced = forced_bms(spec, str(tmp_path))
    assert bms.latched == spec.bit
    run_steps(bms, 20)
    assert not bms.output_closed and bms.state == STATE_FAULT and hal.outputs == [False]
    assert bms.clear_faults() == spec.bit
    run_steps(bms, 2)
    assert bms.output_closed and bms.state == STATE_ACTIVE
    # cleared for good: another reset does not bring it back
    bms, hal, forced = forced_bms(spec, str(tmp_path))
    assert bms.latched == 0


# An active fault that cannot be cleared, and severity and debounce from the board file:
# from ADC codes in tests/test_windows.py.


def test_bad_severity_in_the_board_file_is_refused() -> None:
    board = dict(SIM_BOARD)
    board["severity"] = {"cell_overvoltage": "severe"}
    with pytest.raises(ValueError, match="warning, alarm or fault"):
        Bms(board, FakeHal(4, 2, CUR_ZERO), NullPort())


def test_docs_list_every_protection() -> None:
    page = (boards_dir().parent / "docs" / "protection.md").read_text()
    for name, *_rest in PROTECTIONS:
        assert f"| `{name}` |" in page, f"docs/protection.md has no row for {name}"


def test_protection_setup_is_released_once_bms_is_built() -> None:
    """The table's rows and the board's limits are read only while Bms is built: the
    module holding them leaves sys.modules (and so RAM on a board) afterwards, and
    whatever needs it again imports it again."""
    import sys

    import cellguard_fw

    for _ in range(2):  # a second Bms builds the same way
        hal = FakeHal(SIM_BOARD["cells"], SIM_BOARD["temp_sensors"], CUR_ZERO)
        bms = Bms(SIM_BOARD, hal, NullPort())
        assert "cellguard_fw.protection_setup" not in sys.modules
        assert not hasattr(cellguard_fw, "protection_setup")
        assert bms.protection.count == len(protection_table()) == len(PROTECTIONS)
        assert "cellguard_fw.protection_setup" in sys.modules  # imported again on demand
