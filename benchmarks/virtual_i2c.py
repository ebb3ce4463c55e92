"""What an I2C transfer costs on the virtual dev board, in host time and in board time.

Run from the repository root::

    .venv/bin/python benchmarks/virtual_i2c.py             # 1000 transfers a kind, both boards
    .venv/bin/python benchmarks/virtual_i2c.py --n 200 --board pico-4s
    .venv/bin/python benchmarks/virtual_i2c.py --quick       # 50 calls, pico-4s, one run

A virtual board (``VirtualBoard``, no plant) runs a loop of ``machine.I2C`` calls against
a ``RegisterDevice`` the host attached at 0x08 (a BQ76952's address). Host time: the
device stamps ``time.perf_counter()`` at each transfer it serves; the span from the first
to the last over the number of calls is the host's cost of one call (the board's request
on its event pipe, the launcher's reader thread, the device model, the answer on the
control pipe, and the board's own interpretation of the call); "addr phases" counts the
STARTs with an address per call (rp2 writes the register address and reads in two
transfers, esp32 in one with a repeated START). Board time: ``ticks_us``
around the same loop on the board (the bus time of each transfer at 400 kHz plus the
interpreter's time; the launcher's wait does not count on the board's clock). Figures
are wall-clock medians of 3 runs: they vary with the machine and its load. It always
exits 0 (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cellguard.sim.i2c import RegisterDevice
from cellguard.sim.virtual import VirtualBoard

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))
CALLS = {
    "readfrom_mem_into (2 bytes)": "i2c.readfrom_mem_into(0x08, 0x14, buf)",
    "writeto_mem (2 bytes)": "i2c.writeto_mem(0x08, 0x3E, b'\\x01\\x02')",
    "readfrom_into (32 bytes)": "i2c.readfrom_into(0x08, big)",
}


class Stamped(RegisterDevice):
    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[float] = []

    def address(self, read: bool) -> bool:
        self.stamps.append(time.perf_counter())
        return super().address(read)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="calls per kind (default 1000)")
    parser.add_argument("--board", action="append", help="pico-4s, esp32-4s (default both)")
    parser.add_argument("--quick", action="store_true", help="50 calls, pico-4s, one run")
    args = parser.parse_args()
    n, runs = (50, 1) if args.quick else (args.n, 3)
    boards = ["pico-4s"] if args.quick else args.board or ["pico-4s", "esp32-4s"]
    print(f"{'board':10} {'call':30} {'host ms/call':>13} {'board us/call':>14} "
          f"{'addr phases':>11}")
    for board in boards:
        dev = Stamped()
        with VirtualBoard(board, plant=False) as vb:
            vb.attach_i2c(0x08, dev)
            for name, call in CALLS.items():
                host, on_board = [], []
                for _ in range(runs):
                    dev.stamps.clear()
                    code = ("from machine import I2C\nimport time\ni2c = I2C(0)\n"
                            "buf = bytearray(2)\nbig = bytearray(32)\n"
                            f"t0 = time.ticks_us()\nfor _ in range({n}):\n    {call}\n"
                            "print(time.ticks_diff(time.ticks_us(), t0))")
                    out = subprocess.run([MPREMOTE, "connect", vb.port, "exec", code],
                                         capture_output=True, text=True, timeout=600)
                    if out.returncode != 0:
                        raise SystemExit(out.stderr or out.stdout)
                    per_call = len(dev.stamps) / n
                    host.append((dev.stamps[-1] - dev.stamps[0]) / (n - 1 / per_call))
                    on_board.append(int(out.stdout.split()[-1]) / n)
                print(f"{board:10} {name:30} {statistics.median(host) * 1000:13.3f} "
                      f"{statistics.median(on_board):14.1f} {per_call:11.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
