"""The simulated board as a device: flow control, a host that goes away, lock-step time."""

from __future__ import annotations

from cellguard.link.client import BoardClient
from cellguard.sim import SimulatedBoard


def test_unread_output_is_dropped_without_stalling_the_board() -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True) as sim:
        sim.advance(3 * 3600)  # 3 h of telemetry that nobody reads
        assert sim.tx_dropped_bytes > 0
        # One stall of HOST_STALL_S when the pty fills, then drops without waiting.
        assert sim.host_stalls == 1
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


def test_watchdog_resets_a_hung_firmware_and_opens_the_output() -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True) as sim:
        sim.set_current(-2.0)
        sim.advance(2.0)
        assert sim.truth().output_closed
        sim.hang(10.0)
        sim.advance(1.0)
        # hung: nothing runs, the output pin keeps its last state
        assert sim.truth().output_closed and sim.watchdog_resets == 0
        sim.advance(sim.watchdog_ms / 1000.0)
        assert sim.watchdog_resets == 1
        after = [(ms, t) for ms, t in sim.history if ms > 2000]
        # the reset released the output: the rebooted firmware found it open
        assert after and not after[0][1].output_closed
        assert after[0][0] > 2000 + sim.watchdog_ms  # nothing ran while hung
        with BoardClient(sim.port) as client:
            client.send("get_events", {"first_index": 0, "max_count": 10})
            sim.advance(0.3)
            events = []
            for _ in range(20):
                events += [m.payload for m in client.receive() if m.name == "events"]
                if events:
                    break
                sim.advance(0.1)
        assert events and list(events[0]["kinds"]).count(1) == 2  # booted twice


def test_enter_repl_opens_the_output_first() -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True) as sim:
        sim.advance(1.0)
        assert sim.truth().output_closed
        with BoardClient(sim.port) as client:
            client.send("enter_repl", {})
            sim.advance(0.3)
        assert not sim.truth().output_closed
