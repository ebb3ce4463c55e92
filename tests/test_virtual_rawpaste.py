"""Raw-paste mode on the virtual dev board, as MicroPython's pyexec.c serves it.

The host side is either unmodified mpremote (its ``SerialTransport`` as a library, or the
command as a subprocess) or a hand-written host that speaks the protocol byte by byte
(docs/reference/repl.rst, "Raw mode and raw-paste mode"), so the tests see exactly what
the board sends: ``R\\x01``, the window (2 bytes, little-endian), ``\\x01`` per window the
board has taken, ``\\x04`` at the end of the data, then the raw REPL's framing.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mpremote.transport import TransportExecError
from mpremote.transport_serial import SerialTransport
from test_virtual_board import Terminal, mpremote

from cellguard.sim.virtual import VirtualBoard

WINDOW = 128  # MICROPY_REPL_STDIN_BUFFER_MAX (256 on rp2 and esp32) / 2
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"


class Host(Terminal):
    """A host that speaks the raw REPL and raw-paste protocol itself."""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:  # the port's buffer is full: the board holds us off
                time.sleep(0.001)

    def raw_repl(self) -> None:
        self.write(b"\r\x03\x03\x01")
        self.read_until(RAW_BANNER)

    def start_paste(self) -> int:
        """Ctrl-E 'A' Ctrl-A: the board's answer, and the window it gives."""
        self.write(b"\x05A\x01")
        assert self.read(2) == b"R\x01"
        window = int.from_bytes(self.read(2), "little")
        assert self.read(1) == b"\x01"  # a second window is free
        return window


@pytest.fixture
def flash(tmp_path: Path) -> Path:
    return tmp_path / "flash"


@pytest.fixture
def board(flash: Path) -> Iterator[VirtualBoard]:
    with VirtualBoard("pico-4s", flash=flash) as vb:
        vb.wait_ready()
        yield vb


@pytest.fixture
def host(board: VirtualBoard) -> Iterator[Host]:
    h = Host(board.port)
    h.raw_repl()
    yield h
    h.close()


def test_mpremote_uses_raw_paste_and_keeps_it(board: VirtualBoard) -> None:
    t = SerialTransport(board.port, baudrate=115200)
    try:
        t.enter_raw_repl()
        assert t.exec("print('x' * 3)") == b"xxx\n"
        # mpremote turns the flag off when a board answers R\x00 or anything but R\x01.
        assert t.use_raw_paste is True
        assert t.eval("6 * 7") == 42
        assert t.use_raw_paste is True
        t.exit_raw_repl()
    finally:
        t.close()


def test_a_script_of_many_windows_runs_whole(board: VirtualBoard) -> None:
    lines = ["total = 0"] + [f"total += {i}  # {'.' * (i % 40)}" for i in range(1500)]
    script = "\n".join(lines) + "\nprint(total, len(globals()) > 0)\n"
    assert len(script) > 40 * WINDOW
    t = SerialTransport(board.port, baudrate=115200)
    try:
        t.enter_raw_repl()
        assert t.exec(script) == f"{sum(range(1500))} True\n".encode()
        assert t.use_raw_paste is True
        t.exit_raw_repl()
    finally:
        t.close()


def test_the_board_grants_a_window_each_time_it_has_taken_one(host: Host, flash: Path) -> None:
    payload = bytes(random.Random(3).choice(b"abcdefghij0123456789") for _ in range(5 * WINDOW))
    source = b"with open('w.txt','wb') as f: f.write(b'" + payload + b"')"
    assert host.start_paste() == WINDOW
    granted = 2 * WINDOW  # the window, and the "\x01" after it
    sent = 0
    while sent < len(source):  # a host that keeps to the window, as mpremote does
        if sent == granted:
            assert host.read(1) == b"\x01"
            granted += WINDOW
        n = min(granted - sent, len(source) - sent)
        host.write(source[sent:sent + n])
        sent += n
    # what the board has not granted yet is the windows it is still taking
    extra = len(source) // WINDOW - (granted - 2 * WINDOW) // WINDOW
    host.write(b"\x04")
    tail = host.read_until(b"\x04>")
    assert tail == b"\x01" * extra + b"\x04" + b"\x04\x04>"
    assert (flash / "w.txt").read_bytes() == payload


