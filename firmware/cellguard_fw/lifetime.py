"""The battery's lifetime record: what the pack went through, in integers.

:meth:`Lifetime.update` runs once per control step, after the protection step,
with the step's integers (ms, mA positive charging, pack mV, SoC in 0.01 %,
coldest and hottest sensor in 0.1 degC, the active fault bits). It allocates
nothing. :meth:`Lifetime.save`, which the main loop calls outside the control
step when :meth:`Lifetime.due`, writes the record power-loss safe.

The counters are the u32 words of one array (``w``); every one of them stays a
small int (below 2**30), so no step allocates. Throughput is exact: each
counter keeps what is below its unit in a remainder word, so the sum of
``mA*ms`` and of ``mV*mA*ms`` over every step is kept to the last unit. Layout
(word: meaning; docs/lifetime.md has the same table):

  0-2   charge in: Ah, mAh (0-999), mA*ms (below 3,600,000)
  3-5   charge out: the same
  6-9   energy in: Wh, mWh (0-999), mW*ms (below 3,600,000), uW*ms (0-999)
  10-13 energy out: the same
  14-15 operating time: s, ms (0-999)
  16-18 s at rest (|I| below the rest current), charging, discharging
  19-22 s beyond the chemistry's temperature trips: hot not charging, hot
        charging (the charge limit), cold not charging, cold charging
  23-27 harmful events, one per edge of each kind (from none of its trip bits
        to one): deep discharge, overcharge (cell
        over-voltage), over-temperature, over-current, short circuit
  28-30 boots, watchdog resets, configuration changes
  31-50 s per SoC x temperature bin: SoC 0-20-40-60-80-100 %, temperature (the
        mean of the coldest and hottest sensor) below 0, 0-25, 25-45, from
        45 degC; word 31 + 4 * soc_bin + temp_bin

The time counters move once a whole second of operating time has passed: that
second goes to the state of the step that completed it, so the state times and
the histogram sum to the operating time exactly.

Limits of the integer arithmetic: |current| up to 1,000 A, pack voltage up to
1,000 V; a step of any length (longer ones are counted in slices of 1 s).

The record on flash: a magic word, the number of counter words, the counters,
a sequence number and a CRC-32 over all of it (little-endian u32s). There are
two files, ``path + ".0"`` and ``path + ".1"``; a save overwrites the one not
holding the newest valid record (as :mod:`latches` it trusts a CRC and a
sequence number, but it keeps the previous record instead of renaming over it).
At boot the valid record with the highest sequence number wins. A torn or
corrupt record fails its CRC and the other one stands: power lost during a
save, or a flipped bit in the newest file, costs at most the interval since the
previous save, never the whole life. A record with fewer counter words (an earlier layout)
loads with the new words zero; one with more keeps the words this layout knows
(words are only ever appended).
"""

from array import array
from binascii import crc32
from struct import pack_into, unpack_from

from micropython import const

_MAGIC = const(0x0046494C)  # b"LIF\0" little-endian: a small int
_WORDS = const(51)
_HEADER = const(8)  # magic, word count
_SIZE = const(_WORDS * 4 + 16)  # header, counters, sequence, CRC

_CHG_AH = const(0)
_DSG_AH = const(3)
_CHG_WH = const(6)
_DSG_WH = const(10)
_OP_S = const(14)
_OP_MS = const(15)
_REST_S = const(16)
_CHG_S = const(17)
_DSG_S = const(18)
_HOT_IDLE_S = const(19)
_HOT_CHG_S = const(20)
_COLD_IDLE_S = const(21)
_COLD_CHG_S = const(22)
_N_DEEP = const(23)
_N_OVERCHARGE = const(24)
_N_OVERTEMP = const(25)
_N_OVERCURRENT = const(26)
_N_SHORT = const(27)
_N_BOOTS = const(28)
_N_WATCHDOG = const(29)
_N_CONFIG = const(30)
_HIST = const(31)

_MAS_PER_MAH = const(3600000)  # mA*ms in one mAh; mW*ms in one mWh
_T_EDGE_1 = const(0)  # histogram temperature edges, 0.1 degC
_T_EDGE_2 = const(250)
_T_EDGE_3 = const(450)

