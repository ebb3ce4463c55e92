"""Talk to one board over a serial port (a USB board or a simulator's pty).

:class:`BoardClient` opens any pyserial URL, asks HELLO and reads INFO, and
turns telemetry frames into :class:`Telemetry` records in SI units (V, A, degC,
s, SoC in percent; current positive when charging).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import serial

from ..errors import CellguardError, NotABoardError, PortError
from ..protocol.codec import Frame, PayloadError, build_payload, encode_frame, parse_payload
from ..protocol.messages import (
    AUDIT_RECORD_BYTES,
    BY_NAME,
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    WRITES,
    ConfigKey,
    EventKind,
    Faults,
)
from ..units import wire_unit_name
from .auth import BoardKey, KeyStore
from .framing import FrameReader
from .lifetime import LifetimeRecord

MSG_INFO = BY_NAME["info"].msg_id
MSG_TELEMETRY = BY_NAME["telemetry"].msg_id
MSG_NAK = BY_NAME["nak"].msg_id
MSG_HELLO = BY_NAME["hello"].msg_id

FAULT_BITS: dict[str, int] = dict(Faults.flags)
CONFIG_KEYS: dict[str, int] = {str(k): v for k, v in ConfigKey.encmapping.items()}
CONFIG_NAMES: dict[int, str] = {v: k for k, v in CONFIG_KEYS.items()}
EVENT_NAMES: dict[int, str] = {v: str(k) for k, v in EventKind.encmapping.items()}

# Wire unit (the key name's suffix) -> (SI unit, wire units per SI unit).
UNITS: dict[str, tuple[str, float]] = {
    "mv": ("V", 1000.0), "ma": ("A", 1000.0), "dc": ("°C", 10.0), "ms": ("s", 1000.0),
    "mah": ("Ah", 1000.0),
}


# The wire unit of the value a protection reports when it trips or releases.
def _fault_value_units() -> dict[str, str]:
    # Each protection reports the value it watches, in its limit key's unit
    # (the suffix of the key in the firmware's table); outside the
    # table: the host-lost policy reports a time.
    from cellguard_fw.protection import protection_table

    units = {str(row[0]): str(row[4]).rsplit("_", 1)[-1] for row in protection_table()}
    units["host_lost"] = "ms"
    return units


FAULT_VALUE_UNITS: dict[str, str] = _fault_value_units()


CHIP_SAFETY_BITS = (
    ("CUV", 2), ("COV", 3), ("OCC", 4), ("OCD1", 5), ("OCD2", 6), ("SCD", 7),  # A
    ("UTC", 8), ("UTD", 9), ("UTINT", 10), ("OTC", 12), ("OTD", 13), ("OTINT", 14),  # B
    ("OTF", 15), ("HWDF", 17), ("PTOS", 18), ("COVL", 20), ("OCDL", 21), ("SCDL", 22),  # C
    ("OCD3", 23))
"""An ``afe_protection`` event's value: a BQ769x2's Safety Status A | B << 8 | C << 16,
its protections by bit (TRM, "Safety Status A/B/C")."""


def chip_trip_names(value: int) -> list[str]:
    """The monitor chip's own protections an ``afe_protection`` value holds."""
    return [name for name, bit in CHIP_SAFETY_BITS if value >> bit & 1]


def format_fault_value(bits: int, value: int) -> str:
    """A protection's trip/release value in SI units, e.g. ``2.795 V``; a monitor
    chip's trip as the chip's protections, e.g. ``chip: SCD``."""
    names = fault_names(bits)
    if names == ["afe_protection"]:
        return "chip: " + (", ".join(chip_trip_names(value)) or "none")
    wire = FAULT_VALUE_UNITS.get(names[0]) if len(names) == 1 else None
    if wire not in UNITS:  # several bits, or a count
        return str(value)
    si, scale = UNITS[wire]
    return f"{value / scale:g} {si}"


