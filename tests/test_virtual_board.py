"""The virtual dev board from the host's side of its pty: plain mpremote and a terminal.

Every test talks to real MicroPython (WebAssembly port under Node) over a real
pseudo-terminal; mpremote is the pinned one in the virtualenv, run as a subprocess.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellguard.errors import CellguardError
from cellguard.sim.virtual import VirtualBoard

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))
BANNER_END = b'Type "help()" for more information.\r\n>>> '


def mpremote(port: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MPREMOTE, "connect", port, *args], capture_output=True, text=True,
                          timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


class Terminal:
    """A person at a terminal: opens the port, types, reads what comes back."""

    def __init__(self, port: str) -> None:
        self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.seen = bytearray()

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def read(self, n: int, timeout_s: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < n:
            self._fill(deadline, f"{n} bytes")
        out = bytes(self.seen[:n])
        del self.seen[:n]
        return out

    def read_until(self, marker: bytes, timeout_s: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout_s
        while marker not in self.seen:
            self._fill(deadline, repr(marker))
        at = self.seen.index(marker) + len(marker)
        out = bytes(self.seen[:at])
        del self.seen[:at]
        return out

    def _fill(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {bytes(self.seen)!r}")
        try:
            self.seen += os.read(self.fd, 65536)
        except BlockingIOError:
            time.sleep(0.002)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def flash(tmp_path: Path) -> Path:
    return tmp_path / "flash"


@pytest.fixture
def board(flash: Path):
    with VirtualBoard("pico-4s", flash=flash) as vb:
        yield vb


def test_mpremote_fs_ls_lists_the_flash_folder(flash: Path) -> None:
    flash.mkdir()
    (flash / "hello.txt").write_text("hi\n")
    (flash / "lib").mkdir()
    with VirtualBoard("pico-4s", flash=flash) as vb:
        out = ok(mpremote(vb.port, "fs", "ls"))
    assert "hello.txt" in out and "lib/" in out
    # The runtime's own folders are not the board's.
    for name in ("dev", "proc", "tmp", "home"):
        assert f" {name}/" not in out


def test_mpremote_fs_cp_both_ways_keeps_every_byte(board: VirtualBoard, flash: Path,
                                                   tmp_path: Path) -> None:
    data = random.Random(14).randbytes(20_000)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    ok(mpremote(board.port, "fs", "cp", str(src), ":blob.bin"))
    assert (flash / "blob.bin").read_bytes() == data  # written through to the host folder
    back = tmp_path / "back.bin"
    ok(mpremote(board.port, "fs", "cp", ":blob.bin", str(back)))
    assert back.read_bytes() == data


def test_mpremote_exec_mkdir_rm_rmdir_reach_the_folder(board: VirtualBoard, flash: Path) -> None:
    assert ok(mpremote(board.port, "exec", "print(6 * 7)")).strip() == "42"
    ok(mpremote(board.port, "fs", "mkdir", ":lib", "+", "exec",
                "f = open('lib/m.py', 'w'); f.write('X = 1\\n'); f.close()"))
    assert (flash / "lib" / "m.py").read_text() == "X = 1\n"
    ok(mpremote(board.port, "exec", "import os; os.rename('lib/m.py', 'lib/n.py')"))
    assert not (flash / "lib" / "m.py").exists() and (flash / "lib" / "n.py").exists()
    ok(mpremote(board.port, "fs", "rm", ":lib/n.py", "+", "fs", "rmdir", ":lib"))
    assert not (flash / "lib").exists()


def test_mpremote_run_runs_a_host_file_on_the_board_without_storing_it(
        board: VirtualBoard, flash: Path, tmp_path: Path) -> None:
    script = tmp_path / "hello_board.py"
    script.write_text("import machine, os\n"
                      "print('on', len(machine.unique_id()), sorted(os.listdir()))\n")
    before = sorted(p.name for p in flash.iterdir())
    out = ok(mpremote(board.port, "run", str(script)))
    unique_id_len = 8 if board.board["mcu"] == "rp2040" else 6
    assert out.strip() == f"on {unique_id_len} {before}"
    assert sorted(p.name for p in flash.iterdir()) == before


def test_a_missing_file_is_enoent_as_on_a_board(board: VirtualBoard, tmp_path: Path) -> None:
    out = ok(mpremote(board.port, "exec",
                      "import errno, os\n"
                      "try:\n    os.stat('nope')\nexcept OSError as e:\n"
                      "    print(e.errno == errno.ENOENT, e.errno)"))
    assert out.split() == ["True", "2"]
    result = mpremote(board.port, "fs", "cp", ":nope", str(tmp_path / "x"))
    assert result.returncode != 0
    assert "No such file or directory" in result.stdout + result.stderr


def test_files_survive_a_power_cycle(board: VirtualBoard, tmp_path: Path) -> None:
    ok(mpremote(board.port, "exec", "f = open('kept.txt', 'w'); f.write('still here'); f.close()"))
    first = board.port
    board.restart()
    assert board.resets == [] and board.running
    assert ok(mpremote(board.port, "fs", "cat", ":kept.txt")) == "still here"
    assert first  # the port may be another pty after a replug, as with USB


def test_an_unclosed_write_never_replaces_the_file_on_the_host(board: VirtualBoard,
                                                               flash: Path) -> None:
    ok(mpremote(board.port, "exec", "f = open('a.txt', 'w'); f.write('old'); f.close()"))
    t = Terminal(board.port)
    try:
        t.type(b"\x02")
        t.read_until(BANNER_END)
        t.type(b"f = open('a.txt', 'w'); f.write('half of the new'); print('written')\r")
        t.read_until(b"written\r\n>>> ")
    finally:
        t.close()
    board.stop()  # unplugged with the file open
    assert (flash / "a.txt").read_text() == "old"
    (flash / ".b.txt.tmp~").write_text("a write cut short")
    board.start()
    out = ok(mpremote(board.port, "exec", "import os; print(sorted(os.listdir()))"))
    assert out.strip() == "['a.txt']"


def test_boot_py_then_main_py_and_soft_resets(flash: Path) -> None:
    flash.mkdir()
    (flash / "boot.py").write_text("with open('boot.log', 'a') as f:\n    f.write('b')\n")
    (flash / "main.py").write_text("with open('boot.log', 'a') as f:\n    f.write('m')\n"
                                   "MARK = 'main ran'\n")
    with VirtualBoard("pico-4s", flash=flash) as vb:
        assert vb.wait_ready() == "power_on"
        assert (flash / "boot.log").read_text() == "bm"
        # mpremote soft-resets from the raw REPL: boot.py runs, main.py does not.
        ok(mpremote(vb.port, "soft-reset"))
        assert (flash / "boot.log").read_text() == "bmb"
        assert vb.wait_ready() == "soft"
        # Ctrl-D at the friendly REPL: a fresh VM that runs boot.py and main.py again.
        t = Terminal(vb.port)
        try:
            t.type(b"\x02")
            t.read_until(BANNER_END)
            t.type(b"GONE = 1\r")
            t.read_until(b">>> ")
            t.type(b"\x04")
            out = t.read_until(BANNER_END)
            assert b"MPY: soft reboot\r\n" in out
            t.type(b"print(MARK, 'GONE' in globals())\r")
            assert b"main ran False\r\n" in t.read_until(b">>> ")
        finally:
            t.close()
        assert (flash / "boot.log").read_text() == "bmbbm"


def test_ctrl_c_interrupts_running_code(flash: Path) -> None:
    flash.mkdir()
    (flash / "main.py").write_text(
        "import time\nwhile True:\n    print('tick')\n    time.sleep_ms(50)\n")
    with VirtualBoard("pico-4s", flash=flash) as vb:
        t = Terminal(vb.port)
        try:
            t.read_until(b"tick")  # main.py runs forever: Ctrl-C stops it, the REPL follows
            t.type(b"\x03")
            out = t.read_until(b">>> ")
            assert b"KeyboardInterrupt" in out
            t.type(b"import time\rwhile True: print('tock'); time.sleep_ms(50)\r\r")
            t.read_until(b"tock\r\n")  # running (the echo has no CR LF after it)
            t.type(b"\x03")
            t.read_until(b"KeyboardInterrupt: \r\n>>> ")
            t.type(b"print(time.ticks_ms() > 0)\r")
            assert b"True\r\n" in t.read_until(b">>> ")
        finally:
            t.close()


def test_soft_reset_keeps_ticks_counting_from_power_on(board: VirtualBoard) -> None:
    before = int(ok(mpremote(board.port, "exec", "import time; print(time.ticks_ms())")))
    after = int(ok(mpremote(board.port, "soft-reset", "exec",
                            "import time; print(time.ticks_ms())")))
    assert after >= before


def test_a_board_without_a_microcontroller_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CellguardError, match="mcu"):
        VirtualBoard("sim-4s", flash=tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(CellguardError, match="not a folder"):
        VirtualBoard("pico-4s", flash=tmp_path / "file")


def test_cli_virtual_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    from cellguard.cli import main

    assert main(["sim", "--flash", str(tmp_path)]) != 0
    assert "--flash goes with --virtual" in capsys.readouterr().err
    assert main(["sim", "--virtual", "--runtime", "cpython"]) != 0
    assert "--runtime do not go with --virtual" in capsys.readouterr().err
    assert main(["sim", "--virtual", "--board", "sim-4s"]) != 0
    assert "mcu" in capsys.readouterr().err


def test_a_host_that_holds_the_port_without_reading_never_stops_the_board(flash: Path) -> None:
    # rp2 USB CDC: a write waits up to 500 ms for room, then is dropped; the board runs on.
    flash.mkdir()
    (flash / "main.py").write_text(
        "import time\n"
        "time.sleep_ms(500)\n"  # the host opens the port meanwhile
        "for i in range(30):\n"
        "    print('%04d' % i + 'x' * 995)\n"
        "    time.sleep_ms(1)\n"
        "with open('done', 'w') as f:\n"
        "    f.write('ran on')\n")
    with VirtualBoard("pico-4s", flash=flash) as vb:
        t = Terminal(vb.port)  # opened, not read
        try:
            deadline = time.monotonic() + 60
            while not (flash / "done").exists():
                assert time.monotonic() < deadline, "the board stalled on a full port"
                time.sleep(0.1)
            got = t.read_until(b"0000")
            time.sleep(0.5)
            while True:
                try:
                    got += os.read(t.fd, 1 << 16)
                except BlockingIOError:
                    break
        finally:
            t.close()
    lines = got.split(b"\n")
    assert lines[0].startswith(b"0000")
    assert 5 < len(lines) < 30  # the pty took some lines; the rest were dropped, not queued
