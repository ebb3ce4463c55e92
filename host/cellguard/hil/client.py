"""The suite's view of a board: a client that waits in board time, and the
board's own limits (INFO, the configuration dump, the firmware's protection table)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import serial

from ..errors import CellguardError, PortError
from ..link.client import (
    CONFIG_NAMES,
    FAULT_BITS,
    BoardClient,
    BoardRefused,
    ConfigEntry,
    Event,
    Info,
    Message,
    Telemetry,
    open_serial,
)
from ..link.framing import FrameReader

RUNTIME_HARDWARE = "hardware"
"""The runtime a real board reports in the suite's properties."""

WALL_SLACK_S = 10.0
"""Wall time a wait allows beyond its board time at the target's slowest speed."""

SILENT_WALL_S = 60.0
"""Wall time a wait allows with no board time passing (no new telemetry), at the
least: longer than a board's reboot, a flash erase's stall or a busy host's pause."""

def silent_budget_s(board_s: float, min_speed: float) -> float:
    """Wall time a wait of ``board_s`` allows with no board time passing (the board
    went silent): as long as the wait takes at the target's slowest speed, and at least
    SILENT_WALL_S. A board that runs on, however slowly, is not silent."""
    return max(board_s / min_speed + WALL_SLACK_S, SILENT_WALL_S)


class StoodStill:
    """Whether a clock (board ms) has stood still for ``budget_s`` of wall time: each
    move starts the wall time again."""

    def __init__(self, budget_s: float, now_ms: int) -> None:
        self.budget_s, self.last_ms = budget_s, now_ms
        self.deadline = time.monotonic() + budget_s

    def __call__(self, now_ms: int) -> bool:
        if now_ms != self.last_ms:
            self.last_ms, self.deadline = now_ms, time.monotonic() + self.budget_s
            return False
        return time.monotonic() > self.deadline


HOST_LEAD_S = 1.0
"""Board time a simulated target may run ahead of the output the suite has read:
a host that pauses (a busy machine) holds the board instead of letting minutes
of board time pass unseen (a host timeout, a missed stimulus)."""

SEVERITIES = ("warning", "alarm", "fault")
BLOCKS_CHARGE = 1
BLOCKS_DISCHARGE = 2


class HilError(CellguardError):
    """The HIL suite cannot run as asked."""


class HilTimeout(AssertionError):
    """What a test waited for did not happen in time (a test failure)."""


def skip(reason: str) -> NoReturn:
    """Skip the running test (on a real board: what it would need)."""
    import pytest  # only the suite (which runs under pytest) gets here

    pytest.skip(reason)


