"""A rig of lab instruments: the HIL suite's stimuli through supplies, loads, a cell
emulator and a relay card, over SCPI (``instruments/``), as a rig file says
(``rig_file.py``; ``pytest hil_tests --port P --rig rig.toml``).

Safety first, because this drives real energy into real cells:

- never source and sink at once: the other direction's instrument is switched off,
  and confirmed off, before one is switched on;
- every exit path ends in :meth:`InstrumentRig.safe_state` (currents zero, outputs
  off, relays at rest): each test's end (``restore``), an exception inside the rig,
  the rig's close, Ctrl-C, SIGTERM and SIGHUP (signal handlers, and a thread that
  acts on the signal at once even while the main thread sleeps), the interpreter's
  exit (``atexit``); a rig stopped by a signal refuses every later stimulus;
- a voltage window on the instruments themselves, from the board's own limits (the
  cell's hard limits times its cells), as a backstop whatever the firmware does;
- a rig that cannot confirm its state (an instrument missing, another model, an
  error in its queue, an output that does not read back off) refuses to start.
"""

from __future__ import annotations

import atexit
import signal
import socket
import threading
import time
import weakref
from types import FrameType
from typing import Any, NoReturn

from ..errors import CellguardError
from .client import BoardLimits, HilClient, HilError, skip
from .instruments.roles import CellEmulator, Dmm, RelayCard, ScpiInstrument, SourceSink
from .rig_file import RELAY_KINDS, RelayWiring, RigSpec
from .rigs import Rig, RigTarget, SimRig

_ROLE_CLASS: dict[str, type[ScpiInstrument]] = {
    "source": SourceSink, "sink": SourceSink, "source_sink": SourceSink,
    "cell_emulator": CellEmulator, "dmm": Dmm, "relay": RelayCard,
}
SHORT_OHMS_RANGE = (0.5, 1.5)
"""A rig's short-circuit resistor stands in for the one a test asks for within this
factor (more current than asked trips sooner, less may not trip at all)."""

_ACTIVE: weakref.WeakSet[InstrumentRig] = weakref.WeakSet()
_HANDLERS_INSTALLED = False


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_stopped_by: list[str] = []  # the signal that switched the rigs off, once one has
_wakeup: list[socket.socket] = []  # the signal wakeup socket's ends, kept open


def _safe_all() -> None:
    for rig in list(_ACTIVE):
        rig.safe_state()


