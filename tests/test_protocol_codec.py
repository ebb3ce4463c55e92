"""The firmware codec (generated ``struct`` code) and the host codec (Construct) agree.

Strategies are derived from the Construct definitions in ``protocol/messages.py``
through the generator's own ``describe()``, so a new message or field is covered
without touching this file. Encoders are compared byte for byte, decoders value for
value, whole frames wire byte for wire byte; a deterministic sample is re-run under
the real MicroPython (WebAssembly port) to catch CPython-only behaviour.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cobs import cobs
from construct import Container, Enum, FlagsEnum, Renamed, Terminated
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cellguard.protocol import codec, messages
from cellguard.sim.runtime import MicroPythonRuntime
from cellguard_fw import codec as fw_codec
from cellguard_fw import codec_mirror as fw_mirror
from cellguard_fw import codec_rare as fw_rare
from cellguard_fw.link import PAYLOAD_AT, Link, cobs_decode, cobs_encode

ROOT = Path(__file__).resolve().parents[1]
MAX_PAYLOAD = messages.MAX_PAYLOAD
MAX_ARRAY_ITEMS = 16

FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_generator() -> ModuleType:
    """Import tools/gen_protocol.py from the repository (it is not a package)."""
    name = "cellguard_tools_gen_protocol"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "gen_protocol.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gen = load_generator()

_INT_RANGES = {
    "B": (0, 0xFF),
    "b": (-0x80, 0x7F),
    "H": (0, 0xFFFF),
    "h": (-0x8000, 0x7FFF),
    "L": (0, 0xFFFF_FFFF),
    "l": (-0x8000_0000, 0x7FFF_FFFF),
}
_SIZES: dict[str, int] = gen._SIZES


# -- a model of every payload field, from the Construct definitions -----------------


@dataclass
class FieldModel:
    name: str
    kind: str  # "int", "enum", "flags", "str", "array", "bytes" (fixed) or "rest"
    fmt: str  # struct char of the value, the string's length prefix or the array item
    count_fmt: str = ""
    length: int = 0  # a "bytes" field's length
    names: dict[int, str] = field(default_factory=dict)  # enum value -> member name
    bits: dict[str, int] = field(default_factory=dict)  # flag name -> bit


def firmware_function(name: str) -> Callable[..., Any]:
    """A generated codec function: the board's own (codec, or codec_rare for a rare
    request's decoder) or the test-only other direction (codec_mirror); each exists
    in exactly one of them."""
    found = [f for f in (getattr(m, name, None) for m in (fw_codec, fw_rare, fw_mirror))
             if f is not None]
    assert len(found) == 1, f"{name} must be in exactly one module"
    return found[0]  # type: ignore[no-any-return]


@dataclass
class MessageModel:
    spec: messages.MessageSpec
    fields: list[FieldModel]

    @property
    def fixed_size(self) -> int:
        """Bytes taken whatever the values: integer and fixed-length bytes fields, and
        length prefixes."""
        return sum(f.length if f.kind in ("bytes", "rest") else _SIZES[f.count_fmt or f.fmt]
                   for f in self.fields)

    def encoder(self) -> Callable[..., int]:
        return firmware_function(f"encode_{self.spec.name}")

    def decoder(self) -> Callable[..., tuple[Any, ...]]:
        return firmware_function(gen.decoder_name(self.spec))


def _construct_of(struct: Any, name: str) -> Any:
    for sub in struct.subcons:
        if sub.name == name:
            con = sub.subcon
            while isinstance(con, Renamed):
                con = con.subcon
            return con
    raise KeyError(name)


def message_model(spec: messages.MessageSpec) -> MessageModel:
    fields = []
    for f in gen.describe(spec.payload):
        con = _construct_of(spec.payload, f.name)
        model = FieldModel(f.name, f.kind, f.fmt, f.count_fmt, length=f.length)
        if isinstance(con, Enum):
            model.kind = "enum"
            model.names = {int(v): str(k) for k, v in con.encmapping.items()}
        elif isinstance(con, FlagsEnum):
            model.kind = "flags"
            model.bits = {str(k): int(v) for k, v in con.flags.items()}
        fields.append(model)
    return MessageModel(spec, fields)


MODELS = [message_model(spec) for spec in messages.MESSAGES]
MODEL_IDS = [m.spec.name for m in MODELS]


def payload_size(model: MessageModel, values: dict[str, Any]) -> int:
    size = model.fixed_size
    for f in model.fields:
        if f.kind == "str":
            size += len(values[f.name].encode("utf-8"))
        elif f.kind == "rest":
            size += len(values[f.name])
        elif f.kind == "array":
            size += _SIZES[f.fmt] * len(values[f.name])
    return size


def _fit_utf8(text: str, limit: int) -> str:
    """Drop characters from the end until the UTF-8 encoding is at most ``limit`` bytes."""
    while len(text.encode("utf-8")) > limit:
        text = text[:-1]
    return text


@st.composite
def _values(draw: st.DrawFn, model: MessageModel) -> dict[str, Any]:
    budget = MAX_PAYLOAD - model.fixed_size  # bytes left for strings and array items
    values: dict[str, Any] = {}
    for f in model.fields:
        if f.kind == "int":
            values[f.name] = draw(st.integers(*_INT_RANGES[f.fmt]))
        elif f.kind == "enum":
            values[f.name] = draw(st.sampled_from(sorted(f.names)))
        elif f.kind == "flags":
            chosen = draw(st.sets(st.sampled_from(sorted(f.bits.values()))))
            values[f.name] = sum(chosen)
        elif f.kind == "str":
            limit = min(budget, _INT_RANGES[f.fmt][1])
            text = _fit_utf8(draw(st.text(max_size=limit)), limit)
            values[f.name] = text
            budget -= len(text.encode("utf-8"))
        elif f.kind == "bytes":
            values[f.name] = draw(st.binary(min_size=f.length, max_size=f.length))
        elif f.kind == "rest":
            values[f.name] = draw(st.binary(max_size=budget))
            budget -= len(values[f.name])
        else:
            size = _SIZES[f.fmt]
            most = min(MAX_ARRAY_ITEMS, budget // size, _INT_RANGES[f.count_fmt][1])
            items = draw(st.lists(st.integers(*_INT_RANGES[f.fmt]), max_size=most))
            values[f.name] = items
            budget -= size * len(items)
    assert payload_size(model, values) <= MAX_PAYLOAD
    return values


def values_for(model: MessageModel) -> st.SearchStrategy[dict[str, Any]]:
    return _values(model)


def any_message() -> st.SearchStrategy[tuple[MessageModel, dict[str, Any]]]:
    return st.sampled_from(MODELS).flatmap(lambda m: st.tuples(st.just(m), values_for(m)))


_SAMPLE_CHARS = "abcXYZ019 -_.~é€ßΩ中😀\x00\n'\"\\"


def random_values(model: MessageModel, rng: random.Random) -> dict[str, Any]:
    """The same shape of values as the hypothesis strategy, from a seeded random."""
    budget = MAX_PAYLOAD - model.fixed_size
    values: dict[str, Any] = {}
    for f in model.fields:
        if f.kind == "int":
            lo, hi = _INT_RANGES[f.fmt]
            values[f.name] = rng.choice([lo, hi, 0 if lo < 0 else 1, rng.randint(lo, hi)])
        elif f.kind == "enum":
            values[f.name] = rng.choice(sorted(f.names))
        elif f.kind == "flags":
            values[f.name] = sum(b for b in f.bits.values() if rng.random() < 0.5)
        elif f.kind == "str":
            limit = min(budget, _INT_RANGES[f.fmt][1], rng.choice([0, 8, 40, 120]))
            text = "".join(rng.choice(_SAMPLE_CHARS) for _ in range(limit))
            values[f.name] = text = _fit_utf8(text, limit)
            budget -= len(text.encode("utf-8"))
        elif f.kind == "bytes":
            values[f.name] = rng.randbytes(f.length)
        elif f.kind == "rest":
            values[f.name] = rng.randbytes(rng.randint(0, min(budget, 40)))
            budget -= len(values[f.name])
        else:
            lo, hi = _INT_RANGES[f.fmt]
            most = min(MAX_ARRAY_ITEMS, budget // _SIZES[f.fmt])
            values[f.name] = [rng.randint(lo, hi) for _ in range(rng.randint(0, most))]
            budget -= _SIZES[f.fmt] * len(values[f.name])
    return values


# -- conversions between the three views of one payload -----------------------------


def firmware_args(model: MessageModel, values: dict[str, Any]) -> list[Any]:
    """Arguments of ``encode_<name>``: strings go in as UTF-8 bytes, as app.py does."""
    return [
        values[f.name].encode("utf-8") if f.kind == "str" else values[f.name] for f in model.fields
    ]


def firmware_expected(model: MessageModel, values: dict[str, Any]) -> tuple[Any, ...]:
    """What ``decode_<name>`` returns: fields in order, enums and flags as ints."""
    return tuple(values[f.name] for f in model.fields)


def from_construct(model: MessageModel, parsed: Container) -> dict[str, Any]:
    """Construct's parse result as plain values (enums and flags as ints)."""
    out: dict[str, Any] = {}
    for f in model.fields:
        value = parsed[f.name]
        if f.kind == "enum":
            value = int(value)
        elif f.kind == "flags":
            value = sum(bit for name, bit in f.bits.items() if value[name])
        elif f.kind == "array":
            value = list(value)
        out[f.name] = value
    return out


