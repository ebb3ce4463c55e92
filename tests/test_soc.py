"""Coulomb counter and OCV lookup: exact integration, clamping, OCV (re)anchoring."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellguard_fw.chemistry import OCV_STEP_CPCT, PROFILES, soc_from_ocv
from cellguard_fw.soc import CoulombCounter

NMC = PROFILES["nmc"]["ocv_mv"]
CAPACITY_MAH = 3000
CAPACITY_MAS = CAPACITY_MAH * 3600
MID_MV = NMC[10]  # 50 %
REST_CURRENT_MA = 50
REST_TIME_MS = 1_800_000
CHEMISTRIES = sorted(PROFILES)


def counter(ocv_mv: int = MID_MV, **kw: int) -> CoulombCounter:
    """A 3000 mAh NMC counter, initialised from ``ocv_mv`` by its first step."""
    c = CoulombCounter(CAPACITY_MAH, NMC, **kw)
    c.step(100, 0, ocv_mv)
    assert c.initialised
    return c


def run(c: CoulombCounter, dt_ms: int, current_ma: int, n: int, cell_mv: int = MID_MV) -> None:
    for _ in range(n):
        c.step(dt_ms, current_ma, cell_mv)


def soc_pct(c: CoulombCounter) -> float:
    return c.soc_cpct() / 100


# -- start-up ----------------------------------------------------------------


def test_initialises_from_ocv_on_first_step() -> None:
    c = CoulombCounter(CAPACITY_MAH, NMC)
    assert not c.initialised and c.ocv_resets == 0
    c.step(100, 5000, NMC[13])  # 65 %; the first step's current is not counted
    assert c.initialised and c.ocv_resets == 1
    assert c.soc_cpct() == 13 * OCV_STEP_CPCT
    assert c.charge_mas == 6500 * c.mas_per_cpct
    c.step(100, 5000, NMC[2])  # later steps count and do not look at the voltage
    assert c.ocv_resets == 1
    assert c.charge_mas == 6500 * c.mas_per_cpct + 500


@pytest.mark.parametrize(("mv", "cpct"), [(1000, 0), (NMC[0], 0), (NMC[-1], 10000),
                                          (4400, 10000), ((NMC[4] + NMC[5]) // 2, 2250)])
def test_initial_soc_from_ocv(mv: int, cpct: int) -> None:
    assert counter(mv).soc_cpct() == cpct


# -- counting ----------------------------------------------------------------


@pytest.mark.parametrize(("current_ma", "expected_pct"), [(-1000, 50 - 100 / 3),
                                                          (1000, 50 + 100 / 3)])
def test_one_amp_for_one_hour(current_ma: int, expected_pct: float) -> None:
    c = counter()
    run(c, 100, current_ma, 36_000)
    assert c.charge_mas == 5000 * c.mas_per_cpct + current_ma * 3600
    assert abs(soc_pct(c) - expected_pct) <= 0.01
    assert c.ocv_resets == 1


def test_one_amp_for_one_hour_with_one_ms_steps_in_pieces() -> None:
    c = counter()
    for dt in (1, 7, 13, 999, 1001):  # 3_600_000 ms in uneven steps
        run(c, dt, -1000, 3_600_000 // 5 // dt)
    counted_ms = sum(3_600_000 // 5 // dt * dt for dt in (1, 7, 13, 999, 1001))
    run(c, 1, -1000, 3_600_000 - counted_ms)
    assert c.charge_mas == 5000 * c.mas_per_cpct - 3_600_000
    assert c.remainder_ma_ms == 0
    assert abs(soc_pct(c) - (50 - 100 / 3)) <= 0.01


@pytest.mark.parametrize(("dt_ms", "current_ma", "n"), [(1, 1, 10_000), (1, -1, 10_000),
                                                        (7, 3, 5000), (3, -7, 5000),
                                                        (999, 1, 1001), (100, 9, 1000)])
def test_sub_second_remainders_are_kept(dt_ms: int, current_ma: int, n: int) -> None:
    c = counter()
    start = c.charge_mas
    run(c, dt_ms, current_ma, n)
    total = dt_ms * current_ma * n
    assert (c.charge_mas - start) * 1000 + c.remainder_ma_ms == total
    assert c.charge_mas - start == total // 1000
    assert c.charge_mas != start


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2000), st.integers(-20_000, 20_000)),
                min_size=1, max_size=300))
def test_integration_is_exact(steps: list[tuple[int, int]]) -> None:
    # never at rest long enough to re-anchor, never near the clamps
    c = counter(rest_time_ms=10**9)
    start = c.charge_mas
    exact = 0
    for dt_ms, current_ma in steps:
        c.step(dt_ms, current_ma, MID_MV)
        exact += dt_ms * current_ma
        assert 0 <= c.remainder_ma_ms < 1000
        assert c.charge_mas * 1000 + c.remainder_ma_ms == start * 1000 + exact
    assert c.ocv_resets == 1


# -- clamping ----------------------------------------------------------------


def test_clamps_at_empty_without_windup() -> None:
    c = counter(NMC[0])
    assert c.soc_cpct() == 0
    run(c, 1000, -10_000, 600)  # ~55 % of capacity out of an empty pack
    assert c.charge_mas == 0 and c.soc_cpct() == 0
    run(c, 1000, 1000, 36)  # the first charge counts at once: no debt to repay
    assert c.charge_mas == 36_000
    assert c.soc_cpct() == 36_000 // c.mas_per_cpct


def test_clamps_at_full_without_windup() -> None:
    c = counter(NMC[-1])
    assert c.soc_cpct() == 10000
    run(c, 1000, 10_000, 600)
    assert c.charge_mas == CAPACITY_MAS and c.soc_cpct() == 10000
    run(c, 1000, -1000, 36)
    assert c.charge_mas == CAPACITY_MAS - 36_000
    assert c.soc_cpct() == (CAPACITY_MAS - 36_000) // c.mas_per_cpct


@settings(max_examples=80, deadline=None)
@given(st.integers(500, 5000), st.lists(st.tuples(st.integers(1, 60_000),
                                                   st.integers(-100_000, 100_000)),
                                         max_size=60))
def test_soc_stays_in_range(mv: int, steps: list[tuple[int, int]]) -> None:
    c = counter(mv)
    for dt_ms, current_ma in steps:
        c.step(dt_ms, current_ma, mv)
        assert 0 <= c.charge_mas <= CAPACITY_MAS
        assert 0 <= c.soc_cpct() <= 10000


# -- re-anchoring after rest -------------------------------------------------


def test_reanchors_after_rest_time_and_not_before() -> None:
    c = counter()
    run(c, 1000, -1000, 600)  # 10 min at 1 A: 50 % -> 44.44 %
    assert c.soc_cpct() == (5000 * c.mas_per_cpct - 600_000) // c.mas_per_cpct
    relaxed = NMC[13]  # the cells relax to the 65 % OCV (the count was off)
    run(c, 100, 0, REST_TIME_MS // 100 - 1, relaxed)
    assert c.ocv_resets == 1, "re-anchored before rest_time_ms"
    assert c.soc_cpct() == 4444
    run(c, 100, 0, 1, relaxed)
    assert c.ocv_resets == 2
    assert c.soc_cpct() == 6500
    assert c.remainder_ma_ms == 0
    # resting on does not keep re-anchoring: counting continues from the anchor
    run(c, 100, 0, REST_TIME_MS // 100 * 2, NMC[2])
    assert c.ocv_resets == 2 and c.soc_cpct() == 6500
    # a load, then a second full rest, anchors again
    run(c, 1000, -2000, 60, relaxed)
    run(c, 1000, 0, REST_TIME_MS // 1000, NMC[8])
    assert c.ocv_resets == 3 and c.soc_cpct() == 8 * OCV_STEP_CPCT


@pytest.mark.parametrize("current_ma", [REST_CURRENT_MA, -REST_CURRENT_MA, 0, 1, -1])
def test_rest_includes_the_rest_current(current_ma: int) -> None:
    c = counter()
    run(c, 1000, current_ma, REST_TIME_MS // 1000 - 1, NMC[4])
    assert c.ocv_resets == 1
    run(c, 1000, current_ma, 1, NMC[4])
    assert c.ocv_resets == 2 and c.soc_cpct() == 4 * OCV_STEP_CPCT


@pytest.mark.parametrize("interruption_ma", [REST_CURRENT_MA + 1, -REST_CURRENT_MA - 1, 5000])
def test_rest_is_restarted_by_current_above_rest_current(interruption_ma: int) -> None:
    c = counter()
    run(c, 1000, 0, REST_TIME_MS // 1000 - 1, NMC[4])
    run(c, 1000, interruption_ma, 1, NMC[4])
    run(c, 1000, 0, REST_TIME_MS // 1000 - 1, NMC[4])
    assert c.ocv_resets == 1, "a current above rest_current_ma did not restart the rest"
    run(c, 1000, 0, 1, NMC[4])
    assert c.ocv_resets == 2 and c.soc_cpct() == 4 * OCV_STEP_CPCT


def test_custom_rest_parameters() -> None:
    c = counter(rest_current_ma=200, rest_time_ms=60_000)
    run(c, 250, -200, 60_000 // 250 - 1, NMC[18])
    assert c.ocv_resets == 1
    run(c, 250, 200, 1, NMC[18])
    assert c.ocv_resets == 2 and c.soc_cpct() == 9000


# -- OCV lookup ---------------------------------------------------------------


@pytest.mark.parametrize("chem", CHEMISTRIES)
def test_ocv_table_shape(chem: str) -> None:
    table = PROFILES[chem]["ocv_mv"]
    assert len(table) == 10000 // OCV_STEP_CPCT + 1
    assert all(a < b for a, b in itertools.pairwise(table))


@pytest.mark.parametrize("chem", CHEMISTRIES)
def test_soc_from_ocv_inverts_table_points(chem: str) -> None:
    table = PROFILES[chem]["ocv_mv"]
    for i, mv in enumerate(table):
        assert soc_from_ocv(table, mv) == i * OCV_STEP_CPCT, (chem, i, mv)
    for i in range(1, len(table)):
        # one mV below a point lies in the segment below it
        below = soc_from_ocv(table, table[i] - 1)
        assert (i - 1) * OCV_STEP_CPCT <= below < i * OCV_STEP_CPCT


@pytest.mark.parametrize("chem", CHEMISTRIES)
def test_soc_from_ocv_is_monotonic_and_clamped(chem: str) -> None:
    table = PROFILES[chem]["ocv_mv"]
    prev = -1
    for mv in range(table[0] - 500, table[-1] + 500):
        s = soc_from_ocv(table, mv)
        assert 0 <= s <= 10000
        assert s >= prev, (chem, mv)
        prev = s
    assert soc_from_ocv(table, table[0] - 500) == 0
    assert soc_from_ocv(table, table[-1] + 500) == 10000
    assert soc_from_ocv(table, -1) == 0


@pytest.mark.parametrize("chem", CHEMISTRIES)
@given(frac=st.fractions(0, 1))
def test_soc_from_ocv_interpolates_linearly(chem: str, frac: object) -> None:
    from fractions import Fraction

    assert isinstance(frac, Fraction)
    table = PROFILES[chem]["ocv_mv"]
    mv = table[0] + int(frac * (table[-1] - table[0]))
    i = next(k for k in range(1, len(table)) if table[k] >= mv)
    exact = (i - 1) * OCV_STEP_CPCT + Fraction(mv - table[i - 1], table[i] - table[i - 1]) * 500
    assert exact - 1 < soc_from_ocv(table, mv) <= exact
