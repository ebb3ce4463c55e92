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

The front end (``bq76952.ChipChannel``) is identity for cells, current and the
stack voltage, and 0.1 K to 0.1 degC for temperatures.

The chip's own protections, a margin beyond the firmware's limits (:meth:`arm`):
COV ``margin_mv`` above the cell over-voltage trip, CUV as far below the
under-voltage trip, OCC / OCD1 ``margin_pct`` beyond the charge / discharge peak
limits (delay ~420 ms), OCD2 as far beyond the short-circuit limit (delay two
control periods), SCD at ``scd_pct`` of the short-circuit limit (``scd_delay_us``),
OTC/OTD and UTC/UTD ``margin_dc`` (0.1 degC) beyond the temperature limits.

Only the control step is here: the start, ``arm`` and the re-arm after a chip
reset are in ``bq76952_setup``, imported for them and released after.
"""

from .bq76952 import Bq76952


class Bq76952Hal:
    """The :class:`hal.Hal` interface, every method of it, without subclassing it:
    a chip board then does not load ``hal.py`` (about 1.4 KB of heap). The methods
    the chip board has no hardware for behave as ``Hal``'s defaults
    (``tests/test_bq76952_driver.py`` checks none is missing)."""

    # set by bq76952_setup.start (annotations only: no code, no names on a board)
    driver: Bq76952
    cell_idx: bytearray  # the VC input of each firmware cell
    ts_idx: bytearray  # the chip's temperature of each firmware sensor
    closed: bool
    allow: int
    sent: int
    balancing: int
    balanced: int
    trips: int
    por: int
    button: object  # pins.presence's machine.Pin, or None

    def __init__(self, board, i2c):
        from . import bq76952_setup

        bq76952_setup.start(self, board, i2c)

    def arm(self, trip):
        """Program the chip's protections from the firmware's trip limits (only
        what differs), then leave FET test mode (``bq76952_setup.arm``)."""
        from . import bq76952_setup

        return bq76952_setup.arm(self, trip)

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
            # The chip reset: its settings, FET blocks and balancing are put back
            # (not allocation-free: a reset chip is no normal period).
            from . import bq76952_setup

            bq76952_setup.restarted(self)
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
        from . import bq76952_setup

        return bq76952_setup.frontend(cfg)

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

    def set_precharge(self, on):
        pass  # no precharge circuit

    def read_link_mv(self):
        return -1  # no DC-link voltage sensor

    def output_feedback(self):
        return -1  # no contactor feedback

    def unique_id(self):
        try:
            from machine import unique_id

            return unique_id()
        except ImportError:
            return b"bq76952"

    def storage_dir(self):
        return ""  # the root of the board's flash filesystem

    def presence(self):
        button = self.button
        return -1 if button is None else 1 - button.value()  # type: ignore[attr-defined]
