"""End to end: the real firmware on the simulated board meets the injected faults.

Each test runs the board in lock-step, reads its telemetry over the pty like a
host, and compares what the firmware reports with what the plant did. Limits,
delays and timings come from the board file and the firmware's own tables.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fakes import ReadCounter, drain_board

from cellguard.link.client import BoardClient, fault_names
from cellguard.protocol.messages import Faults
from cellguard.sim import SimulatedBoard
from cellguard.sim.plant import OUT_CLOSED, PlantTruth

FAULT_BITS: dict[str, int] = dict(Faults.flags)


class Host:
    """A host on a lock-step board's port that keeps every telemetry payload."""

    def __init__(self, sim: SimulatedBoard) -> None:
        self.sim = sim
        self.client = BoardClient(sim.port)
        self.counter = ReadCounter(self.client)
        self.telemetry: list[dict[str, Any]] = []

    def run(self, seconds: float) -> None:
        """Advance ``seconds`` of simulated time, reading the port every step."""
        period_s = self.sim.period_ms / 1000.0
        for _ in range(round(seconds / period_s)):
            self.sim.advance(period_s)
            self._drain()
        # A pty hands written bytes to the reader asynchronously: read until the host
        # has every byte the board wrote (drain_board), not until the line is quiet.

    def _drain(self) -> None:
        self.telemetry += [m.payload for m in drain_board(self.client, self.counter, self.sim)
                           if m.name == "telemetry"]

    @property
    def last(self) -> dict[str, Any]:
        assert self.telemetry, "no telemetry yet"
        return self.telemetry[-1]

    def faults(self) -> list[str]:
        return fault_names(int(self.last["faults"]))

    def has(self, fault: str) -> bool:
        return bool(int(self.last["faults"]) & FAULT_BITS[fault])

    def states(self) -> list[str]:
        """The states the telemetry showed, each run of equal ones once."""
        out: list[str] = []
        for p in self.telemetry:
            if not out or out[-1] != str(p["state"]):
                out.append(str(p["state"]))
        return out


@contextmanager
def board(name: str = "sim-4s", runtime: str = "cpython", **kw: Any
          ) -> Iterator[tuple[SimulatedBoard, Host]]:
    with SimulatedBoard(board=name, runtime=runtime, lockstep=True, **kw) as sim:
        host = Host(sim)
        try:
            yield sim, host
        finally:
            host.client.close()


def limits(sim: SimulatedBoard) -> dict[str, tuple[int, int]]:
    """The firmware's (trip, release) pairs for this board."""
    from cellguard_fw.app import board_limits

    return board_limits(sim.board)


def since(sim: SimulatedBoard, ms: int) -> list[PlantTruth]:
    return [t for t_ms, t in sim.history if t_ms > ms]


# -- contactor and precharge --------------------------------------------------------------
@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_contactor_board_precharges_the_link_then_closes(runtime: str) -> None:
    with board("sim-4s-contactor", runtime) as (sim, host):
        pre = sim.board["precharge"]
        done = pre["done_pct"] / 100.0
        host.run(3.0)
        states = host.states()
        assert "precharge" in states and states[-1] == "active", states
        assert states.index("precharge") < states.index("active")
        assert host.faults() == []
        truths = [t for _, t in sim.history]
        first_closed = next(i for i, t in enumerate(truths) if t.output_closed)
        charging = [t for t in truths[:first_closed] if t.precharge]
        assert charging, "the precharge relay never came on before the contactor closed"
        links = [t.link_v for t in charging]
        assert links == sorted(links) and links[0] < links[-1]  # charging up
        # The firmware closes at the first sample that reaches done_pct of the pack.
        tol_v = 0.002 + len(sim.plant.cells) * sim.sensors.cell_lsb_v()
        assert all(t.link_v < done * t.pack_v + tol_v for t in charging[:-1])
        assert charging[-1].link_v >= done * charging[-1].pack_v - tol_v
        assert truths[first_closed].link_v == truths[first_closed].pack_v
        # ... as soon as the RC model says the link gets there, sampled each period.
        p = sim.plant
        rp, rl = p.precharge_ohm, p.load_ohm
        tau_s = p.dc_link_uf * 1e-6 * rp * rl / (rp + rl)
        t_done_s = -tau_s * math.log(1.0 - done * (rp + rl) / rl)
        period_s = sim.period_ms / 1000.0
        assert abs(len(charging) - math.ceil(t_done_s / period_s)) <= 1
        assert len(charging) * sim.period_ms < pre["timeout_ms"]
        assert charging[0].current_a < 0.0  # the precharge current comes from the pack


