"""How long the virtual dev board takes for what an engineer does with a board.

Run from the repository root::

    .venv/bin/python benchmarks/virtual_board.py            # a 20 KB file, 3 repetitions
    .venv/bin/python benchmarks/virtual_board.py --kb 100 --repeat 5

It starts a virtual Pico (``VirtualBoard``, real MicroPython under Node on a pty) on
an empty flash folder and times, with the pinned mpremote as a subprocess exactly as
an engineer runs it: the power-on (process start to the REPL), ``mpremote fs ls``,
``mpremote fs cp`` of a random file onto the board and back (checked byte for byte),
``mpremote soft-reset``; then, with the firmware on the flash folder (as a deploy
leaves it), a power-on to the firmware's HELLO answer. mpremote sends its commands in
raw-paste mode, as to a real board (docs/virtual_board.md). Each mpremote figure includes
mpremote's own start-up (about 0.1 s of Python) and its soft reset of the board.
Figures are wall-clock medians: they vary with the machine and its load. It always
exits 0 (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cellguard.link.client import BoardClient
from cellguard.paths import boards_dir, firmware_dir
from cellguard.sim.virtual import VirtualBoard

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))


def mpremote(port: str, *args: str) -> float:
    t0 = time.perf_counter()
    result = subprocess.run([MPREMOTE, "connect", port, *args], capture_output=True, text=True,
                            timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"mpremote {' '.join(args)} failed: {result.stderr or result.stdout}")
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=20, help="file size for fs cp (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--quick", action="store_true", help="2 KB, one repetition")
    args = parser.parse_args()
    kb, repeat = (2, 1) if args.quick else (args.kb, args.repeat)
    data = random.Random(14).randbytes(kb * 1000)
    rows: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        rows.setdefault(name, []).append(seconds)

    with tempfile.TemporaryDirectory() as tmp:
        src, back = Path(tmp) / "up.bin", Path(tmp) / "down.bin"
        src.write_bytes(data)
        for _ in range(repeat):
            flash = Path(tempfile.mkdtemp(dir=tmp))
            vb = VirtualBoard("pico-4s", flash=flash)
            t0 = time.perf_counter()
            vb.start()
            vb.wait_ready()
            add("power-on to REPL", time.perf_counter() - t0)
            try:
                add("mpremote fs ls", mpremote(vb.port, "fs", "ls"))
                add(f"mpremote fs cp {kb} KB to board", mpremote(vb.port, "fs", "cp", str(src),
                                                                  ":f.bin"))
                add(f"mpremote fs cp {kb} KB from board", mpremote(vb.port, "fs", "cp", ":f.bin",
                                                                    str(back)))
                if back.read_bytes() != data:
                    raise SystemExit("fs cp changed the file")
                add("mpremote soft-reset", mpremote(vb.port, "soft-reset"))
            finally:
                vb.close()
            shutil.copytree(firmware_dir() / "cellguard_fw", flash / "cellguard_fw",
                            ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy(firmware_dir() / "main.py", flash / "main.py")
            shutil.copy(boards_dir() / "pico-4s.json", flash / "board.json")
            with VirtualBoard("pico-4s", flash=flash) as vb:
                t0 = time.perf_counter()
                vb.restart()
                client = BoardClient(vb.port)
                try:
                    client.hello(timeout_s=30)
                finally:
                    client.close()
                add("power-on to firmware HELLO", time.perf_counter() - t0)
    print(f"virtual pico-4s, median of {repeat}")
    for name, values in rows.items():
        print(f"{name:<34} {statistics.median(values):8.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
