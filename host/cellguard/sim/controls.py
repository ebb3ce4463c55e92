"""Plant controls shared by the simulated board and the virtual dev board: the
current, the ambient, cell temperatures, fault injection (``INJECTIONS``) and the
truth a test holds the board to."""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .plant import Plant, PlantTruth
from .script import Script, ScriptError, ScriptRunner, StepCallback, load_script
from .sensors import TEMP_OPEN, TEMP_SHORTED, SensorModel

REQUIRED: Any = ...
"""Marks an injection parameter that has no default."""

INJECTIONS: dict[str, dict[str, Any]] = {
    # sensors (what the firmware reads, the plant unchanged)
    "open_wire": {"cell": REQUIRED},  # the sense wire at the top of cell k is open
    "stuck_sensor": {"cell": REQUIRED},  # cell k's code freezes at its value now
    "disconnected_temp": {"sensor": REQUIRED},  # NTC open: code at the top rail
    "shorted_temp": {"sensor": REQUIRED},  # NTC shorted: code 0
    "current_offset": {"amps": REQUIRED},  # the current sensor reads this much more
    "current_gain": {"factor": REQUIRED},  # ... and this many times the truth
    "pack_sensor_offset": {"volts": REQUIRED},  # the pack-voltage sensor reads more
    # plant (what really happens)
    "short_circuit": {"ohms": 0.05},  # across the output terminals
    "internal_short": {"cell": REQUIRED, "ohms": 10.0},  # self-discharge inside cell k
    "welded_contactor": {},  # the main switch stays closed whatever is driven
    "precharge_short": {"ohms": 1.0},  # the DC link is shorted/overloaded
}
"""Fault name -> its parameters and their defaults (``REQUIRED``: none)."""
_INDEX_PARAMS = ("cell", "sensor")


AMBIENT_RANGE_C = (-55.0, 125.0)
"""Ambient temperatures `cellguard sim --ambient` and scripts accept: what
electronic parts are rated for (a cell's own limits are the board's business)."""


