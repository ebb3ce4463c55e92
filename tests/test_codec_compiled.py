"""The host's fast decode path gives exactly what the interpreted one gives.

``codec.parse_payload`` parses with Construct's ``compile()``-d parser and a
converter derived from the message's Construct, falling back to the interpreted
strict parser for anything but a clean parse; ``decode_frame`` reads the header
with a ``struct`` format derived from ``FrameHeader``; ``FrameReader.feed`` splits
whole chunks at once; ``LogWriter.add`` queues rows for ``executemany``. Each is
checked here against the plain reference it replaces, for every message in
``messages.MESSAGES`` (whatever that holds): same values of the same types, same
errors with the same messages.
"""

from __future__ import annotations

import binascii
import random
import sqlite3
import struct
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from cobs import cobs
from construct import (
    Construct,
    ConstructError,
    FocusedSeq,
    GreedyBytes,
    Int8ul,
    Int16ul,
    PascalString,
    Pointer,
    Renamed,
    Struct,
    Terminated,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_protocol_codec import is_older_info, older_form

from cellguard.link.client import Info, Telemetry
from cellguard.link.framing import FrameReader, LinkStats
from cellguard.protocol import codec, messages
from cellguard.store import LogReader, LogWriter

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SPECS = list(messages.MESSAGES)
IDS = [spec.name for spec in SPECS]
BOARD_TO_HOST = [spec for spec in SPECS if spec.direction == "board->host"]


# -- references ------------------------------------------------------------------------


def typed(value: Any) -> Any:
    """``value`` with the exact type of every part, so "a" and EnumIntegerString differ."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [typed(v) for v in value])
    return (type(value).__name__, value)


def reference(spec: messages.MessageSpec, payload: bytes) -> Any:
    """What parse_payload returned before the fast path: interpreted parse, then plain()."""
    strict = FocusedSeq("message", "message" / spec.payload, Terminated)
    try:
        parsed = strict.parse(payload)
    except (ConstructError, UnicodeDecodeError) as exc:
        parsed = older_form(spec.name, payload)
        if parsed is None:
            return ("PayloadError", f"bad {spec.name} payload: {exc}")
        # an older board's INFO or STATS: the missing field empty (docs/protocol.md)
    return typed(codec.plain(parsed))


def host(spec: messages.MessageSpec, payload: bytes) -> Any:
    try:
        return typed(codec.parse_payload(spec.msg_id, payload))
    except codec.PayloadError as exc:
        return ("PayloadError", str(exc))


def parser(spec: messages.MessageSpec) -> tuple[Any, Any]:
    """The (compiled parser or None, converter) parse_payload uses for ``spec``."""
    return codec._PARSERS.get(spec.msg_id) or codec._parser_for(spec.msg_id)


def compiled_verdict(spec: messages.MessageSpec, payload: bytes) -> Any:
    """The compiled parser alone: its converted result when it accepts, else None."""
    fast, convert = parser(spec)
    assert fast is not None
    # A byte past the payload shows a parser that reads on, unless its last field
    # takes whatever comes.
    stream = BytesIO(payload if ends_greedy(spec) else payload + b"\x00")
    try:
        value = fast(stream, codec._CONTEXT)
    except Exception:
        return None
    if stream.tell() != len(payload):
        return None
    assert typed(convert(value)) == typed(codec.plain(value)), "converter differs from plain()"
    return typed(convert(value))


def valid_prefix(spec: messages.MessageSpec, data: bytes) -> bytes | None:
    """The part of ``data`` one payload of ``spec`` takes, if ``data`` starts with one."""
    stream = BytesIO(data)
    try:
        spec.payload.parse_stream(stream)
    except (ConstructError, UnicodeDecodeError):
        return None
    return data[: stream.tell()]


# Mostly small bytes: array counts stay small and strings stay valid UTF-8, so most
# draws start with a valid payload; sometimes any byte, for enum values off the map.
payload_bytes = st.lists(
    st.one_of(st.integers(0, 12), st.integers(0, 0xFF)), max_size=300
).map(bytes)


def check_agreement(spec: messages.MessageSpec, payload: bytes) -> None:
    want = reference(spec, payload)
    assert host(spec, payload) == want
    if parser(spec)[0] is not None:
        got = compiled_verdict(spec, payload)
        # The compiled parser may decline (the interpreted one then decides), but
        # what it accepts it must read exactly as the interpreted parser does.
        assert got is None or got == want


# -- payloads: compiled and interpreted agree ------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@FAST
@given(data=payload_bytes, cut=st.integers(0, 300), extra=st.binary(min_size=1, max_size=4))
@example(data=b"", cut=0, extra=b"\x00")
def test_parse_payload_agrees_with_interpreted_parse(
    spec: messages.MessageSpec, data: bytes, cut: int, extra: bytes
) -> None:
    check_agreement(spec, data)
    valid = valid_prefix(spec, data)
    if valid is None:
        return
    assert reference(spec, valid)[0] == "dict"
    for payload in (valid, valid[: min(cut, max(len(valid) - 1, 0))], valid + extra):
        check_agreement(spec, payload)


def _seeded_valid_payloads(spec: messages.MessageSpec, n: int) -> list[bytes]:
    rng = random.Random(f"cellguard-{spec.name}")
    found = []
    for _ in range(n):
        size = rng.randint(0, 300)
        data = bytes(rng.randint(0, 12) if rng.random() < 0.9 else rng.randint(0, 255)
                     for _ in range(size))
        valid = valid_prefix(spec, data)
        if valid is not None:
            found.append(valid)
    return found


def ends_greedy(spec: messages.MessageSpec) -> bool:
    """Whether the payload ends in GreedyBytes (AUTH's request, AUDIT's records)."""
    con = spec.payload.subcons[-1] if spec.payload.subcons else None
    while con is not None and isinstance(con, Renamed):
        con = con.subcon
    return con is GreedyBytes


def _rest_starts(spec: messages.MessageSpec, payload: bytes) -> int | None:
    """Where the last field starts in a payload that ends in GreedyBytes: any length
    from there on is valid. None for every other message."""
    if not ends_greedy(spec):
        return None
    return len(payload) - len(spec.payload.parse(payload)[spec.payload.subcons[-1].name])


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_seeded_sample_of_valid_payloads_agrees(spec: messages.MessageSpec) -> None:
    payloads = _seeded_valid_payloads(spec, 300)
    assert len(payloads) >= 30, "the sample should hold valid payloads of every message"
    rng = random.Random(spec.msg_id)
    for payload in payloads:
        check_agreement(spec, payload)
        rest = _rest_starts(spec, payload)
        n = len(payload)
        for cut in {0, n // 2, max(n - 1, 0), rng.randrange(n + 1)}:
            if cut < n:
                check_agreement(spec, payload[:cut])
                if (not is_older_info(spec.name, payload[:cut])  # a valid older INFO/STATS
                        and (rest is None or cut < rest)):  # a shorter request: valid
                    assert host(spec, payload[:cut])[0] == "PayloadError"
        check_agreement(spec, payload + b"\x00")
        if rest is None:  # else a longer request
            assert host(spec, payload + b"\x00")[0] == "PayloadError"


@pytest.mark.parametrize("spec", BOARD_TO_HOST, ids=[s.name for s in BOARD_TO_HOST])
def test_valid_payloads_take_the_compiled_path(spec: messages.MessageSpec) -> None:
    """What a board sends is parsed by the compiled parser, not by the fallback."""
    assert parser(spec)[0] is not None, f"{spec.name} is not compiled"
    for payload in _seeded_valid_payloads(spec, 60):
        assert compiled_verdict(spec, payload) == reference(spec, payload)


def test_telemetry_values_and_types() -> None:
    values = {"telemetry_seq": 7, "board_time_ms": 123_456, "state": "fault", "faults": 0x401,
              "warnings": 0x1000, "alarms": 0x180, "allowed": 2,
              "pack_mv": 59_000, "current_ma": -12_345, "soc_cpct": 4_321,
              "cells_mv": list(range(3600, 3616)), "temps_dc": list(range(-80, 80, 10))}
    payload = codec.build_payload("telemetry", values)
    got = codec.parse_payload(messages.BY_NAME["telemetry"].msg_id, payload)
    assert typed(got) == typed(values)
    unknown_state = bytearray(payload)
    unknown_state[8] = 200  # the state byte: not in the enum, an int comes back
    got = codec.parse_payload(messages.BY_NAME["telemetry"].msg_id, bytes(unknown_state))
    assert got["state"] == 200 and isinstance(got["state"], int)


def test_unknown_message_type() -> None:
    unknown = next(t for t in range(256) if t not in messages.BY_ID)
    with pytest.raises(codec.PayloadError, match="unknown message type"):
        codec.parse_payload(unknown, b"")


# -- payloads: the fallbacks -----------------------------------------------------------


@pytest.fixture
def fresh_parsers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsers are made again on first use, and thrown away after the test."""
    monkeypatch.setattr(codec, "_PARSERS", {})


def test_a_message_that_does_not_compile_is_interpreted(
    monkeypatch: pytest.MonkeyPatch, fresh_parsers: None
) -> None:
    def refuse(self: Construct, filename: str | None = None) -> Construct:
        raise NotImplementedError("no compiled form")

    monkeypatch.setattr(Construct, "compile", refuse)
    for spec in SPECS:
        assert parser(spec)[0] is None
        for payload in _seeded_valid_payloads(spec, 20):
            assert host(spec, payload) == reference(spec, payload)
            assert host(spec, payload + b"\x01") == reference(spec, payload + b"\x01")


def _fake_message(monkeypatch: pytest.MonkeyPatch, payload: Struct) -> messages.MessageSpec:
    msg_id = next(t for t in range(256) if t not in messages.BY_ID)
    spec = messages.MessageSpec(msg_id, "fake", payload, "board->host", "a test message")
    monkeypatch.setitem(codec.BY_ID, msg_id, spec)
    strict = FocusedSeq("message", "message" / payload, Terminated)
    monkeypatch.setitem(codec._STRICT, msg_id, strict)
    return spec


def test_a_compiled_short_read_is_not_taken(
    monkeypatch: pytest.MonkeyPatch, fresh_parsers: None
) -> None:
    """Compiled, a PascalString returns what is there instead of failing on a short
    read; the pad byte makes such a payload fall back to the interpreted verdict."""
    spec = _fake_message(monkeypatch, Struct("n" / Int8ul, "text" / PascalString(Int8ul, "utf8")))
    truncated = b"\x01\x05ab"  # says 5 bytes of text, holds 2
    assert spec.payload.compile().parse(truncated).text == "ab"  # what compile() alone does
    assert parser(spec)[0] is not None
    assert host(spec, truncated) == reference(spec, truncated)
    assert host(spec, truncated)[0] == "PayloadError"
    assert codec.parse_payload(spec.msg_id, b"\x01\x02ab") == {"n": 1, "text": "ab"}


def test_a_seeking_construct_is_interpreted(
    monkeypatch: pytest.MonkeyPatch, fresh_parsers: None
) -> None:
    spec = _fake_message(monkeypatch, Struct("a" / Int8ul, "peek" / Pointer(0, Int16ul)))
    assert parser(spec)[0] is None
    assert host(spec, b"\x01") == reference(spec, b"\x01")
    assert host(spec, b"\x01\x02") == reference(spec, b"\x01\x02")


# -- frames ----------------------------------------------------------------------------


@FAST
@given(data=st.binary(min_size=codec.HEADER_SIZE, max_size=codec.HEADER_SIZE + 8))
def test_header_and_crc_formats_match_construct(data: bytes) -> None:
    header = messages.FrameHeader.parse(data)
    assert codec._HEADER.unpack_from(data) == tuple(
        header[sc.name] for sc in messages.FrameHeader.subcons
    )
    assert codec._CRC.unpack_from(data)[0] == messages.FrameCrc.parse(data).crc32
    assert codec._HEADER.size == codec.HEADER_SIZE and codec._CRC.size == codec.CRC_SIZE


def construct_encode_frame(msg_type: int, seq: int, payload: bytes, version: int) -> bytes:
    """encode_frame as it was: the header and the CRC built by their Constructs."""
    body = messages.FrameHeader.build({"version": version, "msg_type": msg_type,
                                       "seq": seq & 0xFFFF, "length": len(payload)}) + payload
    body += messages.FrameCrc.build({"crc32": binascii.crc32(body)})
    return cobs.encode(body) + b"\x00"


@FAST
@given(msg_type=st.integers(0, 255), seq=st.integers(-(1 << 20), 1 << 20),
       version=st.integers(0, 255), payload=st.binary(max_size=codec.MAX_PAYLOAD))
def test_encode_frame_builds_what_the_constructs_build(msg_type: int, seq: int, version: int,
                                                       payload: bytes) -> None:
    assert codec.encode_frame(msg_type, seq, payload, version) == construct_encode_frame(
        msg_type, seq, payload, version)


@pytest.mark.parametrize(("msg_type", "version"), [(256, 1), (-1, 1), (1, 256), (1, -1)])
def test_encode_frame_refuses_a_header_field_out_of_range_as_the_construct_does(
        msg_type: int, version: int) -> None:
    with pytest.raises(ConstructError) as fast:
        codec.encode_frame(msg_type, 1, b"", version)
    with pytest.raises(ConstructError) as built:
        construct_encode_frame(msg_type, 1, b"", version)
    assert (type(fast.value), str(fast.value)) == (type(built.value), str(built.value))


def test_struct_format_refuses_what_it_cannot_express() -> None:
    assert codec._struct_format(messages.FrameHeader) == "<BBHB"
    with pytest.raises(ValueError):
        codec._struct_format(Struct("text" / PascalString(Int8ul, "utf8")))


# -- FrameReader: the same frames and counts as the byte-by-byte original ---------------


class OriginalReader:
    """FrameReader as it was before it split whole chunks: the reference."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False
        self._joined = False  # (the first part that fails: a frame's tail, as since)
        self.stats = LinkStats()

    def feed(self, data: bytes) -> list[codec.Frame]:
        frames: list[codec.Frame] = []
        start = 0
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                self._append(data[start:])
                return frames
            self._append(data[start:end])
            if self._discarding:
                self.stats.oversize += 1
            elif self._buf:
                first, self._joined = not self._joined, True
                try:
                    frames.append(codec.decode_frame(bytes(self._buf)))
                    self.stats.frames += 1
                except codec.FrameError as exc:
                    if first:
                        self.stats.joined_mid_frame += 1
                    elif "CRC" in str(exc):
                        self.stats.crc_errors += 1
                    else:
                        self.stats.bad_frames += 1
            self._buf.clear()
            self._discarding = False
            start = end + 1

    def _append(self, part: bytes) -> None:
        if self._discarding or not part:
            return
        if len(self._buf) + len(part) > messages.MAX_WIRE_FRAME:
            self._buf.clear()
            self._discarding = True
        else:
            self._buf += part


_frame = st.tuples(
    st.integers(0, 0xFF), st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.binary(max_size=255)
).map(lambda f: codec.encode_frame(f[1], f[2], f[3], version=f[0]))
_noise = st.one_of(
    st.binary(max_size=40),
    st.integers(messages.MAX_WIRE_FRAME - 2, messages.MAX_WIRE_FRAME + 300).map(
        lambda n: b"\x5a" * n
    ),
    _frame.map(lambda f: f[:-1]),  # a frame whose delimiter was lost
    _frame.map(lambda f: bytes([f[0] ^ 0x40]) + f[1:]),  # damaged
)


@FAST
@given(parts=st.lists(st.one_of(_frame, _noise), max_size=12), data=st.data())
def test_frame_reader_matches_the_original(parts: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(parts)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=10))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    new, old = FrameReader(), OriginalReader()
    for chunk in chunks:
        kind = data.draw(st.sampled_from([bytes, bytearray]))
        assert new.feed(kind(chunk)) == old.feed(chunk)
        assert new.stats == old.stats
        assert (bytes(new._buf), new._discarding) == (bytes(old._buf), old._discarding)


# -- LogWriter: queued rows ------------------------------------------------------------

INFO = Info(protocol="1.0", firmware_version="0.1.0", board="sim-4s", unique_id="abcd",
            chemistry="nmc", cell_count=2, temp_count=1, capacity_ah=3.0,
            control_period_s=0.1, telemetry_period_s=1.0, cell_ov_v=4.25, cell_uv_v=2.8,
            temp_max_c=60.0, temp_min_c=-20.0, charge_current_max_a=6.0,
            discharge_current_max_a=15.0)


def tele(seq: int) -> Telemetry:
    return Telemetry.from_wire({
        "telemetry_seq": seq, "board_time_ms": seq * 100, "state": "active", "faults": 0,
        "warnings": 0, "alarms": 0, "allowed": 3, "pack_mv": 7400, "current_ma": seq,
        "soc_cpct": 5000,
        "cells_mv": [3700, 3700 + seq % 9],
        "temps_dc": [-seq % 300],
    })


def count(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0])


def test_log_rows_are_stored_at_every_commit_and_on_close(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    w = LogWriter(path, commit_interval_s=3600)
    board = w.add_board(INFO)
    seqs = [s for s in range(1500) if s % 97]  # gaps too
    for s in seqs[:1000]:
        w.add(board, tele(s), host_time=1.0)
    assert count(path) == 0  # nothing committed yet
    w.commit()
    assert count(path) == 1000
    for s in seqs[1000:]:
        w.add(board, tele(s), host_time=1.0)
    w.close()
    with LogReader(path) as r:
        stored = list(r.samples())
        assert r.lost() == 1500 - len(seqs) - 1  # seq 0 is skipped but is before the first
    assert [s.seq for s in stored] == seqs
    assert [s.current_a for s in stored] == [s / 1000 for s in seqs]
    assert [s.cells_v[1] for s in stored] == [(3700 + s % 9) / 1000 for s in seqs]
    assert [s.temps_c for s in stored] == [[(-s % 300) / 10] for s in seqs]


def test_log_commit_interval_zero_commits_every_sample(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    w = LogWriter(path, commit_interval_s=0.0)
    board = w.add_board(INFO)
    for s in range(5):
        w.add(board, tele(s))
        assert count(path) == s + 1
    w.close()


def test_log_rows_pack_like_struct(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    w = LogWriter(path)
    board = w.add_board(INFO)
    w.add(board, tele(5), host_time=2.0)
    w.close()
    with sqlite3.connect(path) as db:
        cells, temps = db.execute("SELECT cells_mv, temps_dc FROM telemetry").fetchone()
    assert cells == struct.pack("<2H", 3700, 3705) and temps == struct.pack("<h", 295)


def test_a_port_opened_inside_a_frame_is_its_tail_not_a_link_error() -> None:
    # A board streams whether or not a host has its port: a host that opens it
    # halfway through a frame reads that frame's tail first.
    one = codec.encode_frame(7, 1, b"first frame's payload")
    two = codec.encode_frame(7, 2, b"second")
    damaged = bytes([two[0] ^ 0x40]) + two[1:]
    reader = FrameReader()
    assert [f.seq for f in reader.feed(one[9:] + two + damaged)] == [2]
    assert (reader.stats.joined_mid_frame, reader.stats.crc_errors + reader.stats.bad_frames,
            reader.stats.frames) == (1, 1, 1)  # the later damage is an error all the same
    # Opened between two frames: nothing is lost, nothing counted.
    clean = FrameReader()
    assert [f.seq for f in clean.feed(one + two)] == [1, 2]
    assert (clean.stats.joined_mid_frame, clean.stats.crc_errors) == (0, 0)
    # A reconnection (reset) may come in inside a frame again.
    reader.reset()
    reader.feed(one[5:] + one)
    assert reader.stats.joined_mid_frame == 2 and reader.stats.frames == 2
