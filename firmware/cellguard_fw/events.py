"""The event log: the board's history of trips, releases, clears and changes.

A ring of ``capacity`` events in preallocated arrays; index ``i`` (counting
from 0 at the first boot ever) lives at slot ``i % capacity``, so the newest
``capacity`` events are kept and a reader can ask from any index it has not
seen.

With a ``path`` the log survives resets and power loss: :meth:`add` only
stores in RAM (it runs inside the control step); :meth:`flush`, called after
the step, appends the new events to the file in one batch, each as one
fixed-size record with its own CRC-32, so a write torn by
power loss costs at most that one record and never the records before it. When
the file holds twice the ring, the newest ``capacity`` records are written to
``path + ".new"`` and renamed over the old file; a crash between the two steps
leaves the ``.new`` file, which the next boot uses.
"""

import os
from array import array
from binascii import crc32
from struct import pack_into, unpack_from

from micropython import const

RECORD_FMT = "<LLLBLl"  # index, board time ms, Unix time, kind, code, value
_RECORD_BODY = const(21)
RECORD_SIZE = const(25)  # plus CRC-32


class EventLog:
    def __init__(self, capacity=64, path=None):
        self.capacity = capacity
        self.total = 0
        self.times_ms = array("L", [0] * capacity)
        self.unix_times = array("L", [0] * capacity)
        self.kinds = bytearray(capacity)
        self.codes = array("L", [0] * capacity)
        self.values = array("l", [0] * capacity)
        self.path = path or ""  # "": kept in RAM only
        self.record = bytearray(RECORD_SIZE)
        self.file_records = 0
        self.dropped_records = 0  # torn or corrupt records found at load
        if path:
            self._load()
        self.saved = self.total  # events before this index are in the file
        self.lost = 0  # events the ring overwrote before they reached the file

    def add(self, kind, code, value, time_ms, unix_time):
        """Record an event in RAM; return its index. It reaches the file at the
        next :meth:`flush` (no flash I/O here: the control step calls this)."""
        index = self.total
        self._store(index, time_ms & 0xFFFFFFFF, unix_time, kind, code, value)
        self.total = index + 1
        return index

    def flush(self):
        """Append the events not in the file yet, in one batch (one open and
        close). The ring is the queue: events it overwrote before a flush are
        counted in ``lost``."""
        first = self.saved
        if first < self.oldest():
            self.lost += self.oldest() - first
            first = self.oldest()
        self.saved = self.total
        if not self.path or first >= self.total:
            return
        try:
            with open(self.path, "ab") as f:
                for index in range(first, self.total):
                    f.write(self._pack(index))
        except OSError:
            return  # a full or failing flash must not stop protection
        self.file_records += self.total - first
        if self.file_records >= 2 * self.capacity:
            self._compact()

    def _store(self, index, time_ms, unix_time, kind, code, value):
        slot = index % self.capacity
        self.times_ms[slot] = time_ms
        self.unix_times[slot] = unix_time
        self.kinds[slot] = kind
        self.codes[slot] = code
        self.values[slot] = value

    def oldest(self):
        return max(0, self.total - self.capacity)

    def page(self, first_index, max_count):
        """The indexes of at most ``max_count`` events from ``first_index`` on."""
        start = max(first_index, self.oldest())
        end = min(self.total, start + max_count)
        return range(start, max(start, end))

    # -- persistence ---------------------------------------------------------
    def _pack(self, index):
        slot = index % self.capacity
        rec = self.record
        pack_into(RECORD_FMT, rec, 0, index, self.times_ms[slot], self.unix_times[slot],
                  self.kinds[slot], self.codes[slot], self.values[slot])
        pack_into("<L", rec, _RECORD_BODY, crc32(memoryview(rec)[:_RECORD_BODY]))
        return rec

    def _compact(self):
        new = self.path + ".new"
        try:
            with open(new, "wb") as f:
                for index in range(self.oldest(), self.total):
                    f.write(self._pack(index))
            try:
                os.rename(new, self.path)  # atomic over the old file on LittleFS
            except OSError:  # FAT cannot rename over a file
                os.remove(self.path)
                os.rename(new, self.path)
        except OSError:
            return
        self.file_records = self.total - self.oldest()

    def _load(self):
        for name in (self.path, self.path + ".new"):
            try:
                with open(name, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            self._replay(data)
            if name != self.path:  # finish the interrupted compaction
                try:
                    os.rename(name, self.path)
                except OSError:
                    pass
            return

    def _replay(self, data):
        count = 0
        last = -1
        for at in range(0, len(data) - RECORD_SIZE + 1, RECORD_SIZE):
            if crc32(data[at : at + _RECORD_BODY]) != unpack_from("<L", data, at + _RECORD_BODY)[0]:
                self.dropped_records += 1
                continue
            index, time_ms, unix, kind, code, value = unpack_from(RECORD_FMT, data, at)
            if index <= last:
                self.dropped_records += 1
                continue
            self._store(index, time_ms, unix, kind, code, value)
            last = index
            count += 1
        if len(data) % RECORD_SIZE:
            self.dropped_records += 1  # a torn last record
        self.total = last + 1
        self.file_records = count
