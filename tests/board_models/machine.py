"""A stand-in for MicroPython's ``machine`` module, for the firmware's board code
under the WebAssembly port (which has none). It records, in order, what the
code does to pins, the watchdog and the reset into ``log`` (shared with the
``micropython`` recorder in ``recorders.py``); input levels come from ``levels``.
Only what main.py and board_main touch: the virtual dev board builds the full one.
"""

log = []
levels = {}  # pin id -> level an input reads (default: its pull)


class Reset(Exception):
    """machine.reset() was called: the board restarts (the test ends the run)."""


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.pull = pull
        log.append(("Pin", id, mode, value))

    def value(self, v=None):
        if v is None:
            return levels.get(self.id, 1 if self.pull == Pin.PULL_UP else 0)
        log.append(("value", self.id, v))
        return None


class WDT:
    def __init__(self, id=0, timeout=5000):
        log.append(("WDT", timeout))

    def feed(self):
        pass


def reset():
    log.append(("reset",))
    raise Reset()


def unique_id():
    return b"\x01\x02\x03\x04\x05\x06\x07\x08"
