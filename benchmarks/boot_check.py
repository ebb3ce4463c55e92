"""What the boot check costs: main.py hashing a slot's files against its manifest, measured
under real MicroPython and projected onto an RP2040.

Run from the repository root::

    .venv/bin/python benchmarks/boot_check.py [--reps R] [--batch-ms MS] [--board NAME ...]
    .venv/bin/python benchmarks/boot_check.py --quick   # a smoke run, ~5 s

Before it runs a slot's firmware, ``firmware/main.py`` (``_chk``) reads the slot's
``manifest.json``, hashes every file it lists (SHA-256, 1 KB at a time into one buffer),
compares sizes and hashes, the set hash, and lists ``cellguard_fw/`` for files it does not
list (docs/firmware.md, "Verified at boot"). The timed code is that function, taken from
``main.py``'s own text at run time (``check_source``), run on a real build (``cellguard
build``, unsigned) written to the runtime's filesystem, in the MicroPython 1.27 WebAssembly
port: the interpreter the virtual board runs, so its ``time.ticks_us`` is board time there.

Figures, for each board's build:

- the bytes and files hashed; what one check allocates (``gc.mem_alloc`` before and after,
  in one request: this port never collects inside one) and what ``main.py`` keeps compiled
  while the firmware runs (its code object, and the names it interns);
- time: interleaved batches of at least ``--batch-ms`` (``ticks_us`` ticks in whole ms in
  this port), ``--reps`` times, medians: the whole check; its hashing alone (the same
  bytes from RAM, in the same 1 KB updates); the published integer loop;
- the RP2040 projection, two ways. *Integer loop*: the whole check at the ratio RP2040 /
  here of the loop whose RP2040 time is published (1,000,000 iterations: 7,984 ms, RP2040
  at 125 MHz, MicroPython 1.23.0: the table ``estimator_cost.py`` and ``ed25519_board.py``
  use). *Model*: the check's Python share (the whole less its hashing) at that ratio, and
  the hashing at a C rate: a pyboard's published ``uhashlib.sha256`` rate (Cortex-M4 at
  168 MHz, 1 KB buffers: 1,379 KB/s) scaled to 125 MHz and taken ``M0_FACTOR`` (2) times
  slower for the Cortex-M0+, an assumption (no shifted operands, eight low registers).
  Flash reads (LittleFS from the memory-mapped flash) are not modelled.

A benchmark: it prints figures and never asserts them; the exit status is 0 (1 only if a
check of a good build does not pass). benchmarks/README.md records the figures.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from cellguard.deploy.build import Build, build
from cellguard.paths import firmware_dir
from cellguard.sim.runtime import MicroPythonRuntime

BOARDS = ("pico-4s", "pico-bq76952-16s")
GOAL_MS = 1000.0  # the check at every boot, projected onto an RP2040
CALIBRATION_ITERS = 10_000  # iterations of the integer loop per call
RP2040_ADD_US = 7984.0 * 1000.0 / 1_000_000  # the published integer loop, one iteration
PYBOARD_SHA256_BPS = 1_379_000  # uhashlib.sha256, pyboard (Cortex-M4, 168 MHz), 1 KB buffers
PYBOARD_HZ = 168e6
RP2040_HZ = 125e6
M0_FACTOR = 2.0  # cycles per byte, Cortex-M0+ over Cortex-M4 (an assumption)
SLOT = "/bench/a/"
SOURCES = {
    "integer loop": "shaoziyang/micropython_benchmarks, README 'Reference test results', "
                    "RP2040 column (MicroPython v1.23.0, 125 MHz): add_test 7,984 ms",
    "pyboard sha256": "forum.micropython.org, 'sha256 and the cortex M4' (2015): "
                      "uhashlib.sha256 of 1,024-byte buffers on a pyboard, 1379 KB/s",
}


def check_source() -> str:
    """``main.py``'s ``_chk``, as its text stands (and the modules it uses)."""
    text = (firmware_dir() / "main.py").read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == "_chk":
            segment = ast.get_source_segment(text, node)
            assert segment is not None
            return "import json, os\n" + segment + "\n"
    raise SystemExit("firmware/main.py has no _chk: this benchmark measures that function")


