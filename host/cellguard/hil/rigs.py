"""Rigs force plant conditions: the simulator's plant on a simulated board, an
operator at the terminal on a real one, or nothing (the stimulus skips the test)."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from .client import HilClient, HilTimeout, StoodStill, silent_budget_s, skip

NEEDS_RIG = ("run with --operator -s to have an operator at the terminal do it, or "
             "--rig RIG.toml to have lab instruments do it (docs/hil.md)")


class RigTarget(Protocol):
    """What a rig needs of the target it stands at (targets.py's targets are such)."""

    min_speed: float  # board seconds per wall second, at the least
    clients: list[HilClient]

    def health(self) -> None: ...
    def drain(self) -> None: ...


class SimRigTarget(RigTarget, Protocol):
    sim: Any  # a cellguard.sim.SimulatedBoard


# -- rigs ------------------------------------------------------------------------------------
class Rig:
    """Forces plant conditions. This base class can do nothing but let time pass:
    every stimulus skips the test, saying what it would need."""

    kind = "none"
    observes = False  # whether truth() tells what the plant really does
    observes_directions = False  # whether truth() tells which directions are allowed
    exact_time = True  # truth_at(t) is the plant exactly as the firmware read it at t
    latency_s = 0.0
    """Board time a stimulus may take to reach the firmware after the rig's call
    returns (a wait for its trip or release allows this much more)."""

    def __init__(self, target: RigTarget, reason: str = "") -> None:
        self.target = target
        self.reason = reason or NEEDS_RIG

    def describe(self) -> str:
        return "no rig: tests that force plant conditions skip"

    def _cannot(self, what: str, needs: str) -> NoReturn:
        skip(f"{what} needs {needs} on a real board: {self.reason}")

    # stimuli (SI units; current positive = charging)
    def set_current(self, amps: float) -> None:
        self._cannot(f"a current of {amps:g} A", "a programmable load or charger")

    def set_ambient(self, celsius: float) -> None:
        self._cannot(f"an ambient of {celsius:g} °C", "a climate chamber")

    def set_cell_temperature(self, cell: int, celsius: float | None) -> None:
        self._cannot(f"cell {cell + 1} at {celsius} °C", "a heater or cooler on the sensor")

    def set_cell_voltage(self, cell: int, volts: float | None) -> None:
        """Hold cell ``cell`` (0-based) at ``volts``; None: back to rest."""
        self._cannot(f"cell {cell + 1} at {volts} V", "a cell emulator")

    def prepare(self, client: HilClient) -> None:
        """Called once the suite's client has said HELLO to the board: a rig that
        sets limits on its instruments from the board's own reads them here."""

    def inject(self, fault: str, **params: float) -> None:
        self._cannot(f"fault {fault}", "a fault-injection fixture")

    def clear(self, fault: str | None = None) -> None:
        """Remove injected faults (all of them when ``fault`` is None)."""

    def power_cycle(self) -> None:
        self._cannot("a power cycle", "a switchable supply")

    def restore(self) -> None:
        """Back to rest: no current, no injected fault, temperatures to the plant."""

    def truth(self) -> Any:
        """The plant as it is (a ``PlantTruth``), or None where nothing observes it."""
        return None

    def truth_at(self, board_time_ms: int) -> Any:
        return None

    def measure_pack_voltage_v(self) -> float:
        """The pack's voltage at its output terminals, as the rig's meter reads it."""
        self._cannot("a reading of the pack voltage", "a DMM, a supply or a load")

    def measure_current_a(self) -> float:
        """The current into the pack (A, negative: drawn), as the rig measures it."""
        self._cannot("a reading of the pack current", "a supply or a load")

    def cell_lsb_v(self) -> float:
        """One step of the cell-voltage ADC, where the rig knows the front end."""
        self._cannot("the cell ADC's resolution", "a board file for its front end")

    def cell_accuracy_v(self) -> float:
        """How far a cell reading may be from the truth: one step of an ideal
        converter (the simulated board's); a rig with a real converter says more."""
        return self.cell_lsb_v()

    def wait(self, board_s: float) -> None:
        """Let ``board_s`` of board time pass, reading every open client meanwhile."""
        end = time.monotonic() + board_s
        while time.monotonic() < end:
            self.target.drain()
            time.sleep(0.01)


NoRig = Rig


class SimRig(Rig):
    """Drives the simulated board's plant (``SimulatedBoard``)."""

    kind = "simulator"
    observes = True
    observes_directions = True  # the simulated board's direction flags reach the plant

    def __init__(self, target: SimRigTarget) -> None:
        super().__init__(target)
        self.sim = target.sim
        self._ambient_c = self.sim.plant.ambient_c
        self._history: dict[int, Any] = {}

    def describe(self) -> str:
        return "the simulator's plant"

    def set_current(self, amps: float) -> None:
        self.sim.set_current(amps)

    def set_ambient(self, celsius: float) -> None:
        self.sim.set_ambient(celsius)

    def set_cell_temperature(self, cell: int, celsius: float | None) -> None:
        self.sim.set_cell_temperature(cell, celsius)

    def set_cell_voltage(self, cell: int, volts: float | None) -> None:
        self.sim.set_cell_voltage(cell, volts)

    def inject(self, fault: str, **params: float) -> None:
        fe = self.sim.board["frontend"]
        if fault == "pack_sensor_offset" and "pack_adc" not in fe and "type" not in fe:
            # (a monitor chip measures the top of its stack itself: that reading errs)
            skip(f"board {self.sim.board['name']} has no pack-voltage sensor to offset")
        try:
            self.sim.inject(fault, **params)
        except ValueError as exc:
            if "has no" in str(exc):  # the board lacks the circuit: nothing to test
                skip(str(exc))
            raise

    def clear(self, fault: str | None = None) -> None:
        self.sim.clear(fault)

    def power_cycle(self) -> None:
        self.sim.power_cycle()

    def restore(self) -> None:
        self.sim.clear()
        self.sim.set_current(0.0)
        self.sim.set_ambient(self._ambient_c)
        for cell in range(len(self.sim.plant.cells)):
            self.sim.set_cell_temperature(cell, None)
            self.sim.set_cell_voltage(cell, None)

    def truth(self) -> Any:
        return self.sim.truth()

    def measure_pack_voltage_v(self) -> float:
        """A perfect meter on the plant: its pack voltage now."""
        return float(self.sim.truth().pack_v)

    def measure_current_a(self) -> float:
        return float(self.sim.truth().current_a)

    def truth_at(self, board_time_ms: int) -> Any:
        # The board runs on while a test looks back: index one snapshot of the
        # plant's history instead of searching the live one on every call.
        truth = self._history.get(board_time_ms)
        if truth is None:
            self._history = dict(list(self.sim.history))  # list(deque): one C call, atomic
            truth = self._history.get(board_time_ms)
        return truth

    def cell_lsb_v(self) -> float:
        return float(self.sim.sensors.cell_lsb_v())

    def cell_accuracy_v(self) -> float:
        """One step of the cell converter, and four sigma of its noise where the board
        file gives it some (a monitor chip's, ``sensors.cell_noise_lsb``)."""
        s = self.sim.sensors
        return float(s.cell_lsb_v() * (1.0 + 4.0 * s.cell_noise_lsb))

    def wait(self, board_s: float) -> None:
        """Run the board ``board_s`` (also while no client has the port open) and
        hold it there, so the next stimulus acts at exactly that board time; a
        client's wait (or its frames, one control period each) moves it on."""
        self._run_to(self.sim.run_for(board_s), board_s, "simulated board", 0.001)

    def _run_to(self, end_ms: int, board_s: float, what: str, poll_s: float) -> None:
        """Until the board reaches ``end_ms`` (its ``board_s`` from now), reading every
        open client; a HilTimeout naming ``what`` once its clock stood still for as
        long as ``board_s`` takes at the target's slowest speed (or SILENT_WALL_S)."""
        budget = silent_budget_s(board_s, self.target.min_speed)
        still = StoodStill(budget, self.sim.time_ms)
        while self.sim.time_ms < end_ms:
            self.target.health()
            if still(self.sim.time_ms):
                raise HilTimeout(f"the {what} did not run {board_s:g} s: its clock stood "
                                 f"still for {budget:g} s of wall time")
            self.target.drain()
            time.sleep(poll_s)


TRUTH_LATENCY_S = 0.1
"""Host time the virtual board's ADC readings may lag the plant (``truth_at``)."""


class VirtualRig(SimRig):
    """Drives the plant wired to a virtual dev board's pins (``VirtualBoard``):
    the simulator's controls, on a board that free-runs at its ``speed`` (it is
    never held: board time is its process's own time times the speed)."""

    kind = "virtual board plant"

    def __init__(self, target: SimRigTarget) -> None:
        super().__init__(target)
        self._snapshot: tuple[list[int], list[Any]] = ([], [])
    exact_time = False  # truth_at matches the firmware's clock within a window
    CELL_ACCURACY_V = 0.008
    """A cell read through the mux, the front end and the MCU's own ADC (its
    reference ripple and DNL, the ESP32's calibration), 16 samples averaged:
    within 8 mV (tests/test_virtual_plant.py holds the firmware's readings to it)."""

    def cell_accuracy_v(self) -> float:
        return self.CELL_ACCURACY_V

    HOST_LATENCY_S = 0.25
    """Host time a stimulus may take to reach the firmware: the plant's next tick and
    its ADC rings, or a request over the pty, through a busy host (two cores shared
    with other work); a simulated board is held, a real board's rig waits itself."""

    @property
    def latency_s(self) -> float:  # type: ignore[override]
        """At ``speed`` times the host's clock a host latency is that many times
        more board time: 5 s at 20x (the trip waits' own slack is 1.3 s and more)."""
        return self.HOST_LATENCY_S * self.sim.speed

    @property
    def observes_directions(self) -> bool:  # type: ignore[override]
        """Only a board with charge and discharge enable pins switches the
        directions in the plant (pico-4s and esp32-4s have one output)."""
        wiring = self.sim.wiring
        return wiring is not None and None not in (wiring.charge_enable,
                                                   wiring.discharge_enable)

    def describe(self) -> str:
        return "the plant wired to the virtual board's pins"

    def power_cycle(self) -> None:
        """Unplug the board and plug it back in (its pty may change, as a USB
        replug): the clients follow it to its new port and say HELLO."""
        power = self.target.power_cycle  # type: ignore[attr-defined]
        power()

    def truth_at(self, board_time_ms: int) -> Any:
        """The plant as the firmware read it at ``board_time_ms`` (its telemetry's
        clock): the last plant tick at or before that time on the plant's clock
        (the ADC codes a read takes come from a tick). The two clocks are matched
        within the host's latency times the speed, so next to a step of the
        plant's current the side cannot be told: None there (``exact_time`` is
        False), and where the plant kept no record."""
        plant_ms = self.target.plant_ms(board_time_ms)  # type: ignore[attr-defined]
        if plant_ms is None:
            return None
        # The reading at plant_ms comes from ADC rings the host sent at an earlier
        # tick (late by the host's latency, 100 ms of it allowed: 2 s at 20x), and the
        # clocks match within a tick or so the other way.
        behind = max(50, round(self.sim.speed * TRUTH_LATENCY_S * 1000))
        window = max(50, round(self.sim.speed * 5))
        # One snapshot of the history for many look-ups (a test looks back over
        # thousands of samples): taken again only when asked past its end.
        snap = self._snapshot
        if not snap[0] or plant_ms + window > snap[0][-1]:
            with self.sim._lock:
                history = list(self.sim.history)
            snap = self._snapshot = ([t for t, _ in history], [x for _, x in history])
        times, truths = snap
        if not times or plant_ms - times[-1] > 1000:
            return None  # later than the plant has ticked
        at = bisect.bisect_right(times, plant_ms) - 1
        if at < 0:
            return None  # before what is kept
        lo = bisect.bisect_left(times, plant_ms - behind)
        hi = bisect.bisect_right(times, plant_ms + window)
        currents = [x.current_a for x in truths[lo:hi]]
        if currents and max(currents) - min(currents) > 0.05:
            return None
        return truths[at]

    def wait(self, board_s: float) -> None:
        """Let ``board_s`` of board time pass, reading every open client meanwhile."""
        self._run_to(self.sim.time_ms + round(board_s * 1000), board_s, "virtual board", 0.002)


# What an operator can do by hand, per injected fault (None: needs an instrument).
_OPERATOR_FAULTS: dict[str, tuple[str, str] | None] = {
    "open_wire": ("Disconnect the sense wire at the top of cell {cell1}",
                  "Reconnect the sense wire at the top of cell {cell1}"),
    "disconnected_temp": ("Unplug temperature sensor {sensor1}",
                          "Plug temperature sensor {sensor1} back in"),
    "shorted_temp": ("Short temperature sensor {sensor1} (a wire across its input)",
                     "Remove the short across temperature sensor {sensor1}"),
}


class OperatorRig(Rig):
    """Asks the person at the terminal to set plant conditions (pytest ``-s``)."""

    kind = "operator"

    def __init__(self, target: RigTarget, ask: Callable[[str], str] = input) -> None:
        super().__init__(target, "an operator cannot do that by hand; --rig RIG.toml has lab "
                                 "instruments do it (docs/hil.md)")
        self._ask = ask
        self._injected: list[tuple[str, dict[str, Any]]] = []
        self._current = 0.0
        self._hot: set[int] = set()

    def describe(self) -> str:
        return "an operator at the terminal"

    def prompt(self, instruction: str) -> None:
        """Show ``instruction`` and wait for Enter, reading the board meanwhile;
        an answer of ``s`` skips the test."""
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                self.target.drain()
                stop.wait(0.05)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            answer = self._ask(f"\n[cellguard HIL operator] {instruction}.\n"
                               "  Press Enter when done (s, Enter: skip this test): ")
        finally:
            stop.set()
            reader.join()
        if answer.strip().lower() == "s":
            skip(f"the operator skipped: {instruction}")

    def set_current(self, amps: float) -> None:
        if amps > 0:
            self.prompt(f"Set the charger to push {amps:.2f} A into the pack "
                        "(the BMS may cut it off)")
        elif amps < 0:
            self.prompt(f"Set the load to draw {-amps:.2f} A from the pack "
                        "(the BMS may cut it off)")
        elif self._current:
            self.prompt("Switch the charger and the load off (0 A)")
        self._current = amps

    def set_cell_temperature(self, cell: int, celsius: float | None) -> None:
        if celsius is None:
            if cell in self._hot:
                self.prompt(f"Let the temperature sensor at cell {cell + 1} return to room "
                            "temperature")
                self._hot.discard(cell)
            return
        self.prompt(f"Bring the temperature sensor at cell {cell + 1} to {celsius:.1f} °C "
                    "(heat gun, freeze spray or a warm finger) and hold it there")
        self._hot.add(cell)

    def inject(self, fault: str, **params: float) -> None:
        how = _OPERATOR_FAULTS.get(fault)
        if how is None:
            self._cannot(f"fault {fault}", "a fault-injection fixture")
        self.prompt(how[0].format(**_one_based(params)))
        self._injected.append((fault, params))

    def clear(self, fault: str | None = None) -> None:
        keep = []
        for name, params in self._injected:
            if fault is None or name == fault:
                how = _OPERATOR_FAULTS[name]
                assert how is not None
                self.prompt(how[1].format(**_one_based(params)))
            else:
                keep.append((name, params))
        self._injected = keep

    def power_cycle(self) -> None:
        clients = [c for c in self.target.clients if c.is_open]
        for c in clients:
            c.disconnect()
        self.prompt("Power-cycle the board (supply off, then on again)")
        for c in clients:
            c.reconnect(wait_s=30.0)

    def restore(self) -> None:
        self.clear()
        self.set_current(0.0)
        for cell in sorted(self._hot):
            self.set_cell_temperature(cell, None)


def _one_based(params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    for key in ("cell", "sensor"):
        if key in params:
            out[f"{key}1"] = int(params[key]) + 1
    return out
