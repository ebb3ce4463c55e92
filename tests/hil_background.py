"""HIL suites that run in their own processes beside the rest of ``make test``.

The whole HIL suite on the two virtual boards and on the 16S chip board is minutes of
CPU each. ``tests/conftest.py`` starts them when the collection ends (only those whose
test was collected; under pytest-xdist, in the controller, once a worker has
collected), and each test, ordered last, waits for its runs and reads their JUnit
reports. A run lives in a folder: its output, its report and, once it has ended, its
exit code, so a test in any worker process can wait for it. A virtual board's clock
counts only its own process's time (docs/virtual_board.md), so sharing the cores slows
the boards, it does not starve their watchdogs."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from cellguard.hil import suite_dir

EXIT_CODE = "exit_code"  # written into the run's folder when the run ends


def suite_command(*args: str, junit: Path | None = None) -> list[str]:
    """``pytest hil_tests`` with ``args``, in this interpreter, without a cache."""
    cmd = [sys.executable, "-m", "pytest", str(suite_dir()), "-p", "no:cacheprovider",
           "-q", "--tb=short", *args]
    if junit is not None:
        cmd.append(f"--junitxml={junit}")
    return cmd


class SuiteRun:
    """One run of the HIL suite in its own processes, in ``folder``: started by
    :meth:`start` in one process, waited for by :meth:`finish` in any."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopped = False

    @classmethod
    def start(cls, folder: Path, *args: str, env: dict[str, str] | None = None,
              nice: int = 0) -> SuiteRun:
        """``env``: variables set for the run on top of this process's; ``nice``: its
        scheduling priority against this process's (:func:`renice`)."""
        run = cls(folder)
        run._launch(args, env)
        if nice:
            assert run.proc is not None
            renice(run.proc.pid, nice)
        return run

    @classmethod
    def start_after(cls, previous: SuiteRun, folder: Path, *args: str,
                    env: dict[str, str] | None = None) -> SuiteRun:
        """Started once ``previous`` (started in this process) has ended: two runs that
        would only share the cores (each board's clock stops while the host gives
        the core away, so they take as long one after the other) and whose boards'
        host latency grows with every process beside them."""
        run = cls(folder)
        folder.mkdir(parents=True, exist_ok=True)

        def later() -> None:
            assert previous.proc is not None
            previous.proc.wait()
            with run._lock:
                if not run._stopped:
                    run._launch(args, env)

        threading.Thread(target=later, name=f"hil-suite-after-{folder.name}",
                         daemon=True).start()
        return run

    def _launch(self, args: tuple[str, ...], env: dict[str, str] | None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "suite.out").open("wb") as out:
            self.proc = subprocess.Popen(
                suite_command(*args, junit=self.folder / "suite.xml"), stdout=out,
                stderr=subprocess.STDOUT, env=None if env is None else {**os.environ, **env})
        threading.Thread(target=self._record_exit, name=f"hil-suite-{self.folder.name}",
                         daemon=True).start()

    def _record_exit(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        tmp = self.folder / (EXIT_CODE + ".tmp")
        tmp.write_text(str(code))
        tmp.rename(self.folder / EXIT_CODE)

    def finish(self, timeout_s: float) -> tuple[int, str, list[ET.Element]]:
        """Wait for the run to end: (exit code, its output, its report's test cases)."""
        done = self.folder / EXIT_CODE
        deadline = time.monotonic() + timeout_s
        while not done.is_file():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the HIL suite in {self.folder} did not end within "
                                   f"{timeout_s:.0f} s")
            time.sleep(0.5)
        text = (self.folder / "suite.out").read_text(errors="replace")
        report = self.folder / "suite.xml"
        cases = list(ET.parse(report).getroot().iter("testcase")) if report.is_file() else []
        return int(done.read_text()), text, cases

    def stop(self) -> None:
        """End the run if it still runs, or never start it (the process that started it)."""
        with self._lock:
            self._stopped = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def renice(pid: int, change: int) -> None:
    """Change a process's niceness by ``change`` (its children inherit it): below
    zero, a run that would otherwise be the suite's last to end gets the cores first,
    where the user may raise a priority (root, CAP_SYS_NICE); where not, the run
    keeps its priority (slower, not wrong)."""
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, pid) + change)


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def failures(case: ET.Element) -> list[ET.Element]:
    return [x for x in case if x.tag in ("failure", "error")]


def skip_reasons(case: ET.Element) -> list[str]:
    return [x.get("message", "") for x in case if x.tag == "skipped"]


def properties(case: ET.Element) -> dict[str, str | None]:
    return {p.get("name", ""): p.get("value") for p in case.iter("property")}