HARNESS = """
import gc, time
from hashlib import sha256

def _int_loop(p):
    # The published loop: p[0] times, the sum of two list items into a local.
    for _ in range(p[0]):
        s = p[1] + p[2]

def _hash_ram(blobs):
    # The check's hashing alone: the same bytes from RAM, in the same 1 KB updates.
    for data in blobs:
        h = sha256()
        v = memoryview(data)
        for at in range(0, len(data), 1024):
            h.update(v[at:at + 1024])
        h.digest()

def _batch(kind, count):
    ticks_us = time.ticks_us
    cal, blobs = _cal, _blobs
    t = ticks_us()
    while ticks_us() == t:
        pass
    t0 = ticks_us()
    if kind == 0:
        for _ in range(count):
            _chk(_slot, "0.0.1")
    elif kind == 1:
        for _ in range(count):
            _hash_ram(blobs)
    else:
        for _ in range(count):
            _int_loop(cal)
    return time.ticks_diff(ticks_us(), t0)
"""
KINDS = ("check", "hash", "int loop")


@dataclass
class Figures:
    board: str
    files: int
    hashed: int  # bytes
    status: int  # the check's verdict on the good build (0)
    tampered: int  # ... and on the build with one byte changed (5)
    allocated: int  # bytes one check allocates
    per_call_us: dict[str, float]  # kind -> median
    iqr_check_us: tuple[float, float]

    @property
    def ratio(self) -> float:
        """RP2040 / here, by the integer loop."""
        return RP2040_ADD_US / (self.per_call_us["int loop"] / CALIBRATION_ITERS)

    @property
    def projected_int_ms(self) -> float:
        return self.per_call_us["check"] * self.ratio / 1000.0

    @property
    def c_rate_bps(self) -> float:
        return PYBOARD_SHA256_BPS * (RP2040_HZ / PYBOARD_HZ) / M0_FACTOR

    @property
    def projected_model_ms(self) -> float:
        rest = max(self.per_call_us["check"] - self.per_call_us["hash"], 0.0)
        return rest * self.ratio / 1000.0 + self.hashed / self.c_rate_bps * 1000.0


def slot_files(b: Build) -> dict[str, bytes]:
    """What a deploy puts in a slot: every file but the loader."""
    return {p: d for p, d in b.files.items() if p != "main.py"}


def load(rt: MicroPythonRuntime, files: dict[str, bytes]) -> None:
    lines = ["import os"]
    for folder in ("/bench", SLOT[:-1], SLOT + "cellguard_fw"):
        lines.append(f"try:\n    os.mkdir({folder!r})\nexcept OSError:\n    pass")
    for path, data in files.items():
        lines.append(f"with open({SLOT + path!r}, 'wb') as f:\n"
                     f"    f.write(bytes.fromhex({data.hex()!r}))")
    rt.exec("\n".join(lines))


