"""What the BQ76952 driver and HAL need only while the firmware starts, and again
when the chip has reset (Battery Status POR): the HAL's board-file parsing, the
chip's data memory (read, written in CONFIG_UPDATE and verified), FET_ENABLE,
the threshold encoding of its protections, and the settings they make.

A board would otherwise keep this code in RAM for good. ``Bq76952Hal`` imports
the module for its start, for ``arm`` and for a reset chip, and each time calls
:func:`release` after: the module leaves ``sys.modules`` and the package, and the
next collection frees it. Nothing the firmware keeps may point into it (a
function or class from here would hold the whole module).

The functions take the driver (``bq76952.Bq76952``) or the HAL as their first
argument; see docs/bq76952.md.
"""

import sys
from array import array

from micropython import const

from .bq76952 import CRC_TABLE, Bq76952, ChipChannel

_RESET = const(0x0012)
_FET_ENABLE = const(0x0022)
_MFG_STATUS = const(0x0057)
_SET_CFGUPDATE = const(0x0090)
_EXIT_CFGUPDATE = const(0x0092)
_FET_CONTROL = const(0x0097)
_BATTERY = const(0x12)
_E_VERIFY = const(4)  # the driver's error kind: a write read back different
_TRIES = const(3)
_POLLS = const(20)
_CFG_POLL_US = const(5000)  # entering or leaving CONFIG_UPDATE: up to 100 ms


def crc8(data, crc=0):
    """CRC-8 (polynomial 0x07, initial 0) of ``data``, continuing from ``crc``."""
    t = CRC_TABLE
    for i in range(len(data)):
        crc = t[crc ^ data[i]]
    return crc


# -- threshold encoding ----------------------------------------------------------
# Every name this module has (functions, arguments, globals, attributes, strings of
# up to 10 characters) is interned when it loads and stays on the board after the
# module is released: so the kinds are numbers here, tables are bytes, and the
# names of the settings are one long string (longer strings are not interned).
_COV = const(0)
_CUV = const(1)
_OCC = const(2)
_OCD = const(3)
_SCD = const(4)
_TEMP_HI = const(5)
_TEMP_LO = const(6)
_T_DELAY = const(7)
_V_DELAY = const(8)
_OC_DELAY = const(9)
_SCD_DELAY = const(10)


def scd_mv(code):
    """The SCD threshold (mV across the shunt) of setting ``code`` (0..15)."""
    if code < 11:  # Protections:SCD:Threshold 0..10: 10..250 mV, one byte each
        return b"\x0a\x14\x28\x3c\x50\x64\x7d\x96\xaf\xc8\xfa"[code]
    return 300 + 50 * (code - 11)


