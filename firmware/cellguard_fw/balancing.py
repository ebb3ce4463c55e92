"""Passive balancing by SoC difference, with hysteresis and a thermal limit.

A cell bleeds through its balancing resistor while its SoC is more than
``start_pct`` above the lowest cell's, until it is within ``stop_pct`` of it.
Judging by SoC rather than voltage balances the charge that matters and works
on a flat curve (LFP) and at any time, not only at the top of charge. It runs
whenever the pack is within its limits (no fault, no alarm), and never below
``min_cell_soc_pct`` (the charge bled is lost).

Each resistor has a first-order thermal model (``r_th_k_per_w``, ``tau_s``):
a resistor whose estimated rise passes ``max_rise_k`` stops until it has
cooled ``cool_k`` below that.
"""

from array import array
from math import exp


class Balancer:
    """The bleeding mask from the cells' SoC (the pack's and each cell's offset
    from it, 0.001 %) and voltages (mV), in integers: each resistor's rise in
    mK, its first-order decay per period in 1/4096 (a run allocates nothing)."""

    def __init__(self, n_cells, balance_ohm=33.0, start_pct=2.0, stop_pct=1.0,
                 min_cell_soc_pct=10.0, r_th_k_per_w=60.0, tau_s=120.0, max_rise_k=40.0,
                 cool_k=10.0):
        self.n = n_cells
        self.balance_ohm = balance_ohm
        self.start_m = int(start_pct * 1000)
        self.stop_m = int(stop_pct * 1000)
        self.min_cell_m = int(min_cell_soc_pct * 1000)
        self.tau_s = tau_s
        # mV^2 over this is the steady rise in mK: P (W) * r_th (K/W) * 1000
        self.heat_div = max(int(balance_ohm * 1000.0 / r_th_k_per_w + 0.5), 1)
        self.max_rise_mk = int(max_rise_k * 1000)
        self.cool_mk = int(cool_k * 1000)
        self.rise_mk = array("i", [0] * n_cells)
        self.hot = 0  # a bit per resistor that is cooling down
        self.mask = 0
        self._dt_ms = -1
        self._decay = 0

    @property
    def rise_k(self):
        return [x / 1000.0 for x in self.rise_mk]

    def step(self, dt_ms, base_m, offsets_m, cells_mv, allowed):
        """Decide the bleeding mask for the next period; return it. A cell's SoC
        is ``base_m + offsets_m[i]`` (0.001 %)."""
        if dt_ms != self._dt_ms:
            self._dt_ms = dt_ms
            self._decay = int(4096 * exp(-dt_ms / (1000.0 * self.tau_s)) + 0.5)
        decay = self._decay
        lowest = offsets_m[0]
        for i in range(1, self.n):
            if offsets_m[i] < lowest:
                lowest = offsets_m[i]
        mask = 0
        rise = self.rise_mk
        top = self.max_rise_mk
        for i in range(self.n):
            bleeding = self.mask >> i & 1
            heat = cells_mv[i] * cells_mv[i] // self.heat_div if bleeding else 0
            rise[i] = (rise[i] * decay + heat * (4096 - decay)) >> 12
            bit = 1 << i
            if self.hot & bit:
                if rise[i] <= top - self.cool_mk:
                    self.hot &= ~bit
            elif rise[i] > top:
                self.hot |= bit
            above = offsets_m[i] - lowest
            want = above > (self.stop_m if bleeding else self.start_m)
            if (want and allowed and not self.hot & bit
                    and base_m + offsets_m[i] > self.min_cell_m):
                mask |= bit
        self.mask = mask
        return mask