# codec.FAULT_* bits of each kind of harmful event (mpy-cross folds only this
# module's constants; tests/test_lifetime.py holds them equal to the codec's)
_F_DEEP = const(0x40)  # DEEP_DISCHARGE
_F_OVERCHARGE = const(0x1)  # CELL_OVERVOLTAGE
_F_OVERTEMP = const(0x84)  # OVERTEMPERATURE, OVERTEMPERATURE_CHARGE
_F_OVERCURRENT = const(0x630)  # OVERCURRENT_CHARGE, _DISCHARGE and their _PEAKs
_F_SHORT = const(0x800)  # SHORT_CIRCUIT

_SAVE_MS = const(300000)  # a save at least every 5 minutes of operation
_GAP_MS = const(10000)  # and after an event edge, but at most one per 10 s


def encode(buf, words, seq):
    """Write the record of ``words`` (_WORDS u32s) with ``seq`` into ``buf``
    (_SIZE bytes)."""
    pack_into("<LL", buf, 0, _MAGIC, _WORDS)
    for i in range(_WORDS):
        pack_into("<L", buf, _HEADER + 4 * i, words[i])
    end = _HEADER + 4 * _WORDS
    pack_into("<L", buf, end, seq)
    pack_into("<L", buf, end + 4, crc32(memoryview(buf)[:end + 4]))


def decode(data, words=None):
    """The sequence number of the record in ``data``, or -1 if it is not a whole
    valid record; with ``words``, a valid record's counters are copied there."""
    size = len(data)
    if size < _HEADER + 8:
        return -1
    magic, n = unpack_from("<LL", data, 0)
    end = _HEADER + 4 * n
    if magic != _MAGIC or size != end + 8:
        return -1
    if crc32(data[:end + 4]) != unpack_from("<L", data, end + 4)[0]:
        return -1
    if words is not None:
        for i in range(_WORDS):
            words[i] = unpack_from("<L", data, _HEADER + 4 * i)[0] if i < n else 0
    return unpack_from("<L", data, end)[0]


