"""cellguard passport: the Battery Pass Performance and Durability 1.2.1 aspect from a log.

Logs are written with the synthetic telemetry of test_offline (known currents and
voltages), so throughput, cycles and time at extreme temperatures are computed
here from the inputs; every passport is validated against the consortium's
schema (vendored in tests/data/batterypass/, with its attribution).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from test_offline import INFO, OTHER, Run, write

from cellguard import cli
from cellguard.formats.passport import (
    EXTENSION,
    HARMFUL,
    build_passport,
    lifetime_from_record,
    static_from_info,
)
from cellguard.link.client import FAULT_BITS
from cellguard.link.lifetime import LAYOUT, WORDS, LifetimeRecord
from cellguard.store import LogWriter

SCHEMA = json.loads(
    (Path(__file__).parent / "data" / "batterypass" / "PerformanceAndDurability.schema")
    .read_text(encoding="utf-8"))
EXAMPLE = Path(__file__).parent / "data" / "batterypass" / "PerformanceAndDurability.json"
VALIDATOR = jsonschema.Draft4Validator(SCHEMA)
T0 = 1_700_000_000.0  # test_offline's host time at board time 0


def estimate_row() -> dict[str, Any]:
    """An ESTIMATE as the log stores it: capacity 2.7 Ah (90 %), R0 at 115 %."""
    return {"board_time_ms": 0, "mode": "ekf", "soc_cpct": 5000, "soc_std_cpct": 100,
            "cell_soc_min_cpct": 4900, "cell_soc_max_cpct": 5100, "capacity_mah": 2700,
            "capacity_cpct": 9000, "r0_growth_cpct": 11500, "bias_ma": 0,
            **{k: 0 for k in ("charge_limit_ma", "charge_peak_2s_ma", "charge_peak_10s_ma",
                              "charge_peak_30s_ma", "discharge_limit_ma",
                              "discharge_peak_2s_ma", "discharge_peak_10s_ma",
                              "discharge_peak_30s_ma", "balancing")}}


def main(*args: str | Path) -> int:
    return cli.main([str(a) for a in args])


def passport_of(log: Path, tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "passport.json"
    assert main("passport", log, "-o", out, "--force", *extra) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    VALIDATOR.validate(doc)
    return doc


def test_the_vendored_schema_accepts_its_example_and_refuses_a_broken_one() -> None:
    example = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    VALIDATOR.validate(example)
    del example["batteryCondition"]["stateOfCharge"]
    assert not VALIDATOR.is_valid(example)


def test_throughput_and_cycles_agree_with_the_logged_currents(tmp_path: Path) -> None:
    # 2 A for 1800 s in (1.0 Ah at 8.1 V), 1.5 A for 900 s out (0.375 Ah at 7.1 V),
    # each edge against a rest (0 A), so the trapezoid gives exactly I * n * period.
    run = Run().add(10).add(1800, 2000, cells=(4000, 4100)).add(60)
    run.add(900, -1500, cells=(3500, 3600)).add(10)
    doc = passport_of(write(tmp_path / "a.sqlite", (INFO, run.rows)), tmp_path)
    cond, ext = doc["batteryCondition"], doc[EXTENSION]
    assert ext["chargeInAh"] == pytest.approx(1.0, rel=1e-9)
    assert ext["chargeOutAh"] == pytest.approx(0.375, rel=1e-9)
    assert ext["energyInWh"] == pytest.approx(8.1, rel=1e-9)
    assert ext["energyOutWh"] == pytest.approx(0.375 * 7.1, rel=1e-9)
    assert cond["capacityThroughput"]["capacityThroughputValue"] == pytest.approx(1.375)
    assert cond["energyThroughput"]["energyThroughputValue"] == pytest.approx(
        (8.1 + 0.375 * 7.1) / 1000.0)  # the model's unit: kWh
    assert ext["equivalentFullCycles"] == pytest.approx(1.375 / (2 * 3.0))
    assert cond["numberOfFullCycles"]["numberOfFullCyclesValue"] == 0  # whole cycles
    last = T0 + run.rows[-1].ms / 1000
    assert cond["capacityThroughput"]["lastUpdate"].startswith("2023-11-14T22:")
    assert cond["stateOfCharge"]["stateOfChargeValue"] == pytest.approx(50.0)
    assert ext["observedSeconds"] == pytest.approx(run.rows[-1].ms / 1000)
    from cellguard.formats.passport import iso
    assert cond["stateOfCharge"]["lastUpdate"] == iso(last)


def test_static_attributes_come_from_info_and_the_chemistry(tmp_path: Path) -> None:
    doc = passport_of(write(tmp_path / "a.sqlite", (INFO, Run().add(5).rows)), tmp_path)
    tech = doc["batteryTechicalProperties"]
    assert tech["ratedCapacity"] == 3.0
    assert tech["minimumVoltage"] == pytest.approx(2 * 2.8)
    assert tech["maximumVoltage"] == pytest.approx(2 * 4.25)
    assert tech["nominalVoltage"] == pytest.approx(2 * 3.75)  # NMC OCV at 50 % SoC
    assert tech["ratedEnergy"] == pytest.approx(3.0 * 7.5 / 1000)
    assert tech["ratedMaximumPower"] == pytest.approx(15.0 * 7.5 / 1000)
    assert tech["temperatureRangeIdleState"] == {"minimum": -20.0, "maximum": 60.0}
    # what a log cannot tell is 0 in the model and named in the extension block
    assert "batteryTechicalProperties.expectedNumberOfCycles" in doc[EXTENSION]["unavailable"]
    assert "batteryTechicalProperties.ratedCapacity" not in doc[EXTENSION]["unavailable"]


def test_time_at_extreme_temperatures_in_minutes(tmp_path: Path) -> None:
    # 120 s at 65 °C idle, 60 s at 50 °C charging, 30 s at 65 °C charging, 180 s at
    # -25 °C idle (1 s period). As the board counts: a second while charging goes to the
    # charging limits only, never to the idle ones too.
    run = Run().add(10).add(120, temps=(650,)).add(60, 1000, temps=(500,))
    run.add(30, 1000, temps=(650,)).add(180, temps=(-250,)).add(10)
    doc = passport_of(write(tmp_path / "a.sqlite", (INFO, run.rows)), tmp_path)
    ti = doc["batteryCondition"]["temperatureInformation"]
    assert ti["timeExtremeHighTemp"] == pytest.approx(2.0)
    assert ti["timeExtremeHighTempCharging"] == pytest.approx(1.5)
    assert ti["timeExtremeLowTemp"] == pytest.approx(3.0)
    assert ti["timeExtremeLowTempCharging"] == 0


def test_time_at_rest_charging_and_discharging_as_the_board_counts(tmp_path: Path) -> None:
    # Rest is |I| below C/100 (30 mA for 3 Ah), as the firmware's record counts it; each
    # interval goes to its first sample's state; the gap (skip) is left out.
    run = Run().add(10, 10).add(100, 2000).add(50, -20).add(40, -1500).add(5, skip=100)
    doc = passport_of(write(tmp_path / "a.sqlite", (INFO, run.rows)), tmp_path)
    ext = doc[EXTENSION]
    states = ext["stateSeconds"]
    assert states["restBelowA"] == pytest.approx(0.03)
    assert states["charging"] == pytest.approx(100)
    assert states["discharging"] == pytest.approx(39)  # its last interval is the gap
    assert states["rest"] == pytest.approx(10 + 50 + 4)
    assert sum(states[k] for k in ("rest", "charging", "discharging")) == \
        pytest.approx(ext["observedSeconds"])


def test_time_at_state_histogram_from_a_log(tmp_path: Path) -> None:
    """SoC x temperature bins as the board's record keeps them, from the samples: the
    temperature is the mean of the coldest and the hottest sensor; 100 % SoC and 0 °C
    fall in the bin above; gaps are left out."""
    two = replace(INFO, temp_count=2)
    run = Run().add(100, soc=9000, temps=(240, 270))  # 25.5 °C: [4][2]
    run.add(200, soc=3000, temps=(-80, -20))  # -5 °C: [1][0]
    run.add(50, soc=5000, temps=(300, 700))  # 50 °C (coldest 30): [2][3]
    run.add(30, soc=10000, temps=(-100, 300))  # 10 °C (-10 to 30), 100 %: [4][1]
    run.add(20, soc=1999, temps=(-60, 60))  # 0 °C, 19.99 %: [0][1]
    run.add(10, soc=7000, temps=(100, 100), skip=50)  # after a gap: [3][1]
    doc = passport_of(write(tmp_path / "a.sqlite", (two, run.rows)), tmp_path)
    ext = doc[EXTENSION]
    hist = ext["timeAtStateHistogram"]
    assert hist["unit"] == "s"
    assert hist["socBinEdgesPct"] == [0, 20, 40, 60, 80, 100]
    assert hist["temperatureBinEdgesC"] == [None, 0, 25, 45, None]
    expected = [[0.0] * 4 for _ in range(5)]
    expected[4][2] = 100  # each interval at its first sample
    expected[1][0] = 200
    expected[2][3] = 50
    expected[4][1] = 30
    expected[0][1] = 19  # its last interval is the gap
    expected[3][1] = 9  # the last sample starts no interval
    assert hist["seconds"] == [[pytest.approx(v) for v in row] for row in expected]
    assert hist["unbinnedSeconds"] == 0
    assert sum(map(sum, hist["seconds"])) == pytest.approx(ext["observedSeconds"])
    assert f"{EXTENSION}.timeAtStateHistogram" not in ext["unavailable"]


def test_a_log_without_temperatures_has_no_histogram(tmp_path: Path) -> None:
    bare = replace(INFO, temp_count=0)
    doc = passport_of(write(tmp_path / "a.sqlite", (bare, Run().add(20, temps=()).rows)),
                      tmp_path)
    ext = doc[EXTENSION]
    assert ext["timeAtStateHistogram"] is None
    assert f"{EXTENSION}.timeAtStateHistogram" in ext["unavailable"]


def board_record(words: dict[int, int]) -> LifetimeRecord:
    """A board's lifetime record with these counter words (the others 0)."""
    w = [0] * WORDS
    for k, v in words.items():
        w[k] = v
    return LifetimeRecord.from_words(LAYOUT, 7, w)


