"""The log, whatever holds it: the records a log gives back, and the one reader interface.

Every part that reads a log (``summary``, ``export``, ``plot``, ``report``, the
estimators) goes through :class:`LogReader`; a backend is a subclass that
implements its abstract methods (:mod:`cellguard.store.sqlite` is the one that
exists). ``LogReader(path)`` opens a file with the backend that recognises it,
as python-can's ``LogReader`` does by file name.

Records are in host units: SI floats (V, A, degC, s), SoC in percent, current
positive when charging.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import LogFileError
from ..link.client import Info, fault_names

LOST_FRAMES = "lost frames"
BOARD_RESTARTED = "board restarted"
UNPLUGGED = "unplugged"
"""The reasons a gap row gives."""

GAP_PERIODS = 5.0
"""An interval between two samples longer than this many telemetry periods is a gap."""


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
    warnings: int = 0  # warning bits active (0 in a schema-1 log)
    alarms: int = 0  # alarm bits active (0 in a schema-1 log)
    allowed: int = 3  # bit 0 charge, bit 1 discharge may flow (3 in a schema-1 log)

    @property
    def charge_allowed(self) -> bool:
        return bool(self.allowed & 1)

    @property
    def discharge_allowed(self) -> bool:
        return bool(self.allowed & 2)


@dataclass(frozen=True)
class Gap:
    """A stretch of the log without samples: lost frames, a restart, an unplugged port."""

    board_id: int
    boot: int
    after_seq: int
    lost: int  # telemetry frames missing (0 when unknown: a restart, the end of the run)
    t_s: float  # unplugged: when the port was lost; otherwise: the sample after the gap
    host_time: float  # Unix time, the same moment as t_s
    reason: str  # LOST_FRAMES, BOARD_RESTARTED or UNPLUGGED
    duration_s: float | None  # host seconds away (unplugged only)


@dataclass(frozen=True)
class LogEvent:
    """A FAULT_EVENT the board sent: a protection tripped, released or was cleared."""

    board_id: int
    event_index: int
    board_time_ms: int
    t_s: float  # on the samples' t_s axis
    host_time: float
    kind: str  # trip, release, clear
    severity: str  # warning, alarm, fault
    bits: int
    value: int  # in the protection's wire unit (see client.format_fault_value)
    faults: int  # fault bits held (active or latched) afterwards

    @property
    def names(self) -> list[str]:
        return fault_names(self.bits)


@dataclass
class BoardSummary:
    """One board of a log, over all the connections it was logged in (``log`` runs
    appended to one file give one board row, a connection, each)."""

    board: str
    unique_id: str
    board_ids: list[int]  # its board rows, one per connection
    samples: int = 0
    duration_s: float = 0.0  # board time logged: the sum over its connections

    @property
    def connections(self) -> int:
        return len(self.board_ids)

    def to_dict(self) -> dict[str, Any]:
        return {"board": self.board, "unique_id": self.unique_id,
                "connections": self.connections, "board_ids": list(self.board_ids),
                "samples": self.samples, "duration_s": self.duration_s}

    def text(self) -> str:
        if self.connections == 1:
            return f"{self.board} ({self.unique_id})"
        return (f"{self.board} ({self.unique_id}): {self.connections} connections, "
                f"{self.duration_s:.1f} s")


@dataclass
class LogSummary:
    """A log in numbers. ``duration_s`` is the board time logged: for each board the
    sum over its connections (each connection's t_s starts again at 0, and the time
    between two ``log`` runs is not in the log), and with several boards the longest."""

    boards: list[BoardSummary]
    duration_s: float
    samples: int
    lost: int
    charge_in_ah: float
    charge_out_ah: float
    min_cell_v: float | None
    max_cell_v: float | None
    final_soc_pct: float | None
    faults_seen: dict[str, int] = field(default_factory=dict)  # name -> times it tripped
    unplugged: int = 0  # times a board's port vanished
    unplugged_s: float = 0.0  # host seconds boards were away, in total
    restarts: int = 0  # board restarts seen
    events: int = 0  # FAULT_EVENT rows

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "boards": [b.to_dict() for b in self.boards]}

    def lines(self) -> list[str]:
        def volts(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f} V"

        faults = ", ".join(f"{k} ({n}x)" for k, n in self.faults_seen.items()) or "none"
        soc = "-" if self.final_soc_pct is None else f"{self.final_soc_pct:.1f} %"
        lines = [
            f"boards:           {'; '.join(b.text() for b in self.boards) or '-'}",
            f"duration:         {self.duration_s:.1f} s of board time "
            f"({self.duration_s / 3600:.2f} h)",
            f"samples logged:   {self.samples}",
            f"samples lost:     {self.lost}",
        ]
        if self.unplugged or self.restarts:
            lines.append(f"gaps:             unplugged {self.unplugged}x "
                         f"({self.unplugged_s:.1f} s), board restarts {self.restarts}")
        return [
            *lines,
            f"charge in:        {self.charge_in_ah:.3f} Ah",
            f"charge out:       {self.charge_out_ah:.3f} Ah",
            f"min cell voltage: {volts(self.min_cell_v)}",
            f"max cell voltage: {volts(self.max_cell_v)}",
            f"final SoC:        {soc}",
            f"faults seen:      {faults}",
        ]


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


@dataclass
class SocEstimates:
    """One board's ESTIMATE rows as arrays: the estimator's SoC and its uncertainty
    over ``t_s`` (the telemetry's axis), ordered by ``t_s``."""

    t: np.ndarray
    soc_pct: np.ndarray
    std_pct: np.ndarray  # one standard deviation, %; NaN where none (the coulomb baseline)

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def empty(cls) -> SocEstimates:
        return cls(np.zeros(0), np.zeros(0), np.zeros(0))

    @classmethod
    def from_wire(cls, t_s: Iterable[Any], soc_cpct: Iterable[Any],
                  soc_std_cpct: Iterable[Any], source: str | Path = "the log") -> SocEstimates:
        """From the stored wire units (0.01 %; a negative ``soc_std_cpct``: not estimated)."""
        try:
            t = np.asarray(list(t_s), dtype=float)
            soc = np.asarray(list(soc_cpct), dtype=float) / 100.0
            std = np.asarray(list(soc_std_cpct), dtype=float) / 100.0
        except (TypeError, ValueError):
            raise LogFileError(f"{source}: the estimates hold a value that is not a number "
                               "(t_s, soc_cpct or soc_std_cpct)") from None
        if not (len(t) == len(soc) == len(std)):
            raise LogFileError(f"{source}: the estimates' columns differ in length")
        if not (np.isfinite(t).all() and np.isfinite(soc).all()):
            raise LogFileError(f"{source}: the estimates hold a t_s or SoC that is not finite")
        return cls(t, soc, np.where(std >= 0, std, np.nan))


def _pad(rows: list[list[float]], width: int) -> np.ndarray:
    out = np.full((len(rows), width), np.nan)
    for k, r in enumerate(rows):
        out[k, : len(r)] = r[:width]
    return out




class LogReader(ABC):
    """Reads a cellguard log (read-only; safe beside a running writer).

    ``LogReader(path)`` returns the reader of the backend that recognises the
    file (see :data:`BACKENDS`); a backend's own class opens only its files.
    """

    BACKENDS: ClassVar[dict[str, type[LogReader]]] = {}
    """Backends by name, in the order they are asked whether a file is theirs."""

    name: ClassVar[str] = ""
    path: Path

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            LogReader.BACKENDS[cls.name] = cls

    def __new__(cls, path: str | Path, *args: Any, **kwargs: Any) -> LogReader:
        if cls is not LogReader:
            return super().__new__(cls)
        p = Path(path)
        if p.is_dir():
            raise LogFileError(f"{path} is a folder, not a log file")
        if not p.is_file():
            raise LogFileError(f"no such log file: {path}")
        for backend in LogReader.BACKENDS.values():
            if backend.recognises(p):
                return super().__new__(backend)
        known = ", ".join(LogReader.BACKENDS) or "none"
        raise LogFileError(f"{path} is not a cellguard log (known formats: {known})")

    @classmethod
    @abstractmethod
    def recognises(cls, path: Path) -> bool:
        """True when ``path`` (an existing file) looks like this backend's log."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def meta(self) -> dict[str, str]:
        """The log's own description: format, schema, who wrote it."""

    @abstractmethod
    def boards(self) -> list[tuple[int, Info]]:
        """(board id, INFO) of each connection, in the order they were first logged."""

    @abstractmethod
    def board_ports(self) -> dict[int, str]:
        """Board id -> the port (path) it was logged from."""

    @abstractmethod
    def samples(self, board_id: int | None = None, t_from: float | None = None,
                t_to: float | None = None) -> Iterator[Sample]:
        """Samples in ``[t_from, t_to]`` (t_s), ordered by board then t_s."""

    @abstractmethod
    def time_span(self, board_ids: Iterable[int]) -> tuple[float, float] | None:
        """(first, last) t_s of these boards' samples; None when there are none."""

    @abstractmethod
    def count_samples(self, board_ids: Iterable[int], t_from: float, t_to: float) -> int:
        """How many samples of these boards lie in ``[t_from, t_to]``."""

    @abstractmethod
    def lost(self, board_id: int | None = None) -> int:
        """Telemetry frames lost on the link while connected (not while unplugged)."""

    @abstractmethod
    def gaps(self, board_id: int | None = None, reason: str | None = None) -> Iterator[Gap]:
        """Gaps in time order (per board): lost frames, restarts, unplugged periods."""

    @abstractmethod
    def events(self, board_id: int | None = None, t_from: float | None = None,
               t_to: float | None = None) -> Iterator[LogEvent]:
        """FAULT_EVENTs in time order."""

    @abstractmethod
    def estimates(self, board_id: int | None = None) -> Iterator[dict[str, Any]]:
        """ESTIMATE rows in time order, in wire units with ``board_id``, ``t_s``,
        ``host_time`` and ``mode``."""

    def soc_estimates(self, board_id: int, t_from: float | None = None,
                      t_to: float | None = None) -> SocEstimates:
        """One board's ESTIMATE SoC and its standard deviation in ``[t_from, t_to]``
        (empty for a log without estimates). This goes row by row through
        :meth:`estimates`; a backend that can read columns into arrays overrides it."""
        rows = [r for r in self.estimates(board_id)
                if (t_from is None or r["t_s"] >= t_from) and (t_to is None or r["t_s"] <= t_to)]
        return SocEstimates.from_wire((r["t_s"] for r in rows), (r["soc_cpct"] for r in rows),
                                      (r["soc_std_cpct"] for r in rows), self.path)

    def series(self, board_id: int, info: Info, t_from: float | None = None,
               t_to: float | None = None) -> Series:
        """One board's samples in ``[t_from, t_to]`` as arrays, in SI units.

        This goes sample by sample; a backend that can read columns straight
        into arrays overrides it (the SQLite one does: it matters for logs of days).
        """
        cols: dict[str, list[Any]] = {k: [] for k in (
            "t", "boot", "seq", "board_ms", "host_time", "state", "faults", "warnings",
            "alarms", "pack_v", "current_a", "soc_pct", "cells", "temps")}
        for s in self.samples(board_id, t_from, t_to):
            cols["t"].append(s.t_s)
            cols["boot"].append(s.boot)
            cols["seq"].append(s.seq)
            cols["board_ms"].append(s.board_time_ms)
            cols["host_time"].append(s.host_time)
            cols["state"].append(s.state)
            cols["faults"].append(s.faults)
            cols["warnings"].append(s.warnings)
            cols["alarms"].append(s.alarms)
            cols["pack_v"].append(s.pack_v)
            cols["current_a"].append(s.current_a)
            cols["soc_pct"].append(s.soc_pct)
            cols["cells"].append(s.cells_v)
            cols["temps"].append(s.temps_c)
        n_cells = max([info.cell_count, *(len(c) for c in cols["cells"][:1])])
        n_temps = max([info.temp_count, *(len(c) for c in cols["temps"][:1])])
        has_warnings = self.records_warnings()
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

    def records_warnings(self) -> bool:
        """Whether samples carry warning and alarm bits (an old log's do not)."""
        return True

    def summary(self) -> LogSummary:
        boards: dict[str, BoardSummary] = {}  # by unique id, in the order first logged
        owner: dict[int, BoardSummary] = {}
        for board_id, info in self.boards():
            b = boards.setdefault(info.unique_id, BoardSummary(info.board, info.unique_id, []))
            b.board_ids.append(board_id)
            owner[board_id] = b
        samples = 0
        charge_in = charge_out = 0.0
        lo: float | None = None
        hi: float | None = None
        prev: Sample | None = None
        spans: dict[int, tuple[float, float]] = {}
        final_soc: float | None = None
        trips: dict[str, int] = {}
        for s in self.samples():
            samples += 1
            if s.board_id in owner:
                owner[s.board_id].samples += 1
            first = spans.get(s.board_id, (s.t_s, s.t_s))[0]
            spans[s.board_id] = (first, s.t_s)
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
        unplugged = list(self.gaps(reason=UNPLUGGED))
        restarts = sum(1 for _ in self.gaps(reason=BOARD_RESTARTED))
        events = sum(1 for _ in self.events())
        for board_id, (a, b) in spans.items():
            if board_id in owner:
                owner[board_id].duration_s += b - a
        return LogSummary(
            boards=list(boards.values()),
            duration_s=max((b.duration_s for b in boards.values()), default=0.0),
            samples=samples,
            lost=self.lost(),
            charge_in_ah=charge_in,
            charge_out_ah=charge_out,
            min_cell_v=lo,
            max_cell_v=hi,
            final_soc_pct=final_soc,
            faults_seen=trips,
            unplugged=len(unplugged),
            unplugged_s=sum(g.duration_s or 0.0 for g in unplugged),
            restarts=restarts,
            events=int(events),
        )