class PlantControls:
    """The plant and sensor controls a board with a simulated plant offers (SI units,
    current positive = charging): ``set_current``, ``inject``, ``truth`` ... The
    class using it has ``board``, ``plant``, ``sensors``, ``_lock``, ``_injections``
    and ``history``: ``SimulatedBoard`` and the virtual dev board (``virtual.py``)."""

    board: dict[str, Any]
    plant: Plant
    sensors: SensorModel
    _lock: threading.RLock
    _injections: list[tuple[str, dict[str, Any]]]
    history: deque[tuple[int, PlantTruth]]
    # The board times in ``history`` strictly increase, mostly this far apart
    # (SimulatedBoard: a control period each tick); None: no such promise.
    history_step_ms: int | None = None
    tick_hooks: list[Callable[[Any], None]]  # called at each plant step, under _lock
    # The error wait_for raises once the board has stopped: (class, message).
    NOT_RUNNING: tuple[type[Exception], str] = (RuntimeError, "the board is not running")

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def check(self) -> None:
        """Raise what stopped the board, if anything did."""

    def wait_for(self, event: threading.Event, timeout_s: float | None = None) -> bool:
        """Until ``event`` is set (``timeout_s`` in wall seconds), raising what
        stopped the board meanwhile. True if set."""
        deadline = math.inf if timeout_s is None else time.monotonic() + timeout_s
        while not event.wait(0.05):
            self.check()
            if not self.running:
                kind, message = self.NOT_RUNNING
                raise kind(message)
            if time.monotonic() >= deadline:
                return False
        return True

    # -- scripts -------------------------------------------------------------------
    def run_script(self, script: str | os.PathLike[str] | Script, repeat: int = 1,
                   wait: bool = False, on_step: StepCallback | None = None,
                   timeout_s: float | None = None,
                   pause_when_done: bool = False) -> ScriptRunner:
        """Play a script (a file, see ``script.py``, or a parsed :class:`Script`)
        from the next plant step on: check it against this board, attach a
        :class:`ScriptRunner` as a tick hook and return it. ``wait=True``
        returns once it is done (a lock-step simulated board: advancing time;
        otherwise waiting; ``timeout_s`` simulated or wall seconds). Raises
        ScriptError naming the line of a bad step."""
        parsed = script if isinstance(script, Script) else load_script(script)
        runner = ScriptRunner(parsed, repeat=repeat, on_step=on_step,
                              pause_when_done=pause_when_done)
        runner.check(self)  # type: ignore[arg-type]
        with self._lock:
            self.tick_hooks.append(runner)
        if wait and not runner.wait(self, timeout_s):  # type: ignore[arg-type]
            raise ScriptError(f"{parsed.name}: not done within {timeout_s:g} s")
        return runner

    def hold_presence(self, held: bool = True) -> None:
        """Hold (or let go of) the board's presence button, as a person at the board
        would (docs/security.md): a locked board changes a protection limit, goes
        back to open mode or to the REPL only while it is held."""
        with self._lock:
            self.sensors.presence = bool(held)

    # -- plant control (SI units, current positive = charging) ----------------
    def set_current(self, amps: float) -> None:
        with self._lock:
            self.plant.requested_current_a = amps

    def set_ambient(self, celsius: float) -> None:
        with self._lock:
            self.plant.ambient_c = celsius

    def set_cell_temperature(self, cell: int, celsius: float | None) -> None:
        """Hold cell ``cell`` (0-based) at ``celsius`` whatever the lumped thermal
        model says (a hot spot, kept there from outside: it heats or cools the
        pack through its thermal resistance); ``None`` hands it back to the
        model. Sensor j measures cell ``j * cells // temp_sensors``."""
        with self._lock:
            self._check_index("cell", cell, len(self.plant.cells))
            if celsius is not None and not math.isfinite(celsius):
                raise ValueError(f"celsius must be a finite number or None, not {celsius!r}")
            self.plant.cell_temperature_override_c[cell] = (
                None if celsius is None else float(celsius))

    def set_cell_voltage(self, cell: int, volts: float | None) -> None:
        """Put a cell emulator's channel in cell ``cell``'s place (0-based): its
        terminals at ``volts`` whatever its charge, the sensors and the pack voltage
        seeing that; ``None`` gives the cell back (the channel off)."""
        with self._lock:
            self._check_index("cell", cell, len(self.plant.cells))
            if volts is not None and not (math.isfinite(volts) and 0.0 <= volts <= 10.0):
                raise ValueError(f"volts must be a cell voltage in 0..10 V or None, not "
                                 f"{volts!r}")
            self.plant.cell_voltage_override_v[cell] = None if volts is None else float(volts)

    def set_cell_heat(self, cell: int, watts: float) -> None:
        """Add ``watts`` of heat inside cell ``cell`` (0-based; 0: none), e.g. a
        bad connection: the cell runs hotter than the pack by watts times its
        thermal resistance to the pack, and the pack takes the heat."""
        with self._lock:
            self._check_index("cell", cell, len(self.plant.cells))
            if (isinstance(watts, bool) or not isinstance(watts, int | float)
                    or not math.isfinite(watts)):
                raise ValueError(f"watts must be a finite number, not {watts!r}")
            self.plant.cell_extra_heat_w[cell] = float(watts)

    # -- fault injection ---------------------------------------------------------
    def inject(self, name: str, **params: float) -> None:
        """Inject the fault ``name`` (one of ``INJECTIONS``) with its parameters;
        injecting it again on the same cell/sensor replaces it. Raises
        ValueError for an unknown name or a missing, unknown or bad parameter."""
        with self._lock:
            p = self._check_injection(name, params)
            self._apply(name, p)
            target = self._target(p)
            self._injections = [(n, q) for n, q in self._injections
                                if not (n == name and self._target(q) == target)]
            self._injections.append((name, p))

    def clear(self, name: str | None = None) -> None:
        """Remove every injection of fault ``name``; ``None``: of every fault."""
        with self._lock:
            if name is None:
                names = list(INJECTIONS)
            else:
                self._check_name(name)
                names = [name]
            for n in names:
                self._remove(n)
            self._injections = [(n, q) for n, q in self._injections if n not in names]

    def injections(self) -> list[tuple[str, dict[str, Any]]]:
        """The faults injected now, in order, with their parameters."""
        with self._lock:
            return [(n, dict(q)) for n, q in self._injections]

    @staticmethod
    def _target(params: dict[str, Any]) -> int | None:
        for key in _INDEX_PARAMS:
            if key in params:
                return int(params[key])
        return None

    @staticmethod
    def _check_name(name: str) -> None:
        if name not in INJECTIONS:
            raise ValueError(f"unknown fault {name!r}; valid faults: {', '.join(INJECTIONS)}")

    def _check_current(self, amps: float) -> None:
        """A current the board's sensor can measure (ValueError otherwise)."""
        full_scale = self.sensors.cur_fs_a
        if not math.isfinite(amps) or abs(amps) > full_scale:
            raise ValueError(f"a current of {amps:g} A is beyond the board's current sensor "
                             f"(±{full_scale:g} A); for a short circuit inject short_circuit")

    @staticmethod
    def _check_ambient(celsius: float) -> None:
        """An ambient temperature the plant model is meant for (ValueError otherwise)."""
        lo, hi = AMBIENT_RANGE_C
        if not lo <= celsius <= hi:
            raise ValueError(f"an ambient of {celsius:g} °C is outside {lo:g}..{hi:g} °C, the "
                             "range the electronics and the plant model are meant for")

    @staticmethod
    def _check_index(key: str, value: Any, count: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
            raise ValueError(f"{key} must be an integer 0..{count - 1}, not {value!r}")

    def _check_injection(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        self._check_name(name)
        spec = INJECTIONS[name]
        valid = ", ".join(spec) or "none"
        unknown = [k for k in params if k not in spec]
        if unknown:
            raise ValueError(f"{name}: unknown parameter {', '.join(unknown)}; "
                             f"valid parameters: {valid}")
        p = {**spec, **params}
        missing = [k for k, v in p.items() if v is REQUIRED]
        if missing:
            raise ValueError(f"{name}: missing parameter {', '.join(missing)}; "
                             f"valid parameters: {valid}")
        counts = {"cell": len(self.plant.cells), "sensor": self.sensors.n_temps}
        for key, value in p.items():
            if key in counts:
                self._check_index(key, value, counts[key])
                continue
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value)):
                raise ValueError(f"{name}: {key} must be a finite number, not {value!r}")
            if key == "ohms" and value <= 0:
                raise ValueError(f"{name}: ohms must be above 0, not {value!r}")
            p[key] = float(value)
        if name == "precharge_short" and not self.plant.has_precharge:
            raise ValueError(f"precharge_short: board {self.board['name']!r} has no precharge "
                             "circuit (no \"precharge\" object in its board file)")
        return p

    def _apply(self, name: str, p: dict[str, Any]) -> None:
        plant, sensors = self.plant, self.sensors
        match name:
            case "open_wire":
                sensors.open_wires.add(p["cell"])
            case "stuck_sensor":
                sensors.freeze_cell(p["cell"], plant)
            case "disconnected_temp":
                sensors.temp_faults[p["sensor"]] = TEMP_OPEN
            case "shorted_temp":
                sensors.temp_faults[p["sensor"]] = TEMP_SHORTED
            case "current_offset":
                sensors.current_offset_a = p["amps"]
            case "current_gain":
                sensors.current_gain = p["factor"]
            case "pack_sensor_offset":
                sensors.pack_offset_v = p["volts"]
            case "short_circuit":
                plant.short_circuit_ohm = p["ohms"]
            case "internal_short":
                plant.internal_short_ohm[p["cell"]] = p["ohms"]
            case "welded_contactor":
                plant.welded = True
            case "precharge_short":
                plant.link_short_ohm = p["ohms"]

    def _remove(self, name: str) -> None:
        plant, sensors = self.plant, self.sensors
        match name:
            case "open_wire":
                sensors.open_wires.clear()
            case "stuck_sensor":
                sensors.stuck_codes.clear()
            case "disconnected_temp" | "shorted_temp":
                kind = TEMP_OPEN if name == "disconnected_temp" else TEMP_SHORTED
                sensors.temp_faults = {j: k for j, k in sensors.temp_faults.items() if k != kind}
            case "current_offset":
                sensors.current_offset_a = 0.0
            case "current_gain":
                sensors.current_gain = 1.0
            case "pack_sensor_offset":
                sensors.pack_offset_v = 0.0
            case "short_circuit":
                plant.short_circuit_ohm = None
            case "internal_short":
                plant.internal_short_ohm.clear()
            case "welded_contactor":
                plant.welded = False
            case "precharge_short":
                plant.link_short_ohm = None

    def truth(self) -> PlantTruth:
        with self._lock:
            return self.plant.truth()

    def truth_at(self, board_time_ms: int) -> PlantTruth | None:
        """The plant as the firmware sampled it at ``board_time_ms`` (if kept)."""
        with self._lock:
            history, step = self.history, self.history_step_ms
            if step and history:
                # Where the time would sit with no gap: the one entry with that time,
                # if it is there (times strictly increase), without walking to it.
                at = len(history) - 1 - (history[-1][0] - board_time_ms) // step
                if 0 <= at < len(history) and history[at][0] == board_time_ms:
                    return history[at][1]
            for t, truth in reversed(history):
                if t == board_time_ms:
                    return truth
                if t < board_time_ms:
                    break
        return None
