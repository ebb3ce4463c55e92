"""The battery's lifetime record: what the pack went through, in integers.

:meth:`Lifetime.update` runs once per control step, after the protection step,
with the step's integers (ms, mA positive charging, pack mV, SoC in 0.01 %,
coldest and hottest sensor in 0.1 degC, the active fault bits, the monitor
chip's own trips, the lowest and highest cell in mV). It allocates nothing.
:meth:`Lifetime.save`, which the main loop calls outside the control step when
:meth:`Lifetime.due`, writes the record power-loss safe.

The counters are the u32 words of one array (``w``); every counter the step
touches stays a small int (below 2**30), so no step allocates. Throughput is
exact: each counter keeps what is below its unit in a remainder word, so the
sum of ``mA*ms`` and of ``mV*mA*ms`` over every step is kept to the last unit.
Layout (word: meaning; docs/lifetime.md has the same table). Layout 1 was words
0-50; layout 2 appended 51-154 (words are only ever appended):

  0-2   charge in: Ah, mAh (0-999), mA*ms (below 3,600,000)
  3-5   charge out: the same
  6-9   energy in: Wh, mWh (0-999), mW*ms (below 3,600,000), uW*ms (0-999)
  10-13 energy out: the same
  14-15 operating time: s, ms (0-999)
  16-18 s at rest (|I| below the rest current), charging, discharging
  19-22 s beyond the chemistry's temperature trips: hot not charging, hot
        charging (the charge limit), cold not charging, cold charging
  23-27 harmful events, one per edge of each kind (from none of its trips to
        one, the firmware's or the monitor chip's): deep discharge, overcharge
        (cell over-voltage), over-temperature, over-current, short circuit
  28-30 boots, watchdog resets, configuration changes
  31-50 s per SoC x temperature bin: SoC 0-20-40-60-80-100 %, temperature (the
        mean of the coldest and hottest sensor) below 0, 0-25, 25-45, from
        45 degC; word 31 + 4 * soc_bin + temp_bin
  51    harmful events in all (bits 0-23; the next ring slot is this modulo 4),
        and (bits 24-28, written by a save) the kinds active then: a condition
        that still holds after a reset is the same event, not a new one
  52-67 the last 4 harmful events, 4 words each: kind (1-5, the order of
        23-27), operating s, Unix time from 2020 in s (0: clock not set), value
        (deep discharge, overcharge: the lowest / highest cell, mV;
        over-temperature: the hottest sensor, 0.1 degC; over-current, short
        circuit: |current|, mA)
  68-69 date of manufacture, of putting into service: Unix time from 2020, s
        (0: not given; each written once)
  70-77 pack identity, 24 bytes, 3 to a word (little-endian; 0: not given)
  78    lives: second-life resets so far
  79-81 self-discharge: SoC lost, SoC gained (0.01 %) over long rests, and
        the rest seconds they were measured over
  82-84 equivalent full cycles (0.001), the remainder (0.001 mAh), and the
        charge throughput (mAh, in plus out) they were counted up to: at each
        save the throughput since is divided by twice the capacity then (the
        estimator's relearned one, else the configured one)
  85    state-of-health snapshots taken so far
  86-94 the first snapshot, 9 words: Unix time from 2020 (s), operating s,
        capacity mAh, capacity relearns so far, R0 growth (0.1 %: 1000 at the
        beginning of life; 0: not estimated), SoC (0.01 %), 10 s discharge power
        W (0: not estimated), energy in, energy out (Wh)
  95-121 the last 3 snapshots after the first (ring; snapshot k >= 1 at
        95 + 9 * ((k - 1) % 3))
  122-152 the previous lives' total of words 0-30 (carried, as above)
  153-154 firmware deploys (boots of a build other than the last one's), and
        the last build's id (3 bytes of its manifest's SHA-256)

The time counters move once a whole second of operating time has passed: that
second goes to the state of the step that completed it, so the state times and
the histogram sum to the operating time exactly.

Limits of the integer arithmetic: |current| up to 1,000 A, pack voltage up to
1,000 V; a step of any length (longer ones are counted in slices of 1 s).

The record on flash: a magic word, the number of counter words, the counters,
a sequence number and a CRC-32 over all of it (little-endian u32s). Words 0-84,
which move all the time, are saved every few minutes in 356 bytes (LittleFS keeps
a file of up to 512 bytes inline in its metadata: no data block to erase per
save); words 85-154 (snapshots, history), which change weekly at most, in their own
record (``life_admin.py``, files ``.2`` and ``.3``). There are two files,
``path + ".0"`` and ``path + ".1"``; a save overwrites the one not holding the
newest valid record (as :mod:`latches` it trusts a CRC and a sequence number, but
it keeps the previous record instead of renaming over it).
At boot the valid record with the highest sequence number wins. A torn or
corrupt record fails its CRC and the other one stands: power lost during a
save, or a flipped bit in the newest file, costs at most the interval since the
previous save, never the whole life. A record with fewer counter words (an earlier layout)
loads with the new words zero; one with more keeps the words this layout knows.
The save streams the array itself (no second buffer): the ports are
little-endian, and ``"I"`` is 32 bits on every port and under CPython.
"""

