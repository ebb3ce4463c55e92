"""The board's own code — ``main.py`` and ``board_main``'s USB serial port — under
REAL MicroPython (the WebAssembly port), with the models in tests/board_models/:
a ``machine`` module that records what is done to the pins, recorders for
``micropython.kbd_intr`` and ``board_main.run``, and a USB stream whose writes
block the way an rp2's do when the host does not read.

Issue 12: the output is driven off on main.py's first lines (item 3); Ctrl-C
is off at once and the REPL is reached only through maintenance mode (items 5,
6); USB writes never block and frames leave whole or not at all (item 4); the
receive path allocates nothing (item 12).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from typing import Any

import pytest
from board_harness import runtime_with_models

from cellguard.link.framing import FrameReader
from cellguard.paths import boards_dir, firmware_dir
from cellguard.protocol.codec import parse_payload
from cellguard.sim.runtime import MicroPythonRuntime
from cellguard_fw import codec

pytestmark = pytest.mark.timeout(120)

PICO = json.loads((boards_dir() / "pico-4s.json").read_text())
OUTPUT_PIN = PICO["pins"]["output"]


@pytest.fixture(scope="module")
def mp() -> Iterator[MicroPythonRuntime]:
    yield from runtime_with_models()


def boot(mp: MicroPythonRuntime, board: dict[str, Any], flag: bool = False,
         levels: dict[int, int] | None = None) -> tuple[list[tuple[Any, ...]], str]:
    """Run main.py once as a board boots it; return the recorded log and what
    was left of the maintenance flag ("flag" or "no flag")."""
    out = mp.exec(
        "import machine, os, recorders\n"
        "del machine.log[:]\n"
        "machine.levels.clear()\n"
        f"machine.levels.update({levels or {}!r})\n"
        f"with open('/board.json', 'w') as f:\n    f.write({json.dumps(board)!r})\n"
        + ("with open('/maintenance', 'w') as f:\n    f.write('1')\n" if flag else "")
        + "recorders.install()\n"
        "try:\n"
        "    with open('/fw/main.py') as f:\n"
        "        exec(f.read(), {'__name__': '__main__'})\n"
        "finally:\n"
        "    recorders.remove()\n"
        "try:\n"
        "    os.stat('/maintenance')\n"
        "    print('FLAG flag')\n"
        "except OSError:\n"
        "    print('FLAG no flag')\n"
        "print('LOG', repr(machine.log))\n"
    )
    lines = out.splitlines()
    log = ast.literal_eval(next(x for x in lines if x.startswith("LOG "))[4:])
    flag_left = next(x for x in lines if x.startswith("FLAG "))[5:]
    return [tuple(e) for e in log], flag_left


# -- items 3 and 5: Ctrl-C off, then the output off, before anything else ------
def test_main_disables_ctrl_c_then_drives_the_output_off_before_the_firmware(
        mp: MicroPythonRuntime) -> None:
    log, flag = boot(mp, PICO)
    assert log[0] == ("kbd_intr", -1)
    assert log[1] == ("Pin", OUTPUT_PIN, 1, 0)  # Pin.OUT, value=0
    assert log[-1] == ("run",)  # then the firmware, without a REPL grace
    assert ("kbd_intr", 3) not in log
    assert flag == "no flag"


def test_main_drives_the_precharge_relay_off_too(mp: MicroPythonRuntime) -> None:
    board = json.loads(json.dumps(PICO))
    board["pins"]["precharge"] = 14
    log, _ = boot(mp, board)
    run_at = log.index(("run",))
    assert ("Pin", 14, 1, 0) in log[:run_at]


# -- item 6: a board that boots with the flag serves the REPL, once ------------
def test_maintenance_boot_keeps_the_output_open_and_starts_nothing(
        mp: MicroPythonRuntime) -> None:
    log, flag = boot(mp, PICO, flag=True)
    assert log[:2] == [("kbd_intr", -1), ("Pin", OUTPUT_PIN, 1, 0)]
    assert ("run",) not in log  # no control loop ...
    assert not [e for e in log if e[0] == "WDT"]  # ... no watchdog
    assert log[-1] == ("kbd_intr", 3)  # the REPL may be interrupted again
    assert flag == "no flag"  # cleared: the next reset runs the firmware
    log, _ = boot(mp, PICO)
    assert log[-1] == ("run",)


def test_a_repl_pin_held_low_at_boot_gives_maintenance_mode(mp: MicroPythonRuntime) -> None:
    board = json.loads(json.dumps(PICO))
    board["pins"]["repl_pin"] = 22
    log, _ = boot(mp, board, levels={22: 0})
    assert ("run",) not in log and log[-1] == ("kbd_intr", 3)
    log, _ = boot(mp, board)  # released (pulled up): a normal boot
    assert log[-1] == ("run",)


# -- item 4: USB writes never block; frames leave whole or not at all ----------
SEND_FRAMES = """
from cellguard_fw import codec
from cellguard_fw.board_main import UsbSerialPort
from cellguard_fw.link import PAYLOAD_AT, Link
from usb_model import UsbStream
from binascii import hexlify