def host_expected(model: MessageModel, values: dict[str, Any]) -> dict[str, Any]:
    """What ``codec.parse_payload`` returns: enums as member names, flags as ints."""
    return {
        f.name: f.names[values[f.name]] if f.kind == "enum" else values[f.name]
        for f in model.fields
    }


def firmware_encode(model: MessageModel, values: dict[str, Any], off: int = 0) -> bytes:
    """Encode with the firmware at ``off`` of a poisoned buffer; check nothing else moved."""
    fill = 0xA5
    buf = bytearray([fill]) * (off + MAX_PAYLOAD + 16)
    end = model.encoder()(buf, off, *firmware_args(model, values))
    assert off <= end <= off + MAX_PAYLOAD
    assert buf[:off] == bytearray([fill]) * off, "encoder wrote before its offset"
    assert buf[end:] == bytearray([fill]) * (len(buf) - end), "encoder wrote past its end"
    return bytes(buf[off:end])


def test_every_message_has_a_firmware_codec() -> None:
    assert [m.spec.name for m in MODELS] == [s.name for s in messages.MESSAGES]
    for model in MODELS:
        assert callable(model.encoder()) and callable(model.decoder())
        assert getattr(fw_codec, f"MSG_{model.spec.name.upper()}") == model.spec.msg_id
    kinds = {f.kind for m in MODELS for f in m.fields}
    # Every field is of a kind the strategies know how to draw.
    assert kinds <= {"int", "enum", "flags", "str", "array", "bytes", "rest"}
    assert {"int", "enum", "str", "array", "bytes", "rest"} <= kinds


