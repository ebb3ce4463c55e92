"""The simulated board as a device: flow control, a host that goes away, lock-step time."""

from __future__ import annotations

import math
import os
import threading
import time

import pytest

from cellguard.link.client import BoardClient, Info
from cellguard.sim import SimulatedBoard


def test_output_while_no_host_has_the_port_is_dropped_without_stalling_the_board() -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True) as sim:
        sim.advance(600)  # 10 min of telemetry, and no host has the port open
        assert sim.tx_dropped_bytes == sim.tx_bytes > 0  # it went nowhere, as on USB
        assert sim.host_stalls == 0  # and never held the board back
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


def test_small_lockstep_steps_add_up_to_whole_periods() -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True) as sim:
        assert sim.period_ms == 100
        for _ in range(10):
            sim.advance(0.01)
        assert sim.time_ms == 100  # ten 10 ms steps: exactly one period
        for _ in range(100):
            sim.advance(0.05)
        assert sim.time_ms == 100 + 5000  # no step lost, no float drift


def test_lockstep_step_that_is_not_a_whole_period_carries_the_rest() -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True) as sim:
        sim.advance(0.25)
        assert sim.time_ms == 200  # two periods, 50 ms carried
        sim.advance(0.25)
        assert sim.time_ms == 500  # 50 + 250 ms: three more
        sim.advance(0.07)
        sim.advance(0.03)
        assert sim.time_ms == 600
        sim.advance(0)
        assert sim.time_ms == 600


def test_lockstep_advance_refuses_what_is_not_a_time_step() -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True) as sim:
        sim.advance(0.05)
        for bad in (-0.1, -1, math.nan, math.inf, -math.inf, "1", None, True):
            with pytest.raises(ValueError, match="seconds") as exc:
                sim.advance(bad)  # type: ignore[arg-type]
            assert repr(bad) in str(exc.value)
        assert sim.time_ms == 0
        sim.advance(0.05)  # the carried 50 ms survived the refusals
        assert sim.time_ms == 100


def test_request_completes_while_lockstep_time_moves_in_small_steps() -> None:
    """A host request made while a script advances time in steps shorter than
    the control period is answered: the steps add up."""
    with SimulatedBoard(runtime="cpython", lockstep=True) as sim:
        result: dict[str, object] = {}

        def ask() -> None:
            try:
                with BoardClient(sim.port) as client:
                    result["info"] = client.hello()
            except Exception as exc:  # surfaced below
                result["error"] = exc

        asker = threading.Thread(target=ask)
        asker.start()
        steps = 0
        guard = time.monotonic() + 60.0  # only stops a broken run from hanging
        while asker.is_alive() and time.monotonic() < guard:
            sim.advance(0.01)
            steps += 1
            time.sleep(0.0005)  # let the host thread write and read
        asker.join(timeout=5.0)
        assert "error" not in result, result.get("error")
        info = result["info"]
        assert isinstance(info, Info) and info.board == "sim-4s"
        assert sim.time_ms == steps * 10 // sim.period_ms * sim.period_ms
        assert sim.time_ms >= sim.period_ms  # the answer took at least one period


