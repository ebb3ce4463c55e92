"""The virtual dev board: what a Pico or ESP32 presents over USB, on a pseudo-terminal.

Real MicroPython (the WebAssembly port, run by Node: ``vboard.mjs``) serves its REPL
on a pty this process makes; the board's flash is a host folder that survives the
board's resets and restarts. Plain ``mpremote connect <port>`` works against it.
See docs/virtual_board.md for what is faithful and what is not yet.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..boards import BoardFileError, load_board
from ..errors import CellguardError, SetupError
from ..paths import boards_dir, firmware_dir, micropython_mjs
from .adc import AdcModel
from .afe import ChipWiring, MonitorChip
from .controls import PlantControls
from .i2c import I2cBus, I2cDevice
from .plant import Plant, PlantTruth
from .sensors import SensorModel
from .silicon import Silicon
from .wiring import PinWiring

BOOT_TIMEOUT_S = 30.0
MCUS = ("rp2040", "esp32")  # the board files' `mcu` values a virtual board emulates
TICK_MS = 10.0  # board time between plant ticks (and at once when an output pin changes)
# (scl, sda) of I2C0 by default: the bus attach_i2c() means without `bus`.
I2C0_PINS = {"rp2040": (5, 4), "esp32": (18, 19)}
_EXITED = object()  # the board process ended (the event reader's last word)


def vboard_script() -> Path:
    return Path(__file__).resolve().parent / "vboard.mjs"


class VirtualBoardError(CellguardError):
    """The virtual board could not start or stopped unexpectedly."""


def install_firmware(flash: str | os.PathLike[str], board: str,
                     built: dict[str, bytes] | None = None) -> None:
    """Put the working tree's firmware on a board's flash folder as a deploy by hand
    would (docs/firmware.md): ``cellguard_fw/`` (sources, less what only the host
    uses), ``main.py`` and the board file as ``board.json``. ``built``: the package
    compiled as a deploy compiles it (``deploy.build.built_firmware()``: ``.mpy``
    files by name) instead of its sources, so the board imports without compiling
    at each boot, as a deployed board does."""
    folder = Path(flash)
    fw = firmware_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if built is None:
        shutil.copytree(fw / "cellguard_fw", folder / "cellguard_fw", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "hal_sim.py", "_cpython*",
                                                      "codec_mirror.py"))
    else:
        for name, data in built.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
    shutil.copy(fw / "main.py", folder / "main.py")
    shutil.copy(boards_dir() / f"{board}.json", folder / "board.json")


class VirtualBoard(PlantControls):
    """A virtual dev board on a pty; ``with VirtualBoard(...) as vb: vb.port``.

    ``flash`` is the folder that holds the board's filesystem (made if missing; a
    temporary one, removed on close, when not given). ``stop()`` unplugs the board
    (the process ends, the files stay); ``start()`` plugs it back in: a power-on boot
    from the same folder, on a new pty.

    ``plant=True`` (the default) wires the board file's pins to a plant, as
    ``SimulatedBoard`` has one (``seed``, ``initial_soc_pct``, ``ambient_c``,
    ``noise_lsb``, ``sensors`` as there; ``adc``: the MCU's converter model, by
    default the board's own): ``set_current``, ``inject``, ``truth`` ... act on it
    and it steps on the board's clock (``time_ms``, board milliseconds).

    ``silicon``: the chip's behaviours where silicon bites (``Silicon``; by default
    the board's MCU as it is, ``Silicon.default(mcu)``). ``flash_stall_ms``, when
    given, replaces its typical flash stall (0: none).
    """

    NOT_RUNNING = (VirtualBoardError, "the virtual board is not running (start() first)")

    def __init__(self, board: str = "pico-4s", flash: str | os.PathLike[str] | None = None,
                 speed: float = 1.0, plant: bool = True, seed: int = 1,
                 initial_soc_pct: float = 50.0, ambient_c: float = 25.0,
                 noise_lsb: float | None = None, sensors: dict[str, Any] | None = None,
                 adc: str | None = None, history_s: float = 600.0,
                 flash_stall_ms: float | None = None, silicon: Silicon | None = None,
                 i2c_host_timeout_s: float = 2.0) -> None:
        self.board: dict[str, Any] = load_board(board)
        if self.board.get("mcu") not in MCUS:
            raise CellguardError(
                f"board {self.board.get('name', board)!r} is not for a microcontroller a "
                f"virtual dev board emulates ({', '.join(MCUS)}): choose a board file with "
                "one as its `mcu`, such as pico-4s or esp32-4s")
        if not speed > 0:
            raise CellguardError(f"speed must be above 0, not {speed}")
        self.speed = speed
        if silicon is None:
            silicon = Silicon.default(self.board["mcu"])
        elif not isinstance(silicon, Silicon):
            raise CellguardError(f"silicon must be a Silicon, not {silicon!r}")
        if flash_stall_ms is not None:
            silicon = silicon.changed(flash_stall_ms=flash_stall_ms)
        self.silicon = silicon
        self.seed = seed
        self.flash_stalls: list[int] = []  # board ms (plant clock) each flash stall began
        if not i2c_host_timeout_s > 0:
            raise CellguardError(f"i2c_host_timeout_s must be above 0, not {i2c_host_timeout_s}")
        self.i2c_host_timeout_s = float(i2c_host_timeout_s)
        # The chips on the board's I2C buses, by (scl, sda): other chips on the board,
        # they keep their state across the MCU's resets and restarts.
        self._i2c: dict[tuple[int, int], I2cBus] = {}
        self.i2c_errors: list[str] = []  # a device that raised: the board saw EIO
        self.flash_stall_lengths: list[float] = []  # and how long it lasted (board ms)
        # Writes that found the host holding the port without reading: (board ms when
        # given up, ms waited, bytes dropped).
        self.usb_drops: list[tuple[int, float, int]] = []
        self.repl_entries: list[str] = []  # each time the board sat at its REPL: the cause
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if flash is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cellguard-vflash-")
            flash = self._tmp.name
        self.flash = Path(flash)
        if self.flash.exists() and not self.flash.is_dir():
            raise CellguardError(f"--flash {self.flash}: not a folder")
        self.flash.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
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
        self._events_q: queue.Queue[object] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._ctrl_lock = threading.Lock()
        # The plant (PlantControls' state): stepped on the board's clock by its ticks.
        self._lock = threading.RLock()
        self._injections: list[tuple[str, dict[str, Any]]] = []
        self.history: deque[tuple[int, PlantTruth]] = deque(
            maxlen=max(int(history_s * 1000 / TICK_MS), 1))
        self.tick_hooks: list[Callable[[VirtualBoard], None]] = []  # at each plant tick
        self.error: BaseException | None = None  # what a tick hook raised (check())
        self.time_ms = 0  # board time of the plant's last tick
        self._plant_ms: int | None = None
        self.plant_ticks = 0
        self.wiring: PinWiring | ChipWiring | None = None
        self.chip: MonitorChip | None = None  # a board whose cells a monitor chip measures
        if plant:
            config = dict(sensors or {})
            kind = adc or config.pop("adc", None) or self.board.get("sensors", {}).get(
                "adc") or self.board["mcu"]
            config["adc"] = None  # the converter is modelled per reading (wiring.py)
            try:
                self.plant = Plant(self.board, seed=seed, initial_soc_pct=initial_soc_pct,
                                   ambient_c=ambient_c)
                self.sensors = SensorModel(self.board, seed=seed, noise_lsb=noise_lsb,
                                           config=config)
                self.adc_model = AdcModel(kind, seed=seed)
            except ValueError as exc:
                raise BoardFileError(str(exc)) from None
            if "afe" in self.board:  # a monitor chip on the I2C pins measures the cells
                self.chip = MonitorChip(self.board)
                pins = self.board["pins"]["i2c"]
                self.attach_i2c(self.chip.address, self.chip.chip, (pins["scl"], pins["sda"]))
                self.wiring: PinWiring | ChipWiring | None = ChipWiring(self.chip, self.sensors)
            else:
                self.wiring = PinWiring(self.board, self.sensors, self.adc_model,
                                        int(self.sensors.adc_samples))

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
        options: dict[str, Any] = {"speed": self.speed, "mcu": self.board["mcu"],
                                   "unique_id": self.unique_id.hex(),
                                   "silicon": self.silicon.options(), "seed": self.seed,
                                   "i2c_host_timeout_ms": self.i2c_host_timeout_s * 1000.0}
        if self.wiring is not None:
            options["wiring"] = self.wiring.options(TICK_MS)
        ctrl_r, ctrl_w = os.pipe()  # host control: the board reads it without blocking
        os.set_blocking(ctrl_r, False)
        os.set_blocking(ctrl_w, False)  # the host never waits long on a busy board
        self._plant_ms = None  # a new process: its clock starts again at power-on
        if self.wiring is not None:  # the analog inputs are there before the chip boots
            with self._lock:
                lines = self.wiring.code_lines(self.plant)
            os.write(ctrl_w, "".join(f"{line}\n" for line in [*lines, "commit"]).encode())
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
        self._events_q = queue.Queue()
        self._reader = threading.Thread(target=self._read_events, args=(self._events,),
                                        name="vboard-events", daemon=True)
        self._reader.start()
        self.resets = []
        self.repl_entries = []
        self.port = port
        self.wait_booted(timeout_s)
        return port

    def stop(self) -> None:
        """Unplug the board: the process ends at once; the flash folder keeps the files."""
        proc, self._proc = self._proc, None
        self._paused = False
        if proc is not None:
            if proc.poll() is None:
                proc.kill()  # SIGKILL ends a stopped process too
            proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
            self._reader = None
        if self._events is not None:
            self._events.close()
            self._events = None
        with self._ctrl_lock:
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
    def flash_stall_ms(self) -> float:
        """The typical flash stall (board ms; 0: none), ``silicon.flash_stall_ms``."""
        return self.silicon.flash_stall_ms

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- what the board reports
    def _read_events(self, events: IO[bytes]) -> None:
        """The reader thread: plant ticks are handled here at once (the board waits
        for nobody); every other line is queued for :meth:`_event`."""
        fd = events.fileno()
        pending = bytearray()
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                pending += chunk
                while (nl := pending.find(b"\n")) >= 0:
                    line = bytes(pending[:nl]).decode()
                    del pending[: nl + 1]
                    if line.startswith("tick "):
                        self._tick(line)
                    elif line.startswith("stall "):
                        _, start, length = line.split(" ")
                        self.flash_stall_lengths.append(float(length))
                        self.flash_stalls.append(int(start))
                    elif line.startswith("usbdrop "):
                        _, at, waited, dropped = line.split(" ")
                        self.usb_drops.append((int(at), float(waited), int(dropped)))
                    elif line.startswith("i2c "):
                        self._i2c_transfer(line)
                    else:
                        self._events_q.put(line)
        except (OSError, ValueError):
            pass  # closed by stop()
        finally:
            self._events_q.put(_EXITED)

    def _event(self, timeout_s: float) -> str | None:
        assert self._events is not None, "start() first"
        try:
            line = self._events_q.get(timeout=max(timeout_s, 0.0))
        except queue.Empty:
            return None
        if line is _EXITED:
            self._events_q.put(_EXITED)  # and for every later call
            raise VirtualBoardError("the virtual board's process (node) exited")
        assert isinstance(line, str)
        return line

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
            elif kind == "ready":
                self.repl_entries.append(cause)
            if (kind == "ready" and what == "reach its REPL") or (
                    kind == "boot" and what == "boot") or (
                    kind == "reset" and what == f"reset ({cause})"):
                return cause

    # -- the host's side of the pins
    def _send(self, line: str, droppable: bool = False) -> bool:
        """Write one control line. Up to PIPE_BUF (4096 bytes) a pipe writes it whole
        or not at all; a longer one (an I2C answer of a long read) is written in parts
        with the pipe held, so no other line lands inside it.
        A board that reads none for a while (a busy moment) makes a host command wait;
        a ``droppable`` line (fresh ADC codes: the next tick brings newer) is dropped."""
        data = memoryview(line.encode() + b"\n")
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while True:
            with self._ctrl_lock:
                if self._ctrl is None:
                    if droppable:
                        return False
                    raise VirtualBoardError("the virtual board is not running")
                try:
                    data = data[os.write(self._ctrl, data):]
                    while len(data):  # a long line: the rest, before any other line
                        try:
                            data = data[os.write(self._ctrl, data):]
                        except BlockingIOError:
                            if time.monotonic() > deadline:
                                raise VirtualBoardError(
                                    "the virtual board reads no commands") from None
                            time.sleep(0.0005)
                    return True
                except BlockingIOError:
                    if droppable:
                        return False
            if time.monotonic() > deadline:
                raise VirtualBoardError("the virtual board reads no commands")
            time.sleep(0.001)

    # -- the plant on the board's clock
    def _tick(self, line: str) -> None:
        """A plant tick from the board: ``tick <board ms> <levels of wiring.watch>``.
        The plant runs from the last tick to this one with the outputs as they were,
        then takes the levels now; the ADC inputs follow."""
        if self.wiring is None:
            return
        _, ms_text, levels_text = line.split(" ")
        ms = int(ms_text)
        levels = [int(x) for x in levels_text.split(",") if x]  # none: a chip drives the FETs
        with self._lock:
            if self._plant_ms is not None and ms > self._plant_ms:
                self.plant.step((ms - self._plant_ms) / 1000.0)
            if self._plant_ms is None or ms > self._plant_ms:
                self._plant_ms = ms
            self.time_ms = ms
            if self.chip is not None:
                self.chip.advance(ms)  # the chip's protections, on the board's clock
            self.plant.outputs = self.wiring.outputs(levels)
            self.plant_ticks += 1
            self.history.append((ms, self.plant.truth()))
            self._run_hooks()
            lines = self.wiring.code_lines(self.plant)
            feedback = self.wiring.feedback
            closed = self.plant.output_closed
            # One tick's conversions reach the board together or not at all ("commit"
            # makes them current at once): as real pins, which all move with the plant,
            # never the cells after a step and the current from before it. Sent under
            # the lock: a pin the host takes over meanwhile (set_adc_mv) gets its
            # voltage after this tick's codes, never before them.
            group = "\n".join([*lines, "commit"])
            if len(group) < 4000:  # one write below the pipe's atomic size
                self._send(group, droppable=True)
            else:
                for code_line in [*lines, "commit"]:
                    if not self._send(code_line, droppable=True):
                        break
        if feedback is not None:  # the auxiliary contact pulls the pin low while closed
            self._send(f"drive {feedback} {0 if closed else 1}", droppable=True)

    def _run_hooks(self) -> None:
        for hook in list(self.tick_hooks):
            try:
                hook(self)
            except Exception as exc:  # the reader thread must go on: check() raises it
                self.error = exc
                self.tick_hooks.remove(hook)

    def check(self) -> None:
        """Raise what a tick hook (a script) raised, or say that the board's process
        ended while it was meant to run."""
        if self.error is not None:
            raise self.error
        if self._proc is not None and self._proc.poll() is not None:
            raise VirtualBoardError("the virtual board's process (node) exited")

    @property
    def time_s(self) -> float:
        """Board time of the plant's last tick, seconds."""
        return self.time_ms / 1000.0

    def power_cycle(self) -> None:
        """Power off and on again with USB kept (the same pty): a power-on reset;
        the flash folder keeps its files, the plant its state."""
        self._send("power")

    def pause(self) -> None:
        """Stop the board where it is (its process stopped, its clock with it, as
        :meth:`freeze` does) until :meth:`resume`; the plant stands still too."""
        if self.running and not self._paused:
            assert self._proc is not None
            os.kill(self._proc.pid, signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self._paused and self._proc is not None:
            os.kill(self._proc.pid, signal.SIGCONT)
        self._paused = False

    # -- I2C: chips on the board's buses
    def i2c_bus(self, bus: tuple[int, int] | None = None) -> I2cBus:
        """The I2C bus on pins ``bus`` = (scl, sda) (default: I2C0's default pins, GPIO5/4
        on a Pico, 18/19 on an ESP32): its devices, faults (``nack``, ``timeout``,
        ``corrupt``, ``clear_faults``) and counters. ``machine.I2C`` and ``SoftI2C`` on
        the same pins reach the same bus."""
        key = self._bus_key(bus)
        with self._lock:
            if key not in self._i2c:
                self._i2c[key] = I2cBus(f"scl={key[0]},sda={key[1]}")
            return self._i2c[key]

    def attach_i2c(self, address: int, device: I2cDevice,
                   bus: tuple[int, int] | None = None) -> None:
        """Put a chip on the board at a 7-bit ``address`` of the bus on pins ``bus``
        (before or after start(); it stays across resets and restarts).

        The device runs in the launcher's reader thread while the board waits: it may
        use the plant and send commands (``set_adc_mv``, ``set_current``, ...), but not
        wait for the board (``pins()``, ``wait_*``): those wait on that same thread."""
        self.i2c_bus(bus).attach(address, device)

    def detach_i2c(self, address: int, bus: tuple[int, int] | None = None) -> I2cDevice:
        return self.i2c_bus(bus).detach(address)

    def _bus_key(self, bus: tuple[int, int] | None) -> tuple[int, int]:
        if bus is None:
            return I2C0_PINS[self.board["mcu"]]
        try:
            scl, sda = (int(p) for p in bus)
        except (TypeError, ValueError):
            raise CellguardError(
                f"an I2C bus is named by its pins (scl, sda), not {bus!r}") from None
        return scl, sda

    def _i2c_transfer(self, line: str) -> None:
        """A transfer from the board (reader thread): ``i2c <seq> <board ms> <scl>,<sda>
        <ops>``; the board waits for the answer on the control pipe."""
        _, seq, ms, pins, ops = line.split(" ")
        scl, sda = (int(p) for p in pins.split(","))
        bus = self.i2c_bus((scl, sda))
        try:
            reply = ",".join(bus.transfer(ops.split(","), float(ms)))
        except Exception as exc:  # a device model's bug: the board sees EIO, the host keeps it
            self.i2c_errors.append(f"{bus.name}: {type(exc).__name__}: {exc}")
            reply = "E"
        # The board gone (stop()) or stuck: it times the transfer out itself.
        with contextlib.suppress(VirtualBoardError):
            self._send(f"i2c {seq} {reply}")

    def hang(self, seconds: float) -> None:
        """Stop the firmware for ``seconds`` of board time, as a bug or a stuck
        peripheral would: the interpreter stays inside its next call, nothing feeds
        the watchdog, the pads keep their levels; the watchdog (if started) resets
        the board, which then boots again from its flash."""
        self._send(f"hang {float(seconds) * 1000.0!r}")

    def freeze(self, seconds: float) -> None:
        """Stop the board's process for ``seconds`` of host time (SIGSTOP, then
        SIGCONT), as a loaded machine or a debugger does. Not a board event: the
        board's clock stands still with it (one clock read counts at most 50 ms, or
        4 ms of host time at ``speed``), so the watchdog does not bite."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise VirtualBoardError("the virtual board is not running")
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(proc.pid, signal.SIGCONT)

    @property
    def watchdog_resets(self) -> int:
        """Watchdog resets since start(), counting what the board has reported by now."""
        self.poll()
        return self.resets.count("watchdog")

    def wait_time(self, board_ms: int, timeout_s: float = BOOT_TIMEOUT_S) -> None:
        """Wait until the plant has ticked at ``board_ms`` (board time) or later."""
        deadline = time.monotonic() + timeout_s
        while self.time_ms < board_ms:
            if not self.running:
                raise VirtualBoardError("the virtual board's process (node) exited")
            if time.monotonic() > deadline:
                raise VirtualBoardError(f"board time did not reach {board_ms} ms within "
                                        f"{timeout_s:g} s")
            time.sleep(0.005)

    def set_adc_mv(self, pin: int, mv: float) -> None:
        """Put a voltage (millivolts) on an ADC pin (from now on the pin follows the
        host's voltage, not the plant's)."""
        with self._lock:  # after any tick's codes already computed for the pin
            if self.wiring is not None:
                self.wiring.manual.add(int(pin))
            self._send(f"adc {int(pin)} {float(mv)!r}")

    def hold_presence(self, held: bool = True) -> None:
        """Hold (or let go of) the presence button on the board file's
        ``pins.presence`` (active low: held pulls it to ground)."""
        pin = self.board.get("pins", {}).get("presence")
        if pin is None:
            raise CellguardError(f"board {self.board['name']} names no pins.presence")
        self.drive_pin(pin, 0 if held else None)

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

    def poll(self) -> None:
        """Take in what the board has reported so far (its resets), without waiting."""
        while (line := self._event(0.0)) is not None:
            kind, _, cause = line.partition(" ")
            if kind == "reset":
                self.resets.append(cause)
            elif kind == "ready":
                self.repl_entries.append(cause)
            elif kind == "pins":
                self._pins_reply = json.loads(cause)

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
