"""``cellguard build``: the firmware a board runs, compiled for its MCU, with a manifest
(docs/firmware.md, "Build")."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cellguard import cli
from cellguard.deploy import build as b
from cellguard.paths import boards_dir, firmware_dir

ROOT = Path(__file__).resolve().parents[1]
NEVER_ON_A_BOARD = {"hal_sim", "_cpython_compat", "codec_mirror"}
CHIP_ONLY = {"bq76952", "bq76952_setup", "hal_bq76952"}  # a board with a BQ76952 ("afe") runs these


def run_cli(*args: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cellguard.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=cwd)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def flash_files(folder: Path) -> dict[str, bytes]:
    """What of a build goes onto a board: all but the signature (docs/security.md)."""
    return {p: d for p, d in tree(folder).items() if p != "manifest.sig"}


def board_file(tmp_path: Path, **changes: Any) -> Path:
    board = json.loads((boards_dir() / "pico-4s.json").read_text())
    for key, value in changes.items():
        if value is None:
            board.pop(key, None)
        else:
            board[key] = value
    path = tmp_path / f"{board['name']}-{len(changes)}.json"
    path.write_text(json.dumps(board))
    return path


@pytest.mark.parametrize(("board", "arch"), [("pico-4s", "armv6m"), ("esp32-4s", "xtensawin")])
def test_build_compiles_what_the_board_runs_with_a_manifest(tmp_path: Path, board: str,
                                                            arch: str) -> None:
    out = tmp_path / "out"
    result = b.build(board, out)
    files = flash_files(out)
    assert (out / "manifest.sig").read_bytes() == result.signature  # the suite's key signs
    modules = {Path(p).stem for p in files if p.startswith("cellguard_fw/")}
    assert all(p.endswith(".mpy") for p in files if p.startswith("cellguard_fw/"))
    assert not modules & NEVER_ON_A_BOARD
    assert {"__init__", "board_main", "app", "hal_adc_mux", "codec", "protection",
            "estimator"} <= modules
    assert files["main.py"] == (firmware_dir() / "main.py").read_bytes()
    assert files["board.json"] == (boards_dir() / f"{board}.json").read_bytes()
    manifest = json.loads(files["manifest.json"])
    assert manifest == result.manifest
    assert (manifest["board"], manifest["arch"]) == (board, arch)
    assert manifest["firmware_version"] == "0.1.0"
    from cellguard_fw import codec

    assert manifest["protocol"] == f"{codec.PROTOCOL_MAJOR}.{codec.PROTOCOL_MINOR}"
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(files) - {"manifest.json"}
    for path, entry in listed.items():
        assert entry["size"] == len(files[path])
        assert entry["sha256"] == hashlib.sha256(files[path]).hexdigest()
    lines = "".join(f"{listed[p]['sha256']} {p}\n" for p in sorted(listed))
    assert manifest["sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    assert result.flash_bytes() == sum(len(v) for v in files.values())
    assert sorted(result.left_out) == sorted(f"{n}.py" for n in NEVER_ON_A_BOARD | CHIP_ONLY)


def test_only_a_board_with_the_chip_gets_its_driver() -> None:
    adc = {p.stem for p in b.board_modules(firmware_dir(), {"estimator": "ekf"})}
    chip = {p.stem for p in b.board_modules(firmware_dir(), {"estimator": "ekf", "afe": {}})}
    assert not adc & CHIP_ONLY
    assert chip - adc == CHIP_ONLY


def test_a_board_without_the_estimator_leaves_its_modules_out(tmp_path: Path) -> None:
    with_ekf = b.board_modules(firmware_dir(), {"estimator": "ekf"})
    without = b.board_modules(firmware_dir(), {"estimator": "none"})
    gone = {p.stem for p in with_ekf} - {p.stem for p in without}
    assert "estimator" in gone and "health" in gone and "balancing" in gone
    result = b.build(str(board_file(tmp_path, estimator="none")), tmp_path / "out")
    assert not (tmp_path / "out" / "cellguard_fw" / "estimator.mpy").exists()
    assert "estimator.py" in result.left_out


def test_the_arch_reaches_mpy_cross(tmp_path: Path) -> None:
    """Bytecode .mpy files are the same for every port; -march matters for native code
    (which the firmware never uses): compiled with it, the header names the arch."""
    src = tmp_path / "n.py"
    src.write_text("@micropython.native\ndef f(x):\n    return x + 1\n")
    arches = {}
    for arch in b.ARCH.values():
        data = b.compile_module(tmp_path, src, tmp_path / f"{arch}.mpy", arch=arch)
        arches[arch] = data[2] >> 2
    assert arches == {"armv6m": 4, "xtensawin": 10}  # MicroPython's MP_NATIVE_ARCH_*


def repo_copy(where: Path) -> Path:
    where.mkdir(parents=True)
    shutil.copytree(ROOT / "firmware", where / "firmware",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "boards", where / "boards")
    return where


def test_the_build_is_the_same_bytes_wherever_the_repository_sits(tmp_path: Path) -> None:
    long_root = tmp_path / "l"
    while len(str(long_root)) < 160:
        long_root = long_root / ("checkout-at-a-long-path-" + "z" * 30)
    outs = []
    for root in (repo_copy(long_root), repo_copy(tmp_path / "s")):
        env = dict(os.environ, CELLGUARD_ROOT=str(root))
        out = root / "out"
        proc = run_cli("build", "--board", "pico-4s", "--out", str(out), "--no-heap",
                       "--json", env=env, cwd=root)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["out"] == str(out)
        outs.append(tree(out))
    assert outs[0] == outs[1]
    for name, data in outs[0].items():
        assert str(tmp_path).encode() not in data, name


def test_an_existing_build_is_replaced_whole_and_other_folders_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    b.build("pico-4s", out)
    (out / "cellguard_fw" / "stale.mpy").write_bytes(b"old")
    inode = out.stat().st_ino
    b.build("esp32-4s", out)
    assert not (out / "cellguard_fw" / "stale.mpy").exists()
    assert json.loads((out / "manifest.json").read_text())["board"] == "esp32-4s"
    assert out.stat().st_ino != inode  # a new folder renamed into place, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for target, words in ((mine, "holds something other than a cellguard build"),
                          (mine / "notes.txt", "not a folder"),
                          (tmp_path / "no" / "such", "does not exist")):
        assert cli.main(["build", "--board", "pico-4s", "--out", str(target),
                         "--no-heap"]) == 1
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
    assert (mine / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_a_failed_build_leaves_the_old_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    b.build("pico-4s", out)
    before = tree(out)
    broken = repo_copy(tmp_path / "broken") / "firmware"
    (broken / "cellguard_fw" / "soc.py").write_text("def f(:\n")
    with pytest.raises(b.BuildError, match=r"mpy-cross failed on cellguard_fw/soc\.py"):
        b.build("pico-4s", out, firmware=broken)
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "out"]


@pytest.mark.parametrize(("board", "words"), [
    ("sim-4s", "has mcu 'sim': a build is for a board MicroPython runs on"),
    ("no-such-board",
     "unknown board 'no-such-board'; known boards: esp32-4s, esp32-bq76952-16s, pico-4s"),
])
def test_bad_boards_get_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      board: str, words: str) -> None:
    assert cli.main(["build", "--board", board, "--out", str(tmp_path / "o"), "--no-heap"]) == 1
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_a_board_file_without_an_mcu_gets_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = board_file(tmp_path, mcu=None)
    assert cli.main(["build", "--board", str(path), "--out", str(tmp_path / "o"),
                     "--no-heap"]) == 1
    err = capsys.readouterr().err
    assert "lacks mcu" in err and "Traceback" not in err


def test_build_prints_footprint_and_the_measured_heap(tmp_path: Path) -> None:
    proc = run_cli("build", "--board", "pico-4s", "--out", str(tmp_path / "o"), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    files = flash_files(tmp_path / "o")
    assert data["flash_bytes"] == sum(len(v) for v in files.values())
    assert data["flash_blocks"] == sum(-(-len(v) // 4096) for v in files.values()
                                       if len(v) > 512)
    assert data["sha256"] == json.loads(files["manifest.json"])["sha256"]
    heap = data["heap"]
    assert "benchmarks/firmware_budget.py" in heap["source"]
    # the budget tests/test_budget.py holds the 16-cell firmware to; 4 cells need less
    assert 20_000 < heap["boot"] <= heap["high_water"] < 46 * 1024
    assert heap["estimator_note"] is not None  # pico-4s runs the estimator
    text = run_cli("build", "--board", "esp32-4s", "--out", str(tmp_path / "e"))
    assert text.returncode == 0, text.stderr
    assert "heap:" in text.stdout and "flash:" in text.stdout and "xtensawin" in text.stdout


def test_a_chip_board_build_reports_what_the_chips_range_clamped(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from cellguard.boards import chip_backstop, load_board

    board = load_board("pico-bq76952-16s")
    count, clamped = chip_backstop(board)
    assert count > 20 and clamped == []
    # A 2 mOhm shunt: 1.25 x the 90 A short-circuit limit is 225 mV across it, past
    # OCD2's 200 mV: the chip's backstop sits at the end of its range, and says so.
    board["afe"]["shunt_uohm"] = 2000
    board["frontend"]["current_adc"]["full_scale_ma"] = 100000
    assert chip_backstop(board)[1] == ["occ", "ocd2"]  # OCC: 62 x 2 mV at most
    path = tmp_path / "b.json"
    path.write_text(json.dumps(board))
    assert cli.main(["build", "--board", str(path), "--no-heap", "--out", str(tmp_path / "o")]) == 0
    assert "clamped to the chip's range: occ, ocd2" in capsys.readouterr().out


def test_the_heap_of_a_chip_board_counts_its_driver() -> None:
    """A BQ76952 board's heap is measured with the driver and its HAL (the benchmark's
    chip row over a register image), not as the ADC firmware of its cell count."""
    from cellguard.boards import load_board
    from cellguard.deploy.build import expected_heap

    board = load_board("pico-bq76952-16s")
    chip = expected_heap(board)
    adc = expected_heap({k: v for k, v in board.items() if k != "afe"})
    assert "BQ76952" in chip.source and "BQ76952" not in adc.source
    assert (chip.cells, chip.temps) == (16, 3)
    # the driver and the HAL are counted: several KB more code than the ADC firmware
    assert chip.boot > adc.boot + 8 * 1024
    assert chip.high_water >= chip.boot
