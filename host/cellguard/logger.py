"""Log a board's telemetry to a SQLite file, every frame, with a live status line."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .client import (
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
from .logfile import LogWriter

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
            f"output held open by: {held})")


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
                        if msg.name == "fault_event" and on_fault is not None:
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
