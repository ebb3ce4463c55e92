"""The cellguard log: one SQLite file (WAL mode) holding boards, telemetry, gaps and events.

This is where a cell voltage lands on disk. Values are stored in their integer
wire units (mV, mA, 0.1 degC, 0.01 %) so nothing is rounded twice; cell
voltages and temperatures are packed little-endian arrays (u16 mV, i16 0.1 degC)
in one BLOB per sample. ``t_s`` is board time in seconds since the board's
first logged sample, continued across board resets, counter wrap and unplugged
periods.

Commits are batched (at most ``commit_interval_s`` apart), so a crash or a
SIGKILL loses at most that much, and the file always opens afterwards.

Schema 2 (this version) adds ``warnings``, ``alarms`` and ``allowed`` to
``telemetry``, ``duration_s`` to ``gaps`` and the ``events`` table (FAULT_EVENT
frames). :class:`LogReader` still reads schema-1 files (those fields read as
0, 0 and 3); :class:`LogWriter` migrates a schema-1 file in place (one
transaction) before it appends to it.
"""

from __future__ import annotations

import array
import json
import os
import resource
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LogFileError
from ..link.client import Info, Telemetry
from .base import (
    BOARD_RESTARTED,
    LOST_FRAMES,
    UNPLUGGED,
    Gap,
    LogEvent,
    LogReader,
    Sample,
    Series,
    SocEstimates,
)

