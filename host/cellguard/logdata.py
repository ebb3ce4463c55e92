"""Read a cellguard log for analysis: boards, time ranges, arrays, events and gaps.

Shared by ``export``, ``plot`` and ``report``. Samples come through
:class:`~cellguard.logfile.LogReader`; what only newer logs hold (an ``events``
table of FAULT_EVENTs, ``warnings``/``alarms`` per sample, more columns in
``gaps``) is read defensively here, so a log written by an older logger still
works: it simply has nothing to say about those.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .client import EVENT_NAMES, Info, fault_names
from .errors import CellguardError, LogFileError
from .logfile import LogReader, selection

SEVERITY_NAMES = {0: "warning", 1: "alarm", 2: "fault"}
GAP_PERIODS = 5.0
"""An interval between two samples longer than this many telemetry periods is a gap."""

_TIME = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|sec|m|min|h|hr|d)?\s*$", re.IGNORECASE)
_UNIT_S = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0,
           "d": 86400.0}


def parse_time_s(text: str) -> float:
    """A time on the log's ``t_s`` axis: ``90``, ``90s``, ``15m``, ``1.5h``, ``1:30:00``."""
    t = text.strip()
    if ":" in t:
        parts = t.split(":")
        if len(parts) in (2, 3) and all(re.fullmatch(r"[0-9]+(\.[0-9]+)?", p) for p in parts):
            seconds = 0.0
            for p in parts:
                seconds = seconds * 60 + float(p)
            return seconds
    else:
        m = _TIME.match(t)
        if m:
            unit = m.group(2).lower() if m.group(2) else None
            return float(m.group(1)) * _UNIT_S[unit]
    raise ValueError(f"not a time: {text!r} (give seconds, e.g. 90, 15m, 1.5h or 1:30:00)")


def check_range(t_from: float | None, t_to: float | None) -> None:
    if t_from is not None and t_to is not None and t_from > t_to:
        raise CellguardError(f"--from {t_from:g} s is after --to {t_to:g} s: an empty range")


def describe_board(board_id: int, info: Info) -> str:
    return f"{board_id} = {info.board} ({info.unique_id})"


def choose_boards(reader: LogReader, board: str | int | None) -> list[tuple[int, Info]]:
    """The boards ``--board`` names: a unique id, a board id (row) or a board name.

    A unique id or name may match several rows (one per connection). ``None``
    chooses every board.
    """
    boards = reader.boards()
    if not boards:
        raise LogFileError(f"{reader.path} holds no board yet")
    if board is None:
        return boards
    key = str(board).strip()
    for match in (
        [(b, i) for b, i in boards if i.unique_id == key],
        [(b, i) for b, i in boards if key.isdigit() and b == int(key)],
        [(b, i) for b, i in boards if i.board == key],
    ):
        if match:
            return match
    held = "; ".join(describe_board(b, i) for b, i in boards)
    raise LogFileError(f"{reader.path} has no board {key!r} (give a board id, unique id or "
                       f"name; it holds {held})")


def time_span(reader: LogReader, board_ids: Iterable[int]) -> tuple[float, float] | None:
    ids = list(board_ids)
    marks = ",".join("?" * len(ids))
    row = reader.db.execute(
        f"SELECT MIN(t_s), MAX(t_s) FROM telemetry WHERE board_id IN ({marks})", ids
    ).fetchone()
    return None if row is None or row[0] is None else (float(row[0]), float(row[1]))