# -- the client ---------------------------------------------------------------------
class HilClient(BoardClient):
    """A BoardClient that logs every message it reads and waits in board time.

    ``log`` holds every message in arrival order (requests read their answers
    through it too), so a test takes a :meth:`mark`, acts, and looks for what
    came after it: nothing is lost to a request that happened to read it.
    Board time is the telemetry's ``board_time_ms``; ``elapsed_ms`` sums it
    across restarts of the board.
    """

    def __init__(self, port: str, min_speed: float = 1.0) -> None:
        super().__init__(port)
        self.min_speed = min_speed
        self.log: list[Message] = []
        self.last: Telemetry | None = None
        self.elapsed_ms = 0
        self._board_ms: int | None = None
        self._lock = threading.RLock()  # an operator prompt drains from a thread
        self.health: Callable[[], None] | None = None  # raises when the target died
        # Called with each telemetry's board_time_ms as it is read (a target that
        # maps the firmware's clock to its plant's: the virtual board).
        self.on_telemetry: Callable[[int], None] | None = None

    # -- reading ------------------------------------------------------------------
    def _read_messages(self) -> list[Message]:
        with self._lock:
            messages = super()._read_messages()
            for m in messages:
                if m.name == "telemetry":
                    self._note_telemetry(m)
            self.log.extend(messages)
            return messages

    def _note_telemetry(self, m: Message) -> None:
        now = int(m.payload["board_time_ms"])
        if self._board_ms is not None:
            step = now - self._board_ms
            self.elapsed_ms += step if step >= 0 else now  # backwards: the board restarted
        self._board_ms = now
        self.last = Telemetry.from_wire(m.payload)
        if self.on_telemetry is not None:
            self.on_telemetry(now)

    @property
    def is_open(self) -> bool:
        return bool(self.serial.is_open)

    def poll(self) -> None:
        """Read what has arrived, without waiting."""
        with self._lock:
            if self.is_open and self.serial.in_waiting:
                self._read_messages()

    def catch_up(self, max_wall_s: float = 2.0) -> None:
        """Read everything the board has sent so far."""
        end = time.monotonic() + max_wall_s
        with self._lock:
            while self.is_open and self.serial.in_waiting and time.monotonic() < end:
                self._read_messages()

    def mark(self) -> int:
        """A place in :attr:`log`: what arrives later has an index at least this."""
        return len(self.log)

    def since(self, mark: int, name: str | None = None) -> list[Message]:
        return [m for m in self.log[mark:] if name is None or m.name == name]

    def telemetry_since(self, mark: int) -> list[Telemetry]:
        return [Telemetry.from_wire(m.payload) for m in self.since(mark, "telemetry")]

    def fault_events_since(self, mark: int, kind: str | None = None,
                           fault: str | None = None) -> list[dict[str, Any]]:
        bit = FAULT_BITS[fault] if fault else 0
        return [m.payload for m in self.since(mark, "fault_event")
                if (kind is None or m.payload["kind"] == kind)
                and (not bit or int(m.payload["fault"]) & bit)]

    def wall_budget_s(self, board_s: float) -> float:
        """Wall time ``board_s`` of board time takes at the target's slowest speed."""
        return board_s / self.min_speed + WALL_SLACK_S

    def wait_for(self, what: str, predicate: Callable[[Message], bool], board_s: float,
                 since: int | None = None) -> tuple[int, Message]:
        """Read until a message after ``since`` (default: now) satisfies ``predicate``;
        return (its index in the log, it). Raises :class:`HilTimeout` once
        ``board_s`` of board time has passed without one (or the board went silent).

        Board time counts from what the board has sent by now: bytes that waited
        in the port's buffer (a fast simulated board runs ahead of a busy host)
        are read first, so a stimulus applied a moment ago gets its full time."""
        i = since
        self.catch_up()
        if i is None:
            i = self.mark()
        start_ms = self.elapsed_ms
        budget = silent_budget_s(board_s, self.min_speed)
        still = StoodStill(budget, start_ms)
        while True:
            while i < len(self.log):
                m = self.log[i]
                i += 1
                if predicate(m):
                    return i - 1, m
            if self.elapsed_ms - start_ms > board_s * 1000:
                raise HilTimeout(f"no {what} within {board_s:g} s of board time; "
                                 f"{self.describe_last()}")
            if self.health is not None:
                self.health()
            if still(self.elapsed_ms):
                raise HilTimeout(
                    f"no {what}: board time stood still for {budget:g} s of wall time "
                    f"(it advanced {(self.elapsed_ms - start_ms) / 1000:g} s of "
                    f"{board_s:g}: is the board still sending telemetry?); "
                    f"{self.describe_last()}")
            self._read_messages()

    def run(self, board_s: float) -> None:
        """Keep reading while ``board_s`` of board time passes."""
        try:
            self.wait_for(f"end of {board_s:g} s", lambda m: False, board_s)
        except HilTimeout as exc:
            if "wall time" in str(exc):
                raise

    def wait_event(self, kind: str, fault: str, board_s: float,
                   since: int | None = None) -> dict[str, Any]:
        """The first FAULT_EVENT of ``kind`` (trip, release, clear) for ``fault``."""
        bit = FAULT_BITS[fault]
        _, m = self.wait_for(
            f"FAULT_EVENT {kind} of {fault}",
            lambda m: m.name == "fault_event" and m.payload["kind"] == kind
            and bool(int(m.payload["fault"]) & bit), board_s, since)
        return m.payload

    def wait_telemetry(self, what: str, predicate: Callable[[Telemetry], bool],
                       board_s: float, since: int | None = None) -> Telemetry:
        _, m = self.wait_for(
            f"telemetry with {what}",
            lambda m: m.name == "telemetry" and predicate(Telemetry.from_wire(m.payload)),
            board_s, since)
        return Telemetry.from_wire(m.payload)

    def next_telemetry(self, since: int | None = None) -> Telemetry:
        """The first telemetry sample after ``since`` (default: now)."""
        period = self.info.telemetry_period_s if self.info else 1.0
        return self.wait_telemetry("any content", lambda t: True, 3 * period + 1, since)

    def describe_last(self) -> str:
        t = self.last
        if t is None:
            return "no telemetry yet"
        return (f"last telemetry at board time {t.board_time_s:g} s: state {t.state}, "
                f"faults {t.fault_names or 'none'}, alarms {_names(t.alarms) or 'none'}, "
                f"warnings {_names(t.warnings) or 'none'}, cells "
                f"{', '.join(f'{v:.3f}' for v in t.cells_v)} V, temps "
                f"{', '.join(f'{c:.1f}' for c in t.temps_c)} °C, current {t.current_a:.3f} A")

    # -- requests --------------------------------------------------------------------
    def event_total(self) -> int:
        """Index the board's next event will get."""
        p = self.request("get_events", {"first_index": 0xFFFFFFFF, "max_count": 1},
                         expect=("events",)).payload
        return int(p["total"])

    def events_from(self, first_index: int) -> list[Event]:
        return [e for e in self.events(first_index) if e.index >= first_index]

    # -- the connection -------------------------------------------------------------
    def disconnect(self) -> None:
        """Close the port (the host goes away); :meth:`reconnect` comes back."""
        with self._lock:
            self.serial.close()

    def reconnect(self, wait_s: float = 0.0, flush: bool = True,
                  keep_reader: bool = False) -> Info:
        """Open the port again (waiting up to ``wait_s`` for it to come back, as a
        USB board re-enumerates after a power cycle) and say HELLO. ``flush=False``
        keeps what the port buffered meanwhile; ``keep_reader=True`` keeps the frame
        parser's state, e.g. the half of a frame read before the port closed."""
        with self._lock:
            baudrate, timeout = self.serial.baudrate, self.serial.timeout
            self.serial.close()
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    self.serial = open_serial(self.port_name, baudrate, timeout)
                    break
                except (serial.SerialException, ValueError, OSError) as exc:
                    if time.monotonic() >= deadline:
                        raise PortError(f"cannot reopen {self.port_name}: {exc}") from None
                    time.sleep(0.2)
            if flush:
                self.serial.reset_input_buffer()
            if not keep_reader:
                self.reader = FrameReader()
            self._backlog = []
            self._board_ms = None
        return self.hello()


