"""HAL for a Pico (RP2040) or ESP32 dev board: cells through an analog mux
into one ADC pin, the current-sense amplifier and the NTCs on ADC pins, and
the FET / contactor driver on a GPIO.

Each channel is read ``adc_samples`` times a period (board file, default 16)
and averaged. On an RP2040 every sample is corrected for the DNL steps of
erratum E11 first; on an ESP32 the HAL reads ``read_uv()`` (the chip's eFuse
calibration) instead of the uncalibrated ``read_u16()``. Either way it hands
the front end 16-bit codes with 65535 at 3.3 V on the pin (``adc_front``).
Per-channel calibration from the board file (``frontend.cell_adc.calibration``,
``frontend.current_adc.calibration``: ``[gain, offset]``, offset in mV or mA)
is applied to the averaged code. Balancing resistors are driven from
``pins.balance`` (one pin per cell, bottom cell first); a board without them
runs no balancer, so ESTIMATE reports a mask of 0.

Only this module and ``board_main`` touch ``machine``; they stay thin and are
type-checked against the rp2 and esp32 stubs.
"""

from time import sleep_us

from machine import ADC, Pin, unique_id

from .hal import Hal

MUX_SETTLE_US = 50  # analog mux and RC filter settling time
_Q = 13  # calibration gains in 1/8192: codes times gains stay small ints


def _adc(pin, board):
    # ESP32 ADC pins need 11 dB attenuation for a 0..2.45 V accurate range; RP2040 has none.
    if board["mcu"] == "esp32":
        return ADC(Pin(pin), atten=ADC.ATTN_11DB)
    return ADC(Pin(pin))


def _cal(pairs, full_scale, span):
    """Calibration (gain, offset) pairs as integers: gain in 1/2**_Q, offset in
    codes (``span`` codes stand for ``full_scale``)."""
    gains = [int(g * (1 << _Q) + 0.5) for g, _ in pairs]
    offsets = [int(o * span / full_scale + (0.5 if o >= 0 else -0.5)) for _, o in pairs]
    return gains, offsets


