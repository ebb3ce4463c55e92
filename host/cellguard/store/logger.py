"""Log boards' telemetry to a SQLite file, every frame, with a live status line.

:func:`log_board` logs one board (the demo and the HIL tests use it);
:func:`log_ports` logs one or many boards into one file, survives a board's
port vanishing and coming back (USB unplug/replug) and is what ``cellguard
log`` runs (:func:`run_log_command`).
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import serial

from ..errors import CellguardError, LogFileError
from ..link.client import (
    EVENT_NAMES,
    MSG_TELEMETRY,
    BoardClient,
    BoardRefused,
    Info,
    RequestTimeout,
    Telemetry,
    fault_names,
    format_fault_value,
)
from ..units import plural, to_json
from .base import LogReader
from .sqlite import LogWriter

StatusFn = Callable[[str], None]


@dataclass
class LogResult:
    info: Info
    samples: int
    lost: int
    first_board_time_s: float | None
    last_board_time_s: float | None
    bad_frames: int
    crc_errors: int


def status_printer(stream: TextIO = sys.stderr) -> StatusFn:
    """A status line that rewrites itself on a terminal and prints sparsely otherwise."""
    last = [0.0]

    def show(line: str) -> None:
        if stream.isatty():
            stream.write("\r\x1b[2K" + line)
            stream.flush()
        elif time.monotonic() - last[0] >= 10.0:
            stream.write(line + "\n")
            last[0] = time.monotonic()

    return show


def format_status(samples: int, lost: int, t: Telemetry) -> str:
    cells = f"{min(t.cells_v):.3f}-{max(t.cells_v):.3f} V" if t.cells_v else "-"
    faults = ",".join(t.fault_names) or "none"
    warnings = ",".join(fault_names(t.warnings))
    alarms = ",".join(fault_names(t.alarms))
    return (f"t={t.board_time_s:9.1f} s  samples={samples}  lost={lost}  SoC={t.soc_pct:5.1f} %  "
            f"cells={cells}  I={t.current_a:+.2f} A  state={t.state}  faults={faults}"
            + (f"  alarms={alarms}" if alarms else "")
            + (f"  warnings={warnings}" if warnings else ""))


def describe_fault_event(p: dict[str, Any]) -> str:
    """One line for a FAULT_EVENT payload."""
    kind = p["kind"] if isinstance(p["kind"], str) else EVENT_NAMES.get(p["kind"], p["kind"])
    names = ", ".join(fault_names(p["fault"])) or "-"
    value = f" at {format_fault_value(p['fault'], p['value'])}" if kind != "clear" else ""
    held = ", ".join(fault_names(p["faults"])) or "none"
    severity = p.get("severity", "fault")
    what = "fault" if kind == "clear" else str(severity)
    return (f"{what} {kind}: {names}{value} (board time {p['board_time_ms'] / 1000:.1f} s; "
            f"faults held: {held})")


def log_board(
    port: str,
    out: str | Path,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    status: StatusFn | None = None,
    on_connect: Callable[[Info], None] | None = None,
    idle_stop_s: float | None = None,
    on_fault: Callable[[str], None] | None = None,
) -> LogResult:
    """Log telemetry from ``port`` into ``out`` until a stop condition.

    Stops after ``duration_s`` seconds of board time, when ``stop`` is set (after
    draining what has already arrived), after ``idle_stop_s`` without data, or on
    Ctrl-C. Whatever was received is committed before returning.
    """
    created = not Path(out).exists()
    writer = LogWriter(out)  # fails early, before touching the board, if unwritable
    samples = lost = 0
    first: float | None = None
    last: float | None = None
    last_t: Telemetry | None = None
    last_status = 0.0
    try:
        with BoardClient(port) as client:
            info = client.hello()
            if "time_sync" in info.known_types:
                # The board stamps its event log with this clock; not essential.
                with contextlib.suppress(BoardRefused, RequestTimeout):
                    client.time_sync()
            board_id = writer.add_board(info, port)
            if on_connect is not None:
                on_connect(info)
            last_data = time.monotonic()
            try:
                while True:
                    messages = client.receive()
                    now = time.monotonic()
                    if messages:
                        last_data = now
                    for msg in messages:
                        if msg.name == "estimate":
                            writer.add_estimate(board_id, msg.payload)
                        if msg.name == "fault_event":
                            writer.add_event(board_id, msg.payload)
                            if on_fault is not None:
                                on_fault(describe_fault_event(msg.payload))
                        if msg.frame.msg_type != MSG_TELEMETRY:
                            continue
                        t = Telemetry.from_wire(msg.payload)
                        lost += writer.add(board_id, t)
                        samples += 1
                        first = t.board_time_s if first is None else first
                        last = t.board_time_s
                        last_t = t
                    if status and last_t and now - last_status >= 0.2:
                        status(format_status(samples, lost, last_t))
                        last_status = now
                    if duration_s is not None and first is not None and last is not None \
                            and last - first >= duration_s:
                        break
                    if stop is not None and stop.is_set() and not messages:
                        break
                    if idle_stop_s is not None and now - last_data >= idle_stop_s:
                        break
            except KeyboardInterrupt:
                pass
            stats = client.reader.stats
            result = LogResult(info, samples, lost, first, last, stats.bad_frames,
                               stats.crc_errors)
    except BaseException:
        writer.close()
        if created and writer.rows == 0 and not writer.boards_added:
            for suffix in ("", "-wal", "-shm"):  # leave no empty log behind
                Path(f"{out}{suffix}").unlink(missing_ok=True)
        raise
    finally:
        writer.close()
        if status and last_t:
            status(format_status(samples, lost, last_t))
            if sys.stderr.isatty():
                sys.stderr.write("\n")
    return result


# -- many boards, surviving unplug/replug ------------------------------------------------

RETRY_S = 0.5
"""How often a vanished port is tried again."""
READ_TIMEOUT_S = 0.2
"""How long one read waits for data (also how soon a reader notices a stop)."""
SPARSE_STATUS_S = 10.0
"""Status lines on a stream that is not a terminal come this far apart."""

_PORT_ERRORS = (CellguardError, serial.SerialException, OSError)


@dataclass
class PortState:
    """What the log knows of one ``--port`` path now."""

    index: int
    port: str
    board_id: int = 0  # the board row being logged from this port now
    info: Info | None = None
    connected: bool = False
    away_since: float | None = None  # host time (monotonic) the port vanished
    last: Telemetry | None = None
    bad_frames: int = 0
    crc_errors: int = 0
    note: str = ""  # why the last reconnect attempt failed


@dataclass
class BoardRun:
    """One board row of this run: what the summary reports."""

    board_id: int
    port: str
    info: Info
    samples: int = 0
    lost: int = 0  # frames lost on the link while connected
    gaps: int = 0  # gap rows: lost frames, restarts, unplugged periods
    reconnects: int = 0  # times it came back on its port
    unplugged_s: float = 0.0  # host seconds away, in total
    events: int = 0  # FAULT_EVENT frames stored
    away_since: float | None = None  # monotonic time its port vanished, while away

    def to_dict(self) -> dict[str, Any]:
        return {"board_id": self.board_id, "port": self.port, "board": self.info.board,
                "unique_id": self.info.unique_id, "samples": self.samples, "lost": self.lost,
                "gaps": self.gaps, "reconnects": self.reconnects,
                "unplugged_s": round(self.unplugged_s, 3), "events": self.events}

    def line(self) -> str:
        return (f"board {self.board_id}: {self.info.board} ({self.info.unique_id}) on {self.port}:"
                f" {plural(self.samples, 'sample')}, {plural(self.lost, 'lost frame')}, "
                f"{plural(self.gaps, 'gap')}, {plural(self.reconnects, 'reconnect')}"
                + (f" ({self.unplugged_s:.1f} s unplugged)" if self.reconnects else ""))


@dataclass
class MultiLogResult:
    boards: list[BoardRun] = field(default_factory=list)
    migrated_from: int | None = None  # the schema of the file before this run migrated it

    @property
    def samples(self) -> int:
        return sum(b.samples for b in self.boards)

    @property
    def lost(self) -> int:
        return sum(b.lost for b in self.boards)


class LiveStatus:
    """One status line per port: rewritten in place on a terminal (a block of
    lines), printed every ``SPARSE_STATUS_S`` otherwise. Event lines (unplugged,
    back, faults) are printed at once, above the block."""

    def __init__(self, stream: TextIO = sys.stderr, tty: bool | None = None,
                 quiet: bool = False) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.quiet = quiet  # events only, no status lines
        self._drawn = 0
        self._last_sparse = time.monotonic()

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")  # up N lines, clear below
            self._drawn = 0

    def event(self, line: str) -> None:
        if self.tty:
            self._clear()
        self.stream.write(line + "\n")
        self.stream.flush()

    def update(self, lines: list[str], force: bool = False) -> None:
        if self.quiet:
            return
        if self.tty:
            width = max(shutil.get_terminal_size((120, 24)).columns - 1, 20)
            self._clear()
            for line in lines:
                self.stream.write(line[:width] + "\n")
            self._drawn = len(lines)
            self.stream.flush()
        elif force or time.monotonic() - self._last_sparse >= SPARSE_STATUS_S:
            self._last_sparse = time.monotonic()
            for line in lines:
                self.stream.write(line + "\n")
            self.stream.flush()

    def finish(self) -> None:
        """Leave the last block on screen; later output goes below it."""
        self._drawn = 0


def format_port_status(state: PortState, run: BoardRun | None, now: float) -> str:
    """One compact status line for a port."""
    head = f"[{state.index + 1}] {state.port}"
    counts = "" if run is None else (f"n={run.samples} lost={run.lost} gaps={run.gaps}"
                                     f" reconn={run.reconnects}")
    if not state.connected:
        away = "" if state.away_since is None else f" {now - state.away_since:.0f} s"
        note = f" ({state.note})" if state.note else ""
        return f"{head}  UNPLUGGED{away}, retrying{note}  {counts}"
    t = state.last
    if t is None:
        return f"{head}  connected, waiting for telemetry  {counts}"
    cells = f"{min(t.cells_v):.3f}-{max(t.cells_v):.3f} V" if t.cells_v else "-"
    faults = ",".join(t.fault_names) or "none"
    alarms = ",".join(fault_names(t.alarms))
    warnings = ",".join(fault_names(t.warnings))
    return (f"{head}  t={t.board_time_s:.1f} s {counts}  SoC={t.soc_pct:.1f} % {cells}"
            f" I={t.current_a:+.2f} A {t.state} faults={faults}"
            + (f" alarms={alarms}" if alarms else "")
            + (f" warnings={warnings}" if warnings else ""))


class _PortReader(threading.Thread):
    """Reads one port; when it vanishes, retries the same path until the board
    answers HELLO again. Everything goes to the main thread through ``out``:
    ("msgs", messages), ("lost", reason), ("back", (info, uptime_ms)),
    ("note", text), each with the host time."""

    def __init__(self, index: int, port: str, client: BoardClient, out: queue.Queue[Any],
                 stop: threading.Event) -> None:
        super().__init__(name=f"log-port-{index + 1}", daemon=True)
        self.index, self.port, self.client, self.out, self.stop = index, port, client, out, stop
        self.bad_base = self.crc_base = 0

    def _put(self, kind: str, payload: Any) -> None:
        self.out.put((self.index, kind, payload, time.time()))

    def run(self) -> None:
        client: BoardClient | None = self.client
        try:
            while not self.stop.is_set():
                if client is None:
                    client = self._reconnect()
                    if client is None:
                        return
                try:
                    messages = client.receive()
                except Exception as exc:  # any failure: treat the port as gone, retry
                    stats = client.reader.stats
                    self.bad_base += stats.bad_frames
                    self.crc_base += stats.crc_errors
                    with contextlib.suppress(*_PORT_ERRORS):
                        client.close()
                    client = None
                    self._put("lost", str(exc))
                    continue
                if messages:
                    stats = client.reader.stats
                    self._put("msgs", (messages, self.bad_base + stats.bad_frames,
                                       self.crc_base + stats.crc_errors))
        finally:
            if client is not None:
                with contextlib.suppress(*_PORT_ERRORS):
                    client.close()

    def _reconnect(self) -> BoardClient | None:
        last_note = ""
        while not self.stop.wait(RETRY_S):
            try:
                client = BoardClient(self.port, read_timeout_s=READ_TIMEOUT_S)
            except _PORT_ERRORS as exc:
                note = "" if "no such device" in str(exc) else str(exc)
            else:
                try:
                    info, uptime = _introduce(client, hello_timeout_s=1.5)
                    self._put("back", (info, uptime))
                    return client
                except _PORT_ERRORS as exc:
                    note = str(exc)
                    with contextlib.suppress(*_PORT_ERRORS):
                        client.close()
            if note != last_note:
                self._put("note", note)
                last_note = note
        return None


def _introduce(client: BoardClient, hello_timeout_s: float = 2.0) -> tuple[Info, int | None]:
    """HELLO/INFO, set the board's clock, and read its uptime (None where unknown)."""
    info = client.hello(timeout_s=hello_timeout_s)
    if "time_sync" in info.known_types:
        with contextlib.suppress(BoardRefused, RequestTimeout):
            client.time_sync()
    uptime = None
    if "get_stats" in info.known_types:
        with contextlib.suppress(BoardRefused, RequestTimeout):
            uptime = int(client.stats()["uptime_ms"])
    return info, uptime


