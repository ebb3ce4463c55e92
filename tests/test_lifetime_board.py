"""The lifetime record on the board, end to end: the real firmware under MicroPython
counts what the plant went through, keeps it across resets, and any host reads it
(LIFETIME: no key, no configuration mode) and turns it into a Battery Pass."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest

from cellguard.formats.passport import passport
from cellguard.link.client import BoardClient
from cellguard.link.lifetime import LifetimeRecord
from cellguard.sim import SimulatedBoard


def run(sim: SimulatedBoard, seconds: float) -> None:
    """Run the free-running board ``seconds`` of board time, then hold it there."""
    end_ms = sim.run_for(seconds)
    deadline = time.monotonic() + 600  # a guard only
    while sim.time_ms < end_ms:
        sim.check()
        assert time.monotonic() < deadline, "the board did not get there"
        time.sleep(0.01)


def truth_integrals(sim: SimulatedBoard) -> tuple[float, float]:
    """Energy in and out (Wh) from the plant's history, each interval at its start."""
    hist = list(sim.history)
    e_in = e_out = 0.0
    for (t0, a), (t1, _) in itertools.pairwise(hist):
        p = a.pack_v * a.current_a * (t1 - t0) / 3.6e6
        if p > 0:
            e_in += p
        else:
            e_out -= p
    return e_in, e_out


def test_the_board_counts_what_the_pack_went_through(tmp_path: Path) -> None:
    with SimulatedBoard(runtime="micropython", speed=0, initial_soc_pct=70.0,
                        history_s=7200) as sim:
        client = BoardClient(sim.port)
        with client:
            client.hello()
            before = client.lifetime()
            t0 = sim.truth()
            sim.set_current(-6.0)  # 2C out for 10 minutes
            run(sim, 600)
            sim.set_current(3.0)  # 1C in for 10 minutes
            run(sim, 600)
            sim.set_current(0.0)
            run(sim, 400)  # at rest past the save interval (5 minutes)
            t1 = sim.truth()
            rec = client.lifetime()
    assert isinstance(rec, LifetimeRecord)
    assert before.boots == rec.boots == 1 and rec.watchdog_resets == 0
    assert before.charge_out_ah < 0.01
    # throughput within 1 % of the plant's (the current sensor's error is smaller)
    out_ah = t1.charge_out_ah - t0.charge_out_ah
    in_ah = t1.charge_in_ah - t0.charge_in_ah
    assert out_ah == pytest.approx(1.0, rel=0.01) and in_ah == pytest.approx(0.5, rel=0.01)
    assert rec.charge_out_ah == pytest.approx(out_ah, rel=0.01)
    assert rec.charge_in_ah == pytest.approx(in_ah, rel=0.01)
    e_in, e_out = truth_integrals(sim)
    assert rec.energy_out_wh == pytest.approx(e_out, rel=0.01)
    assert rec.energy_in_wh == pytest.approx(e_in, rel=0.01)
    # the time counters: whole seconds, each to its state, summing to the operating time
    board_s = sim.time_ms / 1000.0
    assert rec.operating_s == pytest.approx(board_s, abs=2.0)
    assert rec.discharging_s == pytest.approx(600, abs=3)
    assert rec.charging_s == pytest.approx(600, abs=3)
    assert rec.rest_s + rec.charging_s + rec.discharging_s == int(rec.operating_s)
    assert sum(map(sum, rec.histogram_s)) == int(rec.operating_s)
    # 25 degC: every second in the 0-25 or 25-45 degC column
    assert sum(row[1] + row[2] for row in rec.histogram_s) == int(rec.operating_s)
    assert rec.hot_idle_s == rec.cold_idle_s == 0
    assert set(rec.harmful.values()) == {0}
    assert rec.seq >= 1  # saved at least once (boot edge, then every 5 minutes)


def test_the_record_survives_resets_and_counts_them(tmp_path: Path) -> None:
    with SimulatedBoard(runtime="micropython", speed=0, initial_soc_pct=70.0) as sim:
        client = BoardClient(sim.port)
        with client:
            client.hello()
            sim.set_current(-6.0)
            run(sim, 330)  # past one save
            saved = client.lifetime()
            client.reset()
        run(sim, 20)
        client = BoardClient(sim.port)
        with client:
            client.hello(timeout_s=10)
            after = client.lifetime()
    assert saved.seq >= 1 and after.boots == saved.boots + 1
    # what the reset cost is at most what was counted since the last save (a save
    # interval is 5 minutes; this one was under a minute old)
    assert after.charge_out_ah >= saved.charge_out_ah - 6.0 * 60 / 3600
    assert after.operating_s >= saved.operating_s - 60
    assert after.discharging_s >= saved.discharging_s - 60


