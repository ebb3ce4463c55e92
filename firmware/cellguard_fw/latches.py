"""Latched faults in flash: they survive a reset until the host clears them.

The latch word is written write-new-then-rename: the new state goes to
``path + ".new"`` (with a CRC-32), the old file is removed and the new one
renamed over it. Power lost at any point leaves a valid file — the old state
while the new file is incomplete, the new state once it is whole — so a torn
write never bricks the board and never loses a latch that was written. A file
that fails its CRC is ignored; if no valid file is found the latches start
empty, and a condition that is still present trips again on its own.
"""

import os
from binascii import crc32
from struct import pack_into, unpack_from


class LatchStore:
    def __init__(self, path=None):
        self.path = path or ""  # "": latches live in RAM only
        self.buf = bytearray(8)
        self.write_errors = 0

    def load(self):
        """The latched fault bits saved last, or 0."""
        if not self.path:
            return 0
        for name in (self.path, self.path + ".new"):
            try:
                with open(name, "rb") as f:
                    data = f.read(8)
            except OSError:
                continue
            if len(data) == 8 and crc32(data[:4]) == unpack_from("<L", data, 4)[0]:
                if name != self.path:  # finish an interrupted save
                    self._replace(name)
                return unpack_from("<L", data, 0)[0]
        return 0

    def save(self, bits):
        if not self.path:
            return
        buf = self.buf
        pack_into("<L", buf, 0, bits)
        pack_into("<L", buf, 4, crc32(memoryview(buf)[:4]))
        new = self.path + ".new"
        try:
            with open(new, "wb") as f:
                f.write(buf)
            self._replace(new)
        except OSError:
            self.write_errors += 1  # a failing flash must not stop protection

    def _replace(self, new):
        try:
            os.remove(self.path)  # FAT cannot rename over a file; LittleFS can
        except OSError:
            pass
        os.rename(new, self.path)
