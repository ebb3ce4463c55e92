"""Log schema 2: new telemetry fields, fault events, unplugged gaps, schema-1 files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellguard.errors import LogFileError
from cellguard.link.client import Info, Telemetry
from cellguard.store import BOARD_RESTARTED, LOST_FRAMES, UNPLUGGED, LogReader, LogWriter
from cellguard.store.sqlite import SCHEMA_VERSION

INFO = Info(protocol="1.1", firmware_version="0.1.0", board="sim-4s", unique_id="abcd",
            chemistry="nmc", cell_count=2, temp_count=1, capacity_ah=3.0,
            control_period_s=0.1, telemetry_period_s=1.0, cell_ov_v=4.25, cell_uv_v=2.8,
            temp_max_c=60.0, temp_min_c=-20.0, charge_current_max_a=6.0,
            discharge_current_max_a=15.0)

# The schema-1 layout as cellguard 0.1 wrote it (frozen here: the reader must keep reading it).
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE boards (id INTEGER PRIMARY KEY, unique_id TEXT NOT NULL, board TEXT NOT NULL,
    port TEXT, info_json TEXT NOT NULL, first_seen REAL NOT NULL);
CREATE TABLE telemetry (board_id INTEGER NOT NULL REFERENCES boards(id), boot INTEGER NOT NULL,
    seq INTEGER NOT NULL, t_s REAL NOT NULL, board_time_ms INTEGER NOT NULL,
    host_time REAL NOT NULL, state TEXT NOT NULL, faults INTEGER NOT NULL,
    pack_mv INTEGER NOT NULL, current_ma INTEGER NOT NULL, soc_cpct INTEGER NOT NULL,
    cells_mv BLOB NOT NULL, temps_dc BLOB NOT NULL, UNIQUE (board_id, boot, seq));
CREATE TABLE gaps (board_id INTEGER NOT NULL REFERENCES boards(id), boot INTEGER NOT NULL,
    after_seq INTEGER NOT NULL, lost INTEGER NOT NULL, t_s REAL NOT NULL,
    host_time REAL NOT NULL, reason TEXT NOT NULL);
CREATE INDEX telemetry_time ON telemetry (board_id, t_s);
INSERT INTO meta VALUES ('format', 'cellguard-log'), ('schema', '1'), ('created', '1.0');
"""


def tele(seq: int, board_ms: int, warnings: int = 0, alarms: int = 0, allowed: int = 3,
         faults: int = 0) -> Telemetry:
    return Telemetry.from_wire({
        "telemetry_seq": seq, "board_time_ms": board_ms, "state": "active", "faults": faults,
        "warnings": warnings, "alarms": alarms, "allowed": allowed,
        "pack_mv": 7410, "current_ma": 0, "soc_cpct": 5000,
        "cells_mv": [3700, 3710], "temps_dc": [251],
    })


def schema_1_log(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1)
        db.execute("INSERT INTO boards VALUES (1, 'old', 'sim-4s', '/dev/ttyACM0', ?, 1.0)",
                   (json_info(),))
        for seq in range(3):
            db.execute("INSERT INTO telemetry VALUES (1, 0, ?, ?, ?, 1.0, 'active', 0, 7410, 0,"
                       " 5000, ?, ?)", (seq, float(seq), seq * 1000,
                                        bytes.fromhex("740e7e0e"), bytes.fromhex("fb00")))
        db.execute("INSERT INTO gaps VALUES (1, 0, 2, 4, 7.0, 1.0, 'lost frames')")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=DELETE")


def json_info() -> str:
    return json.dumps(INFO.to_dict())


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_new_fields_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    w = LogWriter(path)
    bid = w.add_board(INFO)
    w.add(bid, tele(0, 1000, warnings=1 << 12, alarms=1 << 4, allowed=2), host_time=1.0)
    w.add(bid, tele(1, 2000), host_time=2.0)
    w.close()
    with LogReader(path) as r:
        assert r.schema == SCHEMA_VERSION == 2
        a, b = list(r.samples())
    assert (a.warnings, a.alarms, a.allowed) == (1 << 12, 1 << 4, 2)
    assert not a.charge_allowed and a.discharge_allowed
    assert (b.warnings, b.alarms, b.allowed) == (0, 0, 3)


