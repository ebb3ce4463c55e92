"""Hardware in the loop: one test suite for simulated and real boards.

A :class:`Target` is what the suite (``hil_tests/``) runs against: a simulated
board (:class:`SimTarget`: the real firmware under MicroPython or CPython
behind a pseudo-terminal, free-running as fast as it goes) or a real board on
a serial port (:class:`PortTarget`, any pyserial URL). Tests talk to it only
through

- :class:`HilClient`, a :class:`~cellguard.client.BoardClient` that keeps every
  message it read and waits in *board* time (read from telemetry), so a wait
  means the same on a board running 365x real time and on one on the desk;
- a :class:`Rig`, which forces plant conditions: the simulator's plant on a
  simulated board (:class:`SimRig`); on a real board an operator at the
  terminal (:class:`OperatorRig`, ``--operator`` with ``-s``) or nothing
  (:class:`NoRig`: every stimulus skips the test, naming what it would need).

Limits for stimuli come from the board itself (:class:`BoardLimits`: INFO, the
configuration dump and the firmware's protection table), never from numbers
written into a test. ``cellguard hil`` runs the suite as a pytest subprocess
(:func:`run_suite`) and prints a table from its JUnit XML.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import serial

from .client import (
    CONFIG_NAMES,
    FAULT_BITS,
    BoardClient,
    BoardRefused,
    ConfigEntry,
    Event,
    Info,
    Message,
    Telemetry,
)
from .errors import CellguardError, PortError
from .link import FrameReader
from .paths import repo_root

RUNTIME_HARDWARE = "hardware"
"""The runtime a real board reports in the suite's properties."""

WALL_SLACK_S = 10.0
"""Wall time a wait allows beyond its board time at the target's slowest speed."""

HOST_LEAD_S = 1.0
"""Board time a simulated target may run ahead of the output the suite has read:
a host that pauses (a busy machine) holds the board instead of letting minutes
of board time pass unseen (a host timeout, a missed stimulus)."""

NEEDS_RIG = ("run with --operator -s to have an operator at the terminal do it "
             "(lab instruments come with a later issue)")

SEVERITIES = ("warning", "alarm", "fault")
BLOCKS_CHARGE = 1
BLOCKS_DISCHARGE = 2


class HilError(CellguardError):
    """The HIL suite cannot run as asked."""


class HilTimeout(AssertionError):
    """What a test waited for did not happen in time (a test failure)."""


def _skip(reason: str) -> NoReturn:
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
        budget = self.wall_budget_s(board_s)
        deadline = time.monotonic() + budget
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
            if time.monotonic() > deadline:
                raise HilTimeout(
                    f"no {what} within {budget:g} s of wall time (board time advanced "
                    f"{(self.elapsed_ms - start_ms) / 1000:g} s of {board_s:g}: is the board "
                    f"still sending telemetry?); {self.describe_last()}")
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
                    self.serial = serial.serial_for_url(self.port_name, baudrate=baudrate,
                                                        timeout=timeout, exclusive=True)
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

        from .protocol.messages import DEBOUNCE_KEY_BASE, SEVERITY_KEY_BASE

        info = client.info or client.hello()
        config = {e.key: e for e in client.config_dump()}
        limits = cls(info, config)
        period_ms = round(info.control_period_s * 1000)
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
            )
        return limits

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


# -- rigs ------------------------------------------------------------------------------------
class Rig:
    """Forces plant conditions. This base class can do nothing but let time pass:
    every stimulus skips the test, saying what it would need."""

    kind = "none"
    observes = False  # whether truth() tells what the plant really does

    def __init__(self, target: Target, reason: str = "") -> None:
        self.target = target
        self.reason = reason or NEEDS_RIG

    def describe(self) -> str:
        return "no rig: tests that force plant conditions skip"

    def _cannot(self, what: str, needs: str) -> NoReturn:
        _skip(f"{what} needs {needs} on a real board: {self.reason}")

    # stimuli (SI units; current positive = charging)
    def set_current(self, amps: float) -> None:
        self._cannot(f"a current of {amps:g} A", "a programmable load or charger")

    def set_ambient(self, celsius: float) -> None:
        self._cannot(f"an ambient of {celsius:g} °C", "a climate chamber")

    def set_cell_temperature(self, cell: int, celsius: float | None) -> None:
        self._cannot(f"cell {cell + 1} at {celsius} °C", "a heater or cooler on the sensor")

    def inject(self, fault: str, **params: float) -> None:
        self._cannot(f"fault {fault}", "a fault-injection fixture")

    def clear(self, fault: str | None = None) -> None:
        """Remove injected faults (all of them when ``fault`` is None)."""

    def power_cycle(self) -> None:
        self._cannot("a power cycle", "a switchable supply")

    def restore(self) -> None:
        """Back to rest: no current, no injected fault, temperatures to the plant."""

    def truth(self) -> Any:
        """The plant as it is (a ``PlantTruth``), or None where nothing observes it."""
        return None

    def truth_at(self, board_time_ms: int) -> Any:
        return None

    def cell_lsb_v(self) -> float:
        """One step of the cell-voltage ADC, where the rig knows the front end."""
        self._cannot("the cell ADC's resolution", "a board file for its front end")

    def wait(self, board_s: float) -> None:
        """Let ``board_s`` of board time pass, reading every open client meanwhile."""
        end = time.monotonic() + board_s
        while time.monotonic() < end:
            self.target.drain()
            time.sleep(0.01)