def check_samples(reader: LogReader, boards: list[tuple[int, Info]], t_from: float | None,
                  t_to: float | None) -> None:
    """Refuse a selection without samples, saying what the log covers."""
    ids = [b for b, _ in boards]
    span = time_span(reader, ids)
    which = "board " + ", ".join(str(b) for b in ids) if len(ids) < len(reader.boards()) else ""
    if span is None:
        raise LogFileError(f"{reader.path} holds no samples" + (f" of {which}" if which else ""))
    lo = span[0] if t_from is None else t_from
    hi = span[1] if t_to is None else t_to
    marks = ",".join("?" * len(ids))
    n = reader.db.execute(
        f"SELECT COUNT(*) FROM telemetry WHERE board_id IN ({marks}) AND t_s >= ? AND t_s <= ?",
        [*ids, lo, hi],
    ).fetchone()[0]
    if not n:
        raise CellguardError(
            f"no samples{' of ' + which if which else ''} between {lo:g} s and {hi:g} s; "
            f"the log covers t_s {span[0]:g}..{span[1]:g} s"
        )


@dataclass
class Series:
    """One board's samples (one connection) as arrays in SI units, ordered by t_s."""

    board_id: int
    info: Info
    t: np.ndarray
    boot: np.ndarray
    seq: np.ndarray
    board_ms: np.ndarray
    host_time: np.ndarray
    state: list[str]
    faults: np.ndarray
    warnings: np.ndarray | None  # None: the log does not record them
    alarms: np.ndarray | None
    pack_v: np.ndarray
    current_a: np.ndarray
    soc_pct: np.ndarray
    cells_v: np.ndarray  # (samples, cells); NaN where a sample has fewer
    temps_c: np.ndarray  # (samples, sensors)

    def __len__(self) -> int:
        return len(self.t)

    @property
    def period_s(self) -> float:
        """The telemetry period: INFO's, or the median interval when INFO has none."""
        if self.info.telemetry_period_s > 0:
            return float(self.info.telemetry_period_s)
        dt = np.diff(self.t)
        dt = dt[dt > 0]
        return float(np.median(dt)) if len(dt) else 1.0

    @property
    def max_dt_s(self) -> float:
        """Intervals longer than this are gaps: not integrated, not drawn as a line."""
        return GAP_PERIODS * self.period_s

    def gap_mask(self) -> np.ndarray:
        """True for each interval (i, i+1) that is a gap: too long, or across a board restart."""
        if len(self.t) < 2:
            return np.zeros(0, dtype=bool)
        return (np.diff(self.t) > self.max_dt_s) | (np.diff(self.boot) != 0)


def _pad(rows: list[list[float]], width: int) -> np.ndarray:
    out = np.full((len(rows), width), np.nan)
    for k, r in enumerate(rows):
        out[k, : len(r)] = r[:width]
    return out


_FAST_COLUMNS = ("boot", "seq", "t_s", "board_time_ms", "host_time", "state", "faults",
                 "pack_mv", "current_ma", "soc_cpct", "cells_mv", "temps_dc")
_CHUNK = 50_000


def load_series(reader: LogReader, board_id: int, info: Info, t_from: float | None = None,
                t_to: float | None = None) -> Series:
    """One board's samples in ``[t_from, t_to]`` as arrays, in SI units.

    Reads the telemetry table's documented columns in chunks straight into
    arrays (the same values :meth:`LogReader.samples` gives, many times faster,
    which matters for logs of days); a table without them goes through
    ``LogReader.samples``.
    """
    have = set(table_columns(reader.db, "telemetry"))
    if set(_FAST_COLUMNS) <= have:
        return _load_fast(reader, board_id, info, t_from, t_to, "warnings" in have)
    return _load_via_samples(reader, board_id, info, t_from, t_to)


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


