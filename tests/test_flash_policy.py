"""Protection first, I/O after; the write policy on a modelled LittleFS flash
(issue 12, items 1, 8, 9). The firmware runs under CPython here with the flash
model as its filesystem; tests/test_firmware_micropython.py mounts the same
model under the real MicroPython runtime."""

from __future__ import annotations

import json
from array import array

import pytest

from cellguard.paths import boards_dir
from cellguard.sim.flash import FlashModel, PowerLost
from cellguard_fw import codec
from cellguard_fw.app import Bms
from cellguard_fw.hal import Hal
from cellguard_fw.latches import LatchStore

MV_CODE = 65535 / 5000  # sim-4s: 16-bit cell ADC, 5 V full scale
NORMAL = round(3700 * MV_CODE)
OVER = round(4300 * MV_CODE)


class OrderHal(Hal):
    """Records every output change in a shared log, with the flash and the port."""

    def __init__(self, log: list[tuple[str, str]], n_cells: int, n_temps: int) -> None:
        self.log = log
        self.cells = array("H", [NORMAL] * n_cells)
        self.temps = array("H", [2000] * n_temps)
        self.current = 32768
        self.closed = False

    def sample(self, raw_cells: array, raw_temps: array) -> int:
        raw_cells[:] = self.cells
        raw_temps[:] = self.temps
        return self.current

    def set_output(self, closed: bool) -> None:
        if closed != self.closed:
            self.log.append(("output", "closed" if closed else "open"))
        self.closed = closed

    def set_directions(self, charge: bool, discharge: bool) -> None:
        self.log.append(("directions", f"{bool(charge)} {bool(discharge)}"))

    def unique_id(self) -> bytes:
        return bytes(range(8))

    def storage_dir(self) -> str:
        return "/flash"


class OrderPort:
    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log

    def readinto(self, buf: bytearray) -> int:
        return 0

    def write(self, data: bytes) -> int:
        self.log.append(("port", data[:1].hex()))
        return len(data)


def board() -> dict[str, object]:
    b = json.loads((boards_dir() / "sim-4s.json").read_text())
    b["estimator"] = "none"
    return b


def boot(flash: FlashModel, switches: str = "dual") -> tuple[Bms, OrderHal,
                                                            list[tuple[str, str]]]:
    log: list[tuple[str, str]] = []
    flash.on_op = lambda kind, path: log.append(("flash " + kind, path))
    b = board()
    b["switches"] = switches
    hal = OrderHal(log, int(b["cells"]), int(b["temp_sensors"]))  # type: ignore[call-overload]
    bms = Bms(b, hal, OrderPort(log))
    return bms, hal, log


@pytest.mark.parametrize("switches", ["single", "dual"])
def test_a_trip_opens_the_output_before_any_flash_or_port_write(flash: FlashModel,
                                                                switches: str) -> None:
    """Item 1: the step that trips drives the output open first (on separate charge
    and discharge switches, the over-voltage stops the charge switch only); the latch
    file, the event log and the FAULT_EVENT come after it."""
    bms, hal, log = boot(flash, switches)
    for _ in range(30):
        bms.step(100)
    assert hal.closed, "the output should close on a healthy pack"
    hal.cells[0] = OVER
    for _ in range(100):
        del log[:]
        bms.step(100)
        if bms.latched:
            break
    assert bms.latched & codec.FAULT_CELL_OVERVOLTAGE
    driven = ("output", "open") if switches == "single" else ("directions", "False True")
    assert hal.closed == (switches == "dual")
    opened = log.index(driven)
    io = [k for k, (kind, _) in enumerate(log) if kind.startswith(("flash", "port"))]
    assert any(log[k][0] == "flash rename" for k in io), log  # the latch was saved
    assert any(log[k][0] == "port" for k in io), log  # the FAULT_EVENT went out
    assert opened < min(io), log
    # the event log's append waits for persist(), outside the step
    assert not any(path == "/events.bin" for kind, path in log if kind.startswith("flash"))
    assert flash.files.get("/latches.bin")
    for _ in range(20):
        bms.step(100)
        bms.persist()
    assert bms.events.saved == bms.events.total


