"""The generated reaction-time table (benchmarks/reaction_times.py, docs/reaction-times.md).

The measurements run under the CPython runtime (fast); every protection is run
under real MicroPython too (about half a minute) and must give the same runs and
the same table, which is what lets the page generated under MicroPython be
checked against a CPython run here. The delays are checked against the safety
specification (spec/safety.toml), not against the firmware's own table.
Every time asserted is simulated time, which is deterministic; wall time never.
"""

from __future__ import annotations

import importlib.util
import itertools
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cellguard.boards import load_board
from cellguard.config.safety_spec import HOLDS, expected, load_spec, spec_path
from cellguard_fw.protection import (
    ALARM,
    FAULT,
    Q_STUCK_MS,
    Q_TEMP_RISE_DC,
    WARNING,
    protection_table,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "reaction_times.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reaction_times", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


rt = _load_script()
WANT = expected(load_spec(), load_board(rt.BOARD))
"""What the safety specification (spec/safety.toml) says, per protection: the
delays and debounce counts below are its, not the firmware table's."""
SEVERITY_CODES = {"warning": WARNING, "alarm": ALARM, "fault": FAULT}


@pytest.fixture(scope="module")
def timings() -> list[Any]:  # list of reaction_times.Timing
    return rt.measure_all("cpython")


def _held(delay_ms: int, debounce: int, period: int) -> int:
    """Sample instants from the first that sees a condition to the one that acts:
    the delay in whole periods, at least debounce - 1 periods."""
    return max(-(-delay_ms // period), debounce - 1) * period


def _first_sample_after(phase: int, onset: int, period: int) -> int:
    """From a start ``phase`` ms into a period to the first sample more than
    ``onset`` ms after it (samples every period)."""
    return ((phase + onset) // period + 1) * period - phase


def test_docs_page_is_up_to_date(timings: list[Any]) -> None:
    page = rt.own_part((ROOT / rt.DOCS_PAGE).read_text())  # two_layers.py's section: its own
    assert page == rt.render_page(timings, "micropython"), (
        f"{rt.DOCS_PAGE} is out of date: run `{rt.COMMAND}`"
    )


def test_every_protection_of_the_firmware_table_is_measured(timings: list[Any]) -> None:
    table = protection_table()
    assert [t.spec.name for t in timings] == [row[0] for row in table]
    assert all(len(t.runs) == len(rt.PHASES_MS) for t in timings)
    for t in timings:
        lim, w = t.spec.limit, WANT[t.spec.name]
        # The firmware built each at the specification's defaults: delays, severity,
        # held directions, debounce count.
        assert (lim.trip_delay_ms, lim.release_delay_ms, lim.severity, lim.blocks,
                lim.debounce) == (w.trip_delay_ms, w.release_delay_ms,
                                  SEVERITY_CODES[w.severity], HOLDS[w.holds],
                                  w.debounce), lim.name
    # The time-based quantities are measured by their scenarios, not by a step.
    kinds = {t.spec.limit.quantity: type(t.spec).__name__ for t in timings}
    assert kinds[Q_STUCK_MS] == "StuckSpec"
    assert kinds[Q_TEMP_RISE_DC] == "RiseSpec"
    # Every severity is there, so the severity tests below check something.
    assert {t.spec.limit.severity for t in timings} == {WARNING, ALARM, FAULT}


def test_trip_within_delay_debounce_and_one_period(timings: list[Any]) -> None:
    for t in timings:
        spec, lim, period = t.spec, t.spec.limit, t.period_ms
        w = WANT[lim.name]  # the specified delay and debounce count
        held = _held(w.trip_delay_ms, w.debounce, period)
        onset = spec.trip_onset_ms  # 0 for a step
        for run in t.runs:
            own = run.trips[lim.name]  # its FAULT_EVENT
            lower = onset + max(w.trip_delay_ms, (w.debounce - 1) * period)
            assert lower < own <= onset + held + period, (lim.name, run)
            assert own <= t.trip_worst_ms == onset + held + period
            # Sampled at step instants: seen at the first step after the onset.
            assert own == _first_sample_after(run.phase_ms, onset, period) + held, (lim.name, run)
            assert lim.beyond(run.trip_value), (lim.name, run.trip_value)


def test_fault_opens_the_output_and_latches(timings: list[Any]) -> None:
    faults = [t for t in timings if t.spec.limit.severity == FAULT]
    assert faults
    for t in faults:
        lim = t.spec.limit
        assert t.opens_output and t.latched, lim.name
        severities = {o.name: o.severity for o in (lim, *t.spec.crossed)}
        for run in t.runs:
            fault_trips = [ms for name, ms in run.trips.items() if severities[name] == FAULT]
            # The output opens in the step of the first fault trip (its own, or one the
            # same stimulus crossed too) and stays open without CLEAR_FAULTS.
            assert run.reaction_ms == min(fault_trips) <= run.trips[lim.name], (lim.name, run)
            assert run.release_ms is None, (lim.name, run)
            assert run.cleared_release_ms is not None


def test_alarm_clears_its_direction_and_leaves_the_output_closed(timings: list[Any]) -> None:
    alarms = [t for t in timings if t.spec.limit.severity == ALARM]
    assert alarms
    for t in alarms:
        lim = t.spec.limit
        assert lim.directions, f"{lim.name}: an alarm that blocks nothing"
        assert not t.opens_output and not t.latched, lim.name
        for run in t.runs:
            assert run.reaction_ms is None and run.release_ms is None, (lim.name, run)
            assert set(run.blocked) == set(run.unblocked) == set(lim.directions)
            for direction in lim.directions:
                assert run.blocked[direction] == run.trips[lim.name], (lim.name, run)
                assert run.unblocked[direction] == run.releases[lim.name], (lim.name, run)


def test_warning_changes_nothing_but_the_event(timings: list[Any]) -> None:
    warnings = [t for t in timings if t.spec.limit.severity == WARNING]
    assert warnings
    for t in warnings:
        lim = t.spec.limit
        assert all(o.severity == WARNING for o in t.spec.crossed), lim.name
        assert not t.opens_output, lim.name
        for run in t.runs:
            assert lim.name in run.trips and lim.name in run.releases
            assert run.reaction_ms is None and run.release_ms is None, (lim.name, run)
            assert run.blocked == {} and run.unblocked == {}, (lim.name, run)


def test_release_within_delay_debounce_and_one_period(timings: list[Any]) -> None:
    for t in timings:
        spec, lim, period = t.spec, t.spec.limit, t.period_ms
        w = WANT[lim.name]  # the specified delay and debounce count
        held = _held(w.release_delay_ms, w.debounce, period)
        severities = {o.name: o.severity for o in (lim, *spec.crossed)}
        for run in t.runs:
            # The protection itself releases (its FAULT_EVENT) within the bound ...
            own = run.releases[lim.name]
            assert max(w.release_delay_ms, (w.debounce - 1) * period) < own, (lim.name, run)
            assert own <= spec.release_worst_ms() == spec.release_bound_ms + held + period
            if spec.release_onset_ms is not None:  # known exactly: a step, a code moving
                assert own == _first_sample_after(run.phase_ms, spec.release_onset_ms,
                                                  period) + held, (lim.name, run)
            assert lim.inside(run.release_value), (lim.name, run.release_value)
            if lim.severity == FAULT:
                # ... a latched output waits for CLEAR_FAULTS, handled before the step
                # in which the protection releases: the next one closes the output.
                last = max(ms for name, ms in run.releases.items() if severities[name] == FAULT)
                assert run.cleared_release_ms == last + period, (
                    "the page explains the extra period of a latched release: update it"
                )
                assert own + period <= t.release_worst_ms
            else:
                assert own <= t.release_worst_ms == spec.release_worst_ms()


def test_stimulus_is_just_past_the_thresholds(timings: list[Any]) -> None:
    steps = [t for t in timings if isinstance(t.spec, rt.StepSpec)]
    assert len(steps) == len(timings) - 2  # all but the stuck reading and the rise
    for t in steps:
        s, lim = t.spec, t.spec.limit
        sign = 1 if lim.above else -1
        assert sign * (s.beyond_reads - lim.trip) > 0
        assert sign * (lim.release - s.inside_reads) > 0
        assert abs(s.beyond_reads - lim.trip) <= 5
        # The firmware's own events report the values the stimulus was built to give.
        assert {(r.trip_value, r.release_value) for r in t.runs} == {
            (s.beyond_reads, s.inside_reads)}
        # Back inside the release threshold of everything the stimulus crossed.
        if not s.crossed:
            assert abs(s.inside_reads - lim.release) <= 5


def _cells(codes: bytes, n: int) -> tuple[int, ...]:
    return struct.unpack_from(f"<{n}H", codes)


def test_stuck_scenario_freezes_one_code_while_current_flows(timings: list[Any]) -> None:
    (t,) = [t for t in timings if isinstance(t.spec, rt.StuckSpec)]
    s, lim, period = t.spec, t.spec.limit, t.period_ms
    board = load_board(rt.BOARD)
    n = board["cells"]
    assert s.stuck_current_ma == board.get("stuck_current_ma", board["capacity_mah"] // 10)
    assert s.current_ma > s.stuck_current_ma
    assert s.base.current_a * 1000 == s.current_ma
    t_cross, t_clear = 10 * period + 25, 30 * period + 25
    live = [_cells(s.codes(k * period, None, None), n) for k in (1, 2)]
    assert all(a != b for a, b in zip(*live, strict=True))  # every code moves
    frozen = _cells(s.codes(10 * period, None, None), n)[0]  # read last before the freeze
    during = [_cells(s.codes(k * period, t_cross, None), n) for k in range(11, 15)]
    assert {c[0] for c in during} == {frozen}
    assert all(a[1:] != b[1:] for a, b in itertools.pairwise(during))
    after = [_cells(s.codes(k * period, t_cross, t_clear), n)[0] for k in range(31, 34)]
    assert after[0] != frozen and after[1] != after[0] and after[2] != after[1]
    # The firmware counts whole periods from the last sample at which the code moved.
    assert {r.trip_value for r in t.runs} == {(lim.trip // period + 1) * period}
    assert {r.release_value for r in t.runs} == {0}


def test_rise_scenario_ramps_above_the_limit_from_a_steady_state(timings: list[Any]) -> None:
    (t,) = [t for t in timings if isinstance(t.spec, rt.RiseSpec)]
    s, lim, period = t.spec, t.spec.limit, t.period_ms
    assert s.rate_c_per_min * 10 > lim.trip  # °C/min against 0.1 °C per minute
    assert s.warmup_steps * period >= rt.RISE_SPAN_MS  # the whole history is steady
    # The onset is when the ramp has risen by about the limit (within the
    # firmware's conversion: 0.2 °C) and well inside the history.
    rise_dc = s.rate_c_per_min * 10 * (s.trip_onset_ms + 1) / 60000
    assert abs(rise_dc - (lim.trip + 1)) <= 2, rise_dc
    assert s.trip_onset_ms + period < rt.RISE_SPAN_MS - rt.RISE_SLOT_MS
    # The ramp stops at the clearing: the codes after it stay put.
    t_cross, t_clear = 1000, 40_000
    held = {s.codes(ms, t_cross, t_clear) for ms in (40_100, 45_000, 90_000)}
    assert held == {s.codes(t_clear, t_cross, None)}
    assert s.codes(20_000, t_cross, None) != s.codes(30_000, t_cross, None)
    assert {r.trip_value for r in t.runs} == {lim.trip + 1}


def test_micropython_gives_the_same_table(timings: list[Any]) -> None:
    """All protections, every phase, under real MicroPython: the page says it was
    generated there, and the docs check above compares it with CPython's runs.

    It is also the rerun that shows the page deterministic: a second, independent
    run (another interpreter, in another process) renders the very same page."""
    micropython = rt.measure_all("micropython")
    assert [t.spec.name for t in micropython] == [row[0] for row in protection_table()]
    for mp, cp in zip(micropython, timings, strict=True):
        assert mp.spec == cp.spec, cp.spec.name
        assert mp.runs == cp.runs, cp.spec.name
    assert rt.table_rows(micropython) == rt.table_rows(timings)
    assert rt.render_page(micropython, "micropython") == rt.render_page(timings, "micropython")


def test_measured_behaviour_matches_the_spec(timings: list[Any]) -> None:
    assert rt.spec_check(timings) == []


@pytest.mark.parametrize(("old", "new", "named"), [
    ("unit = \"°C\"\ntrip_delay_ms = 2000\nrelease_delay_ms = 5000\ndebounce = 1\n"
     "severity = \"fault\"\nholds = \"both\"\nsource = \"severity: iec_62619 (discharge",
     "unit = \"°C\"\ntrip_delay_ms = 20000\nrelease_delay_ms = 5000\ndebounce = 1\n"
     "severity = \"fault\"\nholds = \"both\"\nsource = \"severity: iec_62619 (discharge",
     "overtemperature (phase 0 ms): tripped after 2100 ms; the specified 20000 ms"),
    ('severity = "fault"\nholds = "both"\nsource = "severity: iec_62619 (discharge',
     'severity = "alarm"\nholds = "both"\nsource = "severity: iec_62619 (discharge',
     "overtemperature: specified alarm holding both, but the output opened"),
    ('severity = "alarm"\nholds = "charge"\nsource = "severity: nmc_datasheet (charging',
     'severity = "alarm"\nholds = "both"\nsource = "severity: nmc_datasheet (charging',
     "overtemperature_charge: specified alarm holding both, but the output stayed closed"),
    ('release_delay_ms = 2000\ndebounce = 1\nseverity = "fault"\nholds = "charge"\n'
     'source = "severity: iec_62619, foxbms2 (a maximum',
     'release_delay_ms = 3000\ndebounce = 1\nseverity = "fault"\nholds = "charge"\n'
     'source = "severity: iec_62619, foxbms2 (a maximum',
     "cell_overvoltage (phase 0 ms): released after 2100 ms; the specified 3000 ms"),
])
def test_the_spec_check_names_a_disagreement(timings: list[Any], tmp_path: Path, old: str,
                                             new: str, named: str) -> None:
    """The check is against the file, not the firmware: a spec that says otherwise
    than the firmware does (the firmware unchanged) makes it fail, naming what."""
    text = spec_path().read_text(encoding="utf-8")
    assert text.count(old) == 1
    copy = tmp_path / "safety.toml"
    copy.write_text(text.replace(old, new), encoding="utf-8")
    found = rt.spec_check(timings, safety=load_spec(copy))
    assert any(line.startswith(named) for line in found), found