def test_a_host_that_ignores_the_window_loses_nothing(host: Host, flash: Path) -> None:
    # pyexec's reader takes every byte the USB endpoint hands it; flow control (here the
    # pty's buffer, on a board the endpoint's NAK) holds the rest at the host.
    rng = random.Random(7)
    payload = bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghij") for _ in range(60_000))
    source = b"with open('all.txt','wb') as f: f.write(b'" + payload + b"')"
    host.start_paste()
    host.write(source + b"\x04")  # all at once, and the end
    out = host.read_until(b"\x04>", timeout_s=60)
    assert out == b"\x01" * (len(source) // WINDOW) + b"\x04" + b"\x04\x04>"
    assert (flash / "all.txt").read_bytes() == payload


def test_a_compile_error_is_reported_as_pyexec_does(host: Host, flash: Path) -> None:
    host.start_paste()
    host.write(b"with open('ran.txt','w') as f: f.write('1')\nx = (\n\x04")
    out = host.read_until(b"\x04>")
    assert out == (b"\x04" + b"\x04" + b'Traceback (most recent call last):\r\n  File "<stdin>", '
                   b"line 3\r\nSyntaxError: invalid syntax\r\n" + b"\x04>")
    assert not (flash / "ran.txt").exists()  # nothing of it ran
    host.start_paste()  # the board is back at its raw REPL
    host.write(b"print('next')\x04")
    assert host.read_until(b"\x04>") == b"\x04next\n\x04\x04>"


def test_a_runtime_error_names_the_line_of_the_paste(board: VirtualBoard) -> None:
    script = "".join(f"v{i} = {i}\n" for i in range(400)) + "print('before')\n1 / 0\n"
    t = SerialTransport(board.port, baudrate=115200)
    try:
        t.enter_raw_repl()
        with pytest.raises(TransportExecError) as err:
            t.exec(script)
        assert err.value.error_output == ('Traceback (most recent call last):\r\n'
                                          '  File "<stdin>", line 402, in <module>\r\n'
                                          'ZeroDivisionError: divide by zero\r\n')
        assert t.use_raw_paste is True
        assert t.eval("v399") == 399  # it ran in the REPL's namespace up to the error
        t.exit_raw_repl()
    finally:
        t.close()


def test_ctrl_c_during_the_paste_aborts_it_as_pyexec_does(host: Host, flash: Path) -> None:
    host.start_paste()
    host.write(b"with open('ran.txt','w') as f: f.write('1')\n" + b"#" * (WINDOW + 10) + b"\n")
    assert host.read(1) == b"\x01"  # the board took the first window
    host.write(b"\x03")
    # the reader's end, the (empty) output's end, KeyboardInterrupt with no traceback
    assert host.read_until(b">") == b"\x04\x04KeyboardInterrupt: \r\n\x04>"
    assert not (flash / "ran.txt").exists()
    host.start_paste()  # still the raw REPL, no reset
    host.write(b"print('alive')\x04")
    assert host.read_until(b"\x04>") == b"\x04alive\n\x04\x04>"


def test_ctrl_c_during_the_run_interrupts_the_pasted_code(host: Host, board: VirtualBoard) -> None:
    host.start_paste()
    host.write(b"import time\nprint('looping')\nwhile True:\n    time.sleep_ms(10)\n\x04")
    assert host.read_until(b"looping\n") == b"\x04looping\n"
    host.write(b"\x03")
    out = host.read_until(b"\x04>")
    assert out.startswith(b"\x04Traceback (most recent call last):\r\n")
    assert out.endswith(b"KeyboardInterrupt: \r\n\x04>")
    host.start_paste()
    host.write(b"print('alive')\x04")
    assert host.read_until(b"\x04>") == b"\x04alive\n\x04\x04>"


def test_kbd_intr_off_in_pasted_code_lets_ctrl_c_through_as_data(host: Host) -> None:
    # The same runtime path as the raw REPL: kbd_intr(-1) makes 0x03 a byte on stdin.
    host.start_paste()
    host.write(b"import micropython, sys, time\nmicropython.kbd_intr(-1)\nprint('go')\n"
               b"t = time.ticks_ms()\nwhile time.ticks_diff(time.ticks_ms(), t) < 300:\n"
               b"    time.sleep_ms(5)\nprint('done', repr(sys.stdin.read(1)))\n\x04")
    host.read_until(b"go\n")
    host.write(b"\x03")
    assert host.read_until(b"\x04>") == b"done '\\x03'\n\x04\x04>"


def test_systemexit_in_a_paste_soft_resets_as_from_the_raw_repl(host: Host,
                                                                 board: VirtualBoard) -> None:
    host.start_paste()
    host.write(b"raise SystemExit\x04")
    assert board.wait_ready() == "soft"
    out = host.read_until(RAW_BANNER)
    # the reader's end, then the raw REPL's two: no error printed for SystemExit
    assert out.startswith(b"\x04\x04\x04MPY: soft reboot\r\n")
    host.start_paste()  # main.py did not run: the board is at its raw REPL
    host.write(b"print('alive')\x04")
    assert host.read_until(b"\x04>") == b"\x04alive\n\x04\x04>"


def test_an_unknown_paste_command_is_refused_by_the_runtime(host: Host) -> None:
    host.write(b"\x05B\x01")
    assert host.read(3) == b"R\x00>"  # pyexec: refused, and the raw REPL's prompt
    host.write(b"print(1)\x04")
    assert host.read_until(b"\x04>") == b"OK1\n\x04\x04>"  # the plain raw REPL


def test_control_bytes_in_the_data_are_data(host: Host) -> None:
    # 0x01 and 0x02 are commands to the raw REPL's line, plain bytes to the paste reader.
    host.start_paste()
    host.write(b"print(repr('a\x01b\x02c'))\x04")
    assert host.read_until(b"\x04>") == b"\x04'a\\x01b\\x02c'\n\x04\x04>"


def test_mpremote_fs_cp_of_several_sizes_both_ways(board: VirtualBoard, flash: Path,
                                                   tmp_path: Path) -> None:
    rng = random.Random(14)
    sizes = [0, 1, WINDOW - 1, WINDOW, WINDOW + 1, 255, 256, 257, 4097, 20_000]
    files = {f"f{n}.bin": rng.randbytes(n) for n in sizes}
    up, down = tmp_path / "up", tmp_path / "down"
    up.mkdir()
    down.mkdir()
    args: list[str] = []
    for name, data in files.items():
        (up / name).write_bytes(data)
        args += ["fs", "cp", str(up / name), f":{name}", "+"]
    result = mpremote(board.port, *args[:-1])
    assert result.returncode == 0, result.stderr + result.stdout
    args = []
    for name in files:
        args += ["fs", "cp", f":{name}", str(down / name), "+"]
    result = mpremote(board.port, *args[:-1])
    assert result.returncode == 0, result.stderr + result.stdout
    for name, data in files.items():
        assert (flash / name).read_bytes() == data
        assert (down / name).read_bytes() == data


@pytest.fixture(scope="module")
def transport(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SerialTransport, Path]]:
    flash = tmp_path_factory.mktemp("flash")
    with VirtualBoard("pico-4s", flash=flash) as vb:
        vb.wait_ready()
        t = SerialTransport(vb.port, baudrate=115200)
        t.enter_raw_repl()
        yield t, flash
        t.close()


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000))
def test_fs_writefile_and_readfile_keep_every_byte(transport: tuple[SerialTransport, Path],
                                                   data: bytes) -> None:
    t, flash = transport
    t.fs_writefile("h.bin", data)
    assert (flash / "h.bin").read_bytes() == data
    assert t.fs_readfile("h.bin") == data
    assert t.use_raw_paste is True


