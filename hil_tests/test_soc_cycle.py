"""State of charge over a full cycle: discharge until the board itself ends it at
the cell under-voltage limit, charge until it ends it at the over-voltage limit.

The reported SoC must follow the charge the host saw flowing (telemetry current,
integrated: works on any board) and, on a simulated board, the plant's true SoC.
Rates come from the board's ratings and capacity.
"""

from __future__ import annotations

import itertools

from cellguard.hil import BoardLimits, HilClient, HilTimeout, Rig
from cellguard.link.client import Telemetry

TRUTH_TOLERANCE_PCT = 4.0  # capacity spread between cells, the OCV start, rounding
COUNT_TOLERANCE_PCT = 1.5  # against the host's own coulomb count at 1 s sampling
CHECK_EVERY_S = 1800.0  # board time between checks against the plant's history
RELAX_S = 600.0
"""Rest a leg's protection gets to release in. A cell charged at 1C into the
over-voltage trip (4250 mV) relaxes towards an OCV just below the release (4150 mV):
the plant's fast RC pair (60 s) and slow one (600 s) leave the highest cell at the
release threshold about 100 s into the rest and 20 mV below it after 600 s; a real
cell's diffusion relaxes over minutes too. 120 s was at the edge: a reading with a
converter's noise (the highest of four cells) stays above 4150 mV for longer."""


def _counted_pct(samples: list[Telemetry], capacity_ah: float) -> float:
    """SoC change the telemetry current accounts for (trapezoids between samples)."""
    amp_s = sum((a.current_a + b.current_a) / 2 * (b.board_time_s - a.board_time_s)
                for a, b in itertools.pairwise(samples))
    return amp_s / 3600 / capacity_ah * 100


class _TruthCheck:
    """Each telemetry sample from ``mark`` on against the plant's true SoC, where the
    rig observes it: in stretches, while the simulator still holds their history (an
    hour of it; a leg of a 100 Ah pack at C/4 is four)."""

    def __init__(self, client: HilClient, rig: Rig, mark: int) -> None:
        self.client, self.rig, self.seen = client, rig, 0
        self.mark = mark

    def check(self) -> None:
        samples = self.client.telemetry_since(self.mark)[self.seen:]
        self.seen += len(samples)
        if not self.rig.observes or not samples:
            return
        truths = [self.rig.truth_at(round(t.board_time_s * 1000)) for t in samples]
        compared = [(t, x) for t, x in zip(samples, truths, strict=True) if x is not None]
        assert len(compared) >= 0.9 * len(samples), "the plant kept too little history"
        worst = max(abs(t.soc_pct - x.soc_pct) for t, x in compared)
        assert worst < TRUTH_TOLERANCE_PCT, f"SoC off the plant's by up to {worst:.2f} %"


def _clear(client: HilClient) -> None:
    client.clear_faults()
    client.wait_telemetry("the output closed again", lambda t: t.state == "active", 10.0)


def _leg(client: HilClient, rig: Rig, limits: BoardLimits, amps: float,
         protection: str, latched: str | None = None) -> tuple[list[Telemetry], str | None]:
    """Run ``amps`` until ``protection`` stops it, let the cells rest until it
    releases, clear it; return the telemetry of the leg, each sample checked against
    the plant's true SoC where the rig observes it (before the next leg, while the
    simulator still holds that stretch of history), and the protection left latched.

    A protection that stops only its own direction (``one_way``: a board with separate
    switches) may not release at rest: an LFP cell cut off at 2.5 V under load rests
    at 2.56..2.63 V, short of its 2.6 V release. Then it stays latched, and the next
    leg (``latched``), which runs the way back, releases and clears it."""
    info = limits.info
    spec = limits.protections[protection]
    hours = info.capacity_ah / abs(amps)
    mark = client.mark()
    rig.set_current(amps)
    if latched is not None:
        back = limits.protections[latched]
        client.wait_event("release", latched, back.release_within_s + RELAX_S, mark)
        _clear(client)
    truth = _TruthCheck(client, rig, mark)
    budget_s = 1.3 * hours * 3600 + spec.trip_within_s
    while True:  # in stretches the simulator still holds the history of
        stretch_s = min(CHECK_EVERY_S, budget_s)
        start_ms = client.elapsed_ms
        try:
            client.wait_event("trip", protection, stretch_s, mark)
            break
        except HilTimeout:
            budget_s -= stretch_s
            if budget_s <= 0 or client.elapsed_ms - start_ms < stretch_s * 1000:
                raise  # out of time, or the board went silent
            truth.check()
    rig.set_current(0.0)
    try:
        client.wait_event("release", protection, spec.release_within_s + RELAX_S, mark)
        left = None
    except HilTimeout:
        if not spec.one_way:
            raise
        t = client.next_telemetry()
        assert t.state == "fault" and (t.charge_allowed or t.discharge_allowed), (
            f"{protection} latched with no way back: {t}")
        left = protection
    truth.check()
    samples = client.telemetry_since(mark)
    if left is None:
        _clear(client)
    return samples, left


def _leg_back(client: HilClient, limits: BoardLimits, rig: Rig, amps: float,
              latched: str) -> None:
    """Leave the board as found: ``amps`` the way back until ``latched`` releases,
    then clear it."""
    spec = limits.protections[latched]
    mark = client.mark()
    rig.set_current(amps)
    client.wait_event("release", latched, spec.release_within_s + RELAX_S, mark)
    rig.set_current(0.0)
    _clear(client)


def test_soc_follows_a_full_cycle(client: HilClient, rig: Rig, limits: BoardLimits) -> None:
    info = limits.info
    discharge_a = -min(info.discharge_current_max_a / 2, 2 * info.capacity_ah)  # 2C at most
    charge_a = min(info.charge_current_max_a / 2, info.capacity_ah)  # 1C at most
    start = client.next_telemetry()
    empty, latched = _leg(client, rig, limits, discharge_a, "cell_undervoltage")
    full, latched = _leg(client, rig, limits, charge_a, "cell_overvoltage", latched)
    if latched is not None:  # the way back clears it: a short discharge
        _leg_back(client, limits, rig, discharge_a, latched)

    low, high = empty[-1].soc_pct, full[-1].soc_pct
    assert low < 15.0, f"SoC {low} % where the board stopped the discharge"
    assert high > 85.0, f"SoC {high} % where the board stopped the charge"
    assert start.soc_pct - low > 30.0 and high - low > 70.0
    for leg in (empty, full):
        counted = _counted_pct(leg, info.capacity_ah)
        reported = leg[-1].soc_pct - leg[0].soc_pct
        if 0.0 < leg[-1].soc_pct < 100.0:  # not clamped
            assert abs(reported - counted) < COUNT_TOLERANCE_PCT, (reported, counted)
