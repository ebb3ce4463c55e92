"""`cellguard hil`: the HIL suite from the command line, its table, exit status and errors."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellguard.hil import parse_junit, suite_dir, summary_lines
from cellguard.sim import SimulatedBoard

CLI = [sys.executable, "-m", "cellguard.cli", "hil"]
FAST = "garbage or stats or (overtemperature and plant and not charge)"


def hil(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def table(stdout: str) -> dict[str, tuple[str, float]]:
    """test -> (result, seconds), from the summary table."""
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\S+\.py::\S+)\s+(passed|failed|error|skipped)\s+([0-9.]+)s", line)
        if m:
            rows[m.group(1)] = (m.group(2), float(m.group(3)))
    return rows


def test_hil_on_a_simulated_board_prints_the_table(tmp_path: Path) -> None:
    xml = tmp_path / "hil.xml"
    proc = hil("--board", "sim-4s", "--runtime", "cpython", "-k", FAST,
               "--junitxml", str(xml))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = table(proc.stdout)
    assert sorted(rows) == [
        "test_protections.py::test_protection_trips_releases_and_latches[overtemperature-plant]",
        "test_protocol.py::test_stats_count_the_link",
        "test_serial_link.py::test_link_recovers_from_garbage",
    ], proc.stdout
    assert {result for result, _ in rows.values()} == {"passed"}, proc.stdout
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("test "))
    assert lines[header].split() == ["test", "result", "duration"]
    total = lines[header + len(rows) + 1]
    assert re.fullmatch(r"3 tests on board sim-4s, runtime cpython: 3 passed, 0 failed "
                        r"in [0-9.]+ s", total), total
    # JUnit: every test names the board and runtime it ran on, so does the suite.
    root = ET.parse(xml).getroot()
    cases = list(root.iter("testcase"))
    assert len(cases) == 3
    # the durations the table prints are the ones the run recorded (not this
    # machine's speed: what is checked is that the table reports them faithfully)
    recorded = {f"{Path(c.get('file') or c.get('classname').replace('.', '/') + '.py').name}"
                f"::{c.get('name')}": float(c.get("time")) for c in cases}
    assert {k: round(v, 2) for k, v in recorded.items()} == {
        k: seconds for k, (_, seconds) in rows.items()}, (recorded, rows)
    for case in cases:
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props["board"] == "sim-4s" and props["runtime"] == "cpython", props
    suite_props = {p.get("name"): p.get("value")
                   for p in root.find("testsuite").findall("properties/property")}
    assert suite_props["board"] == "sim-4s" and suite_props["runtime"] == "cpython"


def test_a_failing_test_makes_the_exit_status_non_zero(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(suite_dir() / "conftest.py", suite / "conftest.py")
    (suite / "test_mixed.py").write_text(
        "def test_passes(client):\n"
        "    assert client.info.cell_count >= 1\n\n"
        "def test_fails(client):\n"
        "    assert client.info.cell_count == 99, 'not a 99-cell board'\n")
    proc = hil("--runtime", "cpython", "--tests", str(suite))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = table(proc.stdout)
    assert {k: v[0] for k, v in rows.items()} == {"test_mixed.py::test_passes": "passed",
                                                  "test_mixed.py::test_fails": "failed"}
    assert "not a 99-cell board" in proc.stdout
    assert re.search(r"^2 tests on board sim-4s, runtime cpython: 1 passed, 1 failed in ",
                     proc.stdout, re.M), proc.stdout


@pytest.mark.parametrize(("args", "status", "words"), [
    (["--port", "/dev/ttyACM0", "--board", "sim-4s"], 2, ["not allowed with argument"]),
    (["--board", "no-such-board"], 1, ["unknown board 'no-such-board'", "sim-4s"]),
    (["--port", "/dev/ttyACM0", "--runtime", "cpython"], 1,
     ["--runtime is for simulated boards"]),
    (["--runtime", "jython"], 2, ["invalid choice: 'jython'"]),
    (["--runtime", "cpython", "-k", "no_test_is_called_this"], 1,
     ["no HIL test matches -k 'no_test_is_called_this'"]),
    (["--tests", "/nonexistent"], 1, ["the HIL suite is not at /nonexistent"]),
])
def test_bad_arguments_get_a_clear_error(args: list[str], status: int,
                                         words: list[str]) -> None:
    proc = hil(*args)
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.fixture
def board_port() -> Iterator[str]:
    """A simulated board on a pty, for the suite to take for a real board."""
    with SimulatedBoard(board="sim-4s", runtime="cpython", seed=3, speed=math.inf) as sim:
        yield sim.port


def test_hil_on_a_port_runs_what_needs_no_rig_and_says_what_the_rest_needs(
        board_port: str) -> None:
    proc = hil("--port", board_port, "-k", "stats or overtemperature")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = table(proc.stdout)
    name = "test_protections.py::test_protection_trips_releases_and_latches"
    assert rows["test_protocol.py::test_stats_count_the_link"][0] == "passed"
    assert rows[f"{name}[overtemperature-threshold]"][0] == "passed"
    assert rows[f"{name}[overtemperature-plant]"][0] == "skipped"
    skipped = next(line for line in proc.stdout.splitlines()
                   if "[overtemperature-plant]" in line and "skipped" in line)
    assert "needs a heater or cooler on the sensor" in skipped
    assert "--operator" in skipped
    assert "runtime hardware" in proc.stdout


def test_summary_table_and_junit_parsing(tmp_path: Path) -> None:
    xml = tmp_path / "r.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest"><properties>'
        '<property name="board" value="b"/></properties>'
        '<testcase classname="hil_tests.test_a" name="test_x" time="1.5"/>'
        '<testcase classname="hil_tests.test_a" name="test_y[p]" time="0.25">'
        '<failure message="boom&#10;more"/></testcase>'
        '<testcase classname="hil_tests.test_b" name="test_z" time="0">'
        '<skipped message="needs a rig"/></testcase>'
        '</testsuite></testsuites>')
    cases, props = parse_junit(xml)
    assert props == {"board": "b"}
    assert [(c.name, c.result) for c in cases] == [
        ("test_a.py::test_x", "passed"), ("test_a.py::test_y[p]", "failed"),
        ("test_b.py::test_z", "skipped")]
    lines = summary_lines(cases, 2.0, "board b")
    assert lines[0].split() == ["test", "result", "duration"]
    assert lines[2].split()[:3] == ["test_a.py::test_y[p]", "failed", "0.25s"]
    assert lines[2].endswith("boom")
    assert lines[-1] == "3 tests on board b: 1 passed, 1 failed, 1 skipped in 2.0 s"


def test_hil_with_a_rig_runs_through_the_instruments() -> None:
    """``--rig`` with a rig file of emulated instruments on a simulated board: the
    over-current protection tripped by the emulated supply, through PyVISA."""
    rig = suite_dir() / "rigs" / "emulated-bench.toml"
    proc = hil("--board", "sim-4s", "--runtime", "cpython", "--rig", str(rig), "-k",
               "overcurrent_charge-plant")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "lab instruments of" in proc.stdout
    rows = table(proc.stdout)
    assert rows == {"test_protections.py::test_protection_trips_releases_and_latches"
                    "[overcurrent_charge-plant]": rows[next(iter(rows))]}, proc.stdout
    assert {result for result, _ in rows.values()} == {"passed"}, proc.stdout


@pytest.mark.parametrize(("args", "named"), [
    (("--rig", "no-such-rig.toml"), "cannot read the rig file"),
    (("--port", "loop://", "--rig", str(suite_dir() / "rigs" / "emulated-bench.toml")),
     "a real board needs a rig file of real instruments"),
])
def test_hil_refuses_a_rig_that_cannot_run(args: tuple[str, ...], named: str) -> None:
    proc = hil(*args)
    assert proc.returncode != 0
    assert named in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
