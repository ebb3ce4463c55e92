"""Frame robustness on both sides of the serial link.

The host's ``decode_frame`` must turn every malformed frame into a ``FrameError``
(never another exception); the firmware's ``Link.feed`` must never raise, must count
what it drops, and must resynchronise on the next 0x00 delimiter. Where both see the
same bytes they must reach the same verdict.
"""

from __future__ import annotations

import binascii
import itertools
import struct

import pytest
from cobs import cobs
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cellguard.protocol import codec, messages
from cellguard_fw.link import Link

MAX_FRAME = messages.MAX_FRAME
MAX_WIRE_FRAME = messages.MAX_WIRE_FRAME
HEADER = codec.HEADER_SIZE

FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Received = tuple[int, int, int, bytes]


class FakePort:
    """A serial port: ``readinto`` hands out ``chunks`` one by one, ``write`` records."""

    def __init__(self, chunks: list[bytes] | None = None) -> None:
        self.chunks = list(chunks or [])
        self.writes: list[bytes] = []

    def readinto(self, buf: bytearray) -> int | None:
        if not self.chunks:
            return None
        chunk = self.chunks.pop(0)
        n = min(len(chunk), len(buf))
        buf[:n] = chunk[:n]
        if n < len(chunk):
            self.chunks.insert(0, chunk[n:])
        return n

    def write(self, buf: bytes | bytearray | memoryview) -> int:
        self.writes.append(bytes(buf))
        return len(buf)


class Receiver:
    """A firmware Link plus a handler that keeps a copy of every delivered frame."""

    def __init__(self) -> None:
        self.link = Link(FakePort())
        self.got: list[Received] = []

    def handler(self, version: int, msg_type: int, seq: int, start: int, end: int) -> None:
        self.got.append((version, msg_type, seq, bytes(self.link.frame[start:end])))

    def feed(self, stream: bytes, cuts: list[int] | None = None) -> list[Received]:
        bounds = [0, *sorted(set(cuts or [])), len(stream)]
        for a, b in itertools.pairwise(bounds):
            self.link.feed(stream[a:b], b - a, self.handler)
        return self.got

    @property
    def counts(self) -> tuple[int, int, int]:
        """(frames_ok, frames dropped as bad or oversize, crc_errors)"""
        link = self.link
        return link.frames_ok, link.frames_bad + link.oversize, link.crc_errors


def body_with_crc(body: bytes) -> bytes:
    return body + struct.pack("<L", binascii.crc32(body))


def raw_frame(version: int, msg_type: int, seq: int, length: int, payload: bytes) -> bytes:
    """COBS bytes (no delimiter) of a frame with a correct CRC and any length field."""
    header = struct.pack("<BBHB", version, msg_type, seq, length)
    return cobs.encode(body_with_crc(header + payload))


frames = st.tuples(
    st.integers(0, 0xFF), st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.binary(max_size=255)
)


def wire(frame: Received) -> bytes:
    version, msg_type, seq, payload = frame
    return codec.encode_frame(msg_type, seq, payload, version=version)


def zero_free(data: bytes) -> bytes:
    return data.replace(b"\x00", b"\x01")


# Frame-like bytes at every depth of the decoder: COBS garbage, valid COBS of random
# bodies, and bodies with a correct CRC but random header and length.
garbage = st.one_of(
    st.binary(max_size=600),
    st.binary(max_size=300).map(cobs.encode),
    st.binary(min_size=HEADER, max_size=280).map(body_with_crc).map(cobs.encode),
)


def host_verdict(encoded: bytes) -> codec.Frame | str:
    """Host result for a frame's bytes: the Frame, or the FrameError message."""
    try:
        return codec.decode_frame(encoded)
    except codec.FrameError as exc:
        return str(exc)


# -- host: decode_frame ----------------------------------------------------------------


@FAST
@given(data=garbage)
@example(data=b"")
@example(data=b"\x00")
@example(data=bytes([0xFF]) * 400)
def test_host_decode_frame_raises_only_frame_error(data: bytes) -> None:
    try:
        frame = codec.decode_frame(data)
    except codec.FrameError:
        return
    # Random bytes may (rarely) be a well-formed frame: then it must really be one.
    assert cobs.decode(wire((frame.version, frame.msg_type, frame.seq, frame.payload))[:-1]) == (
        cobs.decode(data)
    )


@FAST
@given(frame=frames, data=st.data())
def test_host_rejects_bit_flips(frame: Received, data: st.DataObject) -> None:
    encoded = wire(frame)[:-1]
    assert codec.decode_frame(encoded) == codec.Frame(*frame)
    bit = data.draw(st.integers(0, len(encoded) * 8 - 1), label="bit")
    flipped = bytearray(encoded)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(codec.FrameError):
        codec.decode_frame(bytes(flipped))


