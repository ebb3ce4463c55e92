"""The event log survives resets and torn writes (firmware, under CPython)."""

from __future__ import annotations

import os
from pathlib import Path

from cellguard.sim.flash import FlashModel
from cellguard_fw.events import RECORD_SIZE, EventLog


def fill(log: EventLog, n: int, start_value: int = 0) -> None:
    for i in range(n):
        log.add(2, 1 << (i % 6), start_value + i, 1000 * i, 1_700_000_000 + i)
        log.flush()


def events_of(log: EventLog) -> list[tuple[int, int, int, int, int, int]]:
    out = []
    for i in range(log.oldest(), log.total):
        s = i % log.capacity
        out.append((i, log.times_ms[s], log.unix_times[s], log.kinds[s], log.codes[s],
                    log.values[s]))
    return out


def test_events_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "events.bin")
    log = EventLog(capacity=16, path=path)
    fill(log, 10)
    again = EventLog(capacity=16, path=path)
    assert again.total == 10
    assert events_of(again) == events_of(log)
    again.add(3, 1, 99, 5, 6)
    again.flush()
    assert EventLog(capacity=16, path=path).total == 11


def test_a_torn_last_record_costs_only_that_record(tmp_path: Path) -> None:
    path = tmp_path / "events.bin"
    log = EventLog(capacity=16, path=str(path))
    fill(log, 5)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 7)  # power lost while writing event 4
    again = EventLog(capacity=16, path=str(path))
    assert again.total == 4 and again.dropped_records == 1
    assert events_of(again) == events_of(log)[:4]
    again.add(4, 0, 0, 0, 0)  # the next event takes the lost one's index
    again.flush()
    assert EventLog(capacity=16, path=str(path)).total >= 4


def test_a_corrupt_record_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.bin"
    log = EventLog(capacity=16, path=str(path))
    fill(log, 6)
    data = bytearray(path.read_bytes())
    data[2 * RECORD_SIZE + 3] ^= 0x40  # flip a bit inside record 2
    path.write_bytes(bytes(data))
    again = EventLog(capacity=16, path=str(path))
    assert again.dropped_records == 1
    assert again.total == 6
    kept = [e for e in events_of(again) if e[0] != 2]
    assert kept == [e for e in events_of(log) if e[0] != 2]


def test_compaction_keeps_the_newest_and_the_file_bounded(tmp_path: Path) -> None:
    path = tmp_path / "events.bin"
    log = EventLog(capacity=8, path=str(path))
    fill(log, 100)
    assert path.stat().st_size <= 2 * 8 * RECORD_SIZE
    again = EventLog(capacity=8, path=str(path))
    assert again.total == 100 and again.oldest() == 92
    assert events_of(again) == events_of(log)


def test_an_interrupted_compaction_is_finished_at_boot(tmp_path: Path) -> None:
    path = tmp_path / "events.bin"
    log = EventLog(capacity=8, path=str(path))
    fill(log, 12)
    # Crash after writing the new file and removing the old one, before the rename.
    os.rename(path, str(path) + ".new")
    again = EventLog(capacity=8, path=str(path))
    assert again.total == 12 and path.exists()
    assert events_of(again) == events_of(log)


def test_without_a_path_nothing_is_written(tmp_path: Path) -> None:
    log = EventLog(capacity=4)
    fill(log, 10)
    assert log.total == 10 and log.oldest() == 6
    assert list(tmp_path.iterdir()) == []


def test_add_writes_nothing_flush_appends_a_batch(flash: FlashModel) -> None:
    """add() runs inside the control step: it touches no file; flush() appends
    every pending event in one open/close (issue 12, items 1 and 9)."""
    log = EventLog(capacity=16, path="/flash/events.bin")
    for i in range(5):
        log.add(2, 1, i, 100 * i, 0)
    assert flash.log == []  # nothing reached the flash yet
    log.flush()
    assert [k for k, _ in flash.log] == ["open"] + ["write"] * 5 + ["close"]
    assert len(flash.files["/events.bin"]) == 5 * RECORD_SIZE
    log.flush()  # nothing new: no I/O
    assert len(flash.log) == 7
    again = EventLog(capacity=16, path="/flash/events.bin")
    assert again.total == 5 and events_of(again) == events_of(log)


def test_events_the_ring_overwrote_before_a_flush_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.bin"
    log = EventLog(capacity=8, path=str(path))
    for i in range(11):
        log.add(2, 1, i, i, 0)
    log.flush()
    assert log.lost == 3
    again = EventLog(capacity=8, path=str(path))
    assert again.total == 11 and events_of(again) == events_of(log)
