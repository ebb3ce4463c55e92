"""Requests and answers: config, faults, events, stats, reset, REPL, versions, retries."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import INFO_FIELDS, TELEMETRY_FIELDS

from cellguard.errors import NotABoardError
from cellguard.link.client import BoardClient, BoardRefused, IncompatibleBoard, RequestTimeout
from cellguard.protocol.codec import Frame, build_payload, encode_frame
from cellguard.protocol.messages import (
    BY_NAME,
    MAX_PAYLOAD,
    PROTOCOL_MAJOR,
    ConfigKey,
)
from cellguard.sim import SimulatedBoard

INFO = BY_NAME["info"].msg_id
TELEMETRY = BY_NAME["telemetry"].msg_id


@pytest.fixture
def board() -> Iterator[tuple[SimulatedBoard, BoardClient]]:
    with SimulatedBoard(runtime="cpython", speed=20.0) as sim, BoardClient(sim.port) as client:
        client.hello()
        yield sim, client


def test_config_dump_lists_every_key_with_its_range(board: Any) -> None:
    _, client = board
    entries = {e.key: e for e in client.config_dump()}
    assert set(entries) == {str(k) for k in ConfigKey.encmapping}
    ov = entries["cell_ov_mv"]
    assert ov.value == 4250 and ov.max == 4300  # NMC hard limit
    # integers: a trip one below its release is no hysteresis, the least allowed
    assert ov.min == entries["cell_ov_release_mv"].value - 1
    assert entries["telemetry_period_ms"].min == 100  # the control period


def test_protection_keys_follow_the_protection_table() -> None:
    from cellguard_fw.protection import protection_table
    from protocol.messages import DEBOUNCE_KEY_BASE, SEVERITY_KEY_BASE

    for i, (name, *_rest) in enumerate(protection_table()):
        limit_key = protection_table()[i][4]
        assert ConfigKey.decmapping[4 * i + 1] == limit_key, name
        assert str(ConfigKey.decmapping[4 * i + 3]).endswith("_delay_ms"), name
        stem = str(ConfigKey.decmapping[4 * i + 3]).removesuffix("_delay_ms")
        assert ConfigKey.decmapping[DEBOUNCE_KEY_BASE + i] == f"{stem}_debounce", name
        assert ConfigKey.decmapping[SEVERITY_KEY_BASE + i] == f"{stem}_severity", name


def test_set_then_get_round_trips(board: Any) -> None:
    _, client = board
    assert client.set_config("cell_ov_mv", 4200).value == 4200
    assert client.get_config("cell_ov_mv").value == 4200
    assert client.info is not None
    info = client.hello()
    assert info.cell_ov_v == 4.2  # INFO reports the live limit


def test_out_of_range_and_hard_limit_are_refused_with_the_bound(board: Any) -> None:
    _, client = board
    with pytest.raises(BoardRefused) as exc:
        client.set_config("cell_ov_mv", 4400)
    assert exc.value.error == "beyond_hard_limit" and exc.value.limit == 4300
    assert "limit 4300 mV (4.3 V)" in str(exc.value)
    with pytest.raises(BoardRefused) as exc:
        client.set_config("cell_ov_release_mv", 4260)  # above its trip
    assert exc.value.error == "out_of_range" and exc.value.limit == 4251  # trip + 1
    with pytest.raises(BoardRefused) as exc:
        client.set_config("charge_current_max_ma", 60000)  # the sensor reads up to 50 A
    assert exc.value.error == "beyond_hard_limit" and exc.value.limit == 50000
    assert client.get_config("cell_ov_mv").value == 4250  # nothing changed


def test_unknown_key_is_refused(board: Any) -> None:
    _, client = board
    unknown = next(k for k in range(1, 256) if k not in ConfigKey.decmapping)
    with pytest.raises(BoardRefused, match="unknown key"):
        client.request("get_config", {"key": unknown}, expect=("config_value",))
    with pytest.raises(BoardRefused, match="unknown key"):
        client.request("set_config", {"key": unknown, "value": 1, "pin": 0},
                       expect=("config_value",))


def test_pin_protected_board(tmp_path: Path) -> None:
    from cellguard.boards import load_board

    board = load_board("sim-4s")
    board["config_pin"] = 4321
    path = tmp_path / "pinned.json"
    path.write_text(json.dumps(board))
    with SimulatedBoard(board=str(path), runtime="cpython", speed=20.0) as sim, \
            BoardClient(sim.port) as client:
        client.hello()
        with pytest.raises(BoardRefused, match="not authorised"):
            client.set_config("cell_ov_mv", 4200)
        with pytest.raises(BoardRefused, match="not authorised"):
            client.set_config("cell_ov_mv", 4200, pin=1234)
        assert client.set_config("cell_ov_mv", 4200, pin=4321).value == 4200


def test_telemetry_period_is_set_by_the_host(board: Any) -> None:
    _, client = board
    client.set_config("telemetry_period_ms", 200)
    times: list[float] = []
    deadline = time.monotonic() + 60  # a guard only
    while len(times) < 8 and time.monotonic() < deadline:
        times += [t.board_time_s for t in _telemetry(client)]
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(times[1:])}
    assert gaps == {0.2}


def _telemetry(client: BoardClient) -> list[Any]:
    from cellguard.link.client import Telemetry

    return [Telemetry.from_wire(m.payload) for m in client.receive() if m.name == "telemetry"]


def test_trip_reports_a_fault_event_and_the_log_keeps_it(board: Any) -> None:
    sim, client = board
    client.time_sync(1_700_000_000)
    # Cells rest at 3.75 V: pull the over-voltage limit below them.
    client.set_config("cell_ov_release_mv", 3600)
    client.set_config("cell_ov_mv", 3700)
    events = _wait_for(client, "fault_event", lambda p: p["kind"] == "trip")
    assert events["fault"] == 1  # cell_overvoltage
    assert abs(events["value"] - 3750) < 5  # the cell voltage that tripped it
    state = client.fault_state()
    assert state["active"] == ["cell_overvoltage"] and state["tripped"] == ["cell_overvoltage"]
    truth = sim.truth()  # sim-4s's separate FETs: charging stops, discharging is the way back
    assert truth.output_closed and not truth.charge_allowed and truth.discharge_allowed

    log = client.events()
    kinds = [e.kind for e in log]
    assert kinds[0] == "boot" and "time_sync" in kinds and "trip" in kinds
    configs = [e for e in log if e.kind == "config"]
    assert [(e.code, e.value) for e in configs] == [(2, 3600), (1, 3700)]
    trip = next(e for e in log if e.kind == "trip")
    assert trip.unix_time >= 1_700_000_000

    client.set_config("cell_ov_mv", 4250)
    client.set_config("cell_ov_release_mv", 4150)
    _wait_for(client, "fault_event", lambda p: p["kind"] == "release")
    client.clear_faults()
    assert client.fault_state() == {"active": [], "latched": [], "tripped": [], "alarms": [],
                                    "warnings": []}
    assert [e.kind for e in client.events()][-1] == "clear"


def _wait_for(client: BoardClient, name: str, match: Any, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for msg in client.receive():
            if msg.name == name and match(msg.payload):
                return msg.payload
    raise AssertionError(f"no {name} within {timeout_s} s")


def test_stats_count_frames(board: Any) -> None:
    _, client = board
    before = client.stats()
    client.serial.write(b"\x05garbage\x00")  # a frame that fails COBS/CRC
    client.get_config("cell_ov_mv")
    after = client.stats()
    assert after["frames_ok"] >= before["frames_ok"] + 2
    assert after["frames_bad"] + after["crc_errors"] == before["frames_bad"] + \
        before["crc_errors"] + 1
    assert after["control_steps"] > before["control_steps"]
    assert after["heap_free"] == -1  # CPython runtime: unknown


def test_reset_restarts_the_firmware(board: Any) -> None:
    _, client = board
    client.set_config("cell_ov_mv", 4200)
    client.reset()
    info = client.hello()
    assert info.cell_ov_v == 4.25  # configuration is back to the board file
    first = _telemetry_wait(client)
    assert first.board_time_s < 3.0  # the board clock restarted


def _telemetry_wait(client: BoardClient) -> Any:
    deadline = time.monotonic() + 60  # a guard only
    while time.monotonic() < deadline:
        got = _telemetry(client)
        if got:
            return got[0]
    raise AssertionError("no telemetry")


def _wait_board_time(sim: SimulatedBoard, seconds: float) -> None:
    """Until ``seconds`` of board time have passed (the wall-clock guard only stops a
    board that stopped from hanging the test)."""
    until_ms = sim.time_ms + seconds * 1000
    guard = time.monotonic() + 120
    while sim.time_ms < until_ms:
        sim.check()
        assert time.monotonic() < guard, "the simulated board stopped"
        time.sleep(0.01)


def test_enter_repl_silences_the_protocol(board: Any) -> None:
    sim, client = board
    client.enter_repl()
    _wait_board_time(sim, 1.0)  # whatever the board wrote before the REPL, drained
    client.receive()
    client.serial.reset_input_buffer()
    _wait_board_time(sim, 10.0)
    assert client.serial.in_waiting == 0
    with pytest.raises(NotABoardError):
        client.hello(timeout_s=0.5)


def test_largest_telemetry_fits_a_frame() -> None:
    payload = build_payload("telemetry", {**TELEMETRY_FIELDS, "cells_mv": [4200] * 16,
                                          "temps_dc": [250] * 16})
    assert len(payload) <= MAX_PAYLOAD
    assert len(encode_frame(TELEMETRY, 1, payload)) <= MAX_PAYLOAD + 9 + 3


# -- versions, retries and matching, against scripted boards -------------------------


def _info(frame: Frame, **changes: Any) -> bytes:
    return encode_frame(INFO, frame.seq, build_payload("info", {**INFO_FIELDS, **changes}))


def test_newer_major_version_is_refused_clearly(fake_board: Any) -> None:
    # A protocol 2 board NAKs our HELLO in its own version.
    def respond(frame: Frame) -> bytes:
        nak = build_payload("nak", {"request_type": frame.msg_type,
                                    "error": "incompatible_version", "limit": 2})
        return encode_frame(0x7F, frame.seq, nak, version=PROTOCOL_MAJOR + 1)

    fake = fake_board(respond)
    with BoardClient(fake.port) as client, pytest.raises(IncompatibleBoard) as exc:
        client.hello(timeout_s=1.0)
    assert f"protocol {PROTOCOL_MAJOR + 1}.x" in str(exc.value)
    assert "update the host tool" in str(exc.value)


def test_newer_minor_version_unknown_types_are_ignored(fake_board: Any) -> None:
    def respond(frame: Frame) -> bytes:
        unknown = encode_frame(0x99, 1, b"\x01\x02\x03")
        tele = encode_frame(TELEMETRY, 2, build_payload("telemetry", TELEMETRY_FIELDS))
        return unknown + _info(frame, protocol_minor=9, known_types=[1, 2, 0x10, 0x99]) + \
            unknown + tele

    fake = fake_board(respond)
    with BoardClient(fake.port) as client:
        info = client.hello()
        assert info.protocol == f"{PROTOCOL_MAJOR}.9"
        assert "0x99" in info.known_types
        got = _telemetry_wait(client)
        assert got.seq == 0
        assert client.unknown_messages == 2


def test_answer_to_another_request_never_matches(fake_board: Any) -> None:
    def respond(frame: Frame) -> bytes:
        # First an INFO with another sequence number, then the right one.
        wrong = encode_frame(INFO, (frame.seq + 1) & 0xFFFF,
                             build_payload("info", {**INFO_FIELDS, "board": "wrong"}))
        return wrong + _info(frame, board="right")

    fake = fake_board(respond)
    with BoardClient(fake.port) as client:
        assert client.hello().board == "right"


def test_retry_after_a_lost_request(fake_board: Any) -> None:
    seen: list[int] = []

    def respond(frame: Frame) -> bytes:
        seen.append(frame.seq)
        return b"" if len(seen) == 1 else _info(frame)  # the first HELLO is "lost"

    fake = fake_board(respond)
    with BoardClient(fake.port) as client:
        assert client.hello(timeout_s=1.5).board == "fake"
    assert len(seen) == 2 and seen[0] != seen[1]


def test_request_gives_up_after_its_attempts(fake_board: Any) -> None:
    fake = fake_board(lambda frame: b"")
    with BoardClient(fake.port) as client, pytest.raises(RequestTimeout, match="3 attempts"):
        client.request("get_stats", expect=("stats",), timeout_s=0.2, attempts=3)
    assert len(fake.received) == 3


def test_telemetry_keeps_flowing_while_a_request_waits(fake_board: Any) -> None:
    fake: Any = None

    def respond(frame: Frame) -> bytes:
        if frame.msg_type == BY_NAME["hello"].msg_id:
            return _info(frame)
        for i in range(5):  # the board keeps streaming before it answers
            tele = {**TELEMETRY_FIELDS, "telemetry_seq": i}
            fake.write(encode_frame(TELEMETRY, 100 + i, build_payload("telemetry", tele)))
            time.sleep(0.02)
        return encode_frame(0x7E, frame.seq, build_payload("ack", {"request_type": 0x32}))

    fake = fake_board(respond)
    with BoardClient(fake.port) as client:
        client.hello()
        client.clear_faults()
        assert [t.seq for t in _telemetry(client)] == [0, 1, 2, 3, 4]


def test_event_log_survives_reset_and_power_cycle(board: Any) -> None:
    sim, client = board
    client.set_config("cell_ov_mv", 4200)
    client.reset()
    client.hello()
    sim.power_cycle()
    client.hello()
    kinds = [e.kind for e in client.events()]
    assert kinds == ["boot", "config", "reset", "boot", "boot"]
    assert [e.index for e in client.events()] == [0, 1, 2, 3, 4]


def test_a_fault_stays_latched_across_a_reset_until_cleared(board: Any) -> None:
    sim, client = board
    client.set_config("cell_ov_release_mv", 3600)
    client.set_config("cell_ov_mv", 3700)
    _wait_for(client, "fault_event", lambda p: p["kind"] == "trip")
    client.reset()  # the configuration goes back to 4250 mV: the condition is gone
    client.hello()
    _wait_board_time(sim, 10.0)
    state = client.fault_state()
    assert state["active"] == [] and state["latched"] == ["cell_overvoltage"]
    assert not sim.truth().charge_allowed  # the latch holds the charge FET open
    assert _telemetry_wait(client).state == "fault"
    client.clear_faults()
    assert client.fault_state()["latched"] == []
    deadline = time.monotonic() + 60  # a guard only
    while not sim.truth().charge_allowed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.truth().charge_allowed and sim.truth().output_closed
    kinds = [e.kind for e in client.events()]
    assert kinds[-1] == "clear" and kinds.count("boot") == 2


def test_host_lost_policy_opens_the_output_until_the_host_returns(board: Any) -> None:
    sim, client = board
    assert client.get_config("host_timeout_ms").value == 0  # default: keep protecting
    client.set_config("host_timeout_ms", 2000)
    _wait_for(client, "fault_event", lambda p: p["kind"] == "trip" and p["fault"] == 0x8000)
    assert not sim.truth().output_closed
    state = client.fault_state()  # the host is back: the condition releases
    assert state["latched"] == []  # a policy, never latched
    deadline = time.monotonic() + 60  # a guard only
    while not sim.truth().output_closed and time.monotonic() < deadline:
        client.stats()
    assert sim.truth().output_closed
