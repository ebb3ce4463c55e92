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

from math import exp


class Balancer:
    def __init__(self, n_cells, balance_ohm=33.0, start_pct=2.0, stop_pct=1.0,
                 min_cell_soc_pct=10.0, r_th_k_per_w=60.0, tau_s=120.0, max_rise_k=40.0,
                 cool_k=10.0):
        self.n = n_cells
        self.balance_ohm = balance_ohm
        self.start_pct = start_pct
        self.stop_pct = stop_pct
        self.min_cell_soc_pct = min_cell_soc_pct
        self.r_th = r_th_k_per_w
        self.tau_s = tau_s
        self.max_rise_k = max_rise_k
        self.cool_k = cool_k
        self.rise_k = [0.0] * n_cells
        self.hot = [False] * n_cells
        self.mask = 0

    def step(self, dt_s, cells_soc_pct, cells_v, allowed):
        """Decide the bleeding mask for the next period; return it."""
        decay = exp(-dt_s / self.tau_s)
        lowest = min(cells_soc_pct)
        mask = 0
        for i in range(self.n):
            bleeding = self.mask >> i & 1
            # the resistor's temperature rise over the period just ended
            power = cells_v[i] * cells_v[i] / self.balance_ohm if bleeding else 0.0
            self.rise_k[i] = self.rise_k[i] * decay + power * self.r_th * (1.0 - decay)
            if self.hot[i]:
                self.hot[i] = self.rise_k[i] > self.max_rise_k - self.cool_k
            elif self.rise_k[i] > self.max_rise_k:
                self.hot[i] = True
            above = cells_soc_pct[i] - lowest
            want = above > (self.stop_pct if bleeding else self.start_pct)
            if (want and allowed and not self.hot[i]
                    and cells_soc_pct[i] > self.min_cell_soc_pct):
                mask |= 1 << i
        self.mask = mask
        return mask
