"""Protection engine: every limit with a severity, a debounce count, a trip
delay, a release threshold (hysteresis) and a release delay. This is where a
measurement is judged.

The table is held in parallel integer arrays and :meth:`Protection.step` only
reads and writes their elements and small ints, so it allocates nothing (a test
runs it under ``micropython.heap_lock()`` on real MicroPython).

Timing ("N of M"): a protection trips on the first sample past its limit at
which its condition has held for ``trip_delay_ms`` and on at least ``debounce``
samples. The time counts from the first sample past the limit; samples back
inside it do not restart it while they are few: it restarts on the third
sample inside the limit within 8 samples (at least 6 of any 8 samples past the
limit), so noise around the limit does not postpone a trip, while a condition
present for less than 3 samples in 4 never trips. A condition seen on one
sample only trips at once only when the delay is 0 and the debounce count 1.
It releases the same way past the release threshold (``release_delay_ms``).

Severity: a warning is reported only; an alarm holds the current to zero in its
direction (``blocks``) and releases by itself; a fault opens the output and
latches (the latching is the application's, ``app.py``). A severity changed at
run time while its protection is active acts on the next step, which reports
the bit as changed (``regraded``): a trip event at the new severity.
"""

from array import array

from micropython import const

# The protocol numbers used here, as folded copies of codec.py's: the board
# interns no name for them (tests/test_firmware_build.py holds them equal).
_SEVERITY_ALARM = const(1)
_SEVERITY_FAULT = const(2)
_SEVERITY_WARNING = const(0)


# Quantities a protection can watch; Protection.step reads them from an array.
Q_MAX_CELL_MV = const(0)
Q_MIN_CELL_MV = const(1)
Q_MAX_TEMP_DC = const(2)
Q_MIN_TEMP_DC = const(3)
Q_CHARGE_MA = const(4)  # current, positive when charging
Q_DISCHARGE_MA = const(5)  # minus current, positive when discharging
Q_CELL_SPREAD_MV = const(6)  # highest minus lowest cell
Q_TEMPS_RAILED = const(7)  # temperature channels reading open or shorted
Q_STUCK_MS = const(8)  # longest a cell reading has not moved while current flowed
Q_PACK_MISMATCH_MV = const(9)  # |pack voltage sensor - sum of cells|, 0 without a sensor
Q_TEMP_RISE_DC = const(10)  # fastest temperature rise, 0.1 degC per minute
_N_QUANTITIES = const(11)

ABOVE = const(1)  # trips when value > trip
BELOW = const(0)  # trips when value < trip

# Directions an alarm holds at zero current.
BLOCKS_CHARGE = const(1)
BLOCKS_DISCHARGE = const(2)
BLOCKS_BOTH = const(3)

WARNING = _SEVERITY_WARNING
ALARM = _SEVERITY_ALARM
FAULT = _SEVERITY_FAULT

# Protections whose thresholds have their own hard limits (config.py).
I_OPEN_WIRE = const(13)
I_SENSOR_RANGE = const(14)


def protection_table():
    """The protection table, one row per protection: name, fault bit, quantity,
    direction, limit key, default trip/release delays (ms), default severity,
    directions an alarm blocks, default debounce count (samples). The order is
    the configuration keys' (protocol/messages.py PROTECTION_STEMS).

    Built on each call, from ``protection_setup`` (the rows live there, with the
    rest of what is read only while a :class:`Protection` is built, so a board
    keeps none of it in RAM once it runs)."""
    from .protection_setup import protection_table

    return protection_table()


