"""Protection engine: every limit with a trip delay, a release threshold
(hysteresis) and a release delay. This is where a measurement is judged.

The table is held in parallel integer arrays and :meth:`Protection.step` only
reads and writes their elements and small ints, so it allocates nothing (a test
runs it under ``micropython.heap_lock()`` on real MicroPython).

Timing: a protection trips on the first sample at which its condition has held
for ``trip_delay_ms`` (a condition seen on one sample only trips at once only
when the delay is 0); it releases on the first sample at which the value has
been back past the release threshold for ``release_delay_ms``.
"""

from array import array

from micropython import const

from .codec import (
    FAULT_CELL_IMBALANCE,
    FAULT_CELL_OVERVOLTAGE,
    FAULT_CELL_UNDERVOLTAGE,
    FAULT_DEEP_DISCHARGE,
    FAULT_OVERCURRENT_CHARGE,
    FAULT_OVERCURRENT_CHARGE_PEAK,
    FAULT_OVERCURRENT_DISCHARGE,
    FAULT_OVERCURRENT_DISCHARGE_PEAK,
    FAULT_OVERTEMPERATURE,
    FAULT_OVERTEMPERATURE_CHARGE,
    FAULT_SHORT_CIRCUIT,
    FAULT_UNDERTEMPERATURE,
    FAULT_UNDERTEMPERATURE_CHARGE,
)

# Quantities a protection can watch; Protection.step reads them from an array.
Q_MAX_CELL_MV = const(0)
Q_MIN_CELL_MV = const(1)
Q_MAX_TEMP_DC = const(2)
Q_MIN_TEMP_DC = const(3)
Q_CHARGE_MA = const(4)  # current, positive when charging
Q_DISCHARGE_MA = const(5)  # minus current, positive when discharging
Q_MAX_TEMP_CHARGING_DC = const(6)  # hottest sensor while charging, else very cold
Q_MIN_TEMP_CHARGING_DC = const(7)  # coldest sensor while charging, else very hot
Q_CELL_SPREAD_MV = const(8)  # highest minus lowest cell
N_QUANTITIES = const(9)

CHARGING_MA = const(100)  # above this current the pack counts as charging

ABOVE = const(1)  # trips when value > trip
BELOW = const(0)  # trips when value < trip

# name, fault bit, quantity, direction, limit key, default trip/release delays (ms)
PROTECTIONS = (
    ("cell_overvoltage", FAULT_CELL_OVERVOLTAGE, Q_MAX_CELL_MV, ABOVE, "cell_ov_mv", 1000, 2000),
    ("cell_undervoltage", FAULT_CELL_UNDERVOLTAGE, Q_MIN_CELL_MV, BELOW, "cell_uv_mv", 1000, 2000),
    ("overtemperature", FAULT_OVERTEMPERATURE, Q_MAX_TEMP_DC, ABOVE, "temp_max_dc", 2000, 5000),
    ("undertemperature", FAULT_UNDERTEMPERATURE, Q_MIN_TEMP_DC, BELOW, "temp_min_dc", 2000, 5000),
    ("overcurrent_charge", FAULT_OVERCURRENT_CHARGE, Q_CHARGE_MA, ABOVE,
     "charge_current_max_ma", 500, 10000),
    ("overcurrent_discharge", FAULT_OVERCURRENT_DISCHARGE, Q_DISCHARGE_MA, ABOVE,
     "discharge_current_max_ma", 500, 10000),
    # A lower, latching level: a cell this empty may be damaged.
    ("deep_discharge", FAULT_DEEP_DISCHARGE, Q_MIN_CELL_MV, BELOW, "deep_discharge_mv",
     1000, 2000),
    # Charging has narrower temperature limits than discharging (lithium plating
    # below freezing, ageing when hot).
    ("overtemperature_charge", FAULT_OVERTEMPERATURE_CHARGE, Q_MAX_TEMP_CHARGING_DC, ABOVE,
     "temp_charge_max_dc", 2000, 5000),
    ("undertemperature_charge", FAULT_UNDERTEMPERATURE_CHARGE, Q_MIN_TEMP_CHARGING_DC, BELOW,
     "temp_charge_min_dc", 2000, 5000),
    # Over-current at two levels: sustained (above) and peak (short delay), and a
    # short circuit that trips on the first sample.
    ("overcurrent_charge_peak", FAULT_OVERCURRENT_CHARGE_PEAK, Q_CHARGE_MA, ABOVE,
     "charge_current_peak_ma", 100, 10000),
    ("overcurrent_discharge_peak", FAULT_OVERCURRENT_DISCHARGE_PEAK, Q_DISCHARGE_MA, ABOVE,
     "discharge_current_peak_ma", 100, 10000),
    ("short_circuit", FAULT_SHORT_CIRCUIT, Q_DISCHARGE_MA, ABOVE, "short_circuit_ma", 0, 10000),
    # Cells drifting apart: a failing cell, a loose sense wire, a balancer fault.
    ("cell_imbalance", FAULT_CELL_IMBALANCE, Q_CELL_SPREAD_MV, ABOVE, "cell_spread_mv",
     5000, 10000),
)


