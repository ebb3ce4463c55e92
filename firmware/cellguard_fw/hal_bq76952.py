"""HAL for a board whose cells, current and temperatures a TI BQ76952 measures
and whose charge and discharge FETs it drives (``bq76952`` is the driver).

``Bq76952Hal(board, i2c)``: the board file's ``afe`` section says how the chip is
wired, ``i2c`` is the board's ``machine.I2C`` (or a simulated bus)::

    "afe": {"chip": "bq76952", "address": 8, "crc": true, "shunt_uohm": 500,
            "cells": [1, 2, ..., 16],   # VC inputs in use, bottom cell first
            "ts": ["ts1", "ts3"],       # what each temperature sensor reads:
                                        # ts1..ts3, int (die), cfetoff, dfetoff, alert
            "margin_mv": 100, "margin_dc": 50, "margin_pct": 25,
            "scd_pct": 200, "scd_delay_us": 60,
            "settings": [[address, size, value], ...]}   # further data memory
    "frontend": {"type": "bq76952", "cell_adc": {"full_scale_mv": 5000},
                 "current_adc": {"full_scale_ma": 300000}}

The front end (``frontend.ChipChannel``) is identity for cells, current and the
stack voltage, and 0.1 K to 0.1 degC for temperatures.

The chip's own protections, a margin beyond the firmware's limits (:meth:`arm`):
COV ``margin_mv`` above the cell over-voltage trip, CUV as far below the
under-voltage trip, OCC / OCD1 ``margin_pct`` beyond the charge / discharge peak
limits (delay ~420 ms), OCD2 as far beyond the short-circuit limit (delay two
control periods), SCD at ``scd_pct`` of the short-circuit limit (``scd_delay_us``),
OTC/OTD and UTC/UTD ``margin_dc`` (0.1 degC) beyond the temperature limits.
"""

from .bq76952 import Bq76952, Frontend, encode, gains
from .hal import Hal

_TEMP_SOURCES = ("int", "cfetoff", "dfetoff", "alert", "ts1", "ts2", "ts3")


def _u(value, size):
    """A signed setting as the unsigned value data memory holds."""
    return value & ((1 << (8 * size)) - 1)