@FAST
@given(frame=frames, data=st.data())
def test_host_rejects_truncation(frame: Received, data: st.DataObject) -> None:
    encoded = wire(frame)[:-1]
    cut = data.draw(st.integers(0, len(encoded) - 1), label="cut")
    with pytest.raises(codec.FrameError):
        codec.decode_frame(encoded[:cut])


@FAST
@given(frame=frames, mask=st.integers(1, 0xFFFF_FFFF))
def test_host_rejects_bad_crc(frame: Received, mask: int) -> None:
    body = cobs.decode(wire(frame)[:-1])
    crc = struct.unpack("<L", body[-4:])[0] ^ mask
    with pytest.raises(codec.FrameError, match="CRC"):
        codec.decode_frame(cobs.encode(body[:-4] + struct.pack("<L", crc)))


@FAST
@given(frame=frames, length=st.integers(0, 0xFF))
def test_host_rejects_wrong_length_field(frame: Received, length: int) -> None:
    version, msg_type, seq, payload = frame
    encoded = raw_frame(version, msg_type, seq, length, payload)
    if length == len(payload):
        assert codec.decode_frame(encoded) == codec.Frame(*frame)
    else:
        with pytest.raises(codec.FrameError, match="length"):
            codec.decode_frame(encoded)


@FAST
@given(extra=st.integers(1, 300), fill=st.integers(0, 0xFF))
def test_host_rejects_oversize(extra: int, fill: int) -> None:
    payload = bytes([fill]) * (MAX_FRAME - HEADER - 4 + extra)
    with pytest.raises(codec.FrameError, match="exceeds"):
        codec.decode_frame(raw_frame(1, 0x10, 1, 0xFF, payload))


def test_host_rejects_short_frame() -> None:
    for n in range(HEADER + 4):
        with pytest.raises(codec.FrameError):
            codec.decode_frame(cobs.encode(bytes(range(1, n + 1))))


# -- firmware: Link.feed ------------------------------------------------------------


@FAST
@given(stream=st.binary(max_size=1500), data=st.data())
@example(stream=b"\x00" * 10, data=None)
@example(stream=b"\xff" * 1000 + b"\x00", data=None)
def test_firmware_feed_never_raises_and_counts_every_segment(
    stream: bytes, data: st.DataObject | None
) -> None:
    cuts = [] if data is None else data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    rx = Receiver()
    rx.feed(stream, cuts)
    ok, bad, crc = rx.counts
    # Every non-empty run of bytes closed by a delimiter is exactly one verdict.
    closed = stream.split(b"\x00")[:-1]
    assert ok + bad + crc == sum(1 for seg in closed if seg)
    assert len(rx.got) == ok
    assert rx.link.frame_len == min(len(stream.split(b"\x00")[-1]), MAX_WIRE_FRAME)


@FAST
@given(encoded=garbage.map(zero_free).filter(bool))
def test_host_and_firmware_agree_on_any_frame(encoded: bytes) -> None:
    """Same bytes, same verdict: accepted with the same fields, or rejected for the same
    reason (CRC errors and other bad frames are counted apart)."""
    verdict = host_verdict(encoded)
    rx = Receiver()
    rx.feed(encoded + b"\x00")
    if isinstance(verdict, codec.Frame):
        assert rx.got == [(verdict.version, verdict.msg_type, verdict.seq, verdict.payload)]
        assert rx.counts == (1, 0, 0)
    else:
        assert rx.got == []
        assert rx.counts == ((0, 0, 1) if "CRC" in verdict else (0, 1, 0)), verdict


