"""State of charge by coulomb counting, set from the OCV table after a rest.

Charge is kept in mA*s plus a sub-second remainder in mA*ms, so the sums stay
small ints for packs up to about 290 Ah. The SoC is (re)initialised from the
chemistry's OCV table at start-up and whenever the current has stayed below
``rest_current_ma`` for ``rest_time_ms`` (the cells have relaxed, so their
voltage is their open-circuit voltage).
"""

from .chemistry import soc_from_ocv


class CoulombCounter:
    def __init__(self, capacity_mah, ocv_table, rest_current_ma=50, rest_time_ms=1800000):
        self.charge_mas = 0
        self.mas_per_cpct = 1
        self.set_capacity(capacity_mah)
        self.ocv_table = ocv_table
        self.rest_current_ma = rest_current_ma
        self.rest_time_ms = rest_time_ms
        self.remainder_ma_ms = 0
        self.rest_ms = 0
        self.initialised = False
        self.ocv_resets = 0

    def set_capacity(self, capacity_mah):
        """Change the rated capacity, keeping the SoC."""
        soc = self.soc_cpct()
        self.capacity_mah = capacity_mah
        self.capacity_mas = capacity_mah * 3600
        self.mas_per_cpct = max(self.capacity_mas // 10000, 1)
        self.charge_mas = soc * self.mas_per_cpct

    def set_from_ocv(self, cell_mv):
        cpct = soc_from_ocv(self.ocv_table, cell_mv)
        self.charge_mas = cpct * self.mas_per_cpct
        self.remainder_ma_ms = 0
        self.initialised = True
        self.ocv_resets += 1

    def step(self, dt_ms, current_ma, mean_cell_mv):
        """Count ``current_ma`` over ``dt_ms``; re-anchor on OCV after a rest."""
        if not self.initialised:
            self.set_from_ocv(mean_cell_mv)
            return
        acc = self.remainder_ma_ms + current_ma * dt_ms
        whole = acc // 1000
        self.remainder_ma_ms = acc - whole * 1000
        charge = self.charge_mas + whole
        if charge < 0:
            charge = 0
        elif charge > self.capacity_mas:
            charge = self.capacity_mas
        self.charge_mas = charge
        if -self.rest_current_ma <= current_ma <= self.rest_current_ma:
            if self.rest_ms < self.rest_time_ms:
                self.rest_ms += dt_ms
                if self.rest_ms >= self.rest_time_ms:
                    self.set_from_ocv(mean_cell_mv)
        else:
            self.rest_ms = 0

    def soc_cpct(self):
        """State of charge in 0.01 %."""
        return min(self.charge_mas // self.mas_per_cpct, 10000)
