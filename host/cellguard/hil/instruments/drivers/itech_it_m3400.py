"""ITECH IT-M3400 bidirectional supply (60 V models: IT-M3412, IT-M3422, IT-M3432):
a source and a sink.

Dialect: the IT-M3400 Programming Guide, SCPI over USBTMC, LAN (raw socket, port
30000 or 5025 as configured) or RS-232, LF-terminated.
"""

from __future__ import annotations

from typing import ClassVar

from ._checks import BackstoppedSourceSink


class ItechItM3400(BackstoppedSourceSink):
    """An IT-M3400 in CC priority (``FUNC CURR``): it pushes a positive current into
    the pack and draws a negative one from it, ``CURR <A>`` signed.

    The backstop is the CC-priority voltage limits, ``VOLT:LIM <max_v>`` (the upper
    limit) and ``VOLT:LIM:LOW <min_v>`` (the lower): the instrument leaves constant
    current and holds the voltage at the limit, so a charge stops pushing at
    ``max_v`` and a discharge stops drawing at ``min_v``. (``CURR:LIM:POS`` and
    ``CURR:LIM:NEG`` are the current limits of CV priority, which the driver does not
    use.) Output ``OUTP 1|0``; measured ``MEAS:VOLT?`` and ``MEAS:CURR?``, signed as
    the role wants (positive out of the supply into the pack).

    The 60 V models program ±30 A (the IT-M3412's 200 W still limits the power);
    other IT-M3400 models differ and need their own limits.
    """

    MODEL: ClassVar[str] = r"ITECH.*,IT-?M34[123]2,"
    DESCRIPTION: ClassVar[str] = "ITECH IT-M3400 bidirectional supply"
    CAN_SOURCE: ClassVar[bool] = True
    CAN_SINK: ClassVar[bool] = True
    MAX_CURRENT_A: ClassVar[float] = 30.0
    MAX_VOLTAGE_V: ClassVar[float] = 60.0
    CURRENT_MODE: ClassVar[tuple[str, str, str] | None] = ("FUNC CURR", "FUNC?", r"CURR(ENT)?")
    CURRENT_COMMAND: ClassVar[str] = "CURR {amps:.4f}"
    CURRENT_QUERY: ClassVar[str] = "CURR?"
    OUTPUT_COMMAND: ClassVar[str] = "OUTP {state}"
    OUTPUT_QUERY: ClassVar[str] = "OUTP?"
    MEASURE_VOLTAGE: ClassVar[str] = "MEAS:VOLT?"
    MEASURE_CURRENT: ClassVar[str] = "MEAS:CURR?"

    def set_voltage_window(self, min_v: float, max_v: float) -> None:
        low, high = self.check_window(min_v, max_v)
        self._enter_current_mode()  # the limits below are CC priority's
        self.set_and_confirm(f"VOLT:LIM {high:.4f}", "VOLT:LIM?", high, 0.001)
        self.set_and_confirm(f"VOLT:LIM:LOW {low:.4f}", "VOLT:LIM:LOW?", low, 0.001)
        self.window = (low, high)

