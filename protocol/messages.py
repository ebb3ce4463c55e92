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
    Bytes,
    Enum,
    FlagsEnum,
    GreedyBytes,
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
PROTOCOL_MINOR = 8
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
    precharge=4,  # precharging the load before the main contactor closes
)

Faults = FlagsEnum(
    Int32ul,
    cell_overvoltage=1 << 0,
    cell_undervoltage=1 << 1,
    overtemperature=1 << 2,
    undertemperature=1 << 3,
    overcurrent_charge=1 << 4,
    overcurrent_discharge=1 << 5,
    deep_discharge=1 << 6,
    overtemperature_charge=1 << 7,
    undertemperature_charge=1 << 8,
    overcurrent_charge_peak=1 << 9,
    overcurrent_discharge_peak=1 << 10,
    short_circuit=1 << 11,
    cell_imbalance=1 << 12,
    precharge_failed=1 << 13,
    contactor_welded=1 << 14,
    host_lost=1 << 15,  # policy: no frame from the host for host_timeout_ms (never latches)
    open_wire=1 << 16,  # a cell-voltage sense wire is open: its tap floats
    sensor_range=1 << 17,  # a cell reading beyond what any cell can show: a sensor fault
    sensor_disconnected=1 << 18,  # a temperature sensor reads open or shorted
    sensor_stuck=1 << 19,  # a cell reading has not moved while current flowed
    pack_voltage_mismatch=1 << 20,  # pack voltage sensor disagrees with the sum of cells
    temperature_rise=1 << 21,  # temperature rising faster than the limit (dT/dt)
    firmware=1 << 22,  # the control step raised, or the build failed its boot check: open
    # The battery-monitor chip's own protection (the second layer) opened its FETs; the
    # event's value is the chip's Safety Status A | B << 8 | C << 16. Latches.
    afe_protection=1 << 23,
    sensor_bus=1 << 24,  # the monitor chip has not answered past the retry bound (latches)
)

Severity = Enum(
    Int8ul,
    warning=0,  # reported only; the output stays as it is
    alarm=1,  # current limited to zero in the protection's direction; releases by itself
    fault=2,  # output opened; latches until CLEAR_FAULTS
)

# The configuration stem of each protection, in the order of the firmware's
# protection table (``cellguard_fw.protection.PROTECTIONS``) and the unit of its
# thresholds. Keys 4i+1..4i+4 are its trip, release, trip delay and release delay;
# key 128+i its debounce count (samples past the limit) and 160+i its severity.
PROTECTION_STEMS: tuple[tuple[str, str], ...] = (
    ("cell_ov", "mv"), ("cell_uv", "mv"), ("temp_max", "dc"), ("temp_min", "dc"),
    ("charge_current", "ma"), ("discharge_current", "ma"), ("deep_discharge", "mv"),
    ("temp_charge_max", "dc"), ("temp_charge_min", "dc"), ("charge_current_peak", "ma"),
    ("discharge_current_peak", "ma"), ("short_circuit", "ma"), ("cell_spread", "mv"),
    ("open_wire", "mv"), ("sensor_range", "mv"), ("sensor_disconnected", "count"),
    ("sensor_stuck", "ms"), ("pack_mismatch", "mv"), ("temp_rise", "dc"),
)
DEBOUNCE_KEY_BASE = 128
SEVERITY_KEY_BASE = 160


def protection_keys() -> dict[str, int]:
    """Name -> id of every per-protection configuration key."""
    # The first 13 keep the names protocol 1.1 gave their trip thresholds.
    trip_names = {"charge_current": "charge_current_max_ma",
                  "discharge_current": "discharge_current_max_ma"}
    keys: dict[str, int] = {}
    for i, (stem, unit) in enumerate(PROTECTION_STEMS):
        base = 4 * i + 1
        keys[trip_names.get(stem, f"{stem}_{unit}")] = base
        keys[f"{stem}_release_{unit}"] = base + 1
        keys[f"{stem}_delay_ms"] = base + 2
        keys[f"{stem}_release_delay_ms"] = base + 3
        keys[f"{stem}_debounce"] = DEBOUNCE_KEY_BASE + i
        keys[f"{stem}_severity"] = SEVERITY_KEY_BASE + i
    return keys

