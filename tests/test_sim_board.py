"""The simulated board as a device: flow control, a host that goes away, lock-step time."""

from __future__ import annotations

import time

from cellguard.client import BoardClient
from cellguard.sim import SimulatedBoard
from cellguard.sim.board import HOST_STALL_S


def test_unread_output_is_dropped_without_stalling_the_board() -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True) as sim:
        wall = time.monotonic()
        sim.advance(3 * 3600)  # 3 h of telemetry that nobody reads
        elapsed = time.monotonic() - wall
        assert sim.tx_dropped_bytes > 0
        # One stall of HOST_STALL_S when the pty fills, then drops without waiting.
        assert elapsed < HOST_STALL_S + 20
        # A host that connects later gets a board that answers and streams again.
        dropped = sim.tx_dropped_bytes
        with BoardClient(sim.port) as client:
            sim.advance(0.2)
            seq_info = client.send("hello", {"host_major": 1, "host_minor": 0})
            sim.advance(0.2)
            names = []
            for _ in range(40):
                names += [(m.name, m.frame.seq) for m in client.receive()]
                if ("info", seq_info) in names:
                    break
                sim.advance(0.1)
            assert ("info", seq_info) in names
            seqs = []
            for _ in range(30):
                sim.advance(1.0)
                seqs += [m.payload["telemetry_seq"] for m in client.receive()
                         if m.name == "telemetry"]
            assert len(seqs) >= 25
            assert seqs[-5:] == list(range(seqs[-5], seqs[-5] + 5))
        assert sim.tx_dropped_bytes == dropped


def test_lockstep_time_and_truth_records() -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True, initial_soc_pct=40.0) as sim:
        sim.set_current(3.0)
        sim.advance(10.0)
        assert sim.time_ms == 10_000
        first = sim.truth_at(100)
        last = sim.truth_at(10_000)
        assert first is not None and last is not None
        # The record for board time t is the plant at simulated time t.
        assert all(round(truth.time_s * 1000) == t for t, truth in sim.history)
        assert last.current_a == 3.0  # the output closed after the first step
        assert last.soc_pct > first.soc_pct
        assert sim.truth_at(123) is None