def test_a_board_record_carries_its_histogram_and_state_times() -> None:
    # distinct values in every histogram word (31 + 4 * soc_bin + temp_bin), so a
    # transposed or shifted bin fails
    words = {31 + k: 1000 * (k + 1) + k for k in range(20)}
    words.update({14: 3600, 16: 1000, 17: 1500, 18: 1100})
    rec = board_record(words)
    doc = build_passport(static_from_info(INFO), lifetime_from_record(rec, T0), T0)
    VALIDATOR.validate(doc)
    ext = doc[EXTENSION]
    hist = ext["timeAtStateHistogram"]
    for soc_bin in range(5):
        for temp_bin in range(4):
            assert hist["seconds"][soc_bin][temp_bin] == words[31 + 4 * soc_bin + temp_bin]
    assert hist["unbinnedSeconds"] == 0
    assert ext["stateSeconds"]["rest"] == 1000 and ext["stateSeconds"]["charging"] == 1500
    assert ext["stateSeconds"]["discharging"] == 1100
    assert ext["source"] == "board"
    assert f"{EXTENSION}.timeAtStateHistogram" not in ext["unavailable"]


def test_health_estimates_fill_capacity_fade_and_the_exact_block(tmp_path: Path) -> None:
    path = write(tmp_path / "a.sqlite", (INFO, Run().add(20).rows))
    w = LogWriter(path)
    bid = w.add_board(INFO, "/dev/ttyTEST")
    estimate = estimate_row()
    w.add(bid, Run().add(1).rows[0].telemetry(), host_time=T0 + 100)
    w.add_estimate(bid, estimate, host_time=T0 + 100)
    w.close()
    doc = passport_of(path, tmp_path)
    cond, ext = doc["batteryCondition"], doc[EXTENSION]
    assert ext["remainingCapacityAh"] == pytest.approx(2.7)
    assert cond["capacityFade"]["capacityFadeValue"] == pytest.approx(10.0)
    # the model's unit bug: remainingCapacity in kWh (Ah x nominal pack voltage)
    assert cond["remainingCapacity"]["remainingCapacityValue"] == pytest.approx(2.7 * 7.5 / 1000)
    assert cond["internalResistanceIncrease"][0]["internalResistanceIncreaseValue"] == \
        pytest.approx(15.0)
    assert "batteryCondition.capacityFade" not in ext["unavailable"]


