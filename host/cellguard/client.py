"""Talk to one board over a serial port (a USB board or a simulator's pty).

:class:`BoardClient` opens any pyserial URL, asks HELLO and reads INFO, and
turns telemetry frames into :class:`Telemetry` records in SI units (V, A, degC,
s, SoC in percent; current positive when charging).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import serial

from .errors import NotABoardError, PortError
from .link import FrameReader
from .protocol.codec import Frame, PayloadError, build_payload, encode_frame, parse_payload
from .protocol.messages import BY_NAME, PROTOCOL_MAJOR, PROTOCOL_MINOR, Faults

MSG_INFO = BY_NAME["info"].msg_id
MSG_TELEMETRY = BY_NAME["telemetry"].msg_id
MSG_NAK = BY_NAME["nak"].msg_id
MSG_HELLO = BY_NAME["hello"].msg_id

FAULT_BITS: dict[str, int] = dict(Faults.flags)


def fault_names(bits: int) -> list[str]:
    """Names of the fault bits set in ``bits``; a bit this host does not know is ``bit<N>``."""
    names = [name for name, bit in FAULT_BITS.items() if bits & bit]
    unknown = bits & ~sum(FAULT_BITS.values())
    names += [f"bit{n}" for n in range(32) if unknown >> n & 1]
    return names


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
        )

    @property
    def fault_names(self) -> list[str]:
        return fault_names(self.faults)


@dataclass
class Message:
    frame: Frame
    name: str
    payload: dict[str, Any]


class BoardClient:
    """A connection to one board. Use as a context manager."""

    def __init__(self, port: str, baudrate: int = 115200, read_timeout_s: float = 0.05) -> None:
        self.port_name = port
        try:
            self.serial = serial.serial_for_url(
                port, baudrate=baudrate, timeout=read_timeout_s, exclusive=True
            )
        except serial.SerialException as exc:
            raise PortError(_describe_open_error(port, exc)) from None
        except ValueError as exc:
            raise PortError(f"cannot open port {port}: {exc}") from None
        self.reader = FrameReader()
        self._seq = itertools.count(1)
        self.unknown_messages = 0
        self.ignored_frames = 0
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
        except serial.SerialException as exc:
            raise PortError(f"lost port {self.port_name}: {exc}") from None
        messages = []
        for frame in self.reader.feed(data):
            if frame.version != PROTOCOL_MAJOR:
                self.ignored_frames += 1
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

    def hello(self, timeout_s: float = 2.0, attempts: int = 3) -> Info:
        """Ask the board who it is. Raises NotABoardError when nothing answers."""
        for _ in range(attempts):
            seq = self.send("hello", {"host_major": PROTOCOL_MAJOR, "host_minor": PROTOCOL_MINOR})
            deadline = time.monotonic() + timeout_s / attempts
            while time.monotonic() < deadline:
                batch = self._read_messages()
                for i, msg in enumerate(batch):
                    if msg.frame.msg_type == MSG_INFO and msg.frame.seq == seq:
                        self.info = Info.from_wire(msg.payload)
                        self._backlog.extend(batch[i + 1 :])
                        return self.info
                    if msg.frame.msg_type == MSG_NAK and msg.frame.seq == seq:
                        raise NotABoardError(
                            f"the board on {self.port_name} refused HELLO: {msg.payload['error']}"
                        )
                    self._backlog.append(msg)
        raise NotABoardError(
            f"no cellguard board answered on {self.port_name} "
            f"(no reply to HELLO within {timeout_s:g} s)"
        )

    def telemetry(self) -> Iterator[Telemetry]:
        for msg in self.messages():
            if msg.frame.msg_type == MSG_TELEMETRY:
                yield Telemetry.from_wire(msg.payload)


_NAMES = {spec.msg_id: name for name, spec in BY_NAME.items()}


def _describe_open_error(port: str, exc: serial.SerialException) -> str:
    text = str(exc)
    if "No such file" in text or ("could not open port" in text and "[Errno 2]" in text):
        return f"cannot open port {port}: no such device (is the board plugged in?)"
    if "exclusively lock" in text or "Resource temporarily unavailable" in text:
        return f"port {port} is busy: another program has it open"
    if "Permission denied" in text:
        return f"cannot open port {port}: permission denied (add yourself to the dialout group)"
    return f"cannot open port {port}: {text}"
