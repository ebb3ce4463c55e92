"""`cellguard monitor`: a live terminal view of one board.

Two parts: :func:`render` draws a :class:`MonitorState` (pure: no board, no
clock, testable), and :func:`run_monitor` reads frames into the state and shows
it, either live (rich, on a terminal: plain ANSI, works over SSH, ``q`` or
Ctrl-C quits and the terminal is restored) or, when standard output is not a
terminal, as a plain snapshot every few seconds.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..errors import CellguardError
from ..link.client import (
    MSG_TELEMETRY,
    BoardClient,
    BoardRefused,
    ConfigEntry,
    Estimate,
    Info,
    RequestTimeout,
    Telemetry,
    fault_names,
    named_stats,
)
from ..store.logger import describe_fault_event
from ..units import plural, to_json

OK, NEAR, BEYOND = "ok", "near", "beyond"
"""How a value stands against its limits: inside, near (past a release threshold
or a charge-only limit), beyond a trip threshold."""

STYLE = {OK: "green", NEAR: "yellow", BEYOND: "bold red"}
STATE_STYLE = {"active": "bold green", "standby": "yellow", "fault": "bold red",
               "precharge": "cyan", "startup": "dim"}
RATE_WINDOW_S = 10.0
ESTIMATE_FRESH_S = 10.0
"""An ESTIMATE further than this from the last telemetry frame (board time: an estimator
that stopped reporting, or one from before a restart) lends the SoC no band."""


@dataclass(frozen=True)
class Limits:
    """What the view colours against, in SI units."""

    cell_ov_v: float
    cell_ov_near_v: float
    cell_uv_v: float
    cell_uv_near_v: float
    temp_max_c: float
    temp_max_near_c: float
    temp_min_c: float
    temp_min_near_c: float
    charge_max_a: float
    discharge_max_a: float
    source: str = "INFO"  # where they came from: the board's config, or INFO only

    @classmethod
    def from_info(cls, info: Info) -> Limits:
        return cls(info.cell_ov_v, info.cell_ov_v - 0.05, info.cell_uv_v, info.cell_uv_v + 0.05,
                   info.temp_max_c, info.temp_max_c - 5.0, info.temp_min_c,
                   info.temp_min_c + 5.0, info.charge_current_max_a,
                   info.discharge_current_max_a)

    @classmethod
    def from_config(cls, info: Info, entries: Iterable[ConfigEntry]) -> Limits:
        """Trip thresholds from the configuration; "near" at the release thresholds
        (cells) and at the charging limits (temperatures)."""
        v = {e.key: e.value for e in entries}
        base = cls.from_info(info)

        def get(key: str, scale: float, default: float) -> float:
            return v[key] / scale if key in v else default

        return cls(
            get("cell_ov_mv", 1000, base.cell_ov_v),
            get("cell_ov_release_mv", 1000, base.cell_ov_near_v),
            get("cell_uv_mv", 1000, base.cell_uv_v),
            get("cell_uv_release_mv", 1000, base.cell_uv_near_v),
            get("temp_max_dc", 10, base.temp_max_c),
            get("temp_charge_max_dc", 10, base.temp_max_near_c),
            get("temp_min_dc", 10, base.temp_min_c),
            get("temp_charge_min_dc", 10, base.temp_min_near_c),
            get("charge_current_max_ma", 1000, base.charge_max_a),
            get("discharge_current_max_ma", 1000, base.discharge_max_a),
            source="configuration",
        )

    def cell_level(self, v: float) -> str:
        if v >= self.cell_ov_v or v <= self.cell_uv_v:
            return BEYOND
        if v >= self.cell_ov_near_v or v <= self.cell_uv_near_v:
            return NEAR
        return OK

    def temp_level(self, c: float) -> str:
        if c >= self.temp_max_c or c <= self.temp_min_c:
            return BEYOND
        if c >= self.temp_max_near_c or c <= self.temp_min_near_c:
            return NEAR
        return OK

    def current_level(self, a: float) -> str:
        limit = self.charge_max_a if a >= 0 else self.discharge_max_a
        if limit <= 0:
            return OK
        if abs(a) >= limit:
            return BEYOND
        return NEAR if abs(a) >= 0.8 * limit else OK


def cell_marks(cells: list[float]) -> list[str]:
    """"min"/"max" for the lowest and highest cells ("" elsewhere, and when all agree)."""
    if len(cells) < 2:
        return [""] * len(cells)
    lo, hi = min(cells), max(cells)
    if lo == hi:
        return [""] * len(cells)
    return ["max" if v == hi else "min" if v == lo else "" for v in cells]


@dataclass
class MonitorState:
    """Everything the view shows; fed by :meth:`on_telemetry` and friends."""

    port: str
    info: Info
    limits: Limits
    started: float = 0.0  # monotonic time the view started
    telemetry: Telemetry | None = None
    frames: int = 0  # telemetry frames received
    lost: int = 0  # telemetry frames missing from the sequence
    restarts: int = 0  # the sequence went back: the board restarted
    last_frame_at: float | None = None
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    host_crc_errors: int = 0  # board->host frames dropped by this host: CRC
    host_bad_frames: int = 0  # ... bad COBS, length, size or payload
    board_stats: dict[str, Any] | None = None  # the board's STATS (host->board side)
    stats_at: float | None = None
    stats_error: str = ""
    events: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    balancing: int | None = None  # bit i: cell i+1 bleeding (None: the board does not say)
    estimate: Estimate | None = None  # the last ESTIMATE (None: none yet)
    _last_seq: int | None = None

    def on_telemetry(self, t: Telemetry, now: float) -> None:
        if self._last_seq is not None:
            if t.seq > self._last_seq:
                self.lost += t.seq - self._last_seq - 1
            else:
                self.restarts += 1
        self._last_seq = t.seq
        self.telemetry = t
        self.frames += 1
        self.last_frame_at = now
        self.arrivals.append(now)

    def on_estimate(self, payload: dict[str, Any]) -> None:
        """An ESTIMATE frame: the SoC's band and the cells bleeding."""
        self.balancing = int(payload.get("balancing", 0))
        try:
            self.estimate = Estimate.from_wire(payload)
        except (KeyError, TypeError, ValueError):  # a payload without the fields: no band
            self.estimate = None

    def soc_band(self) -> str:
        """What follows the SoC: ``± 1.4 (2σ)`` (two standard deviations of the
        estimator's SoC), ``(coulomb: no band)``, or nothing without a fresh ESTIMATE."""
        e, t = self.estimate, self.telemetry
        if e is None or t is None or abs(t.board_time_s - e.board_time_s) > ESTIMATE_FRESH_S:
            return ""
        if e.soc_std_pct is None:
            return f"({e.mode}: no band)"
        return f"± {2.0 * e.soc_std_pct:.1f} (2σ)"

    def on_stats(self, stats: dict[str, Any], now: float) -> None:
        self.board_stats, self.stats_at, self.stats_error = stats, now, ""

    def on_event(self, line: str) -> None:
        self.events.append(line)

    def frames_per_s(self, now: float) -> float | None:
        """Telemetry frames a second over the last RATE_WINDOW_S (None: too early)."""
        if not self.arrivals:
            return None
        span = min(RATE_WINDOW_S, now - self.arrivals[0])
        if span < 1.0:
            return None
        return sum(1 for t in self.arrivals if now - t <= span) / span

    def silent_for(self, now: float) -> float:
        """Seconds since the last telemetry frame (since the start when none came)."""
        return now - (self.last_frame_at if self.last_frame_at is not None else self.started)

    def stale(self, now: float) -> bool:
        return self.silent_for(now) > max(3.0, 3 * self.info.telemetry_period_s)

    def to_dict(self, now: float) -> dict[str, Any]:
        t = self.telemetry
        data: dict[str, Any] = {
            "port": self.port, "board": self.info.board, "unique_id": self.info.unique_id,
            "firmware": self.info.firmware_version, "frames": self.frames, "lost": self.lost,
            "restarts": self.restarts, "frames_per_s": _round(self.frames_per_s(now)),
            "silent_s": round(self.silent_for(now), 3), "host_crc_errors": self.host_crc_errors,
            "host_bad_frames": self.host_bad_frames, "board_stats": self.board_stats,
            "balancing": None if self.balancing is None else [
                i + 1 for i in range(32) if self.balancing >> i & 1],
            "telemetry": None, "events": list(self.events), "estimate": None,
        }
        e = self.estimate
        if e is not None:
            data["estimate"] = {"board_time_s": e.board_time_s, "mode": e.mode,
                                "soc_pct": e.soc_pct, "soc_std_pct": e.soc_std_pct}
        if t is not None:
            data["telemetry"] = {
                "seq": t.seq, "board_time_s": t.board_time_s, "state": t.state,
                "soc_pct": t.soc_pct, "pack_v": t.pack_v, "current_a": t.current_a,
                "cells_v": t.cells_v, "temps_c": t.temps_c, "faults": t.fault_names,
                "alarms": fault_names(t.alarms), "warnings": fault_names(t.warnings),
                "charge_allowed": t.charge_allowed, "discharge_allowed": t.discharge_allowed,
            }
        return data


