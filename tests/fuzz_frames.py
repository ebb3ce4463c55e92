"""Seeded generator of fuzz input for the serial link, shared by the fuzz tests.

:func:`generate` turns ``(seed, count)`` into a deterministic stream of
:class:`FuzzItem`: wire bytes that always end with a 0x00 delimiter (so items
never run into each other and each can be judged on its own), the verdict the
link must reach for every non-empty delimited segment in them where that is
knowable by construction, and, for segments that decode, the answer the board
must give. The mix:

- valid frames of every host->board request (built with ``protocol.codec``):
  SET_CONFIG with random keys (unknown ids too) and values in range, out of
  range and beyond the hard limits, GET_EVENTS with huge indexes, GET_CONFIG_DUMP
  with any first key, TIME_SYNC with any u32, HELLO with any versions;
- mutations of valid frames: bit flips, byte insertion and deletion, truncation
  (delimited, re-encoded, or with the delimiter lost so the next frame is glued
  on), duplicated delimiters, bad CRC (valid COBS), wrong version byte, wrong
  length byte, unknown message types, payloads too short or too long for their
  type, frames shorter than a header;
- runs of non-zero bytes longer than ``MAX_WIRE_FRAME`` and random garbage.

RESET and ENTER_REPL are never sent intact (they restart or silence the board);
they appear only with a payload of the wrong size or a wrong version, which the
board must refuse. Keys in :attr:`BoardModel.frozen` (by default the cell
over-voltage protection's limits, delays, debounce count and severity, and the host
timeout) only ever receive values the board must refuse, so a
test can predict that protection's timing while the fuzz runs.

The checked-in corpus (``tests/fuzz_corpus/corpus.txt``) is read by
:func:`load_corpus`; each line is ``<wire hex> <verdicts> <answers>  # note``.
"""

from __future__ import annotations

import binascii
import random
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cobs import cobs

from cellguard.protocol import codec, messages

OK = "ok"
CRC_ERROR = "crc_error"
BAD = "bad"  # bad COBS, too short, too long after decoding, or wrong length field
OVERSIZE = "oversize"  # more than MAX_WIRE_FRAME bytes before the delimiter
VERDICTS = (OK, CRC_ERROR, BAD, OVERSIZE)

MAX_WIRE_FRAME = messages.MAX_WIRE_FRAME
MAX_PAYLOAD = messages.MAX_PAYLOAD
PROTOCOL_MAJOR = messages.PROTOCOL_MAJOR
I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
U32_MAX = (1 << 32) - 1

MSG = {m.name: m.msg_id for m in messages.MESSAGES}
CONFIG_KEYS: tuple[int, ...] = tuple(sorted(int(v) for v in messages.ConfigKey.decmapping))
"""Every configuration key id the protocol defines (the firmware knows exactly these)."""

# Requests the firmware dispatches, with their fixed payload size.
REQUEST_SIZES: dict[int, int] = {
    MSG["hello"]: 2, MSG["time_sync"]: 4, MSG["reset"]: 0, MSG["enter_repl"]: 0,
    MSG["get_stats"]: 0, MSG["get_config"]: 1, MSG["set_config"]: 9,
    MSG["get_config_dump"]: 1, MSG["get_faults"]: 0, MSG["clear_faults"]: 0,
    MSG["get_events"]: 5, MSG["get_lifetime"]: 1, MSG["get_audit"]: 4,
}
NEVER_INTACT = frozenset({MSG["reset"], MSG["enter_repl"]})
"""Requests that restart or silence the board: never generated so that they act."""
VARIABLE_REQUESTS = frozenset({MSG["commission"], MSG["second_life"]})
"""Requests with a text field (no fixed size), written once or changing the record for
good: never generated here (tests/test_lifetime_board.py and test_lifetime.py cover
them)."""
AUTH_REQUESTS = frozenset({MSG["get_nonce"], MSG["auth"], MSG["set_key"]})
"""Who may write (docs/security.md): never generated here, since SET_KEY would lock the
board and AUTH needs its key (tests/test_auth.py covers them, and the refusals)."""
NOT_REQUESTS: tuple[int, ...] = tuple(t for t in range(256)
                                      if t not in REQUEST_SIZES and t not in VARIABLE_REQUESTS
                                      and t not in AUTH_REQUESTS)
