"""`cellguard monitor`: the view from a state (no board), and the command on a simulated board."""

from __future__ import annotations

import io
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import INFO_FIELDS, TELEMETRY_FIELDS
from rich.console import Console

from cellguard.link.client import FAULT_BITS, ConfigEntry, Info, Telemetry
from cellguard.sim import SimulatedBoard
from cellguard.views.monitor import (
    BEYOND,
    NEAR,
    OK,
    Limits,
    MonitorState,
    cell_marks,
    render,
    snapshot_text,
)

CLI = [sys.executable, "-m", "cellguard.cli"]
INFO = Info.from_wire({**INFO_FIELDS, "cell_count": 4, "temp_count": 2})


def telemetry(**fields: Any) -> Telemetry:
    return Telemetry.from_wire({**TELEMETRY_FIELDS, "cells_mv": [3700, 3700, 3700, 3700],
                                "temps_dc": [250, 260], **fields})


def state_with(t: Telemetry | None = None, limits: Limits | None = None) -> MonitorState:
    s = MonitorState("/dev/ttyACM0", INFO, limits or Limits.from_info(INFO), started=0.0)
    if t is not None:
        s.on_telemetry(t, 1.0)
    return s


def ansi(state: MonitorState, now: float = 1.5) -> str:
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, color_system="standard", width=120).print(
        render(state, now))
    return buf.getvalue()


def styled(text: str, value: str) -> str:
    """The SGR codes right before ``value`` in ANSI ``text``."""
    m = re.search(r"\x1b\[([0-9;]*)m" + re.escape(value), text)
    assert m, f"{value!r} not styled in output"
    return m.group(1)


def row(text: str, *words: str) -> str:
    """The one line of plain ``text`` holding every word."""
    lines = [line for line in text.splitlines() if all(w in line for w in words)]
    assert len(lines) == 1, (words, text)
    return lines[0]


# -- the view, without a board --------------------------------------------------------------
def test_min_and_max_cells_are_marked_and_coloured_by_limit() -> None:
    s = state_with(telemetry(cells_mv=[3700, 4300, 3600, 4200]))
    plain = snapshot_text(s, 1.5)
    assert "max" in row(plain, "4.300") and "min" in row(plain, "3.600")
    assert "min" not in row(plain, "3.700") and "max" not in row(plain, "3.700")
    out = ansi(s)
    codes = {v: set(styled(out, v).split(";")) for v in ("4.300", "3.600", "3.700", "4.200")}
    assert {"31", "7"} <= codes["4.300"]  # beyond the over-voltage trip: red, highlighted
    assert {"32", "7"} <= codes["3.600"]  # lowest, inside the limits: green, highlighted
    assert codes["3.700"] == {"32"}  # neither: green, not highlighted
    assert "33" in codes["4.200"]  # past INFO's trip minus 50 mV: yellow


def test_cell_levels_follow_the_boards_configuration() -> None:
    cfg = [ConfigEntry("cell_ov_mv", 4100, 0, 0), ConfigEntry("cell_ov_release_mv", 4000, 0, 0),
           ConfigEntry("cell_uv_mv", 3000, 0, 0), ConfigEntry("cell_uv_release_mv", 3100, 0, 0),
           ConfigEntry("temp_max_dc", 500, 0, 0), ConfigEntry("temp_charge_max_dc", 400, 0, 0)]
    lim = Limits.from_config(INFO, cfg)
    assert [lim.cell_level(v) for v in (4.1, 4.05, 3.5, 3.05, 3.0)] == [
        BEYOND, NEAR, OK, NEAR, BEYOND]
    assert [lim.temp_level(c) for c in (51.0, 45.0, 25.0)] == [BEYOND, NEAR, OK]
    assert Limits.from_info(INFO).cell_level(4.1) == OK  # INFO alone: trip at 4.25 V
    s = state_with(telemetry(cells_mv=[4050, 3500, 3500, 3500], temps_dc=[450, 250]), lim)
    out = ansi(s)
    assert "33" in styled(out, "4.050").split(";")
    assert "33" in styled(out, "45.0 °C").split(";")
    assert "limits 3.000..4.100 V (from configuration)" in snapshot_text(s, 1.5)


