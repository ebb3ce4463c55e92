"""The event log: the board's history of trips, releases, clears and changes.

A ring of ``capacity`` events in preallocated arrays; index ``i`` (counting from
0 at first boot) lives at slot ``i % capacity``, so the newest ``capacity``
events are kept and a reader can ask from any index it has not seen.
Persistence across resets comes with the fault latches (flash storage).
"""

from array import array


class EventLog:
    def __init__(self, capacity=64):
        self.capacity = capacity
        self.total = 0
        self.times_ms = array("L", [0] * capacity)
        self.unix_times = array("L", [0] * capacity)
        self.kinds = bytearray(capacity)
        self.codes = array("L", [0] * capacity)
        self.values = array("l", [0] * capacity)

    def add(self, kind, code, value, time_ms, unix_time):
        """Record an event; return its index."""
        index = self.total
        slot = index % self.capacity
        self.times_ms[slot] = time_ms & 0xFFFFFFFF
        self.unix_times[slot] = unix_time
        self.kinds[slot] = kind
        self.codes[slot] = code
        self.values[slot] = value
        self.total = index + 1
        return index

    def oldest(self):
        return max(0, self.total - self.capacity)

    def page(self, first_index, max_count):
        """The indexes of at most ``max_count`` events from ``first_index`` on."""
        start = max(first_index, self.oldest())
        end = min(self.total, start + max_count)
        return range(start, max(start, end))
