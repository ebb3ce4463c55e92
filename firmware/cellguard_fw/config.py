"""Runtime configuration: typed keys with allowed ranges and hard limits.

Every key is an i32 in the unit its name ends with (see ``codec.CONFIG_*``).
The protection keys come in fours per protection (trip, release, trip delay,
release delay) at ``4i+1..4i+4``, plus its debounce count at ``128+i`` and its
severity at ``160+i``; they read and write the protection table directly. A
write is checked against the chemistry's or the hardware's hard limit first
(``beyond_hard_limit``) and then against the key's range as it stands now
(``out_of_range``: a release threshold must stay on the safe side of its trip);
each refusal names the bound that was crossed.
"""

from micropython import const

from .protection import (
    FAULT,
    I_OPEN_WIRE,
    I_SENSOR_RANGE,
    MAX_DEBOUNCE,
    Q_CELL_SPREAD_MV,
    Q_CHARGE_MA,
    Q_DISCHARGE_MA,
    Q_MAX_TEMP_DC,
    Q_MIN_TEMP_DC,
    Q_PACK_MISMATCH_MV,
    Q_STUCK_MS,
    Q_TEMP_RISE_DC,
    Q_TEMPS_RAILED,
    WARNING,
)

# The protocol numbers used here, as folded copies of codec.py's: the board
# interns no name for them (tests/test_firmware_build.py holds them equal).
_CONFIG_CAPACITY_MAH = const(101)
_CONFIG_DEBOUNCE_BASE = const(128)
_CONFIG_HOST_TIMEOUT_MS = const(102)
_CONFIG_PROTECTION_COUNT = const(19)
_CONFIG_SEVERITY_BASE = const(160)
_CONFIG_TELEMETRY_PERIOD_MS = const(100)
_NAK_ERROR_BEYOND_HARD_LIMIT = const(6)
_NAK_ERROR_OUT_OF_RANGE = const(5)
_NAK_ERROR_UNKNOWN_KEY = const(4)

# Keys 1..4n: n protections x (trip, release, trip delay, release delay); then the
# debounce count (samples) at _CONFIG_DEBOUNCE_BASE + i and the severity (0 warning,
# 1 alarm, 2 fault) at _CONFIG_SEVERITY_BASE + i. The protocol fixes n; the protection
# table has a row for each (tests/test_protection.py).
N_PROTECTIONS = _CONFIG_PROTECTION_COUNT
PROTECTION_KEYS = 4 * N_PROTECTIONS
# Underscored constants are folded into the code: no name is kept in RAM for them.
_MAX_DELAY_MS = const(60000)
_MAX_STUCK_MS = const(3600000)
_MAX_TELEMETRY_PERIOD_MS = const(60000)
_MAX_CAPACITY_MAH = const(10000000)
_MAX_HOST_TIMEOUT_MS = const(3600000)
# Every key, ascending: bytes (one byte a key) rather than a tuple of ints (four).
KEYS = bytes(tuple(range(1, PROTECTION_KEYS + 1)) + (
    _CONFIG_TELEMETRY_PERIOD_MS, _CONFIG_CAPACITY_MAH, _CONFIG_HOST_TIMEOUT_MS) + tuple(
    range(_CONFIG_DEBOUNCE_BASE, _CONFIG_DEBOUNCE_BASE + N_PROTECTIONS)) + tuple(
    range(_CONFIG_SEVERITY_BASE, _CONFIG_SEVERITY_BASE + N_PROTECTIONS)))