def describe_event(p: dict[str, Any]) -> str:
    """One line for a FAULT_EVENT payload: ``fault trip: cell_overvoltage at 4.26 V``."""
    return describe_fault_event(p)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


# -- the view ------------------------------------------------------------------------
def _names(bits: int) -> str:
    return ", ".join(fault_names(bits)) or "none"


def render(state: MonitorState, now: float, plain: bool = False,
           interactive: bool = False) -> RenderableType:
    """The whole view of ``state`` at monotonic time ``now``."""
    frame = box.ASCII if plain else box.ROUNDED
    info, t, lim = state.info, state.telemetry, state.limits
    title = Text.assemble(
        ("cellguard monitor ", "bold"), (info.board, "bold cyan"),
        f"  id {info.unique_id}  firmware {info.firmware_version}  "
        f"{info.chemistry.upper()} {info.cell_count}s  on {state.port}",
    )
    if interactive:
        title.append("   q quits", style="dim")
    parts: list[RenderableType] = [title]
    if t is None:
        parts.append(Text(f"waiting for telemetry ({state.silent_for(now):.0f} s)",
                          style="yellow"))
        parts.append(_link_table(state, now, frame))
        return Group(*parts)

    status = Table(box=frame, show_header=False, title="status", title_justify="left")
    status.add_column("what", style="bold")
    status.add_column("value")
    status.add_column("what", style="bold")
    status.add_column("value")
    direction = "charging" if t.current_a > 0 else "discharging" if t.current_a < 0 else "idle"
    status.add_row("state", Text(t.state, style=STATE_STYLE.get(t.state, "")),
                   "board time", f"{t.board_time_s:.1f} s")
    band = state.soc_band()
    status.add_row("SoC", f"{t.soc_pct:.1f} %" + (f" {band}" if band else ""),
                   "pack", f"{t.pack_v:.3f} V")
    status.add_row("current", Text(f"{t.current_a:+.3f} A {direction}",
                                   style=STYLE[lim.current_level(t.current_a)]),
                   "allowed", _allowed(t))
    parts.append(status)

    parts.append(_cells_table(t.cells_v, lim, frame))
    temps = Text.assemble(("temperatures", "bold"), "  ")
    for i, c in enumerate(t.temps_c, 1):
        temps.append(f"T{i} ")
        temps.append(f"{c:.1f} °C", style=STYLE[lim.temp_level(c)])
        temps.append("   ")
    if not t.temps_c:
        temps.append("none")
    parts.append(temps)

    prot = Table(box=frame, show_header=False, title="protection", title_justify="left")
    prot.add_column("what", style="bold")
    prot.add_column("value")
    prot.add_row("faults", Text(_names(t.faults), style="bold red" if t.faults else "green"))
    prot.add_row("alarms", Text(_names(t.alarms), style="yellow" if t.alarms else "green"))
    prot.add_row("warnings", Text(_names(t.warnings), style="yellow" if t.warnings else "green"))
    prot.add_row("balancing", _balancing(state))
    parts.append(prot)
    parts.append(_link_table(state, now, frame))
    if state.events:
        ev = Text.assemble(("recent events", "bold"), "\n")
        ev.append("\n".join(state.events))
        parts.append(ev)
    return Group(*parts)


