"""Driver for the TI BQ76952 battery monitor (3-16 cells) over I2C.

Works over any object with the ``machine.I2C`` methods (``readfrom_mem_into``,
``writeto_mem``, ``readfrom_into``, ``writeto``). References: the chip's Technical
Reference Manual (SLUUBY2), data sheet (SLUSE13) and Software Development Guide
(SLUAA11); see docs/bq76952.md.

- Direct commands: two-byte little-endian registers, read in blocks (the chip
  increments the register address after each byte). One measurement cycle is
  four block reads: safety alert/status A-C (0x02..0x07), battery status, the
  16 cells, stack, PACK, LD and CC2 current (0x12..0x3B), alarm status and the
  temperatures (0x62..0x75), FET status (0x7F).
- CRC (``crc=True``, the chip's Comm Type with CRC): CRC-8, polynomial 0x07,
  initial 0. Every data byte is followed by its CRC; the first covers everything
  on the bus from the start up to that byte (target address, register, and on a
  read the repeated-start address), each later one only its own data byte. So
  with CRC on a write is one ``writeto`` and a read is ``writeto`` without a stop
  then ``readfrom_into`` of twice the bytes.
- Subcommands: the command to 0x3E/0x3F; data for a write follows it in the
  transfer buffer 0x40.., then the checksum (complement of the byte sum of the
  command and data) and the length (data + 4) to 0x60/0x61. A read polls 0x3E/0x3F
  until it reads the command back (0xFF while busy), at most ``_POLLS`` times,
  then reads 0x60/0x61 and the buffer and checks both.
- Data memory (0x9180..): read and written like subcommands, written only in
  CONFIG_UPDATE mode; :meth:`Bq76952.configure` reads every setting first and
  enters CONFIG_UPDATE only when one differs, and verifies each write.

Errors never leave the driver: a bus call that raises ``OSError`` (NACK,
timeout), a bad CRC, a bad checksum or length, a subcommand that stays busy or a
data-memory write that does not read back are counted by kind in ``errors`` and
retried up to ``_TRIES`` times; a measurement cycle that still fails keeps the
last readings, and ``_DEAD_AFTER`` failed cycles in a row make ``dead`` True
(a sensor fault: the firmware opens the output) until a cycle succeeds again.

Units: cells in mV; stack, PACK and LD in mV (user-volts: mV or cV by DA
Configuration USER_VOLTS_CV); current in mA, positive when charging (the chip's
sign), from user-amps (USER_AMPS: 0.1, 1, 10 or 100 mA); temperatures in
0.1 K as the chip reports them.

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

# Subcommands
_RESET = const(0x0012)
_FET_ENABLE = const(0x0022)
_MFG_STATUS = const(0x0057)
_CB_ACTIVE_CELLS = const(0x0083)
_SET_CFGUPDATE = const(0x0090)
_EXIT_CFGUPDATE = const(0x0092)
_DSG_PDSG_OFF = const(0x0093)
_CHG_PCHG_OFF = const(0x0094)
_ALL_FETS_OFF = const(0x0095)
_ALL_FETS_ON = const(0x0096)
_FET_CONTROL = const(0x0097)

# Error kinds (indexes into ``errors``)
_E_BUS = const(0)  # OSError: NACK, timeout
_E_CRC = const(1)
_E_CHECKSUM = const(2)  # subcommand response checksum or length
_E_BUSY = const(3)  # subcommand still busy after _POLLS polls
_E_VERIFY = const(4)  # a data-memory write read back different, or CFGUPDATE not entered
_E_TIMEOUT = const(5)  # OSError ETIMEDOUT: a stuck bus (counted apart from _E_BUS)
_E_CYCLES = const(6)  # measurement cycles that failed past the retries
_ETIMEDOUT = const(110)

_TRIES = const(3)  # attempts per transaction
_POLLS = const(20)  # reads of 0x3E/0x3F (or Battery Status) waiting for the chip
_POLL_US = const(500)
_CFG_POLL_US = const(5000)  # entering or leaving CONFIG_UPDATE: up to 100 ms
_DEAD_AFTER = const(3)  # failed measurement cycles in a row before ``dead``


def _crc_table():
    t = bytearray(256)
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        t[i] = c
    return t


_CRC_TABLE = _crc_table()


def crc8(data, crc=0):
    """CRC-8 (polynomial 0x07, initial 0) of ``data``, continuing from ``crc``."""
    t = _CRC_TABLE
    for i in range(len(data)):
        crc = t[crc ^ data[i]]
    return crc


# SCD thresholds (Protections:SCD:Threshold 0..15), mV across the shunt
_SCD_MV = b"\x0a\x14\x28\x3c\x50\x64\x7d\x96\xaf\xc8\xfa"  # 10..250 (one byte each)
_SCD_HI = (300, 350, 400, 450, 500)


def scd_mv(code):
    """The SCD threshold (mV across the shunt) of setting ``code`` (0..15)."""
    return _SCD_MV[code] if code < 11 else _SCD_HI[code - 11]


def encode(kind, value, shunt_uohm=0):
    """A protection setting's register code: ``(code, clamped)``.

    ``kind``: "cov" / "cuv" (cell mV, 50.6 mV steps: COV rounds up, CUV down, so
    the chip trips beyond the given limit), "occ" / "ocd" (mA through a shunt of
    ``shunt_uohm``, 2 mV steps, rounded up), "scd" (mA, the first of the 16 SCD
    thresholds at or above it), "temp_hi" / "temp_lo" (0.1 degC to whole degC, up
    / down), "v_delay" (COV/CUV delay, ms, 3.3 ms steps), "oc_delay" (OCC/OCD
    delay, ms, 3.3 ms steps with a 6.6 ms offset), "scd_delay" (us, 15 us steps,
    1 = no delay). Every code rounds away from tripping early (delays round up).
    A value beyond the register's range gives the nearest end and ``clamped``
    True: never a wrapped value.
    """
    if kind == "cov" or kind == "cuv":
        if kind == "cov":
            code, lo, hi = -(-value * 10 // 506), 20, 110
        else:
            code, lo, hi = value * 10 // 506, 20, 90
    elif kind == "occ" or kind == "ocd":
        code = -(-value * shunt_uohm // 2000000)  # mA * uOhm = nV; 2 mV steps
        lo, hi = 2, 62 if kind == "occ" else 100
    elif kind == "scd":
        nv = value * shunt_uohm
        code = 16
        for i in range(16):
            if scd_mv(i) * 1000000 >= nv:
                code = i
                break
        lo, hi = 0, 15
    elif kind == "temp_hi":
        code, lo, hi = -(-value // 10), -40, 120
    elif kind == "temp_lo":
        code, lo, hi = value // 10, -40, 120
    elif kind == "v_delay":
        code, lo, hi = -(-value * 10 // 33), 1, 2047
    elif kind == "oc_delay":
        code, lo, hi = -(-value * 10 // 33) - 2, 1, 127
    elif kind == "scd_delay":
        code, lo, hi = -(-value // 15) + 1, 1, 31
    else:
        raise ValueError("unknown protection setting " + kind)
    if code < lo:
        return lo, True
    if code > hi:
        return hi, True
    return code, False


def gains(shunt_uohm):
    """Calibration:Current:CC Gain and Capacity Gain for a shunt (TRM: CC Gain =
    7.4768 / R in mOhm, Capacity Gain = CC Gain * 298261.6178), as the F4 values'
    32-bit patterns (the chip's data memory is little-endian IEEE 754)."""
    from struct import pack, unpack

    cc = 7.4768 * 1000 / shunt_uohm
    return (unpack("<I", pack("<f", cc))[0], unpack("<I", pack("<f", cc * 298261.6178))[0])


def control_bits(on):
    """FET_CONTROL's byte (FET test mode: bit 0 DSG_OFF, 1 PDSG_OFF, 2 CHG_OFF,
    3 PCHG_OFF) that leaves on the FETs set in ``on``, a mask in FET Status order
    (bit 0 CHG, 1 PCHG, 2 DSG, 3 PDSG)."""
    off = ~on
    return ((off >> 2) & 1) | ((off >> 3) & 1) << 1 | (off & 1) << 2 | ((off >> 1) & 1) << 3


class ChipChannel:
    """A channel a monitor chip (``"type": "bq76952"``) reports in the firmware's
    units already: cells and pack in mV, current in mA (``offset`` 0), or
    temperatures in 0.1 K (``offset`` 2732: 0.1 degC out).

    Measurement counts a temperature code at or above ``open_code`` or at or below
    ``max_code // 100`` as a railed sensor (an NTC's open and shorted ends). The
    chip's open thermistor reads very cold and a shorted one very hot, so here
    ``open_code`` is the hot rail and ``max_code`` a hundred times the cold one
    (a temperature channel's ``max_code`` means nothing else: the codes are
    0.1 K, not a converter's). Reusing the two names costs no heap: each new
    attribute name is an interned string a board keeps."""

    def __init__(self, max_code, offset=0, cold=0, hot=0):
        self.max_code = max_code if not cold else 100 * cold
        self.zero = offset
        self.open_code = hot

    def convert(self, code):
        return code - self.zero


class Frontend:
    """The front end of a board the chip measures (``frontend.Frontend`` builds it
    for ``"frontend": {"type": "bq76952"}``): identity for cells, current and
    pack; 0.1 K to 0.1 degC for temperatures, railed at or below -40 degC (an open
    thermistor) or at or above 150 degC (a shorted one)."""

    def __init__(self, cfg):
        if cfg.get("type") != "bq76952":
            raise ValueError("frontend type must be bq76952")
        self.cell = ChipChannel(cfg["cell_adc"]["full_scale_mv"])
        self.current = ChipChannel(0x3FFFFFFF)
        self.temp = ChipChannel(0xFFFF, 2732, 2732 + cfg.get("cold_rail_dc", -400),
                                2732 + cfg.get("hot_rail_dc", 1500))
        self.pack = ChipChannel(0xFFFF)


class Bq76952:
    def __init__(self, i2c, address=0x08, crc=False, sleep=None):
        self.i2c = i2c
        self.address = address
        self.crc = crc
        # time.sleep_us on a board; CPython (host tests) has none: no wait
        self.sleep = getattr(time, "sleep_us", _no_wait) if sleep is None else sleep
        self.data = bytearray(_N_MAIN)  # the last read's data bytes
        self.raw = bytearray(2 * _N_MAIN)  # a CRC read's bytes (data, CRC, ...)
        self.tx = bytearray(36)  # a write's data bytes
        self.out = bytearray(1 + 2 * 36)  # a CRC write: register, data, CRC, ...
        self.reg = bytearray(1)
        # A view of each buffer for each transfer length, made on first use:
        # slicing a memoryview allocates, so the lengths of the measurement path
        # and of the FET and balancing commands are made now.
        self.dviews = [None] * (_N_MAIN + 1)  # data[:n]
        self.rviews = [None] * (_N_MAIN + 1)  # raw[:2n]
        self.tviews = [None] * 37  # tx[:n]
        self.oviews = [None] * 37  # out[:1 + 2n]
        for n in (1, 2, _N_SAFETY, _N_TEMPS, _N_MAIN):
            self._view(self.dviews, self.data, n, n)
            self._view(self.rviews, self.raw, n, 2 * n)
        for n in (2, 3, 4):
            self._view(self.tviews, self.tx, n, n)
            self._view(self.oviews, self.out, n, 1 + 2 * n)
        # measurements (converted)
        self.cells = array("h", [0] * 16)  # mV
        self.temps = array("h", [0] * 7)  # 0.1 K: Int, CFETOFF, DFETOFF, ALERT, TS1..TS3
        self.safety = bytearray(_N_SAFETY)  # Alert A, Status A, Alert B, Status B, ...
        self.stack_mv = 0
        self.pack_mv = 0
        self.ld_mv = 0
        self.current_ma = 0
        self.battery_status = 0
        self.alarm_status = 0
        self.fet_status = 0
        self.units(0x05)  # DA Configuration default: 1 mA, cV
        # by kind: bus (NACK), CRC, checksum, busy, verify, timeout, failed cycles
        self.errors = array("H", [0] * 7)
        self.failed = 0  # measurement cycles failed in a row
        self.dead = False
        self.written = 0  # data-memory values the last configure() wrote

    @staticmethod
    def _view(views, buf, n, length):
        v = views[n]
        if v is None:
            v = views[n] = memoryview(buf)[:length]
        return v

    def units(self, da):
        """Convert with DA Configuration ``da`` (USER_AMPS bits 0-1, USER_VOLTS_CV bit 2)."""
        amps = da & 3  # 0: 0.1 mA, 1: 1 mA, 2: 10 mA, 3: 100 mA
        self.amps_mul = 1 if amps < 2 else 10 if amps == 2 else 100
        self.amps_div = 10 if amps == 0 else 1
        self.volts_mul = 10 if da & 4 else 1

    # -- bus ----------------------------------------------------------------
    def _count(self, kind):
        e = self.errors
        if e[kind] < 0xFFFF:
            e[kind] += 1

    def _bus_error(self, exc):
        args = exc.args if isinstance(exc, OSError) else ()
        self._count(_E_TIMEOUT if args and args[0] == _ETIMEDOUT else _E_BUS)

    def _read(self, reg, n):
        """Read ``n`` bytes from ``reg`` into ``data``; True on success."""
        for _ in range(_TRIES):
            if self._read1(reg, n):
                return True
        return False

    def _read1(self, reg, n):
        addr = self.address
        data = self.data
        try:
            if not self.crc:
                # A NACKed register byte makes an rp2's readfrom_mem_into return
                # without data and without an error: the buffer keeps 0xFF then,
                # which no answer of more than two bytes (or FET Status) is.
                for i in range(n):
                    data[i] = 0xFF
                self.i2c.readfrom_mem_into(addr, reg, self._view(self.dviews, data, n, n))
                if n != 2:
                    for i in range(n):
                        if data[i] != 0xFF:
                            return True
                    self._count(_E_BUS)
                    return False
                return True
            self.reg[0] = reg
            acks = self.i2c.writeto(addr, self.reg, False)
            if acks is not None and acks != 1:  # a NACK an rp2 does not raise
                self._count(_E_BUS)
                return False
            self.i2c.readfrom_into(addr, self._view(self.rviews, self.raw, n, 2 * n))
        except Exception as exc:  # OSError on a board: NACK, timeout
            self._bus_error(exc)
            return False
        raw = self.raw
        t = _CRC_TABLE
        # the first CRC covers the write address, register, read address, first byte
        if t[t[t[t[addr << 1] ^ reg] ^ (addr << 1 | 1)] ^ raw[0]] != raw[1]:
            self._count(_E_CRC)
            return False
        data[0] = raw[0]
        for i in range(1, n):
            b = raw[2 * i]
            if t[b] != raw[2 * i + 1]:
                self._count(_E_CRC)
                return False
            data[i] = b
        return True

    def _write(self, reg, n):
        """Write ``tx[:n]`` to ``reg``; True on success."""
        for _ in range(_TRIES):
            try:
                if self.crc:
                    acks = self.i2c.writeto(self.address, self._frame(reg, n))
                    if acks is not None and acks != 1 + 2 * n:  # an rp2 NACK: no raise
                        self._count(_E_BUS)
                        continue
                else:
                    self.i2c.writeto_mem(self.address, reg, self._view(self.tviews, self.tx, n, n))
                return True
            except Exception as exc:  # OSError on a board: NACK, timeout
                self._bus_error(exc)
        return False

    def _frame(self, reg, n):
        """``out`` = register, d0, CRC(address, register, d0), d1, CRC(d1), ..."""
        out = self.out
        tx = self.tx
        t = _CRC_TABLE
        out[0] = reg
        out[1] = tx[0]
        out[2] = t[t[t[self.address << 1] ^ reg] ^ tx[0]]
        for i in range(1, n):
            b = tx[i]
            out[1 + 2 * i] = b
            out[2 + 2 * i] = t[b]
        return self._view(self.oviews, self.out, n, 1 + 2 * n)

    def read_reg(self, reg):
        """A 16-bit direct command's value (unsigned), or -1."""
        if not self._read(reg, 2):
            return -1
        return self.data[0] | self.data[1] << 8

    def write_reg(self, reg, value):
        """Write a 16-bit direct command (e.g. 0x66 Alarm Enable); True when sent."""
        self.tx[0] = value & 0xFF
        self.tx[1] = (value >> 8) & 0xFF
        return self._write(reg, 2)

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

    def subcommand(self, cmd):
        """Send a command-only subcommand (e.g. 0x0022 FET_ENABLE); True when sent."""
        return self._command(cmd)

    def query(self, cmd):
        """Run a subcommand that answers (or read data memory at ``cmd``): the
        number of data bytes, now in ``data``, or -1."""
        for _ in range(_TRIES):
            n = self._query1(cmd)
            if n != -2:
                return n
        return -1

    def _query1(self, cmd):
        # -1: the bus failed (already retried); -2: busy or a bad answer, try again
        lo = cmd & 0xFF
        hi = cmd >> 8
        tx = self.tx
        tx[0] = lo
        tx[1] = hi
        if not self._write(_SUB, 2):
            return -1
        d = self.data
        for _ in range(_POLLS):
            if not self._read(_SUB, 2):
                return -1
            if d[0] == lo and d[1] == hi:
                break
            self.sleep(_POLL_US)
        else:
            self._count(_E_BUSY)
            return -2
        if not self._read(_CHECKSUM, 2):
            return -1
        chk = d[0]
        n = d[1] - 4
        if n < 0 or n > 32:
            self._count(_E_CHECKSUM)
            return -2
        if n and not self._read(_BUF, n):
            return -1
        s = lo + hi
        for i in range(n):
            s += d[i]
        if ~s & 0xFF != chk:
            self._count(_E_CHECKSUM)
            return -2
        return n

    # -- data memory ------------------------------------------------------------
    def dm_read(self, addr, size):
        """The unsigned little-endian value of ``size`` bytes at ``addr``, or -1."""
        if self.query(addr) < size:
            return -1
        d = self.data
        v = 0
        for i in range(size - 1, -1, -1):
            v = v << 8 | d[i]
        return v

    def dm_write(self, addr, size, value):
        """Write and read back (the chip must be in CONFIG_UPDATE); True if it holds."""
        for _ in range(_TRIES):
            tx = self.tx
            for i in range(size):
                tx[2 + i] = (value >> (8 * i)) & 0xFF
            if self._command(addr, size) and self.dm_read(addr, size) == value:
                return True
            self._count(_E_VERIFY)
        return False

    def _cfgupdate(self, enter):
        if not self._command(_SET_CFGUPDATE if enter else _EXIT_CFGUPDATE):
            return False
        for _ in range(_POLLS):
            if self._read(_BATTERY, 2) and (self.data[0] & 1) == (1 if enter else 0):
                return True
            self.sleep(_CFG_POLL_US)
        self._count(_E_VERIFY)
        return False

    def configure(self, settings):
        """Bring data memory to ``settings`` (``(address, size, value)``, values
        unsigned): read every one back first and enter CONFIG_UPDATE (which turns
        the FETs off) only if one differs, so a restart neither disturbs a chip
        that has its settings nor clears the protections it has tripped. True
        when every setting holds; ``written`` counts the values written."""
        self.written = 0
        todo = []
        # A data-memory read answers 32 bytes from its address: in address order,
        # one read serves every setting that lies within it.
        block = bytearray(32)
        at = -1
        for addr, size, value in sorted(settings):
            if at < 0 or not at <= addr <= at + 32 - size:
                n = self.query(addr)
                if n < size:
                    return False
                at = addr
                for i in range(n):
                    block[i] = self.data[i]
                if n < 32:
                    at = -1  # a short answer serves this setting only
            got = 0
            for i in range(size - 1, -1, -1):
                got = got << 8 | block[addr - (at if at >= 0 else addr) + i]
            if got != value:
                todo.append((addr, size, value))
        if not todo:
            return True
        if not self._cfgupdate(True):
            return False
        ok = True
        for addr, size, value in todo:
            if self.dm_write(addr, size, value):
                self.written += 1
            else:
                ok = False
        return self._cfgupdate(False) and ok

    def fet_enable(self):
        """Leave FET test mode: FET_EN (Manufacturing Status bit 4) set, by
        FET_ENABLE (a toggle) only if it is clear. True when set."""
        if self.query(_MFG_STATUS) < 2:
            return False
        if self.data[0] & 0x10:
            return True
        return self.subcommand(_FET_ENABLE) and self.query(_MFG_STATUS) >= 2 and bool(
            self.data[0] & 0x10)

    def reset(self):
        """RESET (0x0012): the chip restarts with its OTP / default settings."""
        return self.subcommand(_RESET)

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

    def fet_control(self, on):
        """FET test mode: FET_CONTROL with the FETs in ``on`` (FET Status order) on."""
        self.tx[2] = control_bits(on)
        return self._command(_FET_CONTROL, 1)

    def balance(self, mask):
        """CB_ACTIVE_CELLS: balance the cells in ``mask`` (bit 0: cell 1) and read
        it back; True when the chip reports that mask."""
        tx = self.tx
        tx[2] = mask & 0xFF
        tx[3] = (mask >> 8) & 0xFF
        if not self._command(_CB_ACTIVE_CELLS, 2) or self.query(_CB_ACTIVE_CELLS) < 2:
            return False
        d = self.data
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
        d = self.data
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
        vm = self.volts_mul
        self.stack_mv = _i16(d, 34) * vm
        self.pack_mv = _i16(d, 36) * vm
        self.ld_mv = _i16(d, 38) * vm
        raw = _i16(d, 40)
        if self.amps_div == 1:
            self.current_ma = raw * self.amps_mul
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


def _no_wait(us):
    pass


def _i16(d, i):
    v = d[i] | d[i + 1] << 8
    return v - 0x10000 if v & 0x8000 else v
