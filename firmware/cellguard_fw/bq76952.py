"""Driver for the TI BQ76952 battery monitor (3-16 cells) over I2C: what the
control step uses. What only the firmware's start needs (data memory,
CONFIG_UPDATE, FET_ENABLE, threshold encoding, the HAL's settings) is in
``bq76952_setup``, imported then and released after (docs/bq76952.md).

Works over any object with the ``machine.I2C`` methods (``readfrom_mem_into``,
``writeto_mem``, ``readfrom_into``, ``writeto``). References: the chip's Technical
Reference Manual (SLUUBY2), data sheet (SLUSE13) and Software Development Guide
(SLUAA11).

- Direct commands: two-byte little-endian registers, read in blocks. One
  measurement cycle is four block reads: safety alert/status A-C (0x02..0x07),
  battery status, the 16 cells, stack, PACK, LD and CC2 current (0x12..0x3B),
  alarm status and the temperatures (0x62..0x75), FET status (0x7F).
- CRC (``crc=True``): CRC-8, polynomial 0x07, initial 0. Every data byte is
  followed by its CRC; the first covers everything on the bus from the start up
  to that byte (target address, register, and on a read the repeated-start
  address), each later one only its own data byte. So with CRC on a write is one
  ``writeto`` and a read is ``writeto`` without a stop then ``readfrom_into`` of
  twice the bytes (decoded in place).
- Subcommands: the command to 0x3E/0x3F; data for a write follows it in the
  transfer buffer 0x40.., then the checksum (complement of the byte sum of the
  command and data) and the length (data + 4) to 0x60/0x61. A read polls 0x3E/0x3F
  until it reads the command back (0xFF while busy), at most ``_POLLS`` times,
  then reads 0x60/0x61 and the buffer and checks both.

Errors never leave the driver: a bus call that raises (NACK, timeout), a bad CRC,
a bad checksum or length, a subcommand that stays busy are counted by kind in
``errors`` and retried up to ``_TRIES`` times; a measurement cycle that still
fails keeps the last readings, and ``_DEAD_AFTER`` failed cycles in a row make
``dead`` True (a sensor fault: the firmware opens the output) until a cycle
succeeds again.

Units: cells in mV; stack, PACK and LD in mV; current in mA, positive when
charging; temperatures in 0.1 K as the chip reports them.

The measurement path (:meth:`Bq76952.read`) and the FET and balancing commands
allocate nothing: preallocated buffers and memoryviews, integer maths.
"""

import time
from array import array

from micropython import const

# Direct commands
_SAFETY = const(0x02)  # Safety Alert A, Status A, Alert B, Status B, Alert C, Status C
_BATTERY = const(0x12)  # Battery Status, then Cell 1..16, Stack, PACK, LD, CC2
_ALARM = const(0x62)  # Alarm Status, Raw Status, Enable, then Int, CFETOFF, DFETOFF,
#                       ALERT, TS1, TS2, TS3 temperatures
_FET_STATUS = const(0x7F)
_SUB = const(0x3E)
_BUF = const(0x40)
_CHECKSUM = const(0x60)
_N_SAFETY = const(6)
_N_MAIN = const(42)
_N_TEMPS = const(20)

# Subcommands of the control step
_CB_ACTIVE_CELLS = const(0x0083)
_DSG_PDSG_OFF = const(0x0093)
_CHG_PCHG_OFF = const(0x0094)
_ALL_FETS_OFF = const(0x0095)
_ALL_FETS_ON = const(0x0096)

# Error kinds (indexes into ``errors``)
_E_BUS = const(0)  # OSError: NACK, timeout
_E_CRC = const(1)
_E_CHECKSUM = const(2)  # subcommand response checksum or length
_E_BUSY = const(3)  # subcommand still busy after _POLLS polls
# 4: a data-memory write read back different, or CFGUPDATE not entered (bq76952_setup)
_E_TIMEOUT = const(5)  # OSError ETIMEDOUT: a stuck bus (counted apart from _E_BUS)
_E_CYCLES = const(6)  # measurement cycles that failed past the retries
_ETIMEDOUT = const(110)

_TRIES = const(3)  # attempts per transaction
_POLLS = const(20)  # reads of 0x3E/0x3F waiting for the chip
_POLL_US = const(500)
_DEAD_AFTER = const(3)  # failed measurement cycles in a row before ``dead``