stream = UsbStream()
stream.room = 0  # the host holds the port open and reads nothing
port = UsbSerialPort(stream, stream)
link = Link(port)

def send(i):
    end = codec.encode_stats(link.payload_buffer(), PAYLOAD_AT, i, i, i, i, i, i, i, i, i, i,
                             i, i, ())
    link.send(codec.MSG_STATS, link.next_seq(), end)

for i in range(40):
    send(i)
print("STUCK", stream.blocked, link.tx_frames, link.tx_dropped, port.used)
wire = bytearray()
sizes = (1, 7, 64, 13, 3, 255, 40)
for k in range(200):  # the host reads again, in uneven chunks
    stream.room = sizes[k % len(sizes)]
    port.flush()
    if k % 5 == 0:
        send(1000 + k)
    wire.extend(stream.take())
print("WIRE", hexlify(wire).decode())
print("DONE", stream.blocked, link.tx_frames, link.tx_dropped, port.used)
"""


def test_usb_writes_never_block_and_frames_leave_whole_or_not_at_all(
        mp: MicroPythonRuntime) -> None:
    # The board's modules fold the protocol's numbers; a script gets them as literals.
    out = mp.exec(SEND_FRAMES.replace("codec.MSG_STATS", str(codec.MSG_STATS))).splitlines()
    stuck = [int(x) for x in next(x for x in out if x.startswith("STUCK ")).split()[1:]]
    blocked, queued, dropped, _ = stuck
    assert blocked == 0  # no write waited for a host that does not read
    assert queued > 0 and dropped > 0 and queued + dropped == 40
    done = [int(x) for x in next(x for x in out if x.startswith("DONE ")).split()[1:]]
    assert done[0] == 0 and done[3] == 0  # never blocked; everything queued went out
    sent = done[1]
    wire = bytes.fromhex(next(x for x in out if x.startswith("WIRE ")).split()[1])
    reader = FrameReader()
    frames = reader.feed(wire)
    assert reader.stats.bad_frames == 0 and reader.stats.crc_errors == 0  # no partial frame
    assert len(frames) == sent
    values = [parse_payload(f.msg_type, f.payload)["uptime_ms"] for f in frames]
    assert values[:queued] == list(range(queued))  # the first ones, in order, whole
    assert all(v >= 1000 for v in values[queued:])  # the later ones made it too


# -- item 12: the receive path allocates nothing ------------------------------
RECEIVE_LOCKED = """
import gc, micropython
from cellguard_fw.board_main import UsbSerialPort
from cellguard_fw.link import Link
from usb_model import UsbStream

stream = UsbStream(rx_size=2048)
port = UsbSerialPort(stream, stream)
link = Link(port)
seen = [0]

def handler(version, msg_type, seq, start, end):
    seen[0] += 1

def receive(link):
    while stream.rx_at < stream.rx_len:  # a few chunks a call: the loop calls again
        link.poll(handler)

# a frame's bytes without their delimiter, noise and an oversize run
stream.feed(bytes(range(1, 200)) + bytes((7, 9, 11)) * 40)
receive(link)  # warm up (the poller's result tuple is made on first use)
stream.feed(bytes(range(1, 250)) + bytes(range(3, 255)) + bytes(range(2, 90)))
gc.collect()
micropython.heap_lock()
try:
    receive(link)
    micropython.heap_unlock()
    print("RX NO-ALLOC", stream.rx_at, stream.rx_len, link.frame_len, link.overflow, seen[0])
