"""The HIL suite on the simulated 16S board with a BQ76952 (``pytest hil_tests --board
sim-bq76952-16s``): the firmware and its chip driver under real MicroPython, the chip
model on the simulated I2C bus between them and the plant (docs/bq76952.md). Each
board is locked (``--locked``): every write the suite makes goes inside AUTH, with the
key the suite holds (docs/security.md).

All of it, the SoC full cycle included: 100 Ah LFP cells at the suite's C/2 and C/4
are six hours of board time, minutes here, so the suite starts in its own processes
when the collection ends and runs beside the rest of ``make test``
(``tests/hil_background.py``); this test, ordered last, waits for it and reads its
report. The SoC full cycle runs in a process of its own beside the rest of the suite
(each test has a fresh board either way), with the firmware under CPython: under
MicroPython its 216,000 control steps, each a chain of requests between the host
and the firmware's process, took 555 CPU s, a quarter of all of ``make test``, on
one core at most. The same firmware sources and chip driver run it, against the same
chip model and plant; what only MicroPython shows (its integers, its floats, its
heap) is the rest of this suite's, and the SoC full cycle under MicroPython is the
simulated 4S board's (``hil_tests`` in ``make test``). ``make hil-chip`` runs the
whole suite under MicroPython, the cycle included."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hil_background import SuiteRun, failures, skip_reasons
from test_hil_virtual import SUITE_TESTS, WALL_S

from cellguard.link.auth import KEYS_ENV

BOARD = "sim-bq76952-16s"
SOC_CYCLE = "test_soc_follows_a_full_cycle"
PARTS = {  # run -> (its selection of the suite: together, all of it; the firmware's
    # runtime; its niceness against make test's)
    BOARD: (f"not {SOC_CYCLE}", "micropython", 0),
    f"{BOARD}-{SOC_CYCLE}": (SOC_CYCLE, "cpython", -5),
}


def start_suites(folder: Path) -> dict[str, SuiteRun]:
    """The whole suite, SoC full cycle included, in two runs at once: the cycle, and
    the rest (``tests/conftest.py`` starts them). Each has a key store of its own: both
    lock a board of the same unique id, a key file each. The cycle is six hours of
    board time in one process (one core at most), the longest run here: it runs at a
    higher priority where the user may give one (root), so that it never ends last."""
    return {name: SuiteRun.start(folder / name, "--board", BOARD, "--locked",
                                 "--runtime", runtime, "--timeout", str(WALL_S),
                                 "-k", selection, env={KEYS_ENV: str(folder / name / "keys")},
                                 nice=nice)
            for name, (selection, runtime, nice) in PARTS.items()}


def suite_runs(folder: Path) -> dict[str, SuiteRun]:
    """The runs :func:`start_suites` started in ``folder``, from any process."""
    return {name: SuiteRun(folder / name) for name in PARTS}


@pytest.mark.timeout(WALL_S + 60)
def test_the_hil_suite_is_green_on_the_16s_chip_board(
        chip_suite: dict[str, SuiteRun]) -> None:
    cases: list[ET.Element] = []
    for name, run in chip_suite.items():
        code, text, run_cases = run.finish(WALL_S)
        assert code == 0, (name, text[-6000:])
        runtime = PARTS[name][1]
        assert f"ran on board {BOARD}, runtime {runtime}, rig simulator" in text, name
        assert "writes authenticated (locked)" in text, name
        assert run_cases, name
        cases += run_cases
    ids = [(c.get("classname"), c.get("name")) for c in cases]
    assert len(cases) == SUITE_TESTS + 1, len(cases)  # with the SoC full cycle
    assert len(set(ids)) == len(ids), ids  # each test once
    assert any(name == SOC_CYCLE for _, name in ids)
    for case in cases:
        bad = failures(case)
        skipped = skip_reasons(case)
        assert not bad, (case.get("name"), bad[0].get("message"))
        assert not skipped, (case.get("name"), skipped)  # the chip has every sensor