NakError = Enum(
    Int8ul,
    unknown_message=1,  # the board does not know this message type
    bad_payload=2,  # the payload does not parse
    incompatible_version=3,  # the frame's major version is not the board's
    unknown_key=4,  # no such configuration key
    out_of_range=5,  # value outside the key's allowed range; `limit` is the bound
    beyond_hard_limit=6,  # value beyond the chemistry's or hardware's hard limit; `limit`
    not_authorised=7,  # the board's configuration PIN was not given
    already_set=8,  # a write-once field holds another value (commissioning data)
    wrong_board=9,  # the confirmation names another board (second-life reset)
    auth_required=10,  # a locked board takes this write only inside AUTH
    bad_mac=11,  # AUTH's MAC is not the board key's over the request and the nonce
    stale_nonce=12,  # AUTH's nonce is not the one given out: used, expired or replaced
    rate_limited=13,  # too many refused AUTHs: `limit` is the ms before the next is heard
    presence_required=14,  # a safety limit on a locked board: hold the presence button
    wrong_key=15,  # AUTH names a key the board does not hold (`limit`: the board's key id)
)

EventKind = Enum(
    Int8ul,
    boot=1,  # firmware started
    trip=2,  # a protection tripped (code: fault bit, value: what it saw)
    release=3,  # a protection released
    clear=4,  # faults cleared on request (code: the bits cleared)
    config=5,  # a configuration key changed (code: key, value: new value)
    time_sync=6,  # the host set the clock (value: Unix time)
    reset=7,  # reset on request
    second_life=8,  # a second-life reset started a new lifetime record (code: lives)
    commissioned=9,  # commissioning data written into the lifetime record
    key_changed=10,  # the board's key changed (code: the new key id, 0: open mode)
    auth_refused=11,  # an AUTH refused (code: the request type, value: the NAK error)
)

# Configuration keys: the protection keys above, then the board-wide ones.
# Values are i32 in the unit the name ends with (severity: see Severity).
ConfigKey = Enum(
    Int8ul,
    **protection_keys(),
    telemetry_period_ms=100,
    capacity_mah=101,
    host_timeout_ms=102,  # 0: keep protecting without a host; else open after this silence
)

Text = PascalString(Int8ul, "utf8")
Empty = Struct()

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
    "max_frame" / Int16ul * "largest frame the board accepts and sends, bytes before COBS",
    "known_types" / PrefixedArray(Int8ul, Int8ul) * "message type ids the firmware knows",
    # Since 1.4, and only to a host whose HELLO says 1.4 or later (so 1.3 hosts, which
    # parse strictly, keep working). One field, not two: each field is a name the
    # board's heap keeps.
    "boot" / PrefixedArray(Int8ul, Int8ul) * (
        "the running build: its boot status (0 not from a slot, 1 confirmed, 2 on trial, "
        "3 fell back at this boot, 4 running the previous build since a fallback, 5 its "
        "files are not its manifest's and 6 older than the board's minimum version: output "
        "held open, 7 and 8 the same found in a trial: fell back), then "
        "the SHA-256 of its manifest (32 bytes; none from a firmware not deployed as a "
        "build)"),
    # Since 1.8, to a host whose HELLO says 1.8 or later.
    "key_id" / Int8ul * (
        "the key a write needs (docs/security.md): 0, open mode (any write is taken "
        "as it is); else the locked board's key id, and writes come inside AUTH"),
)
INFO_BOOT_SINCE_MINOR = 4
"""INFO's ``boot`` field goes to hosts whose HELLO names this minor version or later."""
INFO_KEY_SINCE_MINOR = 8
"""INFO's ``key_id`` field goes to hosts whose HELLO names this minor version or later."""
INFO_1_7 = Struct(*(c for c in Info.subcons if c.name != "key_id"))
"""INFO as a 1.4-1.7 board sends it (a 1.8 host reads it as open mode, key 0)."""
INFO_1_3 = Struct(*(c for c in INFO_1_7.subcons if c.name != "boot"))
"""INFO as a 1.3 board sends it (a 1.4 host reads it with an empty ``boot``)."""

