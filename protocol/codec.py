"""Host-side frame codec: COBS framing, CRC-32 and Construct payloads.

The firmware has its own, generated, implementation of the same format
(``firmware/cellguard_fw/codec.py`` and ``link.py``); property tests prove the two
agree byte for byte.

Construct stays the single source of truth on the host too, but the hot path
does not interpret it field by field:

* the frame header and CRC layouts are turned into ``struct`` formats once, from
  the Construct definitions (:func:`_struct_format`), for decoding and encoding
  (a header field out of its range is built by the Construct, for its error);
* a payload is parsed by Construct's ``compile()``-d parser of its message type,
  compiled on first use (:func:`_parser_for`). Only a clean parse is taken from it:
  any error, a read past the payload's end or trailing bytes hand the payload to
  the interpreted strict parser, which gives the verdict and the error message,
  so behaviour is that of the interpreted parser. A message whose Construct does
  not compile, or holds a construct that is not known to read its stream strictly
  in order (:data:`_SEQUENTIAL`), is always parsed by the interpreted parser;
* the parse result is turned into plain values by a converter derived from the
  message's Construct (:func:`_converter_for`), equal to :func:`plain` of it.

``tests/test_codec_compiled.py`` checks that the fast and the interpreted paths
agree for every message in ``messages.MESSAGES``.
"""

from __future__ import annotations

import binascii
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from operator import itemgetter
from typing import Any

from cobs import cobs
from construct import (
    Array,
    BytesInteger,
    Computed,
    Const,
    Construct,
    ConstructError,
    Container,
    Default,
    Enum,
    EnumIntegerString,
    FlagsEnum,
    FocusedSeq,
    FormatField,
    GreedyBytes,
    ListContainer,
    Mapping,
    Pass,
    Prefixed,
    Rebuild,
    Renamed,
    Sequence,
    StringEncoded,
    Struct,
    Subconstruct,
    Terminated,
)
from construct import (
    Bytes as BytesField,
)

from .messages import (
    BY_ID,
    BY_NAME,
    FLAGS,
    INFO_1_3,
    INFO_1_7,
    MAX_FRAME,
    MAX_PAYLOAD,
    PROTOCOL_MAJOR,
    STATS_1_4,
    FrameCrc,
    FrameHeader,
)

HEADER_SIZE = FrameHeader.sizeof()
CRC_SIZE = FrameCrc.sizeof()


class FrameError(ValueError):
    """A frame that cannot be decoded: bad COBS, bad CRC, wrong length."""


class PayloadError(ValueError):
    """A frame whose payload does not match its message type."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame; ``payload`` is still raw bytes."""

    version: int
    msg_type: int
    seq: int
    payload: bytes


def _unwrap(con: Construct) -> Construct:
    while isinstance(con, Renamed):
        con = con.subcon
    return con


def _struct_format(fixed: Struct) -> str:
    """The ``struct`` format of a Construct Struct made only of named FormatFields.

    Raises ``ValueError`` for any other Struct.
    """
    order = ""
    codes = ""
    for sub in fixed.subcons:
        con = _unwrap(sub)
        if not sub.name or not isinstance(con, FormatField):
            raise ValueError(f"{sub.name or sub!r} is not a named FormatField")
        if order and con.fmtstr[0] != order:
            raise ValueError("mixed byte orders")
        order = con.fmtstr[0]
        codes += con.fmtstr[1:]
    if struct.calcsize(order + codes) != fixed.sizeof():
        raise ValueError("struct size differs from the Construct size")
    return order + codes


_HEADER = struct.Struct(_struct_format(FrameHeader))
_CRC = struct.Struct(_struct_format(FrameCrc))
assert len(FrameCrc.subcons) == 1, "the CRC is one field"
_cobs_decode = cobs.decode
_crc32 = binascii.crc32
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from
_pack_crc = _CRC.pack
_unpack_crc = _CRC.unpack_from


def encode_frame(msg_type: int, seq: int, payload: bytes, version: int = PROTOCOL_MAJOR) -> bytes:
    """Return the wire bytes of one frame, delimiter included."""
    if len(payload) > MAX_PAYLOAD:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:  # the header's struct format, derived from FrameHeader: the same bytes
        body = _pack_header(version, msg_type, seq & 0xFFFF, len(payload)) + payload
    except struct.error:  # a field out of its range: FrameHeader says so, as it always did
        body = FrameHeader.build(
            {"version": version, "msg_type": msg_type, "seq": seq & 0xFFFF,
             "length": len(payload)}
        ) + payload
    body += _pack_crc(_crc32(body))
    return cobs.encode(body) + b"\x00"




