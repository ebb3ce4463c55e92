"""The cellguard wire protocol, defined with Construct: the single source of truth.

Everything else is derived from this file: the firmware codec
(``firmware/cellguard_fw/codec.py``, written by ``tools/gen_protocol.py``), the
protocol document (``protocol/README.md``) and the host's parser.

Wire units are integers (mV, mA, 0.1 degC, ms, 0.01 %); the host converts to SI
floats at the edge. Current is positive when charging (into the battery).

A frame on the wire is ``COBS(body + crc32) + b"\\x00"`` where ``body`` is the
:data:`FrameBody` below and ``crc32`` is ``binascii.crc32(body)`` little-endian.
"""

from __future__ import annotations

from construct import (
    Enum,
    FlagsEnum,
    Int8ul,
    Int16sl,
    Int16ul,
    Int32sl,
    Int32ul,
    PascalString,
    PrefixedArray,
    Struct,
)

PROTOCOL_MAJOR = 1
"""A board and a host talk only when their major versions are equal."""
PROTOCOL_MINOR = 0
"""Minor versions add message types; a host ignores types it does not know."""

MAX_PAYLOAD = 255
"""Largest payload in bytes (the length field is one byte)."""
FRAME_OVERHEAD = 9
"""Header (version, type, seq, length: 5 bytes) plus CRC-32 (4 bytes)."""
MAX_FRAME = MAX_PAYLOAD + FRAME_OVERHEAD
"""Largest frame before COBS encoding, in bytes."""
MAX_WIRE_FRAME = MAX_FRAME + MAX_FRAME // 254 + 2
"""Largest frame on the wire: COBS overhead plus the 0x00 delimiter."""

FrameHeader = Struct(
    "version" / Int8ul * "protocol major version of the sender",
    "msg_type" / Int8ul * "message type id (see the message table)",
    "seq" / Int16ul * "sequence number; a response carries the request's number",
    "length" / Int8ul * "payload length in bytes",
)
"""The fixed part of every frame; the payload and a CRC-32 follow."""

FrameCrc = Struct("crc32" / Int32ul * "binascii.crc32 of header and payload")

Chemistry = Enum(Int8ul, nmc=1, lfp=2, sodium_ion=3)

BmsState = Enum(
    Int8ul,
    startup=0,  # no valid measurement yet, output open
    standby=1,  # measurements valid, output open on request
    active=2,  # output closed, current may flow
    fault=3,  # a protection opened the output
)

Faults = FlagsEnum(
    Int32ul,
    cell_overvoltage=1 << 0,
    cell_undervoltage=1 << 1,
    overtemperature=1 << 2,
    undertemperature=1 << 3,
    overcurrent_charge=1 << 4,
    overcurrent_discharge=1 << 5,
)

NakError = Enum(
    Int8ul,
    unknown_message=1,  # the board does not know this message type
    bad_payload=2,  # the payload does not parse
    incompatible_version=3,  # the frame's major version is not the board's
)

Text = PascalString(Int8ul, "utf8")

Hello = Struct(
    "host_major" / Int8ul * "host's protocol major version",
    "host_minor" / Int8ul * "host's protocol minor version",
)

Info = Struct(
    "protocol_major" / Int8ul * "board's protocol major version",
    "protocol_minor" / Int8ul * "board's protocol minor version",
    "firmware_version" / Text * "firmware version string",
    "board" / Text * "board name, as in boards/<name>.json",
    "unique_id" / Text * "hex of the MCU's unique id",
    "chemistry" / Chemistry * "cell chemistry",
    "cell_count" / Int8ul * "cells in series",
    "temp_count" / Int8ul * "temperature sensors",
    "capacity_mah" / Int32ul * "rated capacity, mAh",
    "control_period_ms" / Int16ul * "control step period, ms",
    "telemetry_period_ms" / Int16ul * "telemetry period, ms",
    "cell_ov_mv" / Int16ul * "cell over-voltage trip, mV",
    "cell_uv_mv" / Int16ul * "cell under-voltage trip, mV",
    "temp_max_dc" / Int16sl * "over-temperature trip, 0.1 degC",
    "temp_min_dc" / Int16sl * "under-temperature trip, 0.1 degC",
    "charge_current_max_ma" / Int32ul * "charge over-current trip, mA (magnitude)",
    "discharge_current_max_ma" / Int32ul * "discharge over-current trip, mA (magnitude)",
)

Telemetry = Struct(
    "telemetry_seq" / Int32ul * "telemetry counter; a gap means lost frames",
    "board_time_ms" / Int32ul * "board time since boot, ms",
    "state" / BmsState * "BMS state",
    # A plain integer on the wire so bits a newer firmware adds are not lost.
    "faults" / Int32ul * "active fault bits (see the fault bit table)",
    "pack_mv" / Int32ul * "pack voltage, mV",
    "current_ma" / Int32sl * "pack current, mA, positive = charging",
    "soc_cpct" / Int16ul * "state of charge, 0.01 %",
    "cells_mv" / PrefixedArray(Int8ul, Int16ul) * "cell voltages, mV",
    "temps_dc" / PrefixedArray(Int8ul, Int16sl) * "temperatures, 0.1 degC",
)

Ack = Struct("request_type" / Int8ul * "message type of the request")

Nak = Struct(
    "request_type" / Int8ul * "message type of the request",
    "error" / NakError * "why the request was refused",
)


class MessageSpec:
    """One message type: its id, name, payload Construct and direction."""

    def __init__(self, msg_id: int, name: str, payload: Struct, direction: str, doc: str) -> None:
        self.msg_id = msg_id
        self.name = name
        self.payload = payload
        self.direction = direction  # "host->board" or "board->host"
        self.doc = doc


MESSAGES: tuple[MessageSpec, ...] = (
    MessageSpec(0x01, "hello", Hello, "host->board", "ask the board who it is; answered by INFO"),
    MessageSpec(0x02, "info", Info, "board->host", "board identity, sizes and limits"),
    MessageSpec(0x10, "telemetry", Telemetry, "board->host", "periodic measurements and state"),
    MessageSpec(0x7E, "ack", Ack, "board->host", "request accepted"),
    MessageSpec(0x7F, "nak", Nak, "board->host", "request refused, with a reason"),
)

BY_ID: dict[int, MessageSpec] = {m.msg_id: m for m in MESSAGES}
BY_NAME: dict[str, MessageSpec] = {m.name: m for m in MESSAGES}

ENUMS = {"chemistry": Chemistry, "state": BmsState, "nak_error": NakError}
"""Enumerations exported to the firmware codec as constants."""
FLAGS = {"fault": Faults}
"""Bit sets exported to the firmware codec as constants."""
