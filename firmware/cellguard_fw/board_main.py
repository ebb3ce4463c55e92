"""Entry point on a real board: load /board.json, own the USB serial, run the loop.

For the first ``REPL_GRACE_MS`` after boot Ctrl-C still interrupts, so mpremote
and other deploy tools can always take the board back; after that the firmware
owns the port and Ctrl-C (0x03, a legal byte inside a frame) is disabled.
"""

import json
import sys
from select import POLLIN, poll
from time import sleep_ms, ticks_add, ticks_diff, ticks_ms

import micropython
from machine import WDT, Timer, reset

from .app import Bms
from .hal_adc_mux import AdcMuxHal

REPL_GRACE_MS = 3000


class UsbSerialPort:
    """The USB CDC serial the REPL uses, read without blocking."""

    def __init__(self):
        self.stdin = sys.stdin.buffer
        self.stdout = sys.stdout.buffer
        self.poller = poll()
        self.poller.register(sys.stdin, POLLIN)

    def readinto(self, buf):
        n = 0
        while n < len(buf) and self.poller.poll(0):
            chunk = self.stdin.read(1)
            if not chunk:
                break
            buf[n] = chunk[0]
            n += 1
        return n

    def write(self, data):
        return self.stdout.write(data)


def run(board_path="/board.json"):
    with open(board_path) as f:
        board = json.load(f)
    sleep_ms(REPL_GRACE_MS)
    micropython.kbd_intr(-1)
    bms = Bms(board, AdcMuxHal(board), UsbSerialPort())
    # A loop that stops running (a bug, a stuck peripheral) resets the board: the
    # output pin falls back to its default (open) and the firmware boots again.
    wdt = WDT(timeout=board.get("watchdog_ms", 2000))
    period = board["control_period_ms"]
    deadline = ticks_add(ticks_ms(), period)
    while True:
        wdt.feed()
        try:
            bms.poll()
        except Exception:  # a bug in request handling must never stop protection
            bms.link.frame_len = 0
        if bms.reset_requested:
            sleep_ms(50)  # let the ACK leave
            reset()
        if bms.repl_requested:  # the output is open already
            # The watchdog cannot be stopped once started: keep it fed from a
            # timer while the REPL owns the board.
            timer = Timer(-1 if board["mcu"] == "rp2040" else 0)
            timer.init(period=500, mode=Timer.PERIODIC, callback=lambda t: wdt.feed())
            micropython.kbd_intr(3)  # Ctrl-C works again; main.py ends in the REPL
            return
        late = ticks_diff(ticks_ms(), deadline)
        if late < 0:
            sleep_ms(min(-late, 5))
            continue
        if late > period:
            bms.control_overruns += 1
        bms.step(period)
        bms.persist()  # deferred flash writes: after the outputs were driven
        if bms.estimate_due():  # floats, once a second: after the control step
            try:
                bms.estimate()
            except Exception:  # estimation is not protection: it must never stop the loop
                bms.estimator = None
        deadline = ticks_add(deadline, period)
