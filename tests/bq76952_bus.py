"""A recording I2C bus with a BQ76952's register image behind it (a test double
for the driver's tests, not a model of the chip: no timing, no protections).

Plain Python that MicroPython runs too (the heap test copies it onto the
MicroPython filesystem): its read path allocates nothing, so
``micropython.heap_lock()`` measures the driver alone.

Faults to inject: ``fail`` (the next calls raise ``OSError``: NACK or, with
``timeout``, ETIMEDOUT), ``corrupt`` (the next CRC reads carry a bad CRC),
``busy`` (0x3E/0x3F read 0xFF for that many more reads), ``bad_checksum``
(the next subcommand answers carry a wrong checksum).
"""


def crc8(data, crc=0):
    """Bitwise CRC-8, polynomial 0x07 (independent of the driver's table)."""
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


_TABLE = bytearray(crc8([i]) for i in range(256))


class ImageBus:
    def __init__(self, address=8, crc=False):
        self.address = address
        self.crc = crc
        self.regs = bytearray(128)
        self.dm = bytearray(0x300)  # data memory 0x9180..0x947F
        self.ptr = 0
        self.wbuf = bytearray(64)  # the bytes of the write being handled
        self.pending = bytearray(36)  # a subcommand's data, until its checksum comes
        self.pending_n = 0
        self.pending_cmd = -1
        self.answer = bytearray(2)
        self.record = True
        self.log = []
        self.commands = []
        self.fail = 0
        self.timeout = False
        self.corrupt = 0
        self.busy = 0
        self.bad_checksum = 0
        self.mfg_status = 0x0010  # FET_EN
        self.cb_active = 0
        self.fet_control = 0
        self.ignore_cb = False

    # -- helpers for tests ---------------------------------------------------------
    def set16(self, reg, value):
        value &= 0xFFFF
        self.regs[reg] = value & 0xFF
        self.regs[reg + 1] = value >> 8

    def dm_get(self, addr, size):
        v = 0
        for i in range(size - 1, -1, -1):
            v = v << 8 | self.dm[addr - 0x9180 + i]
        return v

    def dm_set(self, addr, size, value):
        for i in range(size):
            self.dm[addr - 0x9180 + i] = (value >> (8 * i)) & 0xFF

    # -- the machine.I2C methods ---------------------------------------------------------
    def _check(self, addr):
        if addr != self.address:
            raise OSError(19)  # ENODEV: nobody answers
        if self.fail:
            self.fail -= 1
            raise OSError(110 if self.timeout else 5)

    def readfrom_mem_into(self, addr, reg, buf):
        if self.record:
            self.log.append(("readfrom_mem_into", addr, reg, len(buf)))
        self._check(addr)
        for i in range(len(buf)):
            buf[i] = self._byte(reg + i)

    def writeto_mem(self, addr, reg, buf):
        if self.record:
            self.log.append(("writeto_mem", addr, reg, bytes(buf)))
        self._check(addr)
        w = self.wbuf
        for i in range(len(buf)):
            w[i] = buf[i]
        self._write(reg, len(buf))

    def writeto(self, addr, buf, stop=True):
        if self.record:
            self.log.append(("writeto", addr, bytes(buf), stop))
        self._check(addr)
        if not stop:
            self.ptr = buf[0]
            return 1
        reg = buf[0]
        n = (len(buf) - 1) // 2
        t = _TABLE
        if len(buf) != 1 + 2 * n or n == 0:
            raise OSError(5)
        w = self.wbuf
        for i in range(n):
            b = buf[1 + 2 * i]
            c = t[t[t[addr << 1] ^ reg] ^ b] if i == 0 else t[b]
            if buf[2 + 2 * i] != c:
                raise OSError(5)  # the chip NACKs a bad CRC
            w[i] = b
        self._write(reg, n)
        return len(buf)

    def readfrom_into(self, addr, buf):
        if self.record:
            self.log.append(("readfrom_into", addr, len(buf)))
        self._check(addr)
        reg = self.ptr
        t = _TABLE
        for i in range(len(buf) // 2):
            b = self._byte(reg + i)
            buf[2 * i] = b
            c = t[t[t[t[addr << 1] ^ reg] ^ (addr << 1 | 1)] ^ b] if i == 0 else t[b]
            if self.corrupt:
                c ^= 0x5A
            buf[2 * i + 1] = c
        if self.corrupt:
            self.corrupt -= 1

    # -- the register image -------------------------------------------------------
    def _byte(self, reg):
        if (reg == 0x3E or reg == 0x3F) and self.busy:
            if reg == 0x3F:
                self.busy -= 1
            return 0xFF
        return self.regs[reg] if reg < 128 else 0

    def _write(self, reg, n):
        # the written bytes are wbuf[:n]; nothing here allocates
        w = self.wbuf
        if reg == 0x3E:
            cmd = w[0] | w[1] << 8
            if n > 2:
                self.pending_cmd = cmd
                self.pending_n = n - 2
                for i in range(n - 2):
                    self.pending[i] = w[2 + i]
            else:
                self.pending_cmd = -1
                self._run(cmd)
        elif reg == 0x60 and self.pending_cmd >= 0:
            cmd = self.pending_cmd
            self.pending_cmd = -1
            k = self.pending_n
            s = (cmd & 0xFF) + (cmd >> 8)
            for i in range(k):
                s += self.pending[i]
            if w[0] != ~s & 0xFF or w[1] != k + 4:
                return  # the chip ignores a bad checksum or length
            self._apply(cmd, self.pending, k)
        else:
            for i in range(n):
                self.regs[reg + i] = w[i]

    def _answer(self, cmd, src, at, k):
        """The answer to ``cmd``: ``k`` bytes of ``src`` from ``at``."""
        regs = self.regs
        regs[0x3E] = cmd & 0xFF
        regs[0x3F] = cmd >> 8
        s = (cmd & 0xFF) + (cmd >> 8)
        for i in range(32):
            b = src[at + i] if i < k else 0
            regs[0x40 + i] = b
            if i < k:
                s += b
        chk = ~s & 0xFF
        if self.bad_checksum:
            self.bad_checksum -= 1
            chk ^= 0xFF
        regs[0x60] = chk
        regs[0x61] = k + 4

    def _run(self, cmd):
        if self.commands is not None:
            self.commands.append(cmd)
        a = self.answer
        if 0x9180 <= cmd < 0x9480:
            self._answer(cmd, self.dm, cmd - 0x9180, 32)
        elif cmd == 0x0057 or cmd == 0x0083 or cmd == 0x0001:
            v = self.mfg_status if cmd == 0x0057 else self.cb_active if cmd == 0x0083 else 0x7695
            a[0] = v & 0xFF
            a[1] = v >> 8
            self._answer(cmd, a, 0, 2)
        else:
            self._answer(cmd, a, 0, 0)
            if cmd == 0x0090:
                self.regs[0x12] |= 1
            elif cmd == 0x0092:
                self.regs[0x12] &= 0xFE
            elif cmd == 0x0022:
                self.mfg_status ^= 0x10

    def _apply(self, cmd, payload, k):
        if self.commands is not None:
            self.commands.append(cmd)
        if 0x9180 <= cmd < 0x9480:
            if self.regs[0x12] & 1:  # only in CONFIG_UPDATE
                at = cmd - 0x9180
                for i in range(k):
                    self.dm[at + i] = payload[i]
        elif cmd == 0x0083 and not self.ignore_cb:
            self.cb_active = payload[0] | payload[1] << 8
        elif cmd == 0x0097:
            self.fet_control = payload[0]


def data_sum(cmd, payload):
    return ((cmd & 0xFF) + (cmd >> 8) + sum(payload)) & 0xFF
