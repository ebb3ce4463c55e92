"""The battery's lifetime record on the board under test: what a charge and a
discharge add to it, read the way a second-life buyer reads it (GET_LIFETIME: no key,
no configuration mode).

On any board the record must agree with the current the host saw in telemetry; on a
simulated board also with the plant's own charge counters."""

from __future__ import annotations

import itertools

from cellguard.hil import HilClient, Rig
from cellguard.link.client import Telemetry

LEG_S = 60.0  # board time of each leg: charge, then discharge
TRUTH_TOLERANCE = 0.01  # the plant's counters: the current sensor's error, rounding


def _host_counted_ah(samples: list[Telemetry]) -> tuple[float, float]:
    """Charge in and out (Ah) the telemetry current accounts for (trapezoids)."""
    a_in = a_out = 0.0
    for a, b in itertools.pairwise(samples):
        q = (a.current_a + b.current_a) / 2 * (b.board_time_s - a.board_time_s) / 3600
        if q > 0:
            a_in += q
        else:
            a_out -= q
    return a_in, a_out


def test_a_charge_and_a_discharge_add_to_the_lifetime_record(client: HilClient,
                                                             rig: Rig) -> None:
    info = client.info
    assert info is not None
    amps = min(info.capacity_ah, 0.8 * info.charge_current_max_a,
               0.8 * info.discharge_current_max_a)
    rig.set_current(0.0)
    rig.wait(2.0)
    before = client.lifetime()
    truth0 = rig.truth()
    mark = client.mark()
    rig.set_current(amps)
    rig.wait(LEG_S)
    rig.set_current(-amps)
    rig.wait(LEG_S)
    rig.set_current(0.0)
    rig.wait(2.0)
    after = client.lifetime()
    truth1 = rig.truth()
    samples = client.telemetry_since(mark)
    assert len(samples) >= 2, "no telemetry during the legs"

    d_in = after.charge_in_ah - before.charge_in_ah
    d_out = after.charge_out_ah - before.charge_out_ah
    # Against the host's count: telemetry samples a telemetry period apart miss up to
    # a period of current at each of the three current steps.
    host_in, host_out = _host_counted_ah(samples)
    period = info.telemetry_period_s
    slack = 3 * period * amps / 3600 + 0.02 * amps * LEG_S / 3600
    assert abs(d_in - host_in) <= slack, (d_in, host_in)
    assert abs(d_out - host_out) <= slack, (d_out, host_out)
    assert d_in > 0.5 * amps * LEG_S / 3600 and d_out > 0.5 * amps * LEG_S / 3600
    if truth0 is not None and truth1 is not None:  # the plant's own counters
        t_in = truth1.charge_in_ah - truth0.charge_in_ah
        t_out = truth1.charge_out_ah - truth0.charge_out_ah
        assert abs(d_in - t_in) <= TRUTH_TOLERANCE * t_in + 0.001, (d_in, t_in)
        assert abs(d_out - t_out) <= TRUTH_TOLERANCE * t_out + 0.001, (d_out, t_out)
    # Energy moved both ways; times only grew, and state times add up to the operating time.
    assert after.energy_in_wh > before.energy_in_wh
    assert after.energy_out_wh > before.energy_out_wh
    elapsed = samples[-1].board_time_s - samples[0].board_time_s
    grown = after.operating_s - before.operating_s
    assert elapsed - 2 * period <= grown <= elapsed + 10.0, (grown, elapsed)
    assert after.charging_s - before.charging_s >= LEG_S - 3 * period
    assert after.discharging_s - before.discharging_s >= LEG_S - 3 * period
    assert after.rest_s + after.charging_s + after.discharging_s == int(after.operating_s)
    # Currents inside the ratings harm nothing, and no boot happened meanwhile.
    assert after.harmful == before.harmful
    assert (after.boots, after.watchdog_resets) == (before.boots, before.watchdog_resets)