def encode(kind, value, shunt_uohm=0):
    """A protection setting's register code: ``(code, clamped)``.

    ``kind``: "cov" / "cuv" (cell mV, 50.6 mV steps: COV rounds up, CUV down, so
    the chip trips beyond the given limit), "occ" / "ocd" (mA through a shunt of
    ``shunt_uohm``, 2 mV steps, rounded up), "scd" (mA, the first of the 16 SCD
    thresholds at or above it), "temp_hi" / "temp_lo" (0.1 degC to whole degC, up
    / down), "v_delay" (COV/CUV delay, ms, 3.3 ms steps), "oc_delay" (OCC/OCD
    delay, ms, 3.3 ms steps with a 6.6 ms offset), "t_delay" (OTC/OTD/UTC/UTD delay,
    ms, whole seconds), "scd_delay" (us, 15 us steps,
    1 = no delay). Every code rounds away from tripping early (delays round up).
    A value beyond the register's range gives the nearest end and ``clamped``
    True: never a wrapped value. (The module passes the kinds as their numbers.)
    """
    k = kind
    if not isinstance(k, int):  # the name: its number
        kinds = "cov cuv occ ocd scd temp_hi temp_lo t_delay v_delay oc_delay scd_delay".split()
        k = kinds.index(kind) if kind in kinds else -1
    if k == _COV:
        code, lo, hi = -(-value * 10 // 506), 20, 110
    elif k == _CUV:
        code, lo, hi = value * 10 // 506, 20, 90
    elif k == _OCC or k == _OCD:
        code = -(-value * shunt_uohm // 2000000)  # mA * uOhm = nV; 2 mV steps
        lo, hi = 2, 62 if k == _OCC else 100
    elif k == _SCD:
        nv = value * shunt_uohm
        code = 16
        for i in range(16):
            if scd_mv(i) * 1000000 >= nv:
                code = i
                break
        lo, hi = 0, 15
    elif k == _TEMP_HI:
        code, lo, hi = -(-value // 10), -40, 120
    elif k == _TEMP_LO:
        code, lo, hi = value // 10, -40, 120
    elif k == _T_DELAY:
        code, lo, hi = -(-value // 1000), 0, 255
    elif k == _V_DELAY:
        code, lo, hi = -(-value * 10 // 33), 1, 2047
    elif k == _OC_DELAY:
        code, lo, hi = -(-value * 10 // 33) - 2, 1, 127
    elif k == _SCD_DELAY:
        code, lo, hi = -(-value // 15) + 1, 1, 31
    else:
        raise ValueError("unknown protection setting %s" % (kind,))
    if code < lo:
        return lo, True
    if code > hi:
        return hi, True
    return code, False


def gains(shunt_uohm):
    """Calibration:Current:CC Gain and Capacity Gain for a shunt (TRM: CC Gain =
    7.4768 / R in mOhm, Capacity Gain = CC Gain * 298261.6178), as the F4 values'
    32-bit patterns (the chip's data memory is little-endian IEEE 754)."""
    from struct import pack, unpack

    cc = 7.4768 * 1000 / shunt_uohm
    return (unpack("<I", pack("<f", cc))[0], unpack("<I", pack("<f", cc * 298261.6178))[0])


def control_bits(on):
    """FET_CONTROL's byte (FET test mode: bit 0 DSG_OFF, 1 PDSG_OFF, 2 CHG_OFF,
    3 PCHG_OFF) that leaves on the FETs set in ``on``, a mask in FET Status order
    (bit 0 CHG, 1 PCHG, 2 DSG, 3 PDSG)."""
    off = ~on
    return ((off >> 2) & 1) | ((off >> 3) & 1) << 1 | (off & 1) << 2 | ((off >> 1) & 1) << 3


# -- the driver: direct commands, subcommands, data memory -------------------------
def init(d):
    """``Bq76952(i2c, address, crc, sleep)``: the driver's buffers, views of them,
    readings and counters (every attribute the control step uses but the bus's);
    then this module is released."""
    try:
        # One buffer for every transfer: a read's data (with CRC: data and CRC
        # bytes, decoded in place), a write's bytes on the wire. ``tx``: a write's
        # data, kept for its retries.
        d.buf = bytearray(84)  # the longest transfer: the main block with CRC
        d.tx = bytearray(36)
        # buf[:n] for the transfer lengths of the measurement path and of the FET
        # and balancing commands (CRC off and on), made once: slicing a memoryview
        # allocates. Other lengths (data memory, at start-up) get a view for the one
        # transfer, which is not kept.
        buf = memoryview(d.buf)
        d.views = {n: buf[:n] for n in b"\x01\x02\x04\x05\x06\x09\x0c\x14\x28\x2a\x54"}
        # measurements (converted)
        d.cells = array("h", [0] * 16)  # mV
        d.temps = array("h", [0] * 7)  # 0.1 K: Int, CFETOFF, DFETOFF, ALERT, TS1..TS3
        d.safety = bytearray(6)  # Alert A, Status A, Alert B, Status B, ...
        d.stack_mv = 0
        d.pack_mv = 0
        d.ld_mv = 0
        d.current_ma = 0
        d.battery_status = 0
        d.alarm_status = 0
        d.fet_status = 0
        # DA Configuration (:func:`units`): user-amps in mA (0: 0.1 mA),
        # user-volts in mV; the default 0x05 is 1 mA, cV
        d.amps = 1
        d.volts = 10
        # by kind: bus (NACK), CRC, checksum, busy, verify, timeout, failed cycles
        d.errors = array("H", [0] * 7)
        d.failed = 0  # measurement cycles failed in a row
        d.dead = False
    finally:
        release()


def units(d, da):
    """Convert with DA Configuration ``da`` (USER_AMPS bits 0-1, USER_VOLTS_CV bit 2)."""
    d.amps = (0, 1, 10, 100)[da & 3]  # 0: 0.1 mA
    d.volts = 10 if da & 4 else 1


def read_reg(d, reg):
    """A 16-bit direct command's value (unsigned), or -1."""
    if not d._read(reg, 2):
        return -1
    return d.buf[0] | d.buf[1] << 8


def write_reg(d, reg, value):
    """Write a 16-bit direct command (e.g. 0x66 Alarm Enable); True when sent."""
    d.tx[0] = value & 0xFF
    d.tx[1] = (value >> 8) & 0xFF
    return d._write(reg, 2)


def subcommand(d, cmd):
    """Send a command-only subcommand (e.g. 0x0022 FET_ENABLE); True when sent."""
    return d._command(cmd)


def dm_read(d, addr, size):
    """The unsigned little-endian value of ``size`` bytes at ``addr``, or -1."""
    if d.query(addr) < size:
        return -1
    b = d.buf
    v = 0
    for i in range(size - 1, -1, -1):
        v = v << 8 | b[i]
    return v


def dm_write(d, addr, size, value):
    """Write and read back (the chip must be in CONFIG_UPDATE); True if it holds."""
    for _ in range(_TRIES):
        tx = d.tx
        for i in range(size):
            tx[2 + i] = (value >> (8 * i)) & 0xFF
        if d._command(addr, size) and dm_read(d, addr, size) == value:
            return True
        d._count(_E_VERIFY)
    return False


def cfgupdate(d, on):
    """Enter (``on``) or leave CONFIG_UPDATE and wait for Battery Status to show it."""
    if not d._command(_SET_CFGUPDATE if on else _EXIT_CFGUPDATE):
        return False
    for _ in range(_POLLS):
        if d._read(_BATTERY, 2) and (d.buf[0] & 1) == (1 if on else 0):
            return True
        d.sleep(_CFG_POLL_US)
    d._count(_E_VERIFY)
    return False


def configure(d, settings):
    """Bring data memory to ``settings`` (``(address, size, value)``, values
    unsigned): read every one back first and enter CONFIG_UPDATE (which turns
    the FETs off) only if one differs, so a restart neither disturbs a chip
    that has its settings nor clears the protections it has tripped. True
    when every setting holds; ``d.written`` counts the values written."""
    d.written = 0
    todo = []
    # A data-memory read answers 32 bytes from its address: in address order,
    # one read serves every setting that lies within it.
    block = bytearray(32)
    at = -1
    for addr, size, value in sorted(settings):
        if at < 0 or not at <= addr <= at + 32 - size:
            n = d.query(addr)
            if n < size:
                return False
            at = addr
            for i in range(n):
                block[i] = d.buf[i]
            if n < 32:
                at = -1  # a short answer serves this setting only
        got = 0
        for i in range(size - 1, -1, -1):
            got = got << 8 | block[addr - (at if at >= 0 else addr) + i]
        if got != value:
            todo.append((addr, size, value))
    if not todo:
        return True
    if not cfgupdate(d, True):
        return False
    ok = True
    for addr, size, value in todo:
        if dm_write(d, addr, size, value):
            d.written += 1
        else:
            ok = False
    return cfgupdate(d, False) and ok


def fet_enable(d):
    """Leave FET test mode: FET_EN (Manufacturing Status bit 4) set, by FET_ENABLE
    (a toggle) only if it is clear. True when set."""
    if d.query(_MFG_STATUS) < 2:
        return False
    if d.buf[0] & 0x10:
        return True
    return d._command(_FET_ENABLE) and d.query(_MFG_STATUS) >= 2 and bool(d.buf[0] & 0x10)


def reset(d):
    """RESET (0x0012): the chip restarts with its OTP / default settings."""
    return d._command(_RESET)


def fet_control(d, on):
    """FET test mode: FET_CONTROL with the FETs in ``on`` (FET Status order) on."""
    d.tx[2] = control_bits(on)
    return d._command(_FET_CONTROL, 1)


# -- the HAL ---------------------------------------------------------------------
def frontend(cfg):
    """The front end of a board the chip measures (``Bq76952Hal.frontend``, for
    ``"frontend": {"type": "bq76952"}``): identity for cells, current and pack;
    0.1 K to 0.1 degC for temperatures, railed at or below -40 degC (an open
    thermistor) or at or above 150 degC (a shorted one). A ``ChipChannel`` holds
    the four channels (``cell``, ``current``, ``temp``, ``pack``), so nothing of
    this module stays with it; then this module is released."""
    try:
        if cfg.get("type") != "bq76952":
            raise ValueError("frontend type must be bq76952")
        # cells (mV), current (mA) and pack (mV) need no conversion: one identity
        # channel serves the three, and it is the front end itself
        fe = ChipChannel()
        fe.max_code = cfg["cell_adc"]["full_scale_mv"]
        fe.zero = 0
        fe.open_code = 0
        fe.cell = fe.current = fe.pack = fe
        t = fe.temp = ChipChannel()  # 0.1 K in, 0.1 degC out; the rails (ChipChannel)
        t.max_code = 100 * (2732 + cfg.get("cold_rail_dc", -400))
        t.zero = 2732
        t.open_code = 2732 + cfg.get("hot_rail_dc", 1500)
        return fe
    finally:
        release()


def start(hal, board, i2c):
    """``Bq76952Hal(board, i2c)``: the board file's ``afe`` section, the driver, the
    chip's measurement settings, both directions blocked and no balancing; then
    this module is released."""
    try:
        afe = board["afe"]
        if afe.get("chip", "bq76952") != "bq76952":
            raise ValueError("board file: afe.chip must be bq76952")
        n = board["cells"]
        inputs = afe.get("cells") or (list(range(1, n)) + [16] if n < 16 else list(range(1, 17)))
        if len(inputs) != n or any(not 1 <= c <= 16 for c in inputs):
            raise ValueError("board file: afe.cells needs %d VC inputs, 1..16" % n)
        hal.cell_idx = bytearray(c - 1 for c in inputs)
        sources = "int cfetoff dfetoff alert ts1 ts2 ts3".split()
        ts = afe.get("ts", sources[4:4 + board["temp_sensors"]])
        if len(ts) != board["temp_sensors"] or any(t not in sources for t in ts):
            raise ValueError("board file: afe.ts needs %d of %s" % (
                board["temp_sensors"], ", ".join(sources)))
        hal.ts_idx = bytearray(sources.index(t) for t in ts)
        hal.button = None
        button = board.get("pins", {}).get("presence")
        if button is not None:
            try:
                from machine import Pin
            except ImportError:  # a bench without pins (the heap budget's, the tests')
                Pin = None
            if Pin is not None:
                hal.button = Pin(button, Pin.IN, Pin.PULL_UP)
        shunt = afe["shunt_uohm"]
        if not 10 <= shunt <= 1000000:
            raise ValueError("board file: afe.shunt_uohm must be 10..1000000")
        hal.afe = afe
        hal.period_ms = board.get("control_period_ms", 100)
        # User-amps: the finest unit whose signed 16 bits hold what the coulomb
        # counter measures (+/-200 mV across the shunt), or three times the board's
        # current rating if that is less; stack, PACK and LD in cV.
        sense_ma = 200000000 // shunt
        need = min(sense_ma, 3 * max(board.get("charge_current_max_ma", 0),
                                     board.get("discharge_current_max_ma", 0)))
        amps = 0 if need <= 3276 else 1 if need <= 32767 else 2 if need <= 327670 else 3
        hal.da = afe.get("da_config", 0x04 | amps)
        unit = (1, 10, 100, 1000)[hal.da & 3]  # 0.1 mA steps
        # The current the chip reports at most in these units: the board file's
        # ``frontend.current_adc.full_scale_ma`` may not promise more.
        top = min(sense_ma, 32767 * unit // 10)
        if board["frontend"]["current_adc"]["full_scale_ma"] > top:
            raise ValueError("board file: frontend.current_adc.full_scale_ma above the %d mA "
                             "the chip measures on this shunt" % top)
        d = hal.driver = Bq76952(i2c, afe.get("address", 8), afe.get("crc", False))
        units(d, hal.da)
        hal.closed = False
        hal.allow = 3  # bit 0 charge, bit 1 discharge
        hal.sent = -1  # directions blocked as last commanded (-1: unknown)
        hal.balancing = 0  # cells to balance (chip's VC order)
        hal.balanced = -1  # ... as the chip last confirmed
        hal.trips = 0
        hal.por = 0  # Battery Status POR, seen and handled
        hal.trip = None  # the limits arm() was last given
        hal.armed = False
        hal.clamped = ()
        hal.configured = configure(d, base(hal))
        hal._fets()  # both directions blocked until the firmware closes the output
        hal._balance()  # and no balancing left over from before a restart
    finally:
        release()


def base(hal):
    """What the measurements need: units, cells, the shunt's gains, the TS pins
    the board reads as thermistors (0x07: thermistor, cell temperature, the
    18K model, like TS1's default); the board file's ``settings`` last."""
    cc, cap = gains(hal.afe["shunt_uohm"])
    vcell = 0
    for c in hal.cell_idx:
        vcell |= 1 << c
    out = [(0x9303, 1, hal.da),  # DA Configuration
           (0x9304, 2, vcell),  # VCell Mode
           (0x91A8, 4, cc),  # CC Gain
           (0x91AC, 4, cap)]  # Capacity Gain
    for i in hal.ts_idx:
        if i >= 4:  # TS1..TS3: Settings:Configuration:TSn Config
            out.append((0x92FD + i - 4, 1, 0x07))
    for addr, size, value in hal.afe.get("settings", ()):
        for j in range(len(out)):
            if out[j][0] == addr:
                del out[j]
                break
        out.append((addr, size, value & ((1 << (8 * size)) - 1)))  # as data memory holds it
    return out


def settings(hal, trip):
    """The data-memory settings (``(address, size, value)``) for the firmware's
    trip limits (``Protection.trip``); ``hal.clamped`` names the ones the chip's
    range cut."""
    afe = hal.afe
    r = afe["shunt_uohm"]
    mv = afe.get("margin_mv", 100)
    dc = afe.get("margin_dc", 50)
    pct = 100 + afe.get("margin_pct", 25)
    out = base(hal)
    first = len(out)
    clamped = []

    def put(addr, size, kind, value):
        code, cut = encode(kind, value, r)
        if cut:
            clamped.append(len(out) - first)  # the setting's place in the names below
        out.append((addr, size, code & ((1 << (8 * size)) - 1)))
        return code

    put(0x9278, 1, _COV, trip[0] + mv)
    put(0x9279, 2, _V_DELAY, afe.get("cov_delay_ms", 2000))
    put(0x9275, 1, _CUV, trip[1] - mv)
    put(0x9276, 2, _V_DELAY, afe.get("cuv_delay_ms", 2000))
    put(0x9280, 1, _OCC, trip[9] * pct // 100)
    put(0x9281, 1, _OC_DELAY, afe.get("occ_delay_ms", 420))
    put(0x9282, 1, _OCD, trip[10] * pct // 100)  # OCD1
    put(0x9283, 1, _OC_DELAY, afe.get("ocd1_delay_ms", 420))
    put(0x9284, 1, _OCD, trip[11] * pct // 100)  # OCD2
    put(0x9285, 1, _OC_DELAY, afe.get("ocd2_delay_ms", max(10, 2 * hal.period_ms)))
    put(0x9286, 1, _SCD, trip[11] * afe.get("scd_pct", 200) // 100)
    put(0x9287, 1, _SCD_DELAY, afe.get("scd_delay_us", 60))
    # The temperature delays longer than the firmware's (2 s): a step past both
    # thresholds at once is still the firmware's to report first.
    t_delay = afe.get("temp_delay_ms", 4000)
    hot = put(0x929A, 1, _TEMP_HI, trip[2] + dc)  # OTC
    put(0x929B, 1, _T_DELAY, t_delay)
    put(0x929C, 1, _TEMP_HI, 10 * hot - 50)  # OTC recovery
    put(0x929D, 1, _TEMP_HI, trip[2] + dc)  # OTD
    put(0x929E, 1, _T_DELAY, t_delay)
    put(0x929F, 1, _TEMP_HI, 10 * hot - 50)  # OTD recovery
    cold = put(0x92A6, 1, _TEMP_LO, trip[3] - dc)  # UTC
    put(0x92A7, 1, _T_DELAY, t_delay)
    put(0x92A8, 1, _TEMP_LO, 10 * cold + 50)  # UTC recovery
    put(0x92A9, 1, _TEMP_LO, trip[3] - dc)  # UTD
    put(0x92AA, 1, _T_DELAY, t_delay)
    put(0x92AB, 1, _TEMP_LO, 10 * cold + 50)  # UTD recovery
    if clamped:  # named in the order of the settings above
        names = ("cov cov_delay cuv cuv_delay occ occ_delay ocd1 ocd1_delay ocd2 ocd2_delay "
                 "scd scd_delay otc otc_delay otc_recovery otd otd_delay otd_recovery "
                 "utc utc_delay utc_recovery utd utd_delay utd_recovery").split()
        clamped = [names[i] for i in clamped]
    out.append((0x9261, 1, 0xFC))  # Enabled Protections A: SCD OCD2 OCD1 OCC COV CUV
    out.append((0x9262, 1, 0x33))  # Enabled Protections B: OTD OTC UTD UTC
    hal.clamped = tuple(clamped)
    return out


def arm(hal, trip):
    """``Bq76952Hal.arm``: program the chip's protections from the firmware's trip
    limits (only what differs: see :func:`configure`), then leave FET test mode;
    then this module is released."""
    try:
        hal.trip = trip
        d = hal.driver
        hal.armed = configure(d, settings(hal, trip)) and fet_enable(d)
        return hal.armed
    finally:
        release()


def restarted(hal):
    """The chip reset (Battery Status POR set, once until it clears): its data
    memory may be back at its defaults and its FET blocks and balancing gone. Put
    them back (configure writes only what differs); then this module is released."""
    try:
        hal.configured = configure(hal.driver, base(hal))
        if hal.trip is not None:
            hal.armed = configure(hal.driver, settings(hal, hal.trip)) and fet_enable(hal.driver)
        hal.sent = -1
        hal.balanced = -1
    finally:
        release()


def release():
    """Forget this module, so its code is garbage once nothing else holds it."""
    sys.modules.pop("cellguard_fw.bq76952_setup", None)
    package = sys.modules.get("cellguard_fw")
    if package is not None and hasattr(package, "bq76952_setup"):  # released twice:
        delattr(package, "bq76952_setup")  # the driver's start within the HAL's
