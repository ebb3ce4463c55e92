"""The virtual dev board: what a Pico or ESP32 presents over USB, on a pseudo-terminal.

Real MicroPython (the WebAssembly port, run by Node: ``vboard.mjs``) serves its REPL
on a pty this process makes; the board's flash is a host folder that survives the
board's resets and restarts. Plain ``mpremote connect <port>`` works against it.
See docs/virtual_board.md for what is faithful and what is not yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
import tty
from pathlib import Path
from typing import IO, Any

from ..boards import load_board
from ..errors import CellguardError, SetupError
from ..paths import micropython_mjs

BOOT_TIMEOUT_S = 30.0
MCUS = ("rp2040", "esp32")  # the board files' `mcu` values a virtual board emulates


def vboard_script() -> Path:
    return Path(__file__).resolve().parent / "vboard.mjs"


class VirtualBoardError(CellguardError):
    """The virtual board could not start or stopped unexpectedly."""


class VirtualBoard:
    """A virtual dev board on a pty; ``with VirtualBoard(...) as vb: vb.port``.

    ``flash`` is the folder that holds the board's filesystem (made if missing; a
    temporary one, removed on close, when not given). ``stop()`` unplugs the board
    (the process ends, the files stay); ``start()`` plugs it back in: a power-on boot
    from the same folder, on a new pty.
    """

    def __init__(self, board: str = "pico-4s", flash: str | os.PathLike[str] | None = None,
                 speed: float = 1.0) -> None:
        self.board: dict[str, Any] = load_board(board)
        if self.board.get("mcu") not in MCUS:
            raise CellguardError(
                f"board {self.board.get('name', board)!r} is not for a microcontroller a "
                f"virtual dev board emulates ({', '.join(MCUS)}): choose a board file with "
                "one as its `mcu`, such as pico-4s or esp32-4s")
        if not speed > 0:
            raise CellguardError(f"speed must be above 0, not {speed}")
        self.speed = speed
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if flash is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cellguard-vflash-")
            flash = self._tmp.name
        self.flash = Path(flash)
        if self.flash.exists() and not self.flash.is_dir():
            raise CellguardError(f"--flash {self.flash}: not a folder")
        self.flash.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None
        self._events: IO[bytes] | None = None
        self._pending = bytearray()
        self._ctrl: int | None = None
        self._pins_reply: list[dict[str, int]] | None = None
        # Like a chip's: one per board, and per flash folder (a board keeps its flash).
        self.unique_id = hashlib.sha256(
            f"{self.board['mcu']}:{self.flash.resolve()}".encode()).digest()[
                : 8 if self.board["mcu"] == "rp2040" else 6]
        self.port = ""
        self.resets: list[str] = []  # the board's resets since start(), by cause

    # -- plugging in and out
    def start(self, timeout_s: float = BOOT_TIMEOUT_S) -> str:
        """Power the board on; return its port once it has booted."""
        if self._proc is not None:
            raise VirtualBoardError("the virtual board is running already")
        node = shutil.which("node")
        if node is None:
            raise SetupError("Node.js is needed for the virtual board (install Node 18+)")
        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # no echo, no line editing: a USB CDC port is a byte pipe
            port = os.ttyname(slave)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        options = {"speed": self.speed, "mcu": self.board["mcu"],
                   "unique_id": self.unique_id.hex()}
        ctrl_r, ctrl_w = os.pipe()  # host control: the board reads it without blocking
        os.set_blocking(ctrl_r, False)
        try:
            self._proc = subprocess.Popen(
                [node, str(vboard_script()), str(micropython_mjs()), str(master),
                 str(self.flash), json.dumps(options)],
                stdin=ctrl_r, stdout=subprocess.PIPE, pass_fds=(master,))
        except BaseException:
            os.close(ctrl_w)
            raise
        finally:
            os.close(master)  # the board holds these now
            os.close(ctrl_r)
        self._ctrl = ctrl_w
        assert self._proc.stdout is not None
        self._events = self._proc.stdout
        self._pending.clear()
        self.resets = []
        self.port = port
        self.wait_booted(timeout_s)
        return port

    def stop(self) -> None:
        """Unplug the board: the process ends at once; the flash folder keeps the files."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._ctrl is not None:
            os.close(self._ctrl)
            self._ctrl = None

    def restart(self, timeout_s: float = BOOT_TIMEOUT_S) -> str:
        """A power cycle: unplug, plug back in; return the (new) port."""
        self.stop()
        return self.start(timeout_s)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> VirtualBoard:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- what the board reports
    def _event(self, timeout_s: float) -> str | None:
        assert self._events is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        fd = self._events.fileno()
        while True:
            nl = self._pending.find(b"\n")
            if nl >= 0:
                line = bytes(self._pending[:nl]).decode()
                del self._pending[: nl + 1]
                return line
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                raise VirtualBoardError("the virtual board's process (node) exited")
            self._pending += chunk

    def _wait_for(self, what: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            line = self._event(max(deadline - time.monotonic(), 0.0))
            if line is None:
                raise VirtualBoardError(f"the virtual board did not {what} within {timeout_s:g} s")
            kind, _, cause = line.partition(" ")
            if kind == "pins":
                self._pins_reply = json.loads(cause)
                if what == "pins":
                    return ""
            if kind == "reset":
                self.resets.append(cause)
            if (kind == "ready" and what == "reach its REPL") or (
                    kind == "boot" and what == "boot") or (
                    kind == "reset" and what == f"reset ({cause})"):
                return cause

    # -- the host's side of the pins
    def _send(self, line: str) -> None:
        if self._ctrl is None:
            raise VirtualBoardError("the virtual board is not running")
        os.write(self._ctrl, line.encode() + b"\n")

    def set_adc_mv(self, pin: int, mv: float) -> None:
        """Put a voltage (millivolts) on an ADC pin."""
        self._send(f"adc {int(pin)} {float(mv)!r}")

    def drive_pin(self, pin: int, level: int | None) -> None:
        """Drive an input pin high (1) or low (0) from outside; None lets it go."""
        self._send(f"drive {int(pin)} {'-' if level is None else (1 if level else 0)}")

    def pins(self, timeout_s: float = 10.0) -> list[dict[str, int]]:
        """Every pad's mode, pull, output latch and level, as the chip holds them."""
        self._pins_reply = None
        self._send("pins")
        self._wait_for("pins", timeout_s)
        assert self._pins_reply is not None
        return self._pins_reply

    def wait_reset(self, cause: str, timeout_s: float = BOOT_TIMEOUT_S) -> None:
        """Wait for the board's next reset of this cause ("soft", "reset" for
        machine.reset(), "watchdog"), reading past the others."""
        self._wait_for(f"reset ({cause})", timeout_s)

    def wait_booted(self, timeout_s: float = BOOT_TIMEOUT_S) -> None:
        """Wait until the board has (re)started: its flash is loaded, boot.py is next."""
        self._wait_for("boot", timeout_s)

    def wait_ready(self, timeout_s: float = BOOT_TIMEOUT_S) -> str:
        """Wait until the board sits at its REPL; return the cause of its last reset."""
        return self._wait_for("reach its REPL", timeout_s)
