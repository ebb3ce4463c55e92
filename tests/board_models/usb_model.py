"""A model of a board's USB CDC serial stream for ``board_main.UsbSerialPort``,
under MicroPython (an ``io.IOBase`` stream that ``select.poll`` can watch).

Receive: bytes the host sent wait in ``rx``. Send: ``room`` is what the USB
buffer takes now (the host reading makes room). A write of more than ``room``
is what blocks on an rp2 (``mp_usbd_cdc_tx_strn`` waits up to 500 ms, then
writes what fits): it is counted in ``blocked`` and ``blocked_ms`` and writes
only what fits, as the board would after the wait.
"""

import io

_POLL = 3  # MP_STREAM_POLL
_RD = 1
_WR = 4
BLOCK_MS = 500


class UsbStream(io.IOBase):
    def __init__(self, rx_size=512, tx_size=8192):
        self.rx = bytearray(rx_size)
        self.rx_len = 0
        self.rx_at = 0
        self.tx = bytearray(tx_size)
        self.tx_len = 0
        self.room = 64
        self.blocked = 0
        self.blocked_ms = 0
        self.clock = None  # a SimClock: a blocked write takes its time

    def feed(self, data):
        """The host sends ``data`` (call with the heap unlocked)."""
        for b in data:
            self.rx[self.rx_len] = b
            self.rx_len += 1

    def take(self):
        """The host reads everything the board wrote; returns it."""
        out = bytes(self.tx[:self.tx_len])
        self.tx_len = 0
        return out

    def ioctl(self, req, arg):
        if req != _POLL:
            return 0
        ready = 0
        if arg & _RD and self.rx_at < self.rx_len:
            ready |= _RD
        if arg & _WR and self.room > 0:
            ready |= _WR
        return ready

    def readinto(self, buf):
        # As a board's stdin: waits for len(buf) bytes; this model has no one to wait for.
        n = 0
        while n < len(buf) and self.rx_at < self.rx_len:
            buf[n] = self.rx[self.rx_at]
            self.rx_at += 1
            n += 1
        return n

    def read(self, n):
        buf = bytearray(n)  # allocates, as stdin.buffer.read does
        return bytes(buf[:self.readinto(buf)])

    def write(self, data):
        n = len(data)
        if n > self.room:
            self.blocked += 1
            self.blocked_ms += BLOCK_MS
            if self.clock is not None:
                self.clock.now += BLOCK_MS
            n = self.room
        for i in range(n):
            self.tx[self.tx_len] = data[i]
            self.tx_len += 1
        self.room -= n
        return n
