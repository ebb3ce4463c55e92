"""Entry point on a real board: own the USB serial, run the control loop.

``main.py`` has already disabled Ctrl-C and driven the output off (its first
lines) and chosen between this loop and maintenance mode (docs/firmware.md).
``run`` is given what it touches — the HAL, the port, the clock (``time`` on a
board), the watchdog and the reset — so tests run the same loop under CPython
and under MicroPython with models of them that stall and block.
"""

import json
import sys
import time
from select import POLLIN, POLLOUT, poll

import micropython
from micropython import const

from .app import Bms

# The protocol numbers used here, as folded copies of codec.py's: the board
# interns no name for them (tests/test_firmware_build.py holds them equal).
_EVENT_TRIP = const(2)
_FAULT_FIRMWARE = const(0x400000)
_SEVERITY_FAULT = const(2)
_STATE_FAULT = const(3)

_TX_RING = const(1024)  # bytes of frames waiting for the host to read them
_DRAIN_MS = const(50)  # how long an ACK gets to leave before a reset


class UsbSerialPort:
    """The USB CDC serial the REPL uses; neither direction can block the loop.

    Receive: ``ipoll`` and ``readinto`` into a preallocated byte, allocation-free
    (a board's stdin ``readinto`` waits for the whole buffer, so one byte at a time).
    Send: a frame is queued whole into a preallocated ring or dropped whole and
    counted (``Link.tx_dropped``, in STATS); the loop drains the ring (``flush``)
    after its request handling and after the step's flash writes, one byte at a
    time while the stream has room (POLLOUT), so a host that holds the port open
    without reading never stalls the loop (an rp2 write would wait up to 500 ms)
    and never receives a partial frame.
    """

    def __init__(self, stdin=None, stdout=None):
        self.stdin = sys.stdin.buffer if stdin is None else stdin
        self.stdout = sys.stdout.buffer if stdout is None else stdout
        self.poller = poll()
        self.poller.register(self.stdin, POLLIN)
        self.wpoll = poll()
        self.wpoll.register(self.stdout, POLLOUT)
        self.one = bytearray(1)
        self.ring = bytearray(_TX_RING)
        self.head = 0
        self.used = 0

    def readinto(self, buf):
        one = self.one
        n = 0
        while n < len(buf) and next(self.poller.ipoll(0), None) is not None:
            if not self.stdin.readinto(one):
                break
            buf[n] = one[0]
            n += 1
        return n

    def write(self, data):
        """Queue a whole frame; return its length, or 0 if it was dropped."""
        n = len(data)
        if n > _TX_RING - self.used:
            self.flush()
            if n > _TX_RING - self.used:
                return 0
        ring = self.ring
        at = (self.head + self.used) % _TX_RING
        first = min(n, _TX_RING - at)
        ring[at:at + first] = data[:first]
        if first < n:
            ring[:n - first] = data[first:]
        self.used += n
        return n  # sent by flush(): the loop's, after the step's flash writes

    def flush(self):
        """Send what the stream takes now; never wait for room."""
        one = self.one
        ring = self.ring
        while self.used and next(self.wpoll.ipoll(0), None) is not None:
            one[0] = ring[self.head]
            if not self.stdout.write(one):
                return
            self.head = (self.head + 1) % _TX_RING
            self.used -= 1