class Protection:
    """The protection table and its state.

    ``limits`` maps each limit key to a ``(trip, release)`` pair; ``delays``
    optionally maps a protection name to ``(trip_delay_ms, release_delay_ms)``,
    ``severities`` a name to WARNING/ALARM/FAULT and ``debounces`` a name to a
    sample count.
    """

    def __init__(self, limits, delays=None, severities=None, debounces=None):
        table = protection_table()
        n = len(table)
        self.count = n
        self.bit = array("l", [0] * n)
        self.quantity = array("b", [0] * n)
        self.above = array("b", [0] * n)
        self.trip = array("l", [0] * n)
        self.release = array("l", [0] * n)
        self.trip_delay_ms = array("l", [0] * n)
        self.release_delay_ms = array("l", [0] * n)
        self.severity = bytearray(n)
        self.blocks = bytearray(n)
        self.debounce = array("H", [1] * n)
        self.active = bytearray(n)
        # How long since the trip (or, once active, the release) condition was first
        # seen and on how many samples it held since; 0 samples: no such run. Bit k
        # of ``missed``: the condition did not hold k + 1 samples ago, in this run.
        self.timer_ms = array("l", [0] * n)
        self.samples = array("H", [0] * n)
        self.missed = bytearray(n)
        self.values = array("l", [0] * _N_QUANTITIES)
        self.faults = 0
        self.alarms = 0
        self.warnings = 0
        self.changed = 0  # bits that tripped or released on the last step
        # Active bits whose severity changed since (config.py): the next step reports
        # them as changed, so the change is announced and logged as it takes effect.
        self.regraded = 0
        self.allowed = 3  # bit 0: charge allowed, bit 1: discharge allowed (alarms only)
        self.pending_trips = 0  # fault bits whose trip condition holds but whose delay runs
        for i in range(n):
            (name, bit, quantity, above, key, trip_delay, release_delay, severity, blocks,
             debounce) = table[i]
            trip, release = limits[key]
            check_thresholds(name, above, trip, release)
            if delays and name in delays:
                trip_delay, release_delay = delays[name]
            if severities and name in severities:
                severity = severities[name]
            if debounces and name in debounces:
                debounce = debounces[name]
            if not WARNING <= severity <= FAULT:
                raise ValueError("severity of %s must be 0, 1 or 2" % name)
            if not 1 <= debounce <= MAX_DEBOUNCE:
                raise ValueError("debounce count of %s must be 1..%d" % (name, MAX_DEBOUNCE))
            self.bit[i] = bit
            self.quantity[i] = quantity
            self.above[i] = above
            self.trip[i] = trip
            self.release[i] = release
            self.trip_delay_ms[i] = trip_delay
            self.release_delay_ms[i] = release_delay
            self.severity[i] = severity
            self.blocks[i] = blocks
            self.debounce[i] = debounce

    def value(self, i):
        """The value protection ``i`` watches, as of the last step (what tripped or
        released it, when it changed on that step)."""
        return self.values[self.quantity[i]]

    def load(self, m):
        """Copy the watched quantities out of a Measurement."""
        v = self.values
        v[Q_MAX_CELL_MV] = m.max_cell_mv
        v[Q_MIN_CELL_MV] = m.min_cell_mv
        v[Q_MAX_TEMP_DC] = m.max_temp_dc
        v[Q_MIN_TEMP_DC] = m.min_temp_dc
        v[Q_CHARGE_MA] = m.current_ma
        v[Q_DISCHARGE_MA] = -m.current_ma
        v[Q_CELL_SPREAD_MV] = m.max_cell_mv - m.min_cell_mv
        v[Q_TEMPS_RAILED] = m.temps_railed
        v[Q_STUCK_MS] = m.stuck_ms
        v[Q_PACK_MISMATCH_MV] = m.pack_mismatch_mv
        v[Q_TEMP_RISE_DC] = m.temp_rise_dc

    def step(self, dt_ms):
        """Advance every protection by one sample taken ``dt_ms`` after the last.

        Returns the active fault bits; active alarm and warning bits are in
        ``alarms`` and ``warnings``, the bits that changed in ``changed``.
        """
        faults = 0
        alarms = 0
        warnings = 0
        pending = 0
        changed = self.regraded
        self.regraded = 0
        blocked = 0
        values = self.values
        for i in range(self.count):
            v = values[self.quantity[i]]
            if self.active[i]:
                r = self.release[i]
                holding = v < r if self.above[i] else v > r
                delay = self.release_delay_ms[i]
            else:
                t = self.trip[i]
                holding = v > t if self.above[i] else v < t
                delay = self.trip_delay_ms[i]
            if self.samples[i]:  # a run started on an earlier sample
                self.timer_ms[i] += dt_ms
                m = (self.missed[i] << 1) & 0xFF
                if not holding:
                    m |= 1
                    x = m & (m - 1)  # m less its lowest bit
                    if x & (x - 1):  # a third miss within 8 samples: the run ends
                        m = 0
                        self.timer_ms[i] = 0
                        self.samples[i] = 0
                self.missed[i] = m
            if holding:
                if self.samples[i] < MAX_DEBOUNCE:
                    self.samples[i] += 1
                if self.timer_ms[i] >= delay and self.samples[i] >= self.debounce[i]:
                    self.active[i] ^= 1
                    self.timer_ms[i] = 0
                    self.samples[i] = 0
                    self.missed[i] = 0
                    changed |= self.bit[i]
            if self.samples[i] and not self.active[i] and self.severity[i] == FAULT:
                pending |= self.bit[i]
            if self.active[i]:
                severity = self.severity[i]
                if severity == FAULT:
                    faults |= self.bit[i]
                elif severity == ALARM:
                    alarms |= self.bit[i]
                    blocked |= self.blocks[i]
                else:
                    warnings |= self.bit[i]
        self.faults = faults
        self.alarms = alarms
        self.warnings = warnings
        self.changed = changed
        self.allowed = 3 & ~blocked
        self.pending_trips = pending
        return faults


MAX_DEBOUNCE = const(1000)


def check_thresholds(name, above, trip, release):
    """Refuse a release threshold beyond its trip. Values are integers, so
    ``release == trip + 1`` (above) is the smallest hysteresis: none."""
    if above and release > trip + 1 or not above and release < trip - 1:
        raise ValueError("release threshold of %s is beyond its trip" % name)