except MemoryError:
    micropython.heap_unlock()
    print("RX ALLOCATED")
"""


def test_the_receive_path_allocates_nothing(mp: MicroPythonRuntime) -> None:
    out = mp.exec(RECEIVE_LOCKED).split()
    assert out[:2] == ["RX", "NO-ALLOC"], out
    rx_at, rx_len = int(out[2]), int(out[3])
    assert rx_at == rx_len > 700  # every byte was read, under the lock
    assert out[5] == "True"  # the run was long enough to overflow the frame buffer


def test_board_code_compiles_under_micropython(mp: MicroPythonRuntime) -> None:
    source = (firmware_dir() / "main.py").read_text()
    out = mp.exec(f"compile({source!r}, 'main.py', 'exec')\n"
                  "import cellguard_fw.board_main as b\nprint('OK', b.run.__name__)\n")
    assert out.strip() == "OK run"


# -- board_main.run() itself under MicroPython ---------------------------------
RUN_LOOP = """
import machine
from cellguard_fw import board_main
from cellguard_fw.hal_sim import SimHal
from binascii import unhexlify
from sim_clock import EndOfRun, SimClock
from usb_model import UsbStream

class Hal(SimHal):
    def __init__(self, clock):
        SimHal.__init__(self, 4, 2, b"\\x01" * 8, None, True)
        self.codes[:] = unhexlify(CODES)
        self.clock = clock
        self.steps = []
    def sample(self, raw_cells, raw_temps):
        self.steps.append(self.clock.now)
        return SimHal.sample(self, raw_cells, raw_temps)

kept = []
Bms = board_main.Bms
def keep(*args):
    kept.append(Bms(*args))
    return kept[-1]

clock = SimClock(END_MS)
stream = UsbStream(rx_size=2048, tx_size=65536)
stream.clock = clock
stream.room = ROOM
stream.feed(unhexlify(RX))
hal = Hal(clock)
del machine.log[:]
board_main.Bms = keep
ended = "returned"
try:
    board_main.run("/board.json", hal, board_main.UsbSerialPort(stream, stream), clock, WDT)
except EndOfRun:
    ended = "end"
except machine.Reset:
    ended = "reset"
finally:
    board_main.Bms = Bms
gaps = [hal.steps[i + 1] - hal.steps[i] for i in range(len(hal.steps) - 1)]
bms = kept[0]
print("RUN", ended, len(hal.steps), min(gaps or [0]), max(gaps or [0]), stream.blocked,
      bms.link.tx_frames, bms.link.tx_dropped, int(hal.output_closed), repr(machine.log))
"""


def sim_codes() -> str:
    from cellguard.sim.sensors import SensorModel

    board = json.loads((boards_dir() / "sim-4s.json").read_text())
    s = SensorModel(board, noise_lsb=0)
    import struct

    return (struct.pack("<7H", *[s.cell_code(3.7)] * 4, s.current_code(0.0),
                        *[s.temp_code(25.0)] * 2) + s.tail_values(14.8, 14.8, False)).hex()


def run_loop(mp: MicroPythonRuntime, end_ms: int, room: int, rx: bytes = b"",
             wdt: str = "clock") -> tuple[str, list[int], list[tuple[Any, ...]]]:
    board = json.loads((boards_dir() / "sim-4s.json").read_text())
    board["estimator"] = "none"
    mp.exec(f"with open('/board.json', 'w') as f:\n    f.write({json.dumps(board)!r})\n"
            "import os\ntry:\n    os.remove('/maintenance')\nexcept OSError:\n    pass\n")
    source = (RUN_LOOP.replace("CODES", repr(sim_codes())).replace("END_MS", str(end_ms))
              .replace("ROOM", str(room)).replace("RX", repr(rx.hex())).replace("WDT", wdt))
    line = next(x for x in mp.exec(source).splitlines() if x.startswith("RUN "))
    parts = line.split(" ", 9)
    return parts[1], [int(x) for x in parts[2:9]], [tuple(e) for e in ast.literal_eval(parts[9])]


def test_the_loop_under_micropython_never_waits_for_a_host_that_does_not_read(
        mp: MicroPythonRuntime) -> None:
    ended, (steps, min_gap, max_gap, blocked, sent, dropped, closed), _ = run_loop(
        mp, 20_000, room=0)
    assert ended == "end"
    assert blocked == 0
    assert 199 <= steps <= 201 and min_gap == max_gap == 100  # every period, on time
    assert sent + dropped == 1 + steps // 10  # telemetry at the 1st step, then every 10th
    assert dropped > 0
    assert closed == 0  # run() opened the output on its way out


def test_enter_repl_under_micropython_resets_into_maintenance_mode(
        mp: MicroPythonRuntime) -> None:
    from cellguard.protocol.codec import build_payload, encode_frame
    from cellguard.protocol.messages import BY_NAME

    frame = encode_frame(BY_NAME["enter_repl"].msg_id, 5, build_payload("enter_repl", {}))
    ended, numbers, log = run_loop(mp, 20_000, room=4096, rx=frame, wdt="None")
    assert ended == "reset" and log[0] == ("WDT", 2000) and log[-1] == ("reset",)
    assert numbers[6] == 0  # the output is open
    boot_log, flag = boot(mp, PICO)  # the board comes up in maintenance mode
    assert ("run",) not in boot_log and boot_log[-1] == ("kbd_intr", 3)
    assert flag == "no flag"


# -- a step's frames leave after its flash writes --------------------------------------
TRIP_RUN = """
import os
from cellguard_fw import board_main
from cellguard_fw.hal_sim import SimHal
from binascii import unhexlify
from sim_clock import EndOfRun, SimClock
from usb_model import UsbStream

