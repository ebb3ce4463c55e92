"""The change log (admin.py's audit.bin, GET_AUDIT, ``cellguard audit``): every write,
taken or refused, in a hash chain that a changed, removed or inserted record breaks."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cellguard.link.audit import (
    CHAIN_BYTES,
    SeenHeads,
    check_board,
    parse_records,
    verify,
)
from cellguard.link.auth import KeyStore
from cellguard.link.client import BoardClient, BoardRefused
from cellguard.link.locking import lock
from cellguard.protocol.messages import AUDIT_RECORD_BYTES, BY_NAME
from cellguard.sim import SimulatedBoard

RECORD = struct.Struct("<LLBBBBllL")


@pytest.fixture(params=["cpython", "micropython"])
def board(request: pytest.FixtureRequest) -> Iterator[SimulatedBoard]:
    with SimulatedBoard(runtime=request.param, speed=0) as sim:
        sim.run_for(0)
        yield sim


@pytest.fixture
def cboard() -> Iterator[SimulatedBoard]:
    """A board under CPython, whose simulated flash is a folder a test can reach."""
    with SimulatedBoard(runtime="cpython", speed=0) as sim:
        sim.run_for(0)
        yield sim


def flash(sim: SimulatedBoard) -> Path:
    return Path(sim._runtime._flash.name)  # type: ignore[attr-defined]


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys")


def plain(client: BoardClient, name: str, values: dict[str, object]) -> str:
    """Send a write without AUTH; "ok" or the NAK's error."""
    info, client.info = client.info, None  # a host that does not know the board is locked
    try:
        client.request(name, values)
        return "ok"
    except BoardRefused as exc:
        return exc.error
    finally:
        client.info = info


def test_every_write_taken_or_refused_is_in_the_chain(board: SimulatedBoard,
                                                      keys: KeyStore) -> None:
    with BoardClient(board.port, keys=keys) as client:
        before = client.lifetime().config_changes
        client.set_config("telemetry_period_ms", 500)
        client.clear_faults()
        key = lock(client, keys)
        client.set_config("telemetry_period_ms", 400)  # inside AUTH: the key store's key
        for _ in range(5):
            assert plain(client, "clear_faults", {}) == "auth_required"
        assert plain(client, "time_sync", {"unix_time_s": 1_800_000_000}) == "auth_required"
        check = check_board(client, SeenHeads(keys.folder))
        assert client.lifetime().config_changes == before + 2
    assert check.ok, check.breaks
    assert check.first_link_checked and check.total == len(check.entries) == 6
    got = [(e.request, e.key_id, e.result, e.repeats) for e in check.entries]
    assert got == [
        ("set_config", 0, "accepted", 1),
        ("clear_faults", 0, "accepted", 1),
        ("set_key", 0, "accepted", 1),
        ("set_config", key.key_id, "accepted", 1),
        ("clear_faults", 0, "auth_required", 5),  # five refusals in a row: one record
        ("time_sync", 0, "auth_required", 1),
    ]
    first, _, locked, again, _ = check.entries[:5]
    assert (first.config_key, first.old, first.new) == (100, 1000, 500)
    assert (locked.old, locked.new) == (0, key.key_id)
    assert (again.old, again.new) == (500, 400)


def test_a_refused_limit_says_why_and_keeps_the_value_asked_for(cboard: SimulatedBoard,
                                                                keys: KeyStore) -> None:
    with BoardClient(cboard.port, keys=keys) as client:
        client.hello()
        with pytest.raises(BoardRefused):
            client.set_config("cell_ov_mv", 9000)  # beyond the chemistry's limit
        check = check_board(client, None)
    (entry,) = check.entries
    assert entry.request == "set_config" and entry.result in (
        "out_of_range", "beyond_hard_limit")
    assert entry.new == 9000 and entry.old != 9000


def test_a_flipped_byte_in_the_log_breaks_the_chain_where_it_is(cboard: SimulatedBoard,
                                                               keys: KeyStore) -> None:
    with BoardClient(cboard.port, keys=keys) as client:
        client.hello()
        for period in (200, 300, 400, 500):
            client.set_config("telemetry_period_ms", period)
        assert check_board(client, None).ok
        log = flash(cboard) / "audit.bin"
        data = bytearray(log.read_bytes())
        data[AUDIT_RECORD_BYTES + 13] ^= 0x01  # record 1's new value
        log.write_bytes(bytes(data))
        check = check_board(client, None)
    assert not check.ok
    assert check.breaks == ["record 2 does not chain to record 1: record 1 was changed, "
                            "or 2 put in"]