# Severity: these protections only warn (reported in telemetry and by FAULT_EVENT,
# never latched, the output untouched); every other one is a fault.
WARNING_BITS = FAULT_CELL_IMBALANCE


class Protection:
    """The protection table and its state.

    ``limits`` maps each limit key to a ``(trip, release)`` pair; ``delays``
    optionally maps a protection name to ``(trip_delay_ms, release_delay_ms)``.
    """

    def __init__(self, limits, delays=None):
        n = len(PROTECTIONS)
        self.count = n
        self.bit = array("l", [0] * n)
        self.quantity = array("b", [0] * n)
        self.above = array("b", [0] * n)
        self.trip = array("l", [0] * n)
        self.release = array("l", [0] * n)
        self.trip_delay_ms = array("l", [0] * n)
        self.release_delay_ms = array("l", [0] * n)
        self.active = bytearray(n)
        self.pending = bytearray(n)  # trip or release condition currently holding
        self.timer_ms = array("l", [0] * n)
        self.event_value = array("l", [0] * n)  # the value at the last trip or release
        self.values = array("l", [0] * N_QUANTITIES)
        self.faults = 0
        self.warnings = 0
        self.pending_trips = 0  # bits whose trip condition holds but whose delay runs
        for i in range(n):
            name, bit, quantity, above, key, trip_delay, release_delay = PROTECTIONS[i]
            trip, release = limits[key]
            if above and release > trip or not above and release < trip:
                raise ValueError("release threshold of %s is beyond its trip" % name)
            if delays and name in delays:
                trip_delay, release_delay = delays[name]
            self.bit[i] = bit
            self.quantity[i] = quantity
            self.above[i] = above
            self.trip[i] = trip
            self.release[i] = release
            self.trip_delay_ms[i] = trip_delay
            self.release_delay_ms[i] = release_delay

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
        if m.current_ma > CHARGING_MA:
            v[Q_MAX_TEMP_CHARGING_DC] = m.max_temp_dc
            v[Q_MIN_TEMP_CHARGING_DC] = m.min_temp_dc
        else:
            v[Q_MAX_TEMP_CHARGING_DC] = -32768
            v[Q_MIN_TEMP_CHARGING_DC] = 32767

    def step(self, dt_ms):
        """Advance every protection by one sample taken ``dt_ms`` after the last.

        Returns the active fault bits; active warning bits are in ``warnings``.
        """
        faults = 0
        pending = 0
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
            if not holding:
                self.pending[i] = 0
                self.timer_ms[i] = 0
            else:
                if self.pending[i]:
                    self.timer_ms[i] += dt_ms
                else:
                    self.pending[i] = 1
                    self.timer_ms[i] = 0
                if self.timer_ms[i] >= delay:
                    self.active[i] ^= 1
                    self.event_value[i] = v
                    self.pending[i] = 0
                    self.timer_ms[i] = 0
                elif not self.active[i]:
                    pending |= self.bit[i]
            if self.active[i]:
                faults |= self.bit[i]
        self.warnings = faults & WARNING_BITS
        faults &= ~WARNING_BITS
        self.faults = faults
        self.pending_trips = pending & ~WARNING_BITS
        return faults