class AdcMuxHal(Hal):
    def __init__(self, board):
        from . import adc_front
        from .chemistry import PROFILES

        pins = board["pins"]
        fe = board["frontend"]
        mcu = board["mcu"]
        cell_fs = fe["cell_adc"]["full_scale_mv"]
        error = adc_front.range_error(mcu, cell_fs,
                                      PROFILES[board["chemistry"]]["hard_cell_mv"][1])
        if error:
            raise ValueError("board file: " + error)
        top_mv = adc_front.ACCURATE_MV.get(mcu, (0, adc_front.ADC_REF_MV))[1]
        if top_mv < adc_front.ADC_REF_MV:
            # The converter saturates below the NTC pull-up's rail (an ESP32 at 11 dB
            # reads nothing above 2450 mV as it is): an open NTC reads this full
            # scale, not the rail. The front end counts a reading there as open.
            fe["temp_adc"].setdefault("full_code", top_mv * 65535 // adc_front.ADC_REF_MV)
        self.esp32 = mcu == "esp32"
        self.rp2040 = mcu == "rp2040"
        self.fix = adc_front.rp2040_fix
        self.n_samples = board.get("adc_samples", 16)
        if not 1 <= self.n_samples <= 256:
            raise ValueError("board file: adc_samples must be 1..256")
        n = board["cells"]
        self.cell_gain, self.cell_offset = _cal(
            adc_front.calibration(fe["cell_adc"].get("calibration"), n, "cell_adc"),
            cell_fs, 65535)
        cur = fe["current_adc"]
        cal = cur.get("calibration")
        self.current_gain, self.current_offset = _cal(
            adc_front.calibration(None if cal is None else [cal], 1, "current_adc"),
            cur["full_scale_ma"], 65535 - cur["zero_code"])
        self.zero_code = cur["zero_code"]
        precharge = pins.get("precharge")
        self.precharge = None if precharge is None else Pin(precharge, Pin.OUT, value=0)
        feedback = pins.get("feedback")
        self.feedback = None if feedback is None else Pin(feedback, Pin.IN, Pin.PULL_UP)
        button = pins.get("presence")
        self.button = None if button is None else Pin(button, Pin.IN, Pin.PULL_UP)
        self.cell_adc = _adc(pins["cell_adc"], board)
        self.current_adc = _adc(pins["current_adc"], board)
        self.temp_adcs = [_adc(p, board) for p in pins["temp_adcs"]]
        self.select = [Pin(p, Pin.OUT, value=0) for p in pins["mux_select"]]
        self.output = Pin(pins["output"], Pin.OUT, value=0)
        # Optional: a pack-voltage divider on its own ADC pin, and separate charge
        # and discharge FET enables (back-to-back FETs) gated with the output.
        pack = pins.get("pack_adc")
        self.pack_adc = None if pack is None else _adc(pack, board)
        charge, discharge = pins.get("charge_enable"), pins.get("discharge_enable")
        self.charge_enable = None if charge is None else Pin(charge, Pin.OUT, value=1)
        self.discharge_enable = None if discharge is None else Pin(discharge, Pin.OUT, value=1)
        balance = pins.get("balance")
        if balance is None:
            # Nothing to drive: the estimator runs no balancer, so ESTIMATE never
            # reports a mask the hardware does not apply.
            board["balancing"] = False
            balance = ()
        elif len(balance) != n:
            raise ValueError("board file: pins.balance needs one pin per cell")
        self.balance = [Pin(p, Pin.OUT, value=0) for p in balance]

    def _select(self, channel):
        sel = self.select
        for bit in range(len(sel)):
            sel[bit].value((channel >> bit) & 1)

    def _read(self, adc):
        """The channel's 16-bit code, averaged over ``n_samples`` (65535: 3.3 V)."""
        n = self.n_samples
        total = 0
        if self.esp32:
            for _ in range(n):
                total += adc.read_uv()
            mv10 = (total // n + 50) // 100  # 0.1 mV: the product below stays a small int
            code = (mv10 * 13107 + 3300) // 6600  # 65535 / 33000 = 13107 / 6600
        elif self.rp2040:
            fix = self.fix
            for _ in range(n):
                total += fix(adc.read_u16() >> 4)
            code = (total + n // 2) // n
        else:
            for _ in range(n):
                total += adc.read_u16()
            code = (total + n // 2) // n
        return 65535 if code > 65535 else code

    def sample(self, raw_cells, raw_temps):
        adc = self.cell_adc
        gain = self.cell_gain
        offset = self.cell_offset
        for i in range(len(raw_cells)):
            self._select(i)
            sleep_us(MUX_SETTLE_US)
            code = ((self._read(adc) * gain[i] + (1 << (_Q - 1))) >> _Q) + offset[i]
            raw_cells[i] = 0 if code < 0 else 65535 if code > 65535 else code
        temps = self.temp_adcs
        for i in range(len(raw_temps)):
            raw_temps[i] = self._read(temps[i])
        zero = self.zero_code
        x = self._read(self.current_adc) - zero
        code = zero + ((x * self.current_gain[0] + (1 << (_Q - 1))) >> _Q) + self.current_offset[0]
        return 0 if code < 0 else 65535 if code > 65535 else code

    def set_output(self, closed):
        self.output.value(1 if closed else 0)

    def set_directions(self, charge, discharge):
        if self.charge_enable is not None:
            self.charge_enable.value(1 if charge else 0)
        if self.discharge_enable is not None:
            self.discharge_enable.value(1 if discharge else 0)

    def set_balancing(self, mask):
        pins = self.balance
        for i in range(len(pins)):
            pins[i].value((mask >> i) & 1)

    def read_pack_code(self):
        return -1 if self.pack_adc is None else self._read(self.pack_adc)

    def set_precharge(self, on):
        if self.precharge is not None:
            self.precharge.value(1 if on else 0)

    def output_feedback(self):
        # The auxiliary contact pulls the pin low when the contactor is closed.
        if self.feedback is None:
            return -1
        return 1 if self.feedback.value() == 0 else 0

    def presence(self):
        return -1 if self.button is None else 1 - self.button.value()

    def unique_id(self):
        return unique_id()

    def storage_dir(self):
        return ""  # the root of the board's flash filesystem