# -- (a), (b): payloads, field by field ----------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=MODEL_IDS)
@FAST
@given(data=st.data(), off=st.integers(0, 8))
def test_firmware_encode_equals_construct_build(
    model: MessageModel, data: st.DataObject, off: int
) -> None:
    values = data.draw(values_for(model))
    built = model.spec.payload.build(values)
    assert len(built) == payload_size(model, values) <= MAX_PAYLOAD
    assert firmware_encode(model, values, off) == built
    assert codec.build_payload(model.spec.name, values) == built
    assert from_construct(model, model.spec.payload.parse(built)) == values
    assert codec.parse_payload(model.spec.msg_id, built) == host_expected(model, values)


@pytest.mark.parametrize("model", MODELS, ids=MODEL_IDS)
@FAST
@given(data=st.data(), off=st.integers(0, 8))
def test_construct_build_decodes_in_firmware(
    model: MessageModel, data: st.DataObject, off: int
) -> None:
    values = data.draw(values_for(model))
    built = model.spec.payload.build(values)
    buf = bytes(off) + built + b"\xee" * 3  # the decoder must honour off and end
    assert model.decoder()(buf, off, off + len(built)) == firmware_expected(model, values)


def test_largest_info_payload_round_trips() -> None:
    """A payload of exactly MAX_PAYLOAD bytes, multi-byte characters included."""
    model = next(m for m in MODELS if m.spec.name == "info")
    values = random_values(model, random.Random(7))
    values.update(firmware_version="€" * 30, board="ß" * 45)  # 90 + 90 bytes
    values["known_types"] = [1, 2, 16]
    values["boot"] = [2, *range(32)]  # status and a SHA-256
    values["unique_id"] = "u" * (MAX_PAYLOAD - model.fixed_size - 90 - 90 - 3 - 33)
    assert len(values["unique_id"]) > 0
    assert payload_size(model, values) == MAX_PAYLOAD
    built = model.spec.payload.build(values)
    assert firmware_encode(model, values) == built
    assert model.decoder()(built, 0, len(built)) == firmware_expected(model, values)
    wire = codec.encode_frame(model.spec.msg_id, 9, built)
    assert firmware_send(model.spec.msg_id, 9, built) == wire
    assert len(wire) <= messages.MAX_WIRE_FRAME