def test_a_watchdog_started_by_a_paste_bites_mid_paste_and_the_board_comes_back(
        host: Host, board: VirtualBoard) -> None:
    # The same runtime path as the raw REPL: the pasted code starts the watchdog; the
    # next paste stalls half way (the host stops sending), nothing feeds it, it bites.
    host.start_paste()
    host.write(b"import machine\nw = machine.WDT(timeout=300)\nprint('armed')\x04")
    assert host.read_until(b"\x04>") == b"\x04armed\n\x04\x04>"
    host.start_paste()
    host.write(b"print('never')\n" + b"#" * 200)
    board.wait_reset("watchdog")
    assert board.wait_ready() == "watchdog"
    host.read_until(b">>> ")  # a hard reset: the friendly REPL, the half paste gone
    host.write(b"print(40 + 2)\r")
    assert host.read_until(b">>> ", timeout_s=10) == b"print(40 + 2)\r\n42\r\n>>> "
    host.raw_repl()
    host.start_paste()
    host.write(b"import machine\nprint(machine.reset_cause() == machine.WDT_RESET)\x04")
    assert host.read_until(b"\x04>") == b"\x04True\n\x04\x04>"


def test_the_esp32_board_gives_the_same_window(tmp_path: Path) -> None:
    with VirtualBoard("esp32-4s", flash=tmp_path / "flash") as vb:
        vb.wait_ready()
        h = Host(vb.port)
        try:
            h.raw_repl()
            assert h.start_paste() == WINDOW
            h.write(b"import sys\nprint(sys.implementation.name)\x04")
            assert h.read_until(b"\x04>") == b"\x04micropython\n\x04\x04>"
        finally:
            h.close()