def _names(bits: int) -> list[str]:
    return [name for name, bit in FAULT_BITS.items() if bits & bit]


# -- limits, as the board reports them ------------------------------------------------------
@dataclass(frozen=True)
class ProtectionLimits:
    """One protection as this board has it: thresholds, delays, severity (from the
    configuration dump) and what it watches (from the firmware's table)."""

    name: str
    index: int
    bit: int
    above: bool  # trips when the value is above ``trip``
    blocks: int  # directions an alarm stops: 1 charge, 2 discharge, 3 both
    trip_key: str
    release_key: str
    trip: int
    release: int
    trip_delay_ms: int
    release_delay_ms: int
    debounce: int
    severity: str  # warning, alarm, fault
    hard_min: int  # how far the thresholds may ever go
    hard_max: int
    period_ms: int
    one_way: bool = False  # as a fault, stops only ``blocks``: a cell-voltage limit on a
    # board with separate charge and discharge switches (the other way leads back inside)

    @property
    def unit(self) -> str:
        return self.trip_key.rsplit("_", 1)[-1]

    def beyond_trip(self, value: int) -> bool:
        return value > self.trip if self.above else value < self.trip

    def within_release(self, value: int) -> bool:
        return value < self.release if self.above else value > self.release

    def _slack_ms(self) -> int:
        return (self.debounce + 2) * self.period_ms + 1000

    @property
    def trip_within_s(self) -> float:
        """Board time a trip may take once its condition holds (with margin)."""
        return (self.trip_delay_ms + self._slack_ms()) / 1000.0

    @property
    def release_within_s(self) -> float:
        return (self.release_delay_ms + self._slack_ms()) / 1000.0