# -- (c): whole frames ---------------------------------------------------------------


class FakePort:
    """A serial port that records what the firmware writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, buf: bytes | bytearray | memoryview) -> int:
        self.writes.append(bytes(buf))
        return len(buf)

    def readinto(self, buf: bytearray) -> int | None:
        return None


Received = tuple[int, int, int, bytes]


def feed_chunks(link: Link, stream: bytes, cuts: list[int]) -> list[Received]:
    """Feed ``stream`` to ``link`` split at ``cuts``; return what the handler saw.

    Each chunk sits at the start of a larger buffer full of junk, as in ``poll``,
    so ``feed`` must respect its ``n`` argument.
    """
    got: list[Received] = []

    def handler(version: int, msg_type: int, seq: int, start: int, end: int) -> None:
        got.append((version, msg_type, seq, bytes(link.frame[start:end])))

    bounds = [0, *sorted(set(cuts)), len(stream)]
    for a, b in itertools.pairwise(bounds):
        chunk = bytearray(stream[a:b]) + b"\x00\x01\x02\xff" * 4
        link.feed(chunk, b - a, handler)
    return got


def firmware_send(msg_type: int, seq: int, payload: bytes) -> bytes:
    link = Link(FakePort())
    end = PAYLOAD_AT + len(payload)
    link.payload_buffer()[PAYLOAD_AT:end] = payload
    link.send(msg_type, seq, end)
    assert link.tx_frames == 1
    writes = link.port.writes
    assert len(writes) == 1
    return writes[0]


def _zero_free_seq(msg_type: int, payload: bytes) -> int:
    """A sequence number for which the whole frame body has no zero byte."""
    for seq in range(0x0101, 0xFFFF):
        if 0 not in cobs.decode(codec.encode_frame(msg_type, seq, payload)[:-1]):
            return seq
    raise AssertionError("no zero-free sequence number")


# A body of exactly 254 non-zero bytes: COBS encodes it as one 0xFF block and nothing
# after it (a trailing 0x01 code would decode the same but differ on the wire).
_RUN_254 = bytes([0x5A]) * (254 - messages.FRAME_OVERHEAD)
_RUN_254_SEQ = _zero_free_seq(0x02, _RUN_254)


@FAST
@given(msg=any_message(), seq=st.integers(0, 0x1FFFF))
def test_firmware_send_equals_host_encode_frame(
    msg: tuple[MessageModel, dict[str, Any]], seq: int
) -> None:
    model, values = msg
    link = Link(FakePort())
    end = model.encoder()(link.payload_buffer(), PAYLOAD_AT, *firmware_args(model, values))
    link.send(model.spec.msg_id, seq, end)
    payload = model.spec.payload.build(values)
    assert link.port.writes == [codec.encode_frame(model.spec.msg_id, seq, payload)]


@FAST
@given(msg_type=st.integers(0, 0xFF), seq=st.integers(0, 0xFFFF), payload=st.binary(max_size=255))
@example(msg_type=0x10, seq=0x0101, payload=bytes(255))
@example(msg_type=0x10, seq=0x0101, payload=b"\xff" * 255)
@example(msg_type=0x10, seq=0x0101, payload=b"\x01" * 254 + b"\x00")
@example(msg_type=0x02, seq=_RUN_254_SEQ, payload=_RUN_254)
def test_firmware_send_equals_host_encode_frame_raw(
    msg_type: int, seq: int, payload: bytes
) -> None:
    wire = firmware_send(msg_type, seq, payload)
    assert wire == codec.encode_frame(msg_type, seq, payload)
    assert wire.endswith(b"\x00") and wire.count(0) == 1
    assert len(wire) <= messages.MAX_WIRE_FRAME


def test_example_with_254_byte_cobs_block_is_exercised() -> None:
    """The _RUN_254 example above really ends the frame with a 254-byte COBS block."""
    wire = codec.encode_frame(0x02, _RUN_254_SEQ, _RUN_254)
    body = cobs.decode(wire[:-1])
    assert len(body) == 254 and 0 not in body
    assert wire[0] == 0xFF and len(wire) == 256  # one code byte, no trailing block


@st.composite
def _frames_and_cuts(draw: st.DrawFn) -> tuple[list[Received], bytes, list[int]]:
    frames: list[Received] = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            model, values = draw(any_message())
            msg_type, payload = model.spec.msg_id, model.spec.payload.build(values)
        else:
            msg_type, payload = draw(st.integers(0, 0xFF)), draw(st.binary(max_size=255))
        frames.append((draw(st.integers(0, 0xFF)), msg_type, draw(st.integers(0, 0xFFFF)), payload))
    lead = draw(st.sampled_from([b"", b"\x00", b"\x00\x00"]))
    stream = lead + b"".join(codec.encode_frame(t, s, p, version=v) for v, t, s, p in frames)
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=12))
    return frames, stream, cuts


@FAST
@given(case=_frames_and_cuts())
def test_host_frames_fed_in_any_chunking_reach_the_handler(
    case: tuple[list[Received], bytes, list[int]],
) -> None:
    frames, stream, cuts = case
    link = Link(FakePort())
    assert feed_chunks(link, stream, cuts) == frames
    assert (link.frames_ok, link.frames_bad, link.crc_errors) == (len(frames), 0, 0)


# -- (d): COBS against the reference library -----------------------------------------


def fw_cobs_encode(data: bytes) -> bytes:
    dst = bytearray(len(data) + len(data) // 254 + 2)
    n = cobs_encode(data, len(data), dst)
    return bytes(dst[:n])


def fw_cobs_decode(encoded: bytes) -> bytes | None:
    buf = bytearray(encoded)
    n = cobs_decode(buf, len(buf))
    return None if n < 0 else bytes(buf[:n])


def _cobs_runs() -> st.SearchStrategy[bytes]:
    """Zero bytes and non-zero runs around COBS's 254-byte block size, up to 300 bytes."""
    run = st.integers(1, 255).flatmap(
        lambda n: st.binary(min_size=n, max_size=n).map(lambda b: b.replace(b"\x00", b"\x01"))
    )
    edge = st.sampled_from([253, 254, 255]).map(lambda n: b"\x42" * n)
    parts = st.lists(st.one_of(st.just(b"\x00"), run, edge), max_size=4)
    return parts.map(lambda p: b"".join(p)[:300])


