"""The serial link under abuse: garbage on the line, a host that leaves in the
middle of a frame and comes back, a host that is away while the board has to
protect the pack."""

from __future__ import annotations

import itertools
import random
import time

import cobs.cobs as cobs

from cellguard.hil import BoardLimits, HilClient, Rig
from cellguard.link.client import FAULT_BITS, Telemetry
from cellguard.protocol.codec import encode_frame
from cellguard.protocol.messages import BY_NAME, MAX_WIRE_FRAME

UNSOLICITED = ("telemetry", "fault_event")


def _consecutive(samples: list[Telemetry]) -> bool:
    seqs = [t.seq for t in samples]
    return seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def _garbage(seed: int = 5) -> list[bytes]:
    rnd = random.Random(seed)
    hello = encode_frame(BY_NAME["hello"].msg_id, 0x4242, b"\x01\x00")
    body = bytearray(cobs.decode(hello[:-1]))
    body[-1] ^= 0xFF  # the CRC no longer matches
    return [
        bytes(rnd.randrange(256) for _ in range(300)),  # line noise, zeros and all
        b"\x00" + cobs.encode(bytes(body)) + b"\x00",  # a frame with a bad CRC
        b"\x55" * (2 * MAX_WIRE_FRAME) + b"\x00",  # longer than any frame
        hello[: len(hello) // 2] + b"\x00",  # a frame cut short
        b"\x00\x00\x00",
    ]


def test_link_recovers_from_garbage(client: HilClient) -> None:
    before = client.stats()
    mark = client.mark()
    for chunk in _garbage():
        client.serial.write(chunk)
    info = client.hello()  # answered at once: the board resynchronised at a delimiter
    assert info.board
    client.run(3.0)
    after = client.stats()
    assert after["crc_errors"] > before["crc_errors"]
    assert after["oversize"] > before["oversize"]
    assert after["frames_bad"] > before["frames_bad"]
    assert after["frames_ok"] == before["frames_ok"] + 2  # HELLO and this GET_STATS
    samples = client.telemetry_since(mark)
    assert len(samples) >= 3 and _consecutive(samples), "the board's output was disturbed"
    assert client.reader.stats.crc_errors == client.reader.stats.bad_frames == 0


def test_link_recovers_from_a_host_that_leaves_mid_frame(client: HilClient, rig: Rig) -> None:
    client.run(3.0)
    last = client.last
    assert last is not None
    last_frame_seq = [m.frame.seq for m in client.log if m.name in UNSOLICITED][-1]
    # Leave in the middle of a frame; the host keeps the half it read. The next
    # frame comes a telemetry period of board time later: wait for it in board
    # time's wall budget, not one read's timeout.
    deadline = time.monotonic() + client.wall_budget_s(3.0)
    tail = head = b""
    while not tail.endswith(b"\x00"):  # to the end of a frame ...
        assert time.monotonic() < deadline, "the board fell silent"
        tail += client.serial.read(1)
    while len(head) < 3:  # ... and into the next (COBS bytes are never 0)
        assert time.monotonic() < deadline, "the board fell silent"
        head += client.serial.read(3 - len(head))
    assert 0 not in head
    client.reader.feed(tail)
    client.reader.feed(head)
    client.disconnect()
    rig.wait(5.0)  # the board goes on sending to nobody
    stats = client.reader.stats
    bad_before = stats.bad_frames + stats.crc_errors
    mark = client.mark()
    client.reconnect(keep_reader=True)  # stale bytes flushed, as BoardClient does
    client.run(10.0)
    # The half frame ends in the first bytes that arrive: one frame dropped, then sync.
    assert stats.bad_frames + stats.crc_errors - bad_before <= 1
    samples = client.telemetry_since(mark)
    assert len(samples) >= 9
    assert samples[0].seq > last.seq, "the board's telemetry counter went on"
    assert _consecutive(samples), [t.seq for t in samples]
    # Frames the board sends unasked are numbered by its own counter (answers carry
    # the request's number).
    frame_seqs = [m.frame.seq for m in client.since(mark) if m.name in UNSOLICITED]
    assert 0 < (frame_seqs[0] - last_frame_seq) % 65536 < 32768, "frame numbers go on"
    assert all(0 < (b - a) % 65536 < 32768 for a, b in itertools.pairwise(frame_seqs))
    assert client.hello().board  # requests work as ever


def test_board_keeps_protecting_while_the_host_is_away(client: HilClient, rig: Rig,
                                                       limits: BoardLimits) -> None:
    spec = limits.protections["overtemperature"]
    first = client.event_total()
    client.run(2.0)
    assert client.last is not None
    left_at_s = client.last.board_time_s
    client.disconnect()
    # 3 degC past the firmware's trip: inside the margin of a monitor chip's own
    # over-temperature (5 degC beyond), which would trip too on a hotter cell
    rig.set_cell_temperature(0, spec.trip / 10 + 3)
    rig.wait(spec.trip_within_s + 1)
    rig.set_cell_temperature(0, None)
    rig.wait(spec.release_within_s + 1)
    mark = client.mark()
    client.reconnect()
    back = client.next_telemetry(mark)
    events = [e for e in client.events_from(first) if e.code & spec.bit]
    assert [e.kind for e in events] == ["trip", "release"], events
    assert left_at_s < events[0].board_time_s < back.board_time_s, "tripped while away"
    assert back.state == "fault" and back.faults & spec.bit, "and latched"
    assert client.fault_state()["latched"] == [spec.name]
    if rig.observes:
        assert not rig.truth().output_closed
    client.clear_faults()
    client.wait_telemetry("the output closed again", lambda t: t.state == "active", 5.0)


def test_host_timeout_policy_opens_the_output_while_the_host_is_silent(
        client: HilClient, rig: Rig) -> None:
    """A board may choose to open its output when the host falls silent; any frame
    from the host releases it, and it never latches."""
    timeout = client.get_config("host_timeout_ms")
    silence_ms = max(timeout.min, 30000)  # long against the host's own pauses
    client.set_config("host_timeout_ms", silence_ms)
    first = client.event_total()
    client.disconnect()
    rig.wait(2 * silence_ms / 1000)
    if rig.observes:
        assert not rig.truth().output_closed
    mark = client.mark()
    client.reconnect()  # HELLO is a frame: it releases the output
    client.set_config("host_timeout_ms", timeout.value)
    client.wait_event("release", "host_lost", 2.0, mark)
    client.wait_telemetry("the output closed again", lambda t: t.state == "active", 5.0, mark)
    bit = FAULT_BITS["host_lost"]
    events = [e for e in client.events_from(first) if e.code & bit]
    assert [e.kind for e in events] == ["trip", "release"], events
    assert events[0].value >= silence_ms
    assert client.fault_state()["latched"] == [], "a policy, not a fault: never latches"
