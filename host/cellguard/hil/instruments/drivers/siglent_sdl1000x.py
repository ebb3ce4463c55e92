"""Siglent SDL1000X electronic load (SDL1020X, SDL1020X-E, SDL1030X, SDL1030X-E): a sink.

Dialect: the SDL1000X Programming Guide, SCPI over USBTMC or LAN (raw socket, port
5025), LF-terminated.
"""

from __future__ import annotations

from typing import ClassVar

from ._checks import ScpiLoad


class SiglentSdl1000x(ScpiLoad):
    """A Siglent SDL1000X load discharging the pack in constant current.

    The backstop is the load's breakover voltage Von, ``:SOUR:VOLT:LEV:ON``, with Von
    Latch off (``:SOUR:VOLT:LATC:STAT 0``): unlatched, the load sinks only while the
    voltage at its input is above Von, so it stops drawing from the pack at ``min_v``
    by itself (and resumes if the pack recovers above it, as a cut-off should not
    surprise: the rig still turns the input off). ``max_v`` means nothing to a sink;
    it is checked against the model's 150 V and kept for the record.

    Current: ``:SOUR:FUNC CURR``, ``:SOUR:CURR:LEV:IMM``, ``:SOUR:INP:STAT``. The
    current range is left as the instrument has it (the high range, 30 A, is the
    power-on default). Measured: ``:MEAS:VOLT?``, ``:MEAS:CURR?`` (the sunk current,
    positive: returned negative, into-the-pack convention).
    """

    MODEL: ClassVar[str] = r"Siglent.*,SDL10[23]0X(-E)?,"
    DESCRIPTION: ClassVar[str] = "Siglent SDL1000X load"
    MAX_CURRENT_A: ClassVar[float] = 30.0
    MAX_VOLTAGE_V: ClassVar[float] = 150.0
    CURRENT_MODE: ClassVar[tuple[str, str, str] | None] = (
        ":SOUR:FUNC CURR", ":SOUR:FUNC?", r"CURR(ENT)?")
    CURRENT_COMMAND: ClassVar[str] = ":SOUR:CURR:LEV:IMM {amps:.4f}"
    CURRENT_QUERY: ClassVar[str] = ":SOUR:CURR:LEV:IMM?"

    def set_voltage_window(self, min_v: float, max_v: float) -> None:
        low, high = self.check_window(min_v, max_v)
        self.set_and_confirm(f":SOUR:VOLT:LEV:ON {low:.3f}", ":SOUR:VOLT:LEV:ON?", low, 0.001)
        self.confirm_bool(":SOUR:VOLT:LATC:STAT 0", ":SOUR:VOLT:LATC:STAT?", False)
        self.window = (low, high)