def test_harmful_events_are_counted_and_listed(tmp_path: Path) -> None:
    def trip(ms: int, name: str, value: int) -> dict[str, Any]:
        return {"event_index": ms, "board_time_ms": ms, "kind": "trip", "severity": "fault",
                "fault": FAULT_BITS[name], "value": value, "faults": FAULT_BITS[name]}

    events = [(1, trip(5000, "deep_discharge", 2400)), (1, trip(9000, "cell_overvoltage", 4260)),
              (1, trip(12000, "deep_discharge", 2450))]
    path = write(tmp_path / "a.sqlite", (INFO, Run().add(20).rows), events=events)
    doc = passport_of(path, tmp_path)
    counts = doc[EXTENSION]["harmfulEventCounts"]
    assert counts["deep_discharge"] == 2 and counts["cell_overvoltage"] == 1
    assert sum(counts.values()) == 3 and set(counts) == set(HARMFUL)
    texts = [e["negativeEvent"] for e in doc["batteryCondition"]["negativeEvents"]]
    assert texts == ["deep_discharge: 2.4 V", "cell_overvoltage: 4.26 V",
                     "deep_discharge: 2.45 V"]


def test_markdown_page(tmp_path: Path) -> None:
    run = Run().add(5).add(360, 3000).add(5)
    path = write(tmp_path / "a.sqlite", (INFO, run.rows))
    out = tmp_path / "p.md"
    assert main("passport", path, "-o", out, "--format", "md") == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("# Battery health report: sim-4s · pack abcd")
    assert "| charge (Ah) | 0.300 | 0 | 0.300 |" in page  # 3 A for 360 s


