"""How long ``cellguard deploy`` takes on the virtual dev board, and what it moves.

Run from the repository root::

    .venv/bin/python benchmarks/deploy_time.py              # 3 repetitions, pico-4s
    .venv/bin/python benchmarks/deploy_time.py --board esp32-4s --repeat 5

Each repetition starts a virtual board (``VirtualBoard``: real MicroPython under Node on
a pty, raw REPL through mpremote's transport) on an empty flash folder and times, in
process (``cellguard.deploy.deploy.deploy``, the code behind the command):

- the full firmware onto the empty board (it sits at its REPL: reached by Ctrl-C);
- a one-module change (``soc.py``) onto the board now running the first build
  (reached by ENTER_REPL; the new build goes into the other slot);
- the same build again (the board runs it already: nothing moves).

Each figure runs from the start of the deploy (the build included) to the board's
HELLO with the new manifest hash, confirmed. Wall-clock medians: they vary with the
machine and its load. It always exits 0 (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from cellguard.deploy.build import build
from cellguard.deploy.deploy import deploy
from cellguard.paths import firmware_dir
from cellguard.sim.virtual import VirtualBoard


def one_module_changed(tmp: Path) -> Path:
    fw = tmp / "firmware"
    shutil.copytree(firmware_dir(), fw, ignore=shutil.ignore_patterns("__pycache__"))
    soc = fw / "cellguard_fw" / "soc.py"
    soc.write_text("# one module changed\n" + soc.read_text())
    return fw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="pico-4s", help="board file (default pico-4s)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--quick", action="store_true", help="one repetition")
    args = parser.parse_args()
    repeat = 1 if args.quick else max(1, args.repeat)
    rows: dict[str, list[float]] = {"full": [], "one": [], "same": []}
    moved: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="cellguard-deploy-bench-") as tmp_name:
        tmp = Path(tmp_name)
        full = build(args.board, tmp / "full")
        one = build(args.board, tmp / "one", firmware=one_module_changed(tmp))
        for i in range(repeat):
            with VirtualBoard(args.board, flash=tmp / f"flash{i}") as vb:
                for name, b in (("full", full), ("one", one), ("same", one)):
                    # Its own builds, signed if this host has a signing key; the check
                    # runs either way (a host without a key measures the same path).
                    r = deploy(args.board, vb.port, the_build=b, allow_unsigned=True)
                    if r.result not in ("deployed", "unchanged"):
                        print(f"{name}: {r.result} {r.message}")
                        return 0
                    rows[name].append(r.seconds)
                    d = r.to_dict()
                    moved[name] = {k: d[k] for k in ("files_sent", "bytes_sent",
                                                     "files_copied_on_board",
                                                     "files_unchanged")}
    print(f"cellguard deploy on a virtual {args.board}, median of {repeat} "
          f"(build, REPL, copy, switch, reset, HELLO confirmed)")
    labels = {"full": "full firmware, empty board", "one": "one module changed",
              "same": "same build again"}
    for name, label in labels.items():
        m = moved[name]
        print(f"{label:28} {statistics.median(rows[name]):6.2f} s   "
              f"{m['files_sent']} files sent ({m['bytes_sent']:,} B), "
              f"{m['files_copied_on_board']} copied on the board, "
              f"{m['files_unchanged']} unchanged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
