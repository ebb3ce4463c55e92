"""`cellguard demo`: one charge/rest/discharge cycle on a simulated board, logged and plotted.

The script plays the lab's cycler: it charges at 1C until the highest cell
reaches the chemistry's end-of-charge voltage, rests, then discharges at 1C
until the BMS itself stops it at its cell under-voltage limit (on separate
charge and discharge FETs, as sim-4s has, by opening the discharge FET), and
rests again: the condition releases as the cells relax, but the fault stays
latched until someone clears it (``cellguard faults --clear``).
Simulated time runs as fast as the firmware (under real MicroPython by default)
allows.
"""

from __future__ import annotations

import math
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cellguard_fw.chemistry import PROFILES

from .errors import LogFileError
from .files import atomic_output, check_output
from .link.client import Info
from .sim import SimulatedBoard
from .store import LogReader
from .store.logger import log_board, status_printer
from .views.plot import plot_log


@dataclass
class Phase:
    name: str
    started_s: float


class CycleScript:
    """A tick hook that drives the plant through the demo cycle."""

    def __init__(self, charge_v: float, current_a: float, first_rest_s: float = 60.0,
                 mid_rest_s: float = 1200.0, final_rest_s: float = 600.0,
                 limit_s: float = 6 * 3600.0) -> None:
        self.charge_v = charge_v
        self.current_a = current_a
        self.rests = {"rest-before": first_rest_s, "rest": mid_rest_s, "rest-after": final_rest_s}
        self.limit_s = limit_s
        self.armed = threading.Event()
        self.done = threading.Event()
        self.phase: Phase | None = None
        self.log: list[tuple[float, str]] = []

    def _enter(self, sim: SimulatedBoard, name: str) -> None:
        self.phase = Phase(name, sim.time_s)
        self.log.append((sim.time_s, name))

    def __call__(self, sim: SimulatedBoard) -> None:
        if not self.armed.is_set() or self.done.is_set():
            return
        plant = sim.plant
        if self.phase is None:
            self._enter(sim, "rest-before")
        phase = self.phase
        assert phase is not None
        elapsed = sim.time_s - phase.started_s
        if phase.name in self.rests:
            plant.requested_current_a = 0.0
            if elapsed >= self.rests[phase.name]:
                following = {"rest-before": "charge", "rest": "discharge", "rest-after": "done"}
                self._enter(sim, following[phase.name])
        elif phase.name == "charge":
            plant.requested_current_a = self.current_a
            if max(plant.cells_v()) >= self.charge_v or (not plant.passes(True) and elapsed > 5):
                plant.requested_current_a = 0.0
                self._enter(sim, "rest")
        elif phase.name == "discharge":
            plant.requested_current_a = -self.current_a
            if not plant.passes(False) and elapsed > 5:  # the BMS stopped it at its UV limit
                plant.requested_current_a = 0.0
                self._enter(sim, "rest-after")
        if (self.phase and self.phase.name == "done") or sim.time_s > self.limit_s:
            plant.requested_current_a = 0.0
            sim.pause()
            self.done.set()


def run_demo(out_dir: str = "demo", runtime: str = "micropython", board: str = "sim-4s",
             seed: int = 1, force: bool = False) -> int:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LogFileError(f"cannot write into {out_dir}: it is a file, not a folder")
    db = out / "run.sqlite"
    png = out / "run.png"
    out.mkdir(parents=True, exist_ok=True)
    for path in (db, png):  # before the run: an old run stays unless --force
        check_output(path, force=force)
    wall0 = time.monotonic()
    sim = SimulatedBoard(board=board, runtime=runtime, seed=seed, speed=1.0, initial_soc_pct=20.0)
    profile = PROFILES[sim.board["chemistry"]]
    capacity_a = sim.board["capacity_mah"] / 1000.0  # 1C
    script = CycleScript(charge_v=profile["charge_mv"] / 1000.0, current_a=capacity_a)
    sim.tick_hooks.append(script)
    print(f"simulated board {board} ({runtime} firmware) on {sim.start().port}")
    print("cycle: rest 1 min, charge at 1C to the end-of-charge voltage, rest 20 min, "
          "discharge at 1C until the BMS stops it at under-voltage (the fault latches), "
          "rest 10 min")

    def go_fast(info: Info) -> None:
        print(f"connected: {info.board} firmware {info.firmware_version} protocol {info.protocol}"
              f", {info.cell_count} cells {info.chemistry}; logging to {db}")
        sim.speed = math.inf
        script.armed.set()

    # The log is written under a temporary name and renamed into place at the
    # end, so a failed or interrupted run leaves the previous run.sqlite whole.
    with atomic_output(db, force=force) as tmp_db:
        try:
            result = log_board(sim.port, tmp_db, stop=script.done, status=status_printer(),
                               on_connect=go_fast, idle_stop_s=10.0,
                               on_fault=lambda line: print("\n" + line, flush=True))
            sim.check()
            truth = sim.truth()
        finally:
            sim.close()
        wall = time.monotonic() - wall0
        with LogReader(tmp_db) as reader:
            summary = reader.summary()
        _settle(tmp_db)
        for stale in (Path(f"{db}-wal"), Path(f"{db}-shm")):  # the replaced log's, if any
            stale.unlink(missing_ok=True)
    plot_log(db, png, force=force)
    print()
    print("summary")
    for line in summary.lines():
        print("  " + line)
    print(f"  true final SoC:   {truth.soc_pct:.1f} % (plant)")
    print(f"  wall time:        {wall:.1f} s ({summary.duration_s / wall:.0f}x real time)")
    print(f"  link:             {result.bad_frames} bad frames, {result.crc_errors} CRC errors")
    print(f"wrote {db} and {png}")
    if not script.done.is_set():
        print("demo did not complete its cycle", file=sys.stderr)
        return 1
    return 0


def _settle(path: Path) -> None:
    """Fold what may still sit in ``path``'s write-ahead log into the file, so the
    file can be renamed alone (the writer leaves none when it closes cleanly)."""
    if Path(f"{path}-wal").exists():
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA journal_mode=DELETE")
        finally:
            db.close()
