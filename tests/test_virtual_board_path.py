"""The board-path items of the real-silicon issue, re-proven on the virtual dev board
with the unchanged firmware (``install_firmware``) and the chip's default behaviours
(``Silicon.default``: the rp2's 500 ms USB write, the watchdog across a soft reset, the
typical flash stall), on pico-4s and esp32-4s:

1. a host that holds the port open without reading never trips the watchdog, and
   protection acts meanwhile;
2. TIME_SYNC frames (0x03 is their type byte) arriving while the board boots never
   park it at the REPL, from power-on and after a RESET or a watchdog reset;
3. ENTER_REPL, then mpremote's soft reset and a copy longer than the watchdog's
   timeout: no reset of any cause during the copy, every file whole.

(The fourth, a trip opens the output before the flash stall, is
tests/test_virtual_flash_stall.py.)
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_virtual_plant import set_cell_socs

from cellguard.hil.client import HilClient
from cellguard.link.client import BoardClient
from cellguard.protocol.codec import build_payload, encode_frame
from cellguard.protocol.messages import BY_NAME
from cellguard.sim.silicon import Silicon
from cellguard.sim.virtual import VirtualBoard, install_firmware

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))
BOARDS = ("pico-4s", "esp32-4s")


def frame(name: str, seq: int, values: dict[str, object] | None = None) -> bytes:
    return encode_frame(BY_NAME[name].msg_id, seq, build_payload(name, values or {}))


# -- 1. a host that holds the port without reading ---------------------------------------
@pytest.mark.parametrize(("board", "native_usb"), [
    ("pico-4s", True),
    ("esp32-4s", True),  # as on its own USB (an S3): the rp2's write, waiting 500 ms
    ("esp32-4s", False),  # as it is: the UART into the host's 64 KB behind the bridge
])
def test_a_host_holding_the_port_without_reading_never_starves_the_watchdog(
        board: str, native_usb: bool, tmp_path: Path) -> None:
    install_firmware(tmp_path, board)
    mcu = "esp32" if board.startswith("esp32") else "rp2040"
    silicon = Silicon.default(mcu)
    if native_usb:  # TinyUSB's CDC write: a 256-byte buffer, then it waits 500 ms
        silicon = silicon.changed(usb_write_timeout_ms=500.0, tx_buffer_bytes=256.0)
    # At real time: the firmware's requests take the board's CPU time as on a chip.
    with VirtualBoard(board, flash=tmp_path, seed=3, speed=1.0, silicon=silicon) as vb:
        watchdog_ms = vb.board.get("watchdog_ms", 2000)
        client = HilClient(vb.port, min_speed=1.0)
        try:
            client.hello(timeout_s=10)
            client.set_config("telemetry_period_ms", 100)  # the firmware streams
            client.wait_telemetry("the output closed", lambda t: t.state == "active", 5.0)
            # The host goes on writing requests but reads nothing: their answers and
            # the telemetry fill the port, then every write waits 500 ms and is dropped.
            for seq in range(1, 601):  # about 100 KB of answers: more than the port holds
                client.serial.write(frame("get_config_dump", seq, {"first_key": 0}))
            held_from = vb.time_ms
            vb.wait_time(held_from + 3 * watchdog_ms, timeout_s=60)
            # Protection acts meanwhile: an over-voltage opens the output.
            set_cell_socs(vb, [0.5, 0.5, 1.08, 0.5])
            injected = vb.time_ms
            # Within the trip's delay (1 s) and two control periods: no write held
            # the loop (the firmware polls for room first and drops whole frames).
            bound_ms = 1000 + 2 * vb.board["control_period_ms"]
            vb.wait_time(injected + bound_ms, timeout_s=60)
            opened = [ms for ms, truth in list(vb.history)
                      if ms >= injected and not truth.output_closed]
            assert opened and opened[0] - injected < bound_ms, opened[:1]
            print(f"{board}: output opened {opened[0] - injected} ms after the over-voltage")
            assert vb.pins()[vb.board["pins"]["output"]]["level"] == 0
            vb.wait_time(injected + 2 * watchdog_ms, timeout_s=60)
            held_ms = vb.time_ms - held_from
            vb.poll()
            waited = list(vb.usb_drops)
            unread = client.serial.in_waiting
            # Then the host reads again: the board answers, the trip latched.
            client.serial.reset_input_buffer()
            assert client.hello(timeout_s=10).board == board
            assert "cell_overvoltage" in client.fault_state()["latched"]
            dropped = client.stats()["tx_dropped"]
        finally:
            client.close()
    assert held_ms >= 4 * watchdog_ms
    assert unread >= 4000  # the host's side of the port was full
    assert dropped > 10  # the firmware dropped whole frames it had no room for ...
    assert waited == []  # ... and never waited in a write
    assert vb.resets == [], vb.resets  # no watchdog reset, no reset at all


def test_a_host_that_never_stops_sending_never_starves_the_watchdog(tmp_path: Path) -> None:
    # The other side of 1: a host that writes requests without pause (and reads what
    # comes back). The loop polls the port a bounded share per pass, so it still feeds
    # its watchdog and steps protection (before the bound, it stayed inside poll).
    install_firmware(tmp_path, "pico-4s")
    with VirtualBoard("pico-4s", flash=tmp_path, seed=3) as vb:
        watchdog_ms = vb.board.get("watchdog_ms", 2000)
        with BoardClient(vb.port) as client:
            client.hello(timeout_s=10)
        vb.wait_time(vb.time_ms + 500)
        assert vb.truth().output_closed
        stop = threading.Event()
        sent = [0]

        def flood() -> None:
            fd = os.open(vb.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            burst = b"".join(frame("get_stats", seq) for seq in range(1, 65))
            try:
                while not stop.is_set():
                    try:
                        sent[0] += os.write(fd, burst)
                    except BlockingIOError:
                        time.sleep(0.0005)
                    try:
                        while os.read(fd, 65536):
                            pass
                    except (BlockingIOError, OSError):
                        pass
            finally:
                os.close(fd)

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        try:
            start = vb.time_ms
            vb.wait_time(start + 2 * watchdog_ms, timeout_s=60)
            set_cell_socs(vb, [0.5, 0.5, 1.08, 0.5])
            injected = vb.time_ms
            vb.wait_time(injected + 2 * watchdog_ms, timeout_s=60)
        finally:
            stop.set()
            flooder.join(timeout=10)
        vb.poll()
        opened = [ms for ms, truth in list(vb.history)
                  if ms >= injected and not truth.output_closed]
    assert vb.resets == [], vb.resets
    # The trip delay (1 s), the sample that sees it, and a pass of the loop that the
    # flood (and a busy host under it) may start up to a period late (an overrun).
    assert opened and opened[0] - injected < 1000 + 3 * vb.board["control_period_ms"]
    assert sent[0] > 20_000  # the board took requests all along (the host waited on it)


# -- 2. TIME_SYNC frames while the board boots -------------------------------------------
class TimeSyncSender:
    """A host that sends TIME_SYNC frames (and a few others) without pause, as one that
    reconnects and syncs the clock at once: seeded clock values full of 0x03 bytes, the
    frames written every millisecond or so; what the board sends is read and dropped."""

    def __init__(self, port: str, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.stop = threading.Event()
        self.sent = 0
        self.with_03 = 0
        self.extra: list[bytes] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            seq = (seq + 1) & 0xFFFF
            t = self.rng.getrandbits(32)
            for byte in self.rng.sample(range(4), self.rng.randint(1, 3)):
                t = (t & ~(0xFF << 8 * byte)) | (0x03 << 8 * byte)
            data = frame("time_sync", seq, {"unix_time_s": t})
            if self.rng.random() < 0.2:
                data += frame(self.rng.choice(["hello", "get_stats", "get_faults"]), seq + 1,
                              {"host_major": 1, "host_minor": 4})
            if self.extra:
                data += self.extra.pop(0)
            try:
                os.write(self.fd, data)
                self.sent += 1
                self.with_03 += data.count(3) > 1
            except (BlockingIOError, OSError):
                pass
            try:
                while os.read(self.fd, 65536):
                    pass
            except (BlockingIOError, OSError):
                pass
            time.sleep(self.rng.uniform(0.0002, 0.002))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        os.close(self.fd)


def boots_under_time_sync(vb: VirtualBoard, seed: int) -> list[str]:
    """Power on, RESET, and a watchdog reset, each while a host sends TIME_SYNC frames;
    after each the firmware must answer HELLO. Returns the board's REPL entries."""
    starter = threading.Thread(target=vb.start, daemon=True)
    starter.start()
    deadline = time.monotonic() + 30
    while not vb.port:  # the pty exists before the board's process has loaded
        assert time.monotonic() < deadline
        time.sleep(0.0005)
    sender = TimeSyncSender(vb.port, seed)
    try:
        starter.join(timeout=30)
        for cause in ("power_on", "reset", "watchdog"):
            if cause == "reset":
                sender.extra.append(frame("reset", 0x7000))
                vb.wait_reset("reset", timeout_s=30)
            elif cause == "watchdog":
                vb.hang(3.0)
                vb.wait_reset("watchdog", timeout_s=30)
            vb.wait_time(vb.time_ms + 1500, timeout_s=30)  # the boot, under frames
            sender.stop.set()
            sender.thread.join(timeout=10)
            assert sender.with_03 > 10, "no frames with 0x03 reached the board"
            vb.poll()
            if vb.repl_entries:
                return list(vb.repl_entries)
            with BoardClient(vb.port) as client:
                assert client.hello(timeout_s=10).board == vb.board["name"], cause
            sender.stop.clear()
            sender.thread = threading.Thread(target=sender._run, daemon=True)
            sender.thread.start()
        vb.poll()
        return list(vb.repl_entries)
    finally:
        sender.close()


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("seed", [1, 2])
def test_time_sync_frames_during_boot_never_park_the_board_at_the_repl(
        board: str, seed: int, tmp_path: Path) -> None:
    install_firmware(tmp_path, board)
    vb = VirtualBoard(board, flash=tmp_path, seed=seed, speed=2.0)
    try:
        assert boots_under_time_sync(vb, seed) == []
        assert vb.resets == ["reset", "watchdog"]
    finally:
        vb.close()


