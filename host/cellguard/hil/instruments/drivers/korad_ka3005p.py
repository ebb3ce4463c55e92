"""Korad KA3005P bench supply (also sold as Tenma 72-2540, RND 320-KA3005P): a source.

Dialect: Korad's KA3000 serial protocol, not SCPI: 9600 baud 8N1 over the USB
virtual serial port, commands and answers with no termination at all
(``ISET1:1.000``, ``VSET1:04.20``, ``OUT1``, ``ISET1?`` -> ``1.000``), and no error
queue.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import Any, ClassVar

from ..roles import InstrumentError
from ._checks import BackstoppedSourceSink

ANSWERS: dict[str, tuple[int, str]] = {
    "ISET1?": (5, r"\d\.\d{3}"),
    "IOUT1?": (5, r"\d\.\d{3}"),
    "VSET1?": (5, r"\d\d\.\d\d"),
    "VOUT1?": (5, r"\d\d\.\d\d"),
    "STATUS?": (1, r"(?s:.)"),
}
"""Query -> (bytes in its answer, what the answer looks like): an unterminated answer
is read by its known length, never by waiting for a timeout."""

STATUS_OUTPUT_BIT = 6
"""``STATUS?`` answers one byte; bit 6 is the output (1: on), bit 0 CH1's CC/CV."""


class KoradKa3005p(BackstoppedSourceSink):
    """A Korad KA3005P (31 V, 5.1 A; the driver stays within 30 V and 5 A) charging the
    pack.

    The backstop is the voltage setpoint ``VSET1:<max_v>``: the supply turns from
    constant current into constant voltage at ``max_v``. Its over-voltage protection
    (``OVP1``) trips at a level set only from the front panel, so the driver leaves
    it alone. ``min_v`` means nothing to a source.

    Without an error queue (``ERROR_QUERY = None``) the only confirmation is the
    read-back, made strict: the answer must have the exact length and format the
    protocol gives (``ISET1?`` ``d.ddd``, ``VSET1?`` ``dd.dd``) and equal what was
    sent to the last digit; the output state is bit 6 of ``STATUS?``.

    Pacing: the supply takes about 50 ms to act on a command and loses or merges
    commands sent closer together (it has no terminator to tell them apart), so the
    driver waits ``pause_s`` (0.05 s) after each command before sending the next.
    Before each query it discards whatever is pending in the input buffer (some
    firmware sends a stray byte after an answer), then reads exactly the answer's
    length. Only ``*IDN?``, whose length varies, is read until the line is idle
    (``IDN_IDLE_S``), once when the instrument is opened.
    """

    MODEL: ClassVar[str] = r"KORAD\s*KA3005P"
    DESCRIPTION: ClassVar[str] = "Korad KA3005P supply"
    READ_TERMINATION: ClassVar[str | None] = None
    WRITE_TERMINATION: ClassVar[str] = ""
    ERROR_QUERY: ClassVar[str | None] = None
    SERIAL: ClassVar[dict[str, Any]] = {"baud_rate": 9600, "data_bits": 8,
                                        "parity": "none", "stop_bits": "one"}
    CAN_SOURCE: ClassVar[bool] = True
    MAX_CURRENT_A: ClassVar[float] = 5.0
    MAX_VOLTAGE_V: ClassVar[float] = 30.0
    MEASURE_VOLTAGE: ClassVar[str] = "VOUT1?"
    MEASURE_CURRENT: ClassVar[str] = "IOUT1?"
    PAUSE_S: ClassVar[float] = 0.05
    IDN_IDLE_S: ClassVar[float] = 0.1

    def __init__(self, resource: Any, name: str = "") -> None:
        super().__init__(resource, name)
        self.pause_s = self.PAUSE_S
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], float] = time.monotonic
        self._last = -1e9

    # -- the wire: paced, unterminated, answers of known length -------------------------
    def _pace(self) -> None:
        wait = self._last + self.pause_s - self.clock()
        if wait > 0:
            self.sleep(wait)

    def _sent(self) -> None:
        self._last = self.clock()

    def write(self, command: str) -> None:
        self._pace()
        super().write(command)
        self._sent()

    def _discard_pending(self) -> None:
        from pyvisa import constants

        with contextlib.suppress(Exception):  # a transport without buffers to flush
            self.resource.flush(constants.BufferOperation.discard_read_buffer)

    def query(self, command: str) -> str:
        if command == "*IDN?":
            return self._query_idn()
        if command not in ANSWERS:
            raise InstrumentError(f"{self.name}: the driver does not know how long "
                                  f"the answer to {command!r} is")
        length, shape = ANSWERS[command]
        self._pace()
        self._discard_pending()
        try:
            self.resource.write(command)
            raw = bytes(self.resource.read_bytes(length))
        except Exception as exc:
            raise InstrumentError(f"{self.name}: no answer to {command!r}: {exc}") from exc
        finally:
            self._sent()
        text = raw.decode("latin-1")
        if not re.fullmatch(shape, text):
            raise InstrumentError(f"{self.name}: {command!r} answered {text!r}, not "
                                  f"the {length} characters the protocol gives")
        return text

    def _query_idn(self) -> str:
        self._pace()
        self._discard_pending()
        answer = bytearray()
        timeout = self.resource.timeout
        try:
            self.resource.write("*IDN?")
            answer += self.resource.read_bytes(1)  # the first byte: the usual timeout
            self.resource.timeout = round(self.IDN_IDLE_S * 1000)
            while len(answer) < 64:
                try:
                    answer += self.resource.read_bytes(1)
                except Exception:  # the line went idle: the answer is complete
                    break
        except Exception as exc:
            raise InstrumentError(f"{self.name}: no answer to '*IDN?': {exc}") from exc
        finally:
            self.resource.timeout = timeout
            self._sent()
        return answer.decode("latin-1").strip()

    def output_on(self) -> bool:
        """Bit 6 of ``STATUS?``: the model has no output query."""
        return bool(ord(self.query("STATUS?")) >> STATUS_OUTPUT_BIT & 1)

    def _switch_output(self, on: bool) -> None:
        """``OUT1``/``OUT0`` (no error queue), confirmed by the status byte."""
        command = "OUT1" if on else "OUT0"
        self.write(command)
        state = self.output_on()
        if state != on:
            raise self.refuse(f"sent {command!r} but STATUS? says the output is "
                              f"{'on' if state else 'off'}")

    def _confirm_exact(self, command: str, query: str, sent: str) -> None:
        """The only confirmation without an error queue: the read-back equals what was
        sent to the last digit."""
        self.write(command)
        answer = self.query(query)
        if float(answer) != float(sent):
            raise self.refuse(f"sent {command!r} but {query!r} reads back {answer!r}")

    # -- the role -------------------------------------------------------------------------
    def set_voltage_window(self, min_v: float, max_v: float) -> None:
        low, high = self.check_window(min_v, max_v)
        text = f"{high:05.2f}"
        self._confirm_exact(f"VSET1:{text}", "VSET1?", text)
        self.window = (low, high)

    def _program_current(self, amps: float) -> None:
        """``ISET1:d.ddd``, read back exactly."""
        text = f"{amps:.3f}"
        self._confirm_exact(f"ISET1:{text}", "ISET1?", text)
