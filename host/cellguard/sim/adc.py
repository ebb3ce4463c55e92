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

import numpy as np
import numpy.typing as npt

from cellguard_fw.adc_front import ADC_REF_MV, rp2040_fix

REF_V = ADC_REF_MV / 1000.0

ADC_DEFAULTS: dict[str, dict[str, float]] = {
    "ideal": {},
    "rp2040": {"noise_lsb": 2.0, "vref_noise": 0.0015, "vref_error": 0.0, "dnl_lsb": 9.0,
               "offset_lsb": 14.0},
    "esp32": {"noise_lsb": 3.0, "gain_error": 0.06, "offset_mv": 40.0, "cal_error": 0.0},
}
"""Each kind's parameters and their defaults (``AdcModel(kind, **overrides)``)."""

_BLOCK = 16  # conversions drawn at once for single reads of one voltage
ESP32_FULL_V = 3.1  # input of raw code 4095 before the chip's own gain error
ESP32_LINEAR_V = 2.45  # the top of the accurate range
ESP32_CEILING_V = 3.2  # where the flattening tends to


def _esp32_curve(v: np.ndarray) -> np.ndarray:
    """What the ESP32 converts pin voltages as, before its gain and offset: linear
    to 2.45 V, then bending over (slope 1 at the knee) towards 3.2 V."""
    span = ESP32_CEILING_V - ESP32_LINEAR_V
    bent = ESP32_LINEAR_V + span * (1.0 - np.exp(-(np.maximum(v, ESP32_LINEAR_V)
                                                   - ESP32_LINEAR_V) / span))
    return np.where(v <= ESP32_LINEAR_V, v, bent)


def _u16(code12: np.ndarray) -> np.ndarray:
    """12-bit codes scaled to 16 bits, as the MicroPython ports do."""
    return (code12 << 4) | (code12 >> 8)


