"""The state estimator through sensor faults: SoC error during and after each one.

Run from the repository root::

    .venv/bin/python benchmarks/estimator_faults.py                  # every fault, CPython
    .venv/bin/python benchmarks/estimator_faults.py --fault open_wire --runtime micropython
    .venv/bin/python benchmarks/estimator_faults.py --fault open_wire --trace

The scenario of issue 11 (item 2), on the simulated ``sim-4s`` board in lock
step (simulated time, so every run with the same seed gives the same figures):
the pack starts at 80 % SoC and discharges at 6 A (2C); at 600 s a sensor fault
is injected; 20 s after the protection engine trips on it the injection is
cleared (the repair). The fault latched and opened the output, so the pack
rests; 300 s after the repair the host sends CLEAR_FAULTS and the discharge
resumes until 600 s after the repair. Faults (``--fault``, default all):

============================  ===================================================
``open_wire``                 the sense wire above cell 3 (``cell=2``): cell 3
                              reads 0 V, cell 4 both (clipped at 5 V) — the issue
``open_wire_top``             the wire above the top cell: it reads 0 V, the pack
                              sensor disagrees with the sum of the cells
``stuck_sensor``              cell 4's reading frozen (``sensor_stuck`` trips after
                              60 s of current)
``stuck_sensor_step``         the same, and the current steps to a 1.5 A charge as
                              it freezes (the HIL suite's stimulus); the pack sensor
                              trips ``pack_voltage_mismatch`` about 30 s later
``disconnected_temp``         temperature sensor 2 open (reads the cold rail)
``pack_sensor_offset``        the pack-voltage sensor 1 V off
============================  ===================================================

Everything is read as a host would: ESTIMATE and TELEMETRY frames over the
pty, compared with the plant's true SoC (``SimulatedBoard.truth_at``) at the
frame's board time. Figures, SoC points (estimate − truth):

- **before**: max |error| over the last 60 s before the injection;
- **during**: max |error| from the injection to the repair;
- **after**: max |error| from 180 s after the repair to the end;
- **back <3**: from the repair until |error| stays below 3 points to the end;
- **std min** / **|err|/std max**: the smallest uncertainty the filter reported
  after the injection, and the largest ratio of error to it (+1 point of model
  error: ``|err| / (std + 1)``): an honest filter keeps it near 3 or below;
- **|bias| max**: the largest current-sensor bias the filter held (A).

It prints figures and never fails; ``tests/test_estimator_faults.py`` runs the
same scenarios and asserts on them.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from cellguard.link.client import BoardClient, Estimate
from cellguard.sim import SimulatedBoard

INJECT_S = 600.0
HOLD_S = 20.0  # the fault stays this long after the protection tripped
REST_S = 300.0  # after the repair: the output stays open (latched) this long
RESUME_S = 300.0  # then CLEAR_FAULTS and the discharge resumes this long
SETTLE_S = 180.0  # "after" counts from this long after the repair

# fault name -> (injection, parameters, the protection it must trip, the current from
# the injection on: None keeps the discharge)
FAULTS: dict[str, tuple[str, dict[str, Any], str, float | None]] = {
    "open_wire": ("open_wire", {"cell": 2}, "open_wire", None),
    "open_wire_top": ("open_wire", {"cell": 3}, "open_wire", None),
    "stuck_sensor": ("stuck_sensor", {"cell": 3}, "sensor_stuck", None),
    # frozen under the discharge, then a C/2 charge: every live cell jumps by R0
    # times 7.5 A, the frozen one stays; the pack sensor sees the sum of the cells
    # disagree (0.2 V) about 30 s later, before the 60 s stuck clock runs out
    "stuck_sensor_step": ("stuck_sensor", {"cell": 3}, "pack_voltage_mismatch", 1.5),
    "disconnected_temp": ("disconnected_temp", {"sensor": 1}, "sensor_disconnected", None),
    "pack_sensor_offset": ("pack_sensor_offset", {"volts": 1.0}, "pack_voltage_mismatch",
                           None),
}


@dataclass
class Point:
    t_s: float
    truth_pct: float
    soc_pct: float
    std_pct: float
    bias_a: float
    phase: str  # before, during, rest, load

    @property
    def error(self) -> float:
        return self.soc_pct - self.truth_pct


@dataclass
class Outcome:
    fault: str
    runtime: str
    points: list[Point] = field(default_factory=list)
    inject_s: float = 0.0
    trip_s: float = 0.0
    repair_s: float = 0.0
    tripped: list[str] = field(default_factory=list)
    r0_growth_pct: tuple[float, float] = (0.0, 0.0)  # before the fault, at the end
    capacity_ah: tuple[float, float] = (0.0, 0.0)

    def _phase(self, *phases: str, since_s: float = -1.0) -> list[Point]:
        return [p for p in self.points if p.phase in phases and p.t_s >= since_s]

    @property
    def before(self) -> float:
        return max(abs(p.error) for p in self._phase("before", since_s=self.inject_s - 60))

    @property
    def during(self) -> float:
        return max(abs(p.error) for p in self._phase("during"))

    @property
    def after(self) -> float:
        return max(abs(p.error) for p in self._phase(
            "rest", "load", since_s=self.repair_s + SETTLE_S))

    @property
    def back_s(self) -> float:
        """From the repair until |error| stays below 3 points (inf: it never does)."""
        later = self._phase("rest", "load")
        last_bad = self.repair_s
        for p in later:
            if abs(p.error) >= 3.0:
                last_bad = p.t_s
        return last_bad - self.repair_s if later and last_bad < later[-1].t_s else float("inf")

    @property
    def std_min(self) -> float:
        return min(p.std_pct for p in self.points if p.t_s >= self.inject_s)

    @property
    def dishonesty(self) -> float:
        """The largest |error| / (std + 1 point) from the injection on."""
        return max(abs(p.error) / (p.std_pct + 1.0) for p in self.points
                   if p.t_s >= self.inject_s)

    @property
    def bias_max(self) -> float:
        return max(abs(p.bias_a) for p in self.points)


class Host:
    """A host on the lock-step board's port: keeps ESTIMATE and TELEMETRY frames."""

    def __init__(self, sim: SimulatedBoard) -> None:
        self.sim = sim
        self.client = BoardClient(sim.port)
        self.estimates: list[Estimate] = []
        self.faults = 0  # the last telemetry's active and latched faults

    def run(self, seconds: float) -> None:
        period_s = self.sim.period_ms / 1000.0
        for k in range(round(seconds / period_s)):
            self.sim.advance(period_s)
            if k % 10 == 9:
                self.drain(0.0)
        self.drain(0.02)

    def run_until(self, predicate: Any, limit_s: float) -> bool:
        end = self.sim.time_ms + limit_s * 1000
        while self.sim.time_ms < end:
            self.run(1.0)
            if predicate():
                return True
        return False

    def drain(self, settle_s: float) -> None:
        quiet_until = time.monotonic() + settle_s
        while True:
            if self.client.serial.in_waiting:
                for m in self.client.receive():
                    if m.name == "estimate":
                        self.estimates.append(Estimate.from_wire(m.payload))
                    elif m.name == "telemetry":
                        self.faults = int(m.payload["faults"])
                quiet_until = time.monotonic() + settle_s
            elif time.monotonic() >= quiet_until:
                return
            else:
                time.sleep(0.001)