SENSOR_BUS_COUNTS = ("nacks", "crc_errors", "checksum_errors", "busy_timeouts",
                     "verify_failures", "timeouts", "cycles_failed")
"""STATS' ``sensor_bus_errors``, in order (a newer board may send more: left out)."""


def named_stats(payload: dict[str, Any]) -> dict[str, Any]:
    """A STATS payload's counters, ``sensor_bus`` naming the sensor chip's bus error
    counts (``SENSOR_BUS_COUNTS``), null on a board without such a chip."""
    p = dict(payload)
    counts = list(p.pop("sensor_bus_errors", None) or [])
    p["sensor_bus"] = dict(zip(SENSOR_BUS_COUNTS, counts, strict=False)) if counts else None
    return p


class BoardRefused(CellguardError):
    """The board answered a request with NAK."""

    def __init__(self, request: str, error: str, limit: int, detail: str = "") -> None:
        self.request, self.error, self.limit = request, error, limit
        super().__init__(f"the board refused {request}: {error.replace('_', ' ')}{detail}")


class NoBoardKey(CellguardError):
    """A locked board, and the key store holds no key for it (or another one)."""


class RequestTimeout(CellguardError):
    """No answer to a request after every retry."""


class IncompatibleBoard(CellguardError):
    """The board speaks another major protocol version."""


def key_unit(key: str) -> tuple[str, str, float]:
    """(wire unit, SI unit, wire units per SI unit) of a configuration key."""
    wire = key.rsplit("_", 1)[-1]
    si, scale = UNITS.get(wire, ("", 1.0))
    return wire, si, scale


@dataclass(frozen=True)
class ConfigEntry:
    """One configuration key; ``value``/``min``/``max`` in the key's wire unit."""

    key: str
    value: int
    min: int
    max: int

    @property
    def unit(self) -> str:
        return key_unit(self.key)[0]

    def si(self, raw: int) -> float:
        return raw / key_unit(self.key)[2]


@dataclass(frozen=True)
class Event:
    index: int
    board_time_s: float
    unix_time: int  # 0 when the board's clock was not set
    kind: str
    code: int
    value: int

    def describe(self) -> str:
        if self.kind in ("trip", "release", "clear"):
            return ", ".join(fault_names(self.code)) + (
                f" at {format_fault_value(self.code, self.value)}" if self.kind != "clear" else ""
            )
        if self.kind == "config":
            name = CONFIG_NAMES.get(self.code, str(self.code))
            wire = name.rsplit("_", 1)[-1]
            return f"{name} = {self.value}" + (f" {wire_unit_name(wire)}" if wire in UNITS else "")
        if self.kind == "boot":
            return "latched: " + (", ".join(fault_names(self.code)) or "none") + (
                f"; build {boot_status(self.value)}" if self.value else "")
        if self.kind == "time_sync":
            return f"clock set to {self.value & 0xFFFFFFFF}"  # an i32 on the wire
        if self.kind == "second_life":
            return f"lifetime record restarted: life {self.code + 1}, the ended lives kept " \
                "as history"
        if self.kind == "commissioned":
            return "commissioning data written into the lifetime record"
        return ""


def fault_names(bits: int) -> list[str]:
    """Names of the fault bits set in ``bits``; a bit this host does not know is ``bit<N>``."""
    names = [name for name, bit in FAULT_BITS.items() if bits & bit]
    unknown = bits & ~sum(FAULT_BITS.values())
    names += [f"bit{n}" for n in range(32) if unknown >> n & 1]
    return names


BOOT_STATUS = (
    "not from a slot", "confirmed", "on trial", "fell back at this boot",
    "running the previous build since a fallback",
    "files altered (they do not match the build's manifest): output held open",
    "older than the board's minimum version (rollback refused): output held open",
    "fell back at this boot: the new build's files did not match its manifest",
    "fell back at this boot: the new build is older than the board's minimum version "
    "(rollback refused)",
)
"""INFO's boot status byte, and the BOOT event's value (docs/firmware.md, "Slots and
fallback", "Verified at boot"). 5 and 6: main.py's check refused the build it runs, whose
firmware holds the output open (the ``firmware`` fault, active while it runs); 7 and 8: it
refused a build on trial, unrun, and the previous build runs."""


