# cellguard firmware entry point on a board (docs/firmware.md, "Boot and maintenance mode",
# "Slots and fallback", "Verified at boot"). Stable: a deploy writes a new build into the
# other slot and switches with one atomic rename of /slots.json; this file only picks the
# slot and checks its files before any of them runs.
import micropython

micropython.kbd_intr(-1)  # at once: a 0x03 from the host (TIME_SYNC) must not stop the boot
import json  # noqa: E402
import os  # noqa: E402

from machine import Pin  # noqa: E402

# The boot record: {"active": "a"} runs /a/; a deploy adds "trial": "b" (run /b/ once);
# this boot marks it "tried"; the trial's first full control-loop pass confirms it
# ({"active": "b", "min": its version}); a trial still unconfirmed at the next boot falls
# back ("failed"). "min": the oldest firmware_version a slot may run (rollback).
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


def _chk(d, mn):
    # The build in d against its manifest.json, before any of it runs: (status, manifest).
    # 0: each file it lists is there with its size and SHA-256, its set hash is theirs and
    # the slot (its cellguard_fw/ at the root) holds nothing else (or the root holds no
    # manifest: set up by hand);
    # 5: not so; 6: its firmware_version is below mn, the record's minimum (a rollback).
    try:
        with open(d + "manifest.json") as f:
            m = json.load(f)
    except OSError:
        return 5 if d != "/" else 0, None
    except ValueError:
        return 5, None
    if mn:
        try:  # dotted integers, part by part: 0.10.0 is above 0.9.1
            if [int(x) for x in m["firmware_version"].split(".")] < [
                    int(x) for x in mn.split(".")]:
                return 6, m
        except (KeyError, ValueError, TypeError, AttributeError):
            return 6, m
    from hashlib import sha256

    b = bytearray(1024)  # one buffer, 1 KB at a time: never a whole file on the heap
    v = memoryview(b)
    w = set()
    s = sha256()  # the set hash: lines "<sha256> <path>", sorted by path (as listed)
    try:
        for e in m["files"]:
            p = e["path"]
            x = e["sha256"]
            s.update((x + " " + p + "\n").encode())
            if p == "main.py":  # this loader: outside the slots, shared by both
                continue
            w.add(p)
            h = sha256()
            n = 0
            with open(d + p, "rb") as f:
                while True:
                    k = f.readinto(b)
                    if not k:
                        break
                    h.update(b if k == 1024 else v[:k])
                    n += k
            if n != e["size"] or h.digest() != bytes.fromhex(x):
                return 5, m
        if s.digest() != bytes.fromhex(m["sha256"]):
            return 5, m
        for x in os.listdir(d + "cellguard_fw"):  # a module it does not list would import
            if "cellguard_fw/" + x not in w:
                return 5, m
        if d != "/":  # ... and so would one beside it: the slot's folder is on the path
            for x in os.listdir(d[:-1]):  # (a time.py there would stand in for time)
                if x != "manifest.json" and x != "cellguard_fw" and x not in w:
                    return 5, m
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 5, m
    return 0, m


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
    # Verified at boot: a build whose files differ from its manifest (5) or older than
    # the record's minimum (6) runs with its outputs held open (app.py: the firmware
    # fault, active while it runs) to tell the host why; a trial refused so falls back
    # at once, unrun (7, 8), as one whose board file does not load.
    _n = _r.get("min", "")
    _c, _m = _chk(_d, _n)
    if _c and _t:
        _t, _s, _d = None, _c + 2, "/" + _a + "/" if _a else "/"
        _r["tried"] = 1
        _p = _off(_d)
        _c, _m = _chk(_d, _n)
    if _t:  # run the trial once: unless it confirms, the next boot falls back
        _r["tried"] = 1
        _put(_r)
    elif "tried" in _r:
        _f = {"active": _a, "failed": _r["trial"]}
        if _n:
            _f["min"] = _n
        _put(_f)
    _b = bytearray(1)
    _b[0] = _c or _s
    _n = ""  # the trial's version: the record's minimum once it confirms
    try:
        _b.extend(bytes.fromhex(_m["sha256"]))
        _n = _m["firmware_version"]
    except (ValueError, KeyError, TypeError):  # no build manifest: the status alone
        pass

    def _ok():
        # The trial reached its control loop: it is the firmware from now on, and no
        # older build may run again (a downgrade: docs/firmware.md, "Verified at boot").
        if _b[0] == 2:
            try:
                _put({"active": _t, "min": _n} if _n else {"active": _t})
                _b[0] = 1
            except OSError:
                pass

    import gc  # noqa: E402
    import sys  # noqa: E402

    if _d != "/":
        sys.path.insert(0, _d[:-1])
    del _c, _chk, _f, _m, _p, _r
    gc.collect()  # the check's garbage (the manifest, the buffer), before the firmware
    try:
        from cellguard_fw.board_main import run  # noqa: E402

        run(_d + "board.json", boot=_b, confirm=_ok)
    except Exception:
        if _b[0] != 2:  # a confirmed build stops at the REPL, as ever
            raise
        from machine import reset  # noqa: E402

        reset()  # a trial that crashes before its loop: the next boot falls back
