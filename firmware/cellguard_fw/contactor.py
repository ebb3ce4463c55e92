"""The output switch as a state machine: open -> precharge -> closed.

A FET board closes at once. A contactor board with a precharge circuit first
charges the load's DC link through the precharge resistor: the main contactor
closes once the link voltage has reached ``done_pct`` of the pack voltage (or,
without a link-voltage sensor, after ``time_ms``). A precharge that does not
finish within ``timeout_ms`` is aborted and retried after ``retry_delay_ms``,
at most ``retries`` times; then the precharge fault latches. Where the board
reads the contactor's auxiliary contact, a contactor that stays closed after it
was told to open (welded) latches a fault too.

All state is small ints: :meth:`Contactor.step` allocates nothing.
"""

from micropython import const

# The protocol numbers used here, as folded copies of codec.py's: the board
# interns no name for them (tests/test_firmware_build.py holds them equal).
_FAULT_CONTACTOR_WELDED = const(0x4000)
_FAULT_PRECHARGE_FAILED = const(0x2000)


OPEN = const(0)
PRECHARGE = const(1)
CLOSED = const(2)
WAIT_RETRY = const(3)


class Contactor:
    def __init__(self, hal, cfg=None):
        """``cfg`` is the board's ``precharge`` object, or None for a FET output."""
        self.hal = hal
        self.precharge = cfg is not None
        cfg = cfg or {}
        self.time_ms = cfg.get("time_ms", 500)
        self.timeout_ms = cfg.get("timeout_ms", 2000)
        self.done_pct = cfg.get("done_pct", 95)
        self.retries = cfg.get("retries", 2)
        self.retry_delay_ms = cfg.get("retry_delay_ms", 5000)
        self.feedback_delay_ms = cfg.get("feedback_delay_ms", 200)
        self.state = OPEN
        self.timer_ms = 0
        self.attempts = 0
        self.mismatch_ms = 0
        self.faults = 0  # _FAULT_PRECHARGE_FAILED / _FAULT_CONTACTOR_WELDED
        self.fault_value = 0  # what caused the last contactor fault (mV or ms)
        hal.set_output(False)
        hal.set_precharge(False)

    @property
    def closed(self):
        return self.state == CLOSED

    def _open(self):
        self.hal.set_output(False)
        self.hal.set_precharge(False)

    def step(self, dt_ms, want_closed, pack_mv):
        """Advance by ``dt_ms``; return the contactor fault bits."""
        hal = self.hal
        state = self.state
        if not want_closed or self.faults:
            if state != OPEN:
                self._open()
                self.state = OPEN
            if not want_closed:
                self.attempts = 0
        elif state == OPEN:
            if self.precharge:
                hal.set_precharge(True)
                self.state = PRECHARGE
                self.timer_ms = 0
            else:
                hal.set_output(True)
                self.state = CLOSED
        elif state == PRECHARGE:
            self.timer_ms += dt_ms
            link = hal.read_link_mv()
            done = (link >= pack_mv * self.done_pct // 100) if link >= 0 \
                else self.timer_ms >= self.time_ms
            if done:
                hal.set_output(True)
                hal.set_precharge(False)
                self.state = CLOSED
                self.attempts = 0
            elif self.timer_ms >= self.timeout_ms:
                hal.set_precharge(False)
                self.attempts += 1
                if self.attempts > self.retries:
                    self.faults |= _FAULT_PRECHARGE_FAILED
                    self.fault_value = link
                    self.state = OPEN
                else:
                    self.state = WAIT_RETRY
                    self.timer_ms = 0
        elif state == WAIT_RETRY:
            self.timer_ms += dt_ms
            if self.timer_ms >= self.retry_delay_ms:
                self.state = OPEN  # the next step starts a new precharge
        self._check_feedback(dt_ms)
        return self.faults

    def _check_feedback(self, dt_ms):
        fb = self.hal.output_feedback()
        if fb < 0:  # the board cannot read its contactor
            return
        if self.state != CLOSED and fb:
            self.mismatch_ms += dt_ms
            if self.mismatch_ms >= self.feedback_delay_ms \
                    and not self.faults & _FAULT_CONTACTOR_WELDED:
                self.faults |= _FAULT_CONTACTOR_WELDED
                self.fault_value = self.mismatch_ms  # as found: it does not grow after
        else:
            self.mismatch_ms = 0

    def clear(self):
        """Clear the contactor faults (CLEAR_FAULTS); return the bits cleared."""
        cleared = self.faults
        self.faults = 0
        self.attempts = 0
        self.mismatch_ms = 0
        return cleared