@FAST
@given(data=st.one_of(st.binary(max_size=300), _cobs_runs()))
@example(data=b"")
@example(data=b"\x00")
@example(data=b"\x01" * 253)
@example(data=b"\x01" * 254)
@example(data=b"\x01" * 255)
@example(data=b"\x00" + b"\x01" * 254)
@example(data=b"\x01" * 254 + b"\x00")
@example(data=b"\x01" * 300)
def test_cobs_agrees_with_reference(data: bytes) -> None:
    encoded = cobs.encode(data)
    assert fw_cobs_encode(data) == encoded
    assert fw_cobs_decode(encoded) == data
    # A buffer longer than n: only the first n bytes count.
    buf = bytearray(encoded) + b"\x07\x07"
    assert cobs_decode(buf, len(encoded)) == len(data)
    assert bytes(buf[: len(data)]) == data


@FAST
@given(garbage=st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"\x01")))
def test_cobs_decode_agrees_with_reference_on_garbage(garbage: bytes) -> None:
    """On zero-free input (all a frame can hold) both accept and reject the same bytes."""
    try:
        expected: bytes | None = cobs.decode(garbage)
    except cobs.DecodeError:
        expected = None
    assert fw_cobs_decode(garbage) == expected


# -- (e): truncated and over-long payloads are refused -------------------------------