def _load_fast(reader: LogReader, board_id: int, info: Info, t_from: float | None,
               t_to: float | None, has_warnings: bool) -> Series:
    extra = ", warnings, alarms" if has_warnings else ", 0, 0"
    where, params = selection(board_id, t_from, t_to)
    sql = f"SELECT {', '.join(_FAST_COLUMNS)}{extra} FROM telemetry{where}"
    cur = reader.db.execute(sql + " ORDER BY t_s", params)
    first = reader.db.execute(
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


def _load_via_samples(reader: LogReader, board_id: int, info: Info, t_from: float | None,
                      t_to: float | None) -> Series:
    cols: dict[str, list[Any]] = {k: [] for k in (
        "t", "boot", "seq", "board_ms", "host_time", "state", "faults", "warnings", "alarms",
        "pack_v", "current_a", "soc_pct", "cells", "temps")}
    has_warnings = "warnings" in table_columns(reader.db, "telemetry")
    for s in reader.samples(board_id, t_from, t_to):
        cols["t"].append(s.t_s)
        cols["boot"].append(s.boot)
        cols["seq"].append(s.seq)
        cols["board_ms"].append(s.board_time_ms)
        cols["host_time"].append(s.host_time)
        cols["state"].append(s.state)
        cols["faults"].append(s.faults)
        w, a = getattr(s, "warnings", None), getattr(s, "alarms", None)
        if w is None or a is None:
            has_warnings = False
        else:
            cols["warnings"].append(w)
            cols["alarms"].append(a)
        cols["pack_v"].append(s.pack_v)
        cols["current_a"].append(s.current_a)
        cols["soc_pct"].append(s.soc_pct)
        cols["cells"].append(s.cells_v)
        cols["temps"].append(s.temps_c)
    n_cells = max([info.cell_count, *(len(c) for c in cols["cells"][:1])])
    n_temps = max([info.temp_count, *(len(c) for c in cols["temps"][:1])])
    return Series(
        board_id=board_id,
        info=info,
        t=np.asarray(cols["t"], dtype=float),
        boot=np.asarray(cols["boot"], dtype=np.int64),
        seq=np.asarray(cols["seq"], dtype=np.int64),
        board_ms=np.asarray(cols["board_ms"], dtype=np.int64),
        host_time=np.asarray(cols["host_time"], dtype=float),
        state=cols["state"],
        faults=np.asarray(cols["faults"], dtype=np.int64),
        warnings=np.asarray(cols["warnings"], dtype=np.int64) if has_warnings else None,
        alarms=np.asarray(cols["alarms"], dtype=np.int64) if has_warnings else None,
        pack_v=np.asarray(cols["pack_v"], dtype=float),
        current_a=np.asarray(cols["current_a"], dtype=float),
        soc_pct=np.asarray(cols["soc_pct"], dtype=float),
        cells_v=_pad(cols["cells"], n_cells),
        temps_c=_pad(cols["temps"], n_temps),
    )


# --- tables that only some logs have -------------------------------------------------------


def table_columns(db: sqlite3.Connection, table: str) -> list[str]:
    """The columns of ``table``, or [] when the log has no such table."""
    try:
        return [r[1] for r in db.execute(f"PRAGMA table_info({table})").fetchall()]
    except sqlite3.Error:
        return []


def _rows(db: sqlite3.Connection, table: str, board_id: int | None) -> list[dict[str, Any]]:
    cols = table_columns(db, table)
    if not cols:
        return []
    sql = f"SELECT * FROM {table}"
    params: list[Any] = []
    if board_id is not None and "board_id" in cols:
        sql += " WHERE board_id = ?"
        params.append(board_id)
    try:
        rows = db.execute(sql, params).fetchall()
    except sqlite3.Error:
        return []
    out = []
    for r in rows:
        d = dict(zip(cols, r, strict=False))
        for key in ("payload_json", "payload", "json", "data"):
            if isinstance(d.get(key), str):
                try:
                    extra = json.loads(d[key])
                except ValueError:
                    continue
                if isinstance(extra, dict):
                    d = {**extra, **{k: v for k, v in d.items() if k != key}}
        out.append(d)
    return out


def _first(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


UNPLUGGED = "unplugged"
"""The reason of a gap whose ``t_s`` is where samples stop (others: where they resume)."""


@dataclass
class Gap:
    """Samples that are missing: lost frames, a board restart, a replug, a silent spell."""

    board_id: int
    t_s: float  # as recorded; for an unrecorded silent spell: where samples resume
    reason: str
    lost: int  # frames missing by the telemetry counter (0 when unknown)
    start_s: float | None  # the last sample before it (None: before the selection)
    end_s: float | None  # the first sample after it (None: the run ended)
    away_s: float | None = None  # host seconds the board was unplugged, when recorded

    @property
    def no_samples_s(self) -> float | None:
        if self.start_s is None or self.end_s is None:
            return None
        return self.end_s - self.start_s

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "no_samples_s": self.no_samples_s}


def _recorded_gaps(reader: LogReader, board_id: int) -> list[tuple[float, int, str, Any]]:
    """(t_s, lost, reason, host seconds away) of the gap rows, through LogReader when it can."""
    if hasattr(reader, "gaps"):
        return [(float(g.t_s), int(g.lost), str(g.reason), getattr(g, "duration_s", None))
                for g in reader.gaps(board_id)]
    out = []
    for d in _rows(reader.db, "gaps", board_id):
        if d.get("t_s") is not None:
            out.append((float(d["t_s"]), int(d.get("lost") or 0), str(d.get("reason") or "gap"),
                        d.get("duration_s")))
    return out


def _in(t: float, t_from: float | None, t_to: float | None) -> bool:
    return (t_from is None or t >= t_from - 1e-9) and (t_to is None or t <= t_to + 1e-9)


def read_gaps(reader: LogReader, series: Series, t_from: float | None = None,
              t_to: float | None = None) -> list[Gap]:
    """Recorded gaps of one board in the range, and the silent spells nothing recorded.

    Each gap is placed between the samples around it; an interval longer than
    :data:`GAP_PERIODS` periods that no recorded gap explains is listed as
    ``no samples``.
    """
    t, n = series.t, len(series)
    gaps: list[Gap] = []
    if not n:
        return gaps
    for t_s, lost, reason, away in _recorded_gaps(reader, series.board_id):
        if not _in(t_s, t_from, t_to):
            continue
        j = int(np.searchsorted(t, t_s - 1e-6))  # first sample at or after t_s
        if reason == UNPLUGGED:
            start: float | None = float(t[j]) if j < n else float(t[-1])
            k = j + 1 if j < n and abs(t[j] - t_s) <= 1e-6 else j
            end: float | None = float(t[k]) if k < n else None
        else:
            end = float(t[j]) if j < n else None
            start = float(t[j - 1]) if j > 0 else None
        gaps.append(Gap(series.board_id, t_s, reason, lost, start, end,
                        None if away is None else float(away)))
    covered = [(g.start_s, g.end_s) for g in gaps]
    for k in np.flatnonzero(series.gap_mask()):
        a, b = float(t[k]), float(t[k + 1])
        if any(s is not None and e is not None and s <= a + 1e-6 and e >= b - 1e-6
               for s, e in covered) or any(s is not None and e is None and s <= a + 1e-6
                                           for s, e in covered):
            continue
        gaps.append(Gap(series.board_id, b, "no samples", 0, a, b))
    gaps.sort(key=lambda g: (g.t_s, g.reason))
    return gaps


@dataclass
class EventRow:
    """A FAULT_EVENT as the logger stored it: a protection tripped, released or was cleared."""

    board_id: int
    t_s: float | None  # on the log's t_s axis (None when it cannot be placed)
    kind: str  # trip, release, clear
    severity: str  # warning, alarm, fault
    fault: int  # the bit(s) that changed
    value: int | None
    faults: int | None  # bits holding the output open after it
    board_time_ms: int | None = None
    names: list[str] = field(default_factory=list)

    def describe_value(self) -> str:
        from .client import format_fault_value

        if self.value is None or self.kind == "clear":
            return ""
        return format_fault_value(self.fault, int(self.value))

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "value_si": self.describe_value()}