from array import array
from binascii import crc32
from struct import pack_into

from micropython import const

_MAGIC = const(0x0046494C)  # b"LIF\0" little-endian: a small int
_WORDS = const(155)
_HOT = const(85)  # words 0-84 are saved every few minutes, 85-154 when they change
_HEADER = const(8)  # magic, word count
_SIZE = const(_HOT * 4 + 16)  # header, words 0-84, sequence, CRC: inline in LittleFS

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
_N_HARM = const(23)  # the first of the five kinds' counters
_N_BOOTS = const(28)
_N_WATCHDOG = const(29)
_N_CONFIG = const(30)
_HIST = const(31)
_HARM_TOTAL = const(51)
_HARM_RING = const(52)
_EFC = const(82)  # equivalent full cycles, 0.001; then the remainder, the mAh counted

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
# ... and of a monitor chip's own trips (BQ76952 Safety Status A | B << 8 | C << 16)
_C_OVERCHARGE = const(0x100008)  # COV, COVL
_C_OVERTEMP = const(0xF000)  # OTC, OTD, OTINT, OTF
_C_OVERCURRENT = const(0xA00070)  # OCC, OCD1, OCD2, OCD3, OCDL
_C_SHORT = const(0x400080)  # SCD, SCDL

_SAVE_MS = const(300000)  # a save at least every 5 minutes of operation
_GAP_MS = const(10000)  # and after an event edge, but at most one per 10 s
_RELAXED_MS = const(3600000)  # a rest counts for self-discharge after an hour (estimator.py)
_SNAP_FIRST_S = const(3600)  # the first health snapshot after an hour (then weekly:
# life_admin.py writes the snapshots, the commissioning data and new lives)


