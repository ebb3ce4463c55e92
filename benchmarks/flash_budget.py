"""Flash budget: what the firmware writes to flash over a simulated day.

Run from the repository root::

    .venv/bin/python benchmarks/flash_budget.py [--hours 24] [--quick] [--baseline REV]

The firmware (``cellguard_fw`` under CPython) runs the 4-cell simulated board
(``boards/sim-4s.json``, EKF estimator, 100 ms control period) with the flash
model ``cellguard.sim.flash.FlashModel`` as its filesystem: LittleFS-like costs
(metadata commits, pair compaction, copy-on-write data blocks, 4 KB erase
blocks, 256 B program units), datasheet-typical NOR timings (45 ms per erase,
0.7 ms per program unit; the RP2040 runs both with interrupts off). The load
is a pulsed one: 0, -2 A, 0, +2 A, one second each, all day, and the cells
answer with a 30 mΩ drop (so every second holds a current step of 2 A, the case
issue 12 names). Two cases: a steady resistance (the learned R0 growth
settles) and one that swings ±30 % over an hour, as with temperature (the
growth keeps moving: the write policy's worst case, one write per interval).
No fault trips: the writes are the health record, the lifetime record (every
5 minutes), the event log and the latches.

It prints, for the firmware of this tree and, side by side, for a baseline
revision (``--baseline``, default the commit before the write policy; taken
with ``git archive``, left out where git or the revision is missing): erases
per day, programs per day, stall time per hour, the longest stall in one
loop pass, the most-erased block, and the operations per file. Every figure
is counted in simulated time: reruns give the same numbers. ``--quick`` runs
one simulated hour (figures still scaled to a day).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASELINE_REV = "a31de8d"  # main before issue 12's write policy
PATTERN_MA = (0, -2000, 0, 2000)  # one second each
R0_OHM = 0.030


def worker(fw_dir: str, hours: float, drift: bool) -> dict[str, Any]:
    """Run the firmware in ``fw_dir`` for ``hours`` on the flash model; with
    ``drift`` the cells' resistance swings ±30 % over an hour (as with temperature),
    so the learned R0 growth keeps moving."""
    sys.path.insert(0, fw_dir)
    sys.path.insert(1, str(ROOT / "host"))
    from cellguard.paths import boards_dir
    from cellguard.sim.firmware_files import mount_flash
    from cellguard.sim.flash import FlashModel
    from cellguard_fw.app import Bms
    from cellguard_fw.hal import Hal

    fs = FlashModel(mount_point="/flash")
    mount_flash(fs)  # every file-touching module the firmware under test has
    board = json.loads((boards_dir() / "sim-4s.json").read_text())
    fe = board["frontend"]
    cell_scale = ((1 << fe["cell_adc"]["bits"]) - 1) / fe["cell_adc"]["full_scale_mv"]
    cur = fe["current_adc"]
    cur_scale = ((1 << cur["bits"]) - 1 - cur["zero_code"]) / cur["full_scale_ma"]

    class BenchHal(Hal):
        def __init__(self) -> None:
            self.cell_code = 0
            self.current_code = cur["zero_code"]

        def sample(self, raw_cells: array, raw_temps: array) -> int:
            for i in range(len(raw_cells)):
                raw_cells[i] = self.cell_code
            for i in range(len(raw_temps)):
                raw_temps[i] = 2000
            return self.current_code

        def set_output(self, closed: bool) -> None:
            pass

        def unique_id(self) -> bytes:
            return bytes(8)

        def storage_dir(self) -> str:
            return "/flash"

    class NullPort:
        def readinto(self, buf: bytearray) -> int:
            return 0

        def write(self, data: bytes) -> int:
            return len(data)

    hal = BenchHal()
    bms = Bms(board, hal, NullPort())
    persist = getattr(bms, "persist", None)
    steps = int(hours * 36000)
    longest = 0.0
    ops_by_file: dict[str, int] = {}

    def count(kind: str, path: str) -> None:
        name = path.lstrip("/").removesuffix(".new")
        ops_by_file[name] = ops_by_file.get(name, 0) + 1

    fs.on_op = count
    for k in range(steps):
        ma = PATTERN_MA[(k // 10) % 4]
        r0 = R0_OHM * (1.0 + 0.3 * math.sin(2 * math.pi * k / 36000)) if drift else R0_OHM
        hal.cell_code = round((3700 + r0 * ma) * cell_scale)
        hal.current_code = cur["zero_code"] + round(ma * cur_scale)
        before = fs.stall_ms
        bms.step(100)
        if persist is not None:
            persist()
        if bms.estimate_due():
            bms.estimate()
        longest = max(longest, fs.stall_ms - before)
    return {"hours": hours, "erases": fs.erase_count, "programs": fs.program_count,
            "commits": fs.commits, "compactions": fs.compactions, "stall_ms": fs.stall_ms,
            "longest_ms": longest, "max_block": fs.max_block_erases, "ops": ops_by_file,
            "closed": bool(bms.output_closed), "estimates": bms.estimator.runs
            if bms.estimator is not None else 0}


def baseline_firmware(rev: str, into: Path) -> Path | None:
    """The firmware of ``rev``, unpacked into ``into``; None if git cannot give it."""
    try:
        data = subprocess.run(["git", "archive", rev, "firmware/cellguard_fw"], cwd=ROOT,
                              capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    archive = into / "fw.tar"
    archive.write_bytes(data)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "firmware"


def run_variant(fw_dir: Path, hours: float, drift: bool) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--worker", str(fw_dir),
                           "--hours", str(hours), *(["--drift"] if drift else [])],
                          capture_output=True, text=True,
                          timeout=7200, env={**os.environ, "PYTHONHASHSEED": "0"})
    if proc.returncode != 0:
        raise SystemExit(f"the run of {fw_dir} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=24.0, help="simulated hours (24)")
    ap.add_argument("--quick", action="store_true", help="one simulated hour")
    ap.add_argument("--baseline", default=BASELINE_REV,
                    help=f"git revision to compare with ({BASELINE_REV}); 'none' to skip")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--drift", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    hours = 1.0 if args.quick else args.hours
    if hours <= 0:
        ap.error("--hours must be positive")
    if args.worker:
        print(json.dumps(worker(args.worker, hours, args.drift)))
        return
    runs: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="cellguard-flash-budget-") as tmp:
        base = None if args.baseline == "none" else baseline_firmware(args.baseline,
                                                                      Path(tmp))
        for drift in (False, True):
            what = "drifting R0" if drift else "steady R0"
            if base is not None:
                runs.append((f"{what}: before", run_variant(base, hours, drift)))
            runs.append((f"{what}: after", run_variant(ROOT / "firmware", hours, drift)))
    print(f"Flash budget: sim-4s, EKF, 100 ms steps, pulsed load {PATTERN_MA} mA (1 s each), "
          f"{hours:g} simulated h")
    print("LittleFS-like model: 4 KB erase blocks, 256 B program units, 45 ms/erase, "
          "0.7 ms/program unit (cellguard.sim.flash)")
    if base is None:
        print(f"(no baseline: git revision {args.baseline} not available)")
    else:
        print(f"before: the firmware of {args.baseline}; after: this tree")
    day = 24.0 / hours
    rows = (
        ("erases/day", lambda r: f"{r['erases'] * day:,.0f}"),
        ("programs/day", lambda r: f"{r['programs'] * day:,.0f}"),
        ("metadata commits/day", lambda r: f"{r['commits'] * day:,.0f}"),
        ("stall ms/hour", lambda r: f"{r['stall_ms'] / hours:,.1f}"),
        ("longest stall in a pass ms", lambda r: f"{r['longest_ms']:,.1f}"),
        ("most-erased block/day", lambda r: f"{r['max_block'] * day:,.0f}"),
    )
    width = 28
    print()
    print(f"{'figure':<{width}}" + "".join(f"{name:>26}" for name, _ in runs))
    for label, fmt in rows:
        print(f"{label:<{width}}" + "".join(f"{fmt(r):>26}" for _, r in runs))
    files = sorted({f for _, r in runs for f in r["ops"]})
    for f in files:
        print(f"{'ops on ' + f + '/day':<{width}}"
              + "".join(f"{r['ops'].get(f, 0) * day:>26,.0f}" for _, r in runs))
    print()
    for name, r in runs:
        print(f"{name}: {r['estimates']} estimation runs, output "
              f"{'closed' if r['closed'] else 'OPEN'} at the end")


if __name__ == "__main__":
    main()
