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

The charge is counted in integer mA·ms (no float accumulation: single-precision
floats, as on both ports, would lose 0.1–0.5 % of a capacity measurement).

Both are persisted (``WordStore``: capacity in mAh, growth in 0.1 %) so a reset
does not forget them, but only on a meaningful change (the capacity by at least
1 mAh, the growth by at least 1 %) and at most every ``save_interval_s`` (five
minutes): a rewrite is a metadata commit on LittleFS, and a pulsed load moves
the growth a little almost every second. The control-rate part
(:meth:`Health.sample`) is integer arithmetic and allocates nothing.
"""

from .latches import WordStore

_GROWTH_STEP = 10  # a growth change worth a write: 1 % (the file keeps 0.1 %)


class Health:
    def __init__(self, rated_capacity_ah, path=None, rest_current_a=0.05,
                 rest_s=1800.0, min_span_pct=40.0, gain=1.0, step_a=1.0,
                 save_interval_s=300.0):
        self.rated_capacity_ah = rated_capacity_ah
        self.store = WordStore(path, 2)
        saved = self.store.load_words()
        self.capacity_ah = rated_capacity_ah
        self.r0_growth = 1.0  # R0 measured / R0 of the model
        self.saved = (0, 0)  # what the file holds (mAh, 0.1 %)
        if saved and saved[0]:
            self.capacity_ah = saved[0] / 1000.0
            self.r0_growth = saved[1] / 1000.0
            self.saved = (saved[0], saved[1])
        self.rest_ma = int(rest_current_a * 1000 + 0.5)
        self.rest_needed_ms = int(rest_s * 1000)
        self.min_span_pct = min_span_pct
        self.gain = gain
        self.rest_ms = 0
        self.anchor_soc = -1.0  # SoC at the last well-known point, -1: none yet
        self.charge_ma_ms = 0  # counted since that point, integer mA·ms
        self.counted_ms = 0  # the time it was counted over, ms
        self.anchor_bias_a = 0.0  # the current sensor's bias at that point
        self.relearned = 0
        self.save_interval_ms = int(save_interval_s * 1000)
        self.since_save_ms = self.save_interval_ms  # the first change saves at once
        self.saves = 0
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

    def count(self, charge_ma_ms, elapsed_ms):
        """Count the charge of one period (``charge_ma_ms``: the sum of current
        times step over ``elapsed_ms``, integers); True when the rest is long
        enough for a well-known point (:meth:`take_point`).

        The charge is counted with the bias as it was at the last point (a rest,
        where it is well known), not as the filter has it now: under load the
        filter's bias also soaks up a capacity error, the very thing measured. The
        bias is taken off once, at the next point, from the time counted. The
        rest itself is judged on the measured mean current: the filter's bias can
        be off by more than the threshold just after a cut-off."""
        self.charge_ma_ms += charge_ma_ms
        self.counted_ms += elapsed_ms
        self.since_save_ms += elapsed_ms
        limit = self.rest_ma * elapsed_ms
        if -limit <= charge_ma_ms <= limit:
            self.rest_ms += elapsed_ms
        else:
            self.rest_ms = 0
        return self.rest_ms >= self.rest_needed_ms

    @property
    def charge_ah(self):
        """The charge counted since the last point, bias taken off, Ah."""
        return (self.charge_ma_ms - self.anchor_bias_a * 1000.0 * self.counted_ms) / 3.6e9

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
        self.charge_ma_ms = 0
        self.counted_ms = 0
        self.rest_ms = 0  # the next point needs a new rest
        return learned

    def _words(self):
        return (int(self.capacity_ah * 1000 + 0.5), int(self.r0_growth * 1000 + 0.5))

    def save_due(self):
        """Whether the health moved enough since the last write, and that write is
        at least ``save_interval_s`` old (the write policy above)."""
        if self.since_save_ms < self.save_interval_ms:
            return False
        cap, growth = self._words()
        d = growth - self.saved[1]
        return cap != self.saved[0] or d >= _GROWTH_STEP or -d >= _GROWTH_STEP

    def save(self):
        words = self._words()
        self.store.save_words(words[0], words[1])
        self.saved = words
        self.since_save_ms = 0
        self.saves += 1

    @property
    def capacity_pct(self):
        """Capacity against the rated one, %."""
        return 100.0 * self.capacity_ah / self.rated_capacity_ah