def _balancing(state: MonitorState) -> Text:
    if state.balancing is None:
        said = "estimate" in state.info.known_types
        return Text("not reported yet" if said else "not reported by the firmware",
                    style="dim")
    cells = [str(i + 1) for i in range(32) if state.balancing >> i & 1]
    return Text(("cells " + ", ".join(cells)) if cells else "none",
                style="cyan" if cells else "")


def _allowed(t: Telemetry) -> Text:
    out = Text()
    for name, ok in (("charge", t.charge_allowed), ("discharge", t.discharge_allowed)):
        out.append(f"{name} {'yes' if ok else 'NO'}", style="green" if ok else "bold red")
        out.append("  ")
    return out


def _cells_table(cells: list[float], lim: Limits, frame: box.Box) -> Group:
    marks = cell_marks(cells)
    spread = (max(cells) - min(cells)) * 1000 if cells else 0.0
    caption = Text.assemble(("cells", "bold"), f"  spread {spread:.0f} mV  limits "
                            f"{lim.cell_uv_v:.3f}..{lim.cell_ov_v:.3f} V (from {lim.source})")
    table = Table(box=frame)
    per_column = 8
    groups = max(1, -(-len(cells) // per_column))
    for _ in range(groups):
        table.add_column("cell", justify="right")
        table.add_column("V", justify="right")
        table.add_column("", justify="left")
    for row in range(min(per_column, len(cells))):
        cols: list[Text | str] = []
        for g in range(groups):
            i = g * per_column + row
            if i >= len(cells):
                cols += ["", "", ""]
                continue
            style = STYLE[lim.cell_level(cells[i])]
            if marks[i]:
                style += " reverse"
            cols += [str(i + 1), Text(f"{cells[i]:.3f}", style=style),
                     Text(marks[i], style="bold")]
        table.add_row(*cols)
    return Group(caption, table)


def _link_table(state: MonitorState, now: float, frame: box.Box) -> Table:
    table = Table(box=frame, show_header=False, title="link", title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    silent = state.silent_for(now)
    rate = state.frames_per_s(now)
    table.add_row("telemetry", Text(
        f"{state.frames} frames, {'-' if rate is None else f'{rate:.1f}'}/s, "
        f"last {silent:.1f} s ago"
        + ("  NO DATA" if state.stale(now) else ""),
        style="bold red" if state.stale(now) else ""))
    table.add_row("lost frames", Text(
        f"{state.lost}" + (f"  (board restarted {state.restarts}x)" if state.restarts else ""),
        style="bold red" if state.lost else "green"))
    table.add_row("host received", Text(
        f"CRC errors {state.host_crc_errors}, bad frames {state.host_bad_frames}",
        style="yellow" if state.host_crc_errors or state.host_bad_frames else "green"))
    if state.board_stats is not None:
        s = state.board_stats
        age = f", {now - state.stats_at:.0f} s ago" if state.stats_at is not None else ""
        bad = s.get("crc_errors", 0) + s.get("frames_bad", 0)
        table.add_row("board received", Text(
            f"CRC errors {s.get('crc_errors', 0)}, bad frames {s.get('frames_bad', 0)}, "
            f"refused {s.get('naks_sent', 0)} (STATS{age})" + (
                f"  {state.stats_error}" if state.stats_error else ""),
            style="yellow" if bad or state.stats_error else "green"))
    else:
        table.add_row("board received", Text(state.stats_error or "(STATS not read yet)",
                                              style="yellow" if state.stats_error else "dim"))
    return table


def snapshot_text(state: MonitorState, now: float, width: int = 100) -> str:
    """The view as plain text (no colour, ASCII frames)."""
    buffer = io.StringIO()
    console = Console(width=width, color_system=None, force_terminal=False, file=buffer)
    console.print(render(state, now, plain=True))
    return buffer.getvalue().rstrip("\n")


# -- the loop ------------------------------------------------------------------------
@dataclass
class MonitorResult:
    frames: int
    lost: int
    quit_by: str  # "duration", "q", "interrupt", "signal"


def _connect(port: str) -> tuple[BoardClient, Info, Limits]:
    client = BoardClient(port)
    try:
        info = client.hello()
        try:
            limits = Limits.from_config(info, client.config_dump())
        except CellguardError:  # an older firmware, or no answer: INFO's limits do
            limits = Limits.from_info(info)
    except BaseException:
        client.close()
        raise
    return client, info, limits


class _Keys:
    """Single key presses from a terminal on standard input (cbreak mode, restored)."""

    def __init__(self, stream: TextIO) -> None:
        self.fd: int | None = None
        self.saved: Any = None
        try:
            if stream.isatty():
                self.fd = stream.fileno()
        except (AttributeError, ValueError, OSError):
            self.fd = None

    def __enter__(self) -> _Keys:
        if self.fd is not None:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)  # keys one at a time, no echo; Ctrl-C still interrupts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None and self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def pressed(self) -> str:
        if self.fd is None:
            return ""
        ready, _, _ = select.select([self.fd], [], [], 0)
        if not ready:
            return ""
        try:
            data = os.read(self.fd, 64)
        except OSError:
            return ""
        if not data:  # end of input: stop listening
            self.fd_closed()
            return ""
        return data.decode(errors="replace")

    def fd_closed(self) -> None:
        self.__exit__()
        self.fd = None


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGHUP (an SSH session that drops) end the view cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        saved[sig] = signal.signal(sig, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run_monitor(
    port: str,
    duration_s: float | None = None,
    interval_s: float = 5.0,
    stats_every_s: float = 5.0,
    out: TextIO | None = None,
    keys: TextIO | None = None,
    interactive: bool | None = None,
    as_json: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> MonitorResult:
    """Watch the board on ``port`` until ``duration_s`` (wall seconds), q or Ctrl-C.

    ``interactive`` (default: ``out`` is a terminal and ``as_json`` is off) draws
    the live view; otherwise a snapshot is printed when the first frame arrives,
    every ``interval_s`` and at the end (``as_json``: one JSON object a line).
    """
    out = sys.stdout if out is None else out
    keys = sys.stdin if keys is None else keys
    if interactive is None:
        interactive = out.isatty() and not as_json
    client, info, limits = _connect(port)
    start = clock()
    state = MonitorState(port, info, limits, started=start)
    stop = threading.Event()
    quit_by = "duration"
    next_stats = start + min(1.0, stats_every_s)
    next_snapshot = start + interval_s
    printed_first = False

    def poll() -> None:
        nonlocal next_stats
        for msg in client.receive():
            if msg.frame.msg_type == MSG_TELEMETRY:
                state.on_telemetry(Telemetry.from_wire(msg.payload), clock())
            elif msg.name == "estimate":  # a newer firmware: the SoC's band, balancing
                state.on_estimate(msg.payload)
            elif msg.name == "fault_event":
                state.on_event(f"{time.strftime('%H:%M:%S')}  {describe_event(msg.payload)}")
        stats = client.reader.stats
        state.host_crc_errors = stats.crc_errors
        state.host_bad_frames = stats.bad_frames + stats.oversize
        now = clock()
        if now >= next_stats:
            next_stats = now + stats_every_s
            try:
                state.on_stats(named_stats(client.request(
                    "get_stats", expect=("stats",), timeout_s=0.5, attempts=1).payload), clock())
            except RequestTimeout:
                state.stats_error = "no answer to GET_STATS"
            except BoardRefused as exc:  # a firmware without STATS: stop asking
                state.stats_error = f"STATS not available ({exc.error})"
                next_stats = math.inf

    def emit() -> None:
        now = clock()
        if as_json:
            out.write(to_json(state.to_dict(now), indent=None) + "\n")
        else:
            out.write(snapshot_text(state, now) + "\n")
        out.flush()

    def done() -> bool:
        return stop.is_set() or (duration_s is not None and clock() - start >= duration_s)

    try:
        with client, _stop_on_signals(stop):
            if interactive:
                from rich.live import Live

                console = Console(file=out)
                with _Keys(keys) as k, Live(render(state, start, interactive=True),
                                            console=console, screen=True, auto_refresh=False,
                                            redirect_stdout=False,
                                            redirect_stderr=False) as live:
                    last_draw = 0.0
                    while not done():
                        poll()
                        if any(ch in "qQ" for ch in k.pressed()):
                            quit_by = "q"
                            break
                        now = clock()
                        if now - last_draw >= 0.25:
                            live.update(render(state, now, interactive=True), refresh=True)
                            last_draw = now
            else:
                while not done():
                    poll()
                    now = clock()
                    if (not printed_first and state.telemetry is not None) \
                            or now >= next_snapshot:
                        printed_first = True
                        next_snapshot = now + interval_s
                        emit()
            if stop.is_set():
                quit_by = "signal"
    except KeyboardInterrupt:
        quit_by = "interrupt"
    if not interactive:
        emit()  # the final state
    return MonitorResult(state.frames, state.lost, quit_by)


def command(args: Any) -> int:
    """`cellguard monitor --port P [--duration S] [--interval S] [--json]`."""
    result = run_monitor(args.port, duration_s=args.duration, interval_s=args.interval,
                         as_json=args.json)
    if not args.json:
        print(f"monitored {plural(result.frames, 'telemetry frame')}, {result.lost} lost "
              f"(ended by {result.quit_by})", file=sys.stderr)
    return 0