class PortLogger:
    """Logs boards on ``ports`` into ``out``; see :func:`log_ports`."""

    def __init__(self, ports: Sequence[str], out: str | Path,
                 commit_interval_s: float = 1.0,
                 on_event: Callable[[str], None] | None = None) -> None:
        if not ports:
            raise CellguardError("give at least one --port")
        if len(set(ports)) != len(ports):
            raise CellguardError("the same --port is given twice")
        self.ports = list(ports)
        self.out = Path(out)
        self.on_event = on_event
        self._created = not self.out.exists()
        self.writer = LogWriter(out, commit_interval_s)  # fails before touching any board
        self.states = [PortState(i, p) for i, p in enumerate(self.ports)]
        self.runs: dict[int, BoardRun] = {}
        self._queue: queue.Queue[Any] = queue.Queue()
        self.stop = threading.Event()
        self._readers: list[_PortReader] = []

    # -- start and stop --------------------------------------------------------------
    def connect(self) -> None:
        """Open every port and ask each board who it is; any failure is fatal here
        (a mistyped path is not an unplugged board)."""
        clients: list[BoardClient] = []
        try:
            for state in self.states:
                client = BoardClient(state.port, read_timeout_s=READ_TIMEOUT_S)
                clients.append(client)
                info, _ = _introduce(client)
                state.info, state.connected = info, True
                state.board_id = self._new_board(state, info)
        except BaseException:
            for client in clients:
                with contextlib.suppress(*_PORT_ERRORS):
                    client.close()
            self.writer.close()
            if self._created and not self.writer.rows:
                for suffix in ("", "-wal", "-shm"):  # leave no empty log behind
                    Path(f"{self.out}{suffix}").unlink(missing_ok=True)
            raise
        for state, client in zip(self.states, clients, strict=True):
            reader = _PortReader(state.index, state.port, client, self._queue, self.stop)
            self._readers.append(reader)
            reader.start()

    def _new_board(self, state: PortState, info: Info) -> int:
        board_id = self.writer.add_board(info, state.port)
        self.runs[board_id] = BoardRun(board_id, state.port, info)
        return board_id

    def close(self) -> None:
        """Stop the readers, store what they had read, close the file."""
        self.stop.set()
        for reader in self._readers:
            reader.join(timeout=5)
        try:
            self.pump(block=False)
        finally:
            self.writer.close()
            self._tally()

    # -- the main thread's work --------------------------------------------------------------
    def pump(self, block: bool = True, timeout_s: float = 0.1) -> None:
        """Store what the readers have queued (waiting up to ``timeout_s`` for the
        first item when ``block``), and commit when one is due."""
        try:
            item = self._queue.get(timeout=timeout_s) if block else self._queue.get_nowait()
            while True:
                self._handle(*item)
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        try:
            self.writer.commit_if_due()
        except LogFileError as exc:
            raise self._stopped(exc) from None

    def _stopped(self, exc: LogFileError) -> LogFileError:
        return LogFileError(f"{exc}; logging stopped, the {self.writer.committed_rows} samples "
                            "committed before are kept")

    def _handle(self, index: int, kind: str, payload: Any, host_time: float) -> None:
        try:
            self._dispatch(self.states[index], kind, payload, host_time)
        except LogFileError as exc:
            raise self._stopped(exc) from None

    def _dispatch(self, state: PortState, kind: str, payload: Any, host_time: float) -> None:
        writer = self.writer
        if kind == "msgs":
            messages, state.bad_frames, state.crc_errors = payload
            run = self.runs[state.board_id]
            for msg in messages:
                if msg.frame.msg_type == MSG_TELEMETRY:
                    t = Telemetry.from_wire(msg.payload)
                    run.lost += writer.add(state.board_id, t, host_time)
                    state.last = t
                elif msg.name == "estimate":
                    writer.add_estimate(state.board_id, msg.payload, host_time)
                elif msg.name == "fault_event":
                    writer.add_event(state.board_id, msg.payload, host_time)
                    run.events += 1
                    self._event(f"[{state.index + 1}] {describe_fault_event(msg.payload)}")
        elif kind == "lost":
            state.connected = False
            state.away_since = time.monotonic()
            state.note = ""
            self.runs[state.board_id].away_since = state.away_since
            writer.port_lost(state.board_id, host_time)
            self._event(f"[{state.index + 1}] {state.port}: port gone ({payload}); "
                        f"retrying every {RETRY_S:g} s")
        elif kind == "note":
            state.note = payload
        elif kind == "back":
            info, uptime = payload
            self._back(state, info, uptime, host_time)

    def _back(self, state: PortState, info: Info, uptime: int | None, host_time: float) -> None:
        away = 0.0 if state.away_since is None else time.monotonic() - state.away_since
        state.connected, state.away_since, state.note = True, None, ""
        assert state.info is not None
        if info.unique_id == state.info.unique_id:
            board_id = state.board_id
        else:
            # Another board on this path: never mixed into the old board's rows.
            # One logged earlier from this path resumes its own row; a new one gets one.
            earlier = [b for b, r in self.runs.items()
                       if r.port == state.port and r.info.unique_id == info.unique_id]
            old = state.info
            if earlier:
                board_id = earlier[-1]
                what = f"resuming its rows (board {board_id})"
            else:
                board_id = self._new_board(state, info)
                what = f"logging it as a new board (board {board_id})"
            self._event(f"[{state.index + 1}] {state.port}: a different board answered "
                        f"({info.board}, unique id {info.unique_id}; was {old.board}, "
                        f"{old.unique_id}): {what}")
        run = self.runs[board_id]
        if run.away_since is not None:  # it comes back: its gap ends here
            run.reconnects += 1
            run.unplugged_s += time.monotonic() - run.away_since
            run.away_since = None
            self.writer.port_back(board_id, host_time, uptime)
        state.board_id, state.info, state.last = board_id, info, None
        self._event(f"[{state.index + 1}] {state.port}: {info.board} ({info.unique_id}) back "
                    f"after {away:.1f} s" + ("" if uptime is None else
                                             f", board uptime {uptime / 1000:.1f} s"))

    def _event(self, line: str) -> None:
        if self.on_event is not None:
            self.on_event(line)

    def _tally(self) -> None:
        w = self.writer
        now = time.monotonic()
        for board_id, run in self.runs.items():
            run.samples = w.board_rows.get(board_id, 0)
            run.gaps = w.board_gaps.get(board_id, 0)
            if run.away_since is not None and w.closed:  # still away when the run ended
                run.unplugged_s += now - run.away_since
                run.away_since = None

    def status_lines(self) -> list[str]:
        self._tally()
        now = time.monotonic()
        return [format_port_status(s, self.runs.get(s.board_id), now) for s in self.states]

    def elapsed_s(self) -> float | None:
        """Board time logged by the slowest connected port (None: none connected)."""
        times = [self.writer.board_time_s(s.board_id) for s in self.states
                 if s.connected and s.last is not None]
        return min(times) if times else None

    def result(self) -> MultiLogResult:
        self._tally()
        return MultiLogResult(list(self.runs.values()), self.writer.migrated_from)