@pytest.mark.parametrize("model", MODELS, ids=MODEL_IDS)
@FAST
@given(data=st.data())
def test_decoders_reject_truncated_and_trailing_bytes(
    model: MessageModel, data: st.DataObject
) -> None:
    values = data.draw(values_for(model))
    built = model.spec.payload.build(values)
    extra = data.draw(st.binary(min_size=1, max_size=8), label="extra")
    # A payload that ends in GreedyBytes (AUTH's request) has no trailing bytes: the
    # request runs to the end, and the request's own decoder judges its length.
    bads = [] if model.fields[-1:] and model.fields[-1].kind == "rest" else [built + extra]
    if model.fields[-1:] and model.fields[-1].kind == "rest":
        built = built[: len(built) - len(values[model.fields[-1].name])]
    if built:  # an empty payload cannot be truncated
        bads.append(built[: data.draw(st.integers(0, len(built) - 1), label="cut")])
    decode = model.decoder()
    for bad in bads:
        buf = b"\x00\x01" + bad + b"\x02" * 4  # bytes outside [off, end) must not help
        with pytest.raises(ValueError):
            decode(buf, 2, 2 + len(bad))
        if is_older_info(model.spec.name, bad):
            continue  # the host reads it as what a 1.3 board sends (test_older_info_...)
        with pytest.raises(codec.PayloadError):
            codec.parse_payload(model.spec.msg_id, bad)


OLDER_FORMS: dict[str, list[tuple[Any, dict[str, Any]]]] = {
    "info": [(messages.INFO_1_7, {"key_id": 0}),
             (messages.INFO_1_3, {"boot": [], "key_id": 0})],
    "stats": [(messages.STATS_1_4, {"sensor_bus_errors": []})],
}
"""Payloads older minor versions send: the older struct and the fields it lacks, with
the values the host reads for them."""


def older_form(name: str, payload: bytes) -> Any:
    """An INFO cut just before ``key_id`` (a 1.4-1.7 board's, or a 1.8 board's to a host
    whose HELLO named 1.7) or before ``boot`` (a 1.3 board's), or a STATS cut before
    ``sensor_bus_errors`` (a 1.4 board's, or a 1.5 board's to a 1.4 host), parsed with
    the fields it lacks as the host reads them; else None."""
    for struct, lacking in OLDER_FORMS.get(name, []):
        try:
            parsed = (struct + Terminated).parse(payload)
        except Exception:
            continue
        parsed.update(lacking)
        return parsed
    return None


def is_older_info(name: str, payload: bytes) -> bool:
    """A payload in an older minor version's form (:func:`older_form`)."""
    return older_form(name, payload) is not None


