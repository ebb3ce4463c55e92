"""The HIL suite on the simulated 16S board with a BQ76952 (``pytest hil_tests --board
sim-bq76952-16s``): the firmware and its chip driver under real MicroPython, the chip
model on the simulated I2C bus between them and the plant (docs/bq76952.md).

All of it, the SoC full cycle included: 100 Ah LFP cells at the suite's C/2 and C/4
are six hours of board time, about six minutes here, so the suite starts in its own
processes once the virtual boards' suite is done and runs beside the rest of ``make
test`` (``tests/conftest.py``); this test, ordered last, waits for it and reads its
report."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import IO, NamedTuple

import pytest
from test_hil_virtual import SUITE_TESTS, suite_command

BOARD = "sim-bq76952-16s"
WALL_S = 1500  # a guard only: the suite's own waits have board- and wall-time budgets


class ChipSuite(NamedTuple):
    """The suite in its own processes: its output and JUnit report in ``folder``."""

    folder: Path
    out: IO[str]
    proc: subprocess.Popen[str]

    @classmethod
    def start(cls) -> ChipSuite:
        folder = Path(tempfile.mkdtemp(prefix="cellguard-chip-suite-"))
        out = (folder / "suite.out").open("w")
        proc = subprocess.Popen(suite_command("--board", BOARD, "--timeout", str(WALL_S),
                                              junit=folder / "suite.xml"),
                                stdout=out, stderr=subprocess.STDOUT, text=True)
        return cls(folder, out, proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.mark.timeout(WALL_S + 60)
def test_the_hil_suite_is_green_on_the_16s_chip_board(chip_suite: ChipSuite) -> None:
    code = chip_suite.proc.wait(timeout=WALL_S)
    chip_suite.out.flush()
    text = (chip_suite.folder / "suite.out").read_text()
    assert code == 0, text[-6000:]
    assert f"ran on board {BOARD}, runtime micropython, rig simulator" in text
    cases = list(ET.parse(chip_suite.folder / "suite.xml").getroot().iter("testcase"))
    assert len(cases) == SUITE_TESTS + 1, len(cases)  # with the SoC full cycle
    assert any(c.get("name") == "test_soc_follows_a_full_cycle" for c in cases)
    for case in cases:
        bad = [x for x in case if x.tag in ("failure", "error")]
        skipped = [x.get("message", "") for x in case if x.tag == "skipped"]
        assert not bad, (case.get("name"), bad[0].get("message"))
        assert not skipped, (case.get("name"), skipped)  # the chip has every sensor
