# The `machine` module of the virtual dev board (MicroPython code, run on the board).
#
# Faithful to the rp2 and esp32 ports' API as their stubs declare it (a host test
# compares names and parameters). The state a chip keeps outside the interpreter —
# pad levels and modes, the watchdog, the reset cause — lives in the board process
# (vboard.mjs, reached through `_vboard`), so it survives a soft reset as on silicon
# and falls back to the reset default on a hard or watchdog reset.
import time as _time

import _vboard

_MCU = _vboard.mcu()

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def reset():
    _vboard.reset()
    while True:  # the board's clock acts on the reset the first time it is read
        _time.ticks_ms()


def soft_reset():
    _vboard.soft_reset()
    while True:
        _time.ticks_ms()


def reset_cause():
    return _vboard.reset_cause()


def unique_id():
    return bytes.fromhex(_vboard.unique_id())


def freq(hz=None):
    if hz is None:
        return _vboard.freq(0)
    if hz <= 0:
        raise ValueError("freq")
    _vboard.freq(hz)


def idle():
    _vboard.idle()


def disable_irq():
    return 0


def enable_irq(state):
    pass


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    ALT = 3
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        if isinstance(id, Pin):
            id = id._id
        if not isinstance(id, int) or not 0 <= id < _vboard.pin_count():
            raise ValueError("invalid pin")
        self._id = id
        self.init(mode, pull, value=value, drive=drive, alt=alt)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        if value is not None:
            _vboard.pin_set(self._id, 1 if value else 0)
        if mode != -1:
            if mode not in (0, 1, 2, 3):
                raise ValueError("invalid pin mode")
            _vboard.pin_mode(self._id, mode)
        if pull != -1:
            if pull is not None and pull not in (1, 2):
                raise ValueError("invalid pull")
            _vboard.pin_pull(self._id, 0 if pull is None else pull)
        if drive is not None:
            _vboard.pin_drive(self._id, drive)

    def value(self, x=None):
        if x is None:
            return _vboard.pin_get(self._id)
        _vboard.pin_set(self._id, 1 if x else 0)

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        _vboard.pin_set(self._id, 1)

    def off(self):
        _vboard.pin_set(self._id, 0)

    def high(self):
        _vboard.pin_set(self._id, 1)

    def low(self):
        _vboard.pin_set(self._id, 0)

    def toggle(self):
        _vboard.pin_set(self._id, 1 - _vboard.pin_latch(self._id))

    def mode(self, mode=None):
        if mode is None:
            return _vboard.pin_mode(self._id, -1)
        self.init(mode)

    def pull(self, pull=-1):
        if pull == -1:
            p = _vboard.pin_pull(self._id, -1)
            return p if p else None
        self.init(-1, pull)

    def drive(self, drive=None):
        if drive is None:
            return _vboard.pin_drive(self._id, -1)
        _vboard.pin_drive(self._id, drive)

    def irq(self, handler=None, trigger=12, *, priority=1, wake=None, hard=False):
        # Stored, not fired yet: no pad of the virtual board changes level by itself.
        self._irq = (handler, trigger)
        return None

    def __repr__(self):
        return ("Pin(GPIO{})" if _MCU == "rp2040" else "Pin({})").format(self._id)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12
    CORE_TEMP = 4

    def __init__(self, id, *, sample_ns=None, atten=None):
        if isinstance(id, Pin):
            id = id._id
        if _MCU == "rp2040" and 0 <= id <= 4:  # channel numbers 0-4 name GPIO26-29 and the sensor
            id = 26 + id if id < 4 else -1
        if not _vboard.adc_ok(id):
            raise ValueError("invalid pin")
        self._pin = id
        self._atten = 0 if atten is None else atten
        self._bits = 12

    def init(self, *, sample_ns=None, atten=None):
        if atten is not None:
            self.atten(atten)

    def atten(self, atten):
        if atten not in (0, 1, 2, 3):
            raise ValueError("atten")
        self._atten = atten

    def width(self, bits):
        if bits not in (9, 10, 11, 12):
            raise ValueError("width")
        self._bits = bits

    def read_u16(self):
        return _vboard.adc_u16(self._pin, self._atten)

    def read(self):
        return self.read_u16() >> (16 - self._bits)

    def read_uv(self):
        return _vboard.adc_uv(self._pin, self._atten)

    def block(self):
        return None

    def deinit(self, *args, **kwargs):
        pass


class WDT:
    def __init__(self, *, id=0, timeout=5000):
        if id != 0:
            raise ValueError("id")
        _vboard.wdt_start(timeout)

    def feed(self):
        _vboard.wdt_feed()


_timer_keys = [0]


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, *, mode=1, period=-1, callback=None, hard=False, freq=None,
                 tick_hz=1000):
        if _MCU == "esp32" and id not in (0, 1, 2, 3):
            raise ValueError("invalid Timer number")
        _timer_keys[0] += 1
        self._key = _timer_keys[0]
        self._id = id
        if period != -1 or freq is not None or callback is not None:
            self.init(mode=mode, period=period, callback=callback, hard=hard, freq=freq,
                      tick_hz=tick_hz)

    def init(self, *, mode=1, period=-1, callback=None, hard=False, freq=None, tick_hz=1000):
        if mode not in (0, 1):
            raise ValueError("mode")
        if freq is not None:
            period_ms = 1000 / freq
        elif period >= 0:
            period_ms = period * 1000 / tick_hz
        else:
            period_ms = 0xFFFFFFFF
        _vboard.timer_stop(self._key)
        if callback is not None:
            _vboard.timer_start(self._key, mode, period_ms, lambda: callback(self))

    def deinit(self):
        _vboard.timer_stop(self._key)

    def value(self, *args, **kwargs):
        return 0