"""Message types the board answers with NAK unknown_message (board->host types too)."""

# The answer a decoded frame must get, as a string:
#   "<response message name>"         e.g. "info", "ack", "config_value"
#   "nak:<error>" or "nak:<error>:<limit>"
#   "config"                          CONFIG_VALUE, or NAK out_of_range (state-dependent)
CONFIG_ANSWER = "config"


def nak(error: str, limit: int | None = None) -> str:
    return f"nak:{error}" if limit is None else f"nak:{error}:{limit}"


@dataclass(frozen=True, slots=True)
class FuzzItem:
    """One unit of fuzz input.

    ``verdicts``: one of :data:`VERDICTS` per non-empty delimited segment of
    ``wire``, or None where the generator cannot know. ``answers``: the answer of
    every segment whose verdict is ``ok``, in order, or None when not known.
    """

    kind: str
    wire: bytes
    verdicts: tuple[str, ...] | None
    answers: tuple[str, ...] | None
    note: str = ""

    def segments(self) -> int:
        """Non-empty delimited segments: what the link gives one verdict each."""
        return sum(1 for seg in self.wire.split(b"\x00")[:-1] if seg)


@dataclass(frozen=True)
class BoardModel:
    """What the generator knows of the board's configuration.

    ``hard``: key -> (lowest, highest) value the board ever accepts (state-free).
    ``frozen``: key -> (lowest, highest) the board accepts now; the generator only
    sends these keys values outside that range, so they never change.
    """

    hard: Mapping[int, tuple[int, int]]
    frozen: Mapping[int, tuple[int, int]] = field(default_factory=dict)


def _sim_4s() -> BoardModel:
    cell, temp, delay = (2500, 4300), (-300, 700), (0, 60000)
    current = (0, 50000)  # what the sim-4s current sensor measures
    hard: dict[int, tuple[int, int]] = {}
    # In the order of the firmware's protection table (a test checks it).
    spread = (0, cell[1] - cell[0])
    open_wire, sensor_range = (0, cell[0]), (cell[1], 5000)  # 5000: the cell ADC's scale
    railed, stuck, mismatch, rise = (0, 2), (0, 3_600_000), (0, 25000), (0, temp[1] - temp[0])
    groups = (cell, cell, temp, temp, current, current, cell, temp, temp, current, current,
              current, spread, open_wire, sensor_range, railed, stuck, mismatch, rise)
    for group, limits in enumerate(groups):
        for k in range(4):
            hard[1 + 4 * group + k] = limits if k < 2 else delay
        hard[128 + group] = (1, 1000)  # debounce count, samples
        hard[160 + group] = (0, 2)  # severity: warning, alarm, fault
    hard[100] = (100, 60000)  # telemetry period: control period .. 60 s
    hard[101] = (1, 10_000_000)  # capacity, mAh
    hard[102] = (0, 3_600_000)  # host timeout, ms
    # Cell over-voltage (NMC 4250 / 4150 mV, 1000 / 2000 ms): trip in [release - 1, hard
    # max], release in [hard min, trip + 1] (one apart: no hysteresis, the least); the
    # delays have no range narrower than the hard one.
    frozen = {1: (4149, 4300), 2: (2500, 4251), 3: delay, 4: delay,
              128: (1, 1000), 160: (0, 2),  # its debounce count and severity
              102: (0, 3_600_000)}  # a random host timeout would open the output
    return BoardModel(hard=hard, frozen=frozen)


SIM_4S = _sim_4s()
"""boards/sim-4s.json with its defaults (NMC); the tests check it against the firmware."""


