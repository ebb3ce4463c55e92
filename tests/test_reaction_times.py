"""The generated reaction-time table (benchmarks/reaction_times.py, docs/reaction-times.md).

The measurements run under the CPython runtime (fast); one protection is run
under real MicroPython too and must give the same figures, which is what lets
the page generated under MicroPython be checked against a CPython run here.
Every time asserted is simulated time, which is deterministic; wall time never.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cellguard_fw.protection import PROTECTIONS, WARNING_BITS

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


@pytest.fixture(scope="module")
def timings() -> list[Any]:  # list of reaction_times.Timing
    return rt.measure_all("cpython")


def test_docs_page_is_up_to_date(timings: list[Any]) -> None:
    page = (ROOT / rt.DOCS_PAGE).read_text()
    assert page == rt.render_page(timings, "micropython"), (
        f"{rt.DOCS_PAGE} is out of date: run `{rt.COMMAND}`"
    )


def test_every_protection_of_the_firmware_table_is_measured(timings: list[Any]) -> None:
    assert [t.spec.name for t in timings] == [row[0] for row in PROTECTIONS]
    assert all(len(t.runs) == len(rt.PHASES_MS) for t in timings)


def test_trip_within_delay_and_one_period(timings: list[Any]) -> None:
    for t in timings:
        lim, period = t.spec.limit, t.period_ms
        warning = bool(lim.bit & WARNING_BITS)  # reported only: the output stays closed
        assert t.opens_output != warning, f"{lim.name}: output opening is wrong"
        for run in t.runs:
            own = run.trips[lim.name]  # its FAULT_EVENT
            assert lim.trip_delay_ms <= own <= lim.trip_delay_ms + period, (lim.name, run)
            assert own <= t.trip_worst_ms
            # Sampled at step instants: seen at the first step after the crossing.
            assert own == -(-lim.trip_delay_ms // period) * period + period - run.phase_ms
            # The output opens in the step of the first trip (its own or one that the
            # same stimulus crossed too).
            if not warning:
                assert run.reaction_ms == min(run.trips.values()) <= own, (lim.name, run)


def test_release_within_delay_and_one_period(timings: list[Any]) -> None:
    for t in timings:
        lim, period = t.spec.limit, t.period_ms
        for run in t.runs:
            # The protection itself releases (its FAULT_EVENT) within the bound ...
            own = run.releases[lim.name]
            assert lim.release_delay_ms <= own <= lim.release_delay_ms + period, (lim.name, run)
            if lim.bit & WARNING_BITS:
                assert not t.latched  # a warning never latches
                continue
            last = max(run.releases.values())
            if t.latched:
                # ... a latched output waits for CLEAR_FAULTS, handled before the step
                # in which the protection releases: the next one closes the output.
                assert run.release_ms is None
                assert run.cleared_release_ms == last + period, (
                    "the page explains the extra period of a latched release: update it"
                )
                assert own + period <= t.release_worst_ms
            else:
                # ... and the output closes in the step of the last release.
                assert run.release_ms == last >= own, (lim.name, run)
                assert own <= t.release_worst_ms


def test_stimulus_is_just_past_the_thresholds(timings: list[Any]) -> None:
    for t in timings:
        s, lim = t.spec, t.spec.limit
        sign = 1 if lim.above else -1
        assert sign * (s.beyond_reads - lim.trip) > 0
        assert sign * (lim.release - s.inside_reads) > 0
        assert abs(s.beyond_reads - lim.trip) <= 5
        # Back inside the release threshold of everything the stimulus crossed.
        if not s.crossed:
            assert abs(s.inside_reads - lim.release) <= 5


def test_reruns_are_identical(timings: list[Any]) -> None:
    again = rt.measure_all("cpython")
    assert rt.render_page(again, "micropython") == rt.render_page(timings, "micropython")


def test_micropython_gives_the_same_table(timings: list[Any]) -> None:
    name = "cell_overvoltage"  # short trip and release delays: few steps
    cpython = [t for t in timings if t.spec.name == name]
    micropython = rt.measure_all("micropython", only=[name])
    assert micropython[0].spec == cpython[0].spec
    assert micropython[0].runs == cpython[0].runs
    assert rt.table_rows(micropython) == rt.table_rows(cpython)