def _stop_all(signum: int) -> None:
    if not _stopped_by:
        _stopped_by.append(signal.Signals(signum).name)
    _safe_all()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop_all(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _watch_signals(wakeup: socket.socket) -> None:
    """Python runs a signal's handler in the main thread, at its next bytecode. The
    kernel may hand a process's signal to any of its threads (PyVISA imports NumPy,
    whose BLAS starts one); then a main thread asleep (a script's ``time.sleep``, a
    blocking read) would run the handler only when it wakes, with the current still
    flowing. The C handler writes each signal's number to the wakeup socket from
    whichever thread took it: this thread switches the rigs off at once."""
    while True:
        try:
            data = wakeup.recv(64)
        except OSError:
            return
        if not data:
            return
        for signum in set(data) & set(_SIGNALS):
            _stop_all(signum)


def _install_handlers() -> None:
    """Once per process: the instruments go safe at exit and on Ctrl-C / SIGTERM /
    SIGHUP before the interpreter unwinds (pytest then runs its teardowns too)."""
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    atexit.register(_safe_all)
    if threading.current_thread() is threading.main_thread():
        for sig in _SIGNALS:
            signal.signal(sig, _on_signal)
        listen, tell = socket.socketpair()
        tell.setblocking(False)
        previous = signal.set_wakeup_fd(tell.fileno(), warn_on_full_buffer=False)
        if previous == -1:
            _wakeup[:] = [listen, tell]
            threading.Thread(target=_watch_signals, args=(listen,), daemon=True,
                             name="rig-signal-watch").start()
        else:  # another owner's (an event loop's): theirs stays; the handlers still act
            signal.set_wakeup_fd(previous)
            listen.close()
            tell.close()
    _HANDLERS_INSTALLED = True


class InstrumentRig(Rig):
    """Forces plant conditions with lab instruments (``rig.toml``): currents through
    a supply and a load (or one bidirectional supply), cells through a cell emulator,
    wiring faults, shorts and power cycles through a relay card. On a simulated board
    with an emulated bench (``bench.EmulatedBench``) the same code, drivers and PyVISA
    drive instruments emulated against the plant."""

    kind = "instruments"
    observes = False  # the instruments measure their terminals, not the plant's truth
    observes_directions = False

    def __init__(self, target: RigTarget, spec: RigSpec, bench: Any = None,
                 resource_manager: Any = None) -> None:
        super().__init__(target, f"the rig {spec.name!r} ({spec.path}) has no instrument "
                                 "for it")
        self.spec = spec
        self.bench = bench
        self.latency_s = spec.latency_s
        sim = getattr(target, "sim", None)
        self._sim_clock = SimRig(target) if sim is not None else None  # type: ignore[arg-type]
        self.instruments: dict[str, ScpiInstrument] = {}
        self.window_v: tuple[float, float] | None = None
        self._lock = threading.RLock()
        self._closed = False
        if spec.emulated and bench is None:
            raise HilError(f"{spec.path}: emulated instruments need a simulated board")
        try:
            rm = resource_manager
            if rm is None:
                import pyvisa

                rm = pyvisa.ResourceManager("@py")
            try:
                self._open(rm)
            except CellguardError as exc:
                raise HilError(f"the rig {spec.name!r} will not start: {exc}") from None
            self.safe_state(strict=True)
            if spec.emulator_rest_v is not None:  # the emulator is the pack's cells
                self.restore()
        except BaseException:
            self.close()
            raise
        _ACTIVE.add(self)
        _install_handlers()

    def _open(self, rm: Any) -> None:
        from .instruments.drivers import open_instrument

        for role, inst in self.spec.instruments.items():
            resource = self.bench.resources[role] if inst.emulated else inst.resource
            channel = inst.options.get("channel")
            if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int)):
                raise HilError(f"{self.spec.path}: [{role}] channel must be the output's "
                               f"number, not {channel!r}")
            instrument = open_instrument(inst.driver, resource, rm, name=f"{role} "
                                         f"({inst.driver})", channel=channel)
            self.instruments[role] = instrument
            want = _ROLE_CLASS[role]
            if not isinstance(instrument, want):
                raise HilError(f"{self.spec.path}: [{role}] driver {inst.driver!r} is a "
                               f"{type(instrument).__name__}, not a {want.__name__}")
            if isinstance(instrument, SourceSink):
                needs = {"source": ("CAN_SOURCE",), "sink": ("CAN_SINK",),
                         "source_sink": ("CAN_SOURCE", "CAN_SINK")}[role]
                lacking = [n for n in needs if not getattr(instrument, n)]
                if lacking:
                    raise HilError(f"{self.spec.path}: [{role}] driver {inst.driver!r} "
                                   f"cannot {' or '.join(n[4:].lower() for n in lacking)}")
        relay = self.instruments.get("relay")
        if isinstance(relay, RelayCard):
            missing = [w.channel for w in self.spec.relays if w.channel not in relay.CHANNELS]
            if missing:
                raise HilError(f"{self.spec.path}: relay channel(s) {missing} are not on the "
                               f"{relay.DESCRIPTION or relay.name} ({list(relay.CHANNELS)})")
        emulator = self.instruments.get("cell_emulator")
        if isinstance(emulator, CellEmulator):
            opts = self.spec.instruments["cell_emulator"].options
            for ch in range(emulator.CHANNELS):
                emulator.set_current_limits(ch, float(opts.get("source_a", 1.0)),
                                             float(opts.get("sink_a", 1.0)))

    def _cannot(self, what: str, needs: str) -> NoReturn:
        skip(f"{what} needs {needs}: {self.reason}")

    def describe(self) -> str:
        roles = ", ".join(f"{r} {i.driver}" for r, i in self.spec.instruments.items())
        where = "emulated against the plant" if self.spec.emulated else "on the bench"
        return f"instruments of rig {self.spec.name!r} {where}: {roles}"

    # -- roles -----------------------------------------------------------------------------
    def _sources_sinks(self) -> list[SourceSink]:
        return [i for r in ("source", "sink", "source_sink")
                if isinstance(i := self.instruments.get(r), SourceSink)]

    # -- limits from the board ------------------------------------------------------------
    def prepare(self, client: HilClient) -> None:
        """The voltage window on every supply and load, from the board's own limits:
        its cells times the cell's hard limits (the highest over-voltage and the lowest
        under-voltage setting the firmware accepts: the chemistry's bounds)."""
        if self.window_v is not None:
            return
        limits = BoardLimits.read(client)
        n = limits.info.cell_count
        over = limits.protections["cell_overvoltage"]
        under = limits.protections["deep_discharge"]
        window = (n * under.hard_min / 1000.0, n * over.hard_max / 1000.0)
        with self._lock:
            try:
                for inst in self._sources_sinks():
                    inst.set_voltage_window(*window)
            except BaseException:
                self.safe_state()
                raise
            self.window_v = window

    # -- stimuli ---------------------------------------------------------------------------
    def _refuse_when_stopped(self, what: str) -> None:
        if _stopped_by:
            raise HilError(f"the rig was switched off by {_stopped_by[0]}: it sets no "
                           f"{what} any more")

    def set_current(self, amps: float) -> None:
        with self._lock:
            if amps == 0:
                for inst in self._sources_sinks():
                    inst.off()
                return
            self._refuse_when_stopped("current")
            if self.window_v is None:
                raise HilError("the rig sets no current before it has the board's limits "
                               "(the suite's client fixture gives them)")
            charging = amps > 0
            role = "charge" if charging else "discharge"
            drive = self.instruments.get("source_sink") or self.instruments.get(
                "source" if charging else "sink")
            other = None if "source_sink" in self.instruments else self.instruments.get(
                "sink" if charging else "source")
            if not isinstance(drive, SourceSink):
                self._cannot(f"a {role} of {abs(amps):g} A",
                             "a supply ([source])" if charging else "a load ([sink])")
            if abs(amps) > drive.MAX_CURRENT_A:
                skip(f"a {role} of {abs(amps):g} A is beyond the {drive.name} "
                     f"({drive.MAX_CURRENT_A:g} A)")
            try:
                if isinstance(other, SourceSink):
                    other.off()
                    if other.output_on():
                        raise HilError(f"{other.name} still reads on after off: the rig will "
                                       "not source and sink at once")
                drive.set_current(amps)
            except BaseException:
                self.safe_state()
                raise

    def set_cell_voltage(self, cell: int, volts: float | None) -> None:
        emulator = self.instruments.get("cell_emulator")
        if not isinstance(emulator, CellEmulator):
            self._cannot(f"cell {cell + 1} at {volts} V", "a cell emulator ([cell_emulator])")
        if not 0 <= cell < emulator.CHANNELS:
            self._cannot(f"cell {cell + 1} at {volts} V",
                         f"a cell emulator channel for it ({emulator.CHANNELS} channels)")
        with self._lock:
            self._refuse_when_stopped("cell voltage")
            try:
                if volts is None:
                    rest = self.spec.emulator_rest_v
                    if rest is None:
                        emulator.enable(cell, False)
                    else:
                        emulator.set_cell_voltage(cell, rest)
                    return
                emulator.set_cell_voltage(cell, volts)
                if not emulator.enabled(cell):
                    emulator.enable(cell, True)
            except BaseException:
                self.safe_state()
                raise

    def _relay(self) -> RelayCard:
        relay = self.instruments.get("relay")
        assert isinstance(relay, RelayCard)
        return relay

    def _wiring(self, fault: str, params: dict[str, float]) -> RelayWiring:
        param = RELAY_KINDS.get(fault, ("",))[0]  # board_power has none: no fault
        if not param:
            self._cannot(f"fault {fault}", "a fault-injection fixture")
        index = None if param == "ohms" else params.get(param)
        wiring = self.spec.relay_for(fault, index)
        if wiring is None or "relay" not in self.instruments:
            where = "" if index is None else f" ({param} {int(index)})"
            self._cannot(f"fault {fault}{where}", f"a relay channel wired for it "
                         f"([[relay.channel]] does = \"{fault}\")")
        if param == "ohms":
            asked, have = params.get("ohms"), wiring.value
            lo, hi = SHORT_OHMS_RANGE
            if asked is not None and have is not None and not lo * asked <= have <= hi * asked:
                skip(f"the test asks for a {asked * 1000:.0f} mOhm short; the rig's resistor "
                     f"is {have * 1000:.0f} mOhm (within {lo:g}..{hi:g}x of it would do)")
        return wiring

    def inject(self, fault: str, **params: float) -> None:
        wiring = self._wiring(fault, params)
        with self._lock:
            self._refuse_when_stopped("fault")
            try:
                self._relay().set_closed(wiring.channel, wiring.applied_closed)
            except BaseException:
                self.safe_state()
                raise

    def clear(self, fault: str | None = None) -> None:
        if "relay" not in self.instruments:
            return
        with self._lock:
            for w in self.spec.relays:
                if w.does != "board_power" and (fault is None or w.does == fault):
                    self._relay().set_closed(w.channel, w.rest_closed)

    def power_cycle(self) -> None:
        wiring = self.spec.relay_for("board_power")
        if wiring is None or "relay" not in self.instruments:
            self._cannot("a power cycle", "a relay channel in the board's supply "
                         "([[relay.channel]] does = \"board_power\")")
        clients = [c for c in self.target.clients if c.is_open]
        for c in clients:
            c.disconnect()
        with self._lock:
            self._refuse_when_stopped("power cycle")
            self._relay().set_closed(wiring.channel, False)
            time.sleep(self.spec.power_off_s)
            self._relay().set_closed(wiring.channel, True)
        for c in clients:
            c.reconnect(wait_s=30.0)

    def restore(self) -> None:
        """Back to rest: no current, the emulator's channels at rest, relays at rest
        (switched off instead once a signal has stopped the rig)."""
        if _stopped_by:
            self.safe_state()
            return
        with self._lock:
            self.set_current(0.0)
            emulator = self.instruments.get("cell_emulator")
            if isinstance(emulator, CellEmulator):
                for ch in range(emulator.CHANNELS):
                    self.set_cell_voltage(ch, None)
            self.clear()

    # -- measurements ----------------------------------------------------------------------
    def measure_pack_voltage_v(self) -> float:
        """The pack's output voltage: the DMM's reading, or the supply's or load's."""
        dmm = self.instruments.get("dmm")
        if isinstance(dmm, Dmm):
            return dmm.measure_dc_voltage_v()
        for inst in self._sources_sinks():
            return inst.measure_voltage_v()
        self._cannot("the pack voltage", "a DMM, a supply or a load")

    def measure_current_a(self) -> float:
        """The current the instruments drive into the pack (A, negative: drawn)."""
        drives = self._sources_sinks()
        if not drives:
            self._cannot("the pack current", "a supply or a load")
        return sum(i.measure_current_a() for i in drives)

    def cell_accuracy_v(self) -> float:
        if self.spec.cell_accuracy_v is not None:
            return self.spec.cell_accuracy_v
        if self._sim_clock is not None:
            return self._sim_clock.cell_accuracy_v()
        self._cannot("the cell readings' accuracy", "cell_accuracy_mv in the rig file")

    def cell_lsb_v(self) -> float:
        if self._sim_clock is not None:
            return self._sim_clock.cell_lsb_v()
        return self.cell_accuracy_v()

    def wait(self, board_s: float) -> None:
        if self._sim_clock is not None:
            self._sim_clock.wait(board_s)
        else:
            super().wait(board_s)

    # -- safety ----------------------------------------------------------------------------
    def safe_state(self, strict: bool = False) -> None:
        """Currents zero and outputs off, the emulator's channels off, relays at rest
        (the board powered, no fault wired in); every instrument is tried even when one
        fails. ``strict``: HilError unless every one confirmed it."""
        problems: list[str] = []
        with self._lock:
            for role, inst in self.instruments.items():
                try:
                    if isinstance(inst, RelayCard):
                        for w in self.spec.relays:
                            inst.set_closed(w.channel, w.rest_closed)
                    else:
                        inst.off()  # type: ignore[attr-defined]
                    if isinstance(inst, SourceSink) and inst.output_on():
                        problems.append(f"{role}: the output still reads on")
                except Exception as exc:  # one failing instrument must not stop the rest
                    problems.append(f"{role}: {exc}")
        if problems and strict:
            raise HilError("the rig cannot confirm a safe state, so it will not start: "
                           + "; ".join(problems))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.safe_state()
        finally:
            _ACTIVE.discard(self)
            for inst in self.instruments.values():
                inst.close()
            self.instruments.clear()
