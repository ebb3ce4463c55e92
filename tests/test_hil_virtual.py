"""The HIL suite on the virtual dev board (``pytest hil_tests --virtual --board B``):
the working tree's firmware on the board's flash, run by real MicroPython through
``machine`` and the board file's pins, the plant wired to them as the rig.

``make test`` runs a representative subset here on both board files with an
``mcu``; ``make hil-virtual`` runs the whole suite on both (docs/hil.md)."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cellguard.hil import VirtualRig, VirtualTarget, suite_dir
from cellguard.sim.plant import PlantTruth

BOARDS = ("pico-4s", "esp32-4s")
SPEED = "20"
# Every test of hil_tests/ but the SoC full cycle (80 minutes of board time: 3.5
# minutes at 20x, which would double this test's time in CI; `make hil-virtual` runs
# it on both boards, docs/hil.md).
NOT_HERE = "test_soc_follows_a_full_cycle"
SUITE_TESTS = 41
NOT_APPLICABLE = "has no pack-voltage sensor"  # the only skips these boards may give


def suite_command(*args: str, junit: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", str(suite_dir()), "-p", "no:cacheprovider",
           "-q", "--tb=short", *args]
    if junit is not None:
        cmd.append(f"--junitxml={junit}")
    return cmd


def run_suite(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(suite_command(*args), capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.timeout(1200)  # about 2.5 minutes here
def test_the_whole_hil_suite_is_green_on_both_virtual_boards(tmp_path: Path) -> None:
    # Both boards at once (each is its own processes): the suite but the SoC full
    # cycle (above), on each board file with an mcu, over its pty at 20x.
    runs = {}
    for board in BOARDS:
        xml = tmp_path / f"{board}.xml"
        out = (tmp_path / f"{board}.out").open("w")
        runs[board] = (xml, out, subprocess.Popen(
            suite_command("--virtual", "--board", board, "--sim-speed", SPEED,
                          "-k", f"not {NOT_HERE}", junit=xml),
            stdout=out, stderr=subprocess.STDOUT, text=True))
    try:
        for _, _, proc in runs.values():
            proc.wait(timeout=1200)
    finally:
        for _, out, proc in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
    for board, (xml, _, proc) in runs.items():
        text = (tmp_path / f"{board}.out").read_text()
        assert proc.returncode == 0, f"{board}:\n" + text[-6000:]
        assert f"ran on board {board}, runtime micropython (virtual board)" in text
        cases = list(ET.parse(xml).getroot().iter("testcase"))
        assert len(cases) == SUITE_TESTS, (board, len(cases))
        for case in cases:
            bad = [x for x in case if x.tag in ("failure", "error")]
            skipped = [x.get("message", "") for x in case if x.tag == "skipped"]
            assert not bad, (board, case.get("name"), bad[0].get("message"))
            assert all(NOT_APPLICABLE in why for why in skipped), (case.get("name"), skipped)
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            assert props["board"] == board and props["rig"] == "virtual board plant", props
            assert props["speed"] == SPEED and "virtual" in props["runtime"], props
        passed = sum(1 for c in cases if not any(x.tag == "skipped" for x in c))
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
