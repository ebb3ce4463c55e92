"""What a Pico's or an ESP32's own ADC gets wrong, and how the board HAL puts it
right: read only while ``hal_adc_mux`` sets up (and by the host's board-file
check), so a simulated board never loads it.

- Code scale: the HAL hands the front end 16-bit codes with 65535 at
  ``ADC_REF_MV`` on the pin (the RP2040's 3.3 V reference; on the ESP32 the
  calibrated ``read_uv()`` reading, converted at the same scale).
- RP2040 (erratum RP2040-E11): the converter's capacitor mismatch makes the
  codes 512, 1536, 2560 and 3584 about ``DNL_LSB + 1`` LSB wide, so every code
  above such a step reads ``DNL_LSB`` lower; with the offset that centres the
  error, a code reads ``DNL_OFFSET_LSB`` high at the bottom of the range and as
  much low at the top (typical Picos: about 9 LSB a step). :func:`rp2040_fix`
  maps a 12-bit code to the middle of the input range it stands for.
- ESP32 with 11 dB attenuation is accurate only from about 150 mV to 2450 mV;
  above that its readings flatten towards ~3.1 V. ``read_u16`` is the raw code,
  without the chip's eFuse calibration (a gain error of several per cent);
  ``read_uv`` applies it.
"""

from micropython import const

ADC_REF_MV = const(3300)  # pin voltage of code 65535
DNL_LSB = const(9)  # extra width of each RP2040 step code, LSB (12 bit)
DNL_OFFSET_LSB = const(14)  # what a code reads above its input at the bottom, LSB

# Pin voltages each MCU's ADC converts accurately, mV (inclusive).
ACCURATE_MV = {"rp2040": (0, 3300), "esp32": (150, 2450)}


def rp2040_fix(code):
    """A 12-bit RP2040 code, DNL-corrected, in 1/16 LSB (0..65535): the middle of
    the input range the code stands for."""
    k = 0  # steps below the code
    step = 512
    while k < 4 and code > step:
        k += 1
        step += 1024
    fixed = (code + DNL_LSB * k - DNL_OFFSET_LSB) * 16 + 8
    if k < 4 and code == step:  # the wide code itself: the middle of its range
        fixed += DNL_LSB * 8
    return 0 if fixed < 0 else 65535 if fixed > 65535 else fixed


def pin_mv(cell_mv, full_scale_mv):
    """The pin voltage (mV) of a cell at ``cell_mv`` through a front end whose
    full-scale code stands for ``full_scale_mv``."""
    return cell_mv * ADC_REF_MV // full_scale_mv


def range_error(mcu, full_scale_mv, max_cell_mv):
    """Why a cell at ``max_cell_mv`` would leave the ADC's accurate range, or None."""
    span = ACCURATE_MV.get(mcu)
    if span is None:
        return None
    top = pin_mv(max_cell_mv, full_scale_mv)
    if top <= span[1]:
        return None
    return ("a %d mV cell puts %d mV on the %s ADC pin, beyond its accurate range "
            "(%d..%d mV): divide it down (cell_adc full_scale_mv at least %d)" % (
                max_cell_mv, top, mcu, span[0], span[1],
                -(-max_cell_mv * ADC_REF_MV // span[1])))


def calibration(cfg, n, where):
    """Per-channel (gain, offset) pairs from a board-file list, checked: ``n``
    pairs ``[gain, offset]``, gain 0.8..1.25; an absent list is (1, 0) each."""
    if cfg is None:
        return [(1.0, 0)] * n
    if len(cfg) != n:
        raise ValueError("%s: calibration needs %d [gain, offset] pairs" % (where, n))
    pairs = []
    for pair in cfg:
        if len(pair) != 2:
            raise ValueError("%s: calibration entries are [gain, offset] pairs" % where)
        gain, offset = pair
        if not 0.8 <= gain <= 1.25:
            raise ValueError("%s: calibration gain %r is not within 0.8..1.25" % (where, gain))
        pairs.append((gain, offset))
    return pairs