def decode_frame(encoded: bytes) -> Frame:
    """Decode one frame's COBS bytes (without the delimiter)."""
    try:
        body = _cobs_decode(encoded)
    except cobs.DecodeError as exc:
        raise FrameError(f"bad COBS encoding: {exc}") from None
    n = len(body)
    if n < HEADER_SIZE + CRC_SIZE:
        raise FrameError(f"frame of {n} bytes is too short")
    if n > MAX_FRAME:
        raise FrameError(f"frame of {n} bytes exceeds {MAX_FRAME}")
    end = n - CRC_SIZE
    if _crc32(body[:end]) != _unpack_crc(body, end)[0]:
        raise FrameError("CRC mismatch")
    version, msg_type, seq, length = _unpack_header(body)
    if length != end - HEADER_SIZE:
        raise FrameError(f"length field {length} but {end - HEADER_SIZE} payload bytes")
    return Frame(version, msg_type, seq, body[HEADER_SIZE:end])


def build_payload(name: str, values: dict[str, Any]) -> bytes:
    """Build the payload of message ``name`` from a dict of field values."""
    spec = BY_NAME[name]
    try:
        return spec.payload.build(values)
    except (ConstructError, ValueError, TypeError, KeyError) as exc:
        raise PayloadError(f"cannot build {name}: {exc}") from None


def parse_payload(msg_type: int, payload: bytes) -> dict[str, Any]:
    """Parse a payload into plain Python values (enums as names, flags as ints).

    Raises :class:`PayloadError` for an unknown type or a payload that does not
    parse completely.
    """
    entry = _PARSERS.get(msg_type) or _parser_for(msg_type)
    fast, convert = entry
    if fast is not None:
        # One pad byte past the end: a read that runs past the payload (which a
        # compiled string or bytes field does not report) moves the position
        # past len(payload) instead of coming back short.
        stream = BytesIO(bytes(payload) + b"\x00")
        try:
            value = fast(stream, _CONTEXT)
        except Exception:  # any failure: the interpreted parser gives the verdict
            pass
        else:
            if stream.tell() == len(payload):
                return convert(value)
    return convert(_parse_interpreted(msg_type, payload))


def _parse_interpreted(msg_type: int, payload: bytes) -> Any:
    """The interpreted, strict Construct parse (trailing bytes rejected): the reference."""
    spec = BY_ID.get(msg_type)
    if spec is None:
        raise PayloadError(f"unknown message type 0x{msg_type:02x}")
    try:
        return _STRICT[msg_type].parse(payload)
    except (ConstructError, UnicodeDecodeError) as exc:
        # a board of an older minor version, or one answering a HELLO of an older one
        for older, lacking in _OLDER.get(msg_type, ()):
            with contextlib.suppress(ConstructError, UnicodeDecodeError):
                value = older.parse(payload)
                value.update(lacking)
                return value
        raise PayloadError(f"bad {spec.name} payload: {exc}") from None


# A payload must be consumed exactly: trailing bytes mean a malformed frame.
_STRICT = {
    m.msg_id: FocusedSeq("message", "message" / m.payload, Terminated) for m in BY_ID.values()
}
# Payloads as boards of an older minor version send them, newest first, with the
# values of the fields they lack: a 1.4-1.7 board's INFO has no ``key_id`` (open mode),
# a 1.3 board's has no ``boot`` either (nor has a board's answer to a HELLO that named
# such a version); a 1.4 board's STATS has no ``sensor_bus_errors``.
def _terminated(struct: Struct) -> FocusedSeq:
    return FocusedSeq("message", "message" / struct, Terminated)


_OLDER: dict[int, tuple[tuple[FocusedSeq, dict[str, Any]], ...]] = {
    BY_NAME["info"].msg_id: ((_terminated(INFO_1_7), {"key_id": 0}),
                             (_terminated(INFO_1_3), {"boot": ListContainer(), "key_id": 0})),
    BY_NAME["stats"].msg_id: ((_terminated(STATS_1_4), {"sensor_bus_errors": ListContainer()}),),
}


def flags_to_int(flags: Container, flag_names: dict[str, int]) -> int:
    """Fold a parsed FlagsEnum back into its integer bits."""
    bits = 0
    for key, value in flags.items():
        if value is True and key in flag_names:
            bits |= flag_names[key]
    return bits


_FLAG_TABLES = [f.flags for f in FLAGS.values()]
_FLAG_KEYSETS = [set(table) for table in _FLAG_TABLES]


def plain(value: Any) -> Any:
    """Turn Construct containers into dicts, lists, ints and strings."""
    if isinstance(value, EnumIntegerString):
        return str(value)
    if isinstance(value, Container):
        keys = [k for k in value if not k.startswith("_")]
        for table in _FLAG_TABLES:
            if keys and set(keys) == set(table):
                return flags_to_int(value, table)
        return {k: plain(value[k]) for k in keys}
    if isinstance(value, ListContainer | list):
        return [plain(v) for v in value]
    return value