def test_cell_marks() -> None:
    assert cell_marks([3.7, 3.8, 3.6, 3.6]) == ["", "max", "min", "min"]
    assert cell_marks([3.7, 3.7]) == ["", ""]  # no spread: nothing to point at
    assert cell_marks([3.7]) == [""]


def test_fault_alarm_and_warning_names_are_shown() -> None:
    s = state_with(telemetry(
        state="fault", faults=FAULT_BITS["cell_overvoltage"] | FAULT_BITS["open_wire"],
        alarms=FAULT_BITS["overtemperature_charge"], warnings=FAULT_BITS["cell_imbalance"],
        allowed=2))
    plain = snapshot_text(s, 1.5)
    assert "cell_overvoltage, open_wire" in row(plain, "faults")
    assert "overtemperature_charge" in row(plain, "alarms")
    assert "cell_imbalance" in row(plain, "warnings")
    assert "charge NO" in plain and "discharge yes" in plain
    assert "fault" in row(plain, "state")
    assert "31" in styled(ansi(s), "cell_overvoltage").split(";")


def test_quiet_board_shows_none() -> None:
    plain = snapshot_text(state_with(telemetry()), 1.5)
    assert row(plain, "faults").split("|")[2].strip() == "none"
    assert "SoC" in plain and "50.0 %" in plain and "7.400 V" in plain
    assert "T1 25.0 °C" in plain and "T2 26.0 °C" in plain


def test_lost_frames_restarts_and_rate() -> None:
    s = state_with()
    for i, seq in enumerate([10, 11, 14, 15, 2]):
        s.on_telemetry(telemetry(telemetry_seq=seq), 1.0 + i)
    assert (s.frames, s.lost, s.restarts) == (5, 2, 1)
    rate = s.frames_per_s(5.0)
    assert rate is not None and 1.0 <= rate <= 1.3
    plain = snapshot_text(s, 5.0)
    assert "2  (board restarted 1x)" in row(plain, "lost frames")
    assert "5 frames" in row(plain, "telemetry")


def test_silence_is_shown_as_no_data() -> None:
    s = state_with(telemetry())
    assert "NO DATA" not in snapshot_text(s, 2.0)
    assert "NO DATA" in row(snapshot_text(s, 10.0), "last 9.0 s ago")
    waiting = snapshot_text(state_with(), 2.0)
    assert "waiting for telemetry" in waiting


def test_link_counters_from_both_ends() -> None:
    s = state_with(telemetry())
    s.host_crc_errors, s.host_bad_frames = 3, 1
    s.on_stats({"crc_errors": 4, "frames_bad": 2, "naks_sent": 1}, 1.0)
    plain = snapshot_text(s, 3.0)
    assert "CRC errors 3, bad frames 1" in row(plain, "host received")
    assert "CRC errors 4, bad frames 2, refused 1 (STATS, 2 s ago)" in row(plain, "board received")


def test_balancing_is_never_invented() -> None:
    s = state_with(telemetry())
    assert "not reported by the firmware" in row(snapshot_text(s, 1.5), "balancing")
    newer = MonitorState("p", Info.from_wire({**INFO_FIELDS, "known_types": [0x10, 0x12]}),
                         Limits.from_info(INFO))
    newer.on_telemetry(telemetry(), 1.0)
    assert "not reported yet" in row(snapshot_text(newer, 1.5), "balancing")
    newer.balancing = 0b101
    assert "cells 1, 3" in row(snapshot_text(newer, 1.5), "balancing")
    assert newer.to_dict(1.5)["balancing"] == [1, 3]