def test_an_info_without_the_boot_field_reads_with_an_empty_boot() -> None:
    model = next(m for m in MODELS if m.spec.name == "info")
    values = random_values(model, random.Random(3))
    values["boot"] = [1, *range(32)]
    values["key_id"] = 7
    for minor in (3, 4, 7):
        values["protocol_minor"] = minor
        built = model.spec.payload.build(values)
        assert codec.parse_payload(model.spec.msg_id, built)["key_id"] == 7
        no_key = built[:-1]  # a 1.4-1.7 board's: without key_id, read as open mode
        parsed = codec.parse_payload(model.spec.msg_id, no_key)
        assert parsed["boot"] == values["boot"] and parsed["key_id"] == 0
        older = built[:-35]  # a 1.3 board's: without boot and key_id
        parsed = codec.parse_payload(model.spec.msg_id, older)
        assert parsed["boot"] == [] and parsed["key_id"] == 0
        assert parsed["protocol_minor"] == minor
        for cut in (built[:-34], built[:-2], older[:-1]):  # anything else stays an error
            with pytest.raises(codec.PayloadError):
                codec.parse_payload(model.spec.msg_id, cut)


def test_stats_without_the_bus_errors_read_with_none() -> None:
    model = next(m for m in MODELS if m.spec.name == "stats")
    values = random_values(model, random.Random(5))
    values["sensor_bus_errors"] = [3, 1, 4, 1, 5, 9, 2]
    built = model.spec.payload.build(values)
    older = built[:-29]  # a 1.4 board's: without the field (count byte, 7 x u32)
    assert codec.parse_payload(model.spec.msg_id, older)["sensor_bus_errors"] == []
    assert codec.parse_payload(model.spec.msg_id, built)["sensor_bus_errors"] == [
        3, 1, 4, 1, 5, 9, 2]
    for cut in (built[:-28], built[:-1], older[:-1]):  # anything else stays an error
        with pytest.raises(codec.PayloadError):
            codec.parse_payload(model.spec.msg_id, cut)


def test_unknown_message_type_is_a_payload_error() -> None:
    unknown = next(t for t in range(256) if t not in messages.BY_ID)
    with pytest.raises(codec.PayloadError):
        codec.parse_payload(unknown, b"")


def test_encode_frame_refuses_oversize_payload() -> None:
    with pytest.raises(codec.PayloadError):
        codec.encode_frame(0x10, 1, bytes(MAX_PAYLOAD + 1))
    with pytest.raises(ValueError):
        firmware_send(0x10, 1, bytes(MAX_PAYLOAD + 1))


# -- (f): the same, under the real MicroPython -------------------------------------

N_MICROPYTHON_CASES = 36


@dataclass
class Case:
    model: MessageModel
    values: dict[str, Any]
    seq: int
    chunk: int

    def __repr__(self) -> str:
        return f"Case({self.model.spec.name}, seq={self.seq}, values={self.values!r})"


def _micropython_cases() -> list[Case]:
    rng = random.Random(0xCE11)
    cases = []
    for i in range(N_MICROPYTHON_CASES):
        model = MODELS[i % len(MODELS)]
        cases.append(Case(model, random_values(model, rng), rng.randint(0, 0xFFFF), i % 9 + 1))
    return cases


MP_CASES = _micropython_cases()
MP_IDS = [f"{i:02d}-{c.model.spec.name}" for i, c in enumerate(MP_CASES)]

_MP_PRELUDE = """
import sys
from binascii import hexlify, unhexlify
from cellguard_fw import codec, codec_mirror, codec_rare
from cellguard_fw.link import Link, PAYLOAD_AT

def _fn(name):
    return getattr(codec, name, None) or getattr(codec_rare, name, None) or \
        getattr(codec_mirror, name)

class _Port:
    def __init__(self):
        self.out = bytearray()
    def write(self, b):
        self.out.extend(b)
        return len(b)
    def readinto(self, b):
        return None

def _plain(t):
    # Strings as ('str', utf-8 bytes): bytes repr is ASCII, so the output parses
    # with ast.literal_eval whatever the text holds. A view (a request in place) as bytes.
    return tuple(('str', v.encode()) if isinstance(v, str) else
                 bytes(v) if isinstance(v, memoryview) else v for v in t)

print(sys.implementation.name)
"""


