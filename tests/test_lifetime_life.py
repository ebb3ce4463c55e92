"""The simulated proof of the lifetime record (issue 16, item 5), a short life.

The firmware's own application (``cellguard_fw``'s ``Bms``: protection, coulomb
counter, lifetime record) lives four simulated days on the plant
(``cellguard.sim.life``): a charge and a discharge a day, the seasons squeezed
into the four days (a cold snap, a hot spell, charging below 0 and above 45
degC), one injected harmful event of each kind, power cycles and torn saves at
seeded random points. Its record must agree with the truth the host integrated
from the plant within the issue's tolerances; ``benchmarks/lifetime_year.py``
runs the year. One simulated day runs under both interpreters, CPython and real MicroPython
(the WebAssembly port the simulated board uses): the same record, word for word,
and under MicroPython too it agrees with the plant. Every assertion is on
simulated quantities.
"""

from __future__ import annotations

import pytest

from cellguard.sim.life import KINDS, SAVE_INTERVAL_S, Life, LifeResult, agreement

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def life() -> LifeResult:
    return Life(4.0, seed=3, cuts_per_day=2.0, events=1).run()


@pytest.fixture(scope="module")
def day_in_both() -> tuple[LifeResult, LifeResult]:
    """One winter day (the seasons of a four-day life), every harmful kind once, three
    power cycles (one a torn save): under CPython, then under MicroPython."""
    def day(runtime: str) -> LifeResult:
        return Life(1.0, seed=5, cuts_per_day=3.0, events=1, season_days=4.0,
                    runtime=runtime).run()

    return day("cpython"), day("micropython")


def test_the_life_went_through_what_it_should_prove(life: LifeResult) -> None:
    """The life is a proof only if it holds what it claims: every kind of harmful
    event happened in the plant, time beyond each temperature limit, power cycles
    of both sorts, some of them losing operation the record had not saved."""
    assert life.injected == dict.fromkeys(KINDS, 1)
    assert life.seen_in_plant == life.injected
    kept = life.kept.v
    for q in ("hot_idle_s", "hot_charging_s", "cold_idle_s", "cold_charging_s"):
        assert kept[q] > 60, q
    assert kept["charge_in_ah"] > 2 * 3.0 and kept["charge_out_ah"] > 2 * 3.0
    torn = [c for c in life.cuts if c.torn]
    plain = [c for c in life.cuts if not c.torn]
    assert len(torn) >= 2 and len(plain) >= 2
    assert life.flash["torn"] == len(torn)
    assert all(c.loss_s > 0 for c in life.cuts)
    assert life.lost.v["operating_s"] > 0
    assert life.boots == 1 + len(life.cuts)


@pytest.mark.parametrize("quantity", [
    "charge_in_ah", "charge_out_ah", "energy_in_wh", "energy_out_wh",
    "equivalent_full_cycles", "operating_s", "rest_s", "charging_s", "discharging_s",
    "hot_idle_s", "hot_charging_s", "cold_idle_s", "cold_charging_s",
    *(f"harmful: {k}" for k in KINDS), "boots", "worst loss at a power cycle, s",
    "counters rolled back at a restart", "reloads not the last saved record"])
def test_the_record_agrees_with_the_plant(life: LifeResult, quantity: str) -> None:
    rows = {r.quantity: r for r in agreement(life)}
    row = rows[quantity]
    assert row.ok, (f"{quantity}: truth {row.truth:,.4f}, record {row.record:,.4f}, "
                    f"difference {row.difference:+,.4f}, tolerance {row.tolerance}")


def test_no_harmful_crossing_outside_the_injections(life: LifeResult) -> None:
    assert life.spurious == dict.fromkeys(KINDS, 0)


def test_a_power_cycle_loses_at_most_one_save_interval(life: LifeResult) -> None:
    for cut in life.cuts:
        assert 0 < cut.loss_s <= SAVE_INTERVAL_S + 1.0, cut
        assert not cut.went_back, cut
    # a torn save falls back to the save before: the whole interval is lost
    assert max(c.loss_s for c in life.cuts if c.torn) >= SAVE_INTERVAL_S


def test_a_day_under_micropython_agrees_with_the_plant(
        day_in_both: tuple[LifeResult, LifeResult]) -> None:
    _, mp = day_in_both
    assert mp.seen_in_plant == mp.injected == dict.fromkeys(KINDS, 1)
    assert any(c.torn for c in mp.cuts) and any(not c.torn for c in mp.cuts)
    assert mp.flash["torn"] == sum(1 for c in mp.cuts if c.torn)
    assert mp.kept.v["cold_charging_s"] > 60  # a winter morning's charge
    failed = [f"{r.quantity}: truth {r.truth:,.4f}, record {r.record:,.4f}, tolerance "
              f"{r.tolerance}" for r in agreement(mp) if not r.ok]
    assert not failed


def test_both_interpreters_keep_the_same_record(
        day_in_both: tuple[LifeResult, LifeResult]) -> None:
    cp, mp = day_in_both
    assert mp.truth.v == cp.truth.v  # the same life (the plant saw the same outputs)
    assert [c.loss_s for c in mp.cuts] == [c.loss_s for c in cp.cuts]
    assert mp.record.words == cp.record.words
    assert mp.record.seq == cp.record.seq


@pytest.mark.parametrize("after_s", [5, 15])
def test_an_event_is_saved_within_ten_seconds(after_s: int) -> None:
    """A boot is an event edge: the record saves it 10 s after its last save (here
    the boot itself). A second power cycle 15 s after the boot keeps every boot; one
    5 s after it may lose that boot, never more."""
    first = 3 * 3_600_000
    life = Life(0.2, seed=2, cuts_per_day=0, events=1,
                extra_cuts=(first, first + 5_000 + after_s * 1000)).run()
    assert life.boots == 3
    assert life.record.boots == 3 if after_s > 10 else life.record.boots >= 2
    assert all(c.loss_s <= after_s + 1 for c in life.cuts[1:])


def test_a_life_leaves_the_firmware_modules_as_it_found_them() -> None:
    """The life patches the firmware's open and os with its flash model while it runs;
    other tests in the same process (the latch store's) need them back."""
    from cellguard_fw import events, latches, life_admin, lifetime

    modules = (events, latches, lifetime, life_admin)
    before = [(m.__dict__.get("open"), m.__dict__.get("os")) for m in modules]
    Life(0.05, seed=4, cuts_per_day=0, events=0).run()
    assert [(m.__dict__.get("open"), m.__dict__.get("os")) for m in modules] == before
