"""Balancing resistors the firmware switches: ``Hal.set_balancing`` -> the flags'
bits 4 and up -> the plant bleeds those cells (under CPython and MicroPython)."""

from __future__ import annotations

import pytest

from cellguard.sim import SimulatedBoard
from cellguard.sim.plant import OUT_BALANCE_SHIFT, OUT_CLOSED, RESET_OUTPUTS
from cellguard.sim.runtime import MicroPythonRuntime
from cellguard_fw import hal, hal_sim


def test_the_shift_mirrors_the_firmware_and_the_base_hal_ignores_balancing() -> None:
    assert OUT_BALANCE_SHIFT == hal_sim.OUT_BALANCE_SHIFT
    assert max(hal_sim.OUT_CLOSED, hal_sim.OUT_PRECHARGE, hal_sim.OUT_CHARGE,
               hal_sim.OUT_DISCHARGE) < 1 << OUT_BALANCE_SHIFT
    assert hal.Hal().set_balancing(0b11) is None  # a board without resistors: a no-op


def test_sim_hal_reports_the_mask_above_the_output_flags() -> None:
    h = hal_sim.SimHal(4, 2, b"\x00")
    assert h.outputs() == RESET_OUTPUTS
    h.set_balancing(0b1010)
    assert h.outputs() >> OUT_BALANCE_SHIFT == 0b1010
    assert h.outputs() & ((1 << OUT_BALANCE_SHIFT) - 1) == RESET_OUTPUTS  # flags unchanged
    h.set_balancing(0b110001)  # only 4 cells: the rest is not a pin
    assert h.outputs() >> OUT_BALANCE_SHIFT == 0b0001
    h.set_balancing(0)
    assert h.outputs() == RESET_OUTPUTS


def test_firmware_mask_reaches_the_plant_and_a_power_cycle_clears_it() -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True, initial_soc_pct=60.0) as sim:
        sim.advance(1.0)
        assert sim.truth().output_closed and sim.truth().balancing_mask == 0
        assert sim.runtime is not None
        sim.runtime.firmware.hal.set_balancing(0b0101)  # what a balancing firmware would do
        soc0 = [c.soc for c in sim.plant.cells]
        sim.advance(200.0)
        truth = sim.truth()
        assert truth.balancing_mask == 0b0101 and sim.plant.outputs & OUT_CLOSED
        assert [a > 0 for a in truth.balance_a] == [True, False, True, False]
        # Each cell lost its bleed and its own self-discharge, nothing else (no current).
        for k, c in enumerate(sim.plant.cells):
            leak_ah = c.self_discharge_a * 200.0 / 3600.0
            lost_ah = (soc0[k] - c.soc) * c.capacity_ah
            assert lost_ah == pytest.approx(sim.plant.balance_ah[k] + leak_ah, rel=1e-9)
            assert (sim.plant.balance_ah[k] > 0) == (k in (0, 2))
        # The bleed shows in what the firmware measures: the bled cells read lower.
        v = truth.cells_v
        assert max(v[0], v[2]) < min(v[1], v[3])
        sim.power_cycle()
        sim.advance(0.1)
        assert sim.truth().balancing_mask == 0  # a reset releases the balancing pins too


def test_micropython_firmware_drives_the_mask_through_the_flags() -> None:
    with SimulatedBoard(runtime="micropython", lockstep=True) as sim:
        sim.advance(0.5)
        rt = sim.runtime
        assert isinstance(rt, MicroPythonRuntime)
        printed = rt.exec("_sim.hal.set_balancing(0b1001)\nprint(_sim.hal.outputs())")
        assert int(printed) >> OUT_BALANCE_SHIFT == 0b1001
        sim.advance(0.2)
        truth = sim.truth()
        assert truth.balancing_mask == 0b1001 and truth.output_closed
        assert [a > 0 for a in truth.balance_a] == [True, False, False, True]
