"""Every protection of the firmware's table, end to end over the serial link.

For each protection (and each way the suite has to make it trip, see
``stimuli.py``): the condition is applied; the FAULT_EVENT reaches the host
with the severity the board reports for it; the board does what the severity
says (a fault opens the output and latches, an alarm holds its direction at
zero with the output closed, a warning only reports); the condition is
removed and the protection releases; a fault stays latched, output open, until
CLEAR_FAULTS; the event log has it all. On a board with separate charge and
discharge switches a cell-voltage fault stops only its own direction (``one_way``):
the output stays closed for the way back, the latch holds that direction.
"""

from __future__ import annotations

import pytest
from stimuli import STIMULI, Bench

from cellguard.hil import (
    BLOCKS_CHARGE,
    BLOCKS_DISCHARGE,
    BoardLimits,
    HilClient,
    ProtectionLimits,
    Rig,
)
from cellguard.link.client import Telemetry
from cellguard.sim.plant import PlantTruth
from cellguard_fw.protection import protection_table

PROTECTIONS = [row[0] for row in protection_table()]
CASES = [pytest.param(name, variant, id=f"{name}-{variant}")
         for name in PROTECTIONS for variant in STIMULI.get(name, {})]
SETTLE_S = 15.0  # board time for the other protections a stimulus tripped to release


def test_every_protection_of_the_firmware_has_a_stimulus() -> None:
    assert set(STIMULI) == set(PROTECTIONS), "a protection without a stimulus is not tested"


def _check_directions(t: Telemetry, blocked: int) -> None:
    assert t.charge_allowed == (not blocked & BLOCKS_CHARGE), t
    assert t.discharge_allowed == (not blocked & BLOCKS_DISCHARGE), t


def _plant(client: HilClient, rig: Rig, closed: bool) -> PlantTruth | None:
    """The plant's truth once its switch is ``closed`` as the firmware drove it: a
    rig whose plant sees the board's pins late (``rig.latency_s``) gets that much
    board time for it; None where the rig does not observe the plant."""
    truth = rig.truth()
    waited = 0.0
    while truth is not None and truth.output_closed != closed and waited < rig.latency_s:
        client.run(0.1)
        waited += 0.1
        truth = rig.truth()
    return truth


def _check_fault(t: Telemetry, truth: PlantTruth | None, spec: ProtectionLimits,
                 observes_directions: bool) -> None:
    """What a latched fault leaves: the output open, or only its direction stopped."""
    if not spec.one_way:
        assert not t.charge_allowed and not t.discharge_allowed, "the output is open"
        if truth is not None:
            assert not truth.output_closed
        return
    if not t.alarms:  # no alarm stops a direction besides
        _check_directions(t, spec.blocks)
    if truth is not None:
        assert truth.output_closed, "a cell-voltage fault keeps the way back open"
        if observes_directions:
            assert truth.charge_allowed == (not spec.blocks & BLOCKS_CHARGE)
            assert truth.discharge_allowed == (not spec.blocks & BLOCKS_DISCHARGE)


@pytest.mark.parametrize(("protection", "variant"), CASES)
def test_protection_trips_releases_and_latches(client: HilClient, rig: Rig,
                                               limits: BoardLimits, protection: str,
                                               variant: str) -> None:
    spec = limits.protections[protection]
    bit = spec.bit
    stimulus = STIMULI[protection][variant](Bench(client, rig, limits), spec)
    first_event = client.event_total()
    mark = client.mark()
    stimulus.apply()

    # Trip: the event, at the board's severity, with a value past the threshold.
    trip = client.wait_event("trip", protection,
                             spec.trip_within_s + stimulus.extra_s + rig.latency_s, mark)
    assert trip["severity"] == spec.severity, trip
    assert spec.above == (trip["value"] > stimulus.trip) and trip["value"] != stimulus.trip, (
        f"{protection} tripped at {trip['value']} {spec.unit}; threshold {stimulus.trip} "
        f"({stimulus.describe})")
    after_trip = client.mark()
    t = client.next_telemetry(after_trip)
    state = client.fault_state()
    opens = spec.severity == "fault" and not spec.one_way
    truth = _plant(client, rig, closed=not opens)
    if spec.severity == "fault":
        assert trip["faults"] & bit
        assert t.faults & bit and t.state == "fault", t
        assert protection in state["latched"] and protection in state["tripped"], state
        _check_fault(t, truth, spec, rig.observes_directions)
    else:
        assert not t.faults & bit and not trip["faults"] & bit
        assert t.state == "active", f"a {spec.severity} keeps the output closed: {t}"
        if spec.severity == "alarm":
            assert t.alarms & bit and protection in state["alarms"], (t, state)
            if t.alarms == bit:  # no other alarm blocks a direction
                _check_directions(t, spec.blocks)
            if truth is not None:
                assert truth.output_closed
            if truth is not None and rig.observes_directions:
                assert truth.charge_allowed == (not spec.blocks & BLOCKS_CHARGE)
                assert truth.discharge_allowed == (not spec.blocks & BLOCKS_DISCHARGE)
        else:
            assert t.warnings & bit and protection in state["warnings"], (t, state)
            if not t.alarms:
                _check_directions(t, 0)
            if truth is not None:
                assert truth.output_closed and truth.charge_allowed
        assert protection not in state["latched"], state

    # Release, once the condition is gone.
    stimulus.remove()
    release = client.wait_event("release", protection,
                                spec.release_within_s + stimulus.release_extra_s
                                + rig.latency_s, mark)
    assert release["severity"] == spec.severity, release
    assert spec.within_release(release["value"]), (
        f"{protection} released at {release['value']} {spec.unit}; release threshold "
        f"{spec.release}")
    t = client.next_telemetry()
    kinds = ["trip", "release"]
    if spec.severity == "fault":
        # Latched: the output stays open (its direction stopped) after the condition went.
        assert t.faults & bit and t.state == "fault", t
        assert protection not in client.fault_state()["active"]
        _check_fault(t, truth and _plant(client, rig, closed=not opens), spec,
                     rig.observes_directions)
        # What else the stimulus tripped releases too; then CLEAR_FAULTS closes it.
        for _ in range(round(SETTLE_S)):
            if not client.fault_state()["active"]:
                break
            client.run(1.0)
        assert client.fault_state()["active"] == []
        mark = client.mark()
        client.clear_faults()
        cleared = client.wait_event("clear", protection, 2.0, mark)
        assert cleared["faults"] == 0, cleared
        t = client.wait_telemetry("the output closed again", lambda t: t.state == "active",
                                  5.0, mark)
        assert t.faults == 0
        assert client.fault_state()["latched"] == []
        kinds.append("clear")
    else:
        assert not (t.alarms | t.warnings) & bit, t
        if not t.alarms:
            _check_directions(t, 0)
    if rig.observes:
        assert _plant(client, rig, closed=True).output_closed

    logged = [e.kind for e in client.events_from(first_event)
              if e.code & bit and e.kind in ("trip", "release", "clear")]
    assert logged == kinds, logged
