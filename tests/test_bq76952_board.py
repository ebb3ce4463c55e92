"""End to end on the simulated 16S board with a BQ76952 (``sim-bq76952-16s``): the real
firmware and driver, under real MicroPython, talk to the register-level chip model over
the simulated I2C bus; the chip measures the plant and drives its FETs.

The two protection layers (docs/protection.md, "Two layers"): the firmware trips
first; the chip, armed a margin beyond, acts when the firmware does not (a limit it only
warns about, an MCU that hangs through a short circuit); the firmware reports the chip's
trip, latches it and keeps the FETs open until it is cleared. Bus faults are survived,
counted in STATS and, past the driver's bound, open the output.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fakes import drain_board
from test_sim_faults import Host as TelemetryHost

from cellguard.boards import load_board
from cellguard.protocol.messages import Faults
from cellguard.sim import SimulatedBoard

BOARD = "sim-bq76952-16s"
BITS: dict[str, int] = dict(Faults.flags)
COV, SCD = 0x08, 0x80  # Safety Status A


class Host(TelemetryHost):
    """A host on the board's port that keeps telemetry and fault events."""

    def __init__(self, sim: SimulatedBoard) -> None:
        super().__init__(sim)
        self.events: list[dict[str, Any]] = []

    def run_until(self, done: Any, limit_s: float) -> float:
        """Run until ``done()`` holds; return the board time (s) it did."""
        for _ in range(round(limit_s * 1000 / self.sim.period_ms)):
            self.run(self.sim.period_ms / 1000.0)
            if done():
                return self.sim.time_ms / 1000.0
        raise AssertionError(f"not within {limit_s} s of board time")

    def _drain(self) -> None:
        for m in drain_board(self.client, self.counter, self.sim):
            if m.name == "telemetry":
                self.telemetry.append(m.payload)
            elif m.name == "fault_event":
                self.events.append(m.payload)

    def request(self, call: Any) -> Any:
        """A request while the lock-step board is stepped by this thread."""
        import threading

        out: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: out.setdefault("r", call()))
        worker.start()
        while worker.is_alive():
            self.sim.advance(self.sim.period_ms / 1000.0)
            worker.join(0.01)
        self._drain()
        return out.get("r")

    def trips(self, bit: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == "trip" and e["fault"] & BITS[bit]]



@contextmanager
def bench(runtime: str = "micropython", **board_changes: Any
          ) -> Iterator[tuple[SimulatedBoard, Host]]:
    board = load_board(BOARD)
    board.update(board_changes)
    with SimulatedBoard(board=board, runtime=runtime, lockstep=True) as sim:
        host = Host(sim)
        try:
            yield sim, host
        finally:
            host.client.close()


def test_the_16s_board_measures_through_the_chip_and_closes_its_fets() -> None:
    with bench() as (sim, host):
        host.run(3.0)
        t = host.last
        truth = sim.truth()
        assert t["state"] == "active" and t["faults"] == 0
        assert len(t["cells_mv"]) == 16
        # the chip's 1 mV steps and its noise (0.8 mV sigma): within 4 mV of the plant
        assert max(abs(mv - v * 1000) for mv, v in zip(t["cells_mv"], truth.cells_v,
                                                        strict=True)) <= 4
        assert abs(t["pack_mv"] - sum(truth.cells_v) * 1000) <= 16 * 4
        assert all(abs(dc - 250) <= 2 for dc in t["temps_dc"])  # 0.1 K to 0.1 degC
        assert sim.chip is not None and sim.chip.chip.chg_on and sim.chip.chip.dsg_on
        sim.set_current(-40.0)  # a 40 A load: the chip's coulomb counter, 10 mA steps
        host.run(2.0)
        assert abs(host.last["current_ma"] + 40000) <= 20
        stats = host.request(host.client.stats)
        assert stats["sensor_bus"] == {k: 0 for k in stats["sensor_bus"]}


def test_over_voltage_trips_the_firmware_first_then_the_chip() -> None:
    # The firmware's own over-voltage only warns here, so the pack charges on past it
    # until the chip's COV (armed 100 mV beyond the firmware's trip) opens the FETs.
    with bench(severity={"cell_overvoltage": "warning"}) as (sim, host):
        assert sim.chip is not None
        chip = sim.chip.chip
        host.run(2.0)
        sim.plant.cells[5].soc = 1.0
        sim.set_current(45.0)
        host.run_until(lambda: bool(host.trips("afe_protection")), 600.0)
        firmware = host.trips("cell_overvoltage")
        second = host.trips("afe_protection")
        assert firmware and firmware[0]["severity"] == "warning"
        assert second[0]["value"] & COV and second[0]["severity"] == "fault"
        assert firmware[0]["board_time_ms"] < second[0]["board_time_ms"]
        # the chip's COV: its delay after the cell passed its threshold, FETs off at once
        cov = next(t for t in chip.trips if t.name == "COV")
        assert 1900 <= cov.trip_ms - cov.onset_ms <= 2100  # ~2 s programmed (3.3 ms steps)
        assert second[0]["board_time_ms"] - cov.trip_ms <= sim.period_ms
        host.run(1.0)
        assert not chip.chg_on and sim.truth().current_a <= 0.0
        assert host.last["state"] == "fault" and host.last["faults"] & BITS["afe_protection"]
        # The chip recovers by itself once the cell relaxes below its hysteresis; the
        # firmware keeps the FETs open until CLEAR_FAULTS, then they close again.
        sim.set_current(0.0)
        sim.plant.cells[5].soc = 0.6
        host.run_until(lambda: not chip.safety_status[0], 60.0)
        host.run(5.0)
        assert not chip.chg_on and not chip.dsg_on
        host.request(host.client.clear_faults)
        host.run(3.0)
        assert chip.chg_on and chip.dsg_on and host.last["state"] == "active"