class AdcModel:
    """The converter of one kind. Its conversions are drawn in arrays (``codes``:
    one conversion per element, each with its own noise): a virtual board's host
    refills every pin's ring at every plant tick, thousands of conversions a second;
    the single reads are arrays of one."""

    def __init__(self, kind: str = "rp2040", seed: int = 1, **overrides: float) -> None:
        if kind not in ADC_DEFAULTS:
            raise ValueError(f"ADC model must be one of {', '.join(ADC_DEFAULTS)}, not {kind!r}")
        unknown = sorted(set(overrides) - set(ADC_DEFAULTS[kind]))
        if unknown:
            raise ValueError(f"{kind} ADC has no parameter {', '.join(unknown)}")
        self.kind = kind
        self.p = {**ADC_DEFAULTS[kind], **{k: float(v) for k, v in overrides.items()}}
        self.rng = np.random.default_rng(seed ^ 0xADC)
        self._block_v: float | None = None  # the voltage the drawn block is of
        self._block: list[tuple[int, int]] = []  # its conversions not read yet

    def _conversion(self, v: float) -> tuple[int, int]:
        """One conversion of ``v`` as (read_u16, read_uv; 0 but on an ESP32): drawn
        ``_BLOCK`` at a time while the voltage stays (a HAL averages its samples of a
        pin), as a NumPy call on one value costs more than the conversion."""
        if v != self._block_v or not self._block:
            raw = self.codes(np.full(_BLOCK, v))
            uv = self.uv_of(raw).tolist() if self.kind == "esp32" else [0] * _BLOCK
            self._block = list(zip(_u16(raw).tolist(), uv, strict=True))[::-1]
            self._block_v = v
        return self._block.pop()

    def _noise(self, sigma: float, shape: tuple[int, ...]) -> np.ndarray | float:
        return self.rng.normal(0.0, sigma, shape) if sigma else 0.0

    def codes(self, v: npt.ArrayLike) -> np.ndarray:
        """The 12-bit raw codes (int64) of one conversion of each pin voltage in ``v``
        (volts)."""
        v = np.asarray(v, dtype=float)
        p = self.p
        if self.kind == "esp32":
            seen = (_esp32_curve(np.maximum(v, 0.0)) * (1.0 + p["gain_error"])
                    + p["offset_mv"] / 1000.0)
            x = seen / ESP32_FULL_V * 4095 + self._noise(p["noise_lsb"], v.shape)
            return np.clip(np.rint(x), 0, 4095).astype(np.int64)
        if self.kind == "ideal":
            return np.clip(np.rint(v / REF_V * 4096 - 0.5), 0, 4095).astype(np.int64)
        vref = REF_V * (1.0 + p["vref_error"] + self._noise(p["vref_noise"], v.shape))
        return self.rp2040_codes(v / vref * 4096 + self._noise(p["noise_lsb"], v.shape))

    # -- RP2040 ------------------------------------------------------------------
    def rp2040_codes(self, x: npt.ArrayLike) -> np.ndarray:
        """The 12-bit codes of inputs ``x`` in ideal LSB (x = 4096 at the reference):
        below each DNL step the code follows the input shifted by the steps passed;
        the step's own code is ``dnl_lsb + 1`` wide."""
        p = self.p
        w, u = p["dnl_lsb"], np.asarray(x, dtype=float) + p["offset_lsb"]
        out = np.floor(u - 4 * w)
        open_ = np.ones(u.shape, dtype=bool)  # not placed below a step yet
        for k in range(4):
            step = 512 + 1024 * k
            uk = u - w * k
            below = open_ & (uk < step)
            out[below] = np.floor(uk[below])
            open_ &= ~below
            on = open_ & (uk < step + 1 + w)
            out[on] = step
            open_ &= ~on
        return np.clip(out, 0, 4095).astype(np.int64)

    def rp2040_code(self, x: float) -> int:
        """The 12-bit code of one input ``x`` in ideal LSB."""
        return int(self.rp2040_codes(np.array([x]))[0])

    # -- ESP32 -------------------------------------------------------------------
    def esp32_calibrated_mv(self, raw: npt.ArrayLike) -> np.ndarray:
        """The eFuse calibration: raw codes to mV (int64), undoing the gain and offset."""
        p = self.p
        seen = np.asarray(raw) / 4095 * ESP32_FULL_V
        return np.rint((seen - p["offset_mv"] / 1000.0) / (1.0 + p["gain_error"])
                       * (1.0 + p["cal_error"]) * 1000.0).astype(np.int64)

    def uv_of(self, raw: npt.ArrayLike) -> np.ndarray:
        """What ``read_uv()`` returns for raw codes (ESP32: the calibration, whole mV)."""
        return np.maximum(self.esp32_calibrated_mv(raw), 0) * 1000

    # -- what machine.ADC returns --------------------------------------------------
    def read_u16(self, v: float) -> int:
        """One ``read_u16()`` of a pin at ``v`` volts."""
        return self._conversion(v)[0]

    def read_uv(self, v: float) -> int:
        """One ``read_uv()`` (ESP32 only: the RP2040 port has none)."""
        if self.kind != "esp32":
            raise AttributeError("'ADC' object has no attribute 'read_uv'")
        return self._conversion(v)[1]

    def hal_code(self, v: float, samples: int) -> int:
        """The 16-bit code the board HAL (``hal_adc_mux.AdcMuxHal._read``) makes of
        ``samples`` readings of a pin at ``v`` volts: averaged, DNL-corrected on an
        RP2040, from ``read_uv`` on an ESP32 (the same integer arithmetic)."""
        raw = self.codes(np.full(samples, v))
        if self.kind == "esp32":
            total = int(self.uv_of(raw).sum())
            mv10 = (total // samples + 50) // 100
            code = (mv10 * 13107 + 3300) // 6600
        elif self.kind == "rp2040":
            total = sum(rp2040_fix(int(c)) for c in raw)
            code = (total + samples // 2) // samples
        else:
            total = int(_u16(raw).sum())
            code = (total + samples // 2) // samples
        return min(code, 65535)