def _ed25519_board() -> ModuleType:
    """benchmarks/ed25519_board.py (its interleaved batches), loaded by path: the
    scripts of benchmarks/ are not a package."""
    name = "cellguard_benchmarks_ed25519_board"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("ed25519_board.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while made
        spec.loader.exec_module(module)
    return sys.modules[name]


def _json(rt: MicroPythonRuntime, source: str, timeout_s: float = 120.0) -> Any:
    return json.loads(rt.exec(source, timeout_s).strip().splitlines()[-1])


def main_py_kept() -> tuple[int, int]:
    """(bytes main.py's compiled code keeps on the heap, names it interns): what stays
    while the firmware runs, as main.py's frame does."""
    rt = MicroPythonRuntime()

    def names() -> int:
        out = rt.exec("micropython.qstr_info()")
        return int(out.split("n_qstr=")[1].split(",")[0])

    try:
        rt.exec("import gc, micropython\n_a = _c = None\n"
                f"_s = {(firmware_dir() / 'main.py').read_text()!r}")
        before = names()
        kept = _json(rt, "gc.collect()\n_a = gc.mem_alloc()\n_c = compile(_s, 'main.py', 'exec')\n"
                         "gc.collect()\nprint(gc.mem_alloc() - _a)")
        return int(kept), names() - before
    finally:
        rt.close()


def measure(board: str, b: Build, reps: int, batch_ms: float) -> Figures:
    files = slot_files(b)
    manifest = json.loads(files["manifest.json"])
    hashed = sum(f["size"] for f in manifest["files"] if f["path"] != "main.py")
    rt = MicroPythonRuntime()
    try:
        load(rt, files)
        rt.exec(check_source() + HARNESS + f"_slot = {SLOT!r}\n"
                f"_cal = [{CALIBRATION_ITERS}, 12345678, 56781234]\n")
        # The blobs: the listed files' bytes, read once into RAM.
        rt.exec("_blobs = []\n"
                f"for _e in json.load(open({SLOT + 'manifest.json'!r}))['files']:\n"
                "    if _e['path'] != 'main.py':\n"
                f"        _blobs.append(open({SLOT!r} + _e['path'], 'rb').read())\n")
        status = int(_json(rt, "print(_chk(_slot, '0.0.1')[0])"))
        rt.exec("gc.collect()")
        allocated = int(_json(rt, "_a0 = gc.mem_alloc()\n_r = _chk(_slot, '0.0.1')\n"
                                  "print(gc.mem_alloc() - _a0)"))
        rt.exec("_r = None\ngc.collect()")
        per = _ed25519_board().interleaved_batches(
            rt, list(KINDS), lambda i, c: f"_batch({i}, {c})", batch_ms, reps, 1 << 20)
        # One byte of one module changed: the check must say so (5).
        path = next(p for p in files if p.endswith(".mpy"))
        rt.exec(f"with open({SLOT + path!r}, 'r+b') as f:\n"
                "    _x = f.read(1)\n    f.seek(0)\n    f.write(bytes([_x[0] ^ 1]))\n")
        tampered = int(_json(rt, "print(_chk(_slot, '0.0.1')[0])"))
    finally:
        rt.close()
    checks = per["check"]
    iqr = (statistics.quantiles(checks, n=4)[0], statistics.quantiles(checks, n=4)[2]) \
        if len(checks) >= 4 else (min(checks), max(checks))
    return Figures(board, len(manifest["files"]) - 1, hashed, status, tampered, allocated,
                   {k: statistics.median(v) for k, v in per.items()}, iqr)


def report(figures: list[Figures], kept: tuple[int, int], reps: int) -> bool:
    ok = True
    print("What the check reads (the build as `cellguard build` writes it, unsigned):")
    print(f"  {'board':<20}{'files':>6}{'bytes hashed':>14}{'allocated':>11}"
          f"{'verdict: good / 1 byte changed':>33}")
    for f in figures:
        verdict = f"{f.status} / {f.tampered}"
        print(f"  {f.board:<20}{f.files:>6}{f.hashed:>14,}{f.allocated:>11,}{verdict:>33}")
        ok = ok and f.status == 0 and f.tampered == 5
    print(f"  main.py compiled: {kept[0]:,} B of code kept while the firmware runs, "
          f"{kept[1]} names interned")
    print(f"\nTime under MicroPython 1.27 (WebAssembly, this machine), medians of {reps}:")
    print(f"  {'board':<20}{'check ms':>10}{'IQR ms':>16}{'hashing ms':>12}"
          f"{'int loop us':>13}{'ratio':>8}")
    for f in figures:
        iqr = f"{f.iqr_check_us[0] / 1000:.2f}-{f.iqr_check_us[1] / 1000:.2f}"
        print(f"  {f.board:<20}{f.per_call_us['check'] / 1000:>10.2f}{iqr:>16}"
              f"{f.per_call_us['hash'] / 1000:>12.2f}"
              f"{f.per_call_us['int loop'] / CALIBRATION_ITERS:>13.3f}{f.ratio:>7.0f}x")
    print("\nProjected onto an RP2040 at 125 MHz (sources: "
          + "; ".join(f"{k}: {v}" for k, v in SOURCES.items()) + "):")
    print(f"  {'board':<20}{'integer loop ms':>17}{'model ms':>10}{'C rate KB/s':>13}")
    for f in figures:
        print(f"  {f.board:<20}{f.projected_int_ms:>17.0f}{f.projected_model_ms:>10.0f}"
              f"{f.c_rate_bps / 1000:>13.0f}")
    print()
    for f in figures:
        worst = max(f.projected_int_ms, f.projected_model_ms) / 1000.0
        print(f"boot check < {GOAL_MS / 1000:.0f} s on an RP2040 (projected), {f.board}: "
              f"{worst:.2f} s: {'PASS' if worst * 1000 < GOAL_MS else 'FAIL'}")
    print("check of a good build passes, one changed byte refused: "
          + ("PASS" if ok else "FAIL"))
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--batch-ms", type=float, default=200.0)
    parser.add_argument("--board", action="append", help="a board file (default: "
                        + ", ".join(BOARDS) + ")")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: pico-4s, one repetition of 20 ms batches")
    args = parser.parse_args(argv)
    boards = args.board or (["pico-4s"] if args.quick else list(BOARDS))
    reps, batch_ms = (1, 20.0) if args.quick else (args.reps, args.batch_ms)
    figures = []
    with tempfile.TemporaryDirectory(prefix="cellguard-bootcheck-") as tmp:
        for board in boards:
            b = build(board, Path(tmp) / board, sign=False)
            figures.append(measure(board, b, reps, batch_ms))
    ok = report(figures, main_py_kept(), reps)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
