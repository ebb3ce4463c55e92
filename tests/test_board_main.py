"""board_main.run(), the loop a real board runs, under CPython with models of
the clock, the port, the watchdog and the reset (tests/board_harness.py).

Issue 12: an exception in the step opens the output (item 2), ENTER_REPL
persists a maintenance flag and resets (item 6), one step per pass with the
measured time after a stall (item 10), frames dropped whole are counted in
STATS (item 4).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from board_harness import EndOfRun, LoopPort, Reset, ScriptedHal, SimClock, Watchdog, make_board

from cellguard.link.framing import FrameReader
from cellguard.protocol.codec import encode_frame, parse_payload
from cellguard.protocol.messages import BY_NAME
from cellguard_fw import board_main, codec, events


class Run:
    """One run of board_main.run() to ``end_ms`` of simulated time."""

    def __init__(self, tmp_path: Path, amps: Any = lambda t: 0.0, **board_changes: Any) -> None:
        self.board, self.path = make_board(tmp_path, **board_changes)
        self.clock = SimClock()
        self.hal = ScriptedHal(self.board, self.clock, amps)
        self.port = LoopPort(self.clock)
        self.resets = 0
        self.wdt: Watchdog | None = None
        self.bms: Any = None

    def reset(self) -> None:
        self.resets += 1
        raise Reset()

    def go(self, end_ms: int, boot: bytes | None = None) -> type[BaseException] | None:
        self.wdt = Watchdog(self.clock, end_ms)
        original = board_main.Bms

        def keep(*args: Any) -> Any:  # keep the Bms the run builds, to look at after
            self.bms = original(*args)
            return self.bms

        board_main.Bms = keep
        try:
            board_main.run(str(self.path), hal=self.hal, port=self.port, clock=self.clock,
                           wdt=self.wdt, reset=self.reset, boot=boot)
        except (EndOfRun, Reset) as exc:
            return type(exc)
        finally:
            board_main.Bms = original
        return None

    def frames(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for frame in FrameReader().feed(bytes(self.port.tx)):
            name = codec_name(frame.msg_type)
            out.append((name, parse_payload(frame.msg_type, frame.payload)))
        return out


def codec_name(msg_type: int) -> str:
    return next(n for n, spec in BY_NAME.items() if spec.msg_id == msg_type)


def request(name: str, seq: int = 1, **values: Any) -> bytes:
    from cellguard.protocol.codec import build_payload

    return encode_frame(BY_NAME[name].msg_id, seq, build_payload(name, values))


def test_the_loop_runs_a_step_per_period_and_closes_the_output(tmp_path: Path) -> None:
    r = Run(tmp_path)
    assert r.go(3000) is EndOfRun
    steps = r.hal.samples
    assert steps[0] == 0 and max(r.clock.sleeps) <= 5  # no REPL grace: protection at once
    assert 29 <= len(steps) <= 31
    assert all(b - a == 100 for a, b in pairwise(steps))
    assert r.hal.outputs_log[-2] == (0, True)  # it closed (a healthy pack) ...
    assert r.hal.outputs_log[-1] == (3000, False)  # ... and run()'s finally opened it


# -- item 2: an exception in the control step opens the output ---------------
def test_an_exception_in_the_step_opens_the_output_and_latches_a_firmware_fault(
        tmp_path: Path) -> None:
    r = Run(tmp_path)

    def fail_once(now: int) -> None:
        if now == 1000:
            raise RuntimeError("a bug in the step")

    r.hal.on_sample = fail_once
    assert r.go(3000) is EndOfRun  # the loop went on after the exception
    closed_before = [closed for t, closed in r.hal.outputs_log if t < 1000]
    assert closed_before and closed_before[-1] is True
    assert (1000, False) in r.hal.outputs_log  # opened in the pass that raised
    assert not [t for t, closed in r.hal.outputs_log if t >= 1000 and closed]  # latched open
    assert r.bms.latched & codec.FAULT_FIRMWARE
    assert len(r.hal.samples) > 25  # protection kept running after it
    events = [p for name, p in r.frames() if name == "fault_event"]
    assert any(p["fault"] == codec.FAULT_FIRMWARE and p["kind"] == "trip" for p in events)
    tele = [p for name, p in r.frames() if name == "telemetry"]
    assert tele[-1]["faults"] & codec.FAULT_FIRMWARE and tele[-1]["state"] == "fault"



# -- main.py's boot check refused the build (docs/firmware.md, "Verified at boot") ------
@pytest.mark.parametrize("status", range(9))
def test_only_a_build_the_boot_check_refused_holds_its_output_open(tmp_path: Path,
                                                                   status: int) -> None:
    """Status 5 (files altered) and 6 (older than the minimum): the firmware fault is
    active from the first step, beside any other; every other status runs as ever."""
    r = Run(tmp_path, host_timeout_ms=1000)  # the host stays silent: a second fault at 1 s
    boot = bytes([status]) + bytes(32)  # the manifest hash's bytes play no part
    assert r.go(2000, boot=boot) is EndOfRun
    closed = [t for t, c in r.hal.outputs_log if c]
    if status in (5, 6):
        assert not closed
        assert r.bms.faults & codec.FAULT_FIRMWARE and r.bms.latched & codec.FAULT_FIRMWARE
        assert r.bms.faults & codec.FAULT_HOST_LOST  # the others still found and reported
    else:
        assert closed and closed[0] == 0
        assert not (r.bms.faults | r.bms.latched) & codec.FAULT_FIRMWARE


def test_the_loop_writes_the_events_a_step_logged_after_the_step(tmp_path: Path) -> None:
    """Bms.step only logs in RAM (item 1): the loop's persist() takes the events to
    the flash, after the outputs were driven."""
    r = Run(tmp_path)
    r.hal._storage = str(tmp_path)

    def fail_once(now: int) -> None:
        if now == 1000:
            raise RuntimeError("a bug in the step")

    r.hal.on_sample = fail_once
    assert r.go(2000) is EndOfRun
    ev = r.bms.events
    assert ev.saved == ev.total  # every event the steps logged reached the file
    records = (tmp_path / "events.bin").read_bytes()
    assert len(records) == ev.total * events.RECORD_SIZE
    assert any(ev.codes[i] & codec.FAULT_FIRMWARE for i in range(ev.total))

def test_run_opens_the_output_on_any_way_out(tmp_path: Path) -> None:
    r = Run(tmp_path)

    def escape(now: int) -> None:
        if now >= 1500:
            raise KeyboardInterrupt  # not an Exception: it leaves run()

    r.hal.on_sample = escape
    with pytest.raises(KeyboardInterrupt):
        r.go(3000)
    assert r.hal.outputs_log[-2][1] is True
    assert r.hal.outputs_log[-1] == (1500, False)


# -- item 6: ENTER_REPL persists a maintenance flag and resets ----------------
def test_enter_repl_leaves_the_maintenance_flag_and_resets(tmp_path: Path) -> None:
    r = Run(tmp_path)
    r.port.send_at(1000, request("enter_repl", seq=7))
    assert r.go(5000) is Reset
    assert r.resets == 1
    assert (tmp_path / "maintenance").exists()
    assert not r.hal.output_closed
    assert r.hal.outputs_log[-1][1] is False and r.hal.outputs_log[-1][0] <= 1100
    acks = [p for name, p in r.frames() if name == "ack"]
    assert acks == [{"request_type": BY_NAME["enter_repl"].msg_id}]


def test_reset_request_resets_without_the_flag(tmp_path: Path) -> None:
    r = Run(tmp_path)
    r.port.send_at(1000, request("reset"))
    assert r.go(5000) is Reset
    assert not (tmp_path / "maintenance").exists()


# -- item 10: after a stall, one step with the time that really passed ---------
STALL_AT = 1000
STALL_MS = 400


def stalled_run(tmp_path: Path, inrush_ms: int) -> Run:
    """A 400 ms stall inside the step at 1 s; from its end a discharge current
    beyond the sustained over-current limit (15 A, 500 ms delay) for ``inrush_ms``."""
    end = STALL_AT + STALL_MS

    def amps(now: int) -> float:
        return -18.0 if end <= now < end + inrush_ms else 0.0

    r = Run(tmp_path, amps)

    def stall(now: int) -> None:
        if now == STALL_AT:
            r.clock.stall(STALL_MS)

    r.hal.on_sample = stall
    assert r.go(4000) is EndOfRun
    return r


def test_a_stall_is_one_step_of_its_measured_length_not_a_burst(tmp_path: Path) -> None:
    r = stalled_run(tmp_path, 0)
    after = [t for t in r.hal.samples if t > STALL_AT]
    # samples after the stall: each a period apart in simulated time, none in a burst
    assert after[0] >= STALL_AT + STALL_MS
    assert all(b - a >= 100 for a, b in pairwise(after))
    assert r.bms.control_overruns == 1
    # and board time still follows the clock: no time lost, none invented
    assert abs(r.bms.time_ms - r.hal.samples[-1]) <= 100


def test_a_trip_delay_after_a_stall_is_measured_in_real_time(tmp_path: Path) -> None:
    # A 300 ms inrush is shorter than the 500 ms delay: no trip ...
    (tmp_path / "a").mkdir()
    short = stalled_run(tmp_path / "a", 300)
    assert all(closed for t, closed in short.hal.outputs_log if 0 < t < 4000)
    assert not short.bms.latched
    # ... and a sustained one trips no sooner than 500 ms after it began.
    (tmp_path / "b").mkdir()
    held = stalled_run(tmp_path / "b", 10_000)
    opened = [t for t, closed in held.hal.outputs_log if not closed and 0 < t < 4000]
    assert opened, "the sustained over-current never tripped"
    assert opened[0] - (STALL_AT + STALL_MS) >= 500
    assert held.bms.latched & codec.FAULT_OVERCURRENT_DISCHARGE


# -- item 4: a frame the port cannot take is dropped whole and counted ---------
def test_dropped_frames_are_counted_in_stats(tmp_path: Path) -> None:
    r = Run(tmp_path)
    r.port.accept = False
    r.clock.now = 0

    def host_returns(now: int) -> None:
        if now == 2500:
            r.port.accept = True

    r.hal.on_sample = host_returns
    r.port.send_at(2600, request("get_stats", seq=3))
    assert r.go(3000) is EndOfRun
    stats = [p for name, p in r.frames() if name == "stats"]
    assert len(stats) == 1
    # telemetry at 0, 1 s and 2 s went nowhere: three frames dropped whole
    assert stats[0]["tx_dropped"] == 3
    assert stats[0]["tx_frames"] == 0  # the STATS frame itself counts once it is out


def test_a_gap_longer_than_the_watchdog_counts_as_the_watchdog_time(tmp_path: Path) -> None:
    """A gap no running loop can have (the watchdog would have reset the board)
    is a clock fault: it advances board time by watchdog_ms at most."""
    r = Run(tmp_path, watchdog_ms=1500)

    def jump(now: int) -> None:
        if now == 1000:
            r.clock.stall(60_000)

    r.hal.on_sample = jump
    assert r.go(62_000) is EndOfRun
    steps_after = len([t for t in r.hal.samples if t > 1000])
    assert r.bms.time_ms == 1100 + 1500 + 100 * (steps_after - 1)
