"""Compile the firmware with mpy-cross, as it is deployed to a board.

    python tools/build_mpy.py                 # build/mpy/cellguard_fw/*.mpy (+ main.py)
    python tools/build_mpy.py --out DIR       # somewhere else
    python tools/build_mpy.py --firmware DIR  # a copy of firmware/

A ``.mpy`` keeps the name of its source file (an interned string, loaded into the
board's heap with the module). mpy-cross therefore runs in the firmware folder on
names relative to it (``cellguard_fw/app.py``): the output, and so the heap a board
needs, is the same wherever the repository sits. Every place the project builds
``.mpy`` files goes through :func:`compile_module`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cellguard.deploy.build import (  # noqa: F401  (the names tests and benchmarks use)
    NOT_DEPLOYED,
    PACKAGE,
    BuildError,
    build_package,
    compile_module,
    deployed_sources,
    source_name,
)

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Compile the firmware package with mpy-cross.")
    ap.add_argument("--firmware", type=Path, default=FIRMWARE,
                    help="the firmware folder (default: firmware/ of this repository)")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "mpy",
                    help="output folder (default: build/mpy)")
    args = ap.parse_args(argv)
    if not (args.firmware / PACKAGE).is_dir():
        print(f"error: {args.firmware} has no {PACKAGE}/ package", file=sys.stderr)
        return 2
    try:
        built = build_package(args.firmware, args.out)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    main_py = args.firmware / "main.py"
    if main_py.exists():  # main.py stays source: a board runs main.py, not main.mpy
        (args.out / "main.py").write_bytes(main_py.read_bytes())
    total = sum(len(b) for b in built.values())
    print(f"{len(built)} modules, {total} bytes of .mpy in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