NoRig = Rig


class SimRig(Rig):
    """Drives the simulated board's plant (``SimulatedBoard``)."""

    kind = "simulator"
    observes = True

    def __init__(self, target: SimTarget) -> None:
        super().__init__(target)
        self.sim = target.sim
        self._ambient_c = self.sim.plant.ambient_c
        self._history: dict[int, Any] = {}

    def describe(self) -> str:
        return "the simulator's plant"

    def set_current(self, amps: float) -> None:
        self.sim.set_current(amps)

    def set_ambient(self, celsius: float) -> None:
        self.sim.set_ambient(celsius)

    def set_cell_temperature(self, cell: int, celsius: float | None) -> None:
        self.sim.set_cell_temperature(cell, celsius)

    def inject(self, fault: str, **params: float) -> None:
        if fault == "pack_sensor_offset" and "pack_adc" not in self.sim.board["frontend"]:
            _skip(f"board {self.sim.board['name']} has no pack-voltage sensor to offset")
        try:
            self.sim.inject(fault, **params)
        except ValueError as exc:
            if "has no" in str(exc):  # the board lacks the circuit: nothing to test
                _skip(str(exc))
            raise

    def clear(self, fault: str | None = None) -> None:
        self.sim.clear(fault)

    def power_cycle(self) -> None:
        self.sim.power_cycle()

    def restore(self) -> None:
        self.sim.clear()
        self.sim.set_current(0.0)
        self.sim.set_ambient(self._ambient_c)
        for cell in range(len(self.sim.plant.cells)):
            self.sim.set_cell_temperature(cell, None)

    def truth(self) -> Any:
        return self.sim.truth()

    def truth_at(self, board_time_ms: int) -> Any:
        # The board runs on while a test looks back: index one snapshot of the
        # plant's history instead of searching the live one on every call.
        truth = self._history.get(board_time_ms)
        if truth is None:
            self._history = dict(list(self.sim.history))  # list(deque): one C call, atomic
            truth = self._history.get(board_time_ms)
        return truth

    def cell_lsb_v(self) -> float:
        return float(self.sim.sensors.cell_lsb_v())

    def wait(self, board_s: float) -> None:
        """Run the board ``board_s`` (also while no client has the port open) and
        hold it there, so the next stimulus acts at exactly that board time; a
        client's wait (or its frames, one control period each) moves it on."""
        sim = self.sim
        end_ms = sim.run_for(board_s)
        deadline = time.monotonic() + board_s / self.target.min_speed + WALL_SLACK_S
        while sim.time_ms < end_ms:
            self.target.health()
            if time.monotonic() > deadline:
                raise HilTimeout(f"the simulated board did not run {board_s:g} s in time")
            self.target.drain()
            time.sleep(0.001)


# What an operator can do by hand, per injected fault (None: needs an instrument).
_OPERATOR_FAULTS: dict[str, tuple[str, str] | None] = {
    "open_wire": ("Disconnect the sense wire at the top of cell {cell1}",
                  "Reconnect the sense wire at the top of cell {cell1}"),
    "disconnected_temp": ("Unplug temperature sensor {sensor1}",
                          "Plug temperature sensor {sensor1} back in"),
    "shorted_temp": ("Short temperature sensor {sensor1} (a wire across its input)",
                     "Remove the short across temperature sensor {sensor1}"),
}


