"""Read a cellguard log for analysis: boards, time ranges, arrays, events and gaps.

Shared by ``export``, ``plot`` and ``report``, and written against the
:class:`~cellguard.store.base.LogReader` interface only, so it works on any
backend. What only newer logs hold (FAULT_EVENTs, ``warnings``/``alarms`` per
sample, how long a board was away) a backend gives as nothing for an older log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CellguardError, LogFileError
from ..link.client import Info, fault_names
from ..units import parse_duration
from .base import GAP_PERIODS, UNPLUGGED, LogReader, Series

__all__ = ["GAP_PERIODS", "Series"]

def parse_time_s(text: str) -> float:
    """A time on the log's ``t_s`` axis: see :func:`cellguard.units.parse_duration`."""
    return parse_duration(text)


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


def check_samples(reader: LogReader, boards: list[tuple[int, Info]], t_from: float | None,
                  t_to: float | None) -> None:
    """Refuse a selection without samples, saying what the log covers."""
    ids = [b for b, _ in boards]
    span = reader.time_span(ids)
    which = "board " + ", ".join(str(b) for b in ids) if len(ids) < len(reader.boards()) else ""
    if span is None:
        raise LogFileError(f"{reader.path} holds no samples" + (f" of {which}" if which else ""))
    lo = span[0] if t_from is None else t_from
    hi = span[1] if t_to is None else t_to
    if not reader.count_samples(ids, lo, hi):
        raise CellguardError(
            f"no samples{' of ' + which if which else ''} between {lo:g} s and {hi:g} s; "
            f"the log covers t_s {span[0]:g}..{span[1]:g} s"
        )


def load_series(reader: LogReader, board_id: int, info: Info, t_from: float | None = None,
                t_to: float | None = None) -> Series:
    """One board's samples in ``[t_from, t_to]`` as arrays, in SI units."""
    return reader.series(board_id, info, t_from, t_to)


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
    for g in reader.gaps(series.board_id):
        t_s, lost, reason, away = float(g.t_s), int(g.lost), str(g.reason), g.duration_s
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
    faults: int | None  # fault bits held (active or latched) after it
    board_time_ms: int | None = None
    names: list[str] = field(default_factory=list)

    def describe_value(self) -> str:
        from ..link.client import format_fault_value

        if self.value is None or self.kind == "clear":
            return ""
        return format_fault_value(self.fault, int(self.value))

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "value_si": self.describe_value()}


def read_events(reader: LogReader, series: Series, t_from: float | None = None,
                t_to: float | None = None) -> list[EventRow]:
    """FAULT_EVENTs the logger stored for this board (none for a log that has none)."""
    events: list[EventRow] = []
    for e in reader.events(series.board_id, t_from, t_to):
        bits = int(e.bits)
        events.append(EventRow(series.board_id, float(e.t_s), str(e.kind), str(e.severity),
                               bits, int(e.value), int(e.faults), int(e.board_time_ms),
                               fault_names(bits)))
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
    """Open a log with the backend that recognises it."""
    return LogReader(path)
