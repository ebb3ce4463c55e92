"""Simulated time for board code under MicroPython: ``time``'s ticks on
simulated milliseconds (sleeping advances them), and a watchdog whose ``feed``
ends the run when the time is up."""

_MASK = 0x3FFFFFFF
_HALF = 0x20000000


class EndOfRun(Exception):
    pass


class SimClock:
    def __init__(self, end_ms):
        self.now = 0
        self.end_ms = end_ms
        self.feeds = 0

    def ticks_ms(self):
        return self.now & _MASK

    def ticks_add(self, a, delta):
        return (a + delta) & _MASK

    def ticks_diff(self, a, b):
        return ((a - b + _HALF) & _MASK) - _HALF

    def sleep_ms(self, ms):
        self.now += ms

    def feed(self):
        self.feeds += 1
        if self.now >= self.end_ms:
            raise EndOfRun()
