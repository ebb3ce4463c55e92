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


def test_the_board_runs_on_while_the_suite_has_no_client_connected(
        target: SimTarget) -> None:
    client = target.connect()
    client.hello()
    client.run(2.0)
    client.disconnect()
    start_ms = target.sim.time_ms
    target.rig.wait(120.0)  # nobody reads: nothing to wait for
    assert target.sim.time_ms >= start_ms + 120_000
    assert target.sim.host_stalls == 0
    client.reconnect()
    client.run(2.0)
    assert client.last is not None and client.last.board_time_s >= 120.0
