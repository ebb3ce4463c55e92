"""Firmware runtimes for the simulated board: the same firmware, two interpreters.

``micropython`` (default) runs the firmware under the official MicroPython
WebAssembly port in a Node process; ``cpython`` imports it in-process, faster
and easier to debug. Both satisfy :class:`FirmwareRuntime`, chosen by name.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import IO, Any, ClassVar

from ..errors import CellguardError, SetupError
from ..paths import firmware_dir, micropython_mjs, mp_runner


class FirmwareCrash(CellguardError):
    """The firmware raised an exception: a bug the simulator must not hide."""


I2cTransport = Callable[[list[str]], list[str]]
"""One I2C transfer of the board's controller: operations in, results out, as
``cellguard.sim.i2c.I2cBus.transfer`` takes and gives them."""


class FirmwareRuntime(ABC):
    name: ClassVar[str]

    @abstractmethod
    def boot(self, board_json: str, unique_id: bytes, i2c: I2cTransport | None = None) -> None:
        """Start (or restart) the firmware for a board; ``i2c`` carries the transfers
        of a board whose sensors sit on an I2C bus (a battery-monitor chip)."""

    @abstractmethod
    def step(self, dt_ms: int, codes: bytes, rx: bytes) -> tuple[bytes, int]:
        """Run one control period; return (bytes written, the ``OUT_*`` flags of
        what the board drives: ``hal_sim.OUT_CLOSED`` etc., with the balancing
        mask from bit ``hal_sim.OUT_BALANCE_SHIFT`` up)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the runtime."""


class CPythonRuntime(FirmwareRuntime):
    name = "cpython"

    def __init__(self) -> None:
        self._board = None
        # The simulated flash: survives the firmware's resets, not the runtime.
        self._flash = tempfile.TemporaryDirectory(prefix="cellguard-flash-")

    def boot(self, board_json: str, unique_id: bytes, i2c: I2cTransport | None = None) -> None:
        fw = str(firmware_dir())
        if fw not in sys.path:
            sys.path.insert(0, fw)
        from cellguard_fw.hal_sim import SimBoard

        xfer = None if i2c is None else (lambda ops: ",".join(i2c(ops.split(","))))
        try:
            self._board = SimBoard(board_json, unique_id, self._flash.name, xfer)
        except Exception as exc:
            raise FirmwareCrash(f"firmware failed to boot: {exc!r}") from exc

    @property
    def firmware(self) -> Any:
        """The firmware's ``hal_sim.SimBoard`` (its ``hal``, its ``bms``), after boot()."""
        assert self._board is not None, "boot() first"
        return self._board

    def step(self, dt_ms: int, codes: bytes, rx: bytes) -> tuple[bytes, int]:
        assert self._board is not None, "boot() first"
        try:
            tx, outputs = self._board.step(dt_ms, codes, rx)
        except Exception as exc:
            raise FirmwareCrash(f"firmware raised {exc!r}") from exc
        return tx, int(outputs)

    def close(self) -> None:
        self._flash.cleanup()


class MicroPythonRuntime(FirmwareRuntime):
    """The firmware under real MicroPython (WebAssembly port, run by Node)."""

    name = "micropython"

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise SetupError("Node.js is needed for the MicroPython runtime (install Node 18+)")
        self._proc = subprocess.Popen(
            [node, str(mp_runner()), str(micropython_mjs()), str(firmware_dir())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in: IO[bytes] = self._proc.stdin
        self._out: IO[bytes] = self._proc.stdout
        self._pending = bytearray()
        self._i2c: I2cTransport | None = None

    def _readline(self, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        fd = self._out.fileno()
        while True:
            nl = self._pending.find(b"\n")
            if nl >= 0:
                line = bytes(self._pending[:nl])
                del self._pending[: nl + 1]
                return line
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0.0))
            if not ready:
                self._proc.kill()
                raise FirmwareCrash(
                    f"the MicroPython runtime did not answer within {timeout_s:g} s"
                )
            chunk = os.read(fd, 65536)
            if not chunk:
                raise FirmwareCrash("the MicroPython runtime (node) exited")
            self._pending += chunk

    def _send(self, line: str) -> None:
        try:
            self._in.write(line.encode("ascii") + b"\n")
        except (BrokenPipeError, ValueError):
            raise FirmwareCrash("the MicroPython runtime (node) exited") from None

    def _request(self, line: str, timeout_s: float = 30.0) -> str:
        self._send(line)
        while True:
            text = self._readline(timeout_s).decode("ascii")
            if not text.startswith("I "):
                break
            # An I2C transfer in the middle of the request: answer it, wait on.
            if self._i2c is None:
                self._send("i E")
            else:
                self._send("i " + ",".join(self._i2c(text[2:].split(","))))
        if text.startswith("error "):
            raise FirmwareCrash(
                "firmware raised under MicroPython:\n" + bytes.fromhex(text[6:]).decode()
            )
        return text

    def install_mpy(self, built: dict[str, bytes]) -> int:
        """Put the firmware package as a deploy builds it (``built``: mpy-cross's
        ``.mpy`` files by name, ``cellguard.deploy.build.built_firmware()``) first on the
        interpreter's ``sys.path``, so that it imports what a board imports, and imports
        a released module again (``admin``, ``life_admin``) in a board's time, not a
        compile's; return the bytes of .mpy written. Call before :meth:`boot`."""
        lines = ["import os, sys", "os.mkdir('/mpy')", "os.mkdir('/mpy/cellguard_fw')"]
        lines += [f"with open('/mpy/{name}', 'wb') as f:\n"
                  f"    f.write(bytes.fromhex('{data.hex()}'))" for name, data in built.items()]
        lines.append("sys.path.insert(0, '/mpy')")
        self.exec("\n".join(lines))
        return sum(len(b) for b in built.values())

    def boot(self, board_json: str, unique_id: bytes, i2c: I2cTransport | None = None) -> None:
        self._i2c = i2c
        bus = "1" if i2c is not None else "0"
        self._request(f"B {board_json.encode().hex()} {unique_id.hex()} {bus}")

    def step(self, dt_ms: int, codes: bytes, rx: bytes) -> tuple[bytes, int]:
        reply = self._request(f"S {dt_ms} {codes.hex()} {rx.hex() or '-'}")
        tx, outputs = reply.split(" ")
        return (b"" if tx == "-" else bytes.fromhex(tx)), int(outputs)

    def exec(self, source: str, timeout_s: float = 120.0) -> str:
        """Run Python source in the firmware's interpreter; return what it printed."""
        reply = self._request(f"X {source.encode().hex()}", timeout_s)
        return bytes.fromhex(reply[3:]).decode()

    def exec_timed(self, source: str, timeout_s: float = 120.0) -> tuple[str, int]:
        """:meth:`exec`, timed inside the Node process: (what it printed, the ns the call
        into MicroPython took). A garbage collection that ``gc.collect()`` asked for is
        in that time: this port runs it when the call returns to JavaScript."""
        _, ns, out = self._request(f"T {source.encode().hex()}", timeout_s).split(" ")
        return bytes.fromhex(out).decode(), int(ns)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._in.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._out.close()


RUNTIMES: dict[str, type[FirmwareRuntime]] = {
    CPythonRuntime.name: CPythonRuntime,
    MicroPythonRuntime.name: MicroPythonRuntime,
}


def make_runtime(name: str) -> FirmwareRuntime:
    try:
        cls = RUNTIMES[name]
    except KeyError:
        raise CellguardError(
            f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}"
        ) from None
    return cls()