@FAST
@given(frame=frames, data=st.data())
def test_firmware_drops_bit_flipped_frames(frame: Received, data: st.DataObject) -> None:
    encoded = wire(frame)[:-1]
    bit = data.draw(st.integers(0, len(encoded) * 8 - 1), label="bit")
    flipped = bytearray(encoded)
    flipped[bit // 8] ^= 1 << (bit % 8)
    rx = Receiver()
    rx.feed(bytes(flipped) + b"\x00" + wire(frame))
    ok, bad, crc = rx.counts
    assert rx.got == [frame], "only the intact copy is delivered"
    assert ok == 1
    # A flip that makes a 0x00 splits the damaged frame in two (or one empty part).
    expected_errors = sum(1 for seg in bytes(flipped).split(b"\x00") if seg)
    assert bad + crc == expected_errors >= 1


@FAST
@given(frame=frames, data=st.data())
def test_firmware_drops_truncated_frames(frame: Received, data: st.DataObject) -> None:
    encoded = wire(frame)[:-1]
    cut = data.draw(st.integers(1, len(encoded) - 1), label="cut")
    rx = Receiver()
    rx.feed(encoded[:cut] + b"\x00" + wire(frame))
    assert rx.got == [frame]
    assert rx.counts[0] == 1 and rx.counts[1] + rx.counts[2] == 1


@FAST
@given(frame=frames, mask=st.integers(1, 0xFFFF_FFFF))
def test_firmware_counts_crc_errors(frame: Received, mask: int) -> None:
    body = cobs.decode(wire(frame)[:-1])
    crc = struct.unpack("<L", body[-4:])[0] ^ mask
    rx = Receiver()
    rx.feed(cobs.encode(body[:-4] + struct.pack("<L", crc)) + b"\x00")
    assert rx.got == []
    assert rx.counts == (0, 0, 1)


@FAST
@given(garbage_bytes=st.binary(max_size=2000), frame=frames, data=st.data())
@example(garbage_bytes=b"\x01" * 2000, frame=(1, 2, 3, b"x"), data=None)
@example(garbage_bytes=b"", frame=(1, 2, 3, b""), data=None)
def test_valid_frame_after_garbage_is_received(
    garbage_bytes: bytes, frame: Received, data: st.DataObject | None
) -> None:
    stream = garbage_bytes + b"\x00" + wire(frame)
    cuts = [] if data is None else data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    rx = Receiver()
    rx.feed(stream, cuts)
    assert rx.got[-1:] == [frame]
    assert rx.link.frame_len == 0 and not rx.link.overflow


@pytest.mark.parametrize(
    "size",
    [MAX_WIRE_FRAME + 1, MAX_WIRE_FRAME + 2, 2 * MAX_WIRE_FRAME, 5000],
)
@pytest.mark.parametrize("chunk", [1, 64, 10_000])
def test_oversize_frame_is_dropped_and_counted(size: int, chunk: int) -> None:
    frame = (messages.PROTOCOL_MAJOR, 0x10, 0xBEEF, bytes(range(200)))
    stream = bytes([0x5A]) * size + b"\x00" + wire(frame)
    rx = Receiver()
    rx.feed(stream, list(range(chunk, len(stream), chunk)))
    assert rx.got == [frame]
    assert rx.counts == (1, 1, 0)
    assert rx.link.oversize == (1 if size > MAX_WIRE_FRAME else 0)
    assert not rx.link.overflow and rx.link.frame_len == 0


def test_oversize_frame_made_of_valid_frames_is_dropped() -> None:
    """Two frames whose delimiter was lost: too long together, so dropped."""
    frame = (1, 0x10, 7, bytes(range(1, 201)))
    encoded = wire(frame)[:-1]
    rx = Receiver()
    rx.feed(encoded + encoded + b"\x00" + wire(frame))
    assert len(encoded) * 2 > MAX_WIRE_FRAME
    assert rx.got == [frame]
    assert rx.counts == (1, 1, 0)


@pytest.mark.parametrize("fill", [0x00, 0x01, 0xFF])
def test_largest_frame_fits(fill: int) -> None:
    frame = (messages.PROTOCOL_MAJOR, 0x02, 0xFFFF, bytes([fill]) * messages.MAX_PAYLOAD)
    data = wire(frame)
    assert len(data) <= MAX_WIRE_FRAME
    assert codec.decode_frame(data[:-1]) == codec.Frame(*frame)
    rx = Receiver()
    assert rx.feed(data) == [frame]


def test_poll_reads_a_bounded_share_of_the_port_and_the_rest_at_the_next_call() -> None:
    sent = [(1, 0x01, n, bytes([n]) * (n * 20)) for n in range(5)]
    stream = b"noise\x00" + b"".join(wire(f) for f in sent)
    rx = Receiver()
    rx.link.port = FakePort([stream])  # all of it waiting at once: more than the 64-byte rx
    assert rx.link.poll(rx.handler) is True  # one read of 64 bytes a call: more waits
    assert len(rx.got) < len(sent)
    full_reads = 1
    while rx.link.poll(rx.handler):
        full_reads += 1
    assert full_reads == len(stream) // 64  # then one read of the rest, not full
    assert rx.got == sent
    assert rx.counts == (5, 1, 0)
    assert rx.link.port.chunks == []


class FloodPort(FakePort):
    """A host that never stops sending (requests, or noise): the port never runs dry."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data
        self.reads = 0

    def readinto(self, buf: bytearray) -> int | None:
        self.reads += 1
        if self.reads > 10_000:
            raise AssertionError("Link.poll never came back to the loop")
        n = min(len(buf), len(self.data))
        buf[:n] = self.data[:n]
        return n


@pytest.mark.parametrize("data", [b"\x00" + wire((1, 0x01, 7, b"")) * 20, bytes(range(1, 65))])
def test_a_host_that_never_stops_sending_cannot_hold_the_loop_in_poll(data: bytes) -> None:
    # The control loop feeds the watchdog and steps protection between polls: a host
    # flooding the port must not keep it inside one (the watchdog would reset the board,
    # and protection would not run meanwhile).
    rx = Receiver()
    rx.link.port = port = FloodPort(data)
    assert rx.link.poll(rx.handler) is True  # more waits ...
    assert port.reads == 1  # ... but one chunk, then back to the loop
