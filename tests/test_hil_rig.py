"""The whole HIL suite through :class:`cellguard.hil.InstrumentRig` on a simulated
board (``pytest hil_tests --rig hil_tests/rigs/emulated-bench.toml``): every stimulus
goes through the instrument drivers, PyVISA and pyvisa-py to instruments emulated
against the board's plant on loopback sockets (``cellguard.hil.bench``), as it would
to a bench. It starts in its own process when the collection ends and runs beside the
rest of ``make test`` (``tests/hil_background.py``); this test, ordered last, waits for
it and reads its report.

The firmware runs under CPython here: the run is about the rig's code path, and the
same suite runs under MicroPython with the simulator's own rig (``hil_tests`` in
``make test``), on the virtual boards and on the chip board."""

from __future__ import annotations

from pathlib import Path

import pytest
from hil_background import SuiteRun, failures, skip_reasons
from test_hil_virtual import SUITE_TESTS, WALL_S

from cellguard.hil import load_rig, suite_dir

RIG = suite_dir() / "rigs" / "emulated-bench.toml"
NEEDS = ("a heater or cooler on the sensor", "a fault-injection fixture",
         "a climate chamber", "is beyond the", "compares the log with the plant's truth")
"""What the emulated bench lacks, as a lab bench of a supply, a cell emulator, a meter
and a relay card would: the only reasons a test may skip through it."""


def start_suites(folder: Path) -> dict[str, SuiteRun]:
    """A simulated board, held between the rig's stimuli, and a short run: at a lower
    priority, behind the chip board's SoC cycle (tests/test_hil_chip_board.py) and the
    virtual boards, whose clocks run."""
    return {"rig": SuiteRun.start(folder / "rig", "--rig", str(RIG), "--runtime", "cpython",
                                  "--timeout", str(WALL_S), nice=5)}


def suite_runs(folder: Path) -> dict[str, SuiteRun]:
    return {"rig": SuiteRun(folder / "rig")}


@pytest.mark.timeout(WALL_S + 60)
def test_the_hil_suite_is_green_through_the_instrument_rig(
        rig_suite: dict[str, SuiteRun]) -> None:
    code, text, cases = rig_suite["rig"].finish(WALL_S)
    assert code == 0, text[-6000:]
    name = load_rig(RIG).name
    assert f"rig instruments ({name}, emulated)" in text
    assert len(cases) == SUITE_TESTS + 1, len(cases)  # the SoC full cycle included
    passed = skipped = 0
    for case in cases:
        bad = failures(case)
        assert not bad, (case.get("name"), bad[0].get("message"))
        reasons = skip_reasons(case)
        if reasons:
            skipped += 1
            assert any(need in reasons[0] for need in NEEDS), (case.get("name"), reasons)
        else:
            passed += 1
    print(f"\nthrough the instrument rig: {passed} passed, {skipped} skipped (what the "
          "bench lacks)")
    # the stimuli a supply, a cell emulator and a relay card give all ran
    ran = {c.get("name") for c in cases if not skip_reasons(c)}
    for needed in ("overcurrent_charge-plant", "overcurrent_discharge-plant",
                   "cell_overvoltage-plant", "short_circuit-plant", "open_wire-plant",
                   "sensor_disconnected-plant"):
        assert any(needed in (n or "") for n in ran), needed
