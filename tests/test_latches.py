"""Latched faults in flash: write-new-then-rename, never bricked by a torn write."""

from __future__ import annotations

import os
from pathlib import Path

from cellguard_fw.latches import LatchStore


def test_latches_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "latches.bin")
    LatchStore(path).save(0b101)
    assert LatchStore(path).load() == 0b101
    LatchStore(path).save(0)
    assert LatchStore(path).load() == 0


def test_a_torn_new_file_keeps_the_old_state(tmp_path: Path) -> None:
    path = tmp_path / "latches.bin"
    LatchStore(str(path)).save(0b11)
    (tmp_path / "latches.bin.new").write_bytes(b"\x07\x00")  # power lost mid-write
    assert LatchStore(str(path)).load() == 0b11


def test_a_crash_before_the_rename_is_finished_at_boot(tmp_path: Path) -> None:
    path = tmp_path / "latches.bin"
    store = LatchStore(str(path))
    store.save(0b1000)
    os.rename(path, str(path) + ".new")  # removed the old file, not yet renamed
    assert LatchStore(str(path)).load() == 0b1000
    assert path.exists() and not (tmp_path / "latches.bin.new").exists()


def test_a_corrupt_file_is_not_believed(tmp_path: Path) -> None:
    path = tmp_path / "latches.bin"
    LatchStore(str(path)).save(0b1)
    data = bytearray(path.read_bytes())
    data[0] ^= 0x02
    path.write_bytes(bytes(data))
    assert LatchStore(str(path)).load() == 0


def test_without_storage_latches_live_in_ram(tmp_path: Path) -> None:
    store = LatchStore(None)
    store.save(5)
    assert store.load() == 0
    assert list(tmp_path.iterdir()) == []
