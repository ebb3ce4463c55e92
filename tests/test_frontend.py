"""Front end: ADC codes to mV, mA and 0.1 degC for every board file."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellguard.paths import boards_dir
from cellguard_fw.frontend import Frontend, LinearChannel, NtcChannel

SMALL_INT_LIMIT = 1 << 30  # MicroPython small ints (30-bit ports) stay below this


def load_boards() -> dict[str, dict[str, Any]]:
    boards: dict[str, dict[str, Any]] = {}
    for path in sorted(boards_dir().glob("*.json")):
        with open(path) as f:
            boards[path.stem] = json.load(f)
    return boards


BOARDS = {name: board for name, board in load_boards().items()
          if "type" not in board["frontend"]}
"""Boards whose MCU's ADC measures (a monitor chip's front end: test_bq76952_driver.py)."""


@dataclass(frozen=True)
class LinearCase:
    board: str
    channel: str  # "cell" or "current"
    bits: int
    full_scale: int
    zero_code: int

    @property
    def id(self) -> str:
        return f"{self.board}-{self.channel}"

    @property
    def max_code(self) -> int:
        return (1 << self.bits) - 1

    @property
    def lsb(self) -> float:
        """One ADC code in output units (mV or mA)."""
        return self.full_scale / (self.max_code - self.zero_code)

    def exact(self, code: int) -> float:
        return (code - self.zero_code) * self.lsb

    def ideal_code(self, value: int) -> int:
        """The code an ideal ADC reads for ``value`` (rounded, clipped)."""
        return max(0, min(self.max_code, self.zero_code + round(value / self.lsb)))

    def make(self) -> LinearChannel:
        return LinearChannel(self.bits, self.full_scale, self.zero_code)


def linear_cases() -> list[LinearCase]:
    out = []
    for name, board in BOARDS.items():
        fe = board["frontend"]
        c = fe["cell_adc"]
        out.append(LinearCase(name, "cell", c["bits"], c["full_scale_mv"], 0))
        i = fe["current_adc"]
        out.append(LinearCase(name, "current", i["bits"], i["full_scale_ma"], i["zero_code"]))
    return out


LINEAR = linear_cases()
LINEAR_IDS = [c.id for c in LINEAR]


def test_every_board_is_covered() -> None:
    assert set(BOARDS) >= {"sim-4s", "esp32-4s", "pico-4s"}
    assert len(LINEAR) == 2 * len(BOARDS)
    assert any(c.zero_code > 0 for c in LINEAR), "no bipolar (current) channel tested"


def exact_rounded(code: int, full_scale: int, zero_code: int, max_code: int) -> int:
    """round((code - zero) * full_scale / (max_code - zero)), halves away from zero."""
    x = code - zero_code
    v = math.floor(Fraction(abs(x) * full_scale, max_code - zero_code) + Fraction(1, 2))
    return -v if x < 0 else v


@pytest.mark.parametrize("case", LINEAR, ids=LINEAR_IDS)
def test_linear_channel_is_exactly_rounded(case: LinearCase) -> None:
    ch = case.make()
    for code in range(case.max_code + 1):
        expected = exact_rounded(code, case.full_scale, case.zero_code, case.max_code)
        assert ch.convert(code) == expected, f"{case.id}: code {code}"


@pytest.mark.parametrize("case", LINEAR, ids=LINEAR_IDS)
def test_linear_channel_within_one_lsb_of_exact(case: LinearCase) -> None:
    """Every code converts to the exact transfer value, within 1 LSB (or 0.5 output
    unit where one output unit is coarser than an LSB: the result is an integer)."""
    ch = case.make()
    tol = max(case.lsb, 0.5) + 1e-9
    worst = max(abs(ch.convert(code) - case.exact(code)) for code in range(case.max_code + 1))
    assert worst <= tol, f"{case.id}: off by {worst:.3f} (1 LSB = {case.lsb:.4f})"


@pytest.mark.parametrize("case", LINEAR, ids=LINEAR_IDS)
def test_linear_channel_round_trips_values(case: LinearCase) -> None:
    """value -> ideal ADC code -> convert gives the value back within 1 LSB,
    for every integer value in range, negative currents included."""
    ch = case.make()
    lo = math.ceil(case.exact(0))
    hi = math.floor(case.exact(case.max_code))
    tol = max(case.lsb, 1.0) + 1e-9
    bad = [v for v in range(lo, hi + 1) if abs(ch.convert(case.ideal_code(v)) - v) > tol]
    assert not bad, f"{case.id}: {len(bad)} values off by more than 1 LSB, e.g. {bad[-3:]}"
    if case.zero_code:
        assert lo < 0 < hi


@pytest.mark.parametrize("case", LINEAR, ids=LINEAR_IDS)
def test_linear_channel_round_trips_codes(case: LinearCase) -> None:
    """code -> value -> ideal code comes back within 1 LSB; where one output unit
    spans several codes (cells: 1 mV = 13 codes) within the half unit's codes."""
    ch = case.make()
    tol = max(1, math.ceil(0.5 / case.lsb))
    worst = max(abs(case.ideal_code(ch.convert(code)) - code)
                for code in range(case.max_code + 1))
    assert worst <= tol, f"{case.id}: code round trip off by {worst} codes (tolerance {tol})"


