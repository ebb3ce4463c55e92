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
# One of each kind: a plant fault that opens the output through the real pins, a
# plant alarm, a threshold moved over the link, the latch across a power cycle
# (a replug of the virtual board), protecting while no host holds the port, the
# host-silence policy, the configuration round trip (flash writes); the sensor
# checks an MCU's converter bites: a frozen front end (its converter's noise on
# top) and an open NTC (an ESP32's converter saturates below the pull-up's rail).
SUBSET = ("short_circuit-plant or (overtemperature-plant) or cell_overvoltage-threshold "
          "or fault_stays_latched or keeps_protecting or host_timeout_policy "
          "or round_trips or sensor_stuck-plant or sensor_disconnected-plant")
EXPECTED = 9


def run_suite(*args: str, junit: Path | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", str(suite_dir()), "-p", "no:cacheprovider",
           "-q", "--tb=short", *args]
    if junit is not None:
        cmd.append(f"--junitxml={junit}")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("board", BOARDS)
def test_the_hil_suite_runs_on_the_virtual_board(board: str, tmp_path: Path) -> None:
    xml = tmp_path / "hil.xml"
    proc = run_suite("--virtual", "--board", board, "--sim-speed", SPEED, "-k", SUBSET,
                     junit=xml)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert f"ran on board {board}, runtime micropython (virtual board)" in proc.stdout
    root = ET.parse(xml).getroot()
    cases = list(root.iter("testcase"))
    results = {c.get("name"): [x.tag for x in c if x.tag in ("failure", "error", "skipped")]
               for c in cases}
    assert len(cases) == EXPECTED and all(v == [] for v in results.values()), results
    for case in cases:
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props["board"] == board and props["rig"] == "virtual board plant", props
        assert props["speed"] == SPEED and "virtual" in props["runtime"], props


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
