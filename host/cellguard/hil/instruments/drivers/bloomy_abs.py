"""Bloomy Controls ABS (Advanced Battery Simulator): an 8-channel cell emulator.

Dialect: the ABS SCPI command set as Bloomy's open-source abs-scpi-driver sends it:
one command per cell, numbered 1..8 in the header (``SOUR1:VOLT 3.7000``,
``OUTP1 1``, ``SOUR1:CURR:SRC``, ``SOUR1:CURR:SNK``, ``MEAS1:VOLT?``), commands
ended by CR LF and answers by LF, over TCP on port 5025
(``TCPIP::<ip>::5025::SOCKET``).
"""

from __future__ import annotations

from typing import ClassVar

from ..roles import CellEmulator
from ._checks import Checks

MAX_CELL_V = 5.0
MAX_LIMIT_A = 5.0


class BloomyAbs(Checks, CellEmulator):
    """Eight emulated cells; channel k (0-based) is the ABS's cell k+1.

    Each setting is read back from its query form (``SOUR<n>:VOLT?``, ``OUTP<n>?``,
    ``SOUR<n>:CURR:SRC?``, ``SOUR<n>:CURR:SNK?``) and the error queue (``SYST:ERR?``)
    emptied after it. A cell's voltage is 0..5 V, its source and sink limits
    0..5 A; the sink limit is sent positive (the ABS accepts either sign) and its
    read-back compared by magnitude. ``*RST`` reboots the ABS: the driver never
    sends it.
    """

    MODEL: ClassVar[str] = r"Bloomy"
    DESCRIPTION: ClassVar[str] = "Bloomy Controls ABS cell emulator"
    CHANNELS: ClassVar[int] = 8
    WRITE_TERMINATION: ClassVar[str] = "\r\n"
    READ_TERMINATION: ClassVar[str | None] = "\n"

    def _cell(self, channel: int) -> int:
        return self.check_index("channel", channel, range(self.CHANNELS)) + 1

    def set_cell_voltage(self, channel: int, volts: float) -> None:
        n = self._cell(channel)
        volts = self.check_number("cell voltage", volts, 0.0, MAX_CELL_V, "V")
        self.set_and_confirm(f"SOUR{n}:VOLT {volts:.4f}", f"SOUR{n}:VOLT?", volts, 0.0005)

    def enable(self, channel: int, on: bool) -> None:
        n = self._cell(channel)
        self.confirm_bool(f"OUTP{n} {int(bool(on))}", f"OUTP{n}?", bool(on))

    def set_current_limits(self, channel: int, source_a: float, sink_a: float) -> None:
        n = self._cell(channel)
        source_a = self.check_number("source limit", source_a, 0.0, MAX_LIMIT_A, "A")
        sink_a = self.check_number("sink limit", sink_a, 0.0, MAX_LIMIT_A, "A")
        self.set_and_confirm(f"SOUR{n}:CURR:SRC {source_a:.4f}", f"SOUR{n}:CURR:SRC?",
                             source_a, 0.0005)
        command = f"SOUR{n}:CURR:SNK {sink_a:.4f}"
        self.write(command)
        self.check_errors(command)
        back = abs(self.query_float(f"SOUR{n}:CURR:SNK?"))
        if abs(back - sink_a) > 0.0005:
            raise self.refuse(f"set {command!r} but it reads back {back:g}")

    def measure_cell_voltage_v(self, channel: int) -> float:
        return self.query_float(f"MEAS{self._cell(channel)}:VOLT?")

    def enabled(self, channel: int) -> bool:
        return self.query_bool(f"OUTP{self._cell(channel)}?")