def run_fault(fault: str, runtime: str = "cpython", seed: int = 1,
              initial_soc_pct: float = 80.0, amps: float = -6.0,
              hold_s: float = HOLD_S, phase_s: float = 0.0) -> Outcome:
    """The scenario above for one fault; the frames and the truth at each.
    ``phase_s``: the injection comes this long after the 600 s mark (the
    estimator runs once a second, on the second)."""
    from cellguard.link.client import FAULT_BITS, fault_names

    injection, params, protection, amps_during = FAULTS[fault]
    out = Outcome(fault, runtime)
    with SimulatedBoard(runtime=runtime, lockstep=True, seed=seed,
                        initial_soc_pct=initial_soc_pct) as sim:
        host = Host(sim)
        try:
            phases: list[tuple[float, str]] = [(0.0, "before")]
            sim.set_current(amps)
            host.run(INJECT_S)
            first = host.estimates[-1]
            if phase_s:
                host.run(phase_s)
            out.inject_s = sim.time_s
            phases.append((out.inject_s, "during"))
            sim.inject(injection, **params)
            if amps_during is not None:
                sim.set_current(amps_during)
            bit = FAULT_BITS[protection]
            if not host.run_until(lambda: host.faults & bit, 120.0):
                raise RuntimeError(f"{fault}: {protection} did not trip")
            out.trip_s = sim.time_s
            host.run(hold_s)
            out.tripped = fault_names(host.faults)
            sim.clear()
            out.repair_s = sim.time_s
            phases.append((out.repair_s, "rest"))
            host.run(REST_S)
            host.client.send("clear_faults", {})
            sim.set_current(amps)
            phases.append((sim.time_s, "load"))
            host.run(RESUME_S)
            last = host.estimates[-1]
            out.r0_growth_pct = (first.r0_growth_pct, last.r0_growth_pct)
            out.capacity_ah = (first.capacity_ah, last.capacity_ah)
        finally:
            host.client.close()
        for e in host.estimates:
            truth = sim.truth_at(round(e.board_time_s * 1000))
            if truth is None or e.soc_std_pct is None:
                continue
            phase = [name for start, name in phases if e.board_time_s > start][-1]
            out.points.append(Point(e.board_time_s, truth.soc_pct, e.soc_pct, e.soc_std_pct,
                                    e.bias_a, phase))
    return out