@pytest.mark.parametrize("case", LINEAR, ids=LINEAR_IDS)
def test_linear_channel_zero_sign_and_monotonic(case: LinearCase) -> None:
    ch = case.make()
    assert ch.convert(case.zero_code) == 0
    prev = ch.convert(0)
    for code in range(1, case.max_code + 1):
        v = ch.convert(code)
        assert v >= prev, f"{case.id}: not monotonic at code {code}"
        assert (v >= 0) == (code >= case.zero_code) or v == 0
        prev = v
    # bipolar channels are symmetric around the zero code (charge = -discharge)
    if case.zero_code:
        for d in range(1, min(case.zero_code, case.max_code - case.zero_code) + 1):
            assert ch.convert(case.zero_code + d) == -ch.convert(case.zero_code - d)


class TrackedInt(int):
    """An int whose arithmetic results are TrackedInts, recording the largest
    magnitude any intermediate reaches: a check of the bound that does not
    depend on how convert() splits its arithmetic."""

    peak = 0

    @classmethod
    def track(cls, value: int) -> TrackedInt:
        TrackedInt.peak = max(TrackedInt.peak, abs(value))
        return cls(value)


def _tracked(name: str) -> Any:
    op = getattr(int, name)

    def method(self: TrackedInt, *args: Any) -> Any:
        result = op(self, *args)
        if isinstance(result, bool) or not isinstance(result, int):
            return result
        return TrackedInt.track(result)

    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
              "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__lshift__",
              "__rlshift__", "__rshift__", "__rrshift__", "__and__", "__rand__", "__or__",
              "__ror__", "__neg__", "__abs__", "__divmod__"):
    setattr(TrackedInt, _name, _tracked(_name))


def peak_intermediate(ch: LinearChannel, codes: Any) -> int:
    TrackedInt.peak = 0
    for code in codes:
        v = ch.convert(TrackedInt(code))
        assert isinstance(v, TrackedInt), "arithmetic escaped the tracking"
    for const in (ch.num, ch.den, ch.zero, ch.max_code, *vars(ch).values()):
        if isinstance(const, int):
            TrackedInt.peak = max(TrackedInt.peak, abs(const))
    return TrackedInt.peak


def test_tracked_int_sees_intermediates() -> None:
    TrackedInt.peak = 0
    x = TrackedInt(3) * 1000 // 7 + (TrackedInt(5) << 20)
    assert x == 3000 // 7 + (5 << 20)
    assert TrackedInt.peak == 3000 // 7 + (5 << 20)


