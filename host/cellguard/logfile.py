"""The cellguard log: one SQLite file (WAL mode) holding boards, telemetry and gaps.

This is where a cell voltage lands on disk. Values are stored in their integer
wire units (mV, mA, 0.1 degC, 0.01 %) so nothing is rounded twice; cell
voltages and temperatures are packed little-endian arrays (u16 mV, i16 0.1 degC)
in one BLOB per sample. ``t_s`` is board time in seconds since the board's
first logged sample, continued across board resets and counter wrap.

Commits are batched (at most ``commit_interval_s`` apart), so a crash or a
SIGKILL loses at most that much, and the file always opens afterwards.
"""

from __future__ import annotations

import array
import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import Info, Telemetry, fault_names
from .errors import LogFileError

FORMAT = "cellguard-log"
SCHEMA_VERSION = 1
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
    UNIQUE (board_id, boot, seq)
);
CREATE TABLE IF NOT EXISTS gaps (
    board_id INTEGER NOT NULL REFERENCES boards(id),
    boot INTEGER NOT NULL,
    after_seq INTEGER NOT NULL,
    lost INTEGER NOT NULL,          -- telemetry frames missing
    t_s REAL NOT NULL,
    host_time REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS telemetry_time ON telemetry (board_id, t_s);
"""
_INSERT_TELEMETRY = "INSERT OR IGNORE INTO telemetry VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
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
class _BoardClock:
    """Turns a board's raw clock and counter into t_s, boot and lost frames."""

    boot: int = 0
    last_ms: int | None = None
    last_seq: int = 0
    t_ms: int = 0

    def advance(self, board_time_ms: int, seq: int) -> tuple[int, bool]:
        """Return (frames lost before this one, board restarted)."""
        if self.last_ms is None:
            self.last_ms, self.last_seq = board_time_ms, seq
            return 0, False
        delta = (board_time_ms - self.last_ms) % _U32
        restarted = delta > _U32 // 2 or (seq < self.last_seq and self.last_seq - seq < _U32 // 2)
        if restarted:
            self.boot += 1
            self.t_ms += 1  # keep t_s increasing across the restart
            lost = 0
        else:
            self.t_ms += delta
            lost = (seq - self.last_seq - 1) % _U32
        self.last_ms, self.last_seq = board_time_ms, seq
        return lost, restarted


class LogWriter:
    """Append-only writer; every method may be called at any rate."""

    def __init__(self, path: str | Path, commit_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self.commit_interval_s = commit_interval_s
        try:
            if self.path.parent and not self.path.parent.exists():
                raise LogFileError(
                    f"cannot write log {path}: folder {self.path.parent} does not exist"
                )
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            existing = _read_meta(self.db)
            if existing and existing.get("format") != FORMAT:
                raise LogFileError(f"{path} is an SQLite file but not a cellguard log")
            self.db.executescript(_SCHEMA)
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))
            for key, value in (("schema", SCHEMA_VERSION), ("created", time.time())):
                self.db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, str(value)))
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise LogFileError(f"cannot write log {path}: {exc}") from None
        self._clocks: dict[int, _BoardClock] = {}
        self._in_tx = False
        self._pending: list[tuple[Any, ...]] = []  # telemetry rows not inserted yet
        self._closed = False
        self._last_commit = time.monotonic()
        self.rows = 0
        self.lost = 0
        self.boards_added = 0

    def add_board(self, info: Info, port: str = "") -> int:
        cur = self._execute(
            "INSERT INTO boards (unique_id, board, port, info_json, first_seen) VALUES (?,?,?,?,?)",
            (info.unique_id, info.board, port, json.dumps(info.to_dict()), time.time()),
        )
        board_id = int(cur.lastrowid or 0)
        self._clocks[board_id] = _BoardClock()
        self.boards_added += 1
        self.commit()
        return board_id

    def add(self, board_id: int, t: Telemetry, host_time: float | None = None) -> int:
        """Store one sample; return how many frames were lost just before it.

        Telemetry rows are queued and inserted :data:`_BATCH_ROWS` at a time (one
        ``executemany``), and always before a commit; a gap is inserted at once.
        """
        host_time = time.time() if host_time is None else host_time
        clock = self._clocks[board_id]
        raw = t.raw
        seq = raw["telemetry_seq"]
        lost, restarted = clock.advance(raw["board_time_ms"], seq)
        t_s = clock.t_ms / 1000.0
        if lost or restarted:
            self._execute(
                "INSERT INTO gaps VALUES (?,?,?,?,?,?,?)",
                (board_id, clock.boot, (seq - lost - 1) % _U32, lost, t_s,
                 host_time, "board restarted" if restarted else "lost frames"),
            )
            self.lost += lost
        pending = self._pending
        pending.append(
            (board_id, clock.boot, seq, t_s, raw["board_time_ms"], host_time,
             raw["state"], raw["faults"], raw["pack_mv"], raw["current_ma"], raw["soc_cpct"],
             _pack_u16(raw["cells_mv"]), _pack_i16(raw["temps_dc"]))
        )
        self.rows += 1
        if time.monotonic() - self._last_commit >= self.commit_interval_s:
            self.commit()
        elif len(pending) >= _BATCH_ROWS:
            self._flush()
        return lost

    def _execute(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            if not self._in_tx:
                self.db.execute("BEGIN")
                self._in_tx = True
            return self.db.execute(sql, params)
        except sqlite3.Error as exc:
            raise LogFileError(f"cannot write log {self.path}: {exc}") from None

    def _flush(self) -> None:
        """Insert the queued telemetry rows (in the open transaction)."""
        rows, self._pending = self._pending, []
        try:
            if not self._in_tx:
                self.db.execute("BEGIN")
                self._in_tx = True
            self.db.executemany(_INSERT_TELEMETRY, rows)
        except sqlite3.Error as exc:
            raise LogFileError(f"cannot write log {self.path}: {exc}") from None

    def commit(self) -> None:
        if self._pending:
            self._flush()
        if self._in_tx:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise LogFileError(f"cannot write log {self.path}: {exc}") from None
            self._in_tx = False
        self._last_commit = time.monotonic()

    def close(self) -> None:
        """Commit and close; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.commit()
            # Leave one self-contained file behind (no -wal/-shm beside it).
            self.db.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.Error:
            pass  # another writer still has it open in WAL mode: fine
        finally:
            self.db.close()


def _read_meta(db: sqlite3.Connection) -> dict[str, str]:
    has = db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name='meta'"
    ).fetchone()
    if not has:
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        return {"format": "?"} if tables else {}
    return dict(db.execute("SELECT key, value FROM meta").fetchall())


@dataclass
class Sample:
    """One stored sample in SI units."""

    board_id: int
    boot: int
    seq: int
    t_s: float
    board_time_ms: int
    host_time: float
    state: str
    faults: int
    pack_v: float
    current_a: float
    soc_pct: float
    cells_v: list[float]
    temps_c: list[float]


@dataclass
class LogSummary:
    boards: list[str]
    duration_s: float
    samples: int
    lost: int
    charge_in_ah: float
    charge_out_ah: float
    min_cell_v: float | None
    max_cell_v: float | None
    final_soc_pct: float | None
    faults_seen: dict[str, int] = field(default_factory=dict)  # name -> times it tripped

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        def volts(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f} V"

        faults = ", ".join(f"{k} ({n}x)" for k, n in self.faults_seen.items()) or "none"
        soc = "-" if self.final_soc_pct is None else f"{self.final_soc_pct:.1f} %"
        return [
            f"boards:           {', '.join(self.boards) or '-'}",
            f"duration:         {self.duration_s:.1f} s of board time "
            f"({self.duration_s / 3600:.2f} h)",
            f"samples logged:   {self.samples}",
            f"samples lost:     {self.lost}",
            f"charge in:        {self.charge_in_ah:.3f} Ah",
            f"charge out:       {self.charge_out_ah:.3f} Ah",
            f"min cell voltage: {volts(self.min_cell_v)}",
            f"max cell voltage: {volts(self.max_cell_v)}",
            f"final SoC:        {soc}",
            f"faults seen:      {faults}",
        ]


class LogReader:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise LogFileError(f"no such log file: {path}")
        try:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            meta = _read_meta(self.db)
        except sqlite3.DatabaseError:
            raise LogFileError(f"{path} is not a cellguard log (not an SQLite file)") from None
        if meta.get("format") != FORMAT:
            raise LogFileError(f"{path} is not a cellguard log")
        if int(meta.get("schema", "0")) > SCHEMA_VERSION:
            raise LogFileError(f"{path} was written by a newer cellguard (schema {meta['schema']})")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def boards(self) -> list[tuple[int, Info]]:
        rows = self.db.execute("SELECT id, info_json FROM boards ORDER BY id").fetchall()
        return [(bid, Info(**json.loads(j))) for bid, j in rows]

    def samples(self, board_id: int | None = None, t_from: float | None = None,
                t_to: float | None = None) -> Iterator[Sample]:
        sql = ("SELECT board_id, boot, seq, t_s, board_time_ms, host_time, state, faults,"
               " pack_mv, current_ma, soc_cpct, cells_mv, temps_dc FROM telemetry WHERE 1=1")
        params: list[Any] = []
        if board_id is not None:
            sql += " AND board_id = ?"
            params.append(board_id)
        if t_from is not None:
            sql += " AND t_s >= ?"
            params.append(t_from)
        if t_to is not None:
            sql += " AND t_s <= ?"
            params.append(t_to)
        sql += " ORDER BY board_id, t_s"
        for row in self.db.execute(sql, params):
            (bid, boot, seq, t_s, board_ms, host_time, state, faults, pack_mv, current_ma,
             soc_cpct, cells, temps) = row
            yield Sample(bid, boot, seq, t_s, board_ms, host_time, state, faults, pack_mv / 1000.0,
                         current_ma / 1000.0, soc_cpct / 100.0,
                         [mv / 1000.0 for mv in _unpack(cells, "H")],
                         [dc / 10.0 for dc in _unpack(temps, "h")])

    def lost(self) -> int:
        return int(self.db.execute("SELECT COALESCE(SUM(lost), 0) FROM gaps").fetchone()[0])

    def summary(self) -> LogSummary:
        boards = [f"{info.board} ({info.unique_id})" for _, info in self.boards()]
        samples = 0
        charge_in = charge_out = 0.0
        lo: float | None = None
        hi: float | None = None
        prev: Sample | None = None
        t_first: float | None = None
        t_last = 0.0
        final_soc: float | None = None
        trips: dict[str, int] = {}
        for s in self.samples():
            samples += 1
            if t_first is None:
                t_first = s.t_s
            t_last = s.t_s
            final_soc = s.soc_pct
            if s.cells_v:
                lo = min(s.cells_v) if lo is None else min(lo, *s.cells_v)
                hi = max(s.cells_v) if hi is None else max(hi, *s.cells_v)
            new_bits = s.faults & ~(prev.faults if prev and prev.board_id == s.board_id else 0)
            for name in fault_names(new_bits):
                trips[name] = trips.get(name, 0) + 1
            if prev is not None and prev.board_id == s.board_id:
                dt_h = (s.t_s - prev.t_s) / 3600.0
                amps = (s.current_a + prev.current_a) / 2.0
                if amps > 0:
                    charge_in += amps * dt_h
                else:
                    charge_out -= amps * dt_h
            prev = s
        return LogSummary(
            boards=boards,
            duration_s=(t_last - t_first) if t_first is not None else 0.0,
            samples=samples,
            lost=self.lost(),
            charge_in_ah=charge_in,
            charge_out_ah=charge_out,
            min_cell_v=lo,
            max_cell_v=hi,
            final_soc_pct=final_soc,
            faults_seen=trips,
        )
