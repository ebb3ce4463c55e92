"""Instruments emulated against a simulated board's plant, for a rig without hardware.

An :class:`EmulatedInstrument` speaks one model's SCPI dialect (what its driver
sends, the answers the real instrument gives, its error queue) and acts on a
:class:`PlantSide`: setting the load's current moves the plant's current, the cell
emulator's voltage replaces the plant's cell, a measurement reads the plant. The
rig reaches it through PyVISA as it would the real instrument: served on a loopback
socket or a pseudo-terminal (``bench.py``), so the driver, PyVISA and pyvisa-py
all run as they do on a bench.
"""

from __future__ import annotations

from typing import ClassVar, Protocol


class PlantSide(Protocol):
    """What emulated instruments act on: a simulated board's plant, seen at the
    instruments' terminals (SI units, current positive into the pack)."""

    def set_drive(self, name: str, amps: float, min_v: float, max_v: float) -> None:
        """Instrument ``name`` drives ``amps`` into the pack (0: its output off) while
        the voltage at its terminals stays within ``min_v``..``max_v`` (a source stops
        pushing at ``max_v``, a sink stops drawing at ``min_v``)."""

    def drive_current_a(self, name: str) -> float:
        """What instrument ``name`` really drives now (0 once the board has opened its
        output or the voltage window stopped it)."""

    def terminal_voltage_v(self) -> float:
        """The voltage at the pack's output terminals."""

    def cell_voltage_v(self, cell: int) -> float:
        """Cell ``cell``'s voltage (0-based) at its sense leads."""

    def set_cell(self, cell: int, volts: float | None) -> None:
        """Hold cell ``cell`` at ``volts`` (an emulator channel on); None: the cell is
        the plant's again (the channel off)."""

    def set_relay(self, channel: int, closed: bool) -> None:
        """Relay ``channel`` of the bench's relay card closed or open (what it is wired
        to is the bench's business: the rig file says)."""


class EmulatedInstrument:
    """One emulated instrument. Subclasses set ``IDN`` and ``TERMINATION`` and answer
    commands in :meth:`command`; the base handles the IEEE 488.2 common commands
    (``*IDN?``, ``*RST``, ``*CLS``, ``*OPC?``) and the error queue."""

    IDN: ClassVar[str] = ""
    TERMINATION: ClassVar[str] = "\n"
    """What ends a command and an answer ("": the model's commands are unterminated)."""
    ERROR_NONE: ClassVar[str] = '0,"No error"'
    UNDEFINED_HEADER: ClassVar[str] = '-113,"Undefined header"'
    DATA_OUT_OF_RANGE: ClassVar[str] = '-222,"Data out of range"'

    def __init__(self, plant: PlantSide, name: str) -> None:
        self.plant = plant
        self.name = name
        self.error_queue: list[str] = []
        self.log: list[str] = []  # every command received, in order (tests read it)

    def handle(self, command: str) -> str | None:
        """One command (its termination stripped): the answer, or None for none."""
        command = command.strip()
        self.log.append(command)
        upper = command.upper()
        if upper == "*IDN?":
            return self.IDN
        if upper == "*CLS":
            self.error_queue.clear()
            return None
        if upper == "*OPC?":
            return "1"
        if upper == "*RST":
            self.reset()
            return None
        return self.command(command)

    def command(self, command: str) -> str | None:
        """A model command: its answer or None. Unknown: push an error, answer None."""
        self.push_error(self.UNDEFINED_HEADER)
        return None

    def reset(self) -> None:
        """``*RST``: outputs off, setpoints to the model's defaults."""

    def push_error(self, error: str) -> None:
        self.error_queue.append(error)

    def pop_error(self) -> str:
        return self.error_queue.pop(0) if self.error_queue else self.ERROR_NONE

    def split(self, buffer: str) -> tuple[list[str], str]:
        """The complete commands in ``buffer`` and what is left of it (the start of
        the next). Terminated dialects split at the termination."""
        if not self.TERMINATION:
            raise NotImplementedError(f"{type(self).__name__} must split its "
                                      "unterminated commands itself")
        *done, rest = buffer.split(self.TERMINATION)
        return [c for c in (d.strip("\r") for d in done) if c], rest
