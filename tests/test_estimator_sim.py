"""The state estimator on the simulated board, end to end: ESTIMATE frames over
the pty, the SoC telemetry reports, current limits, and balancing that really
bleeds the fullest cell in the plant."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import ReadCounter, drain_board

from cellguard.link.client import BoardClient, Estimate
from cellguard.sim import SimulatedBoard


class Host:
    def __init__(self, sim: SimulatedBoard) -> None:
        self.sim = sim
        self.client = BoardClient(sim.port)
        self.counter = ReadCounter(self.client)
        self.telemetry: list[dict[str, Any]] = []
        self.estimates: list[Estimate] = []

    def run(self, seconds: float) -> None:
        period_s = self.sim.period_ms / 1000.0
        for k in range(round(seconds / period_s)):
            self.sim.advance(period_s)
            if k % 10 == 0:
                self.drain()
        self.drain()

    def drain(self) -> None:
        """Everything the board has written so far (not: until the line is quiet)."""
        for m in drain_board(self.client, self.counter, self.sim):
            if m.name == "telemetry":
                self.telemetry.append(m.payload)
            elif m.name == "estimate":
                self.estimates.append(Estimate.from_wire(m.payload))


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_estimates_reach_the_host_and_follow_the_plant(runtime: str) -> None:
    with SimulatedBoard(runtime=runtime, lockstep=True, initial_soc_pct=70.0) as sim:
        host = Host(sim)
        try:
            host.run(5.0)
            sim.set_current(-6.0)  # 2C of discharge for two minutes
            host.run(120.0)
            truth = sim.truth()
        finally:
            host.client.close()
    est = host.estimates
    assert len(est) >= 120  # one per telemetry period (1 s)
    last = est[-1]
    assert last.mode == "ekf" and last.soc_std_pct is not None
    assert abs(last.soc_pct - truth.soc_pct) < 2.0
    # telemetry reports the estimator's SoC
    assert abs(host.telemetry[-1]["soc_cpct"] / 100.0 - last.soc_pct) < 0.2
    # limits: positive, peaks at least the continuous limit, capped by the board
    board = sim.board
    assert 0 < last.discharge_limit_a <= board["discharge_current_max_ma"] / 1000.0
    assert 0 < last.charge_limit_a <= board["charge_current_max_ma"] / 1000.0
    assert min(last.discharge_peak_a) >= last.discharge_limit_a - 1e-3
    assert last.cell_soc_min_pct <= last.soc_pct + 1.0 <= last.cell_soc_max_pct + 2.0


def test_balancing_bleeds_the_fullest_cell_in_the_plant() -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True, initial_soc_pct=60.0) as sim:
        sim.plant.cells[2].soc += 0.06  # cell 3 six points above the others
        host = Host(sim)
        try:
            host.run(10.0)
            gap0 = sim.truth().cells_soc_pct[2] - min(sim.truth().cells_soc_pct)
            host.run(600.0)
            truth = sim.truth()
        finally:
            host.client.close()
    assert host.estimates[-1].balancing == 0b100
    assert truth.balancing_mask == 0b100  # the plant's resistor really is switched on
    gap = truth.cells_soc_pct[2] - min(truth.cells_soc_pct)
    # 3.9 V across 33 ohm for 10 minutes: about 0.02 Ah, 0.66 % of a 3 Ah cell
    bleed_pct = 100 * (3.9 / sim.plant.balance_ohm) * 600 / 3600 / sim.plant.cells[2].capacity_ah
    assert gap0 - gap == pytest.approx(bleed_pct, rel=0.25)


@pytest.mark.parametrize("multi_port", [False, True])
def test_the_log_stores_the_estimates(tmp_path: Any, multi_port: bool) -> None:
    """ESTIMATE frames land in the log's estimates table beside the telemetry,
    through the single-board logger and through `cellguard log`."""
    import subprocess
    import sys

    from cellguard.store import LogReader
    from cellguard.store.logger import log_board

    out = tmp_path / "run.sqlite"
    with SimulatedBoard(runtime="cpython", speed=20.0, initial_soc_pct=60.0) as sim:
        sim.set_current(-3.0)
        if multi_port:
            proc = subprocess.run(
                [sys.executable, "-m", "cellguard.cli", "log", "--port", sim.port, "--out",
                 str(out), "--duration", "20"], capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr
        else:
            log_board(sim.port, out, duration_s=20.0)
    with LogReader(out) as reader:
        estimates = list(reader.estimates())
        samples = list(reader.samples())
    assert len(estimates) >= 15 and len(samples) >= 15
    times = [e["t_s"] for e in estimates]
    assert times == sorted(times) and times[-1] <= samples[-1].t_s + 1.0
    assert {e["mode"] for e in estimates} == {"ekf"}
    last = estimates[-1]
    # the SoC the estimate gives is the one telemetry reported at about that time
    nearest = min(samples, key=lambda s: abs(s.t_s - last["t_s"]))
    assert abs(last["soc_cpct"] / 100.0 - nearest.soc_pct) < 0.5
    assert last["discharge_limit_ma"] > 0 and last["soc_std_cpct"] > 0