class OperatorRig(Rig):
    """Asks the person at the terminal to set plant conditions (pytest ``-s``)."""

    kind = "operator"

    def __init__(self, target: Target, ask: Callable[[str], str] = input) -> None:
        super().__init__(target, "an operator cannot do that by hand; lab instruments come "
                                 "with a later issue")
        self._ask = ask
        self._injected: list[tuple[str, dict[str, Any]]] = []
        self._current = 0.0
        self._hot: set[int] = set()

    def describe(self) -> str:
        return "an operator at the terminal"

    def prompt(self, instruction: str) -> None:
        """Show ``instruction`` and wait for Enter, reading the board meanwhile;
        an answer of ``s`` skips the test."""
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                self.target.drain()
                stop.wait(0.05)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            answer = self._ask(f"\n[cellguard HIL operator] {instruction}.\n"
                               "  Press Enter when done (s, Enter: skip this test): ")
        finally:
            stop.set()
            reader.join()
        if answer.strip().lower() == "s":
            _skip(f"the operator skipped: {instruction}")

    def set_current(self, amps: float) -> None:
        if amps > 0:
            self.prompt(f"Set the charger to push {amps:.2f} A into the pack "
                        "(the BMS may cut it off)")
        elif amps < 0:
            self.prompt(f"Set the load to draw {-amps:.2f} A from the pack "
                        "(the BMS may cut it off)")
        elif self._current:
            self.prompt("Switch the charger and the load off (0 A)")
        self._current = amps

    def set_cell_temperature(self, cell: int, celsius: float | None) -> None:
        if celsius is None:
            if cell in self._hot:
                self.prompt(f"Let the temperature sensor at cell {cell + 1} return to room "
                            "temperature")
                self._hot.discard(cell)
            return
        self.prompt(f"Bring the temperature sensor at cell {cell + 1} to {celsius:.1f} °C "
                    "(heat gun, freeze spray or a warm finger) and hold it there")
        self._hot.add(cell)

    def inject(self, fault: str, **params: float) -> None:
        how = _OPERATOR_FAULTS.get(fault)
        if how is None:
            self._cannot(f"fault {fault}", "a fault-injection fixture")
        self.prompt(how[0].format(**_one_based(params)))
        self._injected.append((fault, params))

    def clear(self, fault: str | None = None) -> None:
        keep = []
        for name, params in self._injected:
            if fault is None or name == fault:
                how = _OPERATOR_FAULTS[name]
                assert how is not None
                self.prompt(how[1].format(**_one_based(params)))
            else:
                keep.append((name, params))
        self._injected = keep

    def power_cycle(self) -> None:
        clients = [c for c in self.target.clients if c.is_open]
        for c in clients:
            c.disconnect()
        self.prompt("Power-cycle the board (supply off, then on again)")
        for c in clients:
            c.reconnect(wait_s=30.0)

    def restore(self) -> None:
        self.clear()
        self.set_current(0.0)
        for cell in sorted(self._hot):
            self.set_cell_temperature(cell, None)


