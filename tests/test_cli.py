"""The command line: real subprocesses, real pseudo-terminals, clear errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial
from fakes import INFO_FIELDS, TELEMETRY_FIELDS

from cellguard.protocol.messages import PROTOCOL_MAJOR, PROTOCOL_MINOR

CLI = [sys.executable, "-m", "cellguard.cli"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def assert_clean_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("cellguard: error: "), proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.fixture
def silent_pty() -> Iterator[str]:
    """A pseudo-terminal where nothing answers: a port that is not a cellguard board."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


@pytest.fixture
def sim_port() -> Iterator[str]:
    """`cellguard sim` as a user runs it (firmware under MicroPython); line 1 names the port."""
    proc = subprocess.Popen([*CLI, "sim", "--speed", "10"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("port: /dev/"), first + (proc.stderr.read() if proc.stderr else "")
    yield first.split(":", 1)[1].strip()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0


def test_missing_port_is_a_clear_error() -> None:
    assert_clean_error(run("info", "--port", "/dev/cellguard-no-such-port"), "no such device")


def test_silent_port_is_not_a_board(silent_pty: str) -> None:
    proc = run("info", "--port", silent_pty, "--timeout", "0.6")
    assert_clean_error(proc, "no cellguard board answered", silent_pty)


def test_noisy_port_is_not_a_board() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def babble() -> None:  # a device that streams text, like a GPS or a debug console
        while not stop.is_set():
            os.write(master, b"$GPGGA,123519,4807.038,N,01131.000,E\r\n\x00\x01\x02")
            time.sleep(0.02)

    t = threading.Thread(target=babble, daemon=True)
    t.start()
    try:
        proc = run("info", "--port", os.ttyname(slave), "--timeout", "0.6")
    finally:
        stop.set()
        t.join()
        os.close(master)
        os.close(slave)
    assert_clean_error(proc, "no cellguard board answered")


def test_busy_port_is_a_clear_error(silent_pty: str) -> None:
    with serial.Serial(silent_pty, exclusive=True):
        assert_clean_error(run("info", "--port", silent_pty), "busy")


def test_info_json_and_log_and_export(sim_port: str, tmp_path: Path) -> None:
    proc = run("info", "--port", sim_port, "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["board"] == "sim-4s"
    assert info["cell_count"] == 4 and info["protocol"] == f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}"
    assert info["cell_ov_v"] > info["cell_uv_v"] > 0

    log = tmp_path / "run.sqlite"
    proc = run("log", "--port", sim_port, "--out", str(log), "--duration", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["samples"] >= 4 and summary["lost"] == 0

    csv_path = tmp_path / "run.csv"
    proc = run("export", str(log), "--format", "csv", "--out", str(csv_path))
    assert proc.returncode == 0, proc.stderr
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",") == [
        "t_s", "seq", "state", "faults", "pack_v", "current_a", "soc_pct",
        "cell1_v", "cell2_v", "cell3_v", "cell4_v", "temp1_c", "temp2_c",
    ]
    assert len(lines) == summary["samples"] + 1


def test_unwritable_log_path_is_a_clear_error(sim_port: str, tmp_path: Path) -> None:
    out = tmp_path / "no-such-folder" / "run.sqlite"
    assert_clean_error(run("log", "--port", sim_port, "--out", str(out), "--duration", "1"),
                       "does not exist")
    assert not out.exists()


def test_read_only_log_path_is_a_clear_error(sim_port: str, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        out = Path("/proc/cellguard.sqlite")  # root ignores permission bits; /proc refuses
    else:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o500)
        out = folder / "run.sqlite"
    assert_clean_error(run("log", "--port", sim_port, "--out", str(out), "--duration", "1"),
                       "cannot write log")


def test_export_refuses_files_that_are_not_logs(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert_clean_error(run("export", str(text)), "not a cellguard log")
    assert_clean_error(run("export", str(tmp_path / "missing.sqlite")), "no such log file")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    assert_clean_error(run("export", str(other)), "not a cellguard log")


def test_unknown_board_for_sim() -> None:
    assert_clean_error(run("sim", "--board", "no-such-board"), "unknown board", "sim-4s")


def test_bad_arguments_exit_2() -> None:
    proc = run("log", "--port", "x", "--out", "y", "--duration", "-5")
    assert proc.returncode == 2
    assert "must be greater than 0" in proc.stderr


def test_failed_log_leaves_no_empty_file(silent_pty: str, tmp_path: Path) -> None:
    out = tmp_path / "run.sqlite"
    assert_clean_error(run("log", "--port", "/dev/cellguard-no-such-port", "--out", str(out)),
                       "no such device")
    assert not out.exists()


def test_log_appends_to_an_existing_log(sim_port: str, tmp_path: Path) -> None:
    out = tmp_path / "run.sqlite"
    for _ in range(2):
        proc = run("log", "--port", sim_port, "--out", str(out), "--duration", "1", "--json")
        assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(out) as db:
        assert db.execute("SELECT COUNT(*) FROM boards").fetchone()[0] == 2
        dupes = db.execute(
            "SELECT COUNT(*) FROM (SELECT board_id, boot, seq FROM telemetry "
            "GROUP BY 1, 2, 3 HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        assert dupes == 0


def test_frames_arriving_with_the_hello_answer_are_kept(fake_board: Any) -> None:
    """Telemetry in the same read as INFO, or before it, reaches the caller."""
    from cellguard.link.client import BoardClient
    from cellguard.protocol.codec import build_payload, encode_frame

    def respond(frame: Any) -> bytes:  # telemetry before and after INFO, in one write
        tele = build_payload("telemetry", TELEMETRY_FIELDS)
        later = build_payload("telemetry", {**TELEMETRY_FIELDS, "telemetry_seq": 1})
        return (encode_frame(0x10, 1, tele)
                + encode_frame(0x02, frame.seq, build_payload("info", INFO_FIELDS))
                + encode_frame(0x10, 2, later))

    board = fake_board(respond)
    with BoardClient(board.port) as client:
        assert client.hello().board == "fake"
        got: list[int] = []
        deadline = time.monotonic() + 60  # a guard only: the loop ends on the frames
        while len(got) < 2 and time.monotonic() < deadline:
            got += [m.payload["telemetry_seq"] for m in client.receive()
                    if m.name == "telemetry"]
    assert got == [0, 1]


def test_config_faults_events_and_stats_commands(sim_port: str) -> None:
    proc = run("config", "dump", "--port", sim_port, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["key"]: r for r in json.loads(proc.stdout)}
    assert rows["cell_ov_mv"]["value"] == 4250 and rows["cell_ov_mv"]["si_unit"] == "V"

    proc = run("config", "set", "cell_ov_mv", "4.2V", "--port", sim_port, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["value"] == 4200
    proc = run("config", "get", "cell_ov_mv", "--port", sim_port)
    assert proc.returncode == 0 and "4200" in proc.stdout and "(4.2 V)" in proc.stdout

    refused = run("config", "set", "cell_ov_mv", "4.5V", "--port", sim_port)
    assert_clean_error(refused, "beyond hard limit", "limit 4300 mV (4.3 V)")
    assert_clean_error(run("config", "set", "no_such_key", "1", "--port", sim_port),
                       "unknown configuration key")
    assert_clean_error(run("config", "set", "cell_ov_mv", "4.2.1V", "--port", sim_port),
                       "not a value for cell_ov_mv")
    usage = run("config", "set", "cell_ov_mv", "--port", sim_port)
    assert usage.returncode == 2 and "needs a KEY and a VALUE" in usage.stderr

    proc = run("faults", "--port", sim_port, "--clear", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"active": [], "latched": [], "tripped": [], "alarms": [],
                                        "warnings": []}
    proc = run("events", "--port", sim_port)
    assert proc.returncode == 0 and "boot" in proc.stdout and "cell_ov_mv = 4200" in proc.stdout
    proc = run("stats", "--port", sim_port, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["frames_ok"] > 0
    assert json.loads(proc.stdout)["sensor_bus"] is None  # sim-4s: no sensor chip
    proc = run("stats", "--port", sim_port)
    assert proc.returncode == 0 and "sensor_bus         none (no sensor chip)" in proc.stdout