def report(outcomes: list[Outcome]) -> None:
    print(f"sim-4s in lock step, 80 % SoC, 6 A discharge; fault at {INJECT_S:g} s, repaired "
          f"{HOLD_S:g} s after its trip, rest {REST_S:g} s (latched), then CLEAR_FAULTS and "
          f"{RESUME_S:g} s more of discharge")
    print("SoC error in points (estimate - truth); after: from "
          f"{SETTLE_S:g} s after the repair to the end")
    head = (f"{'fault':20} {'runtime':12} {'before':>7} {'during':>7} {'after':>7} "
            f"{'back <3':>8} {'std min':>8} {'|err|/(std+1)':>14} {'|bias| max':>10} "
            f"{'R0 growth %':>15} {'capacity Ah':>13}")
    print(head)
    for o in outcomes:
        back = "never" if o.back_s == float("inf") else f"{o.back_s:.0f} s"
        r0 = f"{o.r0_growth_pct[0]:.0f} -> {o.r0_growth_pct[1]:.0f}"
        cap = f"{o.capacity_ah[0]:.3f} -> {o.capacity_ah[1]:.3f}"
        print(f"{o.fault:20} {o.runtime:12} {o.before:7.2f} {o.during:7.2f} {o.after:7.2f} "
              f"{back:>8} {o.std_min:8.2f} {o.dishonesty:14.1f} {o.bias_max:10.2f} "
              f"{r0:>15} {cap:>13}")
    print("protections tripped:")
    for o in outcomes:
        print(f"  {o.fault}: {', '.join(o.tripped)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="SoC error through sensor faults (simulated).")
    ap.add_argument("--fault", nargs="+", choices=sorted(FAULTS), default=list(FAULTS))
    ap.add_argument("--runtime", choices=("cpython", "micropython"), default="cpython")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--phase", type=float, default=0.0, metavar="S",
                    help="inject this long after the 600 s mark (0..1: where in the "
                         "estimator's 1 s period the fault starts)")
    ap.add_argument("--trace", action="store_true",
                    help="print every 10th estimate (and each one around the fault)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: the open wire only, under CPython (a few seconds)")
    args = ap.parse_args(argv)
    if args.quick:
        args.fault, args.runtime = ["open_wire"], "cpython"
    t0 = time.perf_counter()
    outcomes = []
    for fault in args.fault:
        o = run_fault(fault, args.runtime, args.seed, phase_s=args.phase)
        outcomes.append(o)
        if args.trace:
            for p in o.points:
                near = o.inject_s - 5 <= p.t_s <= o.repair_s + 60
                if near or round(p.t_s) % 10 == 0:
                    print(f"{p.t_s:8.1f} {p.phase:7} truth {p.truth_pct:6.2f} est "
                          f"{p.soc_pct:6.2f} std {p.std_pct:5.2f} bias {p.bias_a:6.3f}")
    report(outcomes)
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