def _place(series: Series, board_ms: int, boot: int | None) -> float | None:
    """Board time of an event -> the log's t_s, by the sample nearest in board time."""
    if not len(series):
        return None
    idx = np.arange(len(series))
    if boot is not None:
        same = idx[series.boot == boot]
        idx = same if len(same) else idx
    ms = series.board_ms[idx]
    k = int(idx[int(np.argmin(np.abs(ms - board_ms)))])
    return float(series.t[k] + (board_ms - series.board_ms[k]) / 1000.0)


def _name(value: Any, names: dict[int, str], default: str) -> str:
    if value is None:
        return default
    return names.get(value, str(value)) if isinstance(value, int) else str(value)


def read_events(reader: LogReader, series: Series, t_from: float | None = None,
                t_to: float | None = None) -> list[EventRow]:
    """FAULT_EVENTs the logger stored for this board (none for logs without an events table)."""
    events: list[EventRow] = []
    if hasattr(reader, "events"):
        for e in reader.events(series.board_id, t_from, t_to):
            bits = int(e.bits)
            events.append(EventRow(series.board_id, float(e.t_s), str(e.kind), str(e.severity),
                                   bits, int(e.value), int(e.faults), int(e.board_time_ms),
                                   fault_names(bits)))
        return events
    for d in _rows(reader.db, "events", series.board_id):
        kind = _name(_first(d, "kind", "event"), EVENT_NAMES, "event")
        severity = _name(_first(d, "severity"), SEVERITY_NAMES,
                         "fault" if kind == "clear" else "?")
        bits = int(_first(d, "bits", "fault", "code") or 0)
        board_ms = _first(d, "board_time_ms")
        t_s = _first(d, "t_s")
        if t_s is None and board_ms is not None:
            t_s = _place(series, int(board_ms), _first(d, "boot"))
        if t_s is not None and not _in(float(t_s), t_from, t_to):
            continue
        value, faults = _first(d, "value"), _first(d, "faults")
        events.append(EventRow(
            board_id=series.board_id, t_s=None if t_s is None else float(t_s), kind=kind,
            severity=severity, fault=bits, value=None if value is None else int(value),
            faults=None if faults is None else int(faults),
            board_time_ms=None if board_ms is None else int(board_ms), names=fault_names(bits),
        ))
    events.sort(key=lambda e: (e.t_s is None, e.t_s or 0.0))
    return events


