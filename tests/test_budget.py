"""The firmware's allocation and heap budget under real MicroPython.

A short run of ``benchmarks/firmware_budget.py`` (200 control steps, 16 cells and
16 sensors, one drive cycle: every protection trips and releases), and of its
16-cell BQ76952 row (``pico-bq76952-16s`` as deployed, with the chip's I2C traffic
counted at the bus). Allocation and traffic figures are deterministic, so they are
asserted; times are never asserted.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from benchmark_module import load_benchmark as load_module

from cellguard.sim.runtime import MicroPythonRuntime
from cellguard_fw import bq76952 as driver

STEPS = 200

pytestmark = pytest.mark.timeout(60)


def load_benchmark() -> ModuleType:
    return load_module("firmware_budget")


budget = load_benchmark()


def run_board(mpy: bool, firmware: Path | None = None, steps: int = STEPS) -> Any:
    rt = MicroPythonRuntime()  # fresh: the heap figures count the firmware's import
    try:
        return budget.measure_board(rt, 16, 16, steps=steps, mpy=mpy, firmware=firmware)
    finally:
        rt.close()


@pytest.fixture(scope="module")
def figures() -> Iterator[Any]:
    yield run_board(mpy=False)


@pytest.fixture(scope="module")
def chip() -> Iterator[Any]:
    rt = MicroPythonRuntime()
    try:
        yield budget.measure_chip_board(rt, steps=STEPS)
    finally:
        rt.close()


def test_drive_exercised_trips_releases_and_telemetry(figures: Any) -> None:
    """The figures below cover every kind of step, not just an idle board."""
    assert figures.faults_seen & budget.BASIC_FAULTS == budget.BASIC_FAULTS
    assert figures.trips >= 6 and figures.releases >= 6
    assert figures.step_alloc["telemetry"].count == STEPS // 10 + 1
    assert figures.step_alloc["fault event"].count > 0
    assert figures.step_alloc["quiet, fault active"].count > 0
    assert figures.hal_locked_ok, "the bench HAL allocated: the figures would not be the firmware's"


def test_protection_step_allocates_nothing(figures: Any) -> None:
    assert figures.protection_max == 0
    assert figures.protection_total == 0
    assert figures.protection_locked_ok, "Protection.load/step raised MemoryError under heap_lock"
    assert figures.protection_locked_faults & budget.BASIC_FAULTS == budget.BASIC_FAULTS


def test_full_control_step_under_1k(figures: Any) -> None:
    assert figures.step_alloc["all"].max < budget.GOAL_STEP_BYTES, figures.step_alloc
    assert figures.step_alloc["quiet"].max == 0, "a step that sends nothing allocated"


def test_live_heap_does_not_grow(figures: Any) -> None:
    assert figures.heap.live == figures.heap.boot
    assert figures.heap.live_max == figures.heap.boot


def test_heap_high_water_under_46k_as_mpy() -> None:
    """The firmware precompiled with mpy-cross, as it is to be deployed (imported from its
    .py sources it needs more: the compiler's bytecode; see benchmarks/README.md): at
    least 2 KB under the 48 KB it is meant to live in."""
    assert budget.GOAL_HEAP_BYTES == 46 * 1024
    board = run_board(mpy=True)
    # A jump of several KB here is often a new qstr pool: see ``names`` (room, next pool).
    assert board.heap.high_water < budget.GOAL_HEAP_BYTES, (board.heap, board.names)


def test_the_rare_modules_leave_only_their_names() -> None:
    """life_admin at boot and admin at a write are released after: what stays is the
    names they intern (and a new pool when those pass the last one's room)."""
    rt = MicroPythonRuntime()
    try:
        drive, boot, write = budget.measure_rare_names(rt, steps=5)
    finally:
        rt.close()
    assert drive.names < boot.names < write.names
    assert drive.pools <= boot.pools <= write.pools
    # Names cost their text, unless a pool starts: then the pool's slots at once.
    for before, after in ((drive, boot), (boot, write)):
        if after.pools == before.pools:
            assert after.name_bytes - before.name_bytes < 40 * (after.names - before.names)
        else:
            assert after.name_bytes - before.name_bytes > 2000


def test_heap_figure_does_not_depend_on_where_the_repository_sits(tmp_path: Path) -> None:
    """The .mpy build records short source names, so the heap a board needs is the same
    whether the checkout sits under a 150+-character path or a short one."""
    long_dir = tmp_path / "l"
    while len(str(long_dir)) < 160:
        long_dir = long_dir / ("a-checkout-at-a-long-path-" + "y" * 30)
    figures = {}
    for where in (long_dir, tmp_path / "s"):
        copy = where / "firmware"
        shutil.copytree(budget.firmware_dir(), copy,
                        ignore=shutil.ignore_patterns("__pycache__"))
        figures[where] = run_board(mpy=True, firmware=copy, steps=20).heap
    assert len(str(long_dir / "firmware")) >= 150
    long_heap, short_heap = figures.values()
    assert long_heap == short_heap
    assert long_heap.code > 0 and long_heap.high_water >= long_heap.boot


def test_measurement_path_allocates_nothing(figures: Any) -> None:
    """HAL.sample + Measurement.update as Bms.step runs them, through every scenario."""
    assert figures.measurement_locked_ok
    assert figures.measurement_max == 0 and figures.measurement_total == 0


# -- the 16-cell BQ76952 board --------------------------------------------------------

# One measurement cycle of the driver: safety A-C, battery status to CC2, alarm status
# and temperatures, FET status (bq76952.py's block reads)
CYCLE_DATA = driver._N_SAFETY + driver._N_MAIN + driver._N_TEMPS + 1
READS = 4


def test_chip_drive_exercised_trips_releases_and_telemetry(chip: Any) -> None:
    assert chip.kind == "bq76952" and chip.source == ".mpy" and chip.cells == 16
    assert chip.faults_seen & budget.BASIC_FAULTS == budget.BASIC_FAULTS
    assert chip.trips >= 6 and chip.releases >= 6
    assert chip.step_alloc["telemetry"].count == STEPS // 10 + 1
    assert chip.step_alloc["fault event"].count > 0


def test_chip_measurement_path_allocates_nothing(chip: Any) -> None:
    """The driver's four block reads over I2C (CRC on, as the board file has it), the
    HAL's copy and Measurement.update: nothing allocated, and no MemoryError with the
    heap locked."""
    assert chip.measurement_locked_ok, "the measurement path raised MemoryError under heap_lock"
    assert chip.measurement_max == 0 and chip.measurement_total == 0
    assert chip.hal_locked_ok


def test_chip_control_step_allocation(chip: Any) -> None:
    assert chip.protection_max == 0 and chip.protection_locked_ok
    assert chip.step_alloc["quiet"].max == 0, "a chip step that sends nothing allocated"
    assert chip.step_alloc["all"].max < budget.GOAL_STEP_BYTES
    assert chip.heap.live == chip.heap.boot  # the live heap does not grow
    # the chip's code (driver, HAL) is on top of what the ADC board's firmware needs
    assert chip.heap.code > 0 and chip.heap.high_water >= chip.heap.boot


def test_chip_board_start_up_code_is_not_resident(chip: Any) -> None:
    """The driver's and HAL's start-up code (bq76952_setup: data memory, CONFIG_UPDATE,
    the threshold encoding, the settings) leaves the heap once the chip is armed: the
    16-cell chip board's high-water was 60.8 KB with it resident (docs/firmware.md)."""
    assert chip.heap.high_water < 56 * 1024, chip.heap
    assert chip.heap.code < 47 * 1024, chip.heap  # 52.2 KB with it resident


def test_chip_board_keeps_less_resident_than_before_its_trim(chip: Any) -> None:
    """What a chip board keeps after its start: no hal.py (Bq76952Hal has the Hal
    interface itself), the driver's constructor and the front end's channels built by
    bq76952_setup (released), fewer names left interned by it. 200 steps: 53,488 B
    high-water, 738 names with the harness's (55,056 B and 776 before; docs/firmware.md).
    Since then the lifetime record came in (about 4 KB: its code, counters and record
    buffer) and the protocol's numbers stopped being interned names (about 3 KB and 64
    names less): 54,464 B, 677 names. Layout 2 of the record, its rare code released
    (life_admin.py, codec_rare.py): 55,264 B, 692 names. Who may write (the writes in
    admin.py, loaded for a request; the key's id, the gate, the change log's run):
    55,200 B, 701 names."""
    assert chip.heap.high_water < 54 * 1024, chip.heap
    assert chip.heap.code < 44.5 * 1024, chip.heap  # 45.3 KB before the trim
    assert chip.names.count < 710, chip.names  # 776 before the trim


@pytest.mark.parametrize("crc", [False, True])
def test_chip_steady_step_is_four_block_reads(chip: Any, crc: bool) -> None:
    traffic = {t.crc: t for t in chip.traffic}[crc]
    assert traffic.bus_errors == (0,) * len(traffic.bus_errors)
    steady = traffic.steady
    assert len({w.key() for w in steady}) == 1, "steady steps differ"
    assert len(steady) >= len(traffic.steps) - 4  # only the FET changes send more
    w = steady[0]
    assert w.transfers == READS and w.register == READS
    assert w.starts == 2 * READS and w.address == 2 * READS  # START and repeated START
    assert w.data == CYCLE_DATA == 69
    if crc:  # a write of the register, then a read of data and CRC bytes
        assert w.calls == 2 * READS and w.crc == w.data
        assert w.nbytes == 2 * CYCLE_DATA + 3 * READS == 150
    else:
        assert w.calls == READS and w.crc == 0
        assert w.nbytes == CYCLE_DATA + 3 * READS == 81
    assert w.bit_times == 9 * w.nbytes + 3 * READS
    assert w.seconds() == pytest.approx(w.bit_times / 400_000)


@pytest.mark.parametrize("crc", [False, True])
def test_chip_fet_and_balancing_changes(chip: Any, crc: bool) -> None:
    """The drive opens the output on a trip and closes it after the clear: one
    command-only subcommand (two bytes to 0x3E) on top of the steady step; a balancing
    change writes CB_ACTIVE_CELLS, its checksum and length, and reads it back."""
    traffic = {t.crc: t for t in chip.traffic}[crc]
    steady = traffic.steady[0]
    per_data = 2 if crc else 1
    commands = traffic.commands
    assert set(commands) == {0x0095, 0x0096}  # ALL_FETS_OFF, ALL_FETS_ON
    for w in commands.values():
        assert w.subcommands == 1
        assert w.transfers == steady.transfers + 1
        assert w.nbytes == steady.nbytes + 2 + 2 * per_data
    b = traffic.balance
    assert b.subcommands == 2 and b.last_command == 0x0083
    # writes: 0x3E (command + mask), 0x60 (checksum, length), 0x3E (the query);
    # reads: 0x3E (done), 0x60 (checksum, length), 0x40 (the mask)
    assert b.transfers == 6 and b.data == 4 + 2 + 2 + 2 + 2 + 2
    assert b.nbytes == 6 * 2 + 3 + b.data * per_data