def boot_status(code: int) -> str:
    return BOOT_STATUS[code] if 0 <= code < len(BOOT_STATUS) else f"status {code}"


@dataclass(frozen=True)
class Info:
    protocol: str
    firmware_version: str
    board: str
    unique_id: str
    chemistry: str
    cell_count: int
    temp_count: int
    capacity_ah: float
    control_period_s: float
    telemetry_period_s: float
    cell_ov_v: float
    cell_uv_v: float
    temp_max_c: float
    temp_min_c: float
    charge_current_max_a: float
    discharge_current_max_a: float
    max_frame: int = 0  # bytes before COBS; 0 in logs written before protocol 1.1
    known_types: tuple[str, ...] = ()
    boot: str = ""  # the running build's status (BOOT_STATUS); "" before protocol 1.4
    manifest_sha256: str = ""  # its manifest's hash, hex; "" when not deployed as a build
    key_id: int = 0  # the key writes need; 0: open mode (and before protocol 1.8)

    @property
    def locked(self) -> bool:
        """Whether the board takes writes only inside AUTH (docs/security.md)."""
        return self.key_id != 0

    @classmethod
    def from_wire(cls, p: dict[str, Any]) -> Info:
        return cls(
            protocol=f"{p['protocol_major']}.{p['protocol_minor']}",
            firmware_version=p["firmware_version"],
            board=p["board"],
            unique_id=p["unique_id"],
            chemistry=p["chemistry"],
            cell_count=p["cell_count"],
            temp_count=p["temp_count"],
            capacity_ah=p["capacity_mah"] / 1000.0,
            control_period_s=p["control_period_ms"] / 1000.0,
            telemetry_period_s=p["telemetry_period_ms"] / 1000.0,
            cell_ov_v=p["cell_ov_mv"] / 1000.0,
            cell_uv_v=p["cell_uv_mv"] / 1000.0,
            temp_max_c=p["temp_max_dc"] / 10.0,
            temp_min_c=p["temp_min_dc"] / 10.0,
            charge_current_max_a=p["charge_current_max_ma"] / 1000.0,
            discharge_current_max_a=p["discharge_current_max_ma"] / 1000.0,
            max_frame=p["max_frame"],
            known_types=tuple(_NAMES.get(t, f"0x{t:02x}") for t in p["known_types"]),
            boot=boot_status(p["boot"][0]) if p.get("boot") else "",
            manifest_sha256=bytes(p["boot"][1:33]).hex() if p.get("boot") else "",
            key_id=p.get("key_id", 0),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Telemetry:
    """One telemetry sample; ``raw`` keeps the integer wire values for storage."""

    seq: int
    board_time_s: float
    state: str
    faults: int
    pack_v: float
    current_a: float
    soc_pct: float
    cells_v: list[float]
    temps_c: list[float]
    raw: dict[str, Any] = field(repr=False, compare=False)
    warnings: int = 0  # bits of warning-severity protections active now
    alarms: int = 0  # bits of alarm-severity protections active now
    charge_allowed: bool = True  # current may flow into the pack now
    discharge_allowed: bool = True  # current may flow out of the pack now

    @classmethod
    def from_wire(cls, p: dict[str, Any]) -> Telemetry:
        return cls(
            seq=p["telemetry_seq"],
            board_time_s=p["board_time_ms"] / 1000.0,
            state=p["state"],
            faults=p["faults"],
            pack_v=p["pack_mv"] / 1000.0,
            current_a=p["current_ma"] / 1000.0,
            soc_pct=p["soc_cpct"] / 100.0,
            cells_v=[mv / 1000.0 for mv in p["cells_mv"]],
            temps_c=[dc / 10.0 for dc in p["temps_dc"]],
            raw=p,
            warnings=p["warnings"],
            alarms=p["alarms"],
            charge_allowed=bool(p["allowed"] & 1),
            discharge_allowed=bool(p["allowed"] & 2),
        )

    @property
    def fault_names(self) -> list[str]:
        return fault_names(self.faults)


@dataclass(frozen=True)
class Estimate:
    """One ESTIMATE frame in SI units: SoC (%) with its standard deviation, the
    emptiest and fullest cell, health, the current-sensor bias and the current
    limits (A, magnitudes) a charger or inverter should follow."""

    board_time_s: float
    mode: str  # "ekf" or "coulomb"
    soc_pct: float
    soc_std_pct: float | None  # None: the coulomb baseline has no uncertainty
    cell_soc_min_pct: float
    cell_soc_max_pct: float
    capacity_ah: float
    capacity_pct: float
    r0_growth_pct: float
    bias_a: float
    charge_limit_a: float
    charge_peak_a: tuple[float, float, float]  # 2 s, 10 s, 30 s
    discharge_limit_a: float
    discharge_peak_a: tuple[float, float, float]
    balancing: int  # bit i: cell i bleeding

    @classmethod
    def from_wire(cls, p: dict[str, Any]) -> Estimate:
        amps = [p[k] / 1000.0 for k in (
            "charge_limit_ma", "charge_peak_2s_ma", "charge_peak_10s_ma", "charge_peak_30s_ma",
            "discharge_limit_ma", "discharge_peak_2s_ma", "discharge_peak_10s_ma",
            "discharge_peak_30s_ma")]
        return cls(
            board_time_s=p["board_time_ms"] / 1000.0, mode=str(p["mode"]),
            soc_pct=p["soc_cpct"] / 100.0,
            soc_std_pct=None if p["soc_std_cpct"] < 0 else p["soc_std_cpct"] / 100.0,
            cell_soc_min_pct=p["cell_soc_min_cpct"] / 100.0,
            cell_soc_max_pct=p["cell_soc_max_cpct"] / 100.0,
            capacity_ah=p["capacity_mah"] / 1000.0, capacity_pct=p["capacity_cpct"] / 100.0,
            r0_growth_pct=p["r0_growth_cpct"] / 100.0, bias_a=p["bias_ma"] / 1000.0,
            charge_limit_a=amps[0], charge_peak_a=(amps[1], amps[2], amps[3]),
            discharge_limit_a=amps[4], discharge_peak_a=(amps[5], amps[6], amps[7]),
            balancing=p["balancing"],
        )


@dataclass
class Message:
    frame: Frame
    name: str
    payload: dict[str, Any]


class BoardClient:
    """A connection to one board. Use as a context manager."""

    def __init__(self, port: str, baudrate: int = 115200, read_timeout_s: float = 0.05,
                 keys: KeyStore | None = None) -> None:
        self.port_name = port
        # Where a locked board's key is looked up (the user's key store by default).
        self.keys = keys if keys is not None else KeyStore()
        # A locked board makes a change that lowers protection (a protection's limit,
        # open mode, the REPL) only while its presence button is held: called with
        # True when a write needs it (hold it, or ask a person to), False after.
        self.presence: Callable[[bool], None] | None = None
        self.presence_wait_s = 60.0  # how long the write is retried while it is held
        try:
            self.serial = open_serial(port, baudrate, read_timeout_s)
        except serial.SerialException as exc:
            raise PortError(_describe_open_error(port, exc)) from None
        except ValueError as exc:
            raise PortError(f"cannot open port {port}: {exc}") from None
        self.reader = FrameReader()
        self._seq = itertools.count(1)
        self.unknown_messages = 0
        self.ignored_frames = 0
        self.peer_versions: set[int] = set()  # major versions of frames we could not read
        self._backlog: list[Message] = []
        self.info: Info | None = None
        self.serial.reset_input_buffer()

    def close(self) -> None:
        self.serial.close()

    def __enter__(self) -> BoardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending and receiving ----------------------------------------------------
    def send(self, name: str, values: dict[str, Any]) -> int:
        seq = next(self._seq) & 0xFFFF
        frame = encode_frame(BY_NAME[name].msg_id, seq, build_payload(name, values))
        try:
            self.serial.write(frame)
        except serial.SerialException as exc:
            raise PortError(f"cannot write to {self.port_name}: {exc}") from None
        return seq

    def receive(self) -> list[Message]:
        """Read what has arrived (waiting at most the read timeout) and decode it.

        Messages that arrived while :meth:`hello` waited for its answer come first.
        """
        if self._backlog:
            backlog, self._backlog = self._backlog, []
            return backlog
        return self._read_messages()

    def _read_messages(self) -> list[Message]:
        try:
            data = self.serial.read(max(self.serial.in_waiting, 1))
        except (serial.SerialException, OSError) as exc:  # OSError: EIO once unplugged
            raise PortError(f"lost port {self.port_name}: {exc}") from None
        messages = []
        for frame in self.reader.feed(data):
            if frame.version != PROTOCOL_MAJOR:
                self.ignored_frames += 1
                self.peer_versions.add(frame.version)
                continue
            if frame.msg_type not in _NAMES:
                # A newer minor version may send types this host does not know.
                self.unknown_messages += 1
                continue
            try:
                payload = parse_payload(frame.msg_type, frame.payload)
            except PayloadError:
                self.reader.stats.bad_frames += 1
                continue
            name = _NAMES[frame.msg_type]
            messages.append(Message(frame, name, payload))
        return messages

    def messages(self) -> Iterator[Message]:
        """Every message, as it arrives, forever (the caller decides when to stop)."""
        while True:
            yield from self.receive()

    def request(self, name: str, values: dict[str, Any] | None = None,
                expect: tuple[str, ...] = ("ack",), timeout_s: float = 1.0,
                attempts: int = 3) -> Message:
        """Send a request and return its answer, matched by sequence number.

        Each attempt uses a new sequence number and an answer to any attempt
        counts; frames that are not the answer (telemetry, fault events, stale
        answers) are kept for :meth:`receive`. Raises :class:`BoardRefused` on a
        NAK and :class:`RequestTimeout` when no attempt is answered.
        """
        if name in WRITES and self.info is not None and self.info.locked:
            if name == "second_life" and self.keys.get(self.info.unique_id) is None:
                # A new owner, without the old one's key: the presence button instead
                # (docs/security.md, "Second life").
                return self._with_presence(lambda: self._request(
                    name, values or {}, expect, timeout_s, attempts))
            return self._authenticated(name, values or {}, expect, timeout_s, attempts)
        return self._request(name, values or {}, expect, timeout_s, attempts)

    def _request(self, name: str, values: dict[str, Any], expect: tuple[str, ...],
                 timeout_s: float, attempts: int, refused_as: str | None = None) -> Message:
        msg_type = BY_NAME[refused_as or name].msg_id
        seqs: set[int] = set()
        for _ in range(attempts):
            seqs.add(self.send(name, values))
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                batch = self._read_messages()
                for i, msg in enumerate(batch):
                    ours = msg.frame.seq in seqs
                    if ours and msg.name in expect:
                        self._backlog.extend(batch[i + 1 :])
                        return msg
                    if ours and msg.name == "nak" and msg.payload["request_type"] == msg_type:
                        self._backlog.extend(batch[i + 1 :])
                        raise BoardRefused(refused_as or name, str(msg.payload["error"]),
                                           msg.payload["limit"])
                    self._backlog.append(msg)
                if self.peer_versions:
                    raise self._incompatible()
        raise RequestTimeout(
            f"no answer to {name.upper()} from {self.port_name} "
            f"({attempts} attempts, {timeout_s:g} s each)"
        )

    def board_key(self) -> BoardKey:
        """The key of the board this client talks to, from the key store."""
        info = self.info
        if info is None:
            raise CellguardError("no HELLO yet: the board's key is found by its unique id")
        key = self.keys.get(info.unique_id)
        if key is None or key.key_id != info.key_id:
            pending = self.keys.pending(info.unique_id)
            if pending is not None and pending.key_id == info.key_id:
                return pending  # a key change the board took, its answer lost
            held = "no key" if key is None else f"key {key.key_id}"
            raise NoBoardKey(
                f"board {info.unique_id} on {self.port_name} is locked with key "
                f"{info.key_id}, and the key store ({self.keys.folder}) holds {held} for "
                "it: writes need the key the board was locked with (docs/security.md)")
        return key

    def _authenticated(self, name: str, values: dict[str, Any], expect: tuple[str, ...],
                       timeout_s: float, attempts: int) -> Message:
        """A write inside AUTH: a fresh nonce for each attempt, the MAC over it."""
        assert self.info is not None
        key = self.board_key()
        msg_type = BY_NAME[name].msg_id
        payload = build_payload(name, values)
        def once() -> Message:
            for attempt in range(attempts):
                nonce = self._request("get_nonce", {}, ("nonce",), timeout_s,
                                      attempts).payload["nonce"]
                try:
                    return self._request("auth", {
                        "key_id": key.key_id, "nonce": nonce,
                        "mac": key.mac(self.info.unique_id, nonce, msg_type, payload),
                        "request_type": msg_type, "request": payload,
                    }, expect, timeout_s, 1, refused_as=name)
                except RequestTimeout:
                    if attempt == attempts - 1:
                        raise
            raise AssertionError("unreachable")

        return self._with_presence(once)

    def _with_presence(self, once: Callable[[], Message]) -> Message:
        """``once()``; if the board asks for its presence button, ask the person at it
        (:attr:`presence`) and retry while it is held, up to :attr:`presence_wait_s`."""
        try:
            return once()
        except BoardRefused as exc:
            if exc.error != "presence_required" or exc.limit != 0 or self.presence is None:
                raise
        self.presence(True)
        try:
            deadline = time.monotonic() + self.presence_wait_s
            while True:
                try:
                    return once()
                except BoardRefused as exc:
                    if exc.error != "presence_required" or time.monotonic() > deadline:
                        raise
                time.sleep(0.2)
        finally:
            self.presence(False)

    def _incompatible(self) -> IncompatibleBoard:
        theirs = ", ".join(f"{v}.x" for v in sorted(self.peer_versions))
        return IncompatibleBoard(
            f"the board on {self.port_name} speaks protocol {theirs}; this host speaks "
            f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}: update the "
            + ("host tool" if max(self.peer_versions) > PROTOCOL_MAJOR else "board's firmware")
        )

    def hello(self, timeout_s: float = 2.0, attempts: int = 3) -> Info:
        """Ask the board who it is. Raises NotABoardError when nothing answers."""
        try:
            msg = self.request("hello", {"host_major": PROTOCOL_MAJOR,
                                         "host_minor": PROTOCOL_MINOR},
                               expect=("info",), timeout_s=timeout_s / attempts,
                               attempts=attempts)
        except RequestTimeout:
            raise NotABoardError(
                f"no cellguard board answered on {self.port_name} "
                f"(no reply to HELLO within {timeout_s:g} s)"
            ) from None
        except BoardRefused as exc:
            if exc.error == "incompatible_version":
                raise self._incompatible() from None
            raise NotABoardError(f"the board on {self.port_name} refused HELLO: {exc.error}") \
                from None
        self.info = Info.from_wire(msg.payload)
        return self.info

    # -- requests in host units ------------------------------------------------------
    def time_sync(self, unix_time: float | None = None) -> None:
        """Set the board's clock (for its event log) to the host's."""
        now = int(time.time() if unix_time is None else unix_time)
        self.request("time_sync", {"unix_time_s": now & 0xFFFFFFFF})

    def stats(self) -> dict[str, Any]:
        """STATS' counters (:func:`named_stats`)."""
        return named_stats(self.request("get_stats", expect=("stats",)).payload)

    def fault_state(self) -> dict[str, list[str]]:
        p = self.request("get_faults", expect=("fault_state",)).payload
        return {k: fault_names(p[k])
                for k in ("active", "latched", "tripped", "alarms", "warnings")}

    def clear_faults(self) -> None:
        self.request("clear_faults")

    def reset(self) -> None:
        self.request("reset")

    def enter_repl(self) -> None:
        self.request("enter_repl")

    @staticmethod
    def _config_key(key: str) -> int:
        try:
            return CONFIG_KEYS[key]
        except KeyError:
            raise CellguardError(
                f"unknown configuration key {key!r}; keys: {', '.join(CONFIG_KEYS)}"
            ) from None

    @staticmethod
    def _entry(p: dict[str, Any]) -> ConfigEntry:
        key = p["key"] if isinstance(p["key"], str) else f"key{p['key']}"
        return ConfigEntry(key, p["value"], p["min"], p["max"])

    def get_config(self, key: str) -> ConfigEntry:
        msg = self.request("get_config", {"key": self._config_key(key)},
                           expect=("config_value",))
        return self._entry(msg.payload)

    def set_config(self, key: str, value: int, pin: int = 0) -> ConfigEntry:
        """Write one key (value in the key's wire unit); BoardRefused says why not."""
        try:
            msg = self.request("set_config", {"key": self._config_key(key), "value": value,
                                              "pin": pin}, expect=("config_value",))
        except BoardRefused as exc:
            if exc.error in ("out_of_range", "beyond_hard_limit"):
                wire, si, scale = key_unit(key)
                wire = wire_unit_name(wire)
                limit = f"{exc.limit} {wire}" + (f" ({exc.limit / scale:g} {si})" if si else "")
                raise BoardRefused("set_config", exc.error, exc.limit,
                                   f": {key} = {value} {wire}, limit {limit}") from None
            raise
        return self._entry(msg.payload)

    def config_dump(self) -> list[ConfigEntry]:
        entries: list[ConfigEntry] = []
        first = 0
        for _ in range(256):  # bounded: a key id is one byte
            p = self.request("get_config_dump", {"first_key": first},
                             expect=("config_dump",)).payload
            for k, v, lo, hi in zip(p["keys"], p["values"], p["mins"], p["maxs"], strict=True):
                entries.append(ConfigEntry(CONFIG_NAMES.get(k, f"key{k}"), v, lo, hi))
            first = p["next_key"]
            if first == 0:
                break
        return entries

    def events(self, first_index: int = 0) -> list[Event]:
        """The board's event log from ``first_index`` (or its oldest) to the newest."""
        out: list[Event] = []
        index = first_index
        while True:
            p = self.request("get_events", {"first_index": index, "max_count": 255},
                             expect=("events",)).payload
            for i, t, u, k, c, v in zip(p["indexes"], p["times_ms"], p["unix_times"],
                                        p["kinds"], p["codes"], p["values"], strict=True):
                out.append(Event(i, t / 1000.0, u, EVENT_NAMES.get(k, str(k)), c, v))
            if not p["indexes"] or p["indexes"][-1] + 1 >= p["total"]:
                return out
            index = p["indexes"][-1] + 1

    def lifetime(self) -> LifetimeRecord:
        """The board's lifetime record (its counters now), read a page at a time."""
        words: list[int] = []
        for _ in range(256):  # bounded: a word index is one byte
            p = self.request("get_lifetime", {"first_word": len(words)},
                             expect=("lifetime",)).payload
            if p["first_word"] != len(words):
                raise CellguardError(f"the board answered GET_LIFETIME from word "
                                     f"{p['first_word']}, not {len(words)}")
            words += p["words"]
            if not p["words"] or len(words) >= p["total_words"]:
                break
        return LifetimeRecord.from_words(p["layout"], p["seq"], words)

    def audit_log(self) -> tuple[int, int, bytes]:
        """The board's change log: (records logged ever, index of the oldest kept, the
        kept records' bytes, oldest first), read a page at a time (``link.audit``)."""
        data = b""
        first = total = oldest = 0
        for _ in range(256):  # bounded: the board keeps at most 256 records
            p = self.request("get_audit", {"first": first}, expect=("audit",)).payload
            total, oldest, page = p["total"], p["oldest"], bytes(p["records"])
            if not data:
                first = max(first, oldest)
            if not page:
                break
            data += page
            first += len(page) // AUDIT_RECORD_BYTES
            if first >= total:
                break
        return total, oldest, data

    def commission(self, manufactured: float | None = None, in_service: float | None = None,
                   identity: str = "", pin: int = 0) -> None:
        """Write the date of manufacture and of putting into service (Unix times) and
        the pack identity into the lifetime record; each is written once, and
        BoardRefused (``already_set``) says when the record holds another value."""
        from .lifetime import UNIX_2020, pack_identity

        for name, t in (("date of manufacture", manufactured), ("service date", in_service)):
            if t is not None and not UNIX_2020 < t < 2**32:
                raise CellguardError(f"the {name} must lie between 2020 and 2106")
        self.request("commission", {
            "manufactured_unix_s": int(manufactured or 0),
            "commissioned_unix_s": int(in_service or 0),
            "identity": pack_identity(identity).decode(), "pin": pin})

    def second_life(self, unique_id: str, pin: int = 0) -> None:
        """Start a new lifetime record (a second-life reset): the board keeps the ended
        lives' totals as history and logs it. ``unique_id`` must be the board's own
        (INFO's), as a confirmation."""
        self.request("second_life", {"unique_id": unique_id, "pin": pin})

    def telemetry(self) -> Iterator[Telemetry]:
        for msg in self.messages():
            if msg.frame.msg_type == MSG_TELEMETRY:
                yield Telemetry.from_wire(msg.payload)