class Lifetime:
    """The counters (``w``), their update and their record (module docstring).

    ``profile`` is the chemistry's (``chemistry.PROFILES``): its temperature trips
    bound the extreme-temperature times. ``rest_ma``: below this |current| the pack
    is at rest."""

    def __init__(self, profile, path=None, rest_ma=50):
        self.w = array("L", [0] * _WORDS)
        # hot, cold, hot while charging, cold while charging (0.1 degC), rest mA
        self.lim = array("l", (profile["temp_max_dc"][0], profile["temp_min_dc"][0],
                               profile["temp_charge_max_dc"][0],
                               profile["temp_charge_min_dc"][0], rest_ma))
        self.prev = 0  # the fault bits of the previous step
        self.since = 0  # ms of operation since the last save (saturates)
        self.edge = False  # an event since the last save
        # the two record files, written in turn; "": kept in RAM only
        self.names = (path + ".0", path + ".1") if path else ("", "")
        self.slot = -1  # the file holding the newest valid record; -1: none
        self.buf = bytearray(_SIZE)
        self.seq = 0  # the newest record's sequence number
        self.errors = 0  # saves the flash refused
        if path:
            self.load()

    # -- the control step (allocates nothing) ----------------------------------
    def update(self, dt, ma, mv, soc, tmin, tmax, trips):
        w = self.w
        lim = self.lim
        if ma > 0:
            a = _CHG_AH
            e = _CHG_WH
            amp = ma
        else:
            a = _DSG_AH
            e = _DSG_WH
            amp = -ma
        left = dt if amp else 0
        while left > 0:  # in slices of at most 1 s: the products stay small ints
            d = left if left < 1000 else 1000
            left -= d
            # charge: mA*ms, carried into mAh and Ah
            acc = w[a + 2] + amp * d
            q = acc // _MAS_PER_MAH
            w[a + 2] = acc - q * _MAS_PER_MAH
            if q:
                q += w[a + 1]
                w[a] += q // 1000
                w[a + 1] = q % 1000
            # energy: mV*mA*ms, split so that no product reaches 2**30
            v = mv // 1000
            x = (mv - v * 1000) * amp  # mV below a volt, times mA: uW
            pw = v * amp + x // 1000  # mW
            uw = w[e + 3] + (x % 1000) * d  # uW*ms
            acc = uw // 1000  # mW*ms
            w[e + 3] = uw - acc * 1000
            ph = pw // 3600
            q = ph * d  # 3600 mW*ms units
            acc += w[e + 2] + (q % 1000) * 3600 + (pw - ph * 3600) * d
            q //= 1000  # mWh
            x = acc // _MAS_PER_MAH
            w[e + 2] = acc - x * _MAS_PER_MAH
            q += x
            if q:
                q += w[e + 1]
                w[e] += q // 1000
                w[e + 1] = q % 1000
        # time: whole seconds, each to the state of the step that completed it
        ms = w[_OP_MS] + dt
        if ms >= 1000:
            n = ms // 1000
            ms -= n * 1000
            w[_OP_S] += n
            charging = False
            if amp < lim[4]:
                w[_REST_S] += n
            elif ma > 0:
                w[_CHG_S] += n
                charging = True
            else:
                w[_DSG_S] += n
            if charging:
                if tmax > lim[2]:
                    w[_HOT_CHG_S] += n
                if tmin < lim[3]:
                    w[_COLD_CHG_S] += n
            else:
                if tmax > lim[0]:
                    w[_HOT_IDLE_S] += n
                if tmin < lim[1]:
                    w[_COLD_IDLE_S] += n
            t = (tmin + tmax) >> 1
            i = _HIST + 4 * (min(4, max(0, soc // 2000)))
            if t >= _T_EDGE_3:
                i += 3
            elif t >= _T_EDGE_2:
                i += 2
            elif t >= _T_EDGE_1:
                i += 1
            w[i] += n
        w[_OP_MS] = ms
        # harmful events: one per kind's edge (none of its bits, then one of them)
        p = self.prev
        if trips != p:
            self.prev = trips
            rise = False
            if (trips & _F_DEEP) and not (p & _F_DEEP):
                w[_N_DEEP] += 1
                rise = True
            if (trips & _F_OVERCHARGE) and not (p & _F_OVERCHARGE):
                w[_N_OVERCHARGE] += 1
                rise = True
            if (trips & _F_OVERTEMP) and not (p & _F_OVERTEMP):
                w[_N_OVERTEMP] += 1
                rise = True
            if (trips & _F_OVERCURRENT) and not (p & _F_OVERCURRENT):
                w[_N_OVERCURRENT] += 1
                rise = True
            if (trips & _F_SHORT) and not (p & _F_SHORT):
                w[_N_SHORT] += 1
                rise = True
            if rise:
                self.edge = True
        if self.since < _SAVE_MS:
            self.since += dt

    # -- outside the control step ----------------------------------------------
    def boot(self, watchdog=False):
        """Count a boot (and a watchdog reset); call once after the load."""
        self.w[_N_BOOTS] += 1
        if watchdog:
            self.w[_N_WATCHDOG] += 1
        self.edge = True

    def config_changed(self):
        self.w[_N_CONFIG] += 1
        self.edge = True

    def due(self):
        """Whether the main loop should :meth:`save` now: every few minutes of
        operation, and soon after an event (at a bounded rate)."""
        return self.since >= _SAVE_MS or (self.edge and self.since >= _GAP_MS)

    def save(self):
        """Write the record into the slot not holding the newest valid one."""
        self.since = 0
        self.edge = False
        if not self.names[0]:
            return
        self.seq += 1
        encode(self.buf, self.w, self.seq)
        slot = 1 - self.slot if self.slot >= 0 else 0
        try:
            with open(self.names[slot], "wb") as f:
                f.write(self.buf)
        except OSError:
            self.errors += 1  # a failing flash must not stop protection
            return
        self.slot = slot

    def load(self):
        """Read the newest valid record into ``w``; return its sequence number
        (0: none found, the counters stay as they are)."""
        best = None
        seq = 0
        for slot in (0, 1):
            try:
                with open(self.names[slot], "rb") as f:
                    data = f.read(_SIZE + 256)
            except OSError:
                continue
            s = decode(data)
            if s > seq or (best is None and s >= 0):
                best = data
                seq = s
                self.slot = slot
        if best is not None:
            decode(best, self.w)
            self.seq = seq
        return seq
