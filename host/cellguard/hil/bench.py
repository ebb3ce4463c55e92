"""A bench without hardware: the rig file's instruments emulated against a simulated
board's plant, served where PyVISA reaches them as it reaches real ones.

- :class:`PlantBench` is what the emulated instruments act on (``PlantSide``): a
  supply's or a load's current moves the plant's current, within the voltage window
  set on the instrument (a supply in constant current goes to constant voltage at its
  limit: the current tapers so the pack's terminals stay there, through the cells'
  resistance; a load stops at its cut-off the same way); a cell emulator's channel
  holds a cell's terminals; a relay channel does what the rig file wires it to.
- :class:`EmulatedBench` serves each emulated instrument on a loopback TCP socket
  (``TCPIP0::127.0.0.1::<port>::SOCKET``, as an instrument's raw SCPI port) or, for a
  serial model with unterminated commands, on a pseudo-terminal (``ASRL<pty>::INSTR``),
  and hands the rig those resource strings: the driver, PyVISA and pyvisa-py then run
  exactly as on a bench.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import tty
from dataclasses import dataclass
from typing import Any

from .client import HilError
from .instruments.emulation import EmulatedInstrument
from .rig_file import RELAY_KINDS, RelayWiring, RigSpec


@dataclass
class _Drive:
    amps: float  # what the instrument is set to (+ into the pack; 0: output off)
    min_v: float
    max_v: float
    actual: float = 0.0  # what its window lets through now


class PlantBench:
    """The plant side of emulated instruments (``emulation.PlantSide``) on a
    simulated board (``SimulatedBoard`` or anything with its plant controls)."""

    def __init__(self, sim: Any, relays: list[RelayWiring]) -> None:
        self.sim = sim
        self._drives: dict[str, _Drive] = {}
        self._wiring = {r.channel: r for r in relays}
        self._powered = True
        with sim._lock:
            sim.tick_hooks.append(self._tick)

    def close(self) -> None:
        with self.sim._lock:
            if self._tick in self.sim.tick_hooks:
                self.sim.tick_hooks.remove(self._tick)
            self._drives.clear()
            self.sim.set_current(0.0)

    # -- sources and sinks ------------------------------------------------------------------
    def set_drive(self, name: str, amps: float, min_v: float, max_v: float) -> None:
        with self.sim._lock:
            self._drives[name] = _Drive(float(amps), float(min_v), float(max_v))
            self._update()

    def drive_current_a(self, name: str) -> float:
        with self.sim._lock:
            drive = self._drives.get(name)
            if drive is None or not drive.actual:
                return 0.0
            plant = self.sim.plant
            return drive.actual if plant.passes(charging=drive.actual > 0) else 0.0

    def _tick(self, _sim: Any) -> None:
        self._update()  # under the board's lock, at each plant step

    def _update(self) -> None:
        """Each drive within its window, from the pack's voltage behind its resistance
        (constant voltage at ``max_v`` for a source, a cut-off at ``min_v`` for a sink);
        the plant's current is their sum."""
        plant = self.sim.plant
        r_ohm = max(sum(c.r0_ohm for c in plant.cells), 1e-6)
        behind_v = plant.pack_voltage_v() - plant.current_a * r_ohm
        total = 0.0
        for drive in self._drives.values():
            if drive.amps > 0:
                drive.actual = max(0.0, min(drive.amps, (drive.max_v - behind_v) / r_ohm))
            elif drive.amps < 0:
                drive.actual = min(0.0, max(drive.amps, (drive.min_v - behind_v) / r_ohm))
            else:
                drive.actual = 0.0
            total += drive.actual
        self.sim.set_current(total)

    def terminal_voltage_v(self) -> float:
        with self.sim._lock:
            return float(self.sim.plant.link_voltage_v())

    # -- cells and relays ---------------------------------------------------------------
    def cell_voltage_v(self, cell: int) -> float:
        with self.sim._lock:
            return float(self.sim.plant.cells_v()[cell])

    def set_cell(self, cell: int, volts: float | None) -> None:
        if cell >= len(self.sim.plant.cells):
            return  # an emulator channel beyond the pack's cells: wired to nothing
        self.sim.set_cell_voltage(cell, volts)

    def set_relay(self, channel: int, closed: bool) -> None:
        wiring = self._wiring.get(channel)
        if wiring is None:
            return  # a channel wired to nothing on this bench
        applied = closed == wiring.applied_closed
        if wiring.does == "board_power":
            if not closed:
                self._powered = False
            elif not self._powered:
                self._powered = True
                self.sim.power_cycle()
            return
        # A channel's job is named as the simulator's fault it wires in.
        param = RELAY_KINDS[wiring.does][0]
        if applied:
            value = wiring.value if param == "ohms" else int(wiring.value or 0)
            self.sim.inject(wiring.does, **{param: value})
        else:
            self.sim.clear(wiring.does)