@dataclass
class Episode:
    """A span during which a protection's bit was set in the telemetry."""

    name: str
    severity: str  # fault, alarm, warning: which telemetry field held it
    start_s: float
    end_s: float | None  # None: still set at the last sample

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def episodes(series: Series) -> list[Episode]:
    """Faults (and alarms and warnings, when logged) from their bits over time."""
    out: list[Episode] = []
    fields = [("fault", series.faults), ("alarm", series.alarms), ("warning", series.warnings)]
    for severity, bits in fields:
        if bits is None or not len(bits) or not bits.any():
            continue
        for bit_value in _bits_present(bits):
            on = (bits & bit_value) != 0
            edges = np.flatnonzero(np.diff(on.astype(np.int8)))
            starts = ([0] if on[0] else []) + [int(k) + 1 for k in edges if on[k + 1]]
            ends = [int(k) + 1 for k in edges if not on[k + 1]]
            for i, s in enumerate(starts):
                e = ends[i] if i < len(ends) else None
                out.append(Episode(fault_names(bit_value)[0], severity, float(series.t[s]),
                                   None if e is None else float(series.t[e])))
    out.sort(key=lambda e: (e.start_s, e.name))
    return out


def _bits_present(bits: np.ndarray) -> list[int]:
    combined = int(np.bitwise_or.reduce(bits.astype(np.int64)))
    return [1 << n for n in range(64) if combined >> n & 1]


def open_log(path: str | Path) -> LogReader:
    return LogReader(path)
