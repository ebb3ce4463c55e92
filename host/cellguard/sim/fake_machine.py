"""A small stand-in for MicroPython's ``machine`` module, for running the board
HAL (``cellguard_fw.hal_adc_mux``) under CPython: ``ADC`` (``read_u16``,
``read_uv``), ``Pin`` (levels kept on the bench) and ``unique_id``.

:func:`install` puts this module in ``sys.modules["machine"]`` and wires it to
a bench (``cellguard.sim.adc.AdcBench``, or anything with ``levels``,
``read_u16(pin)`` and ``read_uv(pin)``): :class:`AdcBench` wires a board's
pins (mux select, ADC inputs, outputs) to cell voltages, a current and
temperatures through the sensor model and an ADC model. It is deliberately small: the ADC and
GPIO a mux board uses, nothing else (no I2C, WDT, Timer); it adds
``time.sleep_us`` (a no-op: the bench's time does not pass) where CPython lacks it.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol

from .adc import REF_V, AdcModel
from .sensors import SensorModel


class Bench(Protocol):
    levels: dict[int, int]

    def read_u16(self, pin: int) -> int: ...

    def read_uv(self, pin: int) -> int: ...


_bench: Bench | None = None


def install(bench: Bench) -> None:
    """Make ``import machine`` find this module, wired to ``bench``."""
    global _bench
    _bench = bench
    sys.modules["machine"] = sys.modules[__name__]
    if not hasattr(time, "sleep_us"):  # MicroPython's; the bench's time does not pass
        time.sleep_us = lambda us: None  # type: ignore[attr-defined]


def _wired() -> Bench:
    if _bench is None:
        raise RuntimeError("fake machine: no bench installed (fake_machine.install)")
    return _bench


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id: int, mode: int = -1, pull: int = -1, value: int | None = None,
                 **_: Any) -> None:
        self.id = id
        self.mode = mode
        if value is not None:
            _wired().levels[id] = 1 if value else 0
        elif pull == Pin.PULL_UP:
            _wired().levels.setdefault(id, 1)

    def value(self, v: int | None = None) -> int | None:
        levels = _wired().levels
        if v is None:
            return levels.get(self.id, 0)
        levels[self.id] = 1 if v else 0
        return None

    def __call__(self, v: int | None = None) -> int | None:
        return self.value(v)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    def __init__(self, pin: Pin | int, atten: int | None = None) -> None:
        self.pin = pin.id if isinstance(pin, Pin) else pin
        self.atten = atten

    def read_u16(self) -> int:
        return _wired().read_u16(self.pin)

    def read_uv(self) -> int:
        return _wired().read_uv(self.pin)


def unique_id() -> bytes:
    return b"\xfa\x4e\x00\x00\x00\x00\x00\x01"


class AdcBench:
    """A board's analog side for the fake ``machine``: which pin carries what.

    ``cells_v``, ``current_a`` and ``temps_c`` are set by the caller (a test, a
    plant); the mux select pins pick the cell on ``pins.cell_adc``. The front
    end's own errors per cell channel (``cell_gain_errors``, ``cell_offsets_v``,
    at the cell) come before the ADC; ``adc`` models the converter.
    """

    def __init__(self, board: dict[str, Any], adc: AdcModel,
                 cell_gain_errors: list[float] | None = None,
                 cell_offsets_v: list[float] | None = None) -> None:
        self.board = board
        self.adc = adc
        self.sensors = SensorModel(board, noise_lsb=0.0)
        n = board["cells"]
        self.cells_v = [3.7] * n
        self.current_a = 0.0
        self.temps_c = [25.0] * board["temp_sensors"]
        self.pack_v: float | None = None
        self.cell_gain_errors = list(cell_gain_errors or [0.0] * n)
        self.cell_offsets_v = list(cell_offsets_v or [0.0] * n)
        self.levels: dict[int, int] = {}  # GPIO levels the firmware drives
        self.reads = 0

    def channel(self) -> int:
        """The mux channel the select pins pick now."""
        select = self.board["pins"]["mux_select"]
        return sum(self.levels.get(p, 0) << bit for bit, p in enumerate(select))

    def pin_v(self, pin: int) -> float:
        """The voltage on ADC pin ``pin`` now."""
        pins = self.board["pins"]
        s = self.sensors
        if pin == pins["cell_adc"]:
            k = self.channel()
            if k >= len(self.cells_v):
                return 0.0  # an unused mux input, grounded
            v = self.cells_v[k] * (1.0 + self.cell_gain_errors[k]) + self.cell_offsets_v[k]
            return max(v, 0.0) / s.cell_fs_v * REF_V
        if pin == pins["current_adc"]:
            span = s.cur_max - s.cur_zero
            return (s.cur_zero + self.current_a / s.cur_fs_a * span) / s.cur_max * REF_V
        if pin in pins["temp_adcs"]:
            t = self.temps_c[pins["temp_adcs"].index(pin)]
            return s.temp_code(t) / s.temp_max * REF_V
        if pin == pins.get("pack_adc"):
            pack = sum(self.cells_v) if self.pack_v is None else self.pack_v
            return pack / s.pack_fs_v * REF_V
        raise ValueError(f"pin {pin} is no ADC input of board {self.board['name']!r}")

    def read_u16(self, pin: int) -> int:
        self.reads += 1
        return self.adc.read_u16(self.pin_v(pin))

    def read_uv(self, pin: int) -> int:
        self.reads += 1
        return self.adc.read_uv(self.pin_v(pin))
