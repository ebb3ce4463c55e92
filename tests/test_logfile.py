"""The SQLite log: gaps, restarts, summaries and file checks, with synthetic telemetry."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellguard.errors import LogFileError
from cellguard.link.client import Info, Telemetry
from cellguard.store import LogReader, LogWriter

INFO = Info(protocol="1.0", firmware_version="0.1.0", board="sim-4s", unique_id="abcd",
            chemistry="nmc", cell_count=2, temp_count=1, capacity_ah=3.0,
            control_period_s=0.1, telemetry_period_s=1.0, cell_ov_v=4.25, cell_uv_v=2.8,
            temp_max_c=60.0, temp_min_c=-20.0, charge_current_max_a=6.0,
            discharge_current_max_a=15.0)


def tele(seq: int, board_ms: int, current_ma: int = 0, faults: int = 0,
         cells: tuple[int, int] = (3700, 3710), soc: int = 5000) -> Telemetry:
    return Telemetry.from_wire({
        "telemetry_seq": seq, "board_time_ms": board_ms, "state": "active", "faults": faults,
        "warnings": 0, "alarms": 0, "allowed": 3,
        "pack_mv": sum(cells), "current_ma": current_ma, "soc_cpct": soc,
        "cells_mv": list(cells), "temps_dc": [251],
    })


def write(path: Path, samples: list[Telemetry]) -> None:
    w = LogWriter(path)
    bid = w.add_board(INFO, "/dev/null")
    for t in samples:
        w.add(bid, t, host_time=1.0)
    w.close()


def test_round_trip_in_si_units(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    write(path, [tele(0, 1000, current_ma=-1500), tele(1, 2000, current_ma=2500)])
    with LogReader(path) as r:
        s = list(r.samples())
        assert [b.board for _, b in r.boards()] == ["sim-4s"]
    assert [x.t_s for x in s] == [0.0, 1.0]
    assert s[0].cells_v == [3.7, 3.71] and s[0].temps_c == [25.1]
    assert s[0].current_a == -1.5 and s[1].current_a == 2.5
    assert s[0].soc_pct == 50.0


def test_lost_frames_are_counted_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    write(path, [tele(0, 1000), tele(1, 2000), tele(5, 6000), tele(6, 7000)])
    with LogReader(path) as r:
        assert r.lost() == 3
        gaps = r.db.execute("SELECT after_seq, lost, reason FROM gaps").fetchall()
    assert gaps == [(1, 3, "lost frames")]


def test_board_restart_starts_a_new_boot_and_keeps_time_increasing(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    write(path, [tele(7, 8000), tele(8, 9000), tele(0, 100), tele(1, 1100)])
    with LogReader(path) as r:
        rows = r.db.execute("SELECT boot, seq, t_s FROM telemetry ORDER BY t_s").fetchall()
        assert r.lost() == 0
    assert [row[0] for row in rows] == [0, 0, 1, 1]
    times = [row[2] for row in rows]
    assert times == sorted(times) and len(set(times)) == 4


def test_board_clock_wrap_is_not_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    top = (1 << 32) - 500
    write(path, [tele(10, top), tele(11, top + 1000 - (1 << 32))])
    with LogReader(path) as r:
        rows = r.db.execute("SELECT boot, t_s FROM telemetry ORDER BY t_s").fetchall()
    assert rows == [(0, 0.0), (0, 1.0)]


def test_duplicate_frames_are_stored_once(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    w = LogWriter(path)
    bid = w.add_board(INFO)
    w.add(bid, tele(3, 1000))
    w.add(bid, tele(4, 2000))
    w._clocks[bid].last_seq = 3  # replay frame 4, as a reconnect might
    w._clocks[bid].last_ms = 1000
    w._clocks[bid].t_ms = 0
    w.add(bid, tele(4, 2000))
    w.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0] == 2


def test_summary_integrates_charge_and_counts_trips(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    samples = [tele(i, i * 1000, current_ma=3000) for i in range(3601)]  # 1 h at +3 A
    samples += [tele(3601 + i, (3601 + i) * 1000, current_ma=-1000,
                     faults=1 if 100 <= i < 200 or 300 <= i < 400 else 0,
                     cells=(2900, 4190)) for i in range(1800)]
    write(path, samples)
    with LogReader(path) as r:
        s = r.summary()
    assert s.samples == 5401
    assert s.charge_in_ah == pytest.approx(3.0, rel=1e-3)
    assert s.charge_out_ah == pytest.approx(0.5, rel=2e-3)
    assert s.min_cell_v == 2.9 and s.max_cell_v == 4.19
    assert s.faults_seen == {"cell_overvoltage": 2}
    assert s.duration_s == 5400.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=60))
def test_lost_count_equals_skipped_sequence_numbers(tmp_path_factory: pytest.TempPathFactory,
                                                    steps: list[int]) -> None:
    path = tmp_path_factory.mktemp("log") / "a.sqlite"
    seq, samples = 0, [tele(0, 0)]
    for step in steps:
        seq += step
        samples.append(tele(seq, seq * 1000))
    write(path, samples)
    with LogReader(path) as r:
        assert r.lost() == sum(s - 1 for s in steps)
        assert len(list(r.samples())) == len(steps) + 1


def test_writer_refuses_a_foreign_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE x (y)")
    with pytest.raises(LogFileError, match="not a cellguard log"):
        LogWriter(path)
    with sqlite3.connect(path) as db:  # and leaves it untouched
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"x"}


def test_reader_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"\x00" * 4096 + b"not a database")
    with pytest.raises(LogFileError, match="not a cellguard log"):
        LogReader(path)


def test_committed_rows_survive_without_close(tmp_path: Path) -> None:
    """What was committed is on disk even if the process dies before close()."""
    path = tmp_path / "a.sqlite"
    w = LogWriter(path, commit_interval_s=0.0)  # commit on every add
    bid = w.add_board(INFO)
    for i in range(10):
        w.add(bid, tele(i, i * 1000))
    # No close(): read through a second connection, as after a crash.
    with LogReader(path) as r:
        assert len(list(r.samples())) == 10
    w.close()