def test_sixteen_cells_in_two_columns() -> None:
    mv = [3600 + 10 * i for i in range(16)]
    s = MonitorState("p", Info.from_wire({**INFO_FIELDS, "cell_count": 16}),
                     Limits.from_info(INFO))
    s.on_telemetry(telemetry(cells_mv=mv), 1.0)
    plain = snapshot_text(s, 1.5)
    assert all(f"{v / 1000:.3f}" in plain for v in mv)
    assert "min" in row(plain, "3.600", "3.680") and "max" in row(plain, "3.750")
    assert "\x1b" not in plain


# -- the command, on a simulated board ------------------------------------------------------
@pytest.fixture
def sim() -> Iterator[SimulatedBoard]:
    with SimulatedBoard(runtime="cpython", speed=10.0) as board:
        yield board


def test_monitor_prints_snapshots_when_not_on_a_terminal(sim: SimulatedBoard) -> None:
    """Thirty seconds of board time (the monitor's clock is the board's, so how fast
    this machine is does not change what is seen): a snapshot at the first frame,
    one each 10 s after it while the run lasts, and one at the end."""
    from cellguard.views.monitor import run_monitor

    out = io.StringIO()
    result = run_monitor(sim.port, duration_s=30, interval_s=10, out=out, interactive=False,
                         clock=lambda: sim.time_ms / 1000.0)
    assert result.quit_by == "duration"
    stdout = out.getvalue()
    snapshots = stdout.count("cellguard monitor sim-4s")
    assert 2 <= snapshots <= 5, stdout  # first frame and end; at most 30 s / 10 s between
    last = stdout[stdout.rindex("cellguard monitor sim-4s"):]
    assert "3.750" in last or "3.7" in last
    assert "limits 2.800..4.250 V (from configuration)" in last
    assert re.search(r"\| SoC +\| \d+\.\d % ± \d+\.\d \(2σ\) +\|", last)  # ESTIMATE's band
    assert "faults" in last and "none" in row(last, "faults")
    assert re.search(r"telemetry +\| (\d+) frames", last)
    frames = int(re.search(r"(\d+) frames", last).group(1))  # type: ignore[union-attr]
    assert frames >= 28  # one a second of board time, for 30 s
    assert row(last, "lost frames").split("|")[2].strip() == "0"
    assert "(STATS," in row(last, "board received")
    assert "\x1b[" not in stdout


