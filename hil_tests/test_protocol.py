"""Requests end to end: configuration, stats, the event log across resets, latches
across a power cycle. Values come from the board's own configuration dump."""

from __future__ import annotations

import pytest
from stimuli import Bench, voltage_threshold

from cellguard.hil import BoardLimits, HilClient, Rig
from cellguard.link.client import CONFIG_NAMES, BoardRefused, ConfigEntry

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def _another_value(e: ConfigEntry) -> int | None:
    """A value ``e`` may take that is not its present one (None: it has only one)."""
    if e.key == "host_timeout_ms":  # a short silence would open the output: the longest
        return e.max if e.value != e.max else None
    for v in (e.value + 1, e.value - 1):
        if e.min <= v <= e.max:
            return v
    return None


def test_every_key_round_trips_and_each_change_is_logged(client: HilClient) -> None:
    entries = client.config_dump()
    assert len({e.key for e in entries}) == len(entries) >= 100
    first = client.event_total()
    writes: list[tuple[str, int]] = []
    for e in entries:
        new = _another_value(e)
        if new is None:
            continue
        got = client.set_config(e.key, new)
        assert (got.key, got.value) == (e.key, new)
        assert client.get_config(e.key).value == new
        back = client.set_config(e.key, e.value)
        assert back.value == e.value and (back.min, back.max) == (e.min, e.max)
        writes += [(e.key, new), (e.key, e.value)]
    assert len(writes) >= 2 * (len(entries) - 5)
    assert {e.key: e.value for e in client.config_dump()} == {e.key: e.value for e in entries}
    # Each write that changed a value is a config event; the log keeps the newest.
    assert client.event_total() - first == len(writes)
    logged = [(CONFIG_NAMES[e.code], e.value) for e in client.events_from(first)
              if e.kind == "config"]
    assert logged and logged == writes[-len(logged):]


def test_values_beyond_the_range_are_refused_with_the_bound(client: HilClient) -> None:
    entries = client.config_dump()
    first = client.event_total()
    for e in entries:
        for value, bound in ((e.max + 1, e.max), (e.min - 1, e.min)):
            if not I32_MIN <= value <= I32_MAX:
                continue
            with pytest.raises(BoardRefused) as refused:
                client.set_config(e.key, value)
            assert refused.value.error in ("out_of_range", "beyond_hard_limit"), e
            assert refused.value.limit == bound, (e, refused.value)
            assert f"limit {bound} " in str(refused.value)
    assert {e.key: e.value for e in client.config_dump()} == {e.key: e.value for e in entries}
    assert client.event_total() == first, "a refused write changed nothing, logged nothing"


def test_a_release_threshold_cannot_cross_its_trip(client: HilClient,
                                                   limits: BoardLimits) -> None:
    """The two kinds of refusal, each naming its bound: past the chemistry's hard
    limit, and a release threshold on the wrong side of its trip."""
    ov = limits.protections["cell_overvoltage"]
    with pytest.raises(BoardRefused) as refused:
        client.set_config(ov.trip_key, ov.hard_max + 1000)
    assert (refused.value.error, refused.value.limit) == ("beyond_hard_limit", ov.hard_max)
    with pytest.raises(BoardRefused) as refused:
        client.set_config(ov.release_key, ov.trip + 2)
    assert (refused.value.error, refused.value.limit) == ("out_of_range", ov.trip + 1)
    assert client.get_config(ov.release_key).value == ov.release


def test_stats_count_the_link(client: HilClient) -> None:
    first = client.stats()
    for _ in range(5):
        client.get_config("cell_ov_mv")
    stats = client.stats()
    assert stats["frames_ok"] - first["frames_ok"] == 6  # five requests and this one
    assert stats["crc_errors"] == first["crc_errors"]
    assert stats["tx_frames"] > first["tx_frames"] and stats["uptime_ms"] > first["uptime_ms"]
    assert stats["control_steps"] > first["control_steps"]
    assert stats["heap_free"] > 0 or stats["heap_free"] == -1  # -1: firmware under CPython


def test_event_log_survives_a_reset(client: HilClient, limits: BoardLimits) -> None:
    first = client.event_total()
    ov = limits.protections["cell_overvoltage"]
    client.set_config(ov.trip_key, ov.trip - 50)
    client.reset()
    info = client.reconnect(wait_s=10.0)  # a USB board leaves the bus while it resets
    assert round(info.cell_ov_v * 1000) == ov.trip  # configuration is not persisted; the log is
    events = client.events_from(first)
    assert [e.kind for e in events] == ["config", "reset", "boot"]
    assert [e.index for e in events] == list(range(first, first + 3))
    assert events[-1].code == 0  # nothing latched at the boot


def test_fault_stays_latched_across_a_power_cycle_until_cleared(
        client: HilClient, rig: Rig, limits: BoardLimits) -> None:
    spec = limits.protections["cell_undervoltage"]
    stimulus = voltage_threshold(Bench(client, rig, limits), spec)
    first = client.event_total()
    mark = client.mark()
    stimulus.apply()
    client.wait_event("trip", spec.name, spec.trip_within_s, mark)
    rig.power_cycle()  # the configuration returns to the board file's: the condition is gone
    client.hello()
    state = client.fault_state()
    assert state == {"active": [], "latched": [spec.name], "tripped": [], "alarms": [],
                     "warnings": []}
    mark = client.mark()
    client.run(3.0)
    samples = client.telemetry_since(mark)
    assert samples and all(t.state == "fault" and t.faults == spec.bit for t in samples)
    # The latch holds what the trip did: the output open, or on separate charge and
    # discharge switches only the discharge switch (charging is the way back).
    assert all(not t.discharge_allowed and t.charge_allowed == spec.one_way for t in samples)
    if rig.observes:
        truth = rig.truth()
        assert truth.output_closed == spec.one_way
        if spec.one_way and rig.observes_directions:
            assert truth.charge_allowed and not truth.discharge_allowed
    client.clear_faults()
    client.wait_telemetry("the output closed again", lambda t: t.state == "active", 5.0)
    assert client.fault_state()["latched"] == []
    kinds = [(e.kind, e.code) for e in client.events_from(first)
             if e.kind in ("trip", "boot", "clear")]
    assert kinds == [("trip", spec.bit), ("boot", spec.bit), ("clear", spec.bit)], kinds
