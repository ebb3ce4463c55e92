"""The HIL suite on the simulated 16S board with a BQ76952 (``pytest hil_tests --board
sim-bq76952-16s``): the firmware and its chip driver under real MicroPython, the chip
model on the simulated I2C bus between them and the plant (docs/bq76952.md). Each
board is locked (``--locked``): every write the suite makes goes inside AUTH, with the
key the suite holds (docs/security.md).

All of it, the SoC full cycle included: 100 Ah LFP cells at the suite's C/2 and C/4
are six hours of board time, minutes here, so the suite starts in its own processes
when the collection ends and runs beside the rest of ``make test``
(``tests/hil_background.py``); this test, ordered last, waits for it and reads its
report."""

from __future__ import annotations

from pathlib import Path

import pytest
from hil_background import SuiteRun, failures, skip_reasons
from test_hil_virtual import SUITE_TESTS, WALL_S

BOARD = "sim-bq76952-16s"


def start_suites(folder: Path) -> dict[str, SuiteRun]:
    """The whole suite, SoC full cycle included (``tests/conftest.py`` starts it)."""
    return {BOARD: SuiteRun.start(folder / BOARD, "--board", BOARD, "--locked",
                                  "--timeout", str(WALL_S))}


def suite_runs(folder: Path) -> dict[str, SuiteRun]:
    """The run :func:`start_suites` started in ``folder``, from any process."""
    return {BOARD: SuiteRun(folder / BOARD)}


@pytest.mark.timeout(WALL_S + 60)
def test_the_hil_suite_is_green_on_the_16s_chip_board(
        chip_suite: dict[str, SuiteRun]) -> None:
    code, text, cases = chip_suite[BOARD].finish(WALL_S)
    assert code == 0, text[-6000:]
    assert f"ran on board {BOARD}, runtime micropython, rig simulator" in text
    assert "writes authenticated (locked)" in text
    assert len(cases) == SUITE_TESTS + 1, len(cases)  # with the SoC full cycle
    assert any(c.get("name") == "test_soc_follows_a_full_cycle" for c in cases)
    for case in cases:
        bad = failures(case)
        skipped = skip_reasons(case)
        assert not bad, (case.get("name"), bad[0].get("message"))
        assert not skipped, (case.get("name"), skipped)  # the chip has every sensor
