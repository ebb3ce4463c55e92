"""The simulated board: firmware + plant + sensor model behind a pseudo-terminal.

The host opens :attr:`SimulatedBoard.port` with pyserial exactly like
``/dev/ttyACM0``. Time is simulated: every control period the plant advances,
the sensor model turns it into ADC codes, the firmware runs one step and its
serial output goes to the pseudo-terminal. ``speed`` paces simulated time
against the wall clock (``math.inf``: as fast as it goes); ``host_lead_s``
also paces it to the host that has the port open (a host that pauses holds
the board); ``lockstep=True`` runs no thread at all and :meth:`advance` moves
time explicitly.

Faults are injected with :meth:`SimulatedBoard.inject` (see ``INJECTIONS``) and
removed with :meth:`SimulatedBoard.clear`; they are deterministic, so a seeded
run with the same injections at the same simulated times repeats exactly.
:meth:`SimulatedBoard.run_script` plays timed steps (``script.py``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import select
import struct
import termios
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from typing import Any

from ..boards import BoardFileError, load_board
from ..errors import PortError
from .afe import MonitorChip
from .controls import AMBIENT_RANGE_C as AMBIENT_RANGE_C  # re-exported: cli, tests
from .controls import INJECTIONS as INJECTIONS
from .controls import REQUIRED as REQUIRED
from .controls import PlantControls
from .plant import Plant, PlantTruth
from .pybamm_plant import MODELS as PYBAMM_MODELS  # imports PyBaMM only when used
from .pybamm_plant import PARAMETER_SETS, PybammPlant, check_choice, pybamm_board
from .runtime import FirmwareRuntime, make_runtime
from .sensors import SensorModel

TickHook = Callable[["SimulatedBoard"], None]

PLANTS = ("ecm", "pybamm")
"""``plant=``: the built-in equivalent-circuit plant (``plant.py``) or a PyBaMM
cell (``pybamm_plant.py``; needs PyBaMM, ``make pybamm-setup``)."""

HOST_STALL_S = 1.0
"""How long a host that has the port open but stopped reading may hold the board
back (a full pty, or ``host_lead_s`` reached) before it counts as gone."""

HOST_POLL_S = 0.0005
"""How often a board held back by its host looks whether the host has read."""

HOLD_POLL_S = 0.001
"""How often a held board (``hold_while_away``, :meth:`SimulatedBoard.run_for`)
looks for a host, or for a frame from it to answer."""

def _positive(x: object) -> bool:
    return (not isinstance(x, bool) and isinstance(x, int | float) and math.isfinite(x)
            and x > 0)


def _fionread(fd: int) -> int:
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0])


class SimulatedBoard(PlantControls):
    """A simulated board. ``board``: a board name, a JSON file, or a board dict.
    ``noise_lsb`` and ``sensors`` (keys of the board file's ``"sensors"``
    object, see ``sensors.SENSOR_DEFAULTS``) override the board file's sensor
    model; ``seed`` seeds the plant's cell spread and the sensor noise.

    A host has the port while it holds the pseudo-terminal open (what DTR tells
    a USB device); output while no host has it goes nowhere (counted in
    ``tx_dropped_bytes``). ``host_lead_s`` (free-running boards; ``None``: no
    limit but the pty's buffer) paces simulated time to that host: once output
    older than ``host_lead_s`` of board time is unread, the board waits until
    the host has read everything, so it is never more than its output interval
    plus ``host_lead_s`` ahead of what the host has seen, and a host that pauses
    (a busy machine, a slow test) holds the board instead of missing minutes of
    board time. A host that has the port open but reads nothing for
    ``host_stall_s`` wall seconds counts as gone: the board runs on and drops
    its output once the pty is full, until the host reads again.
    ``hold_while_away=True`` (free-running boards) stops simulated time while no
    host has the port open, except as far as :meth:`run_for` lets it run: a
    test that looks away (at its log, at the plant's history) finds the board
    where it left it. :meth:`run_for` runs a free-running board for a while and
    holds it there until :meth:`release`, so what a test does next happens at
    exactly that board time."""

    NOT_RUNNING = (RuntimeError, "the simulated board is not running (start() first)")

    def __init__(
        self,
        board: str | dict[str, Any] = "sim-4s",
        runtime: str = "micropython",
        seed: int = 1,
        speed: float = 1.0,
        initial_soc_pct: float = 50.0,
        ambient_c: float = 25.0,
        lockstep: bool = False,
        noise_lsb: float | None = None,
        history_s: float = 3600.0,
        sensors: dict[str, Any] | None = None,
        link: str | os.PathLike[str] | None = None,
        plant: str = "ecm",
        pybamm_model: str | None = None,
        parameter_set: str | None = None,
        host_lead_s: float | None = None,
        host_stall_s: float = HOST_STALL_S,
        hold_while_away: bool = False,
    ) -> None:
        if not speed >= 0:  # also NaN
            raise ValueError(f"speed must be 0 (no pacing) or more, not {speed}")
        if host_lead_s is not None and not _positive(host_lead_s):
            raise ValueError(f"host_lead_s must be a finite number above 0 or None, "
                             f"not {host_lead_s!r}")
        if not (_positive(host_stall_s) or host_stall_s == 0):
            raise ValueError(f"host_stall_s must be a finite number of at least 0, "
                             f"not {host_stall_s!r}")
        self.board = json.loads(json.dumps(board)) if isinstance(board, dict) else load_board(
            board)
        self.period_ms: int = self.board["control_period_ms"]
        check_choice("plant", plant, PLANTS)
        if plant == "pybamm":
            pybamm_model = pybamm_model or "spme"
            parameter_set = parameter_set or "chen2020"
            check_choice("pybamm_model", pybamm_model, PYBAMM_MODELS)
            check_choice("parameter_set", parameter_set, PARAMETER_SETS)
        elif pybamm_model is not None or parameter_set is not None:
            raise ValueError("pybamm_model and parameter_set go with plant=\"pybamm\"")
        self.plant_kind = plant
        try:
            if plant == "pybamm":
                # The board's cells become the PyBaMM cell (chemistry, capacity,
                # cell model), so the firmware is set up for what it measures.
                assert pybamm_model is not None and parameter_set is not None
                self.board = pybamm_board(self.board, parameter_set)
                self.plant: Plant = PybammPlant(
                    self.board, seed=seed, initial_soc_pct=initial_soc_pct,
                    ambient_c=ambient_c, model=pybamm_model, parameter_set=parameter_set)
            else:
                self.plant = Plant(self.board, seed=seed, initial_soc_pct=initial_soc_pct,
                                   ambient_c=ambient_c)
            self.sensors = SensorModel(self.board, seed=seed, noise_lsb=noise_lsb,
                                       config=sensors)
        except ValueError as exc:
            raise BoardFileError(str(exc)) from None
        self.board_json = json.dumps(self.board)
        # A board whose cells a monitor chip measures: the chip drives the FETs.
        try:
            self.chip: MonitorChip | None = MonitorChip(self.board) if "afe" in self.board \
                else None
        except (KeyError, ValueError) as exc:
            raise BoardFileError(f"board {self.board['name']!r}: bad \"afe\" object: "
                                 f"{exc}") from None
        self.runtime_name = runtime
        self.speed = speed
        self.lockstep = lockstep
        self.time_ms = 0
        self._carry_us = 0  # lock-step: time asked of advance() short of a whole period
        self.tx_bytes = 0
        self.tx_dropped_bytes = 0
        self.host_stalls = 0  # times the board waited for a host that had stopped reading
        self.host_lead_s = host_lead_s
        self.host_stall_s = float(host_stall_s)
        self.host_waits = 0  # times host_lead_s held the board until the host read
        self.hold_while_away = hold_while_away
        self._run_to_ms: int | None = None  # run_for(): run to here, then hold
        self._resync_speed = False  # the board was held: pace against the wall from now
        self.tick_hooks: list[TickHook] = []
        self.history: deque[tuple[int, PlantTruth]] = deque(
            maxlen=max(int(history_s * 1000 / self.period_ms), 1)
        )
        self.history_step_ms = self.period_ms  # one entry a tick, time_ms only grows
        self._runtime: FirmwareRuntime | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._master = -1
        self._host_present = False  # a host has the pty open (its reads are not EIO)
        self._host_reading = True  # ... and has not stalled for host_stall_s
        self._rx_pending = bytearray()  # host bytes read while holding the board
        self._pty_written = 0  # bytes written into this pty
        self._unread: deque[tuple[int, int]] = deque()  # (written up to, board ms)
        self._pty_full = False  # the last write found the pty full
        self._gone_pending = 0  # unread bytes when a stalled host counted as gone
        self._hung_until_ms = 0
        self._hung_since_ms = 0
        self.watchdog_ms: int = self.board.get("watchdog_ms", 2000)
        self.watchdog_resets = 0
        self._unique_id = b"\x5e\x11" + self.board["name"].encode()[:6]
        self._injections: list[tuple[str, dict[str, Any]]] = []
        self.port = ""
        self.link = None if link is None else os.fspath(link)  # a stable path: see unplug()
        self.unplugged = False
        self._port_lock = threading.Lock()  # the pty's fds: the stepping thread vs unplug()

    # -- life cycle ----------------------------------------------------------
    def start(self) -> SimulatedBoard:
        self._open_pty()
        try:
            self._point_link()
            self._runtime = make_runtime(self.runtime_name)
            self._boot()
        except BaseException:
            self.close()
            raise
        if not self.lockstep:
            self._thread = threading.Thread(target=self._run, name="sim-board", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None
        if self._master >= 0:
            with contextlib.suppress(OSError):
                os.close(self._master)
        self._master = -1
        self._remove_link()

    def __enter__(self) -> SimulatedBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scripts (run_script: PlantControls) --------------------------------------
    def wait_for(self, event: threading.Event, timeout_s: float | None = None) -> bool:
        """Until ``event`` is set: lock-step, advance one control period at a
        time (``timeout_s`` in simulated seconds); free-running, wait (in wall
        seconds), raising the simulation's error if it stopped. True if set."""
        if self.lockstep:
            limit_ms = math.inf if timeout_s is None else self.time_ms + timeout_s * 1000.0
            while not event.is_set():
                if self.time_ms >= limit_ms:
                    return False
                self._tick()
            return True
        return super().wait_for(event, timeout_s)

    @property
    def time_s(self) -> float:
        return self.time_ms / 1000.0

    def power_cycle(self) -> None:
        """Restart the firmware as after a power cycle; its flash files persist."""
        with self._lock:
            assert self._runtime is not None, "start() first"
            self._boot()
            self._release_outputs()

    def hang(self, seconds: float) -> None:
        """Stop the firmware's loop for ``seconds`` of simulated time, as a bug or a
        stuck peripheral would: the output keeps its state, nothing is measured or
        answered, until the board's watchdog (``watchdog_ms`` in the board file,
        default 2000 ms) resets it — then the output opens and the firmware boots
        again with its flash intact."""
        with self._lock:
            self._hung_until_ms = self.time_ms + round(seconds * 1000)
            self._hung_since_ms = self.time_ms

    def _boot(self) -> None:
        assert self._runtime is not None
        chip = self.chip
        if chip is not None:
            chip.start_step(self.time_ms)
        self._runtime.boot(self.board_json, self._unique_id,
                           None if chip is None else chip.transfer)

    def _release_outputs(self) -> None:
        """What an MCU reset does to the switches: its pins let go; a monitor chip,
        powered by the pack, keeps driving its FETs as it was."""
        if self.chip is None:
            self.plant.release_outputs()

    def _while_hung(self) -> None:
        if self.time_ms - self._hung_since_ms >= self.watchdog_ms:
            self.watchdog_resets += 1
            self._hung_until_ms = 0
            self._release_outputs()  # a reset releases the output pins
            self._boot()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def check(self) -> None:
        """Raise the error that stopped the simulation thread, if any."""
        if self._error is not None:
            raise self._error

    @property
    def runtime(self) -> FirmwareRuntime | None:
        """The firmware's runtime while started (``CPythonRuntime.firmware`` is
        the firmware's ``hal_sim.SimBoard`` itself)."""
        return self._runtime

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- stepping ------------------------------------------------------------
    def run_for(self, seconds: float) -> int:
        """Free-running board: run ``seconds`` of simulated time from now (also
        while no host has the port open; a host that has it open paces the board
        as ever), then hold the board there until :meth:`release` or the next
        ``run_for``. A held board still answers its host: each time the host has
        written something it steps one control period. Returns the board time
        (ms) it holds at: ``seconds`` rounded up to whole control periods."""
        if self.lockstep:
            raise RuntimeError("run_for() is for a free-running board; lock-step: advance()")
        if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                or not math.isfinite(seconds) or seconds < 0):
            raise ValueError(f"run_for(): seconds must be a finite number of at least 0, "
                             f"not {seconds!r}")
        periods = -(-round(seconds * 1000) // self.period_ms)  # whole periods, rounded up
        with self._port_lock:
            end_ms = self.time_ms + periods * self.period_ms
            self._run_to_ms = end_ms
            return end_ms

    def release(self) -> None:
        """End the hold of :meth:`run_for`: the board runs on (paced as ever)."""
        with self._port_lock:
            self._run_to_ms = None

    @property
    def held(self) -> bool:
        """Whether :meth:`run_for` holds the board now."""
        run_to = self._run_to_ms
        return run_to is not None and self.time_ms + self.period_ms > run_to

    def advance(self, seconds: float) -> None:
        """Lock-step mode: run the simulation for ``seconds`` of simulated time.

        Time moves in whole control periods; what is left of ``seconds`` after
        the last whole period is carried to the next call (counted in whole
        microseconds), so ten ``advance(0.01)`` with a 100 ms period move one
        period and ``advance(0.25)`` twice moves five. Raises ValueError for
        a negative, infinite or NaN ``seconds`` or one that is not a number."""
        if not self.lockstep:
            raise RuntimeError("advance() is for lockstep=True; a free-running board paces itself")
        if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                or not math.isfinite(seconds) or seconds < 0):
            raise ValueError(f"advance(): seconds must be a finite number of at least 0, "
                             f"not {seconds!r}")
        self._carry_us += round(seconds * 1_000_000)
        period_us = self.period_ms * 1000
        while self._carry_us >= period_us:
            self._carry_us -= period_us
            self._tick()

    def _run(self) -> None:
        wall0 = time.monotonic()
        sim0 = self.time_ms
        try:
            while not self._stop.is_set():
                if self._paused.is_set():
                    time.sleep(0.01)
                    wall0, sim0 = time.monotonic(), self.time_ms
                    continue
                if self._holding():
                    time.sleep(HOLD_POLL_S)
                    self._resync_speed = True
                    continue
                if self.host_lead_s is not None and not self._wait_for_host():
                    continue
                if self._resync_speed:
                    self._resync_speed = False
                    wall0, sim0 = time.monotonic(), self.time_ms
                self._tick()
                speed = self.speed
                if math.isfinite(speed) and speed > 0:
                    ahead = (self.time_ms - sim0) / 1000.0 / speed - (time.monotonic() - wall0)
                    if ahead > 0:
                        time.sleep(ahead)
                    elif ahead < -1.0:  # cannot keep up: do not try to catch up later
                        wall0, sim0 = time.monotonic(), self.time_ms
        except BaseException as exc:  # surfaced by check() and by the CLI
            self._error = exc

    def _tick(self) -> None:
        assert self._runtime is not None, "start() first"
        rx = self._read_host()
        with self._lock:
            for hook in self.tick_hooks:
                hook(self)
            chip = self.chip
            if chip is not None:
                # The chip watches the pack all period long, the MCU or not: its
                # protections act within the period (a short in microseconds).
                chip.feed(self.sensors, self.plant)
                chip.advance(self.time_ms + self.period_ms)
                self.plant.outputs = chip.outputs()
            self.plant.step(self.period_ms / 1000.0)
            self.time_ms += self.period_ms
            if self._hung_until_ms > self.time_ms - self.period_ms:
                self._while_hung()
                return
            if chip is not None:
                chip.feed(self.sensors, self.plant)
                chip.start_step(self.time_ms)
                codes = bytes((self.sensors.presence,))  # the button: the chip measures
            else:
                codes = self.sensors.codes(self.plant)
            sampled = self.plant.truth()  # what the firmware is about to measure
            tx, outputs = self._runtime.step(self.period_ms, codes, rx)
            self.plant.outputs = outputs if chip is None else chip.outputs()
            self.history.append((self.time_ms, sampled))
        if tx:
            self._write_host(tx)

    # -- the host on the pty -------------------------------------------------------
    def _open_pty(self) -> None:
        """A new pseudo-terminal for the host. The board keeps only the master
        end open, so a read of it fails with EIO exactly while no host has the
        port open: the pty's DTR."""
        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # a USB CDC port has no line discipline (kept on reopen)
            self.port = os.ttyname(slave)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        self._host_present = False
        self._host_reading = True
        self._pty_full = False
        self._pty_written = 0
        self._unread.clear()
        self._rx_pending.clear()

    def _read_host(self) -> bytes:
        with self._port_lock:
            if self._master >= 0:
                self._read_pty()
            rx = bytes(self._rx_pending)
            self._rx_pending.clear()
            return rx

    def _write_host(self, data: bytes) -> None:
        with self._port_lock:
            if self._master < 0 or not self._host_present:
                # unplugged, or no host has the port open: the output goes
                # nowhere, as on USB
                self.tx_bytes += len(data)
                self.tx_dropped_bytes += len(data)
                return
            self._write_pty(data)

    def _read_pty(self) -> None:
        """Move what the host wrote into ``_rx_pending``; note whether a host
        has the port open."""
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except BlockingIOError:
                self._host_came()
                return
            except OSError as exc:
                if exc.errno == errno.EIO:  # nobody has the slave open
                    self._host_present = False
                    self._unread.clear()  # the next host flushes what is left
                    return
                raise
            if not chunk:
                return
            self._host_came()
            self._rx_pending += chunk

    def _host_came(self) -> None:
        if not self._host_present:
            self._host_present = True
            self._host_reading = True
            self._pty_full = False

    def _write_pty(self, data: bytes) -> None:
        """Write like a USB CDC device: a host that reads slowly holds the board
        back (flow control); a host that has stopped reading loses the bytes."""
        self.tx_bytes += len(data)
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                wait = self.host_stall_s if self._host_reading else 0.0
                _, writable, _ = select.select([], [self._master], [], wait)
                if writable:
                    continue
                if wait:
                    self.host_stalls += 1  # the board waited host_stall_s for the host
                self._host_reading = False
                self._pty_full = True
                self.tx_dropped_bytes += len(view)
                return
            if self._pty_full:  # the host made room: it reads again
                self._pty_full = False
                self._host_reading = True
            view = view[n:]
            self._pty_written += n
            if self.host_lead_s is not None:
                self._unread.append((self._pty_written, self.time_ms))

    def _unread_bytes(self) -> int | None:
        """Bytes waiting for the host to read them (None: cannot tell). What the
        board wrote last may still be on its way into the count; 0 is exact."""
        try:
            fd = os.open(self.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:  # e.g. the host opened the port with TIOCEXCL
            return None
        try:
            pending = _fionread(fd)
            if pending == 0:
                # Polling an empty tty first waits for bytes on their way in.
                readable, _, _ = select.select([fd], [], [], 0)
                if readable:
                    pending = _fionread(fd)
            return pending
        except OSError:
            return None
        finally:
            os.close(fd)

    def _held_by_host(self, lead_ms: float) -> int | None:
        """Under ``_port_lock``: whether the host holds the board back now, i.e.
        output older than ``lead_ms`` of board time is unread. Returns the unread
        bytes if so, else None. Only "all read" releases the board: a count
        above 0 may lack bytes still on their way, so it cannot tell which."""
        unread = self._unread
        if (self._master < 0 or not self._host_present or not unread
                or self.time_ms - unread[0][1] < lead_ms):
            return None
        pending = self._unread_bytes()
        if pending is None or pending == 0:
            unread.clear()
            if pending == 0:
                self._host_reading = True
            return None
        if not self._host_reading:  # counted as gone: until it reads again
            if pending >= self._gone_pending:
                self._gone_pending = pending
                return None
            self._host_reading = True
        return pending

    def _holding(self) -> bool:
        """Whether the free-running board stands still now: held by
        :meth:`run_for` with nothing from the host to answer, or no host has the
        port open (``hold_while_away``) and no ``run_for`` runs it."""
        if self._run_to_ms is None and not self.hold_while_away:
            return False
        with self._port_lock:
            if self._master >= 0 and (not self._host_present or self.held):
                self._read_pty()  # a host that came, a frame to answer
            run_to = self._run_to_ms
            if run_to is not None:
                return self.held and not self._rx_pending
            return self.hold_while_away and not self._host_present

    def _wait_for_host(self) -> bool:
        """``host_lead_s``: hold simulated time until the host has read what is
        older than ``host_lead_s``, up to ``host_stall_s`` of wall time without
        the host reading anything (then it counts as gone). True: step now;
        False: the board was stopped or paused meanwhile."""
        assert self.host_lead_s is not None
        lead_ms = self.host_lead_s * 1000.0
        last: int | None = None
        since = time.monotonic()
        while True:
            with self._port_lock:
                pending = self._held_by_host(lead_ms)
                if pending is None:
                    return True
                now = time.monotonic()
                if last is None:
                    self.host_waits += 1
                    self._resync_speed = True
                if pending != last:  # the host read something (or this is the start)
                    last, since = pending, now
                elif now - since >= self.host_stall_s:
                    self.host_stalls += 1
                    self._host_reading = False
                    self._gone_pending = pending
                    return True
                self._read_pty()  # what the host writes meanwhile, and whether it left
            if self._stop.is_set() or self._paused.is_set():
                return False
            time.sleep(HOST_POLL_S)

    def info(self) -> dict[str, Any]:
        info = {"board": self.board["name"], "runtime": self.runtime_name, "port": self.port,
                "plant": self.plant_kind}
        if self.plant_kind == "pybamm":
            info["pybamm_model"] = getattr(self.plant, "model_name", "")
            info["parameter_set"] = getattr(self.plant, "parameter_set", "")
        return info

    # -- USB plug ------------------------------------------------------------------
    def unplug(self) -> None:
        """Pull the USB cable: the pty closes (a host reading it gets an error)
        and the ``link`` path disappears, as /dev/serial/by-id/... does. The
        firmware keeps running and protecting; what it sends meanwhile is lost."""
        with self._port_lock:
            if self.unplugged or self._master < 0:
                return
            self.unplugged = True
            self._remove_link()
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = -1
            self._host_present = False

    def replug(self) -> str:
        """Plug it back in: a new pty (``port`` changes), ``link`` points at it
        again. Returns the new port."""
        with self._port_lock:
            if not self.unplugged:
                return self.port
            self._open_pty()
            self.unplugged = False
            self._point_link()
            return self.port

    def _point_link(self) -> None:
        """Make ``link`` a symlink to the current pty (atomically re-pointed)."""
        if self.link is None:
            return
        if os.path.lexists(self.link) and not os.path.islink(self.link):
            raise PortError(f"cannot link {self.link} to the simulated board: a file that is "
                            "not a symlink is there")
        tmp = f"{self.link}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(self.port, tmp)
        os.replace(tmp, self.link)

    def _remove_link(self) -> None:
        """Remove ``link`` if it still points at this board's pty."""
        if self.link is None or not os.path.islink(self.link):
            return
        with contextlib.suppress(OSError):
            if os.readlink(self.link) == self.port:
                os.unlink(self.link)