def test_precharge_retries_until_the_link_fault_is_gone() -> None:
    with board("sim-4s-contactor") as (sim, host):
        pre = sim.board["precharge"]
        assert pre["retries"] >= 1
        sim.inject("precharge_short")
        host.run((pre["timeout_ms"] + pre["retry_delay_ms"] / 2) / 1000.0)
        assert host.states() == ["precharge"] and host.faults() == []
        assert not any(t.output_closed for _, t in sim.history)
        assert any(not t.precharge for t in since(sim, pre["timeout_ms"] + sim.period_ms))
        sim.clear("precharge_short")
        host.run((pre["retry_delay_ms"] + pre["timeout_ms"]) / 1000.0)
        assert host.states() == ["precharge", "active"]
        assert host.faults() == [] and sim.truth().output_closed


def test_precharge_short_ends_in_precharge_failed() -> None:
    with board("sim-4s-contactor") as (sim, host):
        pre = sim.board["precharge"]
        sim.inject("precharge_short")
        attempts = pre["retries"] + 1
        give_up_ms = attempts * pre["timeout_ms"] + pre["retries"] * pre["retry_delay_ms"]
        host.run(give_up_ms / 1000.0 - 1.0)
        assert not host.has("precharge_failed")
        host.run(2.0)
        assert host.has("precharge_failed"), host.faults()
        assert host.last["state"] == "fault"
        truths = [t for _, t in sim.history]
        assert not any(t.output_closed for t in truths)
        done = pre["done_pct"] / 100.0
        assert max(t.link_v / t.pack_v for t in truths) < done
        # One precharge per attempt: the relay came on exactly that many times.
        switched_on = sum(1 for a, b in itertools.pairwise(truths)
                          if b.precharge and not a.precharge)
        assert switched_on == attempts
        host.run(pre["retry_delay_ms"] / 1000.0 + 1.0)
        assert not sim.truth().precharge  # a latched failure does not try again


@pytest.mark.parametrize("welded", [False, True])
def test_welded_contactor_is_found_once_the_firmware_opens_it(welded: bool) -> None:
    with board("sim-4s-contactor") as (sim, host):
        host.run(2.0)
        assert host.last["state"] == "active"
        if welded:
            sim.inject("welded_contactor")
        # Over-current, below the peak and short-circuit levels: a plain trip opens it.
        lim = limits(sim)
        amps = -(lim["discharge_current_max_ma"][0] + lim["discharge_current_peak_ma"][0]) / 2000
        sim.set_current(amps)
        trip_at = sim.time_ms
        host.run(3.0)
        assert host.has("overcurrent_discharge"), host.faults()
        assert host.has("contactor_welded") == welded, host.faults()
        assert not host.has("short_circuit") and not host.has("overcurrent_discharge_peak")
        assert not sim.plant.outputs & OUT_CLOSED  # the firmware let go either way ...
        truth = sim.truth()
        assert truth.output_closed == welded  # ... but a welded contact stays closed
        assert truth.current_a == (pytest.approx(amps, rel=0.05) if welded else 0.0)
        # Welded, the contact never opened at any sample since the over-current.
        opened = [t for t in since(sim, trip_at) if not t.output_closed]
        assert (opened == []) == welded


