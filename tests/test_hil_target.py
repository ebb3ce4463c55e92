"""The HIL suite's simulated target (``cellguard.hil.SimTarget``): paced to the
suite, so a pause of the host (a busy machine) is not minutes of board time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cellguard.hil import HOST_LEAD_S, SimTarget


@pytest.fixture
def target() -> Iterator[SimTarget]:
    t = SimTarget("sim-4s", "cpython", seed=7)
    try:
        yield t
    finally:
        t.close()


def test_a_pause_of_the_host_does_not_become_a_host_timeout(target: SimTarget) -> None:
    client = target.connect()
    client.hello()
    client.set_config("host_timeout_ms", 10_000)
    first = client.event_total()
    client.run(2.0)
    before = client.last
    assert before is not None and client.info is not None
    time.sleep(0.5)  # the host is busy elsewhere: it sends and reads nothing
    answered_ms = client.stats()["uptime_ms"]  # a frame from the host: the silence ends
    client.run(2.0)
    assert [e.kind for e in client.events_from(first) if e.kind != "config"] == []
    assert client.fault_state()["active"] == []
    # While the host slept the board ran on to its next telemetry and HOST_LEAD_S
    # past it, no further (unpaced: hundreds of seconds).
    period_ms = round(client.info.control_period_s * 1000)
    telemetry_ms = round(client.info.telemetry_period_s * 1000)
    assert answered_ms - round(before.board_time_s * 1000) <= (telemetry_ms + HOST_LEAD_S * 1000
                                                   + 2 * period_ms)
    assert target.sim.host_stalls == 0


def test_without_a_client_the_board_stands_still_unless_the_rig_waits(
        target: SimTarget) -> None:
    """A test that looks away from the board (at a log it wrote, at the plant's
    history) finds it where it left it; rig.wait lets exactly its time pass."""
    client = target.connect()
    client.hello()
    client.run(2.0)
    client.disconnect()
    time.sleep(0.2)  # the test does something else
    left_at = target.sim.time_ms
    time.sleep(0.2)
    assert target.sim.time_ms == left_at
    target.rig.wait(120.0)  # nobody reads: the rig lets the time pass
    assert target.sim.time_ms == left_at + 120_000
    time.sleep(0.2)
    assert target.sim.time_ms == left_at + 120_000
    assert target.rig.truth_at(left_at + 100) is not None
    client.reconnect()
    client.run(2.0)
    assert client.last is not None and client.last.board_time_s >= left_at / 1000 + 120
    assert target.sim.host_stalls == 0