def test_fault_events_are_stored_on_the_samples_time_axis(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    w = LogWriter(path)
    bid = w.add_board(INFO)
    w.add(bid, tele(0, 5000), host_time=10.0)
    w.add(bid, tele(1, 6000), host_time=11.0)
    w.add_event(bid, {"event_index": 7, "board_time_ms": 6400, "kind": "trip",
                      "severity": "alarm", "fault": 1, "value": 4301, "faults": 0},
                host_time=11.4)
    w.add_event(bid, {"event_index": 8, "board_time_ms": 9000, "kind": "release",
                      "severity": "alarm", "fault": 1, "value": 4100, "faults": 0},
                host_time=14.0)
    w.close()
    with LogReader(path) as r:
        events = list(r.events())
        assert [e.event_index for e in r.events(t_from=3.5)] == [8]
        summary = r.summary()
    assert [(e.kind, e.severity, e.names, e.value) for e in events] == [
        ("trip", "alarm", ["cell_overvoltage"], 4301),
        ("release", "alarm", ["cell_overvoltage"], 4100),
    ]
    assert [e.t_s for e in events] == [pytest.approx(1.4), pytest.approx(4.0)]
    assert events[0].host_time == 11.4 and events[0].board_time_ms == 6400
    assert summary.events == 2


def test_unplugged_gap_has_its_frames_and_duration_and_is_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    w = LogWriter(path)
    bid = w.add_board(INFO)
    for seq in range(5):
        w.add(bid, tele(seq, 1000 + seq * 100), host_time=100.0 + seq)
    w.port_lost(bid, host_time=104.5)
    w.port_back(bid, host_time=110.0, uptime_ms=2550)  # the same boot: uptime went on
    assert w.add(bid, tele(12, 2200), host_time=110.1) == 0
    w.add(bid, tele(13, 2300), host_time=110.2)
    w.close()
    with LogReader(path) as r:
        (gap,) = list(r.gaps())
        seqs = [s.seq for s in r.samples()]
        assert r.lost() == 0
        summary = r.summary()
    assert (gap.reason, gap.lost, gap.after_seq, gap.boot) == (UNPLUGGED, 7, 4, 0)
    assert gap.duration_s == pytest.approx(5.5) and gap.host_time == 104.5
    assert gap.t_s == pytest.approx(0.4)  # when the port was lost, on the t_s axis
    assert seqs == [0, 1, 2, 3, 4, 12, 13]
    assert summary.unplugged == 1 and summary.unplugged_s == pytest.approx(5.5)
    assert summary.duration_s == pytest.approx(1.3)  # board time went on while away


def test_frames_already_stored_are_dropped_after_a_replug(tmp_path: Path) -> None:
    """A board that resends what the log has (same boot) adds no row and no restart."""
    path = tmp_path / "a.sqlite"
    w = LogWriter(path)
    bid = w.add_board(INFO)
    for seq in range(5):
        w.add(bid, tele(seq, seq * 100))
    w.port_lost(bid)
    w.port_back(bid, uptime_ms=900)
    for seq in (3, 4, 5, 6):  # two replayed, then new ones
        w.add(bid, tele(seq, seq * 100))
    w.close()
    with LogReader(path) as r:
        samples = list(r.samples())
        gaps = list(r.gaps())
    assert [(s.boot, s.seq) for s in samples] == [(0, n) for n in range(7)]
    assert [(g.reason, g.lost) for g in gaps] == [(UNPLUGGED, 0)]
    assert w.board_rows[bid] == 7


def test_restart_while_unplugged_starts_a_new_boot(tmp_path: Path) -> None:
    """Its uptime is less than its clock was: it restarted while away."""
    path = tmp_path / "a.sqlite"
    w = LogWriter(path)
    bid = w.add_board(INFO)
    for seq in range(3):
        w.add(bid, tele(seq, 60_000 + seq * 1000))
    w.port_lost(bid, host_time=1.0)
    w.port_back(bid, host_time=90.0, uptime_ms=30_000)
    w.add(bid, tele(1, 30_500))  # a counter value the old boot had too: not a duplicate
    w.add(bid, tele(2, 31_500))
    w.close()
    with LogReader(path) as r:
        gaps = [(g.reason, g.boot, g.lost) for g in r.gaps()]
        samples = [(s.boot, s.seq, s.t_s) for s in r.samples()]
    assert gaps == [(UNPLUGGED, 0, 0), (BOARD_RESTARTED, 1, 0)]
    assert [(b, s) for b, s, _ in samples] == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2)]
    times = [t for _, _, t in samples]
    assert times == sorted(times) and times[3] - times[2] >= 30.5  # at least its new uptime