def _one_based(params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    for key in ("cell", "sensor"):
        if key in params:
            out[f"{key}1"] = int(params[key]) + 1
    return out


# -- targets ----------------------------------------------------------------------------
class Target:
    """What the suite runs against; it owns the clients it opened and a rig."""

    simulated = False
    runtime = RUNTIME_HARDWARE
    min_speed = 1.0  # board seconds per wall second, at the least (for wall timeouts)

    def __init__(self, port: str, board: str = "") -> None:
        self.port = port
        self.board = board
        self.firmware_version = ""
        self.clients: list[HilClient] = []
        self.rig: Rig = Rig(self)

    def connect(self) -> HilClient:
        client = HilClient(self.port, self.min_speed)
        client.health = self.health
        self.clients.append(client)
        return client

    def health(self) -> None:
        """Raise if the target can no longer answer (a simulation that stopped)."""

    def drain(self) -> None:
        for c in self.clients:
            c.poll()

    def close_clients(self) -> None:
        for c in self.clients:
            c.close()
        self.clients.clear()

    def close(self) -> None:
        self.close_clients()

    def describe(self) -> str:
        return f"real board {self.board or '?'} on {self.port} (rig: {self.rig.describe()})"

    def properties(self) -> dict[str, str]:
        props = {"board": self.board, "runtime": self.runtime, "rig": self.rig.kind,
                 "port": self.port}
        if self.firmware_version:
            props["firmware"] = self.firmware_version
        return props


class PortTarget(Target):
    """A real board on a serial port or pyserial URL."""

    def probe(self) -> Info:
        """Ask the board who it is (fills ``board`` and ``firmware_version``)."""
        client = BoardClient(self.port)
        try:
            info = client.hello()
        finally:
            client.close()
        self.board, self.firmware_version = info.board, info.firmware_version
        return info


class SimTarget(Target):
    """A simulated board, free-running at ``speed`` (``math.inf``: as fast as it
    goes) but never more than ``HOST_LEAD_S`` of board time ahead of what a
    client that has the port open has read, and standing still while no client
    has it open unless the rig waits. ``SimRig.wait`` leaves it held at the
    board time it waited for until a client waits (its frames are answered
    meanwhile), so the next stimulus acts at exactly that time."""

    simulated = True
    min_speed = 10.0

    def __init__(self, board: str = "sim-4s", runtime: str = "micropython", seed: int = 7,
                 speed: float = math.inf, **sim_kw: Any) -> None:
        from .sim import SimulatedBoard

        # Paced to the suite: while a client has the port open the board waits
        # for it to read (up to the wall slack of a wait).
        sim_kw.setdefault("host_lead_s", HOST_LEAD_S)
        sim_kw.setdefault("host_stall_s", WALL_SLACK_S)
        # With no client on the port the board stands still, except while the
        # rig waits: a test that looks away (at a log it wrote, at the plant's
        # history) finds it where it left it. After rig.wait it holds until a
        # client waits.
        sim_kw.setdefault("hold_while_away", True)
        self.sim = SimulatedBoard(board=board, runtime=runtime, seed=seed, speed=speed,
                                  **sim_kw)
        self.sim.start()
        super().__init__(self.sim.port, self.sim.board["name"])
        self.runtime = runtime
        self.seed = seed
        if math.isfinite(speed) and speed > 0:
            self.min_speed = min(self.min_speed, speed / 2)
        self.rig = SimRig(self)

    def connect(self) -> HilClient:
        client = super().connect()
        client.health = self._client_waits
        return client

    def _client_waits(self) -> None:
        """A client waits for board time to pass: the rig's hold ends."""
        self.sim.release()
        self.health()

    def health(self) -> None:
        self.sim.check()  # the firmware's or the simulation's own error
        if not self.sim.running:
            raise HilError("the simulated board stopped")

    def close(self) -> None:
        super().close()
        self.sim.close()
        self.sim.check()

    def describe(self) -> str:
        return (f"simulated board {self.board}, firmware under {self.runtime}, seed "
                f"{self.seed}")

    def properties(self) -> dict[str, str]:
        return {"board": self.board, "runtime": self.runtime, "rig": self.rig.kind,
                "seed": str(self.seed)}


# -- the suite, run from the command line --------------------------------------------------
def suite_dir() -> Path:
    """The HIL suite's folder (``hil_tests/`` of the source tree)."""
    return repo_root() / "hil_tests"


@dataclass(frozen=True)
class CaseResult:
    name: str  # file::test[params]
    result: str  # passed, failed, error, skipped
    duration_s: float
    message: str = ""
    properties: dict[str, str] = field(default_factory=dict)


def parse_junit(path: str | os.PathLike[str]) -> tuple[list[CaseResult], dict[str, str]]:
    """The test cases of a JUnit XML file pytest wrote, and the suite's properties."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    cases: list[CaseResult] = []
    props: dict[str, str] = {}
    for suite in suites:
        for p in suite.findall("properties/property"):
            props[p.get("name", "")] = p.get("value", "")
        for case in suite.iter("testcase"):
            result, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    result = {"failure": "failed"}.get(tag, tag)
                    message = node.get("message", "")
                    break
            classname = case.get("classname", "")
            module = classname.rsplit(".", 1)[-1] if classname else ""
            name = f"{module}.py::{case.get('name', '')}" if module else case.get("name", "")
            case_props = {p.get("name", ""): p.get("value", "")
                          for p in case.findall("properties/property")}
            cases.append(CaseResult(name, result, float(case.get("time", 0.0)),
                                    message, case_props))
    return cases, props


def summary_lines(cases: Sequence[CaseResult], wall_s: float, target: str) -> list[str]:
    """The table ``cellguard hil`` prints (test, result, duration) and a total line."""
    width = max([len(c.name) for c in cases] + [4])
    lines = [f"{'test':{width}}  {'result':7}  {'duration':>9}"]
    for c in cases:
        line = f"{c.name:{width}}  {c.result:7}  {c.duration_s:8.2f}s"
        if c.result != "passed" and c.message:
            line += f"  {c.message.splitlines()[0][:100]}"
        lines.append(line)
    counts = {r: sum(1 for c in cases if c.result == r)
              for r in ("passed", "failed", "error", "skipped")}
    parts = [f"{n} {r}" for r, n in counts.items() if n or r in ("passed", "failed")]
    lines.append(f"{len(cases)} tests on {target}: {', '.join(parts)} in {wall_s:.1f} s")
    return lines


def check_suite_args(port: str | None, board: str | None, runtime: str | None,
                     tests: str | os.PathLike[str] | None = None) -> Path:
    """Refuse what cannot run, with a clear reason; return the suite's folder."""
    if port and board:
        raise HilError("give --port (a real board) or --board (a simulated one), not both")
    if port and runtime:
        raise HilError("--runtime is for simulated boards; a real board runs its own "
                       "MicroPython")
    if not port:
        from .boards import load_board
        from .sim import RUNTIMES

        load_board(board or "sim-4s")  # BoardFileError names the known boards
        if runtime and runtime not in RUNTIMES:
            raise HilError(f"unknown runtime {runtime!r}; runtimes: {', '.join(RUNTIMES)}")
    folder = Path(tests) if tests else suite_dir()
    if not (folder / "conftest.py").is_file():
        raise HilError(f"the HIL suite is not at {folder} (a source checkout of cellguard has "
                       "it in hil_tests/; pass --tests DIR to run another copy)")
    return folder


@dataclass
class SuiteRun:
    returncode: int
    cases: list[CaseResult]
    properties: dict[str, str]
    wall_s: float


def run_suite(*, port: str | None = None, board: str | None = None,
              runtime: str | None = None, keyword: str | None = None,
              junitxml: str | None = None, operator: bool = False,
              tests: str | os.PathLike[str] | None = None,
              extra_args: Iterable[str] = (), stream: Any = None) -> SuiteRun:
    """Run the HIL suite in a pytest subprocess and read its JUnit XML back."""
    folder = check_suite_args(port, board, runtime, tests)
    with tempfile.TemporaryDirectory(prefix="cellguard-hil-") as tmp:
        xml_path = Path(junitxml) if junitxml else Path(tmp) / "hil.xml"
        cmd = [sys.executable, "-m", "pytest", str(folder), "-p", "no:cacheprovider",
               f"--junitxml={xml_path}", "-q", "--tb=short"]
        if port:
            cmd += ["--port", port]
        else:
            cmd += ["--board", board or "sim-4s"]
            if runtime:
                cmd += ["--runtime", runtime]
        if operator:
            cmd += ["--operator", "-s"]
        if keyword:
            cmd += ["-k", keyword]
        cmd += list(extra_args)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, stdout=stream, stderr=subprocess.STDOUT if stream else None,
                              check=False)
        wall_s = time.monotonic() - t0
        cases, props = parse_junit(xml_path) if xml_path.exists() else ([], {})
    return SuiteRun(proc.returncode, cases, props, wall_s)


