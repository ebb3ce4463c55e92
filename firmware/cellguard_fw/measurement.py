"""One sample of the pack, in integer units, in preallocated arrays.

This is where a cell voltage enters the pure-logic part of the firmware: the
HAL fills raw codes, :meth:`Measurement.update` converts them and derives the
pack figures the protection and estimators use.
"""

from array import array


class Measurement:
    def __init__(self, n_cells, n_temps):
        self.raw_cells = array("H", [0] * n_cells)
        self.raw_temps = array("H", [0] * n_temps)
        self.cells_mv = array("H", [0] * n_cells)
        self.temps_dc = array("h", [0] * n_temps)
        self.current_ma = 0  # positive = charging
        self.pack_mv = 0
        self.min_cell_mv = 0
        self.max_cell_mv = 0
        self.min_temp_dc = 0
        self.max_temp_dc = 0
        self.valid = False

    def update(self, frontend, raw_current):
        cells = self.cells_mv
        raw = self.raw_cells
        conv = frontend.cell
        total = 0
        lo = 0xFFFF
        hi = 0
        for i in range(len(cells)):
            mv = conv.convert(raw[i])
            cells[i] = mv
            total += mv
            if mv < lo:
                lo = mv
            if mv > hi:
                hi = mv
        self.pack_mv = total
        self.min_cell_mv = lo
        self.max_cell_mv = hi
        temps = self.temps_dc
        raw = self.raw_temps
        conv = frontend.temp
        lo = 32767
        hi = -32768
        for i in range(len(temps)):
            dc = conv.convert(raw[i])
            temps[i] = dc
            if dc < lo:
                lo = dc
            if dc > hi:
                hi = dc
        self.min_temp_dc = lo
        self.max_temp_dc = hi
        self.current_ma = frontend.current.convert(raw_current)
        self.valid = True
