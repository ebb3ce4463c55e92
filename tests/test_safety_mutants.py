"""Tests written to kill mutants of the safety path that survived the other tests
(``make mutation``, docs/mutation.md). Each asserts behaviour a wrong default or a
wrong operator would change."""

from __future__ import annotations

from test_contactor import LinkHal, run

from cellguard_fw import codec
from cellguard_fw.contactor import OPEN, PRECHARGE, WAIT_RETRY, Contactor

# -- contactor ---------------------------------------------------------------


def test_opening_gives_the_precharge_its_full_attempts_again() -> None:
    """Told to open, the contactor forgets its failed attempts: the next close
    request gets all ``retries + 1`` attempts before the precharge fault latches."""
    hal = LinkHal(tau_ms=float("inf"))  # the link never charges
    cfg = {"timeout_ms": 300, "retries": 2, "retry_delay_ms": 200}
    c = Contactor(hal, cfg)
    # an attempt: a step to start it and 3 to time out; 2 steps of waiting between.
    # Two attempts time out: no fault yet
    states = run(c, hal, 4 + 2 + 4)
    assert c.attempts == 2 and not c.faults and states[-1] == WAIT_RETRY
    run(c, hal, 1, want=False)
    assert c.state == OPEN and c.attempts == 0
    # again: two more timed-out attempts do not latch the fault ...
    run(c, hal, 4 + 2 + 4)
    assert not c.faults and c.attempts == 2
    # ... the third does, with the link voltage it had reached
    run(c, hal, 2 + 3)
    assert not c.faults and c.state == PRECHARGE
    run(c, hal, 1)
    assert c.faults == codec.FAULT_PRECHARGE_FAILED and c.state == OPEN
    assert c.fault_value == 0


class PinHal(LinkHal):
    """A HAL whose link voltage and auxiliary contact the test sets directly
    (``link``: -1 without a link sensor; ``aux``: -1 without feedback)."""

    def __init__(self, link: int = -1, aux: int = -1) -> None:
        super().__init__()
        self.link = link
        self.aux = aux

    def read_link_mv(self) -> int:
        return self.link

    def output_feedback(self) -> int:
        return self.aux


def steps_until(c: Contactor, dt_ms: int, want: bool, pack_mv: int, done, limit: int) -> int:
    """Step until ``done(c)``; return how many steps it took."""
    for n in range(1, limit + 1):
        c.step(dt_ms, want, pack_mv)
        if done(c):
            return n
    raise AssertionError(f"not done after {limit} steps")


def test_precharge_defaults_are_the_documented_ones() -> None:
    """A ``precharge`` object with no keys: 0.5 s without a link sensor, 2 s
    timeout, 2 retries 5 s apart (docs/protection.md), all to the millisecond."""
    # without a link sensor: closes once it has precharged for 500 ms
    c = Contactor(PinHal(), {})
    assert steps_until(c, 1, True, 14800, lambda c: c.closed, 1000) == 1 + 500
    # a link that never charges: the first attempt times out after 2000 ms
    hal = PinHal(link=0)
    c = Contactor(hal, {})
    assert steps_until(c, 1, True, 14800, lambda c: c.state == WAIT_RETRY, 5000) == 1 + 2000
    # ... the next starts 5000 ms later
    assert steps_until(c, 1, True, 14800, lambda c: c.state == PRECHARGE, 9000) == 5000 + 1
    # ... and after the third attempt (2 retries) the fault latches
    n = steps_until(c, 100, True, 14800, lambda c: c.faults != 0, 1000)
    assert n == 20 + 50 + 1 + 20 and c.attempts == 3
    assert c.faults == codec.FAULT_PRECHARGE_FAILED and c.fault_value == 0 and c.state == OPEN
    assert not hal.precharge and not hal.main


def test_precharge_done_at_exactly_done_pct_of_the_pack() -> None:
    """The link at ``pack * done_pct // 100`` mV is enough, one mV less is not;
    default 95 %, and the board's ``done_pct`` is read."""
    pack = 14801  # 95 % of it is not a whole number of mV
    for cfg, pct in (({}, 95), ({"done_pct": 50}, 50)):
        threshold = pack * pct // 100
        hal = PinHal(link=threshold - 1)
        c = Contactor(hal, cfg)
        for _ in range(5):
            c.step(100, True, pack)
        assert c.state == PRECHARGE and hal.precharge and not hal.main
        hal.link = threshold
        c.step(100, True, pack)
        assert c.closed and hal.main and not hal.precharge