def test_a_short_while_the_mcu_hangs_is_opened_by_the_chip_alone() -> None:
    with bench() as (sim, host):
        assert sim.chip is not None
        chip = sim.chip.chip
        host.run(3.0)
        assert chip.dsg_on
        sim.hang(10.0)  # the firmware stops; the watchdog resets it after 2 s
        host.run(0.5)
        sim.inject("short_circuit", ohms=0.001)
        host.run(0.3)
        scd = next(t for t in chip.trips if t.name == "SCD")
        # opened within its SCD delay of the short (the model's exact onset)
        assert scd.trip_ms - scd.onset_ms <= 0.075  # 60 us programmed: (n - 1) x 15 us
        assert not chip.dsg_on and abs(sim.truth().current_a) < 1.0
        sim.clear("short_circuit")
        # The firmware comes back after its watchdog reset, finds the chip's trip in
        # its status (the chip kept it: nothing reprogrammed it) and reports it.
        host.run_until(lambda: sim.watchdog_resets == 1 and bool(host.trips("afe_protection")),
                       10.0)
        event = host.trips("afe_protection")[0]
        assert event["value"] & SCD
        host.run(8.0)  # the chip recovers from SCD after its recovery time (5 s)
        assert not chip.safety_status[0] & SCD
        assert not chip.dsg_on and host.last["faults"] & BITS["afe_protection"]  # latched
        host.request(host.client.clear_faults)
        host.run(3.0)
        assert chip.dsg_on and host.last["state"] == "active"


@pytest.mark.parametrize("fault", ["nack", "timeout", "corrupt", "stuck_busy"])
def test_a_bus_fault_is_survived_and_counted(fault: str) -> None:
    with bench() as (sim, host):
        assert sim.chip is not None
        host.run(2.0)
        bus, chip = sim.chip.bus, sim.chip.chip
        if fault == "nack":
            bus.nack(sim.chip.address, times=2)
        elif fault == "timeout":
            bus.timeout(times=2, address=sim.chip.address)
        elif fault == "corrupt":
            chip.inject_crc_error(2)
        else:  # the next subcommand never finishes: the firmware's restart reads the
            chip.inject_stuck_busy(1)  # chip's settings back through subcommands
            sim.power_cycle()
        host.run(3.0)
        stats = host.request(host.client.stats)
        counts = stats["sensor_bus"]
        kind = {"nack": "nacks", "timeout": "timeouts", "corrupt": "crc_errors",
                "stuck_busy": "busy_timeouts"}[fault]
        assert counts[kind] >= 1, counts
        assert counts["cycles_failed"] == 0  # retried within the bound
        assert host.last["state"] == "active" and host.last["faults"] == 0


def test_a_dead_bus_becomes_a_sensor_fault_that_opens_the_output() -> None:
    with bench() as (sim, host):
        assert sim.chip is not None
        host.run(2.0)
        sim.chip.bus.nack(sim.chip.address, times=None)  # the chip stops answering
        host.run(1.0)
        assert host.trips("sensor_bus")
        assert host.last["state"] == "fault"
        # The chip itself still drives its FETs: the firmware could not reach it, so
        # its ALL_FETS_OFF did not either: the chip's own protections still hold.
        sim.chip.bus.clear_faults()
        host.run(1.0)
        assert not sim.chip.chip.dsg_on  # the firmware's latch reached the chip now
        stats = host.request(host.client.stats)
        assert stats["sensor_bus"]["cycles_failed"] >= 3
        host.request(host.client.clear_faults)
        host.run(3.0)
        assert host.last["state"] == "active" and sim.chip.chip.dsg_on


def test_the_firmwares_balancing_reaches_the_cells_through_the_chip() -> None:
    with bench() as (sim, host):
        assert sim.chip is not None
        sim.plant.cells[3].soc = 0.6  # ten points above the others (50 %)
        chip = sim.chip.chip
        host.run_until(lambda: bool(chip.balancing_mask & 1 << 3), 30.0)
        # (On the LFP plateau a cell a couple of mV high can read 2 % fuller and bleed
        # too: what the firmware asked for is what the chip does, cell for cell.)
        asked = sim.runtime.firmware.hal.balancing if sim.runtime_name == "cpython" else None
        host.run(1.0)
        mask = chip.balancing_mask
        assert mask & 1 << 3 and asked in (None, mask)
        bleeding = [a > 0 for a in sim.truth().balance_a]
        assert bleeding == [bool(mask & 1 << k) for k in range(16)]  # the plant follows
        assert sum(bleeding) <= 3


def test_a_temperature_step_past_both_layers_is_the_firmwares_to_report_first() -> None:
    # A thermistor that jumps past both thresholds at once starts the chip's delay at
    # once and the firmware's only at its next sample: the chip's longer delay (4 s
    # against 2 s) keeps the firmware first.
    with bench() as (sim, host):
        assert sim.chip is not None
        host.run(2.0)
        sim.set_cell_temperature(0, 66.0)  # the firmware trips above 60, the chip 65 degC
        host.run(6.0)
        firmware = host.trips("overtemperature")
        assert firmware
        ot = [t for t in sim.chip.chip.trips if t.name in ("OTC", "OTD")]
        assert all(firmware[0]["board_time_ms"] < t.trip_ms for t in ot)
        assert ot and min(t.trip_ms - t.onset_ms for t in ot) >= 4000.0
