"""Host-side frame codec: COBS framing, CRC-32 and Construct payloads.

The firmware has its own, generated, implementation of the same format
(``firmware/cellguard_fw/codec.py`` and ``link.py``); property tests prove the two
agree byte for byte.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Any

from cobs import cobs
from construct import (
    ConstructError,
    Container,
    EnumIntegerString,
    FocusedSeq,
    ListContainer,
    Terminated,
)

from .messages import (
    BY_ID,
    BY_NAME,
    FLAGS,
    MAX_FRAME,
    MAX_PAYLOAD,
    PROTOCOL_MAJOR,
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


def encode_frame(msg_type: int, seq: int, payload: bytes, version: int = PROTOCOL_MAJOR) -> bytes:
    """Return the wire bytes of one frame, delimiter included."""
    if len(payload) > MAX_PAYLOAD:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = FrameHeader.build(
        {"version": version, "msg_type": msg_type, "seq": seq & 0xFFFF, "length": len(payload)}
    ) + payload
    body += FrameCrc.build({"crc32": binascii.crc32(body)})
    return cobs.encode(body) + b"\x00"


def decode_frame(encoded: bytes) -> Frame:
    """Decode one frame's COBS bytes (without the delimiter)."""
    try:
        body = cobs.decode(encoded)
    except cobs.DecodeError as exc:
        raise FrameError(f"bad COBS encoding: {exc}") from None
    if len(body) < HEADER_SIZE + CRC_SIZE:
        raise FrameError(f"frame of {len(body)} bytes is too short")
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    crc = FrameCrc.parse(body[-CRC_SIZE:]).crc32
    if binascii.crc32(body[:-CRC_SIZE]) != crc:
        raise FrameError("CRC mismatch")
    header = FrameHeader.parse(body)
    payload = body[HEADER_SIZE:-CRC_SIZE]
    if header.length != len(payload):
        raise FrameError(f"length field {header.length} but {len(payload)} payload bytes")
    return Frame(header.version, header.msg_type, header.seq, payload)


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
    spec = BY_ID.get(msg_type)
    if spec is None:
        raise PayloadError(f"unknown message type 0x{msg_type:02x}")
    try:
        parsed = _STRICT[msg_type].parse(payload)
    except (ConstructError, UnicodeDecodeError) as exc:
        raise PayloadError(f"bad {spec.name} payload: {exc}") from None
    return plain(parsed)


# A payload must be consumed exactly: trailing bytes mean a malformed frame.
_STRICT = {
    m.msg_id: FocusedSeq("message", "message" / m.payload, Terminated) for m in BY_ID.values()
}


def flags_to_int(flags: Container, flag_names: dict[str, int]) -> int:
    """Fold a parsed FlagsEnum back into its integer bits."""
    bits = 0
    for key, value in flags.items():
        if value is True and key in flag_names:
            bits |= flag_names[key]
    return bits


_FLAG_TABLES = [f.flags for f in FLAGS.values()]


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