def test_a_main_py_that_turns_ctrl_c_off_late_is_parked_by_them(tmp_path: Path) -> None:
    # The same host against a main.py that reads its boot record before it turns
    # Ctrl-C off: a 0x03 then interrupts it and the board sits at the REPL. The test
    # above would see that.
    install_firmware(tmp_path, "pico-4s")
    main = (tmp_path / "main.py").read_text()
    first = "micropython.kbd_intr(-1)  # at once"
    assert first in main
    main = main.replace(first, "# " + first, 1).replace(
        "\nif _f:", "\nmicropython.kbd_intr(-1)\nif _f:", 1)
    assert main.count("micropython.kbd_intr(-1)\n") == 1
    (tmp_path / "main.py").write_text(main)
    vb = VirtualBoard("pico-4s", flash=tmp_path, seed=1, speed=2.0)
    try:
        assert boots_under_time_sync(vb, 1) != []
    finally:
        vb.close()


# -- 3. ENTER_REPL, then mpremote's soft reset and a long copy ---------------------------
def mpremote(port: str, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MPREMOTE, "connect", port, *args], capture_output=True, text=True,
                          timeout=timeout)


def enter_maintenance(vb: VirtualBoard) -> None:
    with BoardClient(vb.port) as client:
        client.hello(timeout_s=10)
        client.enter_repl()  # the firmware's watchdog was running until now
    vb.wait_reset("reset")
    assert vb.wait_ready() == "reset"  # maintenance mode: main.py ends at the REPL


