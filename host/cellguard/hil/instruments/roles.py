"""Lab instruments by role, over SCPI through PyVISA: the small contracts a rig uses.

A rig never talks to an instrument model; it talks to a role:

- :class:`SourceSink`: pushes a current into the pack (positive, charging) or draws
  one from it (negative, discharging), in constant current, within a voltage window
  set on the instrument itself (the hardware backstop). A supply sources only, an
  electronic load sinks only, a bidirectional supply does both.
- :class:`CellEmulator`: one emulated cell per channel (set its voltage, enable it,
  limit what it sources and sinks, measure it).
- :class:`Dmm`: a DC voltage.
- :class:`RelayCard`: channels that open and close (a sense wire, an NTC lead, a
  short-circuit resistor, the board's supply).

Each driver is a :class:`ScpiInstrument`: it checks the instrument's identity when
opened, reads every setpoint back and empties the instrument's error queue after
each setting, and raises :class:`InstrumentError` (one clear line) when any of it
disagrees. Units are SI (V, A); current is positive into the pack.
"""

from __future__ import annotations

import contextlib
import math
import re
import socket
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ...errors import CellguardError


class InstrumentError(CellguardError):
    """An instrument did not do, or could not confirm, what it was told."""


def _no_delay(resource: Any) -> None:
    """Over a socket, send each command at once (no Nagle): a command without an answer
    followed by the error query would otherwise wait for the first one's ACK, tens of
    milliseconds per setting."""
    with contextlib.suppress(Exception):  # not a socket, or a backend without it
        from pyvisa import constants

        if getattr(resource, "interface_type", None) != constants.InterfaceType.tcpip:
            return
        try:
            resource.set_visa_attribute(constants.VI_ATTR_TCPIP_NODELAY, constants.VI_TRUE)
        except Exception:  # pyvisa-py's raw sockets lack the attribute: set it on the socket
            session = resource.visalib.sessions[resource.session]
            sock = getattr(session, "interface", None)
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ScpiInstrument:
    """One instrument on an open PyVISA resource (``pyvisa.resources.MessageBasedResource``
    or anything with ``write``/``query``/``read``/``close`` and the termination
    attributes).

    Subclasses set ``MODEL`` (a regular expression the ``*IDN?`` answer must match),
    the terminations their instrument uses, and implement their role's methods with
    :meth:`write`, :meth:`query`, :meth:`set_and_confirm` and :meth:`check_errors`.
    """

    MODEL: ClassVar[str] = ""
    """Regular expression an ``*IDN?`` answer of this model matches (case-insensitive)."""
    DESCRIPTION: ClassVar[str] = ""
    """The models the driver is for, for messages and docs (e.g. "Rigol DL3000 load")."""
    READ_TERMINATION: ClassVar[str | None] = "\n"
    WRITE_TERMINATION: ClassVar[str] = "\n"
    TIMEOUT_MS: ClassVar[int] = 2000
    ERROR_QUERY: ClassVar[str | None] = "SYST:ERR?"
    """The error-queue query (None: the model has no error queue)."""

    def __init__(self, resource: Any, name: str = "") -> None:
        self.resource = resource
        self.name = name or self.DESCRIPTION or type(self).__name__
        resource.read_termination = self.READ_TERMINATION
        resource.write_termination = self.WRITE_TERMINATION
        resource.timeout = self.TIMEOUT_MS
        _no_delay(resource)
        self.idn = ""

    # -- the wire ----------------------------------------------------------------------
    def write(self, command: str) -> None:
        try:
            self.resource.write(command)
        except Exception as exc:  # pyvisa.VisaIOError, OSError, serial errors
            raise InstrumentError(f"{self.name}: could not send {command!r}: {exc}") from exc

    def query(self, command: str) -> str:
        try:
            return str(self.resource.query(command)).strip()
        except Exception as exc:
            raise InstrumentError(f"{self.name}: no answer to {command!r}: {exc}") from exc

    def query_float(self, command: str) -> float:
        text = self.query(command)
        try:
            value = float(text.split(",")[0])
        except ValueError:
            raise InstrumentError(f"{self.name}: {command!r} answered {text!r}, "
                                  "not a number") from None
        if not math.isfinite(value):
            raise InstrumentError(f"{self.name}: {command!r} answered {text!r}")
        return value

    # -- identity, errors, read-back -------------------------------------------------------
    def identify(self) -> str:
        """``*IDN?``, checked against ``MODEL``: InstrumentError for another model."""
        self.idn = self.query("*IDN?")
        if self.MODEL and not re.search(self.MODEL, self.idn, re.IGNORECASE):
            raise InstrumentError(f"{self.name}: the instrument says it is {self.idn!r}, "
                                  f"not a {self.DESCRIPTION or self.MODEL}")
        return self.idn

    def errors(self) -> list[str]:
        """Empty the instrument's error queue; the errors it held, oldest first."""
        if self.ERROR_QUERY is None:
            return []
        found: list[str] = []
        for _ in range(32):  # a queue is finite; a broken one must not hang the rig
            answer = self.query(self.ERROR_QUERY)
            code = answer.split(",", 1)[0].strip().lstrip("+")
            if code in ("0", "-0", "") or answer.lower().startswith(("0,", "no error")):
                return found
            found.append(answer)
        raise InstrumentError(f"{self.name}: its error queue does not empty: {found[-3:]}")

    def check_errors(self, after: str = "") -> None:
        """InstrumentError when the error queue held anything (``after``: what was sent)."""
        found = self.errors()
        if found:
            what = f" after {after!r}" if after else ""
            raise InstrumentError(f"{self.name}: the instrument reported {'; '.join(found)}"
                                  f"{what}")

    def set_and_confirm(self, command: str, query: str, expected: float,
                        tolerance: float) -> float:
        """Send ``command``, check the error queue, read ``query`` back: InstrumentError
        unless it is within ``tolerance`` of ``expected``. Returns what it read."""
        self.write(command)
        self.check_errors(command)
        value = self.query_float(query)
        if abs(value - expected) > tolerance:
            raise InstrumentError(f"{self.name}: set {command!r} but it reads back "
                                  f"{value:g} (expected {expected:g})")
        return value

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed or gone: nothing to release
            self.resource.close()