@pytest.fixture(scope="module")
def micropython() -> Iterator[MicroPythonRuntime]:
    runtime = MicroPythonRuntime()
    try:
        assert runtime.exec(_MP_PRELUDE) == "micropython"
        yield runtime
    finally:
        runtime.close()


def _mp_call_args(case: Case) -> str:
    return ", ".join(repr(a) for a in firmware_args(case.model, case.values))


def _mp_tagged(model: MessageModel, values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        ("str", values[f.name].encode("utf-8")) if f.kind == "str" else values[f.name]
        for f in model.fields
    )


@pytest.mark.parametrize("case", MP_CASES, ids=MP_IDS)
def test_micropython_encode_equals_construct_build(
    micropython: MicroPythonRuntime, case: Case
) -> None:
    name = case.model.spec.name
    out = micropython.exec(
        "_b = bytearray(300)\n"
        f"_e = _fn('encode_{name}')(_b, 3, {_mp_call_args(case)})\n"
        "print(hexlify(_b[3:_e]).decode())\n"
    )
    assert out == case.model.spec.payload.build(case.values).hex()


@pytest.mark.parametrize("case", MP_CASES, ids=MP_IDS)
def test_micropython_decode_of_construct_build(micropython: MicroPythonRuntime, case: Case) -> None:
    built = case.model.spec.payload.build(case.values)
    out = micropython.exec(
        f"_w = b'\\x00' + unhexlify('{built.hex()}')\n"
        f"print(repr(_plain(_fn('{gen.decoder_name(case.model.spec)}')(_w, 1, len(_w)))))\n"
    )
    assert ast.literal_eval(out) == _mp_tagged(case.model, case.values)


@pytest.mark.parametrize("case", MP_CASES, ids=MP_IDS)
def test_micropython_link_frames_match_host(micropython: MicroPythonRuntime, case: Case) -> None:
    spec = case.model.spec
    payload = spec.payload.build(case.values)
    wire = codec.encode_frame(spec.msg_id, case.seq, payload)
    out = micropython.exec(
        "_p = _Port()\n"
        "_l = Link(_p)\n"
        f"_e = _fn('encode_{spec.name}')(_l.payload_buffer(), PAYLOAD_AT, "
        f"{_mp_call_args(case)})\n"
        f"_l.send({spec.msg_id}, {case.seq}, _e)\n"
        "print(hexlify(_p.out).decode())\n"
        "_got = []\n"
        "def _h(v, t, s, a, b):\n"
        "    _got.append((v, t, s, bytes(_l.frame[a:b])))\n"
        f"_w = unhexlify('{wire.hex()}')\n"
        f"for _i in range(0, len(_w), {case.chunk}):\n"
        f"    _c = _w[_i:_i + {case.chunk}]\n"
        "    _l.feed(_c, len(_c), _h)\n"
        "print(repr(_got))\n"
        "print(_l.frames_ok, _l.frames_bad, _l.crc_errors)\n"
    )
    sent, received, counts = out.split("\n")
    assert sent == wire.hex()
    assert ast.literal_eval(received) == [(messages.PROTOCOL_MAJOR, spec.msg_id, case.seq, payload)]
    assert counts == "1 0 0"


def test_micropython_cases_cover_every_message() -> None:
    assert {c.model.spec.name for c in MP_CASES} == set(MODEL_IDS)
    assert any(
        any(ord(ch) > 0x7F for f in c.model.fields if f.kind == "str" for ch in c.values[f.name])
        for c in MP_CASES
    ), "the MicroPython sample should include non-ASCII text"