Telemetry = Struct(
    "telemetry_seq" / Int32ul * "telemetry counter; a gap means lost frames",
    "board_time_ms" / Int32ul * "board time since boot, ms",
    "state" / BmsState * "BMS state",
    # A plain integer on the wire so bits a newer firmware adds are not lost.
    "faults" / Int32ul * "fault bits holding the output open: active or latched (see the table)",
    "warnings" / Int32ul * "warning bits active now: reported only, the output stays as it is",
    "alarms" / Int32ul * "alarm bits active now: current held to zero in their direction",
    "allowed" / Int8ul * "directions current may flow now: bit 0 charge, bit 1 discharge",
    "pack_mv" / Int32ul * "pack voltage, mV",
    "current_ma" / Int32sl * "pack current, mA, positive = charging",
    "soc_cpct" / Int16ul * "state of charge, 0.01 %",
    "cells_mv" / PrefixedArray(Int8ul, Int16ul) * "cell voltages, mV",
    "temps_dc" / PrefixedArray(Int8ul, Int16sl) * "temperatures, 0.1 degC",
)

EstimatorMode = Enum(
    Int8ul,
    coulomb=0,  # coulomb counting with OCV resets: the baseline
    ekf=1,  # extended Kalman filter on the cell model
)

Estimate = Struct(
    "board_time_ms" / Int32ul * "board time of the estimate, ms",
    "mode" / EstimatorMode * "which estimator gives soc_cpct",
    "soc_cpct" / Int16ul * "pack state of charge, 0.01 %",
    "soc_std_cpct" / Int16sl * "its standard deviation, 0.01 % (-1: not estimated)",
    "cell_soc_min_cpct" / Int16ul * "SoC of the emptiest cell, 0.01 %",
    "cell_soc_max_cpct" / Int16ul * "SoC of the fullest cell, 0.01 %",
    "capacity_mah" / Int32ul * "capacity as relearned, mAh",
    "capacity_cpct" / Int16ul * "capacity against the rated one, 0.01 %",
    "r0_growth_cpct" / Int16ul * "series resistance against its beginning of life, 0.01 %",
    "bias_ma" / Int32sl * "estimated current-sensor bias, mA (measured minus true)",
    "charge_limit_ma" / Int32ul * "continuous charge current limit (5 min), mA",
    "charge_peak_2s_ma" / Int32ul * "charge current limit for 2 s, mA",
    "charge_peak_10s_ma" / Int32ul * "charge current limit for 10 s, mA",
    "charge_peak_30s_ma" / Int32ul * "charge current limit for 30 s, mA",
    "discharge_limit_ma" / Int32ul * "continuous discharge current limit (5 min), mA",
    "discharge_peak_2s_ma" / Int32ul * "discharge current limit for 2 s, mA",
    "discharge_peak_10s_ma" / Int32ul * "discharge current limit for 10 s, mA",
    "discharge_peak_30s_ma" / Int32ul * "discharge current limit for 30 s, mA",
    "balancing" / Int32ul * "cells bleeding now: bit i is cell i",
)

TimeSync = Struct("unix_time_s" / Int32ul * "host clock, seconds since 1970 (UTC)")

Stats = Struct(
    "uptime_ms" / Int32ul * "board time since boot, ms",
    "frames_ok" / Int32ul * "frames received intact",
    "frames_bad" / Int32ul * "frames dropped: bad COBS, length or size",
    "crc_errors" / Int32ul * "frames dropped: CRC mismatch",
    "oversize" / Int32ul * "frames dropped: longer than the largest frame",
    "unknown_types" / Int32ul * "requests of a type the board does not know",
    "naks_sent" / Int32ul * "requests refused",
    "tx_frames" / Int32ul * "frames sent",
    "control_steps" / Int32ul * "control steps run",
    "control_overruns" / Int32ul * "control steps started late by more than one period",
    "heap_free" / Int32sl * "free heap, bytes (-1 where unknown)",
    "tx_dropped" / Int32ul * "frames dropped whole because the host was not reading",
    # Since 1.5, and only to a host whose HELLO says 1.5 or later (a 1.4 host parses
    # strictly).
    "sensor_bus_errors" / PrefixedArray(Int8ul, Int32ul) * (
        "errors on the sensor chip's bus since boot, by kind: NACK, bad CRC, bad "
        "checksum or length, busy past the bound, a write that did not read back, "
        "timeout, measurement cycles failed past the retries (none on a board without "
        "such a chip)"),
)
STATS_BUS_SINCE_MINOR = 5
"""STATS' ``sensor_bus_errors`` goes to hosts whose HELLO names this minor version or later."""
STATS_1_4 = Struct(*(c for c in Stats.subcons if c.name != "sensor_bus_errors"))
"""STATS as a 1.4 board sends it (a 1.5 host reads it with empty ``sensor_bus_errors``)."""