def test_a_rewritten_log_is_caught_by_the_host_that_read_it_before(
        cboard: SimulatedBoard, keys: KeyStore) -> None:
    heads = SeenHeads(keys.folder)
    with BoardClient(cboard.port, keys=keys) as client:
        uid = client.hello().unique_id
        for period in (200, 300):
            client.set_config("telemetry_period_ms", period)
        assert check_board(client, heads).ok
        assert heads.get(uid) is not None
        # Someone with the REPL rewrites the last record and chains it anew: the
        # chain holds, but record 1 is not the one this host read.
        log = flash(cboard) / "audit.bin"
        data = bytearray(log.read_bytes())
        struct.pack_into("<l", data, AUDIT_RECORD_BYTES + 16, 250)
        log.write_bytes(bytes(data))
        check = check_board(client, heads)
        assert check.breaks == ["record 1 is not the one this host read before: the log was "
                                "rewritten since"]
        log.unlink()  # or removes it
        assert check_board(client, heads).breaks == [
            "this host saw record 1 before; the board now has only 0: the log was cut "
            "back or replaced"]


def test_a_stream_of_clock_sets_costs_one_record_and_each_sets_the_clock(
        board: SimulatedBoard, keys: KeyStore) -> None:
    with BoardClient(board.port, keys=keys) as client:
        client.hello()
        for i in range(20):
            client.request("time_sync", {"unix_time_s": 1_800_000_000 + 1000 * i})
        client.set_config("telemetry_period_ms", 300)
        client.request("time_sync", {"unix_time_s": 1_900_000_000})
        check = check_board(client, None)
        syncs = [e for e in client.events() if e.kind == "time_sync"]
    assert [(e.request, e.repeats, e.new) for e in check.entries] == [
        ("time_sync", 20, 1_800_019_000), ("set_config", 1, 300),
        ("time_sync", 1, 1_900_000_000)]
    assert [e.value for e in syncs][-3:] == [1_800_018_000, 1_800_019_000, 1_900_000_000]


def test_a_flood_of_refusals_costs_one_record_on_flash(cboard: SimulatedBoard,
                                                       keys: KeyStore) -> None:
    with BoardClient(cboard.port, keys=keys) as client:
        lock(client, keys)
        log = flash(cboard) / "audit.bin"
        size = log.stat().st_size
        for _ in range(40):
            assert plain(client, "reset", {}) == "auth_required"
        assert log.stat().st_size == size + AUDIT_RECORD_BYTES
        check = check_board(client, None)  # reading the log writes the run's count
    assert check.entries[-1].repeats == 40 and check.ok


def test_the_log_keeps_its_newest_records_and_its_chain(cboard: SimulatedBoard,
                                                        keys: KeyStore) -> None:
    with BoardClient(cboard.port, keys=keys) as client:
        client.hello()
        for i in range(300):
            client.set_config("telemetry_period_ms", 200 + i)
        check = check_board(client, None)
    assert check.ok, check.breaks
    assert check.total == 300 and not check.first_link_checked
    assert 128 <= len(check.entries) <= 256 and check.entries[-1].index == 299
    assert check.entries[-1].new == 499
    assert (flash(cboard) / "audit.bin").stat().st_size == len(check.entries) * 32


def test_a_clock_past_2038_is_logged_as_the_event_log_keeps_it(cboard: SimulatedBoard,
                                                               keys: KeyStore) -> None:
    with BoardClient(cboard.port, keys=keys) as client:
        client.hello()
        client.request("time_sync", {"unix_time_s": 2**31 + 5})  # 2038-01-19 03:14:13
        client.request("time_sync", {"unix_time_s": 2**31 + 7})
        check = check_board(client, None)
    assert check.ok
    (syncs,) = check.entries  # clock sets one after another: one record, counted
    assert syncs.repeats == 2 and syncs.old == 0  # the clock was not set before
    assert syncs.new == 2**31 + 7 - 2**32 and syncs.unix_time >= 2**31  # i32 wraps, u32 not


def test_a_torn_last_record_is_dropped_and_the_log_goes_on(cboard: SimulatedBoard,
                                                           keys: KeyStore) -> None:
    with BoardClient(cboard.port, keys=keys) as client:
        client.hello()
        client.set_config("telemetry_period_ms", 200)
        log = flash(cboard) / "audit.bin"
        log.write_bytes(log.read_bytes() + b"\x07" * 11)  # a power loss mid-write
        client.set_config("telemetry_period_ms", 300)
        check = check_board(client, None)
    assert check.ok and [e.index for e in check.entries] == [0, 1]