def test_a_contactor_fault_found_by_the_drive_is_reported_after_it(flash: FlashModel) -> None:
    """A fault the contactor finds while being driven is still reported (and
    latched) in the same step, after the drive."""
    bms, hal, _ = boot(flash)
    bms.contactor.faults = codec.FAULT_CONTACTOR_WELDED  # as its step would find
    bms.step(100)
    assert bms.faults & codec.FAULT_CONTACTOR_WELDED
    assert bms.latched & codec.FAULT_CONTACTOR_WELDED
    assert not hal.closed


# -- item 8: the latch word, power lost at every operation -------------------


def save_sequence(flash: FlashModel, before: int, after: int) -> int:
    """The number of flash operations one save takes."""
    LatchStore("/flash/latches.bin").save(before)
    start = flash.ops
    LatchStore("/flash/latches.bin").save(after)
    return flash.ops - start


@pytest.mark.parametrize(("before", "after"), [(0, 0b1), (0b1, 0b101), (0b101, 0b100)])
def test_power_lost_at_every_point_of_a_latch_save(flash: FlashModel, before: int,
                                                   after: int) -> None:
    """Item 8: whatever operation the power fails at, the next boot reads either
    the old or the new word, and once the save has returned, the new one. A new
    latch (a bit set) is never lost once save() returned; a boot never reads a
    word older than the last saved one."""
    n = save_sequence(flash, 0, 0)
    assert n >= 3  # open, write, close (then the rename): something to interrupt
    for fail_at in range(n + 1):
        fs = FlashModel(mount_point="/flash")
        flash.files, flash.blocks_of = fs.files, fs.blocks_of
        flash.reboot()
        LatchStore("/flash/latches.bin").save(before)
        LatchStore("/flash/latches.bin").load()
        flash.fail_after = flash.ops + fail_at
        finished = False
        try:
            LatchStore("/flash/latches.bin").save(after)
            finished = True
        except PowerLost:
            pass
        flash.reboot()
        got = LatchStore("/flash/latches.bin").load()
        if finished or fail_at >= 3:  # returned, or its record was closed
            assert got == after, (fail_at, got)
        else:
            assert got in (before, after), (fail_at, got)
        # a second power cycle reads the same (the boot settled on one record)
        flash.reboot()
        assert LatchStore("/flash/latches.bin").load() == got


def test_the_newest_record_wins_over_a_stale_main_file(flash: FlashModel) -> None:
    """Item 8: a ``.new`` record left by a save interrupted after its close is
    newer than the main file (higher sequence): the boot takes it, not the old
    latch word (main preferred the main file: a lost latch)."""
    store = LatchStore("/flash/latches.bin")
    store.save(0)
    start = flash.ops
    flash.fail_after = start + 3  # open, write, close of the .new record; no more
    with pytest.raises(PowerLost):
        LatchStore("/flash/latches.bin").save(codec.FAULT_SHORT_CIRCUIT)
    flash.reboot()
    assert "/latches.bin.new" in flash.files
    assert LatchStore("/flash/latches.bin").load() == codec.FAULT_SHORT_CIRCUIT


def test_a_latch_save_is_a_rename_over_the_old_file(flash: FlashModel) -> None:
    """Item 8: one atomic rename replaces the record; no remove before it (the
    remove is what opened the window for a lost latch on main)."""
    LatchStore("/flash/latches.bin").save(1)
    del flash.log[:]
    LatchStore("/flash/latches.bin").save(3)
    kinds = [k for k, _ in flash.log]
    assert kinds == ["open", "write", "close", "rename"], kinds
    assert sorted(flash.files) == ["/latches.bin"]
