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
    window on the instrument itself) has been set and confirmed.

    The role's current and output methods are written once here, because every model
    must keep the same order for the pack's sake: :meth:`set_current` programs the
    setpoint (read back) before the output goes on, and :meth:`off` confirms the
    output off before the setpoint goes to 0, so the output is never on with a
    setpoint nobody confirmed. A model gives its dialect as command templates
    (``CURRENT_COMMAND``, ``OUTPUT_COMMAND``, ...; fields ``{amps}``, ``{state}`` and
    what :meth:`_words` adds) and overrides a hook only where its instrument differs
    (a range to switch, an output state read from a status word, a strict read-back).
    """

    MAX_VOLTAGE_V: ClassVar[float] = math.inf
    """The highest voltage the model programs (window limits beyond it are refused)."""
    CURRENT_SIGN: ClassVar[float] = 1.0
    """The model's current against the role's (positive into the pack): -1 for a load,
    which programs and reports the current it sinks as positive."""
    CURRENT_MODE: ClassVar[tuple[str, str, str] | None] = None
    """(command, query, accepted answer) putting the model in constant current before
    each nonzero setpoint, confirmed with :meth:`confirm_text`; None: it has no modes."""
    CURRENT_COMMAND: ClassVar[str] = ""
    """The current setpoint, ``{amps}`` in the model's sign (``CURR {amps:.4f}``)."""
    CURRENT_QUERY: ClassVar[str] = ""
    """Its read-back (``CURR?``)."""
    OUTPUT_COMMAND: ClassVar[str] = ""
    """The output switch, ``{state}`` 1 or 0 (``OUTP {state}``)."""
    OUTPUT_QUERY: ClassVar[str] = ""
    """The output state, answered 1/0 or ON/OFF (``OUTP?``)."""
    MEASURE_VOLTAGE: ClassVar[str] = ""
    """The query of the voltage at the terminals (``MEAS:VOLT?``)."""
    MEASURE_CURRENT: ClassVar[str] = ""
    """The query of the current, in the model's sign (``MEAS:CURR?``)."""

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

    # -- the role, once for every model ---------------------------------------------------
    def set_current(self, amps: float) -> None:
        amps = self.check_current(amps)
        if amps == 0:
            self.off()
            return
        self._prepare_current(amps)
        self._program_current(amps)
        self._switch_output(True)

    def off(self) -> None:
        self._switch_output(False)
        self._program_current(0.0)

    def output_on(self) -> bool:
        return self.query_bool(self._fill(self.OUTPUT_QUERY))

    def measure_voltage_v(self) -> float:
        return self.query_float(self._fill(self.MEASURE_VOLTAGE))

    def measure_current_a(self) -> float:
        return self.CURRENT_SIGN * self.query_float(self._fill(self.MEASURE_CURRENT))

    # -- the hooks a model overrides where its instrument differs ---------------------------
    def _words(self) -> dict[str, object]:
        """Fields the model's templates use beyond ``amps`` and ``state`` (an output's
        channel): none by default."""
        return {}

    def _fill(self, template: str, **values: object) -> str:
        return template.format(**self._words(), **values)

    def _enter_current_mode(self) -> None:
        """``CURRENT_MODE``, where the model has one."""
        if self.CURRENT_MODE is not None:
            self.confirm_text(*self.CURRENT_MODE)

    def _prepare_current(self, amps: float) -> None:
        """What the model needs before a nonzero setpoint ``amps`` (role's sign): its
        constant-current mode; a model with ranges also picks one here."""
        self._enter_current_mode()

    def _program_current(self, amps: float) -> None:
        """The setpoint ``amps`` (role's sign), read back within 1 mA. Zero is sent as
        0, never as a negative zero (``-0.0000``), whatever the model's sign."""
        setpoint = self.CURRENT_SIGN * amps if amps else 0.0
        self.set_and_confirm(self._fill(self.CURRENT_COMMAND, amps=setpoint),
                             self._fill(self.CURRENT_QUERY), setpoint, 0.001)

    def _switch_output(self, on: bool) -> None:
        """The output on or off, read back."""
        self.confirm_bool(self._fill(self.OUTPUT_COMMAND, state=int(on)),
                          self._fill(self.OUTPUT_QUERY), on)


class ScpiLoad(BackstoppedSourceSink):
    """An electronic load speaking the SCPI loads share (Rigol's and Siglent's alike): it
    only sinks, programs and reports the current it sinks as positive, switches its
    input with ``:SOUR:INP:STAT`` and measures with ``:MEAS:VOLT?``/``:MEAS:CURR?``.
    A model adds its mode, its setpoint command and its backstop."""

    CAN_SINK: ClassVar[bool] = True
    CURRENT_SIGN: ClassVar[float] = -1.0
    OUTPUT_COMMAND: ClassVar[str] = ":SOUR:INP:STAT {state}"
    OUTPUT_QUERY: ClassVar[str] = ":SOUR:INP:STAT?"
    MEASURE_VOLTAGE: ClassVar[str] = ":MEAS:VOLT?"
    MEASURE_CURRENT: ClassVar[str] = ":MEAS:CURR?"
