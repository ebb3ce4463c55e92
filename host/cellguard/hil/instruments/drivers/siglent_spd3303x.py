"""Siglent SPD3303X / SPD3303X-E bench supply: a source (output CH1 or CH2).

Dialect: the SPD3303X Programming Guide (``CH1:CURR 1.000``, ``OUTP CH1,ON``,
``MEAS:VOLT? CH1``, ``SYST:STAT?``), USBTMC or LAN (raw socket, port 5025),
LF-terminated.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ..roles import InstrumentError
from ._checks import BackstoppedSourceSink

OUTPUT_BIT = {1: 4, 2: 5}
"""``SYST:STAT?`` (a hexadecimal word): the bit that says CH1's / CH2's output is on."""


class SiglentSpd3303x(BackstoppedSourceSink):
    """One output of a Siglent SPD3303X charging the pack.

    The backstop is the voltage setpoint ``CH<n>:VOLT <max_v>``: the output turns from
    constant current into constant voltage at ``max_v``, so a charge stops pushing
    there. The model has no over-voltage protection to add behind it, so the rig's
    own checks are the only second line. ``min_v`` means nothing to a source.

    Current: ``CH<n>:CURR`` and ``OUTP CH<n>,ON|OFF``; the output state is read from
    ``SYST:STAT?`` (the model has no ``OUTP?``). Measured ``MEAS:VOLT? CH<n>`` and
    ``MEAS:CURR? CH<n>``. Its error queue answers ``SYST:ERR?`` with a number and a
    text that need not be separated by a comma, so :meth:`errors` reads the number.
    """

    MODEL: ClassVar[str] = r"Siglent.*,SPD3303X(-E)?,"
    DESCRIPTION: ClassVar[str] = "Siglent SPD3303X supply"
    CAN_SOURCE: ClassVar[bool] = True
    MAX_CURRENT_A: ClassVar[float] = 3.2
    MAX_VOLTAGE_V: ClassVar[float] = 32.0
    CURRENT_COMMAND: ClassVar[str] = "CH{channel}:CURR {amps:.3f}"
    CURRENT_QUERY: ClassVar[str] = "CH{channel}:CURR?"
    MEASURE_VOLTAGE: ClassVar[str] = "MEAS:VOLT? CH{channel}"
    MEASURE_CURRENT: ClassVar[str] = "MEAS:CURR? CH{channel}"

    def __init__(self, resource: Any, name: str = "", *, channel: int = 1) -> None:
        super().__init__(resource, name)
        self.channel = self.check_index("output", channel, (1, 2))

    def errors(self) -> list[str]:
        found: list[str] = []
        for _ in range(32):
            answer = self.query("SYST:ERR?")
            number = re.match(r"\s*([+-]?\d+)", answer)
            if number is None:
                raise InstrumentError(f"{self.name}: 'SYST:ERR?' answered {answer!r}")
            if int(number.group(1)) == 0:
                return found
            found.append(answer)
        raise InstrumentError(f"{self.name}: its error queue does not empty: {found[-3:]}")

    def _words(self) -> dict[str, object]:
        return {"channel": self.channel}

    def output_on(self) -> bool:
        """From ``SYST:STAT?``: the model has no ``OUTP?``."""
        text = self.query("SYST:STAT?")
        try:
            word = int(text, 16)
        except ValueError:
            raise InstrumentError(f"{self.name}: 'SYST:STAT?' answered {text!r}, "
                                  "not a hexadecimal status word") from None
        return bool(word >> OUTPUT_BIT[self.channel] & 1)

    def _switch_output(self, on: bool) -> None:
        """``OUTP CH<n>,ON|OFF``, confirmed by the status word."""
        command = f"OUTP CH{self.channel},{'ON' if on else 'OFF'}"
        self.write(command)
        self.check_errors(command)
        if self.output_on() != on:
            raise self.refuse(f"sent {command!r} but 'SYST:STAT?' says the output is "
                              f"{'off' if on else 'on'}")

    def set_voltage_window(self, min_v: float, max_v: float) -> None:
        low, high = self.check_window(min_v, max_v)
        ch = f"CH{self.channel}"
        self.set_and_confirm(f"{ch}:VOLT {high:.3f}", f"{ch}:VOLT?", high, 0.001)
        self.window = (low, high)

