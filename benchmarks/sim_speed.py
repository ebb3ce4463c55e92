"""How much faster than real time the simulated board runs, with a host reading it.

Run from the repository root::

    .venv/bin/python benchmarks/sim_speed.py                  # 10 simulated minutes per run
    .venv/bin/python benchmarks/sim_speed.py --minutes 30 --repeat 3
    .venv/bin/python benchmarks/sim_speed.py --runtime micropython --cells 4

For each runtime (MicroPython, the WebAssembly port under Node; CPython for
comparison) and each board (``sim-4s``, and the same board grown to 16 cells and
16 temperature sensors with a pack divider that spans them), it starts a
``SimulatedBoard`` free-running at ``speed=math.inf`` (no pacing: as fast as it
goes), opens the pseudo-terminal with ``BoardClient`` like a host, says HELLO,
and then reads and decodes every frame while the board runs the given
simulated time with a 1C discharge. The board waits for a host that reads
slowly (USB CDC flow control), so the figure includes the host's reading and
decoding. The clock starts when the host is connected and stops when the board
time has advanced by the run's length; setup (Node, the firmware's import,
booting) is not counted.

It prints simulated seconds per wall second (the speed-up over real time),
wall microseconds per control step, the telemetry frames the host read (after
the run, the board pauses and the host drains the pty) against about what the
board sent since boot, and the breaks in their sequence numbers (a lost frame).
The goal line checks the 4-cell board under MicroPython against 100x. Figures
are wall-clock times: they vary with the machine and its load. It always exits
0 (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import itertools
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from cellguard.boards import load_board
from cellguard.link.client import BoardClient
from cellguard.sim import SimulatedBoard

GOAL_RATIO = 100.0
GOAL_RUNTIME = "micropython"
GOAL_CELLS = 4


def make_board(cells: int) -> dict[str, Any]:
    """``sim-4s``, or it grown to ``cells`` cells with as many sensors."""
    board = load_board("sim-4s")
    if cells == board["cells"]:
        return board
    board["name"] = f"sim-{cells}s-bench"
    board["cells"] = cells
    board["temp_sensors"] = cells
    # A pack divider that spans the longer string (the cells' full scale each).
    board["frontend"]["pack_adc"]["full_scale_mv"] = (
        cells * board["frontend"]["cell_adc"]["full_scale_mv"])
    return board


@dataclass
class Run:
    runtime: str
    cells: int
    sim_s: float
    wall_s: float
    steps: int
    telemetry: int  # TELEMETRY frames the host read after HELLO
    sent: int  # about what the board sent since boot (one per telemetry period)
    gaps: int  # breaks in the frames' sequence numbers: lost frames

    @property
    def ratio(self) -> float:
        return self.sim_s / self.wall_s

    @property
    def us_per_step(self) -> float:
        return self.wall_s / self.steps * 1e6


def measure(runtime: str, cells: int, seconds: float, seed: int = 1) -> Run:
    board = make_board(cells)
    sim = SimulatedBoard(board=board, runtime=runtime, seed=seed, speed=math.inf,
                         initial_soc_pct=90.0)
    sim.set_current(-board["capacity_mah"] / 1000.0)  # 1C discharge: the plant moves
    sim.pause()  # until the host is connected
    with sim, BoardClient(sim.port) as client:
        sim.resume()
        client.hello(timeout_s=10.0)
        seqs: list[int] = []
        sim0 = sim.time_ms
        wall0 = time.perf_counter()
        end_ms = sim0 + round(seconds * 1000)
        while sim.time_ms < end_ms:
            for msg in client.receive():
                if msg.name == "telemetry":
                    seqs.append(int(msg.payload["telemetry_seq"]))
            sim.check()
        wall = time.perf_counter() - wall0
        sim_ms = sim.time_ms - sim0
        sim.pause()
        # Drain what is still in the pty, so a gap means a lost frame.
        quiet = time.monotonic() + 0.3
        while time.monotonic() < quiet:
            msgs = client.receive()
            seqs += [int(m.payload["telemetry_seq"]) for m in msgs if m.name == "telemetry"]
            if msgs:
                quiet = time.monotonic() + 0.3
        sent = sim.time_ms // board["telemetry_period_ms"]  # since boot, about
    gaps = sum(1 for a, b in itertools.pairwise(seqs) if b != (a + 1) & 0xFFFF)
    return Run(runtime, cells, sim_ms / 1000.0, wall, sim_ms // sim.period_ms, len(seqs),
               sent, gaps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0,
                    help="simulated minutes per run (default 10)")
    ap.add_argument("--runtime", action="append", choices=["micropython", "cpython"],
                    help="runtime to measure (repeatable; default both)")
    ap.add_argument("--cells", action="append", type=int, choices=[4, 16],
                    help="board size to measure (repeatable; default 4 and 16)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per figure; the median is reported (default 1)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run of a few seconds: 0.5 simulated minutes, 4 cells, both "
                         "runtimes")
    args = ap.parse_args(argv)
    if args.quick:
        args.minutes, args.cells = 0.5, args.cells or [4]
    runtimes = args.runtime or ["micropython", "cpython"]
    sizes = args.cells or [4, 16]
    seconds = args.minutes * 60.0
    print(f"{args.minutes:g} simulated minutes per run, free-running (speed=inf), a host "
          f"reading over the pty; {platform.machine()} {platform.system()}, Python "
          f"{platform.python_version()}")
    print()
    print("| runtime | cells | speed-up (sim s / wall s) | wall µs per 100 ms step | "
          "telemetry read / sent | gaps |")
    print("|---|---|---|---|---|---|")
    results: dict[tuple[str, int], float] = {}
    for runtime in runtimes:
        for cells in sizes:
            runs = [measure(runtime, cells, seconds, args.seed) for _ in range(args.repeat)]
            ratio = statistics.median(r.ratio for r in runs)
            results[(runtime, cells)] = ratio
            spread = (f" ({min(r.ratio for r in runs):.0f}–{max(r.ratio for r in runs):.0f})"
                      if len(runs) > 1 else "")
            last = runs[-1]
            print(f"| {runtime} | {cells} | {ratio:.0f}x{spread} | "
                  f"{statistics.median(r.us_per_step for r in runs):.0f} | "
                  f"{last.telemetry} / {last.sent} | {last.gaps} |", flush=True)
    goal = results.get((GOAL_RUNTIME, GOAL_CELLS))
    print()
    if goal is None:
        print(f"goal: {GOAL_RUNTIME}, {GOAL_CELLS} cells >= {GOAL_RATIO:.0f}x: not measured")
    else:
        verdict = "PASS" if goal >= GOAL_RATIO else "FAIL"
        print(f"goal: {GOAL_RUNTIME}, {GOAL_CELLS} cells >= {GOAL_RATIO:.0f}x real time: "
              f"{goal:.0f}x  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