@dataclass
class BoardLimits:
    info: Info
    config: dict[str, ConfigEntry]
    protections: dict[str, ProtectionLimits] = field(default_factory=dict)

    @classmethod
    def read(cls, client: BoardClient) -> BoardLimits:
        from cellguard_fw.protection import ABOVE, protection_table
        from cellguard_fw.protection_setup import one_way

        from ..protocol.messages import DEBOUNCE_KEY_BASE, SEVERITY_KEY_BASE

        info = client.info or client.hello()
        config = {e.key: e for e in client.config_dump()}
        limits = cls(info, config)
        period_ms = round(info.control_period_s * 1000)
        charge_only, discharge_only = one_way({"switches": limits.switches})
        for i, row in enumerate(protection_table()):
            name, bit, _quantity, direction, _key, _td, _rd, _sev, blocks, _deb = row
            if FAULT_BITS.get(name) != bit:
                raise HilError(f"protection {name}: the firmware's bit {bit} is not the "
                               f"protocol's {FAULT_BITS.get(name)}")
            keys = [CONFIG_NAMES[4 * i + k] for k in range(1, 5)]
            missing = [k for k in keys if k not in config]
            if missing:
                raise HilError(f"the board's configuration lacks {', '.join(missing)}: "
                               "its firmware does not match this host")
            trip, release = config[keys[0]], config[keys[1]]
            limits.protections[name] = ProtectionLimits(
                name=name, index=i, bit=bit, above=direction == ABOVE, blocks=blocks,
                trip_key=keys[0], release_key=keys[1], trip=trip.value, release=release.value,
                trip_delay_ms=config[keys[2]].value, release_delay_ms=config[keys[3]].value,
                debounce=config[CONFIG_NAMES[DEBOUNCE_KEY_BASE + i]].value,
                severity=SEVERITIES[config[CONFIG_NAMES[SEVERITY_KEY_BASE + i]].value],
                hard_min=min(trip.min, release.min), hard_max=max(trip.max, release.max),
                period_ms=period_ms,
                one_way=bool(bit & (charge_only | discharge_only)),
            )
        return limits

    @property
    def switches(self) -> str:
        """"dual" (separate charge and discharge switches) or "single", from the board
        file of the board's name; "single" for a board this host has no file for."""
        from ..boards import board_names, load_board

        if self.info.board not in board_names():
            return "single"
        return str(load_board(self.info.board).get("switches", "single"))

    def value(self, key: str) -> int:
        return self.config[key].value

    @property
    def current_full_scale_ma(self) -> int:
        """What the current sensor measures: the hard top of a current threshold."""
        return self.config["charge_current_max_ma"].max


def set_config(client: BoardClient, values: dict[str, int]) -> None:
    """Write several keys whose allowed ranges depend on each other (a trip and its
    release) in whatever order the board accepts; raise the refusal when none does."""
    pending = dict(values)
    refused: BoardRefused | None = None
    while pending:
        progress = False
        for key, value in list(pending.items()):
            try:
                client.set_config(key, value)
            except BoardRefused as exc:
                if exc.error != "out_of_range":
                    raise
                refused = exc
                continue
            del pending[key]
            progress = True
        if not progress:
            assert refused is not None
            raise refused


def restore_config(client: BoardClient, baseline: dict[str, int]) -> list[str]:
    """Put back every key that differs from ``baseline``; return the keys changed."""
    now = {e.key: e.value for e in client.config_dump()}
    changed = {k: v for k, v in baseline.items() if now.get(k) != v}
    if changed:
        set_config(client, changed)
    return sorted(changed)
