"""What every driver does the same way: argument checks before anything is sent,
and settings confirmed by reading them back (a state, a mnemonic, a number)."""

from __future__ import annotations

import math
import re
from typing import ClassVar

from ..roles import InstrumentError, ScpiInstrument, SourceSink

_TRUE = ("1", "ON", "+1")
_FALSE = ("0", "OFF", "+0")


def parse_bool(name: str, query: str, text: str) -> bool:
    """An instrument's boolean answer ("1"/"0", "ON"/"OFF"): InstrumentError otherwise."""
    word = text.strip().upper()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise InstrumentError(f"{name}: {query!r} answered {text!r}, not a state (0/1, ON/OFF)")


class Checks(ScpiInstrument):
    """Helpers shared by the drivers (mixed in before the role)."""

    def refuse(self, what: str) -> InstrumentError:
        return InstrumentError(f"{self.name}: {what}")

    def check_number(self, what: str, value: float, low: float, high: float,
                     unit: str) -> float:
        """``value`` finite and within ``low``..``high``, else InstrumentError (nothing sent)."""
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise self.refuse(f"{what} {value!r} is not a number")
        if not low <= value <= high:
            raise self.refuse(f"{what} {value:g} {unit} is outside the model's "
                              f"{low:g}..{high:g} {unit}")
        return float(value)

    def check_index(self, what: str, index: int, valid: range | tuple[int, ...]) -> int:
        if isinstance(index, bool) or not isinstance(index, int) or index not in valid:
            shown = (f"{valid.start}..{valid.stop - 1}" if isinstance(valid, range)
                     else ", ".join(str(v) for v in valid))
            raise self.refuse(f"{what} {index!r} does not exist (the model has {shown})")
        return index

    def query_bool(self, query: str) -> bool:
        return parse_bool(self.name, query, self.query(query))

    def confirm_bool(self, command: str, query: str, expected: bool) -> None:
        """Send ``command``, check the error queue, read the state back."""
        self.write(command)
        self.check_errors(command)
        state = self.query_bool(query)
        if state != expected:
            raise self.refuse(f"sent {command!r} but {query!r} reads back "
                              f"{'on' if state else 'off'}")

    def confirm_text(self, command: str, query: str, accepted: str) -> str:
        """Send ``command``, check the error queue, read a mnemonic back: it must match
        the regular expression ``accepted`` (case-insensitive)."""
        self.write(command)
        self.check_errors(command)
        answer = self.query(query).strip().strip('"')
        if not re.fullmatch(accepted, answer, re.IGNORECASE):
            raise self.refuse(f"sent {command!r} but {query!r} reads back {answer!r}")
        return answer


class BackstoppedSourceSink(Checks, SourceSink):
    """A source/sink that refuses to drive a current before its backstop (the voltage
    window on the instrument itself) has been set and confirmed."""

    MAX_VOLTAGE_V: ClassVar[float] = math.inf
    """The highest voltage the model programs (window limits beyond it are refused)."""

    def __init__(self, resource: object, name: str = "") -> None:
        super().__init__(resource, name)
        self.window: tuple[float, float] | None = None

    def check_window(self, min_v: float, max_v: float) -> tuple[float, float]:
        low = self.check_number("minimum voltage", min_v, 0.0, self.MAX_VOLTAGE_V, "V")
        high = self.check_number("maximum voltage", max_v, 0.0, self.MAX_VOLTAGE_V, "V")
        if low >= high:
            raise self.refuse(f"voltage window {low:g}..{high:g} V is empty")
        return low, high

    def check_current(self, amps: float) -> float:
        """``amps`` in a direction the model has and within ``MAX_CURRENT_A``; a nonzero
        current only once the window is set. Nothing is sent."""
        amps = self.check_number("current", amps, -math.inf, math.inf, "A")
        if amps > 0 and not self.CAN_SOURCE:
            raise self.refuse(f"cannot push {amps:g} A into the pack: it only sinks")
        if amps < 0 and not self.CAN_SINK:
            raise self.refuse(f"cannot draw {-amps:g} A from the pack: it only sources")
        if abs(amps) > self.MAX_CURRENT_A:
            raise self.refuse(f"current {amps:g} A is beyond the model's "
                              f"{self.MAX_CURRENT_A:g} A")
        if amps != 0 and self.window is None:
            raise self.refuse("no voltage window set: call set_voltage_window first "
                              "(the instrument's own backstop)")
        return amps