_NAMES = {spec.msg_id: name for name, spec in BY_NAME.items()}


def open_serial(port: str, baudrate: int, timeout_s: float | None) -> serial.SerialBase:
    """Open a port (or a pyserial URL) exclusively, without resetting the board on it.

    An ESP32 DevKit's USB-UART bridge drives the chip's EN (reset) from RTS and
    GPIO0 from DTR through two transistors: EN is pulled low while RTS is asserted
    and DTR is not. The lines are set before the port opens, so pyserial applies
    them as it opens: RTS off (never a reset), DTR on (a Pico's USB CDC counts the
    host as connected only with DTR). Ports without modem lines ignore them.
    """
    port_obj = serial.serial_for_url(port, baudrate=baudrate, timeout=timeout_s,
                                     exclusive=True, do_not_open=True)
    port_obj.rts = False
    port_obj.dtr = True
    port_obj.open()
    return port_obj


def _describe_open_error(port: str, exc: serial.SerialException) -> str:
    text = str(exc)
    if "No such file" in text or ("could not open port" in text and "[Errno 2]" in text):
        return f"cannot open port {port}: no such device (is the board plugged in?)"
    if "exclusively lock" in text or "Resource temporarily unavailable" in text:
        return f"port {port} is busy: another program has it open"
    if "Permission denied" in text:
        return f"cannot open port {port}: permission denied (add yourself to the dialout group)"
    return f"cannot open port {port}: {text}"