def config_answer(board: BoardModel, key: int, value: int) -> str:
    """The board's answer to SET_CONFIG ``key`` = ``value``, as far as it is state-free.

    The hard limits come first, then the range as it stands now: known for frozen
    keys, state-dependent (:data:`CONFIG_ANSWER`) for the others.
    """
    if key not in board.hard:
        return nak("unknown_key", 0)
    hard_lo, hard_hi = board.hard[key]
    if value < hard_lo:
        return nak("beyond_hard_limit", hard_lo)
    if value > hard_hi:
        return nak("beyond_hard_limit", hard_hi)
    if key in board.frozen:
        lo, hi = board.frozen[key]
        if value < lo:
            return nak("out_of_range", lo)
        if value > hi:
            return nak("out_of_range", hi)
        return "config_value"
    return CONFIG_ANSWER


# -- building blocks -------------------------------------------------------------------


def body(version: int, msg_type: int, seq: int, payload: bytes, length: int | None = None,
         crc_xor: int = 0) -> bytes:
    """Header + payload + CRC-32 (before COBS); ``length`` and ``crc_xor`` falsify them."""
    head = struct.pack("<BBHB", version, msg_type, seq & 0xFFFF,
                       len(payload) if length is None else length)
    raw = head + payload
    return raw + struct.pack("<L", binascii.crc32(raw) ^ crc_xor)


def wire_of(raw_body: bytes) -> bytes:
    return cobs.encode(raw_body) + b"\x00"


def cobs_code_positions(encoded: bytes) -> set[int]:
    """Offsets of the COBS code (block length) bytes in a valid encoding."""
    codes: set[int] = set()
    pos = 0
    while pos < len(encoded):
        codes.add(pos)
        pos += encoded[pos]
    return codes


def nonzero_bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n).replace(b"\x00", bytes([rng.randrange(1, 256)]))


def random_bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


# -- the generator -----------------------------------------------------------------------