try:
    os.mkdir('/trip_store')
except OSError:
    pass
for name in os.listdir('/trip_store'):
    os.remove('/trip_store/' + name)

class Watching(UsbStream):
    # Where the host's stream stood each time the event log's size changed.
    def __init__(self, *args, **kwargs):
        UsbStream.__init__(self, *args, **kwargs)
        self.size = -1
        self.marks = []
    def write(self, data):
        try:
            size = os.stat('/trip_store/events.bin')[6]
        except OSError:
            size = 0
        if size != self.size:
            self.size = size
            self.marks.append((self.tx_len, size))
        return UsbStream.write(self, data)

hal = SimHal(4, 2, b"\\x01" * 8, '/trip_store', True)
hal.codes[:] = unhexlify(CODES)
clock = SimClock(3000)
stream = Watching(rx_size=64, tx_size=65536)
stream.clock = clock
stream.room = 1 << 20
try:
    board_main.run("/board.json", hal, board_main.UsbSerialPort(stream, stream), clock, clock)
except EndOfRun:
    pass
print("MARKS", repr(stream.marks))
print("TX", stream.take().hex())
"""


def test_a_fault_event_leaves_only_once_its_trip_is_in_the_event_log(
        mp: MicroPythonRuntime) -> None:
    # A host that has seen a FAULT_EVENT may cut the power at once (a HIL rig does):
    # the trip must be on flash by the time the frame's first byte leaves.
    import struct

    from cellguard.protocol.codec import decode_frame
    from cellguard.protocol.messages import BY_NAME
    from cellguard.sim.sensors import SensorModel

    board = json.loads((boards_dir() / "sim-4s.json").read_text())
    board["estimator"] = "none"
    mp.exec(f"with open('/board.json', 'w') as f:\n    f.write({json.dumps(board)!r})\n")
    s = SensorModel(board, noise_lsb=0)
    codes = (struct.pack("<7H", *[s.cell_code(3.7)] * 3, s.cell_code(4.4),
                         s.current_code(0.0), *[s.temp_code(25.0)] * 2)
             + s.tail_values(15.5, 15.5, False)).hex()
    out = mp.exec(TRIP_RUN.replace("CODES", repr(codes))).splitlines()
    marks = ast.literal_eval(next(x for x in out if x.startswith("MARKS "))[6:])
    tx = bytes.fromhex(next(x for x in out if x.startswith("TX "))[3:])
    fault_event = BY_NAME["fault_event"].msg_id
    at = 0
    first_event_at = None
    for part in tx.split(b"\x00"):
        if part and decode_frame(part).msg_type == fault_event:
            first_event_at = at
            break
        at += len(part) + 1
    assert first_event_at is not None, "no FAULT_EVENT: the trip did not happen"
    size_then = [size for tx_len, size in marks if tx_len <= first_event_at][-1]
    boot_size = marks[0][1]
    assert size_then > boot_size, (marks, first_event_at)  # the trip's record was there