class SourceSink(ScpiInstrument, ABC):
    """Charges or discharges the pack at a set current (A, positive into the pack)."""

    CAN_SOURCE: ClassVar[bool] = False
    CAN_SINK: ClassVar[bool] = False
    MAX_CURRENT_A: ClassVar[float] = math.inf
    """The largest current the model sets (per direction); larger is refused."""

    @abstractmethod
    def set_voltage_window(self, min_v: float, max_v: float) -> None:
        """The backstop on the instrument itself: a source never drives the pack above
        ``max_v`` (its voltage setpoint in constant current, and its over-voltage
        protection where it has one); a sink stops drawing below ``min_v`` (its
        under-voltage cut-off). Read back and confirmed."""

    @abstractmethod
    def set_current(self, amps: float) -> None:
        """Program ``amps`` (positive: charge, negative: discharge) and switch the
        output on; 0 switches it off. Read back and confirmed. InstrumentError for a
        direction the instrument does not have or beyond ``MAX_CURRENT_A``."""

    @abstractmethod
    def off(self) -> None:
        """Current setpoint 0 and output off; confirmed."""

    @abstractmethod
    def output_on(self) -> bool:
        """Whether the instrument says its output is on."""

    @abstractmethod
    def measure_voltage_v(self) -> float:
        """The voltage at its terminals (V)."""

    @abstractmethod
    def measure_current_a(self) -> float:
        """The current it drives now (A, positive into the pack)."""


class CellEmulator(ScpiInstrument, ABC):
    """A multi-channel cell emulator: channel k (0-based) is cell k of the pack."""

    CHANNELS: ClassVar[int] = 0

    @abstractmethod
    def set_cell_voltage(self, channel: int, volts: float) -> None:
        """Its output voltage (V); read back and confirmed."""

    @abstractmethod
    def enable(self, channel: int, on: bool) -> None:
        """Switch the channel's output on or off; confirmed."""

    @abstractmethod
    def set_current_limits(self, channel: int, source_a: float, sink_a: float) -> None:
        """What the channel may source and sink (A, both positive); confirmed."""

    @abstractmethod
    def measure_cell_voltage_v(self, channel: int) -> float:
        """The channel's measured voltage (V)."""

    @abstractmethod
    def enabled(self, channel: int) -> bool:
        """Whether the channel's output is on."""

    def off(self) -> None:
        """Every channel off, confirmed."""
        for channel in range(self.CHANNELS):
            self.enable(channel, False)


class Dmm(ScpiInstrument, ABC):
    @abstractmethod
    def measure_dc_voltage_v(self) -> float:
        """One DC voltage reading (V)."""

    def off(self) -> None:
        """A meter drives nothing."""


class RelayCard(ScpiInstrument, ABC):
    CHANNELS: ClassVar[tuple[int, ...]] = ()
    """The channel numbers the card has, as its SCPI addresses them."""

    @abstractmethod
    def set_closed(self, channel: int, closed: bool) -> None:
        """Close or open ``channel``; confirmed."""

    @abstractmethod
    def closed(self, channel: int) -> bool:
        """Whether ``channel`` is closed."""

    @abstractmethod
    def open_all(self) -> None:
        """Every channel open; confirmed."""

    def off(self) -> None:
        self.open_all()


ROLES: dict[str, type[ScpiInstrument]] = {
    "source_sink": SourceSink, "cell_emulator": CellEmulator, "dmm": Dmm, "relay": RelayCard,
}
"""Role name (as a rig file writes it) -> the class its drivers derive from."""
