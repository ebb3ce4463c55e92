# cellguard firmware entry point on a board (docs/firmware.md, "Boot and maintenance mode",
# "Slots and fallback"). Stable: a deploy writes a new build into the other slot and
# switches with one atomic rename of /slots.json; this file only picks the slot.
import micropython

micropython.kbd_intr(-1)  # at once: a 0x03 from the host (TIME_SYNC) must not stop the boot
import json  # noqa: E402
import os  # noqa: E402

from machine import Pin  # noqa: E402

# The boot record: {"active": "a"} runs /a/; a deploy adds "trial": "b" (run /b/ once);
# this boot marks it "tried"; the trial's first full control-loop pass confirms it
# ({"active": "b"}); a trial still unconfirmed at the next boot falls back ("failed").
# No record: the firmware sits at the root (a board set up by hand).
_r = {}
for _n in ("/slots.json", "/slots.new"):  # .new: a switch cut on a filesystem without
    try:  # an atomic rename over a file (the old record removed, the new one not renamed)
        with open(_n) as _f:
            _r = json.load(_f)
        break
    except (OSError, ValueError):
        pass
_a = _r.get("active", "")
_t = _r.get("trial") if "tried" not in _r else None  # on trial now
_s = 2 if _t else 3 if "tried" in _r else 4 if "failed" in _r else 1 if _r else 0


def _put(r):
    # The whole record or none: written beside, then renamed over (atomic on LittleFS).
    with open("/slots.new", "w") as f:
        json.dump(r, f)
    try:
        os.rename("/slots.new", "/slots.json")
    except OSError:  # FAT: no rename over a file; a cut now leaves slots.new (read above)
        os.remove("/slots.json")
        os.rename("/slots.new", "/slots.json")


def _off(d):
    # The outputs off: until driven they float (ESP32) or hang on a weak pull-down (RP2040).
    with open(d + "board.json") as f:
        p = json.load(f)["pins"]
    if "output" in p:  # (a board whose monitor chip drives the FETs has no output pin)
        Pin(p["output"], Pin.OUT, value=0)
    if "precharge" in p:
        Pin(p["precharge"], Pin.OUT, value=0)
    return p


_d = "/" + _t + "/" if _t else "/" + _a + "/" if _a else "/"
try:
    _p = _off(_d)
except Exception:  # a trial whose board file does not load falls back at once
    if not _t:
        raise
    _t, _s, _d = None, 3, "/" + _a + "/" if _a else "/"
    _r["tried"] = 1
    _p = _off(_d)
try:
    os.remove(_d + "maintenance")  # ENTER_REPL left it: serve the REPL once, the next reset runs
    _f = True
except OSError:  # or the board file's repl_pin held low at boot
    _f = "repl_pin" in _p and Pin(_p["repl_pin"], Pin.IN, Pin.PULL_UP).value() == 0
if _f:  # maintenance: outputs open, no control loop, no watchdog, the trial untouched
    micropython.kbd_intr(3)
    print("cellguard: maintenance mode, output open; reset to run the firmware")
else:
    if _t:  # run the trial once: unless it confirms, the next boot falls back
        _r["tried"] = 1
        _put(_r)
    elif _s == 3:
        _put({"active": _a, "failed": _r["trial"]})
    _b = bytearray(1)
    _b[0] = _s
    try:
        with open(_d + "manifest.json") as _f:
            _b.extend(bytes.fromhex(json.load(_f)["sha256"]))
    except (OSError, ValueError, KeyError):  # no build manifest: the status alone
        pass

    def _ok():
        # The trial reached its control loop: it is the firmware from now on.
        if _b[0] == 2:
            try:
                _put({"active": _t})
                _b[0] = 1
            except OSError:
                pass

    import sys  # noqa: E402

    if _d != "/":
        sys.path.insert(0, _d[:-1])
    del _f, _n, _p, _r
    try:
        from cellguard_fw.board_main import run  # noqa: E402

        run(_d + "board.json", boot=_b, confirm=_ok)
    except Exception:
        if _b[0] != 2:  # a confirmed build stops at the REPL, as ever
            raise
        from machine import reset  # noqa: E402

        reset()  # a trial that crashes before its loop: the next boot falls back
