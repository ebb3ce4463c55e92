"""HIL suites that run in their own processes beside the rest of ``make test``.

The whole HIL suite on the two virtual boards and on the 16S chip board is minutes of
CPU each; run one after the other in the test process they would leave one of the two
cores idle. ``tests/conftest.py`` starts them all when the collection ends (only those
whose test was collected); each test, ordered last, waits for its runs and reads their
JUnit reports. A virtual board's clock counts only its own process's time
(docs/virtual_board.md), so sharing the cores slows the boards, it does not starve
their watchdogs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import IO, NamedTuple

from cellguard.hil import suite_dir


def suite_command(*args: str, junit: Path | None = None) -> list[str]:
    """``pytest hil_tests`` with ``args``, in this interpreter, without a cache."""
    cmd = [sys.executable, "-m", "pytest", str(suite_dir()), "-p", "no:cacheprovider",
           "-q", "--tb=short", *args]
    if junit is not None:
        cmd.append(f"--junitxml={junit}")
    return cmd


class SuiteRun(NamedTuple):
    """One run of the HIL suite in its own processes: output and report in ``folder``."""

    folder: Path
    out: IO[str]
    proc: subprocess.Popen[str]

    @classmethod
    def start(cls, *args: str) -> SuiteRun:
        folder = Path(tempfile.mkdtemp(prefix="cellguard-hil-suite-"))
        out = (folder / "suite.out").open("w")
        proc = subprocess.Popen(suite_command(*args, junit=folder / "suite.xml"),
                                stdout=out, stderr=subprocess.STDOUT, text=True)
        return cls(folder, out, proc)

    def finish(self, timeout_s: float) -> tuple[int, str, list[ET.Element]]:
        """Wait for the run: (exit code, its output, its report's test cases)."""
        try:
            code = self.proc.wait(timeout=timeout_s)
        finally:
            self.out.flush()
        text = (self.folder / "suite.out").read_text()
        report = self.folder / "suite.xml"
        cases = list(ET.parse(report).getroot().iter("testcase")) if report.is_file() else []
        return code, text, cases

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def failures(case: ET.Element) -> list[ET.Element]:
    return [x for x in case if x.tag in ("failure", "error")]


def skip_reasons(case: ET.Element) -> list[str]:
    return [x.get("message", "") for x in case if x.tag == "skipped"]


def properties(case: ET.Element) -> dict[str, str | None]:
    return {p.get("name", ""): p.get("value") for p in case.iter("property")}