class Lifetime:
    """The counters (``w``), their update and their record (module docstring).

    ``profile`` is the chemistry's (``chemistry.PROFILES``): its temperature trips
    bound the extreme-temperature times. ``capacity_mah``: the pack's; below C/100
    of it the pack is at rest, and equivalent full cycles count in it until the
    estimator relearns it (``cap``)."""

    def __init__(self, profile, path=None, capacity_mah=5000, build=b""):
        self.w = w = array("I")
        for _ in range(_WORDS):  # grown in place: a [0] * n list would linger on the heap
            w.append(0)
        # hot, cold, hot while charging, cold while charging (0.1 degC), rest mA
        self.lim = array("l", (profile["temp_max_dc"][0], profile["temp_min_dc"][0],
                               profile["temp_charge_max_dc"][0],
                               profile["temp_charge_min_dc"][0], capacity_mah // 100))
        self.cap = capacity_mah  # the capacity equivalent full cycles are counted in
        self.prev = 0  # the harmful kinds active in the previous step (bit per kind)
        # after a boot, the kinds the record saved as active count as active until
        # the protection has had the time to trip again (its delays are shorter)
        self.held = 0
        self.held_ms = 0
        self.since = 0  # ms of operation since the last save (saturates)
        self.edge = False  # an event since the last save
        self.unix = 0  # Unix time from 2020 now, s (0: the host never set the clock)
        self.rest_ms = 0  # how long the pack has rested (saturates at _RELAXED_MS)
        self.sd = array("l", (-1, 0, 0, 0))  # a long rest: first s, its SoC, last s, SoC
        # the two record files, written in turn; "": kept in RAM only
        self.names = (path + ".0", path + ".1") if path else ("", "")
        self.slot = -1  # the file holding the newest valid record; -1: none
        self.ends = bytearray(16)  # the record's header and tail
        self.seq = 0  # the newest record's sequence number
        self.errors = 0  # saves the flash refused
        self.snap_at = _SNAP_FIRST_S  # operating s of the next health snapshot
        if path:  # the newest valid record, and a deploy if ``build`` (main.py's boot
            # record: status, manifest SHA-256) is not the last boot's (life_admin.py)
            from . import life_admin

            life_admin.load(self, build)

    # -- the control step (allocates nothing) ----------------------------------
    def update(self, dt, ma, mv, soc, tmin, tmax, trips, chip=0, lo_mv=0, hi_mv=0):
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
        resting = amp < lim[4]
        if not resting:
            self.rest_ms = 0
        elif self.rest_ms < _RELAXED_MS:
            self.rest_ms += dt
        # time: whole seconds, each to the state of the step that completed it
        ms = w[_OP_MS] + dt
        if ms >= 1000:
            n = ms // 1000
            ms -= n * 1000
            w[_OP_S] += n
            if self.unix:
                self.unix += n
            charging = False
            if resting:
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
        # harmful events: one per kind's edge (none of its trips, then one of them)
        k = 1 if trips & _F_DEEP else 0
        if trips & _F_OVERCHARGE or chip & _C_OVERCHARGE:
            k |= 2
        if trips & _F_OVERTEMP or chip & _C_OVERTEMP:
            k |= 4
        if trips & _F_OVERCURRENT or chip & _C_OVERCURRENT:
            k |= 8
        if trips & _F_SHORT or chip & _C_SHORT:
            k |= 16
        if self.held_ms > 0:
            self.held_ms -= dt
            k |= self.held
        rise = k & ~self.prev
        if k != self.prev:  # a rise or a fall: saved soon (the kinds active go too)
            self.prev = k
            self.edge = True
        i = 0
        while rise:
            if rise & 1:
                w[_N_HARM + i] += 1
                n = w[_HARM_TOTAL]  # the kinds in bits 24-28 do not touch n & 3
                w[_HARM_TOTAL] = n + 1
                r = _HARM_RING + 4 * (n & 3)
                w[r] = i + 1
                w[r + 1] = w[_OP_S]
                w[r + 2] = self.unix
                w[r + 3] = lo_mv if i == 0 else hi_mv if i == 1 else \
                    max(tmax, 0) if i == 2 else amp
            rise >>= 1
            i += 1
        if self.since < _SAVE_MS:
            self.since += dt

    # -- outside the control step ----------------------------------------------
    def boot(self, watchdog=False):
        """Count a boot (and a watchdog reset); call once after the load (a deploy
        is counted by the load: ``build``)."""
        self.w[_N_BOOTS] += 1
        if watchdog:
            self.w[_N_WATCHDOG] += 1
        self.edge = True
        self.since = _GAP_MS  # saved at the first pass: a board that resets at once
        # (a boot loop, a brown-out) still counts each boot

    def config_changed(self):
        self.w[_N_CONFIG] += 1
        self.edge = True

    def snapshot_due(self):
        """Whether a state-of-health snapshot is due (``life_admin.take``)."""
        return self.w[_OP_S] >= self.snap_at

    def due(self):
        """Whether the main loop should :meth:`save` now: every few minutes of
        operation, and soon after an event (at a bounded rate)."""
        return self.since >= _SAVE_MS or (self.edge and self.since >= _GAP_MS)

    def save(self):
        """Bring the words a save derives up to date (the kinds active, the
        equivalent full cycles), then write the record into the slot not holding
        the newest valid one."""
        self.since = 0
        self.edge = False
        w = self.w
        w[_HARM_TOTAL] = (w[_HARM_TOTAL] & 0xFFFFFF) | self.prev << 24
        # equivalent full cycles: the throughput since the last save over 2 x capacity
        mah = (w[_CHG_AH] + w[_DSG_AH]) * 1000 + w[_CHG_AH + 1] + w[_DSG_AH + 1]
        acc = w[_EFC + 1] + (mah - w[_EFC + 2]) * 1000
        q = acc // (2 * self.cap)
        w[_EFC] += q
        w[_EFC + 1] = acc - q * 2 * self.cap
        w[_EFC + 2] = mah
        if not self.names[0]:
            return
        self.seq += 1
        ends = self.ends
        body = memoryview(self.w)[:_HOT]
        pack_into("<LLL", ends, 0, _MAGIC, _HOT, self.seq)
        crc = crc32(body, crc32(memoryview(ends)[:8]))
        pack_into("<L", ends, 12, crc32(memoryview(ends)[8:12], crc))
        slot = 1 - self.slot if self.slot >= 0 else 0
        try:
            with open(self.names[slot], "wb") as f:
                f.write(memoryview(ends)[:8])
                f.write(body)
                f.write(memoryview(ends)[8:])
        except OSError:
            self.errors += 1  # a failing flash must not stop protection
            return
        self.slot = slot
