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


# I2C: the chips on the board's buses live in the launcher (attach_i2c); a bus is named
# by its pins, so I2C and SoftI2C on the same pins reach the same chips. A transfer goes
# to the launcher as operations (S: START, W<hex>: bytes written, the first after a
# START being the address byte, R<n>: bytes read, P: STOP) and comes back with one
# result each (W: bytes ACKed or T for a stuck bus, R: the bytes). What the controller
# does with a NACK or a timeout is each port's: ports/rp2/machine_i2c.c (a NACK is EIO;
# a zero-length write goes through the soft I2C: ENODEV), ports/esp32/machine_i2c.c
# (any NACK is ENODEV; the memory read is one transfer with a repeated START),
# extmod/machine_i2c.c (SoftI2C: an address NACK is ENODEV, a data NACK ends the write).
_EIO = 5
_ENODEV = 19
_ETIMEDOUT = 110
# (scl, sda) of I2C0 and I2C1 by default: a Pico's (PICO_DEFAULT_I2C pins, then 7/6),
# a plain ESP32's (machine_i2c.h).
_I2C_PINS = ((5, 4), (7, 6)) if _MCU == "rp2040" else ((18, 19), (25, 26))


def _pin_id(pin):
    if isinstance(pin, Pin):
        return pin._id
    if not isinstance(pin, int) or not 0 <= pin < _vboard.pin_count():
        raise ValueError("invalid pin")
    return pin


def _addr_hex(addr, read):
    byte = ((addr & 0x7F) << 1) | (1 if read else 0)
    return f"{byte:02x}"


def _hex(data):
    return data.hex() if data else ""  # this runtime's b"".hex() is b"", not ""


def _fill(buf, data):
    for i in range(len(data)):
        buf[i] = data[i]


def _memaddr(memaddr, addrsize):
    if addrsize & 7 or addrsize > 32:
        raise ValueError("invalid addrsize")
    out = bytearray()
    i = addrsize - 8
    while i >= 0:
        out.append((memaddr >> i) & 0xFF)
        i -= 8
    return bytes(out)


