"""Fault injection on the simulated board: the API, and the codes each sensor
fault puts in front of the firmware (checked at the sensor model, no firmware
run needed except where a test says so)."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import pytest

from cellguard.sim import SimulatedBoard
from cellguard.sim.board import INJECTIONS, REQUIRED
from cellguard.sim.plant import OUT_CHARGE, OUT_CLOSED, OUT_DISCHARGE, RESET_OUTPUTS
from cellguard.sim.sensors import TAIL_FORMAT
from cellguard_fw.frontend import Frontend


@dataclass
class Sample:
    cells: list[int]
    current: int
    temps: list[int]
    pack: int
    link_mv: int
    feedback: int


def sample(sim: SimulatedBoard) -> Sample:
    """One sample of codes, unpacked as the firmware's SimHal does."""
    n, m = sim.sensors.n_cells, sim.sensors.n_temps
    raw = sim.sensors.codes(sim.plant)
    assert len(raw) == 2 * (n + 1 + m) + struct.calcsize(TAIL_FORMAT)
    values = struct.unpack_from(f"<{n + 1 + m}H", raw)
    pack, link_mv, feedback, _presence = struct.unpack_from(TAIL_FORMAT, raw,
                                                            2 * (n + 1 + m))
    return Sample(list(values[:n]), values[n], list(values[n + 1:]), pack, link_mv, feedback)


def idle_board(name: str = "sim-4s", **kw: Any) -> SimulatedBoard:
    """A board whose plant and sensors are driven by hand (not started)."""
    return SimulatedBoard(board=name, runtime="cpython", lockstep=True, **kw)


def close_output(sim: SimulatedBoard, amps: float) -> None:
    sim.plant.outputs = OUT_CLOSED | OUT_CHARGE | OUT_DISCHARGE
    sim.set_current(amps)


def test_the_codes_tail_is_what_the_firmware_unpacks() -> None:
    from cellguard_fw import hal_sim

    assert struct.calcsize(TAIL_FORMAT) == hal_sim.EXTRA_BYTES


# -- the API ---------------------------------------------------------------------
def test_unknown_faults_and_bad_parameters_raise_naming_the_choices() -> None:
    sim = idle_board()
    n = len(sim.plant.cells)
    with pytest.raises(ValueError) as exc:
        sim.inject("melted_busbar")
    assert all(name in str(exc.value) for name in INJECTIONS)
    with pytest.raises(ValueError, match="missing parameter cell"):
        sim.inject("open_wire")
    with pytest.raises(ValueError, match=f"cell must be an integer 0..{n - 1}"):
        sim.inject("open_wire", cell=n)
    for bad in (-1, True, 1.0):
        with pytest.raises(ValueError, match="cell must be an integer"):
            sim.inject("stuck_sensor", cell=bad)
    with pytest.raises(ValueError, match="sensor must be an integer"):
        sim.inject("disconnected_temp", sensor=sim.sensors.n_temps)
    with pytest.raises(ValueError, match="valid parameters: ohms"):
        sim.inject("short_circuit", amps=100.0)
    for bad_ohms in (0.0, -1.0):
        with pytest.raises(ValueError, match="ohms must be above 0"):
            sim.inject("short_circuit", ohms=bad_ohms)
    with pytest.raises(ValueError, match="finite number"):
        sim.inject("current_offset", amps=math.nan)
    with pytest.raises(ValueError, match="no precharge circuit"):
        sim.inject("precharge_short")  # sim-4s has FETs, no DC link to precharge
    with pytest.raises(ValueError, match="unknown fault"):
        sim.clear("melted_busbar")
    with pytest.raises(ValueError, match="cell must be an integer"):
        sim.set_cell_temperature(n, 30.0)
    assert sim.injections() == []  # nothing was half applied
    assert sim.sensors.open_wires == set() and sim.plant.short_circuit_ohm is None


def test_every_fault_injects_with_its_defaults_and_clears() -> None:
    sim = idle_board("sim-4s-contactor")
    for name, spec in INJECTIONS.items():
        params = {k: 1 for k, v in spec.items() if v is REQUIRED}
        sim.inject(name, **params)
    assert [n for n, _ in sim.injections()] == list(INJECTIONS)
    assert dict(sim.injections())["short_circuit"] == {"ohms": INJECTIONS["short_circuit"]["ohms"]}
    sim.clear()
    assert sim.injections() == []
    fresh = idle_board("sim-4s-contactor")
    assert sample(sim) == sample(fresh)  # back to a healthy board
    assert (sim.plant.welded, sim.plant.short_circuit_ohm, sim.plant.link_short_ohm,
            sim.plant.internal_short_ohm) == (False, None, None, {})