FaultEvent = Struct(
    "event_index" / Int32ul * "index of this event in the board's event log",
    "board_time_ms" / Int32ul * "board time of the change, ms",
    "kind" / EventKind * "trip, release or clear",
    "severity" / Severity * "severity of the protection (fault for a clear)",
    "fault" / Int32ul * "the fault bit(s) that changed",
    "value" / Int32sl * "the measured value that caused it (unit of the protection)",
    "faults" / Int32ul * "fault bits holding the output open after the change (active or latched)",
)

GetConfig = Struct("key" / ConfigKey * "configuration key")

SetConfig = Struct(
    "key" / ConfigKey * "configuration key",
    "value" / Int32sl * "new value, in the key's unit",
    "pin" / Int32ul * "configuration PIN (0 when the board has none)",
)

ConfigValue = Struct(
    "key" / ConfigKey * "configuration key",
    "value" / Int32sl * "current value, in the key's unit",
    "min" / Int32sl * "smallest value the board accepts now",
    "max" / Int32sl * "largest value the board accepts now",
)

GetConfigDump = Struct("first_key" / Int8ul * "first key id of the page (0: from the start)")

ConfigDump = Struct(
    "next_key" / Int8ul * "key id to ask for next; 0 when this page is the last",
    "keys" / PrefixedArray(Int8ul, Int8ul) * "key ids",
    "values" / PrefixedArray(Int8ul, Int32sl) * "values, in each key's unit",
    "mins" / PrefixedArray(Int8ul, Int32sl) * "smallest accepted values",
    "maxs" / PrefixedArray(Int8ul, Int32sl) * "largest accepted values",
)

FaultState = Struct(
    "active" / Int32ul * "fault bits active now",
    "latched" / Int32ul * "fault bits latched until CLEAR_FAULTS",
    "tripped" / Int32ul * "fault bits that tripped since boot or the last CLEAR_FAULTS",
    "alarms" / Int32ul * "alarm bits active now (a direction held at zero; never latched)",
    "warnings" / Int32ul * "warning bits active now (reported only)",
)

GetEvents = Struct(
    "first_index" / Int32ul * "index of the first event wanted",
    "max_count" / Int8ul * "at most this many events",
)

Events = Struct(
    "total" / Int32ul * "events ever logged; the next event gets this index",
    "oldest" / Int32ul * "index of the oldest event the board still holds",
    "indexes" / PrefixedArray(Int8ul, Int32ul) * "event indexes",
    "times_ms" / PrefixedArray(Int8ul, Int32ul) * "board time of each event, ms",
    "unix_times" / PrefixedArray(Int8ul, Int32ul) * "Unix time of each event (0: clock not set)",
    "kinds" / PrefixedArray(Int8ul, Int8ul) * "event kinds (see EventKind)",
    "codes" / PrefixedArray(Int8ul, Int32ul) * "fault bits, or the configuration key",
    "values" / PrefixedArray(Int8ul, Int32sl) * "the value that caused the event",
)

GetLifetime = Struct("first_word" / Int8ul * "first counter wanted (0: from the start)")

Lifetime = Struct(
    "layout" / Int8ul * "layout of the counters (docs/lifetime.md)",
    "seq" / Int32ul * "sequence number of the newest saved record (0: none saved yet)",
    "total_words" / Int8ul * "counters in the record",
    "first_word" / Int8ul * "index of this page's first counter",
    "words" / PrefixedArray(Int8ul, Int32ul) * (
        "the counters from first_word on, as they are now (units: docs/lifetime.md)"),
)

Commission = Struct(
    "manufactured_unix_s" / Int32ul * "date of manufacture, Unix time (0: not given)",
    "commissioned_unix_s" / Int32ul * "date of putting into service, Unix time (0: not given)",
    "identity" / Text * "pack identity, up to 24 bytes of UTF-8 (empty: not given)",
    "pin" / Int32ul * "configuration PIN (0 when the board has none)",
)

SecondLife = Struct(
    "unique_id" / Text * "the board's unique id (hex, as INFO gives it): the confirmation",
    "pin" / Int32ul * "configuration PIN (0 when the board has none)",
)

NONCE_BYTES = 16
MAC_BYTES = 32
KEY_BYTES = 32

