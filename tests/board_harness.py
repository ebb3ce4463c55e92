"""Run ``board_main.run()`` — the loop a real board runs — with models of what it
touches: a simulated clock, a serial port that can stall, a watchdog that ends
the run, a reset that is recorded, a HAL whose sensors follow a script in
simulated time. Under CPython here; ``MP_MODELS`` are the MicroPython-side
models (``tests/board_models/``: a ``machine`` module, a USB stream) that
``install_models`` copies into a MicroPython runtime.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cellguard.paths import boards_dir
from cellguard.sim.runtime import MicroPythonRuntime
from cellguard.sim.sensors import SensorModel
from cellguard_fw.hal_sim import SimHal

MP_MODELS = Path(__file__).parent / "board_models"
_TICKS_PERIOD = 1 << 30


class EndOfRun(Exception):
    """The test's run is over (raised by the watchdog's feed)."""


class Reset(Exception):
    """The firmware called reset()."""


class SimClock:
    """``time``'s ticks on simulated milliseconds: sleeping advances them, and
    ``stall(ms)`` is a pass that took that long (a flash erase, a blocked write)."""

    def __init__(self, start_ms: int = 0) -> None:
        self.now = start_ms
        self.sleeps: list[int] = []

    def ticks_ms(self) -> int:
        return self.now % _TICKS_PERIOD

    @staticmethod
    def ticks_add(a: int, delta: int) -> int:
        return (a + delta) % _TICKS_PERIOD

    @staticmethod
    def ticks_diff(a: int, b: int) -> int:
        return (a - b + _TICKS_PERIOD // 2) % _TICKS_PERIOD - _TICKS_PERIOD // 2

    def sleep_ms(self, ms: int) -> None:
        self.sleeps.append(ms)
        self.now += ms

    def stall(self, ms: int) -> None:
        self.now += ms


class Watchdog:
    """Ends the run when the simulated clock reaches ``end_ms``; counts feeds."""

    def __init__(self, clock: SimClock, end_ms: int) -> None:
        self.clock = clock
        self.end_ms = end_ms
        self.feeds = 0

    def feed(self) -> None:
        self.feeds += 1
        if self.clock.now >= self.end_ms:
            raise EndOfRun()


class LoopPort:
    """A serial port for the loop: bytes the host sends at simulated times, bytes
    the board wrote; ``accept=False`` makes every write a dropped frame."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.scheduled: list[tuple[int, bytes]] = []
        self.rx = bytearray()
        self.tx = bytearray()
        self.accept = True

    def send_at(self, at_ms: int, data: bytes) -> None:
        self.scheduled.append((at_ms, data))

    def readinto(self, buf: bytearray) -> int:
        for item in [s for s in self.scheduled if s[0] <= self.clock.now]:
            self.scheduled.remove(item)
            self.rx += item[1]
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n

    def write(self, data: Any) -> int:
        if not self.accept:
            return 0
        self.tx += bytes(data)
        return len(data)

    def flush(self) -> None:
        pass


class ScriptedHal(SimHal):
    """The sim HAL, its codes made from ``amps(now_ms)`` (cells at 3.7 V, 25 °C)
    at each sample; records every output change as (ms, closed). ``on_sample``
    runs once the codes are read (a stall in the step, an exception)."""

    def __init__(self, board: dict[str, Any], clock: SimClock,
                 amps: Callable[[int], float] = lambda t: 0.0) -> None:
        super().__init__(board["cells"], board["temp_sensors"], b"\x01" * 8, None,
                         "pack_adc" in board["frontend"])
        self.clock = clock
        self.amps = amps
        self.sensors = SensorModel(board, noise_lsb=0)
        self.board = board
        self.outputs_log: list[tuple[int, bool]] = []
        self.on_sample: Callable[[int], None] | None = None
        self.samples: list[int] = []

    def sample(self, raw_cells: Any, raw_temps: Any) -> int:
        now = self.clock.now
        self.samples.append(now)
        s = self.sensors
        n = self.board["cells"]
        cells = [s.cell_code(3.7)] * n
        temps = [s.temp_code(25.0)] * self.board["temp_sensors"]
        current = s.current_code(self.amps(now))
        pack = 3.7 * n
        self.codes[:] = (struct.pack(f"<{n + 1 + len(temps)}H", *cells, current, *temps)
                         + s.tail_values(pack, pack, self.output_closed))
        if self.on_sample is not None:
            self.on_sample(now)
        return super().sample(raw_cells, raw_temps)

    def set_output(self, closed: bool) -> None:
        if not self.outputs_log or self.outputs_log[-1][1] != bool(closed):
            self.outputs_log.append((self.clock.now, bool(closed)))
        super().set_output(closed)


def make_board(tmp_path: Path, name: str = "sim-4s", **changes: Any) -> tuple[dict[str, Any], Path]:
    """A board file (estimator off unless changed) written to ``tmp_path``."""
    board = json.loads((boards_dir() / f"{name}.json").read_text())
    board["estimator"] = "none"
    board.update(changes)
    path = tmp_path / "board.json"
    path.write_text(json.dumps(board))
    return board, path


def install_models(rt: MicroPythonRuntime, folder: str = "/fw") -> None:
    """Copy the MicroPython-side models into the runtime's import path."""
    for src in sorted(MP_MODELS.glob("*.py")):
        rt.exec(f"with open({folder + '/' + src.name!r}, 'w') as f:\n"
                f"    f.write({src.read_text()!r})\n")


def runtime_with_models() -> Iterator[MicroPythonRuntime]:
    """A MicroPython runtime with the board models installed, closed when done
    (the body of a test module's ``mp`` fixture)."""
    rt = MicroPythonRuntime()
    try:
        install_models(rt)
        yield rt
    finally:
        rt.close()


def set_cell_socs(board: Any, socs: list[float]) -> None:
    """Put a board's plant cells at these states of charge (0..1, beyond 1:
    overcharged), under its lock: a virtual or simulated board."""
    with board._lock:
        for cell, soc in zip(board.plant.cells, socs, strict=True):
            cell.soc = soc
