"""The plant's second RC pair, self-discharge, balancing resistors and thermal model,
each against the equations the model states (no recorded outputs)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from cellguard.boards import BoardFileError, load_board
from cellguard.sim import SimulatedBoard
from cellguard.sim.plant import (
    HOURS_PER_MONTH,
    OUT_BALANCE_SHIFT,
    OUT_CLOSED,
    PLANT_DEFAULTS,
    RESET_OUTPUTS,
    Plant,
    ocv_v,
)


def board_with(**plant: Any) -> dict[str, Any]:
    board = load_board("sim-4s")
    board["plant"] = {**board["plant"], **plant}
    return board


def closed(plant: Plant, amps: float) -> Plant:
    plant.outputs = OUT_CLOSED | RESET_OUTPUTS
    plant.requested_current_a = amps
    return plant


# -- two RC pairs ------------------------------------------------------------------------------
def test_two_rc_pairs_charge_exactly_and_one_long_step_equals_many() -> None:
    board = board_with(self_discharge_pct_per_month=0.0)
    fine = closed(Plant(board, seed=5), 4.0)
    coarse = closed(Plant(board, seed=5), 4.0)
    for _ in range(900):
        fine.step(1.0)
    coarse.step(900.0)
    for f, c in zip(fine.cells, coarse.cells, strict=True):
        assert f.r2_ohm > 0 and f.tau2_s == PLANT_DEFAULTS["tau2_s"]
        for v, r, tau in ((f.v_rc1, f.r1_ohm, f.tau1_s), (f.v_rc2, f.r2_ohm, f.tau2_s)):
            assert v == pytest.approx(4.0 * r * (1.0 - math.exp(-900.0 / tau)), rel=1e-9)
        assert (c.v_rc1, c.v_rc2) == pytest.approx((f.v_rc1, f.v_rc2), rel=1e-9)
        assert c.soc == pytest.approx(f.soc, rel=1e-12)
    # The terminal voltage is OCV + I R0 + both RC voltages.
    c0 = fine.cells[0]
    assert fine.cells_v()[0] == pytest.approx(
        ocv_v(fine.table, c0.soc) + 4.0 * c0.r0_ohm + c0.v_rc1 + c0.v_rc2, rel=1e-12)


def test_relaxation_shows_both_time_constants() -> None:
    board = board_with(self_discharge_pct_per_month=0.0, tau1_s=30.0, tau2_s=900.0)
    plant = closed(Plant(board), -6.0)
    plant.step(3600.0)
    c = plant.cells[1]
    v1, v2 = c.v_rc1, c.v_rc2
    assert v1 == pytest.approx(-6.0 * c.r1_ohm) and v2 == pytest.approx(
        -6.0 * c.r2_ohm * (1 - math.exp(-4.0)))
    plant.requested_current_a = 0.0
    ocv = ocv_v(plant.table, c.soc)
    for t in (10.0, 60.0, 300.0, 1200.0):
        plant.step(t - (plant.time_s - 3600.0))
        want = ocv + v1 * math.exp(-t / 30.0) + v2 * math.exp(-t / 900.0)
        assert plant.cells_v()[1] == pytest.approx(want, abs=1e-12)
    # After the fast pair has gone the slow one still holds the voltage down.
    assert ocv - plant.cells_v()[1] > 0.5 * abs(v2) * math.exp(-1200.0 / 900.0)


def test_board_keys_set_the_second_pair_and_the_first_draws_are_unchanged() -> None:
    a = Plant(board_with(r2_mohm=30.0, tau2_s=1234.0), seed=9)
    b = Plant(load_board("sim-4s"), seed=9)
    spread = PLANT_DEFAULTS["resistance_spread"]
    for x, y in zip(a.cells, b.cells, strict=True):
        assert x.tau2_s == 1234.0
        assert 0.030 * (1 - spread) <= x.r2_ohm <= 0.030 * (1 + spread)
        assert x.r2_ohm == pytest.approx(y.r2_ohm * 3.0)  # same draws, other nominal
        # Capacity, R0 and R1 come from the seed's first generator, as they always have.
        assert (x.capacity_ah, x.r0_ohm, x.r1_ohm) == (y.capacity_ah, y.r0_ohm, y.r1_ohm)
    rng = random.Random(9)
    first = b.cells[0]
    assert first.capacity_ah == 3.0 * (1 + rng.uniform(-0.02, 0.02))
    assert first.r0_ohm == 0.020 * (1 + rng.uniform(-spread, spread))


def test_same_seed_same_cells_other_seed_other_cells() -> None:
    def fingerprint(p: Plant) -> list[tuple[float, ...]]:
        return [(c.capacity_ah, c.r0_ohm, c.r1_ohm, c.r2_ohm, c.self_discharge_a)
                for c in p.cells]

    board = load_board("sim-4s")
    assert fingerprint(Plant(board, seed=4)) == fingerprint(Plant(board, seed=4))
    other = fingerprint(Plant(board, seed=5))
    assert all(x != y for x, y in zip(fingerprint(Plant(board, seed=4)), other, strict=True))


# -- self-discharge ----------------------------------------------------------------------------
def test_self_discharge_drains_each_cell_at_its_monthly_rate() -> None:
    plant = Plant(load_board("sim-4s"), seed=2, initial_soc_pct=80.0)
    days = 30
    for _ in range(days * 24):
        plant.step(3600.0)
    pct, spread = (PLANT_DEFAULTS["self_discharge_pct_per_month"],
                   PLANT_DEFAULTS["self_discharge_spread"])
    months = days * 24 / HOURS_PER_MONTH
    lost = [80.0 - s for s in plant.truth().cells_soc_pct]
    for cell, lost_pct in zip(plant.cells, lost, strict=True):
        assert lost_pct == pytest.approx(
            cell.self_discharge_a * days * 24 / cell.capacity_ah * 100.0, rel=1e-9)
        assert pct * (1 - spread) * months <= lost_pct <= pct * (1 + spread) * months
    assert len(set(lost)) == len(lost)  # each cell its own rate: they drift apart
    assert plant.current_a == 0.0 and plant.charge_out_ah == 0.0  # the shunt sees none of it


def test_self_discharge_stops_at_empty_and_can_be_off() -> None:
    plant = Plant(load_board("sim-4s"), initial_soc_pct=0.001)
    for _ in range(24):
        plant.step(3600.0)
    assert all(-1e-4 < c.soc <= 0.0 for c in plant.cells)  # stops within a step of 0
    soc = [c.soc for c in plant.cells]
    plant.step(24 * 3600.0)
    assert [c.soc for c in plant.cells] == soc
    off = Plant(board_with(self_discharge_pct_per_month=0.0))
    off.step(30 * 24 * 3600.0)
    assert [c.soc for c in off.cells] == [0.5] * 4


# -- balancing ----------------------------------------------------------------------------------
def test_balancing_bleeds_the_masked_cells_through_the_resistor() -> None:
    board = board_with(self_discharge_pct_per_month=0.0, balance_ohm=22.0)
    plant = Plant(board, seed=3, initial_soc_pct=70.0)
    ref = Plant(board, seed=3, initial_soc_pct=70.0)
    plant.balancing_mask = 0b1001
    assert plant.outputs >> OUT_BALANCE_SHIFT == 0b1001 and plant.balancing_mask == 0b1001
    v = plant.cells_v()
    bleed = plant.balance_currents_a()
    for k, c in enumerate(plant.cells):
        if k in (0, 3):
            # The resistor carries the terminal voltage, which the bleed pulls
            # down by its drop across R0.
            assert bleed[k] == pytest.approx(v[k] / 22.0, rel=1e-12)
            assert v[k] == pytest.approx(ocv_v(plant.table, c.soc) - bleed[k] * c.r0_ohm,
                                         rel=1e-12)
            assert v[k] < ref.cells_v()[k]
        else:
            assert bleed[k] == 0.0 and v[k] == ref.cells_v()[k]
    truth = plant.truth()
    assert truth.balancing_mask == 0b1001 and truth.balance_a == bleed
    hours = 2
    for _ in range(hours * 60):
        plant.step(60.0)
        ref.step(60.0)
    bleed_end = plant.balance_currents_a()
    for k, (c, r) in enumerate(zip(plant.cells, ref.cells, strict=True)):
        drop = (r.soc - c.soc) * c.capacity_ah
        assert drop == pytest.approx(plant.balance_ah[k], rel=1e-9)
        if k in (0, 3):  # V / R for two hours, V falling as the cell empties
            assert 0 < bleed_end[k] < bleed[k]
            assert hours * bleed_end[k] < plant.balance_ah[k] < hours * bleed[k]
        else:
            assert drop == 0.0 and plant.balance_ah[k] == 0.0
    assert plant.current_a == 0.0  # the shunt does not see the bleed


def test_balancing_heats_the_pack_by_the_resistors_power() -> None:
    board = board_with(self_discharge_pct_per_month=0.0)
    plant = Plant(board, ambient_c=20.0)
    plant.balancing_mask = 0b1111
    for _ in range(200):
        plant.step(100.0)  # 5.6 h: many thermal time constants
    power_w = sum(i * i * plant.balance_ohm for i in plant.balance_currents_a())
    cell_loss_w = sum(c.heat_w for c in plant.cells)  # the bleed through R0 and the RC pairs
    assert power_w > 1.0 and 0 < cell_loss_w < 0.01 * power_w
    want = 20.0 + (power_w + cell_loss_w) * plant.thermal_resistance_k_per_w
    assert plant.temperature_c == pytest.approx(want, rel=1e-3)


def test_mask_bits_beyond_the_cells_do_nothing_and_a_reset_clears_the_mask() -> None:
    plant = Plant(load_board("sim-4s"))
    plant.outputs = RESET_OUTPUTS | (0b110001 << OUT_BALANCE_SHIFT)
    assert plant.balancing_mask == 0b0001
    assert plant.truth().balance_a[1:] == [0.0, 0.0, 0.0]
    plant.output_closed = True  # driving the switch by hand keeps the mask
    assert plant.balancing_mask == 0b0001 and plant.output_closed
    plant.release_outputs()
    assert plant.balancing_mask == 0 and plant.outputs == RESET_OUTPUTS


# -- thermal ---------------------------------------------------------------------------------
def test_cells_sit_above_the_node_by_their_heat_and_extra_heat_reaches_the_node() -> None:
    board = board_with(self_discharge_pct_per_month=0.0)
    plant = Plant(board, ambient_c=15.0)
    plant.cell_extra_heat_w[2] = 3.0
    for _ in range(100):
        plant.step(200.0)
    r_amb, r_cell = plant.thermal_resistance_k_per_w, plant.cell_thermal_resistance_k_per_w
    assert plant.temperature_c == pytest.approx(15.0 + 3.0 * r_amb, rel=1e-6)
    cells = plant.truth().cells_temperature_c
    assert cells[2] == pytest.approx(plant.temperature_c + 3.0 * r_cell, rel=1e-9)
    assert cells[0] == cells[1] == cells[3] == plant.temperature_c
    # Under current each cell heads for the node plus its own losses x R_cell,
    # with the cell's own time constant (no jump when the current starts).
    tau_c = PLANT_DEFAULTS["thermal_mass_j_per_k"] * r_cell
    assert plant.cell_tau_s == tau_c
    rise0 = [t - plant.temperature_c for t in cells]
    closed(plant, 6.0).step(30.0)
    for k, (c, t) in enumerate(zip(plant.cells, plant.cells_temperature_c(), strict=True)):
        assert c.heat_w > 6.0**2 * c.r0_ohm
        target = (c.heat_w + plant.cell_extra_heat_w[k]) * r_cell
        want = target + (rise0[k] - target) * math.exp(-30.0 / tau_c)
        assert t - plant.temperature_c == pytest.approx(want, rel=1e-9)
        assert rise0[k] < t - plant.temperature_c < target


def test_a_held_cell_heats_the_node_through_its_thermal_resistance_exactly() -> None:
    board = board_with(self_discharge_pct_per_month=0.0)
    plant = Plant(board, ambient_c=25.0)
    coarse = Plant(board, ambient_c=25.0)
    for p in (plant, coarse):
        p.cell_temperature_override_c[1] = 70.0
    r_amb, r_cell = plant.thermal_resistance_k_per_w, plant.cell_thermal_resistance_k_per_w
    b = 1 / r_amb + 1 / r_cell
    t_inf = (25.0 / r_amb + 70.0 / r_cell) / b
    tau = plant.thermal_mass_j_per_k / b
    t = 0.0
    for _ in range(50):
        plant.step(10.0)
        t += 10.0
        assert plant.temperature_c == pytest.approx(
            t_inf + (25.0 - t_inf) * math.exp(-t / tau), rel=1e-12)
    coarse.step(t)
    assert coarse.temperature_c == pytest.approx(plant.temperature_c, rel=1e-12)
    assert plant.cells_temperature_c()[1] == 70.0
    assert 25.0 < plant.cells_temperature_c()[0] == plant.temperature_c < t_inf
    # A warmer room warms the pack and every cell the model keeps, not the held one.
    plant.ambient_c = 40.0
    before = plant.cells_temperature_c()
    plant.step(60.0)
    after = plant.cells_temperature_c()
    assert after[1] == 70.0 and all(a > b for i, (a, b) in
                                    enumerate(zip(after, before, strict=True)) if i != 1)


# -- board keys ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "value", "words"), [
    ("r2_mohms", 10, "unknown plant key r2_mohms"),
    ("tau2_s", 0, "plant.tau2_s must be above 0"),
    ("balance_ohm", -33, "plant.balance_ohm must be above 0"),
    ("self_discharge_pct_per_month", -1, "must be 0 or more"),
    ("self_discharge_spread", 1.5, "below 1"),
    ("r2_mohm", "ten", "must be a finite number"),
])
def test_bad_plant_keys_are_refused_by_name(key: str, value: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Plant(board_with(**{key: value}))
    with pytest.raises(BoardFileError, match=words):  # the simulator's users see a board error
        SimulatedBoard(board=board_with(**{key: value}), runtime="cpython")