class Config:
    def __init__(self, bms, profile, board):
        self.bms = bms
        self.cell_hard = profile["hard_cell_mv"]
        self.temp_hard = profile["hard_temp_dc"]
        fe = board["frontend"]
        # Current thresholds cannot exceed what the sensor measures.
        self.current_hard = fe["current_adc"]["full_scale_ma"]
        self.cell_full_scale = fe["cell_adc"]["full_scale_mv"]
        pack = fe.get("pack_adc")
        self.pack_full_scale = pack["full_scale_mv"] if pack else self.cell_full_scale
        self.n_temps = board["temp_sensors"]

    def _hard(self, i):
        """(lowest, highest) a threshold of protection ``i`` may ever be."""
        lo, hi = self.cell_hard
        if i == I_OPEN_WIRE:  # below every cell the chemistry allows
            return 0, lo
        if i == I_SENSOR_RANGE:  # beyond every cell, up to the ADC's full scale
            return hi, self.cell_full_scale
        quantity = self.bms.protection.quantity[i]
        if quantity == Q_CHARGE_MA or quantity == Q_DISCHARGE_MA:
            return 0, self.current_hard
        if quantity == Q_CELL_SPREAD_MV:
            return 0, hi - lo
        if quantity == Q_MAX_TEMP_DC or quantity == Q_MIN_TEMP_DC:
            return self.temp_hard
        if quantity == Q_TEMPS_RAILED:
            return 0, self.n_temps
        if quantity == Q_STUCK_MS:
            return 0, _MAX_STUCK_MS
        if quantity == Q_PACK_MISMATCH_MV:
            return 0, self.pack_full_scale
        if quantity == Q_TEMP_RISE_DC:
            return 0, self.temp_hard[1] - self.temp_hard[0]
        return lo, hi

    @staticmethod
    def _per_protection(key):
        """(protection index, field) of a protection key, or None. Fields 0..3:
        trip, release, trip delay, release delay; 4: debounce; 5: severity."""
        if 1 <= key <= PROTECTION_KEYS:
            return divmod(key - 1, 4)
        if _CONFIG_DEBOUNCE_BASE <= key < _CONFIG_DEBOUNCE_BASE + N_PROTECTIONS:
            return key - _CONFIG_DEBOUNCE_BASE, 4
        if _CONFIG_SEVERITY_BASE <= key < _CONFIG_SEVERITY_BASE + N_PROTECTIONS:
            return key - _CONFIG_SEVERITY_BASE, 5
        return None

    def get(self, key):
        """The value of ``key``; KeyError when there is no such key."""
        p = self.bms.protection
        where = self._per_protection(key)
        if where is not None:
            i, field = where
            return (p.trip, p.release, p.trip_delay_ms, p.release_delay_ms, p.debounce,
                    p.severity)[field][i]
        if key == _CONFIG_TELEMETRY_PERIOD_MS:
            return self.bms.telemetry_period_ms
        if key == _CONFIG_CAPACITY_MAH:
            return self.bms.soc.capacity_mah
        if key == _CONFIG_HOST_TIMEOUT_MS:
            return self.bms.host_timeout_ms
        raise KeyError(key)

    def limits(self, key):
        """(hard_min, hard_max, min, max) for ``key`` as things stand."""
        p = self.bms.protection
        where = self._per_protection(key)
        if where is not None:
            i, field = where
            if field == 5:
                return WARNING, FAULT, WARNING, FAULT
            if field == 4:
                return 1, MAX_DEBOUNCE, 1, MAX_DEBOUNCE
            if field >= 2:
                return 0, _MAX_DELAY_MS, 0, _MAX_DELAY_MS
            lo, hi = self._hard(i)
            trip, release = p.trip[i], p.release[i]
            # Integers: release == trip + 1 (above) is no hysteresis at all, the least.
            if p.above[i]:
                if field == 0:
                    return lo, hi, max(release - 1, lo), hi
                return lo, hi, lo, min(trip + 1, hi)
            if field == 0:
                return lo, hi, lo, min(release + 1, hi)
            return lo, hi, max(trip - 1, lo), hi
        if key == _CONFIG_TELEMETRY_PERIOD_MS:
            period = self.bms.control_period_ms
            return period, _MAX_TELEMETRY_PERIOD_MS, period, _MAX_TELEMETRY_PERIOD_MS
        if key == _CONFIG_CAPACITY_MAH:
            return 1, _MAX_CAPACITY_MAH, 1, _MAX_CAPACITY_MAH
        if key == _CONFIG_HOST_TIMEOUT_MS:
            return 0, _MAX_HOST_TIMEOUT_MS, 0, _MAX_HOST_TIMEOUT_MS
        raise KeyError(key)

    def check(self, key, value):
        """(error, limit): error 0 when ``value`` may be written to ``key``."""
        try:
            hard_lo, hard_hi, lo, hi = self.limits(key)
        except KeyError:
            return _NAK_ERROR_UNKNOWN_KEY, 0
        if value < hard_lo:
            return _NAK_ERROR_BEYOND_HARD_LIMIT, hard_lo
        if value > hard_hi:
            return _NAK_ERROR_BEYOND_HARD_LIMIT, hard_hi
        if value < lo:
            return _NAK_ERROR_OUT_OF_RANGE, lo
        if value > hi:
            return _NAK_ERROR_OUT_OF_RANGE, hi
        return 0, 0

    def set(self, key, value):
        """Write a value that :meth:`check` accepted."""
        p = self.bms.protection
        where = self._per_protection(key)
        if where is not None:
            i, field = where
            if field == 5 and p.active[i] and p.severity[i] != value:
                p.regraded |= p.bit[i]  # announced by the next step, as it acts
            (p.trip, p.release, p.trip_delay_ms, p.release_delay_ms, p.debounce,
             p.severity)[field][i] = value
        elif key == _CONFIG_TELEMETRY_PERIOD_MS:
            self.bms.telemetry_period_ms = value
        elif key == _CONFIG_CAPACITY_MAH:
            self.bms.soc.set_capacity(value)
        elif key == _CONFIG_HOST_TIMEOUT_MS:
            self.bms.host_timeout_ms = value