# CRC-8 (polynomial 0x07) of each byte: a bytes constant, so no code builds it on a
# board (tests/test_bq76952_driver.py checks it against the polynomial)
CRC_TABLE = (
    b"\x00\x07\x0e\x09\x1c\x1b\x12\x15\x38\x3f\x36\x31\x24\x23\x2a\x2d"
    b"\x70\x77\x7e\x79\x6c\x6b\x62\x65\x48\x4f\x46\x41\x54\x53\x5a\x5d"
    b"\xe0\xe7\xee\xe9\xfc\xfb\xf2\xf5\xd8\xdf\xd6\xd1\xc4\xc3\xca\xcd"
    b"\x90\x97\x9e\x99\x8c\x8b\x82\x85\xa8\xaf\xa6\xa1\xb4\xb3\xba\xbd"
    b"\xc7\xc0\xc9\xce\xdb\xdc\xd5\xd2\xff\xf8\xf1\xf6\xe3\xe4\xed\xea"
    b"\xb7\xb0\xb9\xbe\xab\xac\xa5\xa2\x8f\x88\x81\x86\x93\x94\x9d\x9a"
    b"\x27\x20\x29\x2e\x3b\x3c\x35\x32\x1f\x18\x11\x16\x03\x04\x0d\x0a"
    b"\x57\x50\x59\x5e\x4b\x4c\x45\x42\x6f\x68\x61\x66\x73\x74\x7d\x7a"
    b"\x89\x8e\x87\x80\x95\x92\x9b\x9c\xb1\xb6\xbf\xb8\xad\xaa\xa3\xa4"
    b"\xf9\xfe\xf7\xf0\xe5\xe2\xeb\xec\xc1\xc6\xcf\xc8\xdd\xda\xd3\xd4"
    b"\x69\x6e\x67\x60\x75\x72\x7b\x7c\x51\x56\x5f\x58\x4d\x4a\x43\x44"
    b"\x19\x1e\x17\x10\x05\x02\x0b\x0c\x21\x26\x2f\x28\x3d\x3a\x33\x34"
    b"\x4e\x49\x40\x47\x52\x55\x5c\x5b\x76\x71\x78\x7f\x6a\x6d\x64\x63"
    b"\x3e\x39\x30\x37\x22\x25\x2c\x2b\x06\x01\x08\x0f\x1a\x1d\x14\x13"
    b"\xae\xa9\xa0\xa7\xb2\xb5\xbc\xbb\x96\x91\x98\x9f\x8a\x8d\x84\x83"
    b"\xde\xd9\xd0\xd7\xc2\xc5\xcc\xcb\xe6\xe1\xe8\xef\xfa\xfd\xf4\xf3"
)


class ChipChannel:
    """A channel a monitor chip (``"type": "bq76952"``) reports in the firmware's
    units already: cells and pack in mV, current in mA (``zero`` 0), or
    temperatures in 0.1 K (``zero`` 2732: 0.1 degC out).

    Measurement counts a temperature code at or above ``open_code`` or at or below
    ``max_code // 100`` as a railed sensor (an NTC's open and shorted ends). The
    chip's open thermistor reads very cold and a shorted one very hot, so here
    ``open_code`` is the hot rail and ``max_code`` a hundred times the cold one
    (a temperature channel's ``max_code`` means nothing else: the codes are
    0.1 K, not a converter's). Reusing the two names costs no heap: each new
    attribute name is an interned string a board keeps.

    A chip board's front end (``Hal.frontend``) is a ChipChannel carrying the four
    channels (bq76952_setup.frontend builds it): cells, current and pack need no
    conversion, so it is itself the one identity channel for the three, and its
    ``temp`` the temperature channel."""

    # the front end's channels (annotations only: no code on a board)
    cell: "ChipChannel"
    current: "ChipChannel"
    temp: "ChipChannel"
    pack: "ChipChannel"

    # max_code, zero (subtracted by convert) and open_code are set by
    # bq76952_setup.frontend: no constructor on a board
    max_code: int
    zero: int
    open_code: int

    def convert(self, code):
        return code - self.zero


