"""HAL for a Pico (RP2040) or ESP32 dev board: cells through an analog mux
into one ADC pin, the current-sense amplifier and the NTCs on ADC pins, and
the FET / contactor driver on a GPIO.

Only this module and ``board_main`` touch ``machine``; they stay thin and are
type-checked against the rp2 and esp32 stubs.
"""

from time import sleep_us

from machine import ADC, Pin, unique_id

from .hal import Hal

MUX_SETTLE_US = 50  # analog mux and RC filter settling time


def _adc(pin, board):
    # ESP32 ADC pins need 11 dB attenuation for a 0..3.3 V range; RP2040 has none.
    if board["mcu"] == "esp32":
        return ADC(Pin(pin), atten=ADC.ATTN_11DB)
    return ADC(Pin(pin))


class AdcMuxHal(Hal):
    def __init__(self, board):
        pins = board["pins"]
        precharge = pins.get("precharge")
        self.precharge = None if precharge is None else Pin(precharge, Pin.OUT, value=0)
        feedback = pins.get("feedback")
        self.feedback = None if feedback is None else Pin(feedback, Pin.IN, Pin.PULL_UP)
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

    def _select(self, channel):
        sel = self.select
        for bit in range(len(sel)):
            sel[bit].value((channel >> bit) & 1)

    def sample(self, raw_cells, raw_temps):
        adc = self.cell_adc
        for i in range(len(raw_cells)):
            self._select(i)
            sleep_us(MUX_SETTLE_US)
            raw_cells[i] = adc.read_u16()
        temps = self.temp_adcs
        for i in range(len(raw_temps)):
            raw_temps[i] = temps[i].read_u16()
        return self.current_adc.read_u16()

    def set_output(self, closed):
        self.output.value(1 if closed else 0)

    def set_directions(self, charge, discharge):
        if self.charge_enable is not None:
            self.charge_enable.value(1 if charge else 0)
        if self.discharge_enable is not None:
            self.discharge_enable.value(1 if discharge else 0)

    def read_pack_code(self):
        return -1 if self.pack_adc is None else self.pack_adc.read_u16()

    def set_precharge(self, on):
        if self.precharge is not None:
            self.precharge.value(1 if on else 0)

    def output_feedback(self):
        # The auxiliary contact pulls the pin low when the contactor is closed.
        if self.feedback is None:
            return -1
        return 1 if self.feedback.value() == 0 else 0

    def unique_id(self):
        return unique_id()

    def storage_dir(self):
        return ""  # the root of the board's flash filesystem
