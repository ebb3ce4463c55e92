"""The request protocol end to end on the (default: MicroPython) simulated board."""

from __future__ import annotations

import time

import pytest

from cellguard.client import BoardClient, BoardRefused
from cellguard.sim import SimulatedBoard


def test_config_fault_event_log_and_stats_over_the_link(sim: SimulatedBoard) -> None:
    sim.speed = 20.0
    with BoardClient(sim.port) as client:
        info = client.hello()
        assert "set_config" in info.known_types and info.max_frame >= 264
        client.time_sync()
        dump = {e.key: e for e in client.config_dump()}
        assert dump["cell_uv_mv"].value == round(info.cell_uv_v * 1000)

        with pytest.raises(BoardRefused) as refused:
            client.set_config("cell_uv_mv", 100)
        assert refused.value.error == "beyond_hard_limit"

        # Raise the under-voltage limit above the resting cells: it must trip.
        client.set_config("cell_uv_release_mv", 3900)
        client.set_config("cell_uv_mv", 3800)
        deadline = time.monotonic() + 10
        event = None
        while event is None and time.monotonic() < deadline:
            event = next((m.payload for m in client.receive() if m.name == "fault_event"), None)
        assert event is not None and event["kind"] == "trip" and event["fault"] == 2
        assert client.fault_state()["active"] == ["cell_undervoltage"]
        assert not sim.truth().output_closed

        kinds = [e.kind for e in client.events()]
        assert kinds[:1] == ["boot"] and kinds.count("config") == 2 and "trip" in kinds
        stats = client.stats()
        assert stats["frames_ok"] >= 8 and stats["crc_errors"] == 0
        if sim.runtime_name == "micropython":
            assert stats["heap_free"] > 0  # MicroPython reports its heap


def test_event_log_survives_reset_and_power_cycle(sim: SimulatedBoard) -> None:
    sim.speed = 20.0
    with BoardClient(sim.port) as client:
        client.hello()
        client.set_config("cell_ov_mv", 4200)
        client.reset()
        info = client.hello()
        assert info.cell_ov_v == 4.25  # configuration is not persisted; the log is
        sim.power_cycle()
        client.hello()
        events = client.events()
    assert [e.kind for e in events] == ["boot", "config", "reset", "boot", "boot"]
    assert [e.index for e in events] == list(range(5))


def test_latched_fault_survives_a_power_cycle(sim: SimulatedBoard) -> None:
    sim.speed = 20.0
    with BoardClient(sim.port) as client:
        client.hello()
        client.set_config("cell_uv_release_mv", 3900)
        client.set_config("cell_uv_mv", 3800)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and client.fault_state()["latched"] == []:
            time.sleep(0.1)
        sim.power_cycle()  # configuration back to the board file: the condition is gone
        client.hello()
        state = client.fault_state()
        assert state == {"active": [], "latched": ["cell_undervoltage"], "tripped": [],
                         "alarms": [], "warnings": []}
        time.sleep(0.3)
        assert not sim.truth().output_closed
        client.clear_faults()
        assert client.fault_state()["latched"] == []
        boots = [e for e in client.events() if e.kind == "boot"]
        assert boots[-1].code == 2  # the boot event records what was latched