def test_a_new_owner_with_the_presence_button_takes_a_locked_board_over(
        cboard: SimulatedBoard, keys: KeyStore) -> None:
    """Second life (EU 2023/1542 Article 14(3)): without the old owner's key, the
    presence button and the board's id start a new life and open the board; the
    lifetime record keeps the old life as history, the change log says so."""
    with BoardClient(cboard.port, keys=keys) as client:
        uid = client.hello().unique_id
        key = lock(client, keys)
        stranger = KeyStore(keys.folder.parent / "new-owner")
    with BoardClient(cboard.port, keys=stranger) as client:
        assert client.hello().locked
        assert plain(client, "second_life", {"unique_id": uid, "pin": 0}) == (
            "presence_required")
        asked = []

        def hold(on: bool) -> None:  # the person at the board, asked by the client
            asked.append(on)
            cboard.hold_presence(on)

        client.presence = hold
        client.second_life(uid)  # no key in this store: sent alone, the button held
        assert asked == [True, False]
        info = client.hello()
        assert not info.locked
        life = client.lifetime()
        check = check_board(client, None)
    assert life.lives == 1 and life.history is not None
    assert check.ok
    assert [(e.request, e.result, e.old) for e in check.entries[-2:]] == [
        ("second_life", "presence_required", 0), ("second_life", "accepted", key.key_id)]
    assert not (flash(cboard) / "key.bin").exists()


def test_cli_audit_prints_the_log_and_exits_1_on_a_broken_chain(
        cboard: SimulatedBoard, keys: KeyStore, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cellguard.cli import main

    monkeypatch.setenv("CELLGUARD_KEYS", str(keys.folder))
    with BoardClient(cboard.port, keys=keys) as client:
        client.hello()
        client.set_config("telemetry_period_ms", 200)
        client.set_config("telemetry_period_ms", 300)
    assert main(["audit", "--port", cboard.port]) == 0
    out = capsys.readouterr().out
    assert "SET_CONFIG telemetry_period_ms 1000 -> 200 (no key): accepted" in out
    assert "chain holds: records 0-1 of 2, checked from the board's first record" in out
    log = flash(cboard) / "audit.bin"
    data = bytearray(log.read_bytes())
    data[5] ^= 0xFF
    log.write_bytes(bytes(data))
    assert main(["audit", "--port", cboard.port, "--json"]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert not doc["chain_ok"] and len(doc["records"]) == 2
    assert "chain BROKEN: record 1 does not chain to record 0" in captured.err


# -- the chain's check, on records made here --------------------------------------------


def chained(n: int, uid: str) -> bytes:
    out = b""
    previous = hashlib.sha256(uid.encode()).digest()[:CHAIN_BYTES]
    for i in range(n):
        rec = RECORD.pack(i, 1_800_000_000 + i, 0, BY_NAME["set_config"].msg_id, 0, 100,
                          i, i + 1, 1) + previous
        previous = hashlib.sha256(rec).digest()[:CHAIN_BYTES]
        out += rec
    return out


@given(n=st.integers(2, 12), at=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_flipped_bit_before_the_last_record_breaks_the_chain(n: int, at: int,
                                                                 bit: int) -> None:
    data = bytearray(chained(n, "e66038b71f2a1c2b"))
    assert verify(parse_records(bytes(data)), "e66038b71f2a1c2b", n) == []
    at %= (n - 1) * AUDIT_RECORD_BYTES
    data[at] ^= 1 << bit
    assert verify(parse_records(bytes(data)), "e66038b71f2a1c2b", n) != []


def test_a_log_from_another_board_does_not_chain_to_this_one() -> None:
    data = chained(3, "aaaa")
    assert verify(parse_records(data), "bbbb", 3) == [
        "record 0 does not chain to board bbbb: a log from another board, or record 0 "
        "changed"]


def test_a_removed_record_is_named() -> None:
    data = chained(4, "aaaa")
    gone = data[:AUDIT_RECORD_BYTES] + data[2 * AUDIT_RECORD_BYTES:]
    assert verify(parse_records(gone), "aaaa", 4)[0] == (
        "record 2 follows record 0: 1 missing or reordered")


def test_bytes_that_are_not_whole_records_are_refused() -> None:
    with pytest.raises(ValueError, match="whole number"):
        parse_records(b"\x00" * 33)