# -- the fast path: compiled parsers and derived converters ---------------------------

_Parser = Callable[[BytesIO, Container], Any]
_Converter = Callable[[Any], Any]

_PARSERS: dict[int, tuple[_Parser | None, _Converter]] = {}
"""Per message type, filled on first use: the compiled parser (or None) and converter."""

# What Construct.parse_stream hands a parser as its top-level context. Shared: a
# compiled Struct only reads it, its members get a context of their own.
_CONTEXT = Container(_parsing=True, _building=False, _sizing=False)
_CONTEXT._params = _CONTEXT

_SEQUENTIAL: frozenset[type] = frozenset({
    Array, BytesField, BytesInteger, Computed, Const, Default, Enum, FlagsEnum, FocusedSeq,
    FormatField, Mapping, Prefixed, Rebuild, Renamed, Sequence, StringEncoded, Struct,
    type(GreedyBytes), type(Pass), type(Terminated),
})
"""Constructs whose compiled parsers only read forward, never seek: for them the
stream position after a parse tells whether the payload was consumed exactly."""


def _constructs(con: Construct) -> list[Construct]:
    """``con`` and every construct inside it."""
    seen: dict[int, Construct] = {}
    todo = [con]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        for attr in getattr(node, "__dict__", {}).values():
            items = attr.values() if isinstance(attr, dict) else attr
            if isinstance(items, list | tuple):
                todo.extend(x for x in items if isinstance(x, Construct))
            elif isinstance(attr, Construct):
                todo.append(attr)
    return list(seen.values())


def _parser_for(msg_type: int) -> tuple[_Parser | None, _Converter]:
    spec = BY_ID.get(msg_type)
    if spec is None:
        raise PayloadError(f"unknown message type 0x{msg_type:02x}")
    entry = (_compiled_parser(spec.payload), _converter_for(spec.payload))
    _PARSERS[msg_type] = entry
    return entry


def _compiled_parser(payload: Construct) -> _Parser | None:
    """Construct's compiled parser of ``payload``, or None when it must be interpreted."""
    if not all(type(c) in _SEQUENTIAL for c in _constructs(payload)):
        return None
    try:
        return payload.compile().parsefunc
    except Exception:  # no compiled form: the interpreted parser does it all
        return None


def _enum_name(value: Any) -> Any:
    return str(value) if isinstance(value, EnumIntegerString) else value


def _value_kind(con: Construct) -> _Converter | None:
    """How :func:`plain` treats what ``con`` parses to: None when it leaves it as is."""
    con = _unwrap(con)
    if isinstance(con, FormatField | BytesInteger | StringEncoded | BytesField | type(GreedyBytes)):
        return None  # int, float, bool, str or bytes
    if type(con) is Enum:
        return _enum_name  # a name, or an int outside the mapping
    if type(con) in (Rebuild, Default, Const) and isinstance(con, Subconstruct):
        return _value_kind(con.subcon)
    if type(con) is FocusedSeq:  # PrefixedArray, for one: the value of one field
        focus = [sub for sub in con.subcons if sub.name == con.parsebuildfrom]
        return _value_kind(focus[0]) if len(focus) == 1 else plain
    if type(con) is Array:
        return list if _value_kind(con.subcon) is None else plain
    return plain


def _converter_for(payload: Construct) -> _Converter:
    """A function equal to :func:`plain` on what ``payload`` parses to, but faster."""
    fields = _unwrap(payload)
    if type(fields) is not Struct:
        return plain
    names = [sub.name for sub in fields.subcons]
    if not all(names) or len(set(names)) != len(names):
        return plain  # unnamed members (one may stop the parse early) or a name used twice
    kept = [(sub.name, _value_kind(sub)) for sub in fields.subcons if not sub.name.startswith("_")]
    keys = tuple(name for name, _ in kept)
    if set(keys) in _FLAG_KEYSETS:
        return plain  # plain() would read the message as a set of flags
    special = tuple((name, kind) for name, kind in kept if kind is not None)
    if not keys:
        return lambda value: {}
    if len(keys) == 1:
        key = keys[0]
        kind = special[0][1] if special else None
        if kind is None:
            return lambda value: {key: value[key]}
        return lambda value: {key: kind(value[key])}
    values_of = itemgetter(*keys)

    def convert(value: Any) -> dict[str, Any]:
        out = dict(zip(keys, values_of(value), strict=True))
        for name, kind in special:
            out[name] = kind(out[name])
        return out

    return convert