def test_a_host_that_holds_the_port_but_reads_nothing_stalls_the_board_once() -> None:
    with SimulatedBoard(runtime="cpython", lockstep=True, host_stall_s=0.2) as sim:
        fd = os.open(sim.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            sim.advance(600)  # more telemetry than the pty holds
            # One stall of host_stall_s when the pty fills, then drops without waiting.
            assert sim.host_stalls == 1
            delivered = sim.tx_bytes - sim.tx_dropped_bytes
            assert delivered > 0 and sim.tx_dropped_bytes > 0
            assert len(_drain(fd)) == delivered
            # Reading again, the host gets everything again.
            dropped = sim.tx_dropped_bytes
            sim.advance(10)
            assert sim.tx_dropped_bytes == dropped and _drain(fd)
            assert sim.host_stalls == 1
        finally:
            os.close(fd)


def _drain(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return out
        out += chunk


def _read_until(client: BoardClient, sim: SimulatedBoard, board_ms: int) -> list[int]:
    """Telemetry counters read until the board reaches ``board_ms``."""
    seqs: list[int] = []
    guard = time.monotonic() + 60.0  # only stops a broken run from hanging
    while sim.time_ms < board_ms:
        assert time.monotonic() < guard, "the board stopped"
        seqs += [m.payload["telemetry_seq"] for m in client.receive() if m.name == "telemetry"]
        sim.check()
    return seqs


def test_a_paced_board_waits_for_a_host_that_pauses() -> None:
    """host_lead_s: a free-running board runs at most that far ahead of the oldest
    output its host has not read, so a pause of the host is not minutes of board
    time the host never saw (as fast as it goes, an unpaced board runs several
    hundred simulated seconds per wall second)."""
    with SimulatedBoard(runtime="cpython", speed=math.inf, host_lead_s=1.0,
                        host_stall_s=60.0) as sim, BoardClient(sim.port) as client:
        client.hello()
        dropped = sim.tx_dropped_bytes
        seqs = _read_until(client, sim, sim.time_ms + 20_000)
        for _ in range(3):
            paused_at = sim.time_ms
            time.sleep(0.3)  # the host is busy elsewhere: it reads nothing
            # The next telemetry period (1 s), then host_lead_s: no further.
            assert sim.time_ms - paused_at <= 1000 + 1000 + sim.period_ms
            seqs += _read_until(client, sim, sim.time_ms + 10_000)
        assert sim.host_waits >= 3 and sim.host_stalls == 0
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "nothing lost"
        assert sim.tx_dropped_bytes == dropped


def test_a_paced_board_runs_on_when_its_host_closes_the_port() -> None:
    with SimulatedBoard(runtime="cpython", speed=math.inf, host_lead_s=1.0,
                        host_stall_s=600.0) as sim:
        with BoardClient(sim.port) as client:
            client.hello()
            _read_until(client, sim, sim.time_ms + 5_000)
            time.sleep(0.1)  # output left unread: the board is held
            held_at = sim.time_ms
        # The port closed: the board no longer waits (nobody would read it).
        guard = time.monotonic() + 30.0
        while sim.time_ms < held_at + 60_000:
            assert time.monotonic() < guard, f"still held at {sim.time_ms} ms"
            time.sleep(0.01)
        assert sim.host_stalls == 0


def test_a_paced_board_stops_waiting_for_a_host_that_never_reads() -> None:
    with SimulatedBoard(runtime="cpython", speed=math.inf, host_lead_s=1.0,
                        host_stall_s=0.2) as sim:
        fd = os.open(sim.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            opened_at = sim.time_ms
            guard = time.monotonic() + 30.0
            while sim.time_ms < opened_at + 60_000:
                assert time.monotonic() < guard, f"still held at {sim.time_ms} ms"
                time.sleep(0.01)
            assert sim.host_stalls == 1  # waited once, then counted the host as gone
            assert _drain(fd)
            # Reading again, it is paced again.
            waits = sim.host_waits
            guard = time.monotonic() + 30.0
            while sim.host_waits == waits:
                assert time.monotonic() < guard, "never paced again"
                time.sleep(0.01)
        finally:
            os.close(fd)


@pytest.mark.parametrize("kw", [{"host_lead_s": 0}, {"host_lead_s": -1.0},
                                {"host_lead_s": math.nan}, {"host_lead_s": math.inf},
                                {"host_lead_s": "1"}, {"host_stall_s": -0.5},
                                {"host_stall_s": math.nan}, {"host_stall_s": None}])
def test_host_pacing_parameters_are_checked(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kw))):
        SimulatedBoard(runtime="cpython", **kw)  # type: ignore[arg-type]


def test_a_board_held_while_away_runs_only_as_far_as_it_is_let() -> None:
    with SimulatedBoard(runtime="cpython", speed=math.inf, hold_while_away=True) as sim:
        time.sleep(0.2)
        assert sim.time_ms == 0  # no host has the port open
        end = sim.run_for(2.05)
        assert end == 2100  # whole periods, rounded up
        guard = time.monotonic() + 30.0
        while sim.time_ms < end:
            assert time.monotonic() < guard, "the board did not run"
            time.sleep(0.01)
        time.sleep(0.2)
        assert sim.time_ms == end and sim.held
        sim.release()
        time.sleep(0.2)
        assert sim.time_ms == end and not sim.held  # still nobody there
        with BoardClient(sim.port) as client:
            assert client.hello().board == "sim-4s"  # a host: the board runs
            _read_until(client, sim, end + 5_000)
        time.sleep(0.2)  # the host has gone: it stands still again
        left_at = sim.time_ms
        time.sleep(0.2)
        assert sim.time_ms == left_at
        for bad in (-1.0, math.nan, math.inf, "2"):
            with pytest.raises(ValueError, match="seconds"):
                sim.run_for(bad)  # type: ignore[arg-type]
    with SimulatedBoard(runtime="cpython", lockstep=True) as sim, \
            pytest.raises(RuntimeError, match="advance"):
        sim.run_for(1.0)


def test_run_for_holds_the_board_and_still_answers_its_host() -> None:
    # host_stall_s: a loaded machine may keep this test from reading for more than
    # the default second; a host that stalls is another test's subject.
    with SimulatedBoard(runtime="cpython", speed=math.inf, host_stall_s=60.0) as sim, \
            BoardClient(sim.port) as client:
        client.hello()
        dropped, stalls = sim.tx_dropped_bytes, sim.host_stalls  # before the host came
        end = sim.run_for(10.0)
        seqs = _read_until(client, sim, end)
        time.sleep(0.2)
        seqs += [m.payload["telemetry_seq"] for m in client.receive() if m.name == "telemetry"]
        assert sim.time_ms == end and sim.held  # reading does not move it
        assert client.hello().board == "sim-4s"  # answered: one period per frame
        assert sim.time_ms - end in range(sim.period_ms, 4 * sim.period_ms, sim.period_ms)
        sim.release()
        seqs += _read_until(client, sim, sim.time_ms + 5_000)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "nothing lost"
        assert (sim.tx_dropped_bytes, sim.host_stalls) == (dropped, stalls)
