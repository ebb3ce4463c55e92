"""Latched faults in flash: they survive a reset until the host clears them.

Each save is one record: the words, a sequence number one higher than the last
record's, and a CRC-32 over both. It is written to ``path + ".new"`` and then
renamed over ``path`` (on LittleFS a rename replaces the old file atomically;
on FAT, which cannot rename over a file, the old one is removed first). At boot
the valid record with the highest sequence number wins, wherever it is: power
lost after the new record is closed but before the rename still brings back
the new state, never the old one, so a latch once written is never lost. A torn
or corrupt record fails its CRC and is ignored; if no valid record is found the
latches start empty, and a condition that is still present trips again on its
own. Records of the earlier format (no sequence number) are read as sequence 0.
"""

import os
from binascii import crc32
from struct import pack_into, unpack_from


class WordStore:
    """``words`` u32 values in one small file, saved power-loss safe (above)."""

    def __init__(self, path=None, words=1):
        self.path = path or ""  # "": the values live in RAM only
        self.words = words
        self.size = 4 * words + 4  # the words, then the sequence number
        self.buf = bytearray(self.size + 4)
        self.seq = -1  # the last record's sequence number; -1: not read yet
        self.write_errors = 0

    def load_words(self):
        """The words saved last (a tuple), or None."""
        if not self.path:
            return None
        n = self.size
        best = None
        self.seq = 0
        for name in (self.path, self.path + ".new"):
            try:
                with open(name, "rb") as f:
                    data = f.read(n + 4)
            except OSError:
                continue
            if len(data) == n + 4 and crc32(data[:n]) == unpack_from("<L", data, n)[0]:
                seq = unpack_from("<L", data, n - 4)[0]
            elif len(data) == n and crc32(data[:n - 4]) == unpack_from("<L", data, n - 4)[0]:
                seq = 0  # the earlier format: no sequence number
            else:
                continue
            if best is None or seq > self.seq:
                best = data
                self.seq = seq
                newest = name
        if best is None:
            return None
        if newest != self.path:  # finish the interrupted save: the next one
            try:  # writes ``.new`` again, over this record
                self._replace(newest)
            except OSError:
                pass
        return unpack_from("<%dL" % self.words, best, 0)

    def save_words(self, *values):
        if not self.path:
            return
        if self.seq < 0:
            self.load_words()  # the next record must be the newest
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        buf = self.buf
        n = self.size
        for i in range(self.words):
            pack_into("<L", buf, 4 * i, values[i])
        pack_into("<L", buf, n - 4, self.seq)
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
            os.rename(new, self.path)  # replaces the old record atomically
        except OSError:  # FAT cannot rename over a file
            os.remove(self.path)
            os.rename(new, self.path)


class LatchStore(WordStore):
    """The latch word: fault bits that stay latched until CLEAR_FAULTS."""

    def load(self):
        """The latched fault bits saved last, or 0."""
        words = self.load_words()
        return words[0] if words else 0

    def save(self, bits):
        self.save_words(bits)
