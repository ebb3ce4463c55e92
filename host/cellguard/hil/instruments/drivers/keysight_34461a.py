"""Keysight Truevolt DMMs (34460A, 34461A, 34465A, 34470A): a DC voltmeter.

Dialect: the Truevolt Series Operating and Service Guide's SCPI, USBTMC or LAN
(raw socket, port 5025), LF-terminated.
"""

from __future__ import annotations

from typing import ClassVar

from ..roles import Dmm
from ._checks import Checks


class Keysight34461a(Checks, Dmm):
    """``MEAS:VOLT:DC?``: one autoranged DC voltage reading (V), the error queue
    checked after it (an overload answers +9.9E+37, refused as not a reading)."""

    MODEL: ClassVar[str] = r"(Keysight|Agilent).*,344(60|61|65|70)A,"
    DESCRIPTION: ClassVar[str] = "Keysight 34461A DMM"
    TIMEOUT_MS: ClassVar[int] = 5000  # an autoranged reading at 10 PLC takes ~0.5 s

    def measure_dc_voltage_v(self) -> float:
        volts = self.query_float("MEAS:VOLT:DC?")
        self.check_errors("MEAS:VOLT:DC?")
        if abs(volts) >= 9.9e37:
            raise self.refuse("the DC voltage is beyond its range (overload)")
        return volts