FORMAT = "cellguard-log"
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite file
SCHEMA_VERSION = 2
_U32 = 1 << 32


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS boards (
    id INTEGER PRIMARY KEY,
    unique_id TEXT NOT NULL,
    board TEXT NOT NULL,
    port TEXT,
    info_json TEXT NOT NULL,
    first_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS telemetry (
    board_id INTEGER NOT NULL REFERENCES boards(id),
    boot INTEGER NOT NULL,          -- increments when the board restarts
    seq INTEGER NOT NULL,           -- telemetry counter of that boot
    t_s REAL NOT NULL,              -- board time since first sample, s
    board_time_ms INTEGER NOT NULL, -- raw board clock
    host_time REAL NOT NULL,        -- host clock (Unix time) at receipt
    state TEXT NOT NULL,
    faults INTEGER NOT NULL,
    pack_mv INTEGER NOT NULL,
    current_ma INTEGER NOT NULL,    -- positive = charging
    soc_cpct INTEGER NOT NULL,      -- 0.01 %
    cells_mv BLOB NOT NULL,         -- u16 little-endian per cell
    temps_dc BLOB NOT NULL,         -- i16 little-endian per sensor, 0.1 degC
    warnings INTEGER NOT NULL DEFAULT 0, -- warning bits active (schema 2)
    alarms INTEGER NOT NULL DEFAULT 0,   -- alarm bits active (schema 2)
    allowed INTEGER NOT NULL DEFAULT 3,  -- bit 0 charge, bit 1 discharge may flow (schema 2)
    UNIQUE (board_id, boot, seq)
);
CREATE TABLE IF NOT EXISTS gaps (
    board_id INTEGER NOT NULL REFERENCES boards(id),
    boot INTEGER NOT NULL,
    after_seq INTEGER NOT NULL,
    lost INTEGER NOT NULL,          -- telemetry frames missing
    t_s REAL NOT NULL,
    host_time REAL NOT NULL,        -- when it started (host clock)
    reason TEXT NOT NULL,           -- 'lost frames', 'board restarted', 'unplugged'
    duration_s REAL                 -- host seconds the board was away (unplugged), schema 2
);
CREATE TABLE IF NOT EXISTS events (
    board_id INTEGER NOT NULL REFERENCES boards(id),
    event_index INTEGER NOT NULL,   -- index in the board's event log
    board_time_ms INTEGER NOT NULL, -- raw board clock
    t_s REAL NOT NULL,              -- on the telemetry's t_s axis
    host_time REAL NOT NULL,        -- host clock (Unix time) at receipt
    kind TEXT NOT NULL,             -- trip, release, clear
    severity TEXT NOT NULL,         -- warning, alarm, fault
    bits INTEGER NOT NULL,          -- the fault bit(s) that changed
    value INTEGER NOT NULL,         -- what the protection saw (its wire unit)
    faults INTEGER NOT NULL         -- fault bits holding the output open afterwards
);
CREATE TABLE IF NOT EXISTS estimates ( -- ESTIMATE frames (added to schema 2)
    board_id INTEGER NOT NULL REFERENCES boards(id),
    board_time_ms INTEGER NOT NULL, -- raw board clock
    t_s REAL NOT NULL,              -- on the telemetry's t_s axis
    host_time REAL NOT NULL,        -- host clock (Unix time) at receipt
    mode TEXT NOT NULL,             -- ekf or coulomb
    soc_cpct INTEGER NOT NULL,      -- 0.01 %
    soc_std_cpct INTEGER NOT NULL,  -- 0.01 %, -1: not estimated
    cell_soc_min_cpct INTEGER NOT NULL,
    cell_soc_max_cpct INTEGER NOT NULL,
    capacity_mah INTEGER NOT NULL,
    capacity_cpct INTEGER NOT NULL,
    r0_growth_cpct INTEGER NOT NULL,
    bias_ma INTEGER NOT NULL,
    charge_limit_ma INTEGER NOT NULL, charge_peak_2s_ma INTEGER NOT NULL,
    charge_peak_10s_ma INTEGER NOT NULL, charge_peak_30s_ma INTEGER NOT NULL,
    discharge_limit_ma INTEGER NOT NULL, discharge_peak_2s_ma INTEGER NOT NULL,
    discharge_peak_10s_ma INTEGER NOT NULL, discharge_peak_30s_ma INTEGER NOT NULL,
    balancing INTEGER NOT NULL      -- bit i: cell i bleeding
);
CREATE INDEX IF NOT EXISTS telemetry_time ON telemetry (board_id, t_s);
CREATE INDEX IF NOT EXISTS events_time ON events (board_id, t_s);
CREATE INDEX IF NOT EXISTS estimates_time ON estimates (board_id, t_s);
"""
ESTIMATE_COLUMNS = (
    "soc_cpct", "soc_std_cpct", "cell_soc_min_cpct", "cell_soc_max_cpct", "capacity_mah",
    "capacity_cpct", "r0_growth_cpct", "bias_ma", "charge_limit_ma", "charge_peak_2s_ma",
    "charge_peak_10s_ma", "charge_peak_30s_ma", "discharge_limit_ma", "discharge_peak_2s_ma",
    "discharge_peak_10s_ma", "discharge_peak_30s_ma", "balancing",
)
"""The ESTIMATE fields stored as they came (wire units), after mode."""
_MIGRATE_1_TO_2 = (
    "ALTER TABLE telemetry ADD COLUMN warnings INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE telemetry ADD COLUMN alarms INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE telemetry ADD COLUMN allowed INTEGER NOT NULL DEFAULT 3",
    "ALTER TABLE gaps ADD COLUMN duration_s REAL",
)
_INSERT_TELEMETRY = (
    "INSERT OR IGNORE INTO telemetry (board_id, boot, seq, t_s, board_time_ms, host_time, state,"
    " faults, pack_mv, current_ma, soc_cpct, cells_mv, temps_dc, warnings, alarms, allowed)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_GAP = "INSERT INTO gaps VALUES (?,?,?,?,?,?,?,?)"
_BATCH_ROWS = 256
"""Telemetry rows queued before one ``executemany`` inserts them (a commit inserts them too)."""


def _pack_u16(values: list[int]) -> bytes:
    a = array.array("H", values)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def _pack_i16(values: list[int]) -> bytes:
    a = array.array("h", values)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def _unpack(blob: bytes, code: str) -> list[int]:
    a = array.array(code)
    a.frombytes(blob)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tolist()


@dataclass
class _Step:
    """What one frame means for the board's timeline."""

    lost: int = 0  # telemetry frames missing just before it
    restarted: bool = False  # the board restarted since the previous frame
    duplicate: bool = False  # already stored (same boot, seq not ahead): drop it
    away: tuple[float, float] | None = None  # (host time lost, host seconds away): replugged


@dataclass
class _BoardClock:
    """Turns a board's raw clock and counter into t_s, boot and lost frames.

    Within one connection a counter that goes back is a restart. Across a
    replug the board's uptime (from GET_STATS) says whether it restarted while
    away; if not, a frame whose counter is not ahead of the last stored one is
    a duplicate, not a restart.
    """

    boot: int = 0
    last_ms: int | None = None
    last_seq: int = 0
    t_ms: int = 0
    away_since: float | None = None  # host time the port was lost
    back_at: float | None = None  # host time it answered again
    uptime_ms: int | None = None  # its uptime then; None: unknown

    def advance(self, board_time_ms: int, seq: int) -> _Step:
        if self.last_ms is None:
            self.last_ms, self.last_seq = board_time_ms, seq
            self._settle()
            return _Step()
        delta = (board_time_ms - self.last_ms) % _U32
        ahead = (seq - self.last_seq) % _U32  # 0 or > 2**31: not ahead
        step = _Step()
        if self.back_at is not None and self.uptime_ms is not None:
            step.restarted = (self.uptime_ms - self.last_ms) % _U32 > _U32 // 2
            if not step.restarted and (ahead == 0 or ahead > _U32 // 2):
                return _Step(duplicate=True)
        else:
            if ahead == 0 and delta == 0:
                return _Step(duplicate=True)
            step.restarted = delta > _U32 // 2 or ahead > _U32 // 2
        if self.away_since is not None and self.back_at is not None:
            step.away = (self.away_since, max(self.back_at - self.away_since, 0.0))
        if step.restarted:
            self.boot += 1
            # At least the new boot's uptime has passed; keeps t_s increasing.
            self.t_ms += max(board_time_ms, 1)
        else:
            self.t_ms += delta
            step.lost = ahead - 1
        self.last_ms, self.last_seq = board_time_ms, seq
        self._settle()
        return step

    def _settle(self) -> None:
        self.away_since = self.back_at = self.uptime_ms = None

    def t_at(self, board_time_ms: int) -> float:
        """t_s of an event at ``board_time_ms`` (same boot as the last sample)."""
        if self.last_ms is None:
            return self.t_ms / 1000.0
        delta = (board_time_ms - self.last_ms) % _U32
        return (self.t_ms + (delta if delta <= _U32 // 2 else 0)) / 1000.0


class LogWriter:
    """Append-only writer; every method may be called at any rate (one thread)."""

    def __init__(self, path: str | Path, commit_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self.commit_interval_s = commit_interval_s
        self.migrated_from: int | None = None  # schema of a file migrated on open
        parent = self.path.parent
        if not parent.exists():
            raise LogFileError(f"cannot write log {path}: folder {parent} does not exist")
        if not parent.is_dir():
            raise LogFileError(f"cannot write log {path}: {parent} is a file, not a folder")
        if self.path.is_dir():
            raise LogFileError(f"cannot write log {path}: it is a folder")
        if _holds_other_data(self.path):  # SQLite would refuse, or (a tiny file) overwrite it
            raise LogFileError(
                f"{path} exists and is not a cellguard log (not an SQLite file): the logger "
                "appends only to a cellguard log; give a new file name")
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            self._open(path)
        except BaseException:
            self.db.close()
            raise
        self._clocks: dict[int, _BoardClock] = {}
        self._in_tx = False
        self._pending: list[tuple[Any, ...]] = []  # telemetry rows not inserted yet
        self._closed = False
        self.closed = False
        self._last_commit = time.monotonic()
        self.rows = 0
        self.committed_rows = 0  # telemetry rows on disk (as of the last commit)
        self.lost = 0
        self.boards_added = 0
        self.board_rows: dict[int, int] = {}  # board id -> telemetry rows stored
        self.board_lost: dict[int, int] = {}  # board id -> frames lost while connected
        self.board_gaps: dict[int, int] = {}  # board id -> gap rows written

    def _open(self, path: str | Path) -> None:
        try:
            existing = _read_meta(self.db)
            if existing and existing.get("format") != FORMAT:
                raise LogFileError(f"{path} is an SQLite file but not a cellguard log")
            schema = int(existing.get("schema", SCHEMA_VERSION)) if existing else SCHEMA_VERSION
            if schema > SCHEMA_VERSION:
                raise LogFileError(
                    f"{path} was written by a newer cellguard (log schema {schema}; this one "
                    f"writes {SCHEMA_VERSION}): append to a new file"
                )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN IMMEDIATE")
            if existing and schema < SCHEMA_VERSION:
                self._migrate(schema)
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self.db.execute(stmt)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))
            for key, value in (("schema", SCHEMA_VERSION), ("created", time.time())):
                self.db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, str(value)))
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise self._error(exc) from None

    def _migrate(self, schema: int) -> None:
        """Bring a schema-1 file to schema 2 (inside the open transaction)."""
        if schema != 1:
            raise LogFileError(f"{self.path}: cannot migrate log schema {schema}")
        for stmt in _MIGRATE_1_TO_2:
            self.db.execute(stmt)
        self.db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('migrated', ?)",
                        (f"1->{SCHEMA_VERSION} at {time.time():.0f}",))
        self.migrated_from = schema

    def _error(self, exc: sqlite3.Error) -> LogFileError:
        """One clear line for a failed write, naming the likely cause."""
        text = str(exc)
        cause = ""
        if "disk is full" in text or "disk I/O error" in text:
            cause = _full_disk_cause(self.path)
        elif "readonly" in text or "read-only" in text:
            cause = " (the file or its folder is read-only)"
        elif "unable to open" in text:
            cause = " (check the folder exists and is writable)"
        return LogFileError(f"cannot write log {self.path}: {text}{cause}")

    def add_board(self, info: Info, port: str = "") -> int:
        cur = self._execute(
            "INSERT INTO boards (unique_id, board, port, info_json, first_seen) VALUES (?,?,?,?,?)",
            (info.unique_id, info.board, port, json.dumps(info.to_dict()), time.time()),
        )
        board_id = int(cur.lastrowid or 0)
        self._clocks[board_id] = _BoardClock()
        for counter in (self.board_rows, self.board_lost, self.board_gaps):
            counter[board_id] = 0
        self.boards_added += 1
        self.commit()
        return board_id

    def add(self, board_id: int, t: Telemetry, host_time: float | None = None) -> int:
        """Store one sample; return how many frames were lost just before it while
        connected (frames missed while the board was unplugged are in its gap row).

        Telemetry rows are queued and inserted :data:`_BATCH_ROWS` at a time (one
        ``executemany``), and always before a commit; a gap is inserted at once.
        A frame already stored (same boot, counter not ahead) is dropped.
        """
        host_time = time.time() if host_time is None else host_time
        clock = self._clocks[board_id]
        raw = t.raw
        seq = raw["telemetry_seq"]
        t_before = clock.t_ms / 1000.0
        after_seq = clock.last_seq
        step = clock.advance(raw["board_time_ms"], seq)
        if step.duplicate:
            return 0
        t_s = clock.t_ms / 1000.0
        if step.away is not None:
            since, duration = step.away
            self._gap(board_id, clock.boot - step.restarted, after_seq,
                      0 if step.restarted else step.lost, t_before, since, UNPLUGGED, duration)
        elif step.lost:
            self._gap(board_id, clock.boot, after_seq, step.lost, t_s, host_time, LOST_FRAMES)
            self.lost += step.lost
            self.board_lost[board_id] += step.lost
        if step.restarted:
            self._gap(board_id, clock.boot, (seq - 1) % _U32, 0, t_s, host_time, BOARD_RESTARTED)
        pending = self._pending
        pending.append(
            (board_id, clock.boot, seq, t_s, raw["board_time_ms"], host_time,
             raw["state"], raw["faults"], raw["pack_mv"], raw["current_ma"], raw["soc_cpct"],
             _pack_u16(raw["cells_mv"]), _pack_i16(raw["temps_dc"]),
             raw.get("warnings", 0), raw.get("alarms", 0), raw.get("allowed", 3))
        )
        self.rows += 1
        self.board_rows[board_id] += 1
        if time.monotonic() - self._last_commit >= self.commit_interval_s:
            self.commit()
        elif len(pending) >= _BATCH_ROWS:
            self._flush()
        return 0 if step.away is not None else step.lost

    def _gap(self, board_id: int, boot: int, after_seq: int, lost: int, t_s: float,
             host_time: float, reason: str, duration_s: float | None = None) -> None:
        self._execute(_INSERT_GAP,
                      (board_id, boot, after_seq, lost, t_s, host_time, reason, duration_s))
        self.board_gaps[board_id] += 1

    def add_event(self, board_id: int, p: dict[str, Any], host_time: float | None = None) -> None:
        """Store one FAULT_EVENT payload (a protection tripped, released or was cleared)."""
        host_time = time.time() if host_time is None else host_time
        clock = self._clocks[board_id]
        self._execute(
            "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)",
            (board_id, p["event_index"], p["board_time_ms"], clock.t_at(p["board_time_ms"]),
             host_time, str(p["kind"]), str(p.get("severity", "fault")), p["fault"], p["value"],
             p["faults"]),
        )

    def add_estimate(self, board_id: int, p: dict[str, Any],
                     host_time: float | None = None) -> None:
        """Store one ESTIMATE payload (SoC with its uncertainty, health, limits)."""
        host_time = time.time() if host_time is None else host_time
        clock = self._clocks[board_id]
        self._execute(
            f"INSERT INTO estimates VALUES ({','.join('?' * (5 + len(ESTIMATE_COLUMNS)))})",
            (board_id, p["board_time_ms"], clock.t_at(p["board_time_ms"]), host_time,
             str(p["mode"]), *(p[k] for k in ESTIMATE_COLUMNS)),
        )

    def port_lost(self, board_id: int, host_time: float | None = None) -> None:
        """The board's port vanished (unplugged): its gap starts now."""
        clock = self._clocks[board_id]
        if clock.away_since is None:
            clock.away_since = time.time() if host_time is None else host_time
        clock.back_at = clock.uptime_ms = None

    def port_back(self, board_id: int, host_time: float | None = None,
                  uptime_ms: int | None = None) -> None:
        """The same board answered again; ``uptime_ms`` (from GET_STATS) tells
        whether it restarted meanwhile. The gap is written with its next sample."""
        clock = self._clocks[board_id]
        if clock.away_since is None:
            return
        clock.back_at = time.time() if host_time is None else host_time
        clock.uptime_ms = uptime_ms
        if clock.last_ms is None:  # nothing logged before: no gap to speak of
            clock._settle()

    def end_away(self, board_id: int, host_time: float | None = None) -> None:
        """Close the gap of a board that did not come back (the run ended, or
        another board took its port)."""
        clock = self._clocks[board_id]
        if clock.away_since is None or clock.last_ms is None:
            clock._settle()
            return
        end = time.time() if host_time is None else host_time
        self._gap(board_id, clock.boot, clock.last_seq, 0, clock.t_ms / 1000.0,
                  clock.away_since, UNPLUGGED, max(end - clock.away_since, 0.0))
        clock._settle()

    def board_time_s(self, board_id: int) -> float:
        """t_s of the board's latest sample (0 before the first)."""
        return self._clocks[board_id].t_ms / 1000.0

    def _execute(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            if not self._in_tx:
                self.db.execute("BEGIN")
                self._in_tx = True
            return self.db.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _flush(self) -> None:
        """Insert the queued telemetry rows (in the open transaction)."""
        rows, self._pending = self._pending, []
        try:
            if not self._in_tx:
                self.db.execute("BEGIN")
                self._in_tx = True
            self.db.executemany(_INSERT_TELEMETRY, rows)
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def commit(self) -> None:
        if self._pending:
            self._flush()
        if self._in_tx:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._error(exc) from None
            self._in_tx = False
        self.committed_rows = self.rows
        self._last_commit = time.monotonic()

    def commit_if_due(self) -> None:
        """Commit if the last commit is ``commit_interval_s`` old (call it when idle)."""
        if time.monotonic() - self._last_commit >= self.commit_interval_s:
            self.commit()

    def close(self) -> None:
        """Close open gaps, commit and close; safe to call twice, and after a
        failed write (what was committed stays)."""
        if self._closed:
            return
        self._closed = True
        self.closed = True
        try:
            for board_id in self._clocks:
                self.end_away(board_id)
            self.commit()
            # Leave one self-contained file behind (no -wal/-shm beside it).
            self.db.execute("PRAGMA journal_mode=DELETE")
        except (sqlite3.Error, LogFileError):
            pass  # a failed write, or another writer still has it open in WAL mode
        finally:
            self.db.close()


def _holds_other_data(path: Path) -> bool:
    """True for an existing file with something in it that is not an SQLite file."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError:
        return False  # not there (or unreadable: SQLite says why)
    return bool(head) and head != SQLITE_HEADER


def _full_disk_cause(path: Path) -> str:
    """Why a write failed for lack of room: the disk, or the file size limit."""
    try:
        st = os.statvfs(path.parent)
        if st.f_bavail * st.f_frsize < 1 << 20:
            return " (the disk is full)"
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        return f" (the file size limit, ulimit -f, is {soft} bytes: the disk counts as full)"
    return " (is the disk full?)"


def _read_meta(db: sqlite3.Connection) -> dict[str, str]:
    has = db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name='meta'"
    ).fetchone()
    if not has:
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        return {"format": "?"} if tables else {}
    return dict(db.execute("SELECT key, value FROM meta").fetchall())


def selection(board_id: int | None = None, t_from: float | None = None,
              t_to: float | None = None) -> tuple[str, list[Any]]:
    """The WHERE clause (with its parameters) picking one board and a ``t_s`` range;
    "" when nothing is picked. Every table with ``board_id`` and ``t_s`` takes it."""
    terms: list[str] = []
    params: list[Any] = []
    for term, value in (("board_id = ?", board_id), ("t_s >= ?", t_from), ("t_s <= ?", t_to)):
        if value is not None:
            terms.append(term)
            params.append(value)
    return (" WHERE " + " AND ".join(terms) if terms else ""), params

_FAST_COLUMNS = ("boot", "seq", "t_s", "board_time_ms", "host_time", "state", "faults",
                 "pack_mv", "current_ma", "soc_cpct", "cells_mv", "temps_dc")
_CHUNK = 50_000


def _blobs(blobs: tuple[bytes, ...], dtype: str, width: int, scale: float) -> np.ndarray:
    sizes = {len(b) for b in blobs}
    item = np.dtype(dtype).itemsize
    if len(sizes) == 1 and width * item == next(iter(sizes)):
        return np.frombuffer(b"".join(blobs), dtype=dtype).reshape(len(blobs), width) / scale
    out = np.full((len(blobs), width), np.nan)
    for k, b in enumerate(blobs):
        v = np.frombuffer(b, dtype=dtype)[:width] / scale
        out[k, : len(v)] = v
    return out


def _load_series(db: sqlite3.Connection, board_id: int, info: Info, t_from: float | None,
                 t_to: float | None, has_warnings: bool) -> Series:
    """The telemetry table's columns read in chunks straight into arrays: the same
    values :meth:`SqliteLogReader.samples` gives, many times faster."""
    extra = ", warnings, alarms" if has_warnings else ", 0, 0"
    where, params = selection(board_id, t_from, t_to)
    sql = f"SELECT {', '.join(_FAST_COLUMNS)}{extra} FROM telemetry{where}"
    cur = db.execute(sql + " ORDER BY t_s", params)
    first = db.execute(
        "SELECT cells_mv, temps_dc FROM telemetry WHERE board_id = ? LIMIT 1", (board_id,)
    ).fetchone()
    n_cells = max(info.cell_count, len(first[0]) // 2 if first else 0)
    n_temps = max(info.temp_count, len(first[1]) // 2 if first else 0)
    parts: list[dict[str, Any]] = []
    while rows := cur.fetchmany(_CHUNK):
        c = list(zip(*rows, strict=True))
        parts.append({
            "boot": np.asarray(c[0], dtype=np.int64), "seq": np.asarray(c[1], dtype=np.int64),
            "t": np.asarray(c[2], dtype=float), "board_ms": np.asarray(c[3], dtype=np.int64),
            "host_time": np.asarray(c[4], dtype=float), "state": list(c[5]),
            "faults": np.asarray(c[6], dtype=np.int64),
            "pack_v": np.asarray(c[7], dtype=float) / 1000.0,
            "current_a": np.asarray(c[8], dtype=float) / 1000.0,
            "soc_pct": np.asarray(c[9], dtype=float) / 100.0,
            "cells_v": _blobs(c[10], "<u2", n_cells, 1000.0),
            "temps_c": _blobs(c[11], "<i2", n_temps, 10.0),
            "warnings": np.asarray(c[12], dtype=np.int64),
            "alarms": np.asarray(c[13], dtype=np.int64),
        })

    def join(key: str, empty: np.ndarray) -> Any:
        if key == "state":
            return [x for p in parts for x in p[key]]
        return np.concatenate([p[key] for p in parts]) if parts else empty

    none_f, none_i = np.zeros(0), np.zeros(0, dtype=np.int64)
    return Series(
        board_id=board_id, info=info, t=join("t", none_f), boot=join("boot", none_i),
        seq=join("seq", none_i), board_ms=join("board_ms", none_i),
        host_time=join("host_time", none_f), state=join("state", none_f),
        faults=join("faults", none_i),
        warnings=join("warnings", none_i) if has_warnings else None,
        alarms=join("alarms", none_i) if has_warnings else None,
        pack_v=join("pack_v", none_f), current_a=join("current_a", none_f),
        soc_pct=join("soc_pct", none_f), cells_v=join("cells_v", np.zeros((0, n_cells))),
        temps_c=join("temps_c", np.zeros((0, n_temps))),
    )


class SqliteLogReader(LogReader):
    """Reads a cellguard SQLite log of schema 1 or 2 (read-only; safe beside a running writer)."""

    name = "sqlite"

    @classmethod
    def recognises(cls, path: Path) -> bool:
        try:
            with path.open("rb") as f:
                return f.read(16) == SQLITE_HEADER
        except OSError:
            return False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise LogFileError(f"{path} is a folder, not a log file")
        if not self.path.is_file():
            raise LogFileError(f"no such log file: {path}")
        if not self.recognises(self.path):
            raise LogFileError(f"{path} is not a cellguard log (not an SQLite file)")
        try:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            meta = _read_meta(self.db)
        except sqlite3.DatabaseError:
            raise LogFileError(f"{path} is not a cellguard log (not an SQLite file)") from None
        if meta.get("format") != FORMAT:
            self.db.close()
            raise LogFileError(f"{path} is not a cellguard log")
        self.schema = int(meta.get("schema", "0"))
        if self.schema > SCHEMA_VERSION:
            self.db.close()
            raise LogFileError(f"{path} was written by a newer cellguard (schema {meta['schema']})")
        self._columns = {
            table: {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            for table in ("telemetry", "gaps", "events", "estimates")
        }

    def close(self) -> None:
        self.db.close()

    def meta(self) -> dict[str, str]:
        return _read_meta(self.db)

    def records_warnings(self) -> bool:
        return "warnings" in self._columns["telemetry"]

    def time_span(self, board_ids: Iterable[int]) -> tuple[float, float] | None:
        ids = list(board_ids)
        marks = ",".join("?" * len(ids))
        row = self.db.execute(
            f"SELECT MIN(t_s), MAX(t_s) FROM telemetry WHERE board_id IN ({marks})", ids
        ).fetchone()
        return None if row is None or row[0] is None else (float(row[0]), float(row[1]))

    def count_samples(self, board_ids: Iterable[int], t_from: float, t_to: float) -> int:
        ids = list(board_ids)
        marks = ",".join("?" * len(ids))
        return int(self.db.execute(
            f"SELECT COUNT(*) FROM telemetry WHERE board_id IN ({marks}) AND t_s >= ? AND t_s <= ?",
            [*ids, t_from, t_to],
        ).fetchone()[0])

    def series(self, board_id: int, info: Info, t_from: float | None = None,
               t_to: float | None = None) -> Series:
        return _load_series(self.db, board_id, info, t_from, t_to, self.records_warnings())

    def boards(self) -> list[tuple[int, Info]]:
        rows = self.db.execute("SELECT id, info_json FROM boards ORDER BY id").fetchall()
        return [(bid, Info(**json.loads(j))) for bid, j in rows]

    def board_ports(self) -> dict[int, str]:
        """Board id -> the port (path) it was logged from."""
        return {bid: port or "" for bid, port in self.db.execute("SELECT id, port FROM boards")}

    def samples(self, board_id: int | None = None, t_from: float | None = None,
                t_to: float | None = None) -> Iterator[Sample]:
        extra = ("warnings, alarms, allowed" if "warnings" in self._columns["telemetry"]
                 else "0, 0, 3")
        sql = ("SELECT board_id, boot, seq, t_s, board_time_ms, host_time, state, faults,"
               f" pack_mv, current_ma, soc_cpct, cells_mv, temps_dc, {extra}"
               " FROM telemetry")
        where, params = selection(board_id, t_from, t_to)
        sql += where
        sql += " ORDER BY board_id, t_s"
        for row in self.db.execute(sql, params):
            (bid, boot, seq, t_s, board_ms, host_time, state, faults, pack_mv, current_ma,
             soc_cpct, cells, temps, warnings, alarms, allowed) = row
            yield Sample(bid, boot, seq, t_s, board_ms, host_time, state, faults, pack_mv / 1000.0,
                         current_ma / 1000.0, soc_cpct / 100.0,
                         [mv / 1000.0 for mv in _unpack(cells, "H")],
                         [dc / 10.0 for dc in _unpack(temps, "h")],
                         warnings, alarms, allowed)

    def lost(self, board_id: int | None = None) -> int:
        """Telemetry frames lost on the link while connected (not while unplugged)."""
        sql = "SELECT COALESCE(SUM(lost), 0) FROM gaps WHERE reason = ?"
        params: list[Any] = [LOST_FRAMES]
        if board_id is not None:
            sql += " AND board_id = ?"
            params.append(board_id)
        return int(self.db.execute(sql, params).fetchone()[0])

    def gaps(self, board_id: int | None = None, reason: str | None = None) -> Iterator[Gap]:
        """Gaps in time order (per board): lost frames, restarts, unplugged periods."""
        duration = "duration_s" if "duration_s" in self._columns["gaps"] else "NULL"
        sql = (f"SELECT board_id, boot, after_seq, lost, t_s, host_time, reason, {duration}"
               " FROM gaps WHERE 1=1")
        params: list[Any] = []
        if board_id is not None:
            sql += " AND board_id = ?"
            params.append(board_id)
        if reason is not None:
            sql += " AND reason = ?"
            params.append(reason)
        for row in self.db.execute(sql + " ORDER BY board_id, t_s, rowid", params):
            yield Gap(*row)

    def events(self, board_id: int | None = None, t_from: float | None = None,
               t_to: float | None = None) -> Iterator[LogEvent]:
        """FAULT_EVENT rows in time order (none in a schema-1 log)."""
        if not self._columns["events"]:
            return
        sql = ("SELECT board_id, event_index, board_time_ms, t_s, host_time, kind, severity,"
               " bits, value, faults FROM events")
        where, params = selection(board_id, t_from, t_to)
        sql += where
        for row in self.db.execute(sql + " ORDER BY board_id, t_s, rowid", params):
            yield LogEvent(*row)

    def soc_estimates(self, board_id: int, t_from: float | None = None,
                      t_to: float | None = None) -> SocEstimates:
        """The estimates' SoC columns of one board read straight into arrays."""
        if not self._columns["estimates"]:
            return SocEstimates.empty()
        where, params = selection(board_id, t_from, t_to)
        rows = self.db.execute("SELECT t_s, soc_cpct, soc_std_cpct FROM estimates"
                               f"{where} ORDER BY t_s, rowid", params).fetchall()
        if not rows:
            return SocEstimates.empty()
        t, soc, std = zip(*rows, strict=True)
        return SocEstimates.from_wire(t, soc, std, self.path)

    def estimates(self, board_id: int | None = None) -> Iterator[dict[str, Any]]:
        """ESTIMATE rows in time order, in wire units with ``board_id``, ``t_s``,
        ``host_time`` and ``mode`` (none in logs written before they were stored)."""
        if not self._columns["estimates"]:
            return
        cols = ("board_id", "board_time_ms", "t_s", "host_time", "mode", *ESTIMATE_COLUMNS)
        where, params = selection(board_id)
        sql = f"SELECT {', '.join(cols)} FROM estimates{where}"
        for row in self.db.execute(sql + " ORDER BY board_id, t_s, rowid", params):
            yield dict(zip(cols, row, strict=True))