def test_a_run_ending_while_unplugged_closes_the_gap(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    w = LogWriter(path)
    bid = w.add_board(INFO)
    w.add(bid, tele(0, 0))
    w.add(bid, tele(1, 100))
    w.port_lost(bid)
    w.close()
    with LogReader(path) as r:
        (gap,) = list(r.gaps())
    assert gap.reason == UNPLUGGED and gap.after_seq == 1 and gap.duration_s is not None


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.booleans(), st.integers(0, 3)),
                min_size=1, max_size=30))
def test_replugs_never_duplicate_rows_and_account_for_every_frame(
        tmp_path_factory: pytest.TempPathFactory,
        steps: list[tuple[int, bool, int]]) -> None:
    """Random steps of the counter, some across a replug that replays a few frames."""
    path = tmp_path_factory.mktemp("log") / "a.sqlite"
    w = LogWriter(path)
    bid = w.add_board(INFO)
    seq = 0
    w.add(bid, tele(0, 0))
    for step, replug, replay in steps:
        if replug:
            w.port_lost(bid)
            w.port_back(bid, uptime_ms=seq * 100 + 50)
            for back in range(replay, 0, -1):  # frames the log already has
                if seq - back >= 0:
                    w.add(bid, tele(seq - back, (seq - back) * 100))
        seq += step
        w.add(bid, tele(seq, seq * 100))
    w.close()
    with LogReader(path) as r:
        seqs = [s.seq for s in r.samples()]
        missing = sum(g.lost for g in r.gaps())
        assert {g.reason for g in r.gaps()} <= {LOST_FRAMES, UNPLUGGED}
    assert len(seqs) == len(set(seqs)) == len(steps) + 1
    assert missing == seq + 1 - len(seqs)


def test_reader_opens_a_schema_1_log(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    schema_1_log(path)
    with LogReader(path) as r:
        assert r.schema == 1
        samples = list(r.samples())
        gaps = list(r.gaps())
        assert list(r.events()) == []
        assert r.lost() == 4
        summary = r.summary()
    assert [s.seq for s in samples] == [0, 1, 2]
    assert samples[0].cells_v == [3.7, 3.71] and samples[0].temps_c == [25.1]
    assert {(s.warnings, s.alarms, s.allowed) for s in samples} == {(0, 0, 3)}
    assert [(g.reason, g.lost, g.duration_s) for g in gaps] == [(LOST_FRAMES, 4, None)]
    assert summary.samples == 3 and summary.events == 0


def test_writer_migrates_a_schema_1_log_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    schema_1_log(path)
    w = LogWriter(path)
    assert w.migrated_from == 1
    bid = w.add_board(INFO)
    w.add(bid, tele(0, 0, warnings=4, alarms=8, allowed=1))
    w.add_event(bid, {"event_index": 0, "board_time_ms": 0, "kind": "trip",
                      "severity": "fault", "fault": 2, "value": 2700, "faults": 2})
    w.close()
    assert rows(path, "SELECT value FROM meta WHERE key = 'schema'") == [("2",)]
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]
    with LogReader(path) as r:
        old = [(s.board_id, s.warnings, s.alarms, s.allowed) for s in r.samples(board_id=1)]
        new = [(s.warnings, s.alarms, s.allowed) for s in r.samples(board_id=bid)]
        assert [e.kind for e in r.events()] == ["trip"]
    assert old == [(1, 0, 0, 3)] * 3
    assert new == [(4, 8, 1)]
    assert LogWriter(path).migrated_from is None  # already schema 2 now


def test_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    w = LogWriter(path)
    w.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    before = path.read_bytes()
    with pytest.raises(LogFileError, match=r"newer cellguard.*schema 3"):
        LogWriter(path)
    with pytest.raises(LogFileError, match="newer cellguard"):
        LogReader(path)
    assert path.read_bytes() == before


def test_unwritable_places_are_clear_errors_even_as_root(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(LogFileError, match="is a file, not a folder"):
        LogWriter(a_file / "run.sqlite")
    with pytest.raises(LogFileError, match="it is a folder"):
        LogWriter(tmp_path)
    assert a_file.read_text() == "x"