def test_a_passport_from_the_board_validates(tmp_path: Path) -> None:
    from test_passport import VALIDATOR  # the vendored 1.2.1 schema
    from test_passport_report import bins_of, check_self_contained

    with SimulatedBoard(runtime="cpython", speed=0, initial_soc_pct=70.0) as sim:
        sim.set_current(-6.0)
        run(sim, 120)
        out = tmp_path / "passport.json"
        result = passport(None, str(out), port=sim.port, now=1.8e9)
        page = tmp_path / "passport.html"  # the report for a person, from the same record
        passport(None, str(page), fmt="html", port=sim.port, now=1.8e9)
    doc = json.loads(out.read_text())
    VALIDATOR.validate(doc)
    ext = doc["cellguardExtension"]
    hist = ext["timeAtStateHistogram"]["seconds"]
    assert sum(map(sum, hist)) == int(ext["observedSeconds"])  # every second in a bin
    # read a moment later: a held board still steps once per request it answers
    drawn = bins_of(check_self_contained(page.read_text(encoding="utf-8")))
    assert [len(row) for row in drawn] == [len(row) for row in hist]
    assert all(abs(a - b) <= 1 for r, q in zip(drawn, hist, strict=True)
               for a, b in zip(r, q, strict=True)), (drawn, hist)
    assert ext["source"] == "board" and result.board == "sim-4s"
    assert set(ext["harmfulEventCounts"]) == {"deep_discharge", "overcharge",
                                              "overtemperature", "overcurrent",
                                              "short_circuit"}


def test_commissioning_snapshots_and_a_second_life_on_the_board(tmp_path: Path) -> None:
    """Under real MicroPython: commissioning data written once and kept across a reset,
    a health snapshot after an hour of operation, and a second-life reset that starts
    the counters again while the history keeps the ended life's totals."""
    from cellguard.link.client import BoardRefused
    from cellguard.link.lifetime import UNIX_2020

    made, since = 1_780_000_000, 1_790_000_000
    with SimulatedBoard(runtime="micropython", speed=0, initial_soc_pct=80.0) as sim:
        client = BoardClient(sim.port)
        with client:
            info = client.hello()
            client.time_sync(since + 3600)
            client.commission(manufactured=made, identity="PACK-0042")
            client.commission(in_service=since)  # a second field later: fine
            with pytest.raises(BoardRefused) as refused:
                client.commission(manufactured=made + 86_400)  # re-dating: refused
            assert refused.value.error == "already_set"
            sim.set_current(-1.0)
            run(sim, 3700)  # past the first snapshot (an hour of operation)
            lived = client.lifetime()
            client.reset()
        run(sim, 20)
        client = BoardClient(sim.port)
        with client:
            client.hello(timeout_s=10)
            kept = client.lifetime()
            with pytest.raises(BoardRefused) as wrong:
                client.second_life("0000")
            assert wrong.value.error == "wrong_board"
            client.second_life(info.unique_id)
            fresh = client.lifetime()
            events = client.events()
    assert (lived.manufactured, lived.in_service, lived.identity) == (made, since, "PACK-0042")
    assert (kept.manufactured, kept.in_service, kept.identity) == (made, since, "PACK-0042")
    assert lived.snapshots_taken == 1 and len(lived.snapshots) == 1
    snap = lived.snapshots[0]
    assert snap.operating_s >= 3600 and snap.unix_time is not None
    assert snap.unix_time - UNIX_2020 > 0 and snap.capacity_ah == pytest.approx(3.0, rel=0.1)
    assert snap.r0_growth_pct is not None and snap.power_w > 0  # the EKF's figures
    assert 40 < snap.soc_pct < 80
    # the second life: counters from zero, the history holds the first life's totals
    assert fresh.lives == 1 and kept.lives == 0
    assert fresh.charge_out_ah < 0.01 and fresh.snapshots == [] and fresh.identity == ""
    assert fresh.manufactured == made  # the date of manufacture stays
    assert fresh.history is not None
    assert fresh.history.charge_out_ah == pytest.approx(kept.charge_out_ah, abs=0.01)
    assert fresh.history.boots == kept.boots
    assert any(e.kind == "second_life" and e.code == 1 for e in events)


def test_the_board_checks_commissioning_requests_itself() -> None:
    """What a host that skips cellguard's own checks could send: an identity over 24
    bytes, dates that differ from the recorded ones, another board's id."""
    from cellguard.link.client import BoardRefused

    with SimulatedBoard(runtime="cpython", speed=0) as sim, BoardClient(sim.port) as client:
        client.hello()
        with pytest.raises(BoardRefused) as long_id:
            client.request("commission", {"manufactured_unix_s": 0, "commissioned_unix_s": 0,
                                          "identity": "X" * 25, "pin": 0})
        assert (long_id.value.error, long_id.value.limit) == ("bad_payload", 24)
        client.commission(manufactured=1_700_000_000, identity="A")
        for change in ({"manufactured": 1_700_000_001}, {"identity": "B"}):
            with pytest.raises(BoardRefused) as again:
                client.commission(**change)  # type: ignore[arg-type]
            assert again.value.error == "already_set"
        client.commission(manufactured=1_700_000_000, identity="A")  # the same: accepted
        with pytest.raises(BoardRefused) as other:
            client.second_life("5e11" + "0" * 12)
        assert other.value.error == "wrong_board"
        rec = client.lifetime()
    assert rec.manufactured == 1_700_000_000 and rec.identity == "A" and rec.lives == 0