class Bq76952:
    # set by bq76952_setup.init, which says what each holds (annotations only: no
    # code, no names on a board; the start-up code is not kept)
    buf: bytearray
    tx: bytearray
    views: dict
    cells: array
    temps: array
    safety: bytearray
    stack_mv: int
    pack_mv: int
    ld_mv: int
    current_ma: int
    battery_status: int
    alarm_status: int
    fet_status: int
    amps: int
    volts: int
    errors: array
    failed: int
    dead: bool

    def __init__(self, i2c, address=0x08, crc=False, sleep=None):
        self.i2c = i2c
        self.address = address
        self.crc = crc
        # time.sleep_us on a board; CPython (host tests) has none: no wait, with a
        # built-in that does nothing to its argument
        self.sleep = getattr(time, "sleep_us", abs) if sleep is None else sleep
        from . import bq76952_setup

        bq76952_setup.init(self)

    def _view(self, n):
        v = self.views.get(n)
        return memoryview(self.buf)[:n] if v is None else v

    # -- bus ----------------------------------------------------------------
    def _count(self, kind):
        e = self.errors
        if e[kind] < 0xFFFF:
            e[kind] += 1

    def _read(self, reg, n):
        """Read ``n`` bytes from ``reg`` into ``buf``; True on success."""
        addr = self.address
        b = self.buf
        t = CRC_TABLE
        for _ in range(_TRIES):
            try:
                if not self.crc:
                    # A NACKed register byte makes an rp2's readfrom_mem_into return
                    # without data and without an error: the buffer keeps 0xFF then,
                    # which no answer of more than two bytes (or FET Status) is.
                    for i in range(n):
                        b[i] = 0xFF
                    self.i2c.readfrom_mem_into(addr, reg, self._view(n))
                    if n == 2:
                        return True
                    for i in range(n):
                        if b[i] != 0xFF:
                            return True
                    self._count(_E_BUS)
                    continue
                b[0] = reg
                acks = self.i2c.writeto(addr, self._view(1), False)
                if acks is not None and acks != 1:  # a NACK an rp2 does not raise
                    self._count(_E_BUS)
                    continue
                self.i2c.readfrom_into(addr, self._view(2 * n))
            except Exception as exc:  # OSError on a board: NACK, timeout
                args = exc.args if isinstance(exc, OSError) else ()
                self._count(_E_TIMEOUT if args and args[0] == _ETIMEDOUT else _E_BUS)
                continue
            # the first CRC covers the write address, register, read address, first
            # byte; each data byte moves from 2i to i (in place, in order)
            ok = t[t[t[t[addr << 1] ^ reg] ^ (addr << 1 | 1)] ^ b[0]] == b[1]
            i = 1
            while ok and i < n:
                x = b[2 * i]
                ok = t[x] == b[2 * i + 1]
                b[i] = x
                i += 1
            if ok:
                return True
            self._count(_E_CRC)
        return False

    def _write(self, reg, n):
        """Write ``tx[:n]`` to ``reg``; True on success."""
        b = self.buf
        tx = self.tx
        for _ in range(_TRIES):
            try:
                if self.crc:
                    # register, d0, CRC(address, register, d0), d1, CRC(d1), ...
                    t = CRC_TABLE
                    b[0] = reg
                    b[1] = tx[0]
                    b[2] = t[t[t[self.address << 1] ^ reg] ^ tx[0]]
                    for i in range(1, n):
                        x = tx[i]
                        b[1 + 2 * i] = x
                        b[2 + 2 * i] = t[x]
                    acks = self.i2c.writeto(self.address, self._view(1 + 2 * n))
                    if acks is not None and acks != 1 + 2 * n:  # an rp2 NACK: no raise
                        self._count(_E_BUS)
                        continue
                else:
                    for i in range(n):
                        b[i] = tx[i]
                    self.i2c.writeto_mem(self.address, reg, self._view(n))
                return True
            except Exception as exc:  # OSError on a board: NACK, timeout
                args = exc.args if isinstance(exc, OSError) else ()
                self._count(_E_TIMEOUT if args and args[0] == _ETIMEDOUT else _E_BUS)
        return False

    # -- subcommands ----------------------------------------------------------
    def _command(self, cmd, n=0):
        """Subcommand ``cmd`` with ``n`` data bytes already in ``tx[2:2 + n]``;
        with data, the checksum and length follow to 0x60/0x61."""
        tx = self.tx
        tx[0] = cmd & 0xFF
        tx[1] = cmd >> 8
        if not self._write(_SUB, 2 + n):
            return False
        if not n:
            return True
        s = 0
        for i in range(2 + n):
            s += tx[i]
        tx[0] = ~s & 0xFF
        tx[1] = n + 4
        return self._write(_CHECKSUM, 2)

    def query(self, cmd):
        """Run a subcommand that answers (or read data memory at ``cmd``): the
        number of data bytes, now in ``buf``, or -1."""
        lo = cmd & 0xFF
        hi = cmd >> 8
        tx = self.tx
        d = self.buf
        for _ in range(_TRIES):
            tx[0] = lo
            tx[1] = hi
            if not self._write(_SUB, 2):
                return -1  # the bus failed (already retried)
            for _ in range(_POLLS):
                if not self._read(_SUB, 2):
                    return -1
                if d[0] == lo and d[1] == hi:
                    break
                self.sleep(_POLL_US)
            else:
                self._count(_E_BUSY)
                continue
            if not self._read(_CHECKSUM, 2):
                return -1
            chk = d[0]
            n = d[1] - 4
            if n < 0 or n > 32:
                self._count(_E_CHECKSUM)
                continue
            if n and not self._read(_BUF, n):
                return -1
            s = lo + hi
            for i in range(n):
                s += d[i]
            if ~s & 0xFF == chk:
                return n
            self._count(_E_CHECKSUM)
        return -1

    # -- control (allocation-free) ----------------------------------------------
    def block(self, charge, discharge, was):
        """Host FET blocking in normal mode: block the charge and / or discharge
        direction. ``was``: what is blocked now (bit 0 charge, bit 1 discharge, -1
        unknown). Only ALL_FETS_ON lifts a block, so lifting one re-sends the other.
        True when sent."""
        want = (1 if charge else 0) | (2 if discharge else 0)
        if want == 3:
            return self._command(_ALL_FETS_OFF)
        if was < 0 or was & ~want:
            if not self._command(_ALL_FETS_ON):
                return False
            was = 0
        if want & 1 and not was & 1 and not self._command(_CHG_PCHG_OFF):
            return False
        if want & 2 and not was & 2 and not self._command(_DSG_PDSG_OFF):
            return False
        return True

    def balance(self, mask):
        """CB_ACTIVE_CELLS: balance the cells in ``mask`` (bit 0: cell 1) and read
        it back; True when the chip reports that mask."""
        tx = self.tx
        tx[2] = mask & 0xFF
        tx[3] = (mask >> 8) & 0xFF
        if not self._command(_CB_ACTIVE_CELLS, 2) or self.query(_CB_ACTIVE_CELLS) < 2:
            return False
        d = self.buf
        return d[0] | d[1] << 8 == mask

    # -- measurement (allocation-free) ------------------------------------------
    def read(self):
        """One measurement cycle into the attributes; True when every read
        succeeded. Failures keep the last readings and count towards ``dead``."""
        if self._measure():
            self.failed = 0
            self.dead = False
            return True
        self._count(_E_CYCLES)
        if self.failed < _DEAD_AFTER:
            self.failed += 1
        if self.failed >= _DEAD_AFTER:
            self.dead = True
        return False

    def _measure(self):
        d = self.buf
        if not self._read(_SAFETY, _N_SAFETY):
            return False
        s = self.safety
        for i in range(_N_SAFETY):
            s[i] = d[i]
        if not self._read(_BATTERY, _N_MAIN):
            return False
        self.battery_status = d[0] | d[1] << 8
        cells = self.cells
        for i in range(16):
            cells[i] = _i16(d, 2 + 2 * i)
        v = self.volts
        self.stack_mv = _i16(d, 34) * v
        self.pack_mv = _i16(d, 36) * v
        self.ld_mv = _i16(d, 38) * v
        raw = _i16(d, 40)
        if self.amps:
            self.current_ma = raw * self.amps
        elif raw >= 0:  # 0.1 mA
            self.current_ma = (raw + 5) // 10
        else:
            self.current_ma = -((5 - raw) // 10)
        if not self._read(_ALARM, _N_TEMPS):
            return False
        self.alarm_status = d[0] | d[1] << 8
        temps = self.temps
        for i in range(7):
            temps[i] = _i16(d, 6 + 2 * i)
        if not self._read(_FET_STATUS, 1):
            return False
        self.fet_status = d[0]
        return True


def _i16(d, i):
    v = d[i] | d[i + 1] << 8
    return v - 0x10000 if v & 0x8000 else v