@pytest.mark.parametrize("case", LINEAR, ids=LINEAR_IDS)
def test_linear_intermediates_stay_small(case: LinearCase) -> None:
    """Every intermediate of convert() stays a MicroPython small int for every
    code (and for any u16 a HAL might hand over)."""
    ch = case.make()
    peak = peak_intermediate(ch, range(1 << 16))
    assert peak < SMALL_INT_LIMIT, f"{case.id}: intermediate {peak} >= 2**30"
    # the naive single product (code - zero) * num may be large: the firmware
    # must not compute it in one go when it is (sim-4s current: 32768 * 50000)
    naive = max(case.zero_code, case.max_code - case.zero_code) * ch.num
    if naive >= SMALL_INT_LIMIT:
        assert peak < naive


@settings(max_examples=300, deadline=None)
@given(bits=st.integers(8, 16), full_scale=st.integers(1, (1 << 21) - 1),
       zero=st.floats(0, 0.9), codes=st.lists(st.floats(0, 1), max_size=50))
def test_linear_intermediates_stay_small_for_any_config(bits: int, full_scale: int,
                                                       zero: float, codes: list[float]) -> None:
    """Any accepted config (<= 16 bits, scale < 2**21), any code in range."""
    max_code = (1 << bits) - 1
    zero_code = int(max_code * zero)
    ch = LinearChannel(bits, full_scale, zero_code)
    extremes = [0, max_code, zero_code, max(zero_code - 1, 0)]
    in_range = [int(c * max_code) for c in codes]
    assert peak_intermediate(ch, extremes + in_range) < SMALL_INT_LIMIT


@settings(max_examples=300, deadline=None)
@given(bits=st.integers(8, 16), full_scale=st.integers(1, (1 << 21) - 1),
       zero=st.floats(0, 0.9), codes=st.lists(st.floats(0, 1), max_size=50))
def test_linear_channel_is_exact_for_any_config(bits: int, full_scale: int, zero: float,
                                                codes: list[float]) -> None:
    max_code = (1 << bits) - 1
    zero_code = int(max_code * zero)
    ch = LinearChannel(bits, full_scale, zero_code)
    for code in [0, max_code, zero_code, *(int(c * max_code) for c in codes)]:
        assert ch.convert(code) == exact_rounded(code, full_scale, zero_code, max_code)


def test_linear_channel_rejects_what_it_cannot_convert_exactly() -> None:
    with pytest.raises(ValueError):
        LinearChannel(17, 5000)
    with pytest.raises(ValueError):
        LinearChannel(16, (1 << 21) * 65535)


# -- NTC ------------------------------------------------------------------------


@dataclass(frozen=True)
class NtcCase:
    board: str
    bits: int
    r25_ohm: int
    beta: int
    pullup_ohm: int

    @property
    def max_code(self) -> int:
        return (1 << self.bits) - 1

    def code_at(self, t_degc: float) -> int:
        """The code a real divider gives: NTC to ground, pull-up to the reference."""
        t_k = t_degc + 273.15
        r = self.r25_ohm * math.exp(self.beta * (1 / t_k - 1 / 298.15))
        return round(self.max_code * r / (r + self.pullup_ohm))

    def make(self) -> NtcChannel:
        return NtcChannel(self.bits, self.r25_ohm, self.beta, self.pullup_ohm)


def ntc_cases() -> list[NtcCase]:
    out = []
    for name, board in BOARDS.items():
        t = board["frontend"]["temp_adc"]
        out.append(NtcCase(name, t["bits"], t["ntc_r25_ohm"], t["ntc_beta"], t["pullup_ohm"]))
    return out


NTC = ntc_cases()
NTC_IDS = [c.board for c in NTC]


@pytest.mark.parametrize("case", NTC, ids=NTC_IDS)
def test_ntc_matches_beta_equation(case: NtcCase) -> None:
    ch = case.make()
    worst = 0.0
    for tenth in range(-200, 801):  # -20.0 .. 80.0 degC
        t = tenth / 10
        got = ch.convert(case.code_at(t)) / 10
        worst = max(worst, abs(got - t))
    assert worst <= 0.5, f"{case.board}: NTC off by {worst:.2f} degC"