def test_monitor_json_shows_a_fault_as_it_trips(sim: SimulatedBoard) -> None:
    proc = subprocess.Popen([*CLI, "monitor", "--port", sim.port, "--duration", "3",
                             "--interval", "1", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())  # the first frame has arrived
    assert first["telemetry"]["faults"] == []
    sim.inject("open_wire", cell=2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    snaps = [json.loads(line) for line in out.splitlines()]
    last = snaps[-1]
    assert "open_wire" in last["telemetry"]["faults"]
    assert last["telemetry"]["state"] == "fault"
    assert any("trip: " in e and "open_wire" in e for e in last["events"]), last["events"]
    assert last["lost"] == 0 and last["frames"] > first["frames"]
    assert len(last["telemetry"]["cells_v"]) == 4
    assert last["board_stats"]["frames_ok"] > 0


def test_monitor_on_a_port_that_is_not_a_board() -> None:
    master, slave = os.openpty()
    try:
        proc = subprocess.run([*CLI, "monitor", "--port", os.ttyname(slave), "--duration", "1"],
                              capture_output=True, text=True, timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "no cellguard board answered" in proc.stderr
    proc = subprocess.run([*CLI, "monitor", "--port", "/dev/cellguard-no-such-port"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "no such device" in proc.stderr


# A child on a pseudo-terminal of its own, as in a terminal window or over SSH: its own
# session with the pty as controlling terminal, so Ctrl-C typed there is a real SIGINT.
ON_PTY = ("import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
          "os.execv(sys.executable, [sys.executable, '-m', 'cellguard.cli', *sys.argv[1:]])")


class Terminal:
    def __init__(self, *args: str) -> None:
        self.master, self.slave = os.openpty()
        fcntl_size = struct.pack("HHHH", 45, 120, 0, 0)
        import fcntl

        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, fcntl_size)
        self.before = termios.tcgetattr(self.slave)
        self.output = bytearray()
        self._stop = threading.Event()
        self.proc = subprocess.Popen([sys.executable, "-c", ON_PTY, *args], stdin=self.slave,
                                     stdout=self.slave, stderr=subprocess.PIPE,
                                     env={**os.environ, "TERM": "xterm-256color"})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:
                    return

    def wait_for(self, text: bytes, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stop.set()
        self._reader.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)


@pytest.mark.parametrize("key", [b"q", b"\x03"], ids=["q", "ctrl-c"])
def test_live_view_quits_on_a_key_and_restores_the_terminal(sim: SimulatedBoard,
                                                            key: bytes) -> None:
    term = Terminal("monitor", "--port", sim.port)
    try:
        assert term.wait_for(b"q quits"), (term.output[-2000:], term.proc.poll())
        assert term.wait_for(b"frames, "), term.output[-2000:]
        assert term.proc.poll() is None  # still live
        assert b"\x1b[?1049h" in term.output  # on the alternate screen, cursor hidden
        os.write(term.master, key)
        assert term.proc.wait(timeout=10) == 0
        err = term.proc.stderr.read().decode() if term.proc.stderr else ""
        assert ("ended by q" if key == b"q" else "ended by interrupt") in err, err
        def tail() -> bytes:
            return bytes(term.output[term.output.rindex(b"\x1b[?1049h"):])

        guard = time.monotonic() + 30  # the last bytes to the reader; only stops a hang
        while not (b"\x1b[?1049l" in tail() and b"\x1b[?25h" in tail()) \
                and time.monotonic() < guard:
            time.sleep(0.01)
        assert b"\x1b[?1049l" in tail() and b"\x1b[?25h" in tail()  # screen, cursor back
        assert termios.tcgetattr(term.slave) == term.before  # echo and line mode back
    finally:
        term.close()


def test_an_older_board_without_config_dump_or_stats(fake_board: Any) -> None:
    """INFO's limits stand in for the configuration; a refused STATS is said, not fatal;
    a gap in the telemetry sequence counts as lost."""
    import io as _io

    from cellguard.protocol.codec import build_payload, encode_frame
    from cellguard.protocol.messages import BY_NAME
    from cellguard.views.monitor import run_monitor

    def respond(frame: Any) -> bytes:
        if frame.msg_type == BY_NAME["hello"].msg_id:
            return encode_frame(0x02, frame.seq, build_payload("info", {
                **INFO_FIELDS, "cell_count": 4, "temp_count": 2}))
        return encode_frame(BY_NAME["nak"].msg_id, frame.seq, build_payload(
            "nak", {"request_type": frame.msg_type, "error": "unknown_message", "limit": 0}))

    board = fake_board(respond)
    stop = threading.Event()

    def stream() -> None:
        for seq in [n for n in range(1000) if n != 5]:
            if stop.wait(0.05):
                return
            board.write(encode_frame(0x10, seq, build_payload("telemetry", {
                **TELEMETRY_FIELDS, "telemetry_seq": seq, "cells_mv": [3700, 3710, 3690, 3700],
                "temps_dc": [250, 250]})))

    writer = threading.Thread(target=stream, daemon=True)
    writer.start()
    out = _io.StringIO()
    try:
        result = run_monitor(board.port, duration_s=1.5, interval_s=10.0, stats_every_s=0.2,
                             out=out, interactive=False)
    finally:
        stop.set()
        writer.join()
    text = out.getvalue()
    assert result.lost == 1 and result.frames >= 10
    assert "(from INFO)" in text
    assert "STATS not available (unknown_message)" in text
    assert "max" in row(text.split("cellguard monitor")[-1], "3.710")