@pytest.mark.parametrize("board", BOARDS)
def test_enter_repl_then_mpremote_copies_longer_than_the_watchdog_without_a_reset(
        board: str, tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    install_firmware(flash, board)
    rng = random.Random(14)
    files = {f"big{i}.bin": rng.randbytes(24_000) for i in range(3)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    # At 30x: raw-paste copies these 72 KB in about 0.4 s of the board process's own
    # time (docs/virtual_board.md), some 10 s of board time: five watchdog periods.
    with VirtualBoard(board, flash=flash, seed=3, speed=30.0) as vb:
        watchdog_ms = vb.board.get("watchdog_ms", 2000)
        enter_maintenance(vb)
        before = list(vb.resets)
        start_ms = vb.time_ms
        args: list[str] = []
        for name in files:
            args += ["+", "fs", "cp", str(tmp_path / name), f":{name}"]
        result = mpremote(vb.port, *args[1:])  # mpremote soft-resets into the raw REPL
        assert result.returncode == 0, result.stderr + result.stdout
        vb.wait_time(vb.time_ms + 100)
        copy_ms = vb.time_ms - start_ms
        vb.poll()
        during = vb.resets[len(before):]
        output_level = vb.pins()[vb.board["pins"]["output"]]["level"]
        # The next reset runs the firmware again.
        ok = mpremote(vb.port, "reset")
        assert ok.returncode == 0, ok.stderr
        vb.wait_reset("reset")
        with BoardClient(vb.port) as client:
            assert client.hello(timeout_s=10).board == board
    print(f"{board}: {sum(map(len, files.values()))} B copied in {copy_ms} ms of board time")
    assert copy_ms > 2 * watchdog_ms, copy_ms  # the copy outlasted the watchdog's timeout
    assert during == ["soft"], during  # mpremote's soft reset, nothing else
    assert output_level == 0  # maintenance: the output open all along
    for name, data in files.items():
        assert (flash / name).read_bytes() == data


def test_a_watchdog_left_running_would_cut_the_copy(tmp_path: Path) -> None:
    # The control for the test above: with a watchdog started at the REPL (as the
    # firmware's would be, had ENTER_REPL only soft-reset), the same copy is cut.
    flash = tmp_path / "flash"
    install_firmware(flash, "pico-4s")
    (tmp_path / "big.bin").write_bytes(random.Random(1).randbytes(48_000))
    # At 30x, as above: the copy takes some 7 s of board time. The watchdog starts in the
    # same mpremote session, just before the copy, so it bites mid-copy whatever the
    # host's speed (in a second session it could bite while that one starts).
    with VirtualBoard("pico-4s", flash=flash, seed=3, speed=30.0) as vb:
        enter_maintenance(vb)
        copy = subprocess.Popen([MPREMOTE, "connect", vb.port,
                                 "exec", "import machine; machine.WDT(timeout=2000)", "+",
                                 "fs", "cp", str(tmp_path / "big.bin"), ":big.bin"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            vb.wait_reset("watchdog", timeout_s=60)  # mid-copy
            try:  # mpremote fails, or waits on for a board that has gone: not a success
                copied = copy.wait(timeout=5)
            except subprocess.TimeoutExpired:
                copied = None
        finally:
            copy.kill()
            copy.wait()
    assert copied != 0  # the copy did not complete: the watchdog cut it
    assert (flash / "big.bin").exists() is False  # the cut write never reached the flash