@pytest.mark.parametrize("case", NTC, ids=NTC_IDS)
def test_ntc_reference_points(case: NtcCase) -> None:
    ch = case.make()
    # with the pull-up equal to R25, 25 degC sits at mid-scale
    assert abs(ch.convert(case.code_at(25.0)) - 250) <= 5
    assert abs(ch.convert(case.code_at(-20.0)) + 200) <= 5
    assert abs(ch.convert(case.code_at(60.0)) - 600) <= 5


@pytest.mark.parametrize("case", NTC, ids=NTC_IDS)
def test_ntc_open_reads_very_cold_and_short_very_hot(case: NtcCase) -> None:
    ch = case.make()
    assert ch.convert(case.max_code) <= -500, "open sensor (code = full scale) must read cold"
    assert ch.convert(0) >= 1000, "shorted sensor (code 0) must read hot"
    # a HAL handing over an out-of-range code (u16 on a narrower ADC) reads cold too
    for code in (case.max_code + 1, 0xFFFF):
        assert ch.convert(code) <= -500


@pytest.mark.parametrize("case", NTC, ids=NTC_IDS)
def test_ntc_is_monotonic(case: NtcCase) -> None:
    ch = case.make()
    prev = ch.convert(0)
    for code in range(1, case.max_code + 1):
        v = ch.convert(code)
        assert v <= prev, f"{case.board}: temperature rises with code at {code}"
        assert -550 <= v <= 1500
        prev = v


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_frontend_from_board(name: str) -> None:
    cfg = BOARDS[name]["frontend"]
    fe = Frontend(cfg)
    cell_max = (1 << cfg["cell_adc"]["bits"]) - 1
    assert fe.cell.convert(cell_max) == cfg["cell_adc"]["full_scale_mv"]
    assert fe.current.convert(cfg["current_adc"]["zero_code"]) == 0
    assert fe.temp.max_code == (1 << cfg["temp_adc"]["bits"]) - 1
    if "pack_adc" in cfg:  # the pack-voltage divider, read only where the board has one
        pack = cfg["pack_adc"]
        assert fe.pack is not None
        assert fe.pack.convert((1 << pack["bits"]) - 1) == pack["full_scale_mv"]
    else:
        assert fe.pack is None


def test_an_ntc_reading_within_1_percent_of_the_rail_or_the_converters_full_scale_is_open(
) -> None:
    """An open NTC: the pull-up takes the input to the rail, or where the converter
    saturates below it (an ESP32 at 11 dB: 2450 mV of a 3300 mV rail, code 48655 of
    65535) to that full scale; 1 % of the code range below either counts as open."""
    rail = NtcChannel(16, 10000, 3435, 33000)
    assert rail.open_code == 65535 - 655
    assert NtcChannel(16, 10000, 3435, 33000, full_code=0).open_code == 65535 - 655
    assert NtcChannel(16, 10000, 3435, 33000, full_code=65535).open_code == 65535 - 655
    assert NtcChannel(16, 10000, 3435, 33000, full_code=70000).open_code == 65535 - 655
    saturating = NtcChannel(16, 10000, 3435, 33000, full_code=48655)
    assert saturating.open_code == 48655 - 655
    assert NtcChannel(12, 10000, 3435, 10000, full_code=3000).open_code == 3000 - 40
    # any full scale from 1 code up to below max_code is taken as it is
    assert NtcChannel(12, 10000, 3435, 10000, full_code=1).open_code == 1 - 40
    assert NtcChannel(12, 10000, 3435, 10000, full_code=4094).open_code == 4094 - 40
    fe = Frontend({**json.loads((boards_dir() / "esp32-4s.json").read_text())["frontend"]})
    assert fe.temp.open_code == 65535 - 655  # the board file alone: the rail
    cfg = json.loads((boards_dir() / "esp32-4s.json").read_text())["frontend"]
    cfg["temp_adc"]["full_code"] = 48655  # what hal_adc_mux sets on an ESP32
    assert Frontend(cfg).temp.open_code == 48000
