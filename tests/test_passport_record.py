"""The passport from a board's own lifetime record (layout 2): the last harmful events
with time and value, health from the snapshots, power capability, self-discharge,
round-trip efficiency, commissioning data and earlier lives, each into the model or its
extension block, and always valid against the Battery Pass 1.2.1 schema."""

from __future__ import annotations

from typing import Any

import pytest
from test_offline import INFO
from test_passport import VALIDATOR

from cellguard.formats.passport import (
    EXTENSION,
    build_passport,
    lifetime_from_record,
    round_trip_efficiency,
    static_from_info,
)
from cellguard.link.lifetime import UNIX_2020, LifetimeRecord

NOW = 1_790_000_000.0
STATIC = static_from_info(INFO)  # 2 cells NMC, 3 Ah


def words(**over: Any) -> list[int]:
    """A layout-2 record: a pack that ran 30 days, with the given words set."""
    w = [0] * 155
    w[0], w[1] = 120, 500  # charge in 120.5 Ah
    w[3], w[4] = 118, 0  # charge out 118 Ah
    w[6], w[10] = 890, 850  # energy in / out, Wh
    w[14] = 30 * 86_400
    for i, v in over.items():
        w[int(i[1:])] = v
    return w


def snapshot(at: int, unix: int, cap_mah: int, relearns: int, growth_pm: int, soc: int,
             power_w: int, e_in: int, e_out: int) -> dict[str, int]:
    return {f"w{at + i}": v for i, v in enumerate(
        (unix, 3600 if at == 86 else 29 * 86_400, cap_mah, relearns, growth_pm, soc, power_w,
         e_in, e_out))}


def passport(w: list[int]) -> tuple[dict[str, Any], LifetimeRecord]:
    rec = LifetimeRecord.from_words(2, 7, w)
    doc = build_passport(STATIC, lifetime_from_record(rec, NOW), NOW)
    VALIDATOR.validate(doc)
    return doc, rec


def test_a_record_without_snapshots_or_events_leaves_health_unavailable() -> None:
    doc, rec = passport(words())
    ext = doc[EXTENSION]
    assert rec.snapshots == [] and rec.last_harmful == [] and rec.lives == 0
    for path in ("batteryCondition.capacityFade", "batteryCondition.remainingCapacity",
                 "batteryCondition.remainingPowerCapability",
                 "batteryCondition.currentSelfDischargingRate",
                 "batteryCondition.remainingRoundTripEnergyEfficiency"):
        assert path in ext["unavailable"], path
    assert ext["commissioning"] == {"manufactured": None, "inService": None, "identity": ""}
    assert ext["previousLives"] is None


def test_health_power_and_efficiency_come_from_the_snapshots() -> None:
    unix = 1_780_000_000 - UNIX_2020
    w = words(w85=2, **snapshot(86, unix, 3000, 0, 1000, 5000, 120, 10, 9),
              **snapshot(95, unix + 28 * 86_400, 2850, 3, 1150, 5200, 100, 890, 850))
    doc, rec = passport(w)
    cond, tech, ext = doc["batteryCondition"], doc["batteryTechicalProperties"], doc[EXTENSION]
    assert [h.capacity_ah for h in rec.snapshots] == [3.0, 2.85]
    assert cond["capacityFade"]["capacityFadeValue"] == pytest.approx(5.0)
    assert ext["remainingCapacityAh"] == pytest.approx(2.85)
    assert cond["capacityFade"]["lastUpdate"].startswith("2026-")  # the snapshot's date
    assert cond["internalResistanceIncrease"][0]["internalResistanceIncreaseValue"] == \
        pytest.approx(15.0)
    rpc = cond["remainingPowerCapability"]["remainingPowerCapabilityValue"]
    assert (rpc["atSoC"], rpc["powerCapabilityAt"]) == (52.0, 0.1)
    assert tech["originalPowerCapability"] == [{"atSoC": 50.0, "powerCapabilityAt": 0.12}]
    # efficiency: 841 Wh out of 880 Wh in, plus 2 % of the rated energy stored since
    eff = round_trip_efficiency(rec, STATIC)
    assert eff is not None
    rated_wh = STATIC.rated_energy_kwh * 1000
    assert eff["percent"] == pytest.approx(100 * (841 + 0.02 * rated_wh) / 880)
    assert 0 < eff["uncertaintyPercent"] < 5
    value = cond["remainingRoundTripEnergyEfficiency"]["remainingRoundTripEnergyEfficiencyValue"]
    assert value == pytest.approx(eff["percent"])
    assert "batteryCondition.capacityFade" not in ext["unavailable"]


def test_too_little_energy_between_snapshots_gives_no_efficiency() -> None:
    w = words(w85=2, **snapshot(86, 0, 3000, 0, 1000, 5000, 120, 10, 9),
              **snapshot(95, 0, 3000, 0, 1000, 5000, 120, 20, 18))  # 10 Wh: under 2 cycles
    doc, rec = passport(w)
    assert round_trip_efficiency(rec, STATIC) is None
    assert "batteryCondition.remainingRoundTripEnergyEfficiency" in doc[EXTENSION]["unavailable"]
    # no relearn yet: the snapshot's capacity is the rated one, not a measured fade
    assert "batteryCondition.capacityFade" in doc[EXTENSION]["unavailable"]


