"""State of health: capacity relearned between rests, R0 growth from current steps.

Capacity: after a rest long enough for the cells to relax (``rest_s`` below
``rest_current_a``), the mean cell's voltage gives its SoC through the OCV
curve: a well-known point. The charge counted (bias corrected) between two such
points that lie at least ``min_span_pct`` apart, divided by their SoC
difference, is a capacity measurement; the estimate moves towards it by
``gain``.

Resistance: at a current step (at least ``step_a`` between two control
samples, 100 ms apart) the cell voltage jumps by R0 times the step before the
RC pairs move; the ratio of the jump to the model's R0 there, averaged, is the
R0 growth against the beginning of life.

Both are persisted (``WordStore``: capacity in mAh, growth in 0.1 %) so a reset
does not forget them. The control-rate part (:meth:`Health.sample`) is integer
arithmetic and allocates nothing.
"""

from .latches import WordStore


class Health:
    def __init__(self, rated_capacity_ah, path=None, rest_current_a=0.05,
                 rest_s=1800.0, min_span_pct=40.0, gain=1.0, step_a=1.0):
        self.rated_capacity_ah = rated_capacity_ah
        self.store = WordStore(path, 2)
        saved = self.store.load_words()
        self.capacity_ah = rated_capacity_ah
        self.r0_growth = 1.0  # R0 measured / R0 of the model
        if saved and saved[0]:
            self.capacity_ah = saved[0] / 1000.0
            self.r0_growth = saved[1] / 1000.0
        self.rest_current_a = rest_current_a
        self.rest_s = rest_s
        self.min_span_pct = min_span_pct
        self.gain = gain
        self.rest_time_s = 0.0
        self.anchor_soc = -1.0  # SoC at the last well-known point, -1: none yet
        self.charge_ah = 0.0  # counted since that point
        self.anchor_bias_a = 0.0  # the current sensor's bias at that point
        self.relearned = 0
        # R0 from steps: control-rate integers, read at the estimation rate.
        self.step_ma = int(step_a * 1000)
        self.last_ma = 0
        self.last_mv = 0
        self.have_last = False
        self.steps = 0
        self.sum_dv_mv = 0  # sum over steps of |dV| (mV)
        self.sum_di_ma = 0  # sum over steps of |dI| (mA)

    def sample(self, current_ma, mean_cell_mv):
        """Every control step: look for a current step (integers, no allocation)."""
        if self.have_last:
            di = current_ma - self.last_ma
            if di >= self.step_ma or -di >= self.step_ma:
                dv = mean_cell_mv - self.last_mv
                # The voltage moves with the current (R0 > 0): a jump the other way
                # is not a clean step (a contactor opening, a load transient).
                if (dv > 0) == (di > 0) and self.sum_di_ma < (1 << 28):
                    self.sum_dv_mv += dv if dv > 0 else -dv
                    self.sum_di_ma += di if di > 0 else -di
                    self.steps += 1
        self.last_ma = current_ma
        self.last_mv = mean_cell_mv
        self.have_last = True

    def update_r0(self, model_r0_ohm):
        """Fold the steps seen since the last call into the R0 growth."""
        if self.steps and self.sum_di_ma and model_r0_ohm > 0:
            measured = self.sum_dv_mv / self.sum_di_ma  # ohm (mV / mA)
            ratio = measured / model_r0_ohm
            self.r0_growth += 0.2 * (ratio - self.r0_growth)
            self.steps = 0
            self.sum_dv_mv = 0
            self.sum_di_ma = 0
            return True
        return False

    def count(self, current_a, dt_s):
        """Count the charge of one period (``current_a`` measured); True when the
        rest is long enough for a well-known point (:meth:`take_point`).

        The charge is counted with the bias as it was at the last point (a rest,
        where it is well known), not as the filter has it now: under load the
        filter's bias also soaks up a capacity error, the very thing measured. The
        rest itself is judged on the measured current: the filter's bias can be
        off by more than the threshold just after a cut-off."""
        self.charge_ah += (current_a - self.anchor_bias_a) * dt_s / 3600.0
        if -self.rest_current_a <= current_a <= self.rest_current_a:
            self.rest_time_s += dt_s
        else:
            self.rest_time_s = 0.0
        return self.rest_time_s >= self.rest_s

    def take_point(self, rested_soc_pct, bias_a):
        """Take the rest's point: ``rested_soc_pct`` is the SoC its OCV gives,
        ``bias_a`` the sensor bias as estimated now. True when the capacity was
        relearned from the charge counted since the last point."""
        learned = False
        span = rested_soc_pct - self.anchor_soc
        if self.anchor_soc >= 0.0 and (span >= self.min_span_pct or -span >= self.min_span_pct):
            measured = self.charge_ah * 100.0 / span
            if measured > 0.0:
                self.capacity_ah += self.gain * (measured - self.capacity_ah)
                self.relearned += 1
                learned = True
        self.anchor_soc = rested_soc_pct
        self.anchor_bias_a = bias_a
        self.charge_ah = 0.0
        self.rest_time_s = 0.0  # the next point needs a new rest
        return learned

    def save(self):
        self.store.save_words(int(self.capacity_ah * 1000 + 0.5),
                              int(self.r0_growth * 1000 + 0.5))

    @property
    def capacity_pct(self):
        """Capacity against the rated one, %."""
        return 100.0 * self.capacity_ah / self.rated_capacity_ah
