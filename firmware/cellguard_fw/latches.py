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


class WordStore:
    """``words`` u32 values in one small file, saved power-loss safe (above)."""

    def __init__(self, path=None, words=1):
        self.path = path or ""  # "": the values live in RAM only
        self.words = words
        self.size = 4 * words
        self.buf = bytearray(self.size + 4)
        self.write_errors = 0

    def load_words(self):
        """The words saved last (a tuple), or None."""
        if not self.path:
            return None
        n = self.size
        for name in (self.path, self.path + ".new"):
            try:
                with open(name, "rb") as f:
                    data = f.read(n + 4)
            except OSError:
                continue
            if len(data) == n + 4 and crc32(data[:n]) == unpack_from("<L", data, n)[0]:
                if name != self.path:  # finish an interrupted save
                    self._replace(name)
                return unpack_from("<%dL" % self.words, data, 0)
        return None

    def save_words(self, *values):
        if not self.path:
            return
        buf = self.buf
        n = self.size
        for i in range(self.words):
            pack_into("<L", buf, 4 * i, values[i])
        pack_into("<L", buf, n, crc32(memoryview(buf)[:n]))
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


class LatchStore(WordStore):
    """The latch word: fault bits that stay latched until CLEAR_FAULTS."""

    def load(self):
        """The latched fault bits saved last, or 0."""
        words = self.load_words()
        return words[0] if words else 0

    def save(self, bits):
        self.save_words(bits)