def test_last_harmful_events_keep_their_values_and_times() -> None:
    unix = 1_785_000_000 - UNIX_2020
    w = words(w23=1, w24=2, w51=3,
              w52=1, w53=100, w54=0, w55=2450,  # deep discharge, clock not set
              w56=2, w57=200, w58=unix, w59=4262,  # overcharge
              w60=2, w61=300, w62=unix + 60, w63=4271)
    doc, _ = passport(w)
    events = doc["batteryCondition"]["negativeEvents"]
    assert [e["negativeEvent"] for e in events] == [
        "deep_discharge: 2.45 V at 100 s of operation (board clock not set)",
        "overcharge: 4.262 V at 200 s of operation", "overcharge: 4.271 V at 300 s of operation"]
    assert events[1]["lastUpdate"].startswith("2026-07")
    assert doc[EXTENSION]["harmfulEventCounts"]["overcharge"] == 2
    assert [e["kind"] for e in doc[EXTENSION]["lastHarmfulEvents"]] == \
        ["deep_discharge", "overcharge", "overcharge"]


def test_a_ring_that_wrapped_lists_the_last_four_oldest_first() -> None:
    over = {"w51": 6}
    for i in range(6):
        slot = 52 + 4 * (i % 4)
        over |= {f"w{slot}": 4, f"w{slot + 1}": 10 * i, f"w{slot + 3}": 1000 * (i + 1)}
    rec = LifetimeRecord.from_words(2, 1, words(**over))
    assert [e.operating_s for e in rec.last_harmful] == [20, 30, 40, 50]
    assert [e.value for e in rec.last_harmful] == [3.0, 4.0, 5.0, 6.0]  # A


def test_self_discharge_commissioning_and_an_earlier_life() -> None:
    ident = "PACK-42 é".encode()
    packed = {f"w{70 + i // 3}": 0 for i in range(0, 24, 3)}
    for i, b in enumerate(ident):
        packed[f"w{70 + i // 3}"] |= b << (8 * (i % 3))
    w = words(w68=1000, w69=86_400, w78=1, w79=300, w80=50, w81=10 * 86_400,
              w122=500, w136=4_000_000, w150=2, **packed)
    doc, rec = passport(w)
    ext = doc[EXTENSION]
    rate = (3.0 - 0.5) / (10 * 86_400) * 30.44 * 86_400
    assert rec.self_discharge_pct_per_month == pytest.approx(rate)
    assert doc["batteryCondition"]["currentSelfDischargingRate"][
        "currentSelfDischargingRateValue"] == pytest.approx(rate)
    assert ext["commissioning"]["identity"] == "PACK-42 é"
    assert ext["commissioning"]["manufactured"].startswith("2020-01-01T00:16:40")
    assert ext["commissioning"]["inService"].startswith("2020-01-02")
    assert ext["lives"] == 1
    assert ext["previousLives"]["chargeInAh"] == 500
    assert ext["previousLives"]["operatingSeconds"] == 4_000_000
    assert ext["previousLives"]["harmfulEventCounts"]["overtemperature"] == 0
    assert rec.history is not None and rec.history.boots == 2


def test_a_layout_1_record_still_reads() -> None:
    rec = LifetimeRecord.from_words(1, 3, words()[:51])
    assert rec.layout == 1 and rec.lives is None and rec.snapshots == []
    doc = build_passport(STATIC, lifetime_from_record(rec, NOW), NOW)
    VALIDATOR.validate(doc)
    assert "selfDischarge" not in doc[EXTENSION]


def test_the_report_shows_the_records_commissioning_lives_and_health() -> None:
    from cellguard.formats.passport_report import render_html, render_markdown

    ident = b"<b>PACK</b>"
    packed: dict[str, int] = {}
    for i, byte in enumerate(ident):
        packed[f"w{70 + i // 3}"] = packed.get(f"w{70 + i // 3}", 0) | byte << (8 * (i % 3))
    unix = 1_780_000_000 - UNIX_2020
    w = words(w68=1000, w78=1, w125=40, w136=7200, w79=300, w81=864_000, w85=2, **packed,
              **snapshot(86, unix, 3000, 0, 1000, 5000, 120, 10, 9),
              **snapshot(95, unix + 28 * 86_400, 2850, 3, 1150, 5200, 100, 890, 850))
    doc, rec = passport(w)
    md = render_markdown(doc)
    assert "| identity | \\<b\\>PACK\\</b\\> |" in md
    assert "| life | life 2; earlier lives: 40.00 Ah out, 2.00 h of operation |" in md
    assert "(this life)." in md and "the earlier lives' totals are below" in md
    assert "0.1000 kW at 52 % SoC (first: 0.1200 kW at 50 %)" in md
    eff = round_trip_efficiency(rec, STATIC)
    assert eff is not None and f"{eff['percent']:.1f} % ± " in md
    rate = rec.self_discharge_pct_per_month
    assert rate is not None and f"| self-discharge | {rate:.2f} %/month" in md
    page = render_html(doc)
    assert "&lt;b&gt;PACK&lt;/b&gt;" in page and "<b>PACK" not in page
    assert "The pack&#x27;s record" in page or "The pack's record" in page