def log_ports(ports: Sequence[str], out: str | Path, duration_s: float | None = None,
              stop: threading.Event | None = None, status: LiveStatus | None = None,
              commit_interval_s: float = 1.0) -> MultiLogResult:
    """Log every board on ``ports`` into ``out`` until ``stop`` is set or each
    connected board has logged ``duration_s`` seconds of board time.

    A port that vanishes (unplugged) is retried every :data:`RETRY_S` on the
    same path while the others go on; when a board answers there again its
    unique id decides: the same board resumes its rows (the gap is recorded
    with reason "unplugged" and its duration), another board is logged as a
    new board row. Raises LogFileError (after closing the file, keeping what was
    committed) when the file cannot be written.
    """
    logger = PortLogger(ports, out, commit_interval_s,
                        on_event=None if status is None else status.event)
    logger.connect()
    if status is not None and logger.writer.migrated_from is not None:
        status.event(f"{out}: migrated from log schema {logger.writer.migrated_from} to 2")
    stop = stop or threading.Event()
    last_status = 0.0
    try:
        while not stop.is_set():
            logger.pump()
            now = time.monotonic()
            if status is not None and now - last_status >= 0.5:
                status.update(logger.status_lines())
                last_status = now
            elapsed = logger.elapsed_s()
            if duration_s is not None and elapsed is not None and elapsed >= duration_s:
                break
    except BaseException:
        with contextlib.suppress(LogFileError):  # the error that stopped it is the one to tell
            logger.close()
        raise
    else:
        logger.close()  # the last samples may fail to store too
    finally:
        if status is not None:
            status.update(logger.status_lines(), force=True)
            status.finish()
    return logger.result()


def run_log_command(ports: Sequence[str], out: str, duration_s: float | None, quiet: bool,
                    as_json: bool) -> int:
    """``cellguard log``: SIGINT (Ctrl-C) and SIGTERM end the run cleanly with a summary."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = LiveStatus(sys.stderr, quiet=quiet)
        result = log_ports(ports, out, duration_s=duration_s, stop=stop, status=status)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    with LogReader(out) as reader:
        summary = reader.summary()
    if as_json:
        print(to_json({**summary.to_dict(), "run": [b.to_dict() for b in result.boards]}))
    else:
        print(f"logged {plural(result.samples, 'sample')} ({result.lost} lost) from "
              f"{plural(len(result.boards), 'board')} to {out}")
        for board in result.boards:
            print("  " + board.line())
        print(f"whole log {out}:")
        for line in summary.lines():
            print("  " + line)
    return 0
