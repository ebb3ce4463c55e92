"""The MCU's own ADC, modelled sample by sample (seeded, deterministic): what
``machine.ADC.read_u16()`` / ``read_uv()`` return on a Pico or an ESP32 for a
pin voltage. The inverse the board HAL applies is ``cellguard_fw.adc_front``.

- ``"ideal"``: 12 bits at 3.3 V, no noise (the bench's reference).
- ``"rp2040"``: 12 bits, read_u16 = code scaled to 16 bits. The reference is the
  3.3 V rail (static error ``vref_error``, noise ``vref_noise``, relative sigma,
  per sample: the SMPS ripple); sample noise ``noise_lsb``; the DNL steps of
  erratum E11 at 512/1536/2560/3584 (each step code ``dnl_lsb + 1`` wide, the
  error centred by ``offset_lsb``).
- ``"esp32"``: 11 dB attenuation. Linear to 2.45 V, then flattening towards
  3.2 V (``_esp32_curve``); the chip's gain and offset before its eFuse
  calibration (``gain_error``, ``offset_mv``) show in read_u16 (12 bits, 4095
  near 3.1 V); read_uv applies the calibration, which undoes them (to within
  ``cal_error``, relative) but not the flattening, in whole mV as the port does.

``SensorModel`` runs a simulated board's codes through it (``"adc"`` in the
board file's ``"sensors"``); ``cellguard.sim.fake_machine.AdcBench`` wires a
Pico or ESP32 board's pins to it for the real board HAL.
"""

from __future__ import annotations

import math
import random

from cellguard_fw.adc_front import ADC_REF_MV, rp2040_fix

REF_V = ADC_REF_MV / 1000.0

ADC_DEFAULTS: dict[str, dict[str, float]] = {
    "ideal": {},
    "rp2040": {"noise_lsb": 2.0, "vref_noise": 0.0015, "vref_error": 0.0, "dnl_lsb": 9.0,
               "offset_lsb": 14.0},
    "esp32": {"noise_lsb": 3.0, "gain_error": 0.06, "offset_mv": 40.0, "cal_error": 0.0},
}
"""Each kind's parameters and their defaults (``AdcModel(kind, **overrides)``)."""

ESP32_FULL_V = 3.1  # input of raw code 4095 before the chip's own gain error
ESP32_LINEAR_V = 2.45  # the top of the accurate range
ESP32_CEILING_V = 3.2  # where the flattening tends to


def _esp32_curve(v: float) -> float:
    """What the ESP32 converts a pin voltage as, before its gain and offset: linear
    to 2.45 V, then bending over (slope 1 at the knee) towards 3.2 V."""
    if v <= ESP32_LINEAR_V:
        return v
    span = ESP32_CEILING_V - ESP32_LINEAR_V
    return ESP32_LINEAR_V + span * (1.0 - math.exp(-(v - ESP32_LINEAR_V) / span))


def _u16(code12: int) -> int:
    """A 12-bit code scaled to 16 bits, as the MicroPython ports do."""
    return (code12 << 4) | (code12 >> 8)


class AdcModel:
    def __init__(self, kind: str = "rp2040", seed: int = 1, **overrides: float) -> None:
        if kind not in ADC_DEFAULTS:
            raise ValueError(f"ADC model must be one of {', '.join(ADC_DEFAULTS)}, not {kind!r}")
        unknown = sorted(set(overrides) - set(ADC_DEFAULTS[kind]))
        if unknown:
            raise ValueError(f"{kind} ADC has no parameter {', '.join(unknown)}")
        self.kind = kind
        self.p = {**ADC_DEFAULTS[kind], **{k: float(v) for k, v in overrides.items()}}
        self.rng = random.Random(seed ^ 0xADC)

    def _noise(self, sigma: float) -> float:
        return self.rng.gauss(0.0, sigma) if sigma else 0.0

    # -- RP2040 ------------------------------------------------------------------
    def rp2040_code(self, x: float) -> int:
        """The 12-bit code of an input ``x`` in ideal LSB (x = 4096 at the reference)."""
        p = self.p
        w, u = p["dnl_lsb"], x + p["offset_lsb"]
        for k in range(4):
            step = 512 + 1024 * k
            if u - w * k < step:
                return min(max(math.floor(u - w * k), 0), 4095)
            if u - w * k < step + 1 + w:
                return step
        return min(max(math.floor(u - 4 * w), 0), 4095)

    # -- ESP32 -------------------------------------------------------------------
    def esp32_raw(self, v: float) -> int:
        p = self.p
        seen = _esp32_curve(max(v, 0.0)) * (1.0 + p["gain_error"]) + p["offset_mv"] / 1000.0
        x = seen / ESP32_FULL_V * 4095 + self._noise(p["noise_lsb"])
        return min(max(round(x), 0), 4095)

    def esp32_calibrated_mv(self, raw: int) -> int:
        """The eFuse calibration: raw code to mV, undoing the gain and offset."""
        p = self.p
        seen = raw / 4095 * ESP32_FULL_V
        return round((seen - p["offset_mv"] / 1000.0) / (1.0 + p["gain_error"])
                     * (1.0 + p["cal_error"]) * 1000.0)

    # -- what machine.ADC returns --------------------------------------------------
    def read_u16(self, v: float) -> int:
        """One ``read_u16()`` of a pin at ``v`` volts."""
        if self.kind == "esp32":
            return _u16(self.esp32_raw(v))
        if self.kind == "ideal":
            return _u16(min(max(round(v / REF_V * 4096 - 0.5), 0), 4095))
        p = self.p
        vref = REF_V * (1.0 + p["vref_error"] + self._noise(p["vref_noise"]))
        return _u16(self.rp2040_code(v / vref * 4096 + self._noise(p["noise_lsb"])))

    def read_uv(self, v: float) -> int:
        """One ``read_uv()`` (ESP32 only: the RP2040 port has none)."""
        if self.kind != "esp32":
            raise AttributeError("'ADC' object has no attribute 'read_uv'")
        return max(self.esp32_calibrated_mv(self.esp32_raw(v)), 0) * 1000

    def hal_code(self, v: float, samples: int) -> int:
        """The 16-bit code the board HAL (``hal_adc_mux.AdcMuxHal._read``) makes of
        ``samples`` readings of a pin at ``v`` volts: averaged, DNL-corrected on an
        RP2040, from ``read_uv`` on an ESP32 (the same integer arithmetic)."""
        total = 0
        if self.kind == "esp32":
            for _ in range(samples):
                total += self.read_uv(v)
            mv10 = (total // samples + 50) // 100
            code = (mv10 * 13107 + 3300) // 6600
        elif self.kind == "rp2040":
            for _ in range(samples):
                total += rp2040_fix(self.read_u16(v) >> 4)
            code = (total + samples // 2) // samples
        else:
            for _ in range(samples):
                total += self.read_u16(v)
            code = (total + samples // 2) // samples
        return min(code, 65535)