def run(board_path="/board.json", hal=None, port=None, clock=time, wdt=None, reset=None,
        boot=None, confirm=None):
    """Run the firmware on a board until it resets; the outputs open on any way out.

    ``clock`` has ``ticks_ms``, ``ticks_add``, ``ticks_diff`` and ``sleep_ms`` (the ``time``
    module); ``wdt`` has ``feed()``; ``reset()`` restarts the board. ``boot`` (main.py's
    boot status and manifest hash, reported in INFO) and ``confirm()``, called once after
    the first full pass of the loop (a build on trial keeps its place), come from the
    slot loader in ``main.py``. ENTER_REPL
    leaves the file ``maintenance`` beside the board file and resets: ``main.py``
    then serves the REPL with the outputs open, no loop and no watchdog.
    """
    micropython.kbd_intr(-1)  # 0x03 is a legal byte inside a frame
    with open(board_path) as f:
        board = json.load(f)
    if boot is not None:
        board["boot"] = boot
    try:  # the lifetime record counts the watchdog's resets
        from machine import WDT_RESET, reset_cause

        board["watchdog_reset"] = reset_cause() == WDT_RESET
    except (ImportError, AttributeError):  # not on a chip (tests under CPython)
        pass
    if hal is None:
        hal = _board_hal(board)
    try:
        if port is None:
            port = UsbSerialPort()
        bms = Bms(board, hal, port)
        if reset is None:
            from machine import reset
        if wdt is None:
            # A loop that stops running (a bug, a stuck peripheral) resets the board:
            # the output pin falls back to open and the firmware boots again.
            from machine import WDT

            wdt = WDT(timeout=board.get("watchdog_ms", 2000))
        _loop(bms, board, port, clock, wdt, confirm)
        if bms.repl_requested:  # the output is open already
            try:
                with open(board_path[:board_path.rfind("/") + 1] + "maintenance", "w") as f:
                    f.write("1")
            except OSError:
                pass
        for _ in range(_DRAIN_MS):  # let the ACK leave
            port.flush()
            clock.sleep_ms(1)
        reset()
    finally:
        hal.set_output(False)
        hal.set_precharge(False)


def _board_hal(board):
    """The board file's HAL: a monitor chip on I2C (``"afe"``), else the MCU's ADC."""
    if "afe" not in board:
        from .hal_adc_mux import AdcMuxHal

        return AdcMuxHal(board)
    from machine import I2C, Pin

    from .hal_bq76952 import Bq76952Hal

    bus = board["pins"]["i2c"]
    i2c = I2C(bus.get("id", 0), scl=Pin(bus["scl"]), sda=Pin(bus["sda"]),
              freq=board["afe"].get("i2c_hz", 400000))
    return Bq76952Hal(board, i2c)


def _loop(bms, board, port, clock, wdt, confirm=None):
    period = board["control_period_ms"]
    # No pass outlasts the watchdog; a longer gap is a clock fault, not time.
    longest = board.get("watchdog_ms", 2000)
    last = clock.ticks_add(clock.ticks_ms(), -period)  # the first step at once
    while True:
        wdt.feed()
        try:
            more = bms.poll()
        except Exception:  # a bug in request handling must never stop protection
            bms.link.frame_len = 0
            more = False
        port.flush()
        if bms.reset_requested or bms.repl_requested:
            return
        now = clock.ticks_ms()
        elapsed = clock.ticks_diff(now, last)
        if elapsed < period:
            if not more:  # the host has nothing waiting: idle a few ms at a time
                clock.sleep_ms(min(period - elapsed, 5))
            continue
        if elapsed > 2 * period:
            bms.control_overruns += 1
        # One step for the time that really passed, however long: a burst of
        # catch-up steps would count a trip delay in milliseconds of real time.
        last = now
        stepped = True
        try:
            bms.step(min(elapsed, longest))
        except Exception:
            _firmware_fault(bms)
            stepped = False
        try:
            bms.persist()  # deferred flash writes: after the outputs were driven
        except Exception:  # a flash error must never stop protection
            pass
        # Then the step's frames: a host that has seen a FAULT_EVENT may cut the
        # power at once, and the event log has it by then.
        port.flush()
        if stepped and bms.estimate_due():  # floats, once a second: after the control step
            try:
                bms.estimate()
            except Exception:  # estimation is not protection: it must never stop the loop
                bms.estimator = None
        if stepped and confirm is not None:  # the first full pass: the build works
            try:
                confirm()
            except Exception:  # a flash error: it stays on trial, never stops the loop
                pass
            confirm = None


def _firmware_fault(bms):
    """The control step raised: open the outputs first, then latch FIRMWARE."""
    hal = bms.hal
    hal.set_output(False)
    hal.set_precharge(False)
    try:
        bms.contactor.step(0, False, 0)
        if not bms.latched & _FAULT_FIRMWARE:
            bms._report_changes(bms.faults | _FAULT_FIRMWARE, 0)
            bms._fault_event(_EVENT_TRIP, _SEVERITY_FAULT, _FAULT_FIRMWARE, 0)
        bms.state = _STATE_FAULT
    except Exception:  # the outputs are open: that is what matters
        pass