NonceAnswer = Struct(
    "nonce" / Bytes(NONCE_BYTES) * "single use: the next AUTH's, until valid_ms have passed",
    "valid_ms" / Int32ul * "board time the nonce stays valid, ms",
    "key_id" / Int8ul * "the board's key id (0: open mode, no key)",
)

Auth = Struct(
    "key_id" / Int8ul * "the key the MAC is made with",
    "nonce" / Bytes(NONCE_BYTES) * "the nonce the board gave out last (GET_NONCE)",
    "mac" / Bytes(MAC_BYTES) * (
        "HMAC-SHA256 under the key over AUTH_DOMAIN, the board's unique id (its hex "
        "text), the nonce, request_type and request"),
    "request_type" / Int8ul * "message type of the write",
    "request" / GreedyBytes * "its payload, as it would be sent alone",
)

SetKey = Struct(
    "key_id" / Int8ul * "1-255: the new key's id; 0: no key, open mode (unlock)",
    "key" / Bytes(KEY_BYTES) * "the new key (zeros with key_id 0)",
)

AUDIT_RECORD_BYTES = 32
AUDIT_PAGE = 7  # records in one AUDIT frame (7 x 32 bytes and the header fit a payload)

AuditRecord = Struct(
    "index" / Int32ul * "the record's number, from 0 at the first write the board logged",
    "unix_time" / Int32ul * "Unix time of the write (s; 0: the board's clock was never set)",
    "key_id" / Int8ul * "the key the write came with (0: none: a plain write)",
    "request_type" / Int8ul * "the write's message type",
    "result" / Int8ul * "0: accepted; else the NakError the board refused it with",
    "config_key" / Int8ul * "SET_CONFIG's key, else 0",
    "old" / Int32sl * (
        "the value before: SET_CONFIG's key, TIME_SYNC's clock (Unix s), CLEAR_FAULTS' "
        "latched bits, SET_KEY's key id; else 0"),
    "new" / Int32sl * "the value asked for (SET_CONFIG, TIME_SYNC) or after; else 0",
    "repeats" / Int32ul * "times this refusal came, one after another (1: once)",
    "previous" / Bytes(8) * (
        "the first 8 bytes of the SHA-256 of the record before; of the board's unique id "
        "(its hex text) for record 0"),
)
"""One entry of the board's change log (admin.py): every write, accepted or refused."""

GetAudit = Struct("first" / Int32ul * "index of the first record wanted")

Audit = Struct(
    "total" / Int32ul * "records the board has logged ever (the next record's index)",
    "oldest" / Int32ul * "index of the oldest record the board still keeps",
    "records" / GreedyBytes * (
        f"whole {AUDIT_RECORD_BYTES}-byte records (AuditRecord) from max(first, oldest) on, "
        f"at most {AUDIT_PAGE}"),
)

AUTH_DOMAIN = b"cellguard-auth-1"
"""What every MAC starts with: a MAC made for something else never passes as AUTH's."""

Ack = Struct("request_type" / Int8ul * "message type of the request")

Nak = Struct(
    "request_type" / Int8ul * "message type of the request",
    "error" / NakError * "why the request was refused",
    "limit" / Int32sl * "the bound that was crossed (out_of_range, beyond_hard_limit), else 0",
)


class MessageSpec:
    """One message type: its id, name, payload Construct and direction."""

    def __init__(self, msg_id: int, name: str, payload: Struct, direction: str, doc: str,
                 on_demand: bool = False) -> None:
        self.msg_id = msg_id
        self.name = name
        self.payload = payload
        self.direction = direction  # "host->board" or "board->host"
        self.doc = doc
        # A rare request (or answer): the board's decoder (encoder) lives in
        # codec_rare.py, imported for it and released after, so it takes no RAM the
        # rest of the time.
        self.on_demand = on_demand


