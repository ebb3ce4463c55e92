"""Running the suite: ``cellguard hil`` runs pytest on ``hil_tests/`` and prints a
table from its JUnit XML."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..paths import repo_root
from ..units import plural
from .client import HilError
from .targets import PortTarget


# -- the suite, run from the command line --------------------------------------------------
def suite_dir() -> Path:
    """The HIL suite's folder (``hil_tests/`` of the source tree)."""
    return repo_root() / "hil_tests"


@dataclass(frozen=True)
class CaseResult:
    name: str  # file::test[params]
    result: str  # passed, failed, error, skipped
    duration_s: float
    message: str = ""
    properties: dict[str, str] = field(default_factory=dict)


def parse_junit(path: str | os.PathLike[str]) -> tuple[list[CaseResult], dict[str, str]]:
    """The test cases of a JUnit XML file pytest wrote, and the suite's properties."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    cases: list[CaseResult] = []
    props: dict[str, str] = {}
    for suite in suites:
        for p in suite.findall("properties/property"):
            props[p.get("name", "")] = p.get("value", "")
        for case in suite.iter("testcase"):
            result, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    result = {"failure": "failed"}.get(tag, tag)
                    message = node.get("message", "")
                    break
            classname = case.get("classname", "")
            module = classname.rsplit(".", 1)[-1] if classname else ""
            name = f"{module}.py::{case.get('name', '')}" if module else case.get("name", "")
            case_props = {p.get("name", ""): p.get("value", "")
                          for p in case.findall("properties/property")}
            cases.append(CaseResult(name, result, float(case.get("time", 0.0)),
                                    message, case_props))
    return cases, props


def summary_lines(cases: Sequence[CaseResult], wall_s: float, target: str) -> list[str]:
    """The table ``cellguard hil`` prints (test, result, duration) and a total line."""
    width = max([len(c.name) for c in cases] + [4])
    lines = [f"{'test':{width}}  {'result':7}  {'duration':>9}"]
    for c in cases:
        line = f"{c.name:{width}}  {c.result:7}  {c.duration_s:8.2f}s"
        if c.result != "passed" and c.message:
            line += f"  {c.message.splitlines()[0][:100]}"
        lines.append(line)
    counts = {r: sum(1 for c in cases if c.result == r)
              for r in ("passed", "failed", "error", "skipped")}
    parts = [f"{n} {r}" for r, n in counts.items() if n or r in ("passed", "failed")]
    lines.append(f"{plural(len(cases), 'test')} on {target}: {', '.join(parts)} in "
                 f"{wall_s:.1f} s")
    return lines


def check_suite_args(port: str | None, board: str | None, runtime: str | None,
                     tests: str | os.PathLike[str] | None = None,
                     rig: str | os.PathLike[str] | None = None,
                     operator: bool = False) -> Path:
    """Refuse what cannot run, with a clear reason; return the suite's folder."""
    if port and board:
        raise HilError("give --port (a real board) or --board (a simulated one), not both")
    if port and runtime:
        raise HilError("--runtime is for simulated boards; a real board runs its own "
                       "MicroPython")
    if not port:
        from ..boards import load_board
        from ..sim import RUNTIMES

        load_board(board or "sim-4s")  # BoardFileError names the known boards
        if runtime and runtime not in RUNTIMES:
            raise HilError(f"unknown runtime {runtime!r}; runtimes: {', '.join(RUNTIMES)}")
    if rig:
        from .rig_file import load_rig

        spec = load_rig(rig)  # HilError names what is wrong with it
        if operator:
            raise HilError("--rig (lab instruments) and --operator exclude each other")
        if spec.emulated and port:
            raise HilError(f"{rig}: its instruments are emulated against a simulated board; "
                           "a real board needs a rig file of real instruments")
        if not spec.emulated and not port:
            raise HilError(f"{rig}: real instruments drive a real board: give its --port")
    folder = Path(tests) if tests else suite_dir()
    if not (folder / "conftest.py").is_file():
        raise HilError(f"the HIL suite is not at {folder} (a source checkout of cellguard has "
                       "it in hil_tests/; pass --tests DIR to run another copy)")
    return folder


@dataclass
class SuiteRun:
    returncode: int
    cases: list[CaseResult]
    properties: dict[str, str]
    wall_s: float


def run_suite(*, port: str | None = None, board: str | None = None,
              runtime: str | None = None, keyword: str | None = None,
              junitxml: str | None = None, operator: bool = False,
              tests: str | os.PathLike[str] | None = None,
              rig: str | os.PathLike[str] | None = None,
              extra_args: Iterable[str] = (), stream: Any = None) -> SuiteRun:
    """Run the HIL suite in a pytest subprocess and read its JUnit XML back."""
    folder = check_suite_args(port, board, runtime, tests, rig, operator)
    with tempfile.TemporaryDirectory(prefix="cellguard-hil-") as tmp:
        xml_path = Path(junitxml) if junitxml else Path(tmp) / "hil.xml"
        cmd = [sys.executable, "-m", "pytest", str(folder), "-p", "no:cacheprovider",
               f"--junitxml={xml_path}", "-q", "--tb=short"]
        if port:
            cmd += ["--port", port]
        else:
            cmd += ["--board", board or "sim-4s"]
            if runtime:
                cmd += ["--runtime", runtime]
        if operator:
            cmd += ["--operator", "-s"]
        if rig:
            cmd += ["--rig", str(Path(rig).resolve())]
        if keyword:
            cmd += ["-k", keyword]
        cmd += list(extra_args)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, stdout=stream, stderr=subprocess.STDOUT if stream else None,
                              check=False)
        wall_s = time.monotonic() - t0
        cases, props = parse_junit(xml_path) if xml_path.exists() else ([], {})
    return SuiteRun(proc.returncode, cases, props, wall_s)


def cli_hil(args: Any) -> int:
    """``cellguard hil``: run the suite, print the table and a total; exit status 1
    when anything failed."""
    check_suite_args(args.port, args.board, args.runtime, args.tests, args.rig, args.operator)
    if args.port:
        # One clear line, as every command gives, rather than the same error from every test.
        PortTarget(args.port).probe()
        where = f"the real board on {args.port}"
    else:
        where = (f"simulated board {args.board or 'sim-4s'} (firmware under "
                 f"{args.runtime or 'micropython'})")
    if args.rig:
        where += f", lab instruments of {args.rig}"
    print(f"cellguard hil: running the HIL suite on {where}", flush=True)
    run = run_suite(port=args.port, board=args.board, runtime=args.runtime,
                    keyword=args.keyword, junitxml=args.junitxml, operator=args.operator,
                    tests=args.tests, rig=args.rig)
    if not run.cases:
        if run.returncode == 5:
            raise HilError(f"no HIL test matches -k {args.keyword!r}" if args.keyword
                           else "the HIL suite has no tests")
        raise HilError(f"the HIL suite did not run (pytest exit status {run.returncode}); "
                       "its output above says why")
    props = run.properties
    target = (f"board {props.get('board', args.board or '?')}, runtime "
              f"{props.get('runtime', args.runtime or '?')}")
    print()
    for line in summary_lines(run.cases, run.wall_s, target):
        print(line)
    if args.junitxml:
        print(f"JUnit XML: {args.junitxml}")
    failed = any(c.result in ("failed", "error") for c in run.cases)
    return 1 if failed or run.returncode != 0 else 0
