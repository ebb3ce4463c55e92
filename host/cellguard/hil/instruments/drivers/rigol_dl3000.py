"""Rigol DL3000 electronic load (DL3021, DL3021A, DL3031, DL3031A): a sink.

Dialect: the DL3000 Programming Guide (2019 edition, the one with the battery-test
commands), SCPI over USBTMC, LAN (raw socket, port 5555) or RS-232, LF-terminated.
"""

from __future__ import annotations

from typing import ClassVar

from ._checks import ScpiLoad

LOW_RANGE_A = 4.0
"""The DL3021's low current range (its high range is 40 A)."""


class RigolDl3000(ScpiLoad):
    """A Rigol DL3000 load discharging the pack in its battery-test mode.

    The backstop is the battery test's stop voltage, ``:SOUR:BATT:VST`` with its stop
    condition enabled (``:SOUR:BATT:VEN 1``): the load itself ends the discharge and
    turns its input off when the pack falls to ``min_v``, whatever the rig does.
    The plain CC mode's ``:SOUR:CURR:VON`` is not a backstop on this model: with Von
    Latch on (the default) the load keeps sinking below Von, and the latch has no
    documented SCPI command. The capacity and time stop conditions are disabled
    (``:SOUR:BATT:CEN 0``, ``:SOUR:BATT:TEN 0``) so only the voltage ends the test.

    ``max_v`` means nothing to a sink (it cannot raise the pack's voltage); it is
    checked against the model's 150 V and kept for the record.

    Current: ``:SOUR:FUNC:MODE BATT``, ``:SOUR:BATT:RANG`` (4 A or 40 A, switched
    with the input off), ``:SOUR:BATT:LEV:IMM`` and ``:SOUR:INP:STAT``. Measured:
    ``:MEAS:VOLT?`` and ``:MEAS:CURR?`` (the load reports the current it sinks as
    positive: returned negative, into-the-pack convention).
    """

    MODEL: ClassVar[str] = r"RIGOL.*,DL30[23]1A?,"
    DESCRIPTION: ClassVar[str] = "Rigol DL3000 load"
    MAX_CURRENT_A: ClassVar[float] = 40.0
    MAX_VOLTAGE_V: ClassVar[float] = 150.0
    CURRENT_MODE: ClassVar[tuple[str, str, str] | None] = (
        ":SOUR:FUNC:MODE BATT", ":SOUR:FUNC:MODE?", r"BATT(ery)?")
    CURRENT_COMMAND: ClassVar[str] = ":SOUR:BATT:LEV:IMM {amps:.4f}"
    CURRENT_QUERY: ClassVar[str] = ":SOUR:BATT:LEV:IMM?"

    def set_voltage_window(self, min_v: float, max_v: float) -> None:
        low, high = self.check_window(min_v, max_v)
        self.set_and_confirm(f":SOUR:BATT:VST {low:.3f}", ":SOUR:BATT:VST?", low, 0.001)
        self.confirm_bool(":SOUR:BATT:VEN 1", ":SOUR:BATT:VEN?", True)
        self.confirm_bool(":SOUR:BATT:CEN 0", ":SOUR:BATT:CEN?", False)
        self.confirm_bool(":SOUR:BATT:TEN 0", ":SOUR:BATT:TEN?", False)
        self.window = (low, high)

    def _prepare_current(self, amps: float) -> None:
        """Battery-test mode, then the range that holds the sunk current: the low range
        (finer) up to 4 A. The range switches only with the input off."""
        super()._prepare_current(amps)
        wanted = LOW_RANGE_A if -amps <= LOW_RANGE_A else self.MAX_CURRENT_A
        if abs(self.query_float(":SOUR:BATT:RANG?") - wanted) > 1e-6:
            if self.output_on():
                self._switch_output(False)
            self.set_and_confirm(f":SOUR:BATT:RANG {wanted:.3f}", ":SOUR:BATT:RANG?",
                                 wanted, 1e-6)