H2B, B2H = "host->board", "board->host"
MESSAGES: tuple[MessageSpec, ...] = (
    MessageSpec(0x01, "hello", Hello, H2B, "ask the board who it is; answered by INFO"),
    MessageSpec(0x02, "info", Info, B2H, "board identity, sizes, limits, known messages"),
    MessageSpec(0x03, "time_sync", TimeSync, H2B, "set the board's clock; answered by ACK"),
    MessageSpec(0x04, "reset", Empty, H2B, "restart the firmware; ACK, then a restart"),
    MessageSpec(0x05, "enter_repl", Empty, H2B,
                "hand the serial port back to the MicroPython REPL (output open, reset into "
                "maintenance mode); ACK first"),
    MessageSpec(0x06, "get_stats", Empty, H2B, "ask for link and loop counters"),
    MessageSpec(0x07, "stats", Stats, B2H, "link and loop counters"),
    MessageSpec(0x10, "telemetry", Telemetry, B2H, "periodic measurements and state"),
    MessageSpec(0x11, "fault_event", FaultEvent, B2H, "a protection tripped, released or cleared"),
    MessageSpec(0x12, "estimate", Estimate, B2H,
                "state estimate: SoC with its uncertainty, health, current limits, balancing"),
    MessageSpec(0x20, "get_config", GetConfig, H2B, "read one key; answered by CONFIG_VALUE"),
    MessageSpec(0x21, "set_config", SetConfig, H2B,
                "write one key; answered by CONFIG_VALUE or NAK with the reason",
                on_demand=True),
    MessageSpec(0x22, "config_value", ConfigValue, B2H, "one key's value and allowed range"),
    MessageSpec(0x23, "get_config_dump", GetConfigDump, H2B, "read every key, a page at a time"),
    MessageSpec(0x24, "config_dump", ConfigDump, B2H, "a page of keys, values and ranges"),
    MessageSpec(0x30, "get_faults", Empty, H2B, "ask for the fault state"),
    MessageSpec(0x31, "fault_state", FaultState, B2H, "active, latched and tripped faults"),
    MessageSpec(0x32, "clear_faults", Empty, H2B, "clear latched faults; answered by ACK"),
    MessageSpec(0x40, "get_events", GetEvents, H2B, "read the event log, a page at a time"),
    MessageSpec(0x41, "events", Events, B2H, "a page of the event log"),
    MessageSpec(0x50, "get_lifetime", GetLifetime, H2B,
                "read the battery's lifetime record, a page at a time (open to anyone)"),
    MessageSpec(0x51, "lifetime", Lifetime, B2H,
                "a page of the lifetime record: throughput, times, harmful events"),
    MessageSpec(0x52, "commission", Commission, H2B,
                "write the dates of manufacture and service and the pack identity, each "
                "once; answered by ACK, or NAK already_set", on_demand=True),
    MessageSpec(0x53, "second_life", SecondLife, H2B,
                "start a new lifetime record that keeps the old one's totals as history "
                "(logged); answered by ACK", on_demand=True),
    MessageSpec(0x60, "get_nonce", Empty, H2B,
                "ask for a nonce for the next AUTH; answered by NONCE (open to anyone)"),
    MessageSpec(0x61, "nonce", NonceAnswer, B2H, "a single-use nonce and the board's key id",
                on_demand=True),
    MessageSpec(0x62, "auth", Auth, H2B,
                "a write with its MAC: the board checks it and answers as the write would, "
                "or NAK (bad_mac, stale_nonce, wrong_key, rate_limited)", on_demand=True),
    MessageSpec(0x63, "set_key", SetKey, H2B,
                "lock an open board with a key (alone), or change or remove the key of a "
                "locked one (inside AUTH); answered by ACK", on_demand=True),
    MessageSpec(0x64, "get_audit", GetAudit, H2B,
                "read the change log, a page at a time (open to anyone)", on_demand=True),
    MessageSpec(0x65, "audit", Audit, B2H,
                "a page of the change log: hash-chained records of every write",
                on_demand=True),
    MessageSpec(0x7E, "ack", Ack, B2H, "request accepted"),
    MessageSpec(0x7F, "nak", Nak, B2H, "request refused, with a reason"),
)

WRITES: tuple[str, ...] = ("time_sync", "reset", "enter_repl", "set_config", "clear_faults",
                           "commission", "second_life", "set_key")
"""Requests that change the board: a locked board takes them only inside AUTH. Every
other request reads (open to anyone, EU 2023/1542 Article 14)."""

BY_ID: dict[int, MessageSpec] = {m.msg_id: m for m in MESSAGES}
BY_NAME: dict[str, MessageSpec] = {m.name: m for m in MESSAGES}

ENUMS = {
    "chemistry": Chemistry,
    "state": BmsState,
    "nak_error": NakError,
    "event": EventKind,
    "config": ConfigKey,
    "severity": Severity,
    "estimator": EstimatorMode,
}
"""Enumerations exported to the firmware codec as constants."""
FLAGS = {"fault": Faults}
"""Bit sets exported to the firmware codec as constants."""
