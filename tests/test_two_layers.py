"""The two protection layers' reaction times (benchmarks/two_layers.py, the section "Two
layers" of docs/reaction-times.md) on sim-bq76952-16s.

The measurement runs under CPython (deterministic, fast); the short with the MCU hung
runs under real MicroPython too and must give the same numbers. The chip's delays are
checked against the TRM's encodings of the codes read back from its data memory, not
against the model's own conversion. Every time asserted is simulated time.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tl = _load("two_layers")
ARMED = ["COV", "CUV", "OCC", "OCD1", "OCD2", "SCD", "OTC", "OTD", "UTC", "UTD"]
# Safety Status A / B bits (TRM), as the firmware's afe_protection value holds them
# (A | B << 8 | C << 16).
STATUS_BIT = {"CUV": 0x04, "COV": 0x08, "OCC": 0x10, "OCD1": 0x20, "OCD2": 0x40,
              "SCD": 0x80, "UTC": 0x01 << 8, "UTD": 0x02 << 8, "OTC": 0x10 << 8,
              "OTD": 0x20 << 8}
SCAN_MS = 3.0  # one ADC scan of the chip
WATCHDOG_MS = 2000  # sim-bq76952-16s has the simulated board's default


@pytest.fixture(scope="module")
def rows() -> list[Any]:  # list of two_layers.Row
    return tl.measure("cpython")


def _trm_delay_ms(name: str, code: int) -> float:
    """The TRM's delay for a register code: COV/CUV/OCC/OCD n x 3.3 ms + 6.6 ms, SCD
    (n - 1) x 15 us (1: none), temperatures n seconds."""
    if name == "SCD":
        return max(code - 1, 0) * 0.015
    if name[:2] in ("OT", "UT"):
        return code * 1000.0
    return code * 3.3 + 6.6


def test_the_docs_section_is_up_to_date(rows: list[Any]) -> None:
    page = (ROOT / tl.DOCS_PAGE).read_text()
    _, section, _ = tl.split_page(page)
    assert section == tl.render_section(rows, "cpython"), (
        f"{tl.DOCS_PAGE} section 'Two layers' is out of date: run `{tl.COMMAND}`")


def test_the_two_generators_share_the_page_without_a_fight() -> None:
    rt = _load("reaction_times")
    page = (ROOT / tl.DOCS_PAGE).read_text()
    own = rt.own_part(page)  # what reaction_times.py compares and rewrites
    before, section, after = tl.split_page(page)
    assert tl.BEGIN not in own and section and not after
    assert before == own + "\n"  # reaction_times.py's --write-docs keeps the rest
    assert "## Two layers" in section


def test_every_protection_the_hal_arms_is_measured(rows: list[Any]) -> None:
    assert [r.chip for r in rows if not r.hung] == ARMED
    assert [r.chip for r in rows if r.hung] == ["SCD"]


def test_the_firmware_trips_first_wherever_it_sees_the_condition(rows: list[Any]) -> None:
    for r in rows:
        if r.hung:
            continue
        fw, chip = r.firmware_run, r.chip_run
        assert chip.firmware_severity in ("", "warning"), r.chip  # out of the way
        if r.chip == "SCD":
            # The chip opens within the plant step the short begins in: the firmware's
            # short_circuit never sees the current, and the chip acts alone.
            assert fw.firmware_trip_ms is None and fw.chip_trip_ms is not None
            assert fw.chip_opened
            continue
        assert fw.firmware_severity == "fault", r.chip
        assert fw.onset_ms is not None and fw.firmware_trip_ms is not None
        assert fw.firmware_trip_ms < chip.chip_trip_ms, r.chip
        assert r.firmware_first is True
        # its reaction in whole control periods: first sample, then its delay
        assert r.firmware_reaction_ms % r.period_ms == 0, r.chip


def test_the_chips_scd_reaction_is_its_programmed_delay(rows: list[Any]) -> None:
    for r in (r for r in rows if r.chip == "SCD"):
        programmed_us = (r.delay_code - 1) * 15
        assert 60 <= programmed_us < 75  # the HAL's 60 us, rounded up to the 15 us step
        assert abs(r.chip_reaction_ms * 1000 - programmed_us) <= 15, r.chip_reaction_ms
        assert r.chip_run.chip_opened


def test_each_chip_reaction_is_within_its_programmed_delay_and_one_scan(
        rows: list[Any]) -> None:
    for r in rows:
        delay = _trm_delay_ms(r.chip, r.delay_code)
        assert r.programmed_delay_ms == pytest.approx(delay), r.chip
        # (the chip's clock is a float of ms: a trip ~1e-11 ms early is rounding)
        assert delay - 1e-6 <= r.chip_reaction_ms <= delay + SCAN_MS, (
            r.chip, r.chip_reaction_ms)
        assert r.chip_run.chip_opened, r.chip  # the chip's FETs went off


def test_the_firmware_reports_each_chip_trip_within_one_control_period(
        rows: list[Any]) -> None:
    for r in rows:
        assert r.chip_run.report_value & STATUS_BIT[r.chip], (r.chip, r.chip_run.report_value)
        if r.hung:
            # The MCU is hung: the report comes once the watchdog has reset it.
            assert r.chip_run.watchdog_resets == 1
            assert WATCHDOG_MS - 500 <= r.report_after_ms <= WATCHDOG_MS + r.period_ms
        else:
            assert 0 <= r.report_after_ms <= r.period_ms, (r.chip, r.report_after_ms)


def test_the_hung_short_gives_the_same_numbers_under_micropython(rows: list[Any]) -> None:
    cpython = next(r for r in rows if r.hung)
    micropython = tl.hung_row("micropython")
    assert asdict(micropython) == asdict(cpython)