class _Server:
    """Serves one emulated instrument until closed."""

    def __init__(self, instrument: EmulatedInstrument) -> None:
        self.instrument = instrument
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.resource = ""
        self._thread: threading.Thread | None = None

    def _answer(self, buffer: str) -> tuple[bytes, str]:
        commands, rest = self.instrument.split(buffer)
        out = []
        for command in commands:
            with self._lock:
                answer = self.instrument.handle(command)
            if answer is not None:
                out.append(answer + self.instrument.TERMINATION)
        return "".join(out).encode("latin-1"), rest

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


class _SocketServer(_Server):
    def __init__(self, instrument: EmulatedInstrument) -> None:
        super().__init__(instrument)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4)
        self._sock.settimeout(0.1)
        self.resource = f"TCPIP0::127.0.0.1::{self._sock.getsockname()[1]}::SOCKET"
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=f"bench-{instrument.name}")
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(0.1)
                buffer = ""
                while not self._stop.is_set():
                    try:
                        data = conn.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    out, buffer = self._answer(buffer + data.decode("latin-1"))
                    if out:
                        try:
                            conn.sendall(out)
                        except OSError:
                            break

    def close(self) -> None:
        super().close()
        self._sock.close()


class _PtyServer(_Server):
    """A serial instrument on a pseudo-terminal (raw, as a USB-serial adapter)."""

    def __init__(self, instrument: EmulatedInstrument) -> None:
        super().__init__(instrument)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.resource = f"ASRL{os.ttyname(self._slave)}::INSTR"
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=f"bench-{instrument.name}")
        self._thread.start()

    def _serve(self) -> None:
        buffer = ""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                continue  # no one holds the terminal open now
            out, buffer = self._answer(buffer + data.decode("latin-1"))
            if out:
                with contextlib.suppress(OSError):
                    os.write(self._master, out)

    def close(self) -> None:
        super().close()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class EmulatedBench:
    """The rig file's emulated instruments, acting on ``sim``'s plant, each served for
    PyVISA: ``resources`` maps a role to the resource string to open."""

    def __init__(self, sim: Any, spec: RigSpec) -> None:
        from .instruments.emulated import EMULATIONS

        self.plant = PlantBench(sim, spec.relays)
        self.servers: dict[str, _Server] = {}
        self.resources: dict[str, str] = {}
        try:
            for role, inst in spec.instruments.items():
                emulation = EMULATIONS.get(inst.driver)
                if emulation is None:
                    raise HilError(f"{spec.path}: [{role}]: no emulation of driver "
                                   f"{inst.driver!r} (emulated: {', '.join(EMULATIONS)})")
                instrument = emulation(self.plant, role)
                server: _Server = (_SocketServer(instrument) if instrument.TERMINATION
                                   else _PtyServer(instrument))
                self.servers[role] = server
                self.resources[role] = server.resource
        except BaseException:
            self.close()
            raise

    def instrument(self, role: str) -> EmulatedInstrument:
        return self.servers[role].instrument

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        self.plant.close()