class Bq76952Hal(Hal):
    def __init__(self, board, i2c):
        afe = board["afe"]
        if afe.get("chip", "bq76952") != "bq76952":
            raise ValueError("board file: afe.chip must be bq76952")
        n = board["cells"]
        inputs = afe.get("cells") or (list(range(1, n)) + [16] if n < 16 else
                                      list(range(1, 17)))
        if len(inputs) != n or any(not 1 <= c <= 16 for c in inputs):
            raise ValueError("board file: afe.cells needs %d VC inputs, 1..16" % n)
        self.cell_idx = bytearray(c - 1 for c in inputs)
        ts = afe.get("ts", ["ts1", "ts2", "ts3"][:board["temp_sensors"]])
        if len(ts) != board["temp_sensors"] or any(t not in _TEMP_SOURCES for t in ts):
            raise ValueError("board file: afe.ts needs %d of %s" % (
                board["temp_sensors"], ", ".join(_TEMP_SOURCES)))
        self.ts_idx = bytearray(_TEMP_SOURCES.index(t) for t in ts)
        self.shunt = afe["shunt_uohm"]
        if not 10 <= self.shunt <= 1000000:
            raise ValueError("board file: afe.shunt_uohm must be 10..1000000")
        self.afe = afe
        self.period_ms = board.get("control_period_ms", 100)
        # User-amps: the finest unit whose signed 16 bits hold what the coulomb
        # counter measures (+/-200 mV across the shunt), or three times the board's
        # current rating if that is less; stack, PACK and LD in cV.
        sense_ma = 200000000 // self.shunt
        need = min(sense_ma, 3 * max(board.get("charge_current_max_ma", 0),
                                     board.get("discharge_current_max_ma", 0)))
        amps = 0 if need <= 3276 else 1 if need <= 32767 else 2 if need <= 327670 else 3
        self.da = afe.get("da_config", 0x04 | amps)
        unit = (1, 10, 100, 1000)[self.da & 3]  # 0.1 mA steps
        # The current the chip reports at most in these units: the board file's
        # ``frontend.current_adc.full_scale_ma`` may not promise more.
        top = min(sense_ma, 32767 * unit // 10)
        if board["frontend"]["current_adc"]["full_scale_ma"] > top:
            raise ValueError("board file: frontend.current_adc.full_scale_ma above the %d mA "
                             "the chip measures on this shunt" % top)
        self.vcell_mode = 0
        for c in inputs:
            self.vcell_mode |= 1 << (c - 1)
        self.driver = Bq76952(i2c, afe.get("address", 8), afe.get("crc", False))
        self.driver.units(self.da)
        self.closed = False
        self.allow = 3  # bit 0 charge, bit 1 discharge
        self.sent = -1  # directions blocked as last commanded (-1: unknown)
        self.balancing = 0  # cells to balance (chip's VC order)
        self.balanced = -1  # ... as the chip last confirmed
        self.trips = 0
        self.por = 0  # Battery Status POR, seen and handled
        self.trip = None  # the limits arm() was last given
        self.armed = False
        self.clamped = ()
        self.configured = self.driver.configure(self._base())
        self._fets()  # both directions blocked until the firmware closes the output
        self._balance()  # and no balancing left over from before a restart

    def _base(self):
        """What the measurements need: units, cells, the shunt's gains, the TS pins
        the board reads as thermistors (0x07: thermistor, cell temperature, the
        18K model, like TS1's default); the board file's ``settings`` last."""
        cc, cap = gains(self.shunt)
        out = [(0x9303, 1, self.da),  # DA Configuration
               (0x9304, 2, self.vcell_mode),  # VCell Mode
               (0x91A8, 4, cc),  # CC Gain
               (0x91AC, 4, cap)]  # Capacity Gain
        for i in self.ts_idx:
            if i >= 4:  # TS1..TS3: Settings:Configuration:TSn Config
                out.append((0x92FD + i - 4, 1, 0x07))
        for addr, size, value in self.afe.get("settings", ()):
            for j in range(len(out)):
                if out[j][0] == addr:
                    del out[j]
                    break
            out.append((addr, size, _u(value, size)))
        return out

    def settings(self, trip):
        """The data-memory settings (``(address, size, value)``) for the firmware's
        trip limits; ``clamped`` names the ones the chip's range cut."""
        afe = self.afe
        r = self.shunt
        mv = afe.get("margin_mv", 100)
        dc = afe.get("margin_dc", 50)
        pct = 100 + afe.get("margin_pct", 25)
        out = self._base()
        clamped = []

        def put(addr, size, kind, name, value):
            code, cut = encode(kind, value, r)
            if cut:
                clamped.append(name)
            out.append((addr, size, _u(code, size)))
            return code

        put(0x9278, 1, "cov", "cov", trip[0] + mv)
        put(0x9279, 2, "v_delay", "cov_delay", afe.get("cov_delay_ms", 2000))
        put(0x9275, 1, "cuv", "cuv", trip[1] - mv)
        put(0x9276, 2, "v_delay", "cuv_delay", afe.get("cuv_delay_ms", 2000))
        put(0x9280, 1, "occ", "occ", trip[9] * pct // 100)
        put(0x9281, 1, "oc_delay", "occ_delay", afe.get("occ_delay_ms", 420))
        put(0x9282, 1, "ocd", "ocd1", trip[10] * pct // 100)
        put(0x9283, 1, "oc_delay", "ocd1_delay", afe.get("ocd1_delay_ms", 420))
        put(0x9284, 1, "ocd", "ocd2", trip[11] * pct // 100)
        put(0x9285, 1, "oc_delay", "ocd2_delay",
            afe.get("ocd2_delay_ms", max(10, 2 * self.period_ms)))
        put(0x9286, 1, "scd", "scd", trip[11] * afe.get("scd_pct", 200) // 100)
        put(0x9287, 1, "scd_delay", "scd_delay", afe.get("scd_delay_us", 60))
        hot = put(0x929A, 1, "temp_hi", "otc", trip[2] + dc)  # OTC
        put(0x929C, 1, "temp_hi", "otc_recovery", 10 * hot - 50)
        put(0x929D, 1, "temp_hi", "otd", trip[2] + dc)  # OTD
        put(0x929F, 1, "temp_hi", "otd_recovery", 10 * hot - 50)
        cold = put(0x92A6, 1, "temp_lo", "utc", trip[3] - dc)  # UTC
        put(0x92A8, 1, "temp_lo", "utc_recovery", 10 * cold + 50)
        put(0x92A9, 1, "temp_lo", "utd", trip[3] - dc)  # UTD
        put(0x92AB, 1, "temp_lo", "utd_recovery", 10 * cold + 50)
        out.append((0x9261, 1, 0xFC))  # Enabled Protections A: SCD OCD2 OCD1 OCC COV CUV
        out.append((0x9262, 1, 0x33))  # Enabled Protections B: OTD OTC UTD UTC
        self.clamped = tuple(clamped)
        return out

    def arm(self, trip):
        """Program the chip's protections from the firmware's trip limits (only
        what differs: see ``Bq76952.configure``), then leave FET test mode."""
        self.trip = trip
        self.armed = self.driver.configure(self.settings(trip)) and self.driver.fet_enable()
        return self.armed

    def _restarted(self):
        """The chip reset (Battery Status POR set, once until it clears): its data
        memory may be back at its defaults and its FET blocks and balancing gone. Put
        them back; configure() writes only what differs (not allocation-free: a
        reset chip is no normal period)."""
        self.configured = self.driver.configure(self._base())
        if self.trip is not None:
            self.arm(self.trip)
        self.sent = -1
        self.balanced = -1

    # -- the control step (allocation-free) ----------------------------------------
    def sample(self, raw_cells, raw_temps):
        d = self.driver
        d.read()  # a failure keeps the last readings and counts towards chip_trips() == -1
        cells = d.cells
        idx = self.cell_idx
        for i in range(len(raw_cells)):
            v = cells[idx[i]]
            raw_cells[i] = v if v > 0 else 0
        temps = d.temps
        idx = self.ts_idx
        for i in range(len(raw_temps)):
            v = temps[idx[i]]
            raw_temps[i] = v if v > 0 else 0
        s = d.safety
        self.trips = s[1] | s[3] << 8 | s[5] << 16
        por = d.battery_status & 8  # set by a reset, cleared when CONFIG_UPDATE ends
        if por and not self.por:
            self._restarted()
        self.por = por
        # Re-assert a block the chip does not show (a reset chip, a lost command).
        fs = d.fet_status
        if self.sent > 0 and (self.sent & 1 and fs & 1 or self.sent & 2 and fs & 4):
            self.sent = -1
        self._fets()
        if self.balanced != self.balancing:
            self._balance()
        return d.current_ma

    def read_pack_code(self):
        return self.driver.stack_mv

    def frontend(self, cfg):
        return Frontend(cfg)

    def chip_trips(self):
        return -1 if self.driver.dead else self.trips

    def bus_errors(self):
        return self.driver.errors

    def set_output(self, closed):
        self.closed = closed
        self._fets()

    def set_directions(self, charge, discharge):
        self.allow = (1 if charge else 0) | (2 if discharge else 0)
        self._fets()

    def _fets(self):
        allow = self.allow if self.closed else 0
        want = ~allow & 3  # the directions to block
        if want != self.sent:
            self.sent = want if self.driver.block(want & 1, want & 2, self.sent) else -1

    def set_balancing(self, mask):
        idx = self.cell_idx
        m = 0
        for i in range(len(idx)):
            if mask >> i & 1:
                m |= 1 << idx[i]
        self.balancing = m
        self._balance()

    def _balance(self):
        self.balanced = self.balancing if self.driver.balance(self.balancing) else -1

    def unique_id(self):
        try:
            from machine import unique_id

            return unique_id()
        except ImportError:
            return b"bq76952"

    def storage_dir(self):
        return ""  # the root of the board's flash filesystem
