"""A small stand-in for MicroPython's ``machine`` module, for running the board
HAL (``cellguard_fw.hal_adc_mux``) under CPython: ``ADC`` (``read_u16``,
``read_uv``), ``Pin`` (levels kept on the bench) and ``unique_id``.

:func:`install` puts this module in ``sys.modules["machine"]`` and wires it to
a bench (``cellguard.sim.adc.AdcBench``, or anything with ``levels``,
``read_u16(pin)`` and ``read_uv(pin)``). It is deliberately small: the ADC and
GPIO a mux board uses, nothing else (no I2C, WDT, Timer); it adds
``time.sleep_us`` (a no-op: the bench's time does not pass) where CPython lacks it.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol


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