def test_precharge_without_a_link_sensor_runs_time_ms_not_a_ms_less() -> None:
    c = Contactor(PinHal(), {"time_ms": 500})
    c.step(499, True, 14800)  # starts the precharge
    c.step(499, True, 14800)
    assert c.state == PRECHARGE
    c.step(1, True, 14800)
    assert c.closed


def test_retry_waits_retry_delay_ms_to_the_millisecond() -> None:
    c = Contactor(PinHal(link=0), {"timeout_ms": 100, "retry_delay_ms": 300})
    assert steps_until(c, 1, True, 14800, lambda c: c.state == WAIT_RETRY, 1000) == 101
    assert steps_until(c, 1, True, 14800, lambda c: c.state != WAIT_RETRY, 1000) == 300


def test_opening_during_precharge_releases_the_precharge_relay() -> None:
    hal = PinHal(link=0)
    c = Contactor(hal, {})
    c.step(100, True, 14800)
    assert hal.precharge and c.state == PRECHARGE
    c.step(100, False, 14800)
    assert c.state == OPEN and not hal.precharge and not hal.main


def test_clear_gives_the_precharge_its_full_attempts_again() -> None:
    c = Contactor(PinHal(link=0), {"timeout_ms": 100, "retries": 1, "retry_delay_ms": 100})
    first = steps_until(c, 100, True, 14800, lambda c: c.faults != 0, 100)
    assert c.clear() == codec.FAULT_PRECHARGE_FAILED and c.attempts == 0
    assert steps_until(c, 100, True, 14800, lambda c: c.faults != 0, 100) == first


def test_welded_contactor_trips_after_exactly_the_feedback_delay() -> None:
    """Closed when told to open (from boot, after a normal close and open, and
    again after a clear): ``contactor_welded`` after 200 ms (default) of it,
    with the time as its value."""
    for cfg in ({}, {"feedback_delay_ms": 300}):
        delay = cfg.get("feedback_delay_ms", 200)
        hal = PinHal(link=20000, aux=1)  # welded from boot
        c = Contactor(hal, cfg)
        n = steps_until(c, 50, False, 14800, lambda c: c.faults != 0, 100)
        assert n == delay // 50 and c.fault_value == delay
        assert c.faults == codec.FAULT_CONTACTOR_WELDED
        assert c.clear() == codec.FAULT_CONTACTOR_WELDED and not c.faults
        n = steps_until(c, 50, False, 14800, lambda c: c.faults != 0, 100)
        assert n == delay // 50 and c.fault_value == delay
    hal = PinHal(link=20000, aux=0)
    c = Contactor(hal, {})
    c.step(50, True, 14800)
    hal.aux = 1  # closed as told
    for _ in range(3):
        c.step(50, True, 14800)
    assert c.closed and not c.faults
    n = steps_until(c, 50, False, 14800, lambda c: c.faults != 0, 100)
    assert n == 4 and c.fault_value == 200


def test_an_aux_contact_that_bounces_shorter_than_the_delay_does_not_trip() -> None:
    """The 200 ms count only while the contact reads closed without interruption."""
    hal = PinHal(aux=0)
    c = Contactor(hal, {})
    for _ in range(10):
        hal.aux = 1
        c.step(150, False, 14800)
        hal.aux = 0
        c.step(150, False, 14800)
    assert not c.faults


def test_a_welded_contactor_after_a_failed_precharge_adds_its_bit() -> None:
    hal = PinHal(link=0, aux=0)
    c = Contactor(hal, {"timeout_ms": 100, "retries": 0})
    steps_until(c, 100, True, 14800, lambda c: c.faults != 0, 10)
    assert c.faults == codec.FAULT_PRECHARGE_FAILED
    hal.aux = 1
    for _ in range(4):
        c.step(100, True, 14800)
    assert c.faults == codec.FAULT_PRECHARGE_FAILED | codec.FAULT_CONTACTOR_WELDED