def test_reinjecting_replaces_and_clear_by_name_leaves_the_others() -> None:
    sim = idle_board()
    sim.inject("open_wire", cell=0)
    sim.inject("open_wire", cell=2)
    sim.inject("open_wire", cell=2)
    sim.inject("current_offset", amps=0.5)
    sim.inject("current_offset", amps=-0.25)
    assert sim.injections() == [("open_wire", {"cell": 0}), ("open_wire", {"cell": 2}),
                                ("current_offset", {"amps": -0.25})]
    assert sim.sensors.current_offset_a == -0.25
    sim.clear("open_wire")
    assert sim.injections() == [("current_offset", {"amps": -0.25})]
    assert sim.sensors.open_wires == set() and sim.sensors.current_offset_a == -0.25


# -- sensor faults at the codes ----------------------------------------------------------
@pytest.mark.parametrize("cell", range(4))
def test_open_wire_floats_the_tap_down_to_the_one_below(cell: int) -> None:
    sim = idle_board(initial_soc_pct=70.0)
    n = len(sim.plant.cells)
    assert cell < n
    volts = sim.plant.cells_v()
    healthy = sample(sim).cells
    sim.inject("open_wire", cell=cell)
    cells = sample(sim).cells
    assert cells[cell] == 0
    if cell + 1 < n:  # the cell above reads both (clipped at the ADC's full scale)
        both_v = volts[cell] + volts[cell + 1]
        assert cells[cell + 1] == min(round(both_v / sim.sensors.cell_lsb_v()),
                                      sim.sensors.cell_max)
    others = [i for i in range(n) if i not in (cell, cell + 1)]
    assert [cells[i] for i in others] == [healthy[i] for i in others]
    sim.clear("open_wire")
    assert sample(sim).cells == healthy


def test_adjacent_open_wires_cascade() -> None:
    sim = idle_board()
    volts = sim.plant.cells_v()
    sim.inject("open_wire", cell=0)
    sim.inject("open_wire", cell=1)
    cells = sample(sim).cells
    assert cells[:3] == [0, 0, sim.sensors.cell_code(sum(volts[:3]))]
    assert cells[2] == sim.sensors.cell_max  # three cells are beyond a 5 V full scale


def test_stuck_cell_keeps_the_code_the_firmware_read_last() -> None:
    sim = idle_board()
    close_output(sim, 3.0)
    sim.plant.step(0.1)
    before = sample(sim).cells  # the firmware's last read
    sim.plant.step(0.1)
    sim.inject("stuck_sensor", cell=1)
    for _ in range(100):
        sim.plant.step(1.0)
    after = sample(sim).cells
    assert after[1] == before[1]
    lsb = sim.sensors.cell_lsb_v()
    assert sim.plant.cells_v()[1] - before[1] * lsb > 10 * lsb  # the truth moved on
    assert all(after[i] > before[i] + 10 for i in (0, 2, 3))  # the others follow it
    sim.clear("stuck_sensor")
    assert sample(sim).cells[1] == sim.sensors.cell_code(sim.plant.cells_v()[1])


def test_open_and_shorted_ntcs_sit_at_the_rails() -> None:
    sim = idle_board()
    healthy = sample(sim).temps
    last = sim.sensors.n_temps - 1
    sim.inject("disconnected_temp", sensor=0)
    sim.inject("shorted_temp", sensor=last)
    temps = sample(sim).temps
    if last > 0:
        assert temps[0] == sim.sensors.temp_max and temps[last] == 0
    else:  # one sensor: the later injection wins
        assert temps[0] == 0
    sim.clear("shorted_temp")
    assert sample(sim).temps[last] == (sim.sensors.temp_max if last == 0 else healthy[last])
    sim.clear()
    assert sample(sim).temps == healthy


@pytest.mark.parametrize(("offset_a", "gain"), [(0.5, 1.0), (0.0, 1.1), (-2.0, 0.9)])
def test_current_sensor_offset_and_gain(offset_a: float, gain: float) -> None:
    sim = idle_board()
    fe = Frontend(sim.board["frontend"])
    close_output(sim, -6.0)
    truth = sim.plant.current_a
    sim.inject("current_offset", amps=offset_a)
    sim.inject("current_gain", factor=gain)
    code = sample(sim).current
    assert code == sim.sensors.current_code(truth * gain + offset_a)
    fs = sim.board["frontend"]["current_adc"]
    lsb_a = fs["full_scale_ma"] / 1000 / ((1 << fs["bits"]) - 1 - fs["zero_code"])
    assert fe.current.convert(code) / 1000 == pytest.approx(truth * gain + offset_a, abs=lsb_a)
    assert sim.plant.current_a == truth  # the sensor lies, the pack does not change


