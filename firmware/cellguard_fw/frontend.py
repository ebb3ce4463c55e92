"""Sensor front end: raw ADC codes to engineering units (mV, mA, 0.1 degC).

The board file (``boards/<name>.json``, key ``frontend``) describes the analog
chain; everything here is integer arithmetic chosen so intermediates stay below
2**30 (MicroPython's small-int range), so conversion allocates nothing.

- cells: ``mv = code * full_scale_mv / max_code`` (a divider or differential
  amplifier in front of the ADC).
- current: a bipolar shunt amplifier centred on ``zero_code``;
  ``ma = (code - zero_code) * full_scale_ma / (max_code - zero_code)``,
  positive when charging.
- pack voltage (optional, ``pack_adc``): ``mv = code * full_scale_mv / max_code``.
- temperature: an NTC thermistor to ground with a pull-up to the ADC reference,
  converted through a table built once at start-up (the only float maths).
  ``full_code`` (optional): the highest code the converter gives, where it
  saturates below the pull-up's rail (an ESP32 at 11 dB: ``hal_adc_mux`` sets it);
  a reading within 1 % of it, or of the rail, is an open sensor.
"""

import math
from array import array

from micropython import const

_MAX_TERM = const(1 << 21)  # bound on num and den so every intermediate is a small int


def _reduce(num, den):
    a, b = num, den
    while b:
        a, b = b, a % b
    return num // a, den // a


class LinearChannel:
    """value = round((code - zero) * full_scale / (max_code - zero)), exactly.

    The product is split at bit 8 of the code so that no intermediate exceeds
    2**29 for 16-bit codes: exact rounding with no big-int allocation.
    """

    def __init__(self, bits, full_scale, zero_code=0):
        if bits > 16:
            raise ValueError("ADC codes wider than 16 bits are not supported")
        max_code = (1 << bits) - 1
        self.max_code = max_code
        self.zero = zero_code
        self.num, self.den = _reduce(full_scale, max_code - zero_code)
        if self.num >= _MAX_TERM or self.den >= _MAX_TERM:
            raise ValueError("front-end scale too large for integer conversion")
        self.half = self.den // 2

    def convert(self, code):
        x = code - self.zero
        negative = x < 0
        if negative:
            x = -x
        num = self.num
        den = self.den
        hi = (x >> 8) * num
        q = hi // den
        v = (q << 8) + (((hi - q * den) << 8) + (x & 0xFF) * num + self.half) // den
        return -v if negative else v


_NTC_POINTS = const(65)
KELVIN_0C = 273.15


class NtcChannel:
    """NTC thermistor (to ground, pull-up to reference) in 0.1 degC."""

    def __init__(self, bits, r25_ohm, beta, pullup_ohm, min_dc=-550, max_dc=1500, full_code=0):
        self.max_code = (1 << bits) - 1
        # An open sensor: the pull-up takes the input to the rail, or the converter
        # to its full scale (``full_code``) where that lies below the rail.
        top = full_code if 0 < full_code < self.max_code else self.max_code
        self.open_code = top - self.max_code // 100
        self.step = (self.max_code + _NTC_POINTS - 2) // (_NTC_POINTS - 1)
        self.table = array("h", [0] * _NTC_POINTS)
        inv_t25 = 1.0 / (25.0 + KELVIN_0C)
        for i in range(_NTC_POINTS):
            code = min(i * self.step, self.max_code)
            if code <= 0:
                dc = max_dc  # shorted sensor reads as hot
            elif code >= self.max_code:
                dc = min_dc  # open sensor reads as cold
            else:
                r = pullup_ohm * code / (self.max_code - code)
                t = 1.0 / (inv_t25 + math.log(r / r25_ohm) / beta) - KELVIN_0C
                dc = int(round(t * 10))
                dc = min(max(dc, min_dc), max_dc)
            self.table[i] = dc

    def convert(self, code):
        i = code // self.step
        if i >= _NTC_POINTS - 1:
            return self.table[_NTC_POINTS - 1]
        frac = code - i * self.step
        lo = self.table[i]
        return lo + (self.table[i + 1] - lo) * frac // self.step


class Frontend:
    """The three channel types of one board, built from its ``frontend`` config."""

    def __init__(self, cfg):
        c = cfg["cell_adc"]
        self.cell = LinearChannel(c["bits"], c["full_scale_mv"])
        i = cfg["current_adc"]
        self.current = LinearChannel(i["bits"], i["full_scale_ma"], i["zero_code"])
        t = cfg["temp_adc"]
        self.temp = NtcChannel(t["bits"], t["ntc_r25_ohm"], t["ntc_beta"], t["pullup_ohm"],
                               full_code=t.get("full_code", 0))
        p = cfg.get("pack_adc")  # optional: a divider from the pack's top terminal
        self.pack = LinearChannel(p["bits"], p["full_scale_mv"]) if p else None
