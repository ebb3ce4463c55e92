"""Runtime configuration: typed keys with allowed ranges and hard limits.

Every key is an i32 in the unit its name ends with (see ``codec.CONFIG_*``).
The protection keys come in fours per protection (trip, release, trip delay,
release delay) and read and write the protection table directly. A write is
checked against the chemistry's or the hardware's hard limit first
(``beyond_hard_limit``) and then against the key's range as it stands now
(``out_of_range``: a release threshold must stay on the safe side of its trip);
each refusal names the bound that was crossed.
"""

from .codec import (
    CONFIG_CAPACITY_MAH,
    CONFIG_HOST_TIMEOUT_MS,
    CONFIG_TELEMETRY_PERIOD_MS,
    NAK_ERROR_BEYOND_HARD_LIMIT,
    NAK_ERROR_OUT_OF_RANGE,
    NAK_ERROR_UNKNOWN_KEY,
)
from .protection import (
    PROTECTIONS,
    Q_CELL_SPREAD_MV,
    Q_CHARGE_MA,
    Q_DISCHARGE_MA,
    Q_MAX_TEMP_CHARGING_DC,
    Q_MAX_TEMP_DC,
    Q_MIN_TEMP_CHARGING_DC,
    Q_MIN_TEMP_DC,
)

# Keys 1..4n: n protections x (trip, release, trip delay, release delay).
PROTECTION_KEYS = 4 * len(PROTECTIONS)
MAX_DELAY_MS = 60000
MAX_TELEMETRY_PERIOD_MS = 60000
MAX_CAPACITY_MAH = 10000000
MAX_HOST_TIMEOUT_MS = 3600000
KEYS = tuple(range(1, PROTECTION_KEYS + 1)) + (
    CONFIG_TELEMETRY_PERIOD_MS, CONFIG_CAPACITY_MAH, CONFIG_HOST_TIMEOUT_MS)


class Config:
    def __init__(self, bms, profile, board):
        self.bms = bms
        self.cell_hard = profile["hard_cell_mv"]
        self.temp_hard = profile["hard_temp_dc"]
        # Current thresholds cannot exceed what the sensor measures.
        self.current_hard = board["frontend"]["current_adc"]["full_scale_ma"]

    def _hard(self, quantity):
        """(lowest, highest) a threshold on this quantity may ever be."""
        if quantity == Q_CHARGE_MA or quantity == Q_DISCHARGE_MA:
            return 0, self.current_hard
        if quantity == Q_CELL_SPREAD_MV:
            return 0, self.cell_hard[1] - self.cell_hard[0]
        if quantity in (Q_MAX_TEMP_DC, Q_MIN_TEMP_DC, Q_MAX_TEMP_CHARGING_DC,
                        Q_MIN_TEMP_CHARGING_DC):
            return self.temp_hard
        return self.cell_hard

    def get(self, key):
        """The value of ``key``; KeyError when there is no such key."""
        p = self.bms.protection
        if 1 <= key <= PROTECTION_KEYS:
            i, field = divmod(key - 1, 4)
            if field == 0:
                return p.trip[i]
            if field == 1:
                return p.release[i]
            if field == 2:
                return p.trip_delay_ms[i]
            return p.release_delay_ms[i]
        if key == CONFIG_TELEMETRY_PERIOD_MS:
            return self.bms.telemetry_period_ms
        if key == CONFIG_CAPACITY_MAH:
            return self.bms.soc.capacity_mah
        if key == CONFIG_HOST_TIMEOUT_MS:
            return self.bms.host_timeout_ms
        raise KeyError(key)

    def limits(self, key):
        """(hard_min, hard_max, min, max) for ``key`` as things stand."""
        p = self.bms.protection
        if 1 <= key <= PROTECTION_KEYS:
            i, field = divmod(key - 1, 4)
            if field >= 2:
                return 0, MAX_DELAY_MS, 0, MAX_DELAY_MS
            lo, hi = self._hard(p.quantity[i])
            trip, release = p.trip[i], p.release[i]
            if p.above[i]:  # release < trip
                if field == 0:
                    return lo, hi, release + 1, hi
                return lo, hi, lo, trip - 1
            if field == 0:  # release > trip
                return lo, hi, lo, release - 1
            return lo, hi, trip + 1, hi
        if key == CONFIG_TELEMETRY_PERIOD_MS:
            period = self.bms.control_period_ms
            return period, MAX_TELEMETRY_PERIOD_MS, period, MAX_TELEMETRY_PERIOD_MS
        if key == CONFIG_CAPACITY_MAH:
            return 1, MAX_CAPACITY_MAH, 1, MAX_CAPACITY_MAH
        if key == CONFIG_HOST_TIMEOUT_MS:
            return 0, MAX_HOST_TIMEOUT_MS, 0, MAX_HOST_TIMEOUT_MS
        raise KeyError(key)

    def check(self, key, value):
        """(error, limit): error 0 when ``value`` may be written to ``key``."""
        try:
            hard_lo, hard_hi, lo, hi = self.limits(key)
        except KeyError:
            return NAK_ERROR_UNKNOWN_KEY, 0
        if value < hard_lo:
            return NAK_ERROR_BEYOND_HARD_LIMIT, hard_lo
        if value > hard_hi:
            return NAK_ERROR_BEYOND_HARD_LIMIT, hard_hi
        if value < lo:
            return NAK_ERROR_OUT_OF_RANGE, lo
        if value > hi:
            return NAK_ERROR_OUT_OF_RANGE, hi
        return 0, 0

    def set(self, key, value):
        """Write a value that :meth:`check` accepted."""
        p = self.bms.protection
        if 1 <= key <= PROTECTION_KEYS:
            i, field = divmod(key - 1, 4)
            if field == 0:
                p.trip[i] = value
            elif field == 1:
                p.release[i] = value
            elif field == 2:
                p.trip_delay_ms[i] = value
            else:
                p.release_delay_ms[i] = value
        elif key == CONFIG_TELEMETRY_PERIOD_MS:
            self.bms.telemetry_period_ms = value
        elif key == CONFIG_CAPACITY_MAH:
            self.bms.soc.set_capacity(value)
        elif key == CONFIG_HOST_TIMEOUT_MS:
            self.bms.host_timeout_ms = value