def cli_hil(args: Any) -> int:
    """``cellguard hil``: run the suite, print the table and a total; exit status 1
    when anything failed."""
    check_suite_args(args.port, args.board, args.runtime, args.tests)
    if args.port:
        where = f"the real board on {args.port}"
    else:
        where = (f"simulated board {args.board or 'sim-4s'} (firmware under "
                 f"{args.runtime or 'micropython'})")
    print(f"cellguard hil: running the HIL suite on {where}", flush=True)
    run = run_suite(port=args.port, board=args.board, runtime=args.runtime,
                    keyword=args.keyword, junitxml=args.junitxml, operator=args.operator,
                    tests=args.tests)
    if not run.cases:
        if run.returncode == 5:
            raise HilError(f"no HIL test matches -k {args.keyword!r}" if args.keyword
                           else "the HIL suite has no tests")
        raise HilError(f"the HIL suite did not run (pytest exit status {run.returncode}); "
                       "its output above says why")
    props = run.properties
    target = (f"board {props.get('board', args.board or '?')}, runtime "
              f"{props.get('runtime', args.runtime or '?')}")
    print()
    for line in summary_lines(run.cases, run.wall_s, target):
        print(line)
    if args.junitxml:
        print(f"JUnit XML: {args.junitxml}")
    failed = any(c.result in ("failed", "error") for c in run.cases)
    return 1 if failed or run.returncode != 0 else 0
