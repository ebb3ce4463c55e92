# cellguard firmware entry point on a board (docs/firmware.md, "Boot and maintenance mode").
import micropython

micropython.kbd_intr(-1)  # at once: a 0x03 from the host (TIME_SYNC) must not stop the boot
import json  # noqa: E402
import os  # noqa: E402

from machine import Pin  # noqa: E402

with open("/board.json") as _f:
    _pins = json.load(_f)["pins"]
# The outputs off before anything else: the pins float (ESP32) or hang on a weak
# pull-down (RP2040) until driven.
Pin(_pins["output"], Pin.OUT, value=0)
if "precharge" in _pins:
    Pin(_pins["precharge"], Pin.OUT, value=0)
try:
    os.remove("/maintenance")  # ENTER_REPL left it: serve the REPL once, the next reset runs
    _repl = True
except OSError:  # or the board file's repl_pin held low at boot
    _repl = "repl_pin" in _pins and Pin(_pins["repl_pin"], Pin.IN, Pin.PULL_UP).value() == 0
if _repl:  # maintenance: outputs open, no control loop, no watchdog
    micropython.kbd_intr(3)
    print("cellguard: maintenance mode, output open; reset to run the firmware")
else:
    del _f, _pins, _repl
    from cellguard_fw.board_main import run

    run()