class FrameFuzzer:
    """A deterministic source of :class:`FuzzItem` for one seed."""

    def __init__(self, seed: int, board: BoardModel = SIM_4S) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.board = board
        self.known_keys = [k for k in CONFIG_KEYS if k in board.hard]
        self.unknown_keys = [k for k in range(256) if k not in CONFIG_KEYS]
        self.mix: list[tuple[int, Callable[[], FuzzItem]]] = [
            (300, self.valid),
            (40, self.valid_with_extra_delimiters),
            (80, self.bit_flips),
            (40, self.byte_insert_delete),
            (30, self.truncated_wire),
            (30, self.truncated_body),
            (25, self.lost_delimiter),
            (50, self.bad_crc),
            (40, self.wrong_version),
            (40, self.wrong_length),
            (50, self.unknown_type),
            (50, self.wrong_payload_size),
            (20, self.too_short),
            (35, self.oversize),
            (10, self.glued_frames),
            (60, self.garbage),
            (10, self.delimiters_only),
        ]
        self._weights = [w for w, _ in self.mix]
        self._makers = [m for _, m in self.mix]

    def items(self, count: int) -> Iterator[FuzzItem]:
        for _ in range(count):
            maker = self.rng.choices(self._makers, self._weights)[0]
            yield maker()

    # -- valid requests ----------------------------------------------------------

    def seq(self) -> int:
        return self.rng.randrange(0x10000)

    def u32(self) -> int:
        rng = self.rng
        pick = rng.randrange(6)
        if pick == 0:
            return rng.choice((0, 1, (1 << 30) - 1, 1 << 30, I32_MAX, 1 << 31, U32_MAX - 1,
                               U32_MAX))
        if pick == 1:
            return rng.randrange(1 << 31, U32_MAX + 1)  # not a small int anywhere
        if pick == 2:
            return rng.randrange(0, 256)
        return rng.randrange(U32_MAX + 1)

    def i32(self) -> int:
        rng = self.rng
        if rng.randrange(4) == 0:
            return rng.choice((I32_MIN, I32_MIN + 1, -1, 0, 1, I32_MAX - 1, I32_MAX))
        return rng.randrange(I32_MIN, I32_MAX + 1)

    def request(self) -> tuple[int, bytes, str]:
        """A random valid request other than RESET and ENTER_REPL: (type, payload, answer)."""
        rng = self.rng
        name = rng.choice(("hello", "time_sync", "get_stats", "get_config", "set_config",
                           "get_config_dump", "get_faults", "clear_faults", "get_events",
                           "get_lifetime"))
        values: dict[str, int]
        answer: str
        if name == "hello":
            values = {"host_major": rng.randrange(256), "host_minor": rng.randrange(256)}
            answer = "info"
        elif name == "time_sync":
            values = {"unix_time_s": self.u32()}
            answer = "ack"
        elif name == "get_stats":
            values, answer = {}, "stats"
        elif name == "get_config":
            known = rng.random() < 0.7
            key = rng.choice(self.known_keys if known else self.unknown_keys)
            values = {"key": key}
            answer = "config_value" if known else nak("unknown_key", 0)
        elif name == "set_config":
            key, value, answer = self.config_write()
            values = {"key": key, "value": value, "pin": self.u32()}
        elif name == "get_config_dump":
            first = rng.choice((0, 1, 52, 53, 100, 102, 103, 255, rng.randrange(256)))
            values, answer = {"first_key": first}, "config_dump"
        elif name == "get_faults":
            values, answer = {}, "fault_state"
        elif name == "clear_faults":
            values, answer = {}, "ack"
        elif name == "get_lifetime":
            values, answer = {"first_word": rng.randrange(256)}, "lifetime"
        else:
            values = {"first_index": self.u32(), "max_count": rng.randrange(256)}
            answer = "events"
        return MSG[name], codec.build_payload(name, values), answer

    def config_write(self) -> tuple[int, int, str]:
        """(key, value, answer) of a SET_CONFIG; frozen keys only get refused values."""
        rng = self.rng
        if rng.random() < 0.2:
            key = rng.choice(self.unknown_keys)
            value = self.i32()
            return key, value, config_answer(self.board, key, value)
        key = rng.choice(self.known_keys)
        hard_lo, hard_hi = self.board.hard[key]
        while True:
            pick = rng.randrange(5)
            if pick == 0:
                value = self.i32()
            elif pick == 1:
                value = rng.choice((hard_lo - 1, hard_hi + 1, hard_lo, hard_hi, I32_MIN,
                                    I32_MAX))
            else:
                value = rng.randrange(hard_lo, hard_hi + 1)
            answer = config_answer(self.board, key, value)
            if key not in self.board.frozen or answer.startswith("nak:"):
                return key, value, answer
            # (in range for a frozen key: it would change it; draw again)

    def valid_frame(self) -> tuple[bytes, str]:
        msg_type, payload, answer = self.request()
        return codec.encode_frame(msg_type, self.seq(), payload), answer

    def valid(self) -> FuzzItem:
        wire, answer = self.valid_frame()
        return FuzzItem("valid", wire, (OK,), (answer,))

    def valid_with_extra_delimiters(self) -> FuzzItem:
        wire, answer = self.valid_frame()
        rng = self.rng
        before = b"\x00" * rng.randrange(0, 4)
        after = b"\x00" * rng.randrange(0 if before else 1, 4)
        return FuzzItem("extra_delimiters", before + wire + after, (OK,), (answer,))

    # -- mutations of valid frames -----------------------------------------------

    def bit_flips(self) -> FuzzItem:
        rng = self.rng
        wire, _ = self.valid_frame()
        encoded = bytearray(wire[:-1])
        nbits = rng.choice((1, 1, 1, 2, 3))
        bits = rng.sample(range(len(encoded) * 8), nbits)
        for bit in bits:
            encoded[bit // 8] ^= 1 << (bit % 8)
        codes = cobs_code_positions(wire[:-1])
        # Up to 3 flipped bits in data bytes (not COBS codes, none turned into 0x00)
        # leave the COBS structure and the size alone: CRC-32 catches every such error.
        knowable = all(bit // 8 not in codes and encoded[bit // 8] for bit in bits)
        return FuzzItem("bit_flips", bytes(encoded) + b"\x00",
                        (CRC_ERROR,) if knowable else None, () if knowable else None)

    def byte_insert_delete(self) -> FuzzItem:
        rng = self.rng
        wire, _ = self.valid_frame()
        encoded = bytearray(wire[:-1])
        for _ in range(rng.choice((1, 1, 2))):
            at = rng.randrange(len(encoded) + 1)
            if rng.random() < 0.5 or len(encoded) < 2:
                encoded.insert(at, rng.randrange(1, 256))
            else:
                del encoded[min(at, len(encoded) - 1)]
        return FuzzItem("insert_delete", bytes(encoded) + b"\x00", None, None)

    def truncated_wire(self) -> FuzzItem:
        wire, _ = self.valid_frame()
        cut = self.rng.randrange(1, len(wire) - 1)
        return FuzzItem("truncated_wire", wire[:cut] + b"\x00", None, None)

    def truncated_body(self) -> FuzzItem:
        msg_type, payload, _ = self.request()
        raw = body(PROTOCOL_MAJOR, msg_type, self.seq(), payload)
        while True:
            k = self.rng.randrange(len(raw))
            cut = raw[:k]
            if k < codec.HEADER_SIZE + codec.CRC_SIZE:
                verdict = BAD
                break
            if binascii.crc32(cut[:-4]) != struct.unpack("<L", cut[-4:])[0]:
                verdict = CRC_ERROR
                break
        return FuzzItem("truncated_body", wire_of(cut), (verdict,), ())

    def lost_delimiter(self) -> FuzzItem:
        """A frame cut short without its delimiter, then a whole frame: one bad segment."""
        first, _ = self.valid_frame()
        second, _ = self.valid_frame()
        cut = self.rng.randrange(1, len(first) - 1)
        return FuzzItem("lost_delimiter", first[:cut] + second, None, None)

    def bad_crc(self) -> FuzzItem:
        msg_type, payload, _ = self.request()
        rng = self.rng
        mask = rng.choice((1 << rng.randrange(32), rng.randrange(1, U32_MAX + 1)))
        raw = body(PROTOCOL_MAJOR, msg_type, self.seq(), payload, crc_xor=mask)
        return FuzzItem("bad_crc", wire_of(raw), (CRC_ERROR,), ())

    def wrong_version(self) -> FuzzItem:
        rng = self.rng
        version = rng.choice([v for v in range(256) if v != PROTOCOL_MAJOR])
        if rng.random() < 0.5:
            msg_type, payload, _ = self.request()
        else:  # RESET or anything: the version is checked first
            msg_type = rng.randrange(256)
            payload = random_bytes(rng, REQUEST_SIZES.get(msg_type, rng.randrange(20)))
        wire = codec.encode_frame(msg_type, self.seq(), payload, version=version)
        return FuzzItem("wrong_version", wire, (OK,),
                        (nak("incompatible_version", PROTOCOL_MAJOR),))

    def wrong_length(self) -> FuzzItem:
        rng = self.rng
        msg_type, payload, _ = self.request()
        length = rng.choice([n for n in range(256) if n != len(payload)])
        raw = body(PROTOCOL_MAJOR, msg_type, self.seq(), payload, length=length)
        return FuzzItem("wrong_length", wire_of(raw), (BAD,), ())

    def unknown_type(self) -> FuzzItem:
        rng = self.rng
        msg_type = rng.choice(NOT_REQUESTS)
        size = rng.choice((0, rng.randrange(32), rng.randrange(MAX_PAYLOAD + 1), MAX_PAYLOAD))
        payload = random_bytes(rng, size)
        wire = codec.encode_frame(msg_type, self.seq(), payload)
        return FuzzItem("unknown_type", wire, (OK,), (nak("unknown_message", 0),))

    def wrong_payload_size(self) -> FuzzItem:
        rng = self.rng
        msg_type = rng.choice(tuple(REQUEST_SIZES))
        want = REQUEST_SIZES[msg_type]
        sizes = [n for n in range(min(MAX_PAYLOAD, want + 16) + 1) if n != want]
        size = rng.choice((*sizes, MAX_PAYLOAD))
        payload = random_bytes(rng, size)
        wire = codec.encode_frame(msg_type, self.seq(), payload)
        return FuzzItem("wrong_payload_size", wire, (OK,), (nak("bad_payload", 0),))

    def too_short(self) -> FuzzItem:
        raw = random_bytes(self.rng, self.rng.randrange(codec.HEADER_SIZE + codec.CRC_SIZE))
        return FuzzItem("too_short", wire_of(raw), (BAD,), ())

    # -- not frames at all ---------------------------------------------------------

    def oversize(self) -> FuzzItem:
        rng = self.rng
        n = rng.choice((MAX_WIRE_FRAME + 1, MAX_WIRE_FRAME + 2,
                        rng.randrange(MAX_WIRE_FRAME + 3, 2 * MAX_WIRE_FRAME),
                        rng.randrange(MAX_WIRE_FRAME + 3, 4000) if rng.random() < 0.2 else 300))
        return FuzzItem("oversize", nonzero_bytes(rng, n) + b"\x00", (OVERSIZE,), ())

    def glued_frames(self) -> FuzzItem:
        """Valid frames whose delimiters were lost: too long together, so oversize."""
        parts = b""
        while len(parts) <= MAX_WIRE_FRAME:
            wire, _ = self.valid_frame()
            parts += wire[:-1]
        return FuzzItem("glued_frames", parts + b"\x00", (OVERSIZE,), ())

    def garbage(self) -> FuzzItem:
        rng = self.rng
        n = rng.choice((rng.randrange(1, 16), rng.randrange(1, 300), rng.randrange(1, 700)))
        data = bytearray(random_bytes(rng, n))
        if rng.random() < 0.3:  # sprinkle delimiters: several segments
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(n)] = 0
        return FuzzItem("garbage", bytes(data) + b"\x00", None, None)

    def delimiters_only(self) -> FuzzItem:
        return FuzzItem("delimiters_only", b"\x00" * self.rng.randrange(1, 5), (), ())


def generate(seed: int, count: int, board: BoardModel = SIM_4S) -> Iterator[FuzzItem]:
    """``count`` items for ``seed``: the same seed always gives the same items."""
    return FrameFuzzer(seed, board).items(count)


# -- the corpus ------------------------------------------------------------------------

CORPUS = Path(__file__).with_name("fuzz_corpus") / "corpus.txt"


def load_corpus(path: Path = CORPUS) -> list[FuzzItem]:
    """The hand-picked inputs: ``<wire hex> <verdicts|?> <answers|-|?>  # note`` per line.

    Verdicts and answers are comma-separated; ``-`` is none, ``?`` unknown.
    """
    items: list[FuzzItem] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text, _, note = line.partition("#")
        if not text.strip():
            continue
        hex_wire, verdicts_text, answers_text = text.split()
        wire = bytes.fromhex(hex_wire)
        if not wire.endswith(b"\x00"):
            raise ValueError(f"{path}:{number}: an item must end with a 0x00 delimiter")
        verdicts = _field(verdicts_text)
        if verdicts is not None and any(v not in VERDICTS for v in verdicts):
            raise ValueError(f"{path}:{number}: unknown verdict in {verdicts_text!r}")
        items.append(FuzzItem(f"corpus:{number}", wire, verdicts, _field(answers_text),
                              note.strip()))
    return items


def _field(text: str) -> tuple[str, ...] | None:
    if text == "?":
        return None
    if text == "-":
        return ()
    return tuple(text.split(","))


def corpus_line(item: FuzzItem) -> str:
    """The corpus line of an item (to add a failing input to the corpus)."""
    def show(values: tuple[str, ...] | None) -> str:
        return "?" if values is None else (",".join(values) or "-")

    return f"{item.wire.hex()} {show(item.verdicts)} {show(item.answers)}  # {item.note}"