def refused(capsys: pytest.CaptureFixture[str], *args: str | Path, words: str) -> None:
    assert main(*args) == 1, args
    err = capsys.readouterr().err
    assert err.startswith("cellguard: error: ") and words in err, err
    assert "Traceback" not in err


def test_bad_input_gets_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.json"
    refused(capsys, "passport", tmp_path / "none.sqlite", "-o", out, words="no such log file")
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a log")
    refused(capsys, "passport", junk, "-o", out, words="is not a cellguard log")
    two = write(tmp_path / "two.sqlite", (INFO, Run().add(5).rows), (OTHER, Run().add(5).rows))
    refused(capsys, "passport", two, "-o", out, words="holds 2 packs")
    assert not out.exists()
    assert main("passport", two, "-o", out, "--board", "beef") == 0
    assert "wrote the sim-8s beef passport" in capsys.readouterr().err
    assert json.loads(out.read_text())[EXTENSION]["pack"]["uniqueId"] == "beef"
    refused(capsys, "passport", two, "-o", out, words="exists")
    empty = write(tmp_path / "empty.sqlite", (INFO, []))
    refused(capsys, "passport", empty, "-o", tmp_path / "e.json", words="holds no samples")
    odd = write(tmp_path / "odd.sqlite", (replace(INFO, chemistry="lead"), Run().add(5).rows))
    refused(capsys, "passport", odd, "-o", tmp_path / "o.json", words="no profile")