class I2C:
    def __init__(self, id=0, *, scl=None, sda=None, freq=400000, timeout=50000):
        if not isinstance(id, int) or not 0 <= id <= 1:
            raise ValueError(f"I2C({id}) doesn't exist")
        scl = _I2C_PINS[id][0] if scl is None else _pin_id(scl)
        sda = _I2C_PINS[id][1] if sda is None else _pin_id(sda)
        if _MCU == "rp2040":  # SCL odd, SDA even; I2C0/I2C1 on alternate pairs of pins
            if not (scl & 1 == 1 and (scl & 2) >> 1 == id):
                raise ValueError("bad SCL pin")
            if not (sda & 1 == 0 and (sda & 2) >> 1 == id):
                raise ValueError("bad SDA pin")
        self._id = id
        self._setup(scl, sda, freq, timeout, False)

    def _setup(self, scl, sda, freq, timeout, soft):
        if freq <= 0:
            raise ValueError("freq")
        self._scl = scl
        self._sda = sda
        self._freq = freq
        self._timeout = timeout
        self._soft = soft
        self._bus = f"{scl},{sda}"
        for p in (scl, sda):
            if soft:  # released open-drain lines
                _vboard.pin_set(p, 1)
                _vboard.pin_mode(p, Pin.OPEN_DRAIN)
            else:  # the pads to the I2C block, with their pull-ups
                _vboard.pin_mode(p, Pin.ALT)
                _vboard.pin_pull(p, Pin.PULL_UP)

    def __repr__(self):
        return (f"I2C({self._id}, scl={self._scl}, sda={self._sda}, freq={self._freq}, "
                f"timeout={self._timeout})")

    def _do(self, ops):
        reply = _vboard.i2c(self._bus, self._freq, self._timeout, ",".join(ops))
        if reply == "H":
            raise OSError(_ETIMEDOUT)  # nothing answered: a stuck bus
        if reply == "E":
            raise OSError(_EIO)  # the launcher's model of the chip failed
        return reply.split(",")

    # -- one transfer, as each port makes it
    def _write(self, addr, data, stop):
        """Write `data` to `addr`: the count of data bytes ACKed, or OSError."""
        ops = ["S", "W" + _addr_hex(addr, False) + _hex(data)]
        if stop:
            ops.append("P")
        res = self._do(ops)
        if res[1] == "T":
            raise OSError(_ETIMEDOUT)
        acks = int(res[1])
        if acks == 0:  # the address: the controller has released the bus
            if self._soft or _MCU == "esp32" or not data:
                raise OSError(_ENODEV)  # rp2: a zero-length write goes by the soft I2C
            raise OSError(_EIO)
        if acks < 1 + len(data) and not self._soft:
            if not stop:
                self._do(["P"])  # the I2C block aborts with a STOP
            if _MCU == "esp32":
                raise OSError(_ENODEV)  # ESP-IDF: any NACK fails the command
        return len(data) if _MCU == "esp32" and not self._soft else acks - 1

    def _read(self, addr, n, stop, pre=None):
        """Read `n` bytes from `addr` (after writing `pre` to it and a repeated START,
        where the port does both in one transfer)."""
        ops = []
        if pre is not None:
            ops += ["S", "W" + _addr_hex(addr, False) + _hex(pre)]
        at = len(ops) + 1  # the read's address byte
        ops += ["S", "W" + _addr_hex(addr, True)]
        if n:
            ops.append(f"R{n}")
        if stop:
            ops.append("P")
        res = self._do(ops)
        if "T" in res:
            raise OSError(_ETIMEDOUT)
        if (pre is not None and res[1] != str(1 + len(pre))) or res[at] != "1":
            # a NACK: the controller has released the bus (the launcher skipped the rest)
            raise OSError(_ENODEV if self._soft or _MCU == "esp32" else _EIO)
        return bytes.fromhex(res[at + 1]) if n else b""

    # -- the machine.I2C methods
    def init(self, *, scl=None, sda=None, freq=400000):
        raise OSError("I2C operation not supported")  # the hardware I2C of both ports

    def deinit(self):
        pass

    def scan(self):
        ops = []
        for addr in range(0x08, 0x78):
            ops += ["S", "W" + _addr_hex(addr, False), "P"]
        res = self._do(ops)
        return [0x08 + i for i in range(0x78 - 0x08) if res[3 * i + 1] == "1"]

    def start(self):
        raise OSError("I2C operation not supported")

    def stop(self):
        raise OSError("I2C operation not supported")

    def readinto(self, buf, nack=True):
        raise OSError("I2C operation not supported")

    def write(self, buf):
        raise OSError("I2C operation not supported")

    def readfrom(self, addr, nbytes, stop=True):
        return self._read(addr, nbytes, stop)

    def readfrom_into(self, addr, buf, stop=True):
        _fill(buf, self._read(addr, len(buf), stop))

    def writeto(self, addr, buf, stop=True):
        return self._write(addr, bytes(buf), stop)

    def writevto(self, addr, vector, stop=True):
        data = b""
        for part in vector:
            data += bytes(part)
        return self._write(addr, data, stop)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        data = self._read_mem(addr, memaddr, nbytes, addrsize)
        return bytes(nbytes) if data is None else data

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        data = self._read_mem(addr, memaddr, len(buf), addrsize)
        if data is not None:
            _fill(buf, data)

    def _read_mem(self, addr, memaddr, n, addrsize):
        mem = _memaddr(memaddr, addrsize)
        if _MCU == "esp32" and not self._soft:  # one transfer: write, repeated START, read
            return self._read(addr, n, True, mem)
        # extmod's read_mem: the address written without a STOP; if it is not taken
        # whole, a zero-length write with a STOP, then the error or nothing read.
        try:
            ret = self._write(addr, mem, False)
        except OSError:
            self._probe(addr)
            raise
        if ret != len(mem):
            self._probe(addr)
            return None
        return self._read(addr, n, True)

    def _probe(self, addr):
        try:  # noqa: SIM105 (no contextlib on the board)
            self._write(addr, b"", True)
        except OSError:
            pass

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self._write(addr, _memaddr(memaddr, addrsize) + bytes(buf), True)


class SoftI2C(I2C):
    def __init__(self, scl, sda, *, freq=400000, timeout=50000):
        self._id = -1
        self._setup(_pin_id(scl), _pin_id(sda), freq, timeout, True)

    def init(self, scl, sda, *, freq=400000, timeout=50000):
        self._setup(_pin_id(scl), _pin_id(sda), freq, timeout, True)

    def __repr__(self):
        return f"SoftI2C(scl={self._scl}, sda={self._sda}, freq={self._freq})"

    def start(self):
        self._do(["S"])

    def stop(self):
        self._do(["P"])

    def readinto(self, buf, nack=True):
        if len(buf):
            _fill(buf, bytes.fromhex(self._do([f"R{len(buf)}"])[0]))

    def write(self, buf):
        res = self._do(["W" + _hex(bytes(buf))])
        if res[0] == "T":
            raise OSError(_ETIMEDOUT)
        return int(res[0])