@pytest.mark.parametrize("name", ["sim-4s", "sim-4s-contactor", "pico-4s"])
def test_pack_voltage_code_is_the_sum_of_the_cells(name: str) -> None:
    sim = idle_board(name)
    fe = Frontend(sim.board["frontend"])
    if "pack_adc" not in sim.board["frontend"]:
        assert sample(sim).pack == 0 and not sim.sensors.has_pack_adc
        return
    pack_v = sum(sim.plant.cells_v())
    lsb_v = sim.sensors.pack_lsb_v()
    assert fe.pack is not None
    assert fe.pack.convert(sample(sim).pack) / 1000 == pytest.approx(pack_v, abs=lsb_v)
    sim.inject("pack_sensor_offset", volts=1.0)
    assert fe.pack.convert(sample(sim).pack) / 1000 == pytest.approx(pack_v + 1.0, abs=lsb_v)
    sim.inject("open_wire", cell=0)  # a cell sense wire does not touch the pack divider
    assert fe.pack.convert(sample(sim).pack) / 1000 == pytest.approx(pack_v + 1.0, abs=lsb_v)


def test_link_voltage_and_contactor_feedback_in_the_tail() -> None:
    sim = idle_board("sim-4s-contactor")
    assert sim.board["precharge"]["link_sensor"] and sim.board["contactor_feedback"]
    first = sample(sim)
    assert (first.link_mv, first.feedback) == (0, 0)  # a discharged load, contactor open
    close_output(sim, 0.0)
    sim.plant.step(0.1)
    closed = sample(sim)
    assert closed.feedback == 1
    assert closed.link_mv == round(sim.plant.pack_voltage_v() * 1000)
    sim.plant.outputs = RESET_OUTPUTS
    sim.plant.step(0.1)
    opened = sample(sim)
    assert opened.feedback == 0 and 0 < opened.link_mv < closed.link_mv  # bleeding down
    sim.inject("welded_contactor")
    assert sample(sim).feedback == 1  # the aux contact tells the truth
    # A board without those sensors says so.
    plain = sample(idle_board("sim-4s"))
    assert (plain.link_mv, plain.feedback) == (-1, -1)


def test_cell_temperature_override_reaches_the_sensor_on_that_cell() -> None:
    sim = idle_board(ambient_c=20.0)
    fe = Frontend(sim.board["frontend"])
    n, m = sim.sensors.n_cells, sim.sensors.n_temps
    watched = {j * n // m: j for j in range(m)}
    healthy = sample(sim).temps
    for cell in range(n):
        sim.set_cell_temperature(cell, 47.5)
        temps = sample(sim).temps
        if cell in watched:
            j = watched[cell]
            assert fe.temp.convert(temps[j]) / 10 == pytest.approx(47.5, abs=0.6)
            assert temps[:j] + temps[j + 1:] == healthy[:j] + healthy[j + 1:]
        else:  # no sensor on this cell: nobody sees it
            assert temps == healthy
        assert sim.truth().cells_temperature_c[cell] == 47.5
        sim.set_cell_temperature(cell, None)
        assert sample(sim).temps == healthy


# -- plant faults through the API ---------------------------------------------------------
def test_plant_faults_reach_the_plant() -> None:
    sim = idle_board("sim-4s-contactor")
    close_output(sim, -1.0)
    sim.inject("short_circuit", ohms=0.1)
    shorted = sim.plant.current_a
    assert shorted < -50.0  # a 15 V pack into 0.1 ohm plus its own resistance
    sim.clear("short_circuit")
    assert sim.plant.current_a == -1.0
    sim.inject("internal_short", cell=3, ohms=2.0)
    assert sim.plant.internal_short_ohm == {3: 2.0}
    sim.plant.outputs = RESET_OUTPUTS
    sim.inject("welded_contactor")
    assert sim.truth().output_closed and sim.plant.current_a == -1.0
    sim.inject("precharge_short", ohms=0.5)
    assert sim.plant.link_short_ohm == 0.5
    sim.clear("welded_contactor")
    assert not sim.truth().output_closed and sim.plant.current_a == 0.0


def test_injected_runs_repeat_with_the_seed() -> None:
    def run(seed: int) -> list[list[int]]:
        """The cell codes the firmware read at every step."""
        seen: list[list[int]] = []
        with SimulatedBoard(runtime="cpython", lockstep=True, seed=seed, noise_lsb=1.0) as sim:
            sim.tick_hooks.append(lambda b: seen.append(list(b.sensors.last_cell_codes or [])))
            sim.set_current(2.0)
            sim.advance(1.0)
            sim.inject("stuck_sensor", cell=2)
            sim.inject("open_wire", cell=0)
            sim.inject("internal_short", cell=3, ohms=3.0)
            sim.advance(2.0)
        assert len({codes[2] for codes in seen[-15:]}) == 1  # stuck
        return seen

    first = run(5)
    assert run(5) == first
    assert run(6) != first
