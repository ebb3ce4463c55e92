"""The HIL suite on the virtual dev board (``pytest hil_tests --virtual --board B``):
the working tree's firmware on the board's flash, run by real MicroPython through
``machine`` and the board file's pins, the plant wired to them as the rig.

``make test`` runs all of it but the SoC full cycle on both board files with an
``mcu``, beside the rest of the suite (``tests/hil_background.py``); ``make
hil-virtual`` runs the whole suite on both (docs/hil.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hil_background import SuiteRun, failures, properties, skip_reasons, suite_command

from cellguard.hil import VirtualRig, VirtualTarget
from cellguard.sim.plant import PlantTruth

BOARDS = ("pico-4s", "esp32-4s")
SPEED = "20"
# Every test of hil_tests/ but the SoC full cycle (80 minutes of board time: 3.5
# minutes at 20x, which would double this test's time in CI; `make hil-virtual` runs
# it on both boards, docs/hil.md).
NOT_HERE = "test_soc_follows_a_full_cycle"
SUITE_TESTS = 46
NOT_APPLICABLE = "has no pack-voltage sensor"  # the only skips these boards may give
WALL_S = 1500  # a guard only: the suite's own waits have board- and wall-time budgets


def start_suites(folder: Path) -> dict[str, SuiteRun]:
    """The suite but the SoC full cycle, on each board file with an mcu, each on its
    own virtual board over its pty at 20x, one board after the other
    (``tests/conftest.py`` starts them)."""
    runs: dict[str, SuiteRun] = {}
    for board in BOARDS:
        args = ("--virtual", "--board", board, "--sim-speed", SPEED, "-k", f"not {NOT_HERE}")
        before = list(runs.values())
        runs[board] = (SuiteRun.start_after(before[-1], folder / board, *args) if before
                       else SuiteRun.start(folder / board, *args))
    return runs


def suite_runs(folder: Path) -> dict[str, SuiteRun]:
    """The runs :func:`start_suites` started in ``folder``, from any process."""
    return {board: SuiteRun(folder / board) for board in BOARDS}


def run_suite(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(suite_command(*args), capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.timeout(WALL_S + 60)
def test_the_whole_hil_suite_is_green_on_both_virtual_boards(
        virtual_suites: dict[str, SuiteRun]) -> None:
    for board, run in virtual_suites.items():
        code, text, cases = run.finish(WALL_S)
        assert code == 0, f"{board}:\n" + text[-6000:]
        assert f"ran on board {board}, runtime micropython (virtual board)" in text
        assert len(cases) == SUITE_TESTS, (board, len(cases))
        for case in cases:
            bad = failures(case)
            skipped = skip_reasons(case)
            assert not bad, (board, case.get("name"), bad[0].get("message"))
            assert all(NOT_APPLICABLE in why for why in skipped), (case.get("name"), skipped)
            props = properties(case)
            assert props["board"] == board and props["rig"] == "virtual board plant", props
            assert props["speed"] == SPEED and "virtual" in (props["runtime"] or ""), props
        passed = sum(1 for c in cases if not skip_reasons(c))
        assert passed >= SUITE_TESTS - 2, (board, passed)


@pytest.mark.parametrize(("args", "says"), [
    (["--virtual", "--port", "/dev/null"], "exclude each other"),
    (["--virtual", "--runtime", "cpython"], "real MicroPython"),
    (["--virtual", "--board", "sim-4s"], "names no mcu"),
])
def test_a_virtual_board_refuses_what_it_cannot_be(args: list[str], says: str) -> None:
    proc = run_suite(*args, "-k", "round_trips", timeout=120)
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error
    assert says in proc.stderr, proc.stderr


def test_the_virtual_target_boots_its_flash_and_its_rig_holds_it_to_the_plant() -> None:
    target = VirtualTarget("pico-4s", seed=3, speed=20.0)
    try:
        assert isinstance(target.rig, VirtualRig)
        files = sorted(p.name for p in Path(target.vboard.flash).iterdir())
        assert files == ["board.json", "cellguard_fw", "main.py"]
        client = target.connect()
        info = client.hello()
        assert info.board == "pico-4s"
        client.run(3.0)
        t = client.last
        assert t is not None
        truth = target.rig.truth_at(round(t.board_time_s * 1000))
        assert isinstance(truth, PlantTruth)
        for read, true in zip(t.cells_v, truth.cells_v, strict=True):
            assert abs(read - true) <= target.rig.cell_accuracy_v() + 0.0005
        assert target.rig.truth_at(0) is None or target.rig.truth_at(0).time_s >= 0
        assert target.rig.truth_at(round(t.board_time_s * 1000) + 60_000) is None
        # A reading lags the plant by the host's latency: no truth for up to 100 ms
        # of host time (2 s at 20x) after a step of the current, then truth again.
        target.rig.set_current(3.0)
        client.run(5.0)
        t2 = client.last
        assert t2 is not None
        step_ms = round(t.board_time_s * 1000) + 3000  # somewhere in the 5 s run
        times = [round(m.payload["board_time_ms"]) for m in client.log
                 if m.name == "telemetry"]
        after = [ms for ms in times if ms > round(t.board_time_s * 1000)]
        truths = [target.rig.truth_at(ms) for ms in after]
        nones = [ms for ms, x in zip(after, truths, strict=True) if x is None]
        assert nones and max(nones) - min(nones) <= 2000 + 1000, (nones, step_ms)
        assert truths[-1] is not None and truths[-1].current_a == 3.0
        # ... and a stimulus may take 0.25 s of host time to reach the firmware
        assert target.rig.latency_s == 0.25 * 20
        # A power cycle is a replug: the client follows to the port and the board
        # boots again from its flash.
        target.rig.power_cycle()
        assert client.is_open and client.port_name == target.port
        assert client.hello().board == "pico-4s"
        target.health()  # no watchdog reset
    finally:
        target.close()
