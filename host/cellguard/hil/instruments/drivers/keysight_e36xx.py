"""Keysight E36300-series bench supplies (E36311A, E36312A, E36313A): a source.

Dialect: the E36300 Series Programming Guide, each command addressed to one output
by a channel list (``CURR 1.0000,(@1)``, ``MEAS:VOLT? (@1)``), not the older
E3631A's ``INST:SEL`` dialect. USBTMC, LAN (raw socket, port 5025) or GPIB,
LF-terminated.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ._checks import BackstoppedSourceSink

RATINGS: dict[str, dict[int, tuple[float, float]]] = {
    "E36311A": {1: (6.0, 5.0), 2: (25.0, 1.0)},  # its output 3 is the -25 V one
    "E36312A": {1: (6.0, 5.0), 2: (25.0, 1.0), 3: (25.0, 1.0)},
    "E36313A": {1: (6.0, 10.0), 2: (25.0, 2.0), 3: (25.0, 2.0)},
}
"""Model -> output -> (rated volts, rated amps): what the driver lets a rig program."""

OVP_MARGIN_V = 0.2
"""The over-voltage protection sits this far above ``max_v``: it trips the output off
if the constant-voltage limit ever fails to hold the pack."""


class KeysightE36xx(BackstoppedSourceSink):
    """One output of a Keysight E36300-series supply charging the pack.

    The backstop is twofold, both on the instrument: the voltage setpoint
    (``VOLT <max_v>,(@n)``), which turns the output from constant current into
    constant voltage at ``max_v`` so a charge stops pushing there; and the
    over-voltage protection (``VOLT:PROT <max_v + 0.2 V>,(@n)``), which switches the
    output off should the pack be driven above it anyway. ``min_v`` means nothing to
    a source (it cannot draw from the pack).

    Current: ``CURR <A>,(@n)`` and ``OUTP 1,(@n)``; measured ``MEAS:VOLT? (@n)`` and
    ``MEAS:CURR? (@n)``. The output (1 unless the rig says) and its ratings follow
    the model named by ``*IDN?`` (``RATINGS``).
    """

    MODEL: ClassVar[str] = r"(Keysight|Agilent).*,E3631[123]A,"
    DESCRIPTION: ClassVar[str] = "Keysight E36300 supply"
    CAN_SOURCE: ClassVar[bool] = True
    MAX_CURRENT_A: ClassVar[float] = 5.0
    MAX_VOLTAGE_V: ClassVar[float] = 6.0
    CURRENT_COMMAND: ClassVar[str] = "CURR {amps:.4f},(@{channel})"
    CURRENT_QUERY: ClassVar[str] = "CURR? (@{channel})"
    OUTPUT_COMMAND: ClassVar[str] = "OUTP {state},(@{channel})"
    OUTPUT_QUERY: ClassVar[str] = "OUTP? (@{channel})"
    MEASURE_VOLTAGE: ClassVar[str] = "MEAS:VOLT? (@{channel})"
    MEASURE_CURRENT: ClassVar[str] = "MEAS:CURR? (@{channel})"

    def __init__(self, resource: Any, name: str = "", *, channel: int = 1) -> None:
        super().__init__(resource, name)
        self.channel = self.check_index("output", channel, (1, 2, 3))
        self._rate("E36312A")

    def _rate(self, model: str) -> None:
        ratings = RATINGS[model]
        if self.channel not in ratings:
            raise self.refuse(f"the {model} has no positive output {self.channel}")
        self.MAX_VOLTAGE_V, self.MAX_CURRENT_A = ratings[self.channel]

    def identify(self) -> str:
        idn = super().identify()
        found = re.search(r"E3631[123]A", idn, re.IGNORECASE)
        if found:
            self._rate(found.group(0).upper())
        return idn

    def _words(self) -> dict[str, object]:
        return {"channel": self.channel}

    @property
    def _at(self) -> str:
        return f"(@{self.channel})"

    def set_voltage_window(self, min_v: float, max_v: float) -> None:
        low, high = self.check_window(min_v, max_v)
        ovp = high + OVP_MARGIN_V
        self.set_and_confirm(f"VOLT {high:.4f},{self._at}", f"VOLT? {self._at}", high, 0.001)
        self.set_and_confirm(f"VOLT:PROT {ovp:.4f},{self._at}", f"VOLT:PROT? {self._at}",
                             ovp, 0.001)
        self.window = (low, high)