# -- the output switches ----------------------------------------------------------------------
def test_dual_switch_board_blocks_only_the_direction_an_alarm_stops() -> None:
    with board("sim-4s") as (sim, host):
        assert sim.board.get("switches") == "dual"
        lim = limits(sim)
        charge_trip = lim["temp_charge_max_dc"][0]
        hot_release = lim["temp_max_dc"][1]
        assert charge_trip < hot_release
        hot_c = (charge_trip + hot_release) / 2 / 10.0  # charging is too hot, discharging not
        capacity_a = sim.board["capacity_mah"] / 1000.0
        sim.set_current(capacity_a / 2)
        host.run(2.0)
        assert sim.truth().current_a == capacity_a / 2
        for cell in range(len(sim.plant.cells)):
            sim.set_cell_temperature(cell, hot_c)
        host.run(5.0)
        truth = sim.truth()
        assert truth.output_closed and not truth.charge_allowed and truth.discharge_allowed
        assert truth.current_a == 0.0  # the charge FET is off
        sim.set_current(-capacity_a / 2)
        host.run(1.0)
        assert sim.truth().current_a == -capacity_a / 2  # the discharge FET still conducts
        assert host.faults() == [] and host.last["state"] == "active"


def test_short_circuit_trips_at_once_and_stops_the_current() -> None:
    with board("sim-4s") as (sim, host):
        host.run(2.0)
        assert sim.truth().output_closed and host.faults() == []
        sim.inject("short_circuit")
        t0 = sim.time_ms
        host.run(1.0)
        assert host.has("short_circuit"), host.faults()
        trip_a = limits(sim)["short_circuit_ma"][0] / 1000.0
        after = since(sim, t0)
        assert after[0].current_a < -trip_a  # what the shunt saw
        assert all(t.current_a == 0.0 for t in after[2:])  # opened within one step
        assert sim.truth().current_a == 0.0


# -- sensor plausibility ------------------------------------------------------------------------
def _healthy(sim: SimulatedBoard, host: Host, seconds: float = 2.0) -> None:
    host.run(seconds)
    assert host.faults() == [] and sim.truth().output_closed


@pytest.mark.parametrize("cell", [0, 3])
def test_open_sense_wire_trips_open_wire(cell: int) -> None:
    with board("sim-4s") as (sim, host):
        _healthy(sim, host)
        sim.inject("open_wire", cell=cell)
        host.run(3.0)
        assert host.has("open_wire"), host.faults()
        assert not sim.truth().output_closed
        assert host.last["cells_mv"][cell] == 0


def test_stuck_cell_reading_trips_sensor_stuck_after_the_stuck_time() -> None:
    with board("sim-4s", noise_lsb=1.0) as (sim, host):
        stuck_s = limits(sim)["sensor_stuck_ms"][0] / 1000.0
        # The stuck clock runs only while current flows (above capacity / 10).
        sim.set_current(sim.board["capacity_mah"] / 1000.0 / 2)
        _healthy(sim, host)
        sim.inject("stuck_sensor", cell=2)
        host.run(stuck_s - 2.0)
        assert not host.has("sensor_stuck"), host.faults()
        host.run(4.0)
        assert host.has("sensor_stuck"), host.faults()
        assert not sim.truth().output_closed


@pytest.mark.parametrize("fault", ["disconnected_temp", "shorted_temp"])
def test_open_or_shorted_ntc_trips_sensor_disconnected(fault: str) -> None:
    with board("sim-4s") as (sim, host):
        _healthy(sim, host)
        sim.inject(fault, sensor=sim.sensors.n_temps - 1)
        host.run(4.0)
        assert host.has("sensor_disconnected"), host.faults()
        assert not sim.truth().output_closed


def test_pack_sensor_offset_trips_pack_voltage_mismatch() -> None:
    with board("sim-4s") as (sim, host):
        assert "pack_adc" in sim.board["frontend"]
        trip_mv = limits(sim)["pack_mismatch_mv"][0]
        assert trip_mv < 1000  # so 1 V is a mismatch
        _healthy(sim, host, 4.0)  # the healthy sensor agrees with the cells
        sim.inject("pack_sensor_offset", volts=1.0)
        host.run(4.0)
        assert host.has("pack_voltage_mismatch"), host.faults()
        assert not sim.truth().output_closed
