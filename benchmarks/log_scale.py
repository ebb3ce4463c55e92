"""One host logging many simulated boards: `cellguard log` at scale.

Run from the repository root::

    .venv/bin/python benchmarks/log_scale.py [--boards 16] [--cells 16] [--minutes 3]
                                             [--speed 1]

``--boards`` simulated boards (default 16), each a ``--cells``-cell copy of
``boards/sim-4s.json`` (default 16 cells, four temperature sensors, a pack ADC
scaled for the pack) with ``telemetry_period_ms`` 100: 10 telemetry frames per
simulated second each. The boards run in this process, the firmware under the
CPython runtime (MicroPython under Node costs several times more CPU per step,
and this machine has two cores, one of which the logger needs), each paced at
``--speed`` simulated seconds per wall second (default 1: real time) and
charging or discharging at C/2 so the values move.

The logger is ``cellguard log --port ... --port ... --out FILE --quiet`` as a
technician runs it: a subprocess, one reader thread per port, one SQLite
writer, on a ``--link`` path per board. It logs for ``--minutes`` simulated
minutes after every board has been seen (default 3) and is then stopped with
SIGTERM, as Ctrl-C would.

Figures:

- frames/s sustained: telemetry rows stored over the logging window (host clock);
- logger CPU: user+system seconds of the logger process over the window (from
  ``/proc``), as a percentage of one core; and over its whole life (getrusage);
- lost frames: gaps in every board's telemetry counter (the log's gap rows)
  plus frames the boards could not deliver once the logger had them all open
  (``tx_dropped_bytes`` over the window: before a host opens its port a board's
  output goes nowhere); goal 0;
- board pace: simulated seconds the boards advanced per wall second (below
  ``--speed`` means a board was held back, e.g. by a logger that read slowly);
- database size per cell-hour: file size after the run over (boards x cells x
  logged hours of board time).

This is a benchmark, not a test: the goal line (0 lost frames) says PASS or
FAIL, and the exit status is 0 either way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cellguard.boards import load_board
from cellguard.protocol.codec import build_payload, encode_frame
from cellguard.protocol.messages import BY_NAME
from cellguard.sim import SimulatedBoard

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def big_board(cells: int, index: int) -> dict[str, Any]:
    """sim-4s grown to ``cells`` cells, 10 Hz telemetry, a name of its own (unique id)."""
    b = load_board("sim-4s")
    b["name"] = f"s{cells}-{index:02d}"[:6]
    b["description"] = f"log_scale.py: sim-4s as a {cells}S pack"
    b["cells"] = cells
    b["temp_sensors"] = 4
    b["telemetry_period_ms"] = 100
    b["frontend"]["pack_adc"]["full_scale_mv"] = 5000 * cells
    return b


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def count_boards_seen(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT COUNT(DISTINCT board_id) FROM telemetry")
                       .fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boards", type=int, default=16)
    ap.add_argument("--cells", type=int, default=16)
    ap.add_argument("--minutes", type=float, default=3.0, help="simulated minutes to log")
    ap.add_argument("--speed", type=float, default=1.0,
                    help="simulated seconds per wall second for every board (default 1)")
    ap.add_argument("--keep", metavar="FILE", help="copy the log here afterwards")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run of a few seconds: 2 boards x 4 cells, 0.1 simulated "
                         "minutes at 6x")
    args = ap.parse_args(argv)
    if args.quick:
        args.boards, args.cells, args.minutes, args.speed = 2, 4, 0.1, 6.0

    with tempfile.TemporaryDirectory(prefix="cellguard-logscale-") as tmp:
        out = Path(tmp) / "scale.sqlite"
        boards = [SimulatedBoard(big_board(args.cells, i + 1), runtime="cpython", seed=i + 1,
                                 speed=args.speed, initial_soc_pct=40.0 + i,
                                 link=Path(tmp) / f"usb-board-{i + 1:02d}")
                  for i in range(args.boards)]
        for i, b in enumerate(boards):
            b.start()
            b.set_current(1.5 if i % 2 else -1.5)  # C/2 of the 3 Ah cells
        ports = [str(b.link) for b in boards]
        cmd = [sys.executable, "-m", "cellguard.cli", "log", "--out", str(out), "--quiet",
               "--json"]
        for p in ports:
            cmd += ["--port", p]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT)
        try:
            deadline = time.monotonic() + 120
            while count_boards_seen(out) < args.boards:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the logger did not start: {proc.communicate()[1]}")
                time.sleep(0.1)
            wall0, cpu0, unix0 = time.monotonic(), proc_cpu_s(proc.pid), time.time()
            sim0 = [b.time_ms for b in boards]
            dropped0 = sum(b.tx_dropped_bytes for b in boards)
            window_s = args.minutes * 60.0 / args.speed
            while time.monotonic() - wall0 < window_s:
                time.sleep(0.5)
                for b in boards:
                    b.check()
            wall1, cpu1, unix1 = time.monotonic(), proc_cpu_s(proc.pid), time.time()
            sim1 = [b.time_ms for b in boards]
            dropped = sum(b.tx_dropped_bytes for b in boards) - dropped0
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            for b in boards:
                b.close()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"the logger failed ({proc.returncode}): {stderr}")
        summary = json.loads(stdout)
        size = out.stat().st_size
        with contextlib.closing(sqlite3.connect(out)) as db:
            rows = db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0]
            in_window = db.execute(
                "SELECT COUNT(*) FROM telemetry WHERE host_time BETWEEN ? AND ?",
                (unix0, unix1)).fetchone()[0]
            spans = db.execute("SELECT board_id, MAX(t_s) - MIN(t_s) FROM telemetry "
                               "GROUP BY board_id").fetchall()
            gaps = db.execute("SELECT COUNT(*), COALESCE(SUM(lost), 0) FROM gaps").fetchone()
        if args.keep:
            Path(args.keep).write_bytes(out.read_bytes())

    window = wall1 - wall0
    frames_per_s = in_window / (unix1 - unix0)
    cpu_window = (cpu1 - cpu0) / window * 100.0
    cpu_life = (usage.ru_utime + usage.ru_stime)
    pace = sum((b - a) / 1000.0 for a, b in zip(sim0, sim1, strict=True)) / len(boards) / window
    cell_hours = sum(span for _, span in spans) / 3600.0 * args.cells
    lost = int(gaps[1]) + int(summary["lost"])
    frame_bytes = len(encode_frame(BY_NAME["telemetry"].msg_id, 1, build_payload("telemetry", {
        "telemetry_seq": 1, "board_time_ms": 1, "state": "active", "faults": 0, "warnings": 0,
        "alarms": 0, "allowed": 3, "pack_mv": 1, "current_ma": 1, "soc_cpct": 1,
        "cells_mv": [3700] * args.cells, "temps_dc": [250] * 4})))
    target = args.boards * 10.0 * args.speed

    print(f"log_scale: {args.boards} boards x {args.cells} cells, telemetry 10 Hz each, "
          f"firmware under CPython, boards paced at {args.speed:g}x")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    print(f"logged:  {rows} telemetry rows, {summary['samples']} in the summary, "
          f"{args.minutes:g} simulated minutes per board ({window:.0f} s wall)")
    print(f"frames/s sustained:    {frames_per_s:8.1f}  (boards send {target:.0f}/s at "
          f"{args.speed:g}x; {frame_bytes} bytes each on the wire)")
    print(f"logger CPU, logging:   {cpu_window:8.1f} % of one core "
          f"({(cpu1 - cpu0) / max(in_window, 1) * 1e6:.0f} µs per frame)")
    print(f"logger CPU, whole run: {cpu_life:8.1f} s user+system (start-up and the "
          f"final checkpoint included)")
    print(f"board pace:            {pace:8.2f} simulated s per wall s (target {args.speed:g})")
    print(f"lost frames:           {lost:8d}  (gap rows {gaps[0]}, board bytes dropped "
          f"{dropped})")
    print(f"database:              {size / 1e6:8.2f} MB for {cell_hours:.2f} cell-hours = "
          f"{size / 1e3 / max(cell_hours, 1e-9):.1f} kB per cell-hour")
    ok = lost == 0 and dropped == 0
    print(f"goal (0 lost frames): {'PASS' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
