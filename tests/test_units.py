"""cellguard.units: the one duration parser, numbers without negative zero, JSON rounding."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cellguard.units import (
    DURATION_UNITS,
    fixed,
    parse_duration,
    plural,
    round_json,
    to_json,
)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), ("90s", 90.0), (" 90 s ", 90.0), ("1500ms", 1.5), ("15m", 900.0),
    ("15min", 900.0), ("1.5h", 5400.0), ("1.5H", 5400.0), ("2d", 172800.0), (".5", 0.5),
    ("1:30", 90.0), ("90:00", 5400.0), ("1:30:00", 5400.0), ("0:00:01.5", 1.5),
    ("10:05.25", 605.25), ("3:00:00", 10800.0),
])
def test_duration_forms(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "words"), [
    ("soon", "not a time"), ("", "not a time"), ("-5", "not a time"), ("5 years", "unknown unit"),
    ("1:75", "seconds must be below 60 in M:SS"), ("1:60:00", "minutes must be below 60"),
    ("1:2:3:4", "M:SS or H:MM:SS"), ("1.5:30", "only the seconds may have decimals"),
    ("1:", "every field is a number"), ("inf", "not a time"), ("nan", "not a time"),
])
def test_duration_errors_say_why(text: str, words: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_duration(text)
    assert words in str(exc.value) and repr(text) in str(exc.value)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(DURATION_UNITS)))
def test_a_number_with_a_unit_is_that_many_units(n: int, unit: str) -> None:
    assert parse_duration(f"{n}{unit}") == pytest.approx(n * DURATION_UNITS[unit])


@given(st.integers(min_value=0, max_value=500), st.integers(min_value=0, max_value=59),
       st.integers(min_value=0, max_value=59))
def test_clock_forms_agree_with_seconds(h: int, m: int, s: int) -> None:
    assert parse_duration(f"{h}:{m:02d}:{s:02d}") == h * 3600 + m * 60 + s
    assert parse_duration(f"{h * 60 + m}:{s:02d}") == h * 3600 + m * 60 + s  # M:SS


@given(st.text(max_size=12))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        assert "not a time" in str(exc)
    else:
        assert math.isfinite(value) and value >= 0


def test_fixed_never_prints_a_negative_zero() -> None:
    assert fixed(-0.0, 4) == "0.0000"
    assert fixed(-0.00001, 3, "Ah") == "0.000 Ah"
    assert fixed(-0.00001, 3, sign=True) == "+0.000"
    assert fixed(-0.0021, 3) == "-0.002"
    assert fixed(1.26, 1, "V", sign=True) == "+1.3 V"


def test_plural() -> None:
    assert [plural(n, "row") for n in (0, 1, 2)] == ["0 rows", "1 row", "2 rows"]
    assert plural(1, "board restart") == "1 board restart"
    assert plural(3, "temperature") == "3 temperatures"


def test_json_floats_are_rounded_by_their_unit() -> None:
    data = {"duration_s": 0.1 + 0.2, "charge_in_ah": 0.30000000000000016,
            "cells_v": [3.7500000000000004, 4.1234567], "percentiles_mv": {"p50": 1.23456},
            "temp_c": 25.0333333, "soc_pct": 49.99999999, "bias_a": 2.76957e-11,
            "r0_growth": 1.00000000001, "nan_v": math.nan, "zero_a": -0.0, "n": 3,
            "ok": True, "name": "x", "none": None, "host_time": 1700000000.1234567}
    out = json.loads(to_json(data))
    assert out == {"duration_s": 0.3, "charge_in_ah": 0.3, "cells_v": [3.75, 4.1235],
                   "percentiles_mv": {"p50": 1.23}, "temp_c": 25.03, "soc_pct": 50.0,
                   "bias_a": 0.0, "r0_growth": 1.0, "nan_v": None, "zero_a": 0.0, "n": 3,
                   "ok": True, "name": "x", "none": None, "host_time": 1700000000.123457}
    assert "-0.0" not in to_json(data)
    assert round_json([0.1 + 0.2]) == [0.3]
