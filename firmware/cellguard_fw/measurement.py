"""One sample of the pack, in integer units, in preallocated arrays.

This is where a cell voltage enters the pure-logic part of the firmware: the
HAL fills raw codes, :meth:`Measurement.update` converts them and derives the
pack figures the protection and estimators use, including the plausibility
figures: temperature channels at an ADC rail (or at the converter's full
scale), how long a cell reading has not followed the current (a frozen mux,
converter or front end), the pack-voltage sensor against the sum of cells, and
the temperature rise over the last minute.
"""

from array import array

from micropython import const

RISE_SLOTS = const(10)  # temperature history: one slot every RISE_SLOT_MS
RISE_SLOT_MS = const(6000)  # ... so the oldest slot is a minute old
_TIME_CAP_MS = const(1 << 29)  # timers stop here: they stay small ints


class Measurement:
    def __init__(self, n_cells, n_temps, stuck_current_ma=1000, stuck_band=0):
        self.raw_cells = array("H", [0] * n_cells)
        self.raw_temps = array("H", [0] * n_temps)
        self.cells_mv = array("H", [0] * n_cells)
        self.temps_dc = array("h", [0] * n_temps)
        self.current_ma = 0  # positive = charging
        self.pack_mv = 0  # sum of the cells
        self.min_cell_mv = 0
        self.max_cell_mv = 0
        self.min_temp_dc = 0
        self.max_temp_dc = 0
        # plausibility
        self.stuck_current_ma = stuck_current_ma  # the stuck-reading clock runs above this
        self.stuck_band = stuck_band  # codes a live reading's noise stays within
        self.last_raw_cells = array("H", [0] * n_cells)
        self.ref_cells = array("H", [0] * n_cells)  # each reading where it last moved
        self.ref_ma = array("l", [0] * n_cells)  # ... and the current then
        self.unchanged_ms = array("l", [0] * n_cells)
        self.stuck_ms = 0
        self.temps_railed = 0
        self.pack_mismatch_mv = 0
        self.rise_history = array("h", [0] * (n_temps * RISE_SLOTS))
        self.rise_slot = 0
        self.rise_filled = 0
        self.rise_timer_ms = 0
        self.temp_rise_dc = 0  # fastest rise over the last minute, 0.1 degC

    def update(self, frontend, raw_current, dt_ms, pack_sensor_mv):
        """One sample: ``pack_sensor_mv`` is what the pack-voltage sensor reads, -1
        where the board has none."""
        cells = self.cells_mv
        raw = self.raw_cells
        conv = frontend.cell
        total = 0
        lo = 0xFFFF
        hi = 0
        for i in range(len(cells)):
            mv = conv.convert(raw[i])
            cells[i] = mv
            total += mv
            if mv < lo:
                lo = mv
            if mv > hi:
                hi = mv
        self.pack_mv = total
        self.min_cell_mv = lo
        self.max_cell_mv = hi
        temps = self.temps_dc
        raw = self.raw_temps
        conv = frontend.temp
        lo = 32767
        hi = -32768
        railed = 0
        # A channel's rails: an open sensor at or beyond one, a shorted one at or below
        # 1 % of full scale (a monitor chip's cold rail rides on its max_code).
        top = conv.open_code
        bottom = conv.max_code // 100
        for i in range(len(temps)):
            code = raw[i]
            if code >= top or code <= bottom:  # open (pulled up) or shorted NTC
                railed += 1
            dc = conv.convert(code)
            temps[i] = dc
            if dc < lo:
                lo = dc
            if dc > hi:
                hi = dc
        self.min_temp_dc = lo
        self.max_temp_dc = hi
        self.temps_railed = railed
        current = frontend.current.convert(raw_current)
        self.current_ma = current
        if pack_sensor_mv >= 0:
            d = pack_sensor_mv - total
            self.pack_mismatch_mv = d if d >= 0 else -d
        else:
            self.pack_mismatch_mv = 0
        self._track_stuck(dt_ms, current)
        self._track_rise(dt_ms)

    def _track_stuck(self, dt_ms, current):
        # A live reading follows the current: when the current steps by
        # ``stuck_current_ma`` a cell's voltage steps by that times its resistance,
        # beyond the front end's noise (``stuck_band``, codes). Each reading keeps a
        # reference: itself and the current while the current holds, or where it
        # last left its band. A reading that stays within its band of the reference
        # while the current is a step away from the reference's belongs to a frozen
        # mux, amplifier or converter (whose own noise still moves the last bits).
        # A code repeated exactly while the current flows is frozen too (a
        # converter or a buffer nobody refills).
        raw = self.raw_cells
        last = self.last_raw_cells
        ref = self.ref_cells
        ref_ma = self.ref_ma
        band = self.stuck_band
        step = self.stuck_current_ma
        flowing = current >= step or -current >= step
        unchanged = self.unchanged_ms
        longest = 0
        for i in range(len(raw)):
            code = raw[i]
            d = code - ref[i]
            moved = current - ref_ma[i]
            if d > band or -d > band or -step < moved < step and code != last[i]:
                ref[i] = code
                ref_ma[i] = current
                unchanged[i] = 0
            elif moved >= step or -moved >= step or code == last[i] and flowing:
                if unchanged[i] < _TIME_CAP_MS:
                    unchanged[i] += dt_ms
            last[i] = code
            if unchanged[i] > longest:
                longest = unchanged[i]
        self.stuck_ms = longest

    def _track_rise(self, dt_ms):
        temps = self.temps_dc
        n = len(temps)
        hist = self.rise_history
        self.rise_timer_ms += dt_ms
        if self.rise_timer_ms >= RISE_SLOT_MS or not self.rise_filled:
            if self.rise_filled:
                self.rise_timer_ms -= RISE_SLOT_MS
            else:
                self.rise_timer_ms = 0
            base = self.rise_slot * n
            for i in range(n):
                hist[base + i] = temps[i]
            self.rise_slot = (self.rise_slot + 1) % RISE_SLOTS
            if self.rise_filled < RISE_SLOTS:
                self.rise_filled += 1
        # The oldest slot is the next one to be written, once the ring is full.
        oldest = (self.rise_slot if self.rise_filled == RISE_SLOTS else 0) * n
        rise = 0
        for i in range(n):
            d = temps[i] - hist[oldest + i]
            if d > rise:
                rise = d
        self.temp_rise_dc = rise
