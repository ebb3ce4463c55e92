"""The simulated USB cable (SimulatedBoard.unplug/replug, `cellguard sim --link`) and the
logger's live status."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from cellguard.link.client import Telemetry
from cellguard.sim import SimulatedBoard
from cellguard.store.logger import LiveStatus, PortState, format_port_status

CLI = [sys.executable, "-m", "cellguard.cli"]


def committed(path: Path, sql: str) -> int:
    """A count from what is committed now (read-only, beside the running writer)."""
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # no tables yet
        return 0


def test_unplug_keeps_the_firmware_protecting_and_replug_repoints_the_link(
        tmp_path: Path) -> None:
    link = tmp_path / "usb-cellguard-if00"
    with SimulatedBoard(runtime="cpython", lockstep=True, link=link) as sim:
        first = sim.port
        assert os.readlink(link) == first
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY)  # a host holding the port open
        sim.advance(2.0)
        assert os.read(fd, 4096)  # telemetry arrived
        sim.unplug()
        assert not os.path.lexists(link)
        try:
            got = os.read(fd, 4096)
        except OSError:
            got = b""  # EIO: the device is gone
        assert got == b"", "a vanished port still delivers data"
        os.close(fd)

        assert sim.truth().output_closed
        sent, dropped, t0 = sim.tx_bytes, sim.tx_dropped_bytes, sim.time_ms
        seq0 = sim.runtime.firmware.bms.telemetry_seq  # type: ignore[union-attr]
        sim.inject("short_circuit")  # the firmware still protects while unplugged
        sim.set_current(-1.0)
        sim.advance(3.0)
        assert sim.time_ms == t0 + 3000
        assert sim.runtime.firmware.bms.telemetry_seq > seq0  # type: ignore[union-attr]
        assert sim.tx_bytes > sent and sim.tx_dropped_bytes - dropped == sim.tx_bytes - sent
        assert not sim.truth().output_closed, "the short was not interrupted while unplugged"

        port = sim.replug()
        assert port == sim.port and os.readlink(link) == port
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        sim.advance(2.0)
        assert os.read(fd, 4096)
        os.close(fd)
    assert not os.path.lexists(link), "close() leaves no link behind"


def test_sim_link_signals_and_the_logger_across_a_replug(tmp_path: Path) -> None:
    """`cellguard sim --link`: SIGUSR1 unplugs, SIGUSR2 replugs; `cellguard log` on the
    link rides through it, and SIGTERM ends it with a summary."""
    link = tmp_path / "by-id"
    out = tmp_path / "run.sqlite"
    sim = subprocess.Popen([*CLI, "sim", "--runtime", "cpython", "--speed", "10", "--link",
                            str(link)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    log = None
    try:
        assert sim.stdout is not None
        port = sim.stdout.readline().split(":", 1)[1].strip()
        assert sim.stdout.readline().startswith(f"link: {link} ")
        assert os.readlink(link) == port
        log = subprocess.Popen([*CLI, "log", "--port", str(link), "--out", str(out), "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not committed(out, "SELECT COUNT(*) FROM telemetry"):
            assert time.monotonic() < deadline and log.poll() is None
            time.sleep(0.05)
        sim.send_signal(signal.SIGUSR1)
        while os.path.lexists(link):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)
        sim.send_signal(signal.SIGUSR2)
        while not os.path.lexists(link):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert os.readlink(link).startswith("/dev/pts/")  # the number may come back
        while not committed(out, "SELECT COUNT(*) FROM gaps WHERE reason = 'unplugged'"):
            assert time.monotonic() < deadline and log.poll() is None
            time.sleep(0.05)  # written with the first sample after the replug
        log.send_signal(signal.SIGTERM)
        stdout, stderr = log.communicate(timeout=30)
    finally:
        for proc in (log, sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=20)
    assert log.returncode == 0, stderr
    summary = json.loads(stdout)
    (run,) = summary["run"]
    assert run["reconnects"] == 1 and run["unplugged_s"] > 0 and run["lost"] == 0
    assert summary["unplugged"] == 1 and summary["samples"] == run["samples"] > 10
    assert "port gone" in stderr and "back after" in stderr
    assert sim.returncode == 0
    assert not os.path.lexists(link)


def _telemetry(seq: int) -> Telemetry:
    return Telemetry.from_wire({
        "telemetry_seq": seq, "board_time_ms": seq * 100, "state": "active", "faults": 0,
        "warnings": 0, "alarms": 2, "allowed": 1, "pack_mv": 7400, "current_ma": 1500,
        "soc_cpct": 5012, "cells_mv": [3700, 3712], "temps_dc": [250],
    })


def test_live_status_redraws_one_line_per_port_on_a_terminal() -> None:
    stream = io.StringIO()
    status = LiveStatus(stream, tty=True)
    a = PortState(0, "/dev/serial/by-id/a", connected=True, last=_telemetry(7))
    b = PortState(1, "/dev/serial/by-id/b", connected=False, away_since=time.monotonic() - 3)
    lines = [format_port_status(s, None, time.monotonic()) for s in (a, b)]
    status.update(lines)
    status.update(lines)
    status.event("[2] /dev/serial/by-id/b: port gone")
    text = stream.getvalue()
    assert text.count("\x1b[2F\x1b[J") == 2  # the block of two lines rewritten in place
    assert lines[0].startswith("[1] /dev/serial/by-id/a  t=0.7 s")
    assert "SoC=50.1 %" in lines[0] and "I=+1.50 A" in lines[0]
    assert "alarms=cell_undervoltage" in lines[0]
    assert lines[1].startswith("[2] /dev/serial/by-id/b  UNPLUGGED 3 s, retrying")
    assert text.endswith("port gone\n")


def test_live_status_is_sparse_when_not_a_terminal() -> None:
    stream = io.StringIO()
    status = LiveStatus(stream, tty=False)
    for _ in range(50):
        status.update(["[1] x"])
    assert stream.getvalue() == ""  # nothing within the first ten seconds
    status.update(["[1] x"], force=True)
    assert stream.getvalue() == "[1] x\n" and "\x1b" not in stream.getvalue()
