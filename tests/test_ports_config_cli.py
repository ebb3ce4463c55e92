"""`cellguard ports` and `cellguard config get|set|dump|load|diff` against simulated boards."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
import tomllib
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from cellguard.cli import main
from cellguard.link import ports as ports_mod
from cellguard.link.client import BoardClient
from cellguard.sim import SimulatedBoard

CLI = [sys.executable, "-m", "cellguard.cli"]


def run(*args: str, stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60,
                          stdin=stdin)


def clean_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "cellguard: error: " in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.fixture
def sim() -> Iterator[SimulatedBoard]:
    with SimulatedBoard(runtime="cpython", speed=10.0) as board:
        yield board


@pytest.fixture
def silent_pty() -> Iterator[str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


def here(capsys: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line in this process (faster than a subprocess; same code)."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def get(port: str, key: str) -> dict[str, Any]:
    """One key as `config get --json` shows it."""
    from cellguard.config.command import entry_row, resolve_key

    with BoardClient(port) as client:
        return entry_row(client.get_config(resolve_key(key)[0]))


# -- ports -----------------------------------------------------------------------------------
def test_ports_marks_the_board_and_never_hangs(sim: SimulatedBoard, silent_pty: str) -> None:
    busy_master, busy_slave = os.openpty()
    busy = os.ttyname(busy_slave)
    try:
        with serial.Serial(busy, exclusive=True):
            proc = run("ports", sim.port, silent_pty, busy, "/dev/cellguard-no-such-port",
                       "--timeout", "0.6", "--json")
    finally:
        os.close(busy_master)
        os.close(busy_slave)
    assert proc.returncode == 0, proc.stderr
    rows = {r["device"]: r for r in json.loads(proc.stdout)}
    board = rows[sim.port]
    assert board["status"] == "board" and board["board"] == "sim-4s"
    assert board["unique_id"] == "5e1173696d2d3473" and board["firmware"]
    assert rows[silent_pty]["status"] == "no answer" and rows[silent_pty]["board"] is None
    assert rows[busy]["status"] == "busy"
    assert rows["/dev/cellguard-no-such-port"]["status"] == "missing"

    text = run("ports", sim.port, "--timeout", "0.6")
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if x.startswith(sim.port))
    assert "cellguard board sim-4s" in line and "id 5e1173696d2d3473" in line


def test_ports_without_probing_sends_nothing(fake_board: Any) -> None:
    board = fake_board(lambda frame: b"")
    proc = run("ports", board.port, "--no-probe", "--json")
    assert proc.returncode == 0, proc.stderr
    row = next(r for r in json.loads(proc.stdout) if r["device"] == board.port)
    assert row["status"] == "not probed"
    # A marker frame after the command has exited: the pty keeps order, so once the
    # board has it, anything the command wrote would have arrived before it.
    from cellguard.protocol.codec import build_payload, encode_frame
    from cellguard.protocol.messages import BY_NAME

    marker = encode_frame(BY_NAME["get_stats"].msg_id, 99, build_payload("get_stats", {}))
    fd = os.open(board.port, os.O_WRONLY | os.O_NOCTTY)
    try:
        os.write(fd, marker)
    finally:
        os.close(fd)
    deadline = time.monotonic() + 30  # only stops a broken run from hanging
    while not board.received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [(f.msg_type, f.seq) for f in board.received] == [(BY_NAME["get_stats"].msg_id, 99)]


def test_a_probe_that_blocks_is_given_up_at_the_deadline(monkeypatch: Any) -> None:
    """A driver that never returns: probe_all gives up on it (its thread still runs
    when the answer comes back), it does not wait for it."""
    release = threading.Event()
    threads: list[threading.Thread] = []

    def stuck(report: ports_mod.PortReport, timeout_s: float) -> None:
        threads.append(threading.current_thread())
        release.wait(120)  # a driver that never returns (until the test ends)

    monkeypatch.setattr(ports_mod, "probe", stuck)
    try:
        out = ports_mod.probe_all([ports_mod.PortReport("/dev/stuck")], timeout_s=0.2,
                                  grace_s=0.3)
        assert threads and threads[0].is_alive()  # given up on, not waited for
    finally:
        release.set()
    assert out[0].status == "no answer" and "in time" in out[0].detail


def test_probes_run_at_once(monkeypatch: Any) -> None:
    """Every port is probed in its own thread, together: each fake probe waits for all
    the others to have started, which only a concurrent run gets past."""
    ports = [ports_mod.PortReport(f"/dev/port{i}") for i in range(4)]
    together = threading.Barrier(len(ports))

    def probe(report: ports_mod.PortReport, timeout_s: float) -> None:
        together.wait(60)  # raises BrokenBarrierError in a run one at a time
        report.status = ports_mod.BOARD

    monkeypatch.setattr(ports_mod, "probe", probe)
    out = ports_mod.probe_all(ports, timeout_s=60, grace_s=1)
    assert [r.status for r in out] == [ports_mod.BOARD] * len(ports)


# -- config ----------------------------------------------------------------------------------
def test_dump_diff_and_load_round_trip(sim: SimulatedBoard, tmp_path: Path,
                                       capsys: Any) -> None:
    path = tmp_path / "board.toml"
    proc = run("config", "dump", str(path), "--port", sim.port)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 117 keys of board sim-4s" in proc.stdout
    data = tomllib.loads(path.read_text())
    assert data["board"]["name"] == "sim-4s" and data["board"]["unique_id"] == "5e1173696d2d3473"
    assert data["board"]["firmware"]
    assert data["cell_overvoltage"]["trip_v"] == 4.25
    assert data["cell_overvoltage"]["severity"] == "fault"
    assert data["cell_imbalance"]["severity"] == "warning"
    assert data["overtemperature"]["trip_c"] == 60.0
    assert data["overcurrent_charge"]["trip_delay_s"] == 0.5

    proc = here(capsys, "config", "diff", str(path), "--port", sim.port)
    assert proc.returncode == 0 and "no differences" in proc.stdout, proc.stderr
    proc = here(capsys, "config", "load", str(path), "--port", sim.port)  # nothing to ask
    assert proc.returncode == 0 and "nothing to write" in proc.stdout, proc.stderr

    # Lowering the trip below the present release needs the release first: load
    # finds the order.
    text = path.read_text()
    text = text.replace("trip_v = 4.25 ", "trip_v = 4.0 ", 1)
    text = text.replace("release_v = 4.15 ", "release_v = 3.9 ", 1)
    text = text.replace('severity = "warning"  # cell_spread', 'severity = "alarm"  # cell_spread')
    path.write_text(text)
    proc = here(capsys, "config", "diff", str(path), "--port", sim.port, "--json")
    assert proc.returncode == 0, proc.stderr
    changes = {c["key"]: c for c in json.loads(proc.stdout)}
    assert set(changes) == {"cell_ov_mv", "cell_ov_release_mv", "cell_spread_severity"}
    assert changes["cell_ov_mv"]["board"] == 4250 and changes["cell_ov_mv"]["file"] == 4000
    assert changes["cell_spread_severity"]["file_si"] == "alarm"

    refused = run("config", "load", str(path), "--port", sim.port)  # stdin is not a terminal
    clean_error(refused, "standard input is not a terminal", "--yes")
    assert "cell_overvoltage.trip_v" in refused.stdout  # the diff was shown
    assert get(sim.port, "cell_ov_mv")["value"] == 4250  # nothing written

    proc = run("config", "load", str(path), "--port", sim.port, "--yes", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert sorted(result["written"]) == ["cell_ov_mv", "cell_ov_release_mv",
                                         "cell_spread_severity"]
    assert result["refused"] == []
    assert get(sim.port, "cell_ov_mv")["value"] == 4000
    assert get(sim.port, "cell_imbalance.severity")["severity"] == "alarm"
    proc = here(capsys, "config", "diff", str(path), "--port", sim.port)
    assert "no differences" in proc.stdout

    again = tmp_path / "again.toml"
    assert here(capsys, "config", "dump", str(again), "--port", sim.port).returncode == 0
    strip = {k: v for k, v in tomllib.loads(again.read_text()).items() if k != "board"}
    assert strip == {k: v for k, v in tomllib.loads(path.read_text()).items() if k != "board"}


def test_load_reports_each_refusal_with_the_allowed_range(sim: SimulatedBoard, tmp_path: Path,
                                                         capsys: Any) -> None:
    path = tmp_path / "partial.toml"
    path.write_text("[cell_overvoltage]\ntrip_v = 4.5\n\n[overtemperature]\ntrip_c = 58.0\n"
                    "[cell_undervoltage]\ntrip_delay_s = 99.0\n")
    proc = here(capsys, "config", "load", str(path), "--port", sim.port, "--yes")
    clean_error(proc, "refused 2 of 3 keys")
    assert ("cell_overvoltage.trip_v (cell_ov_mv): 4.5 V: beyond hard limit 4.3 V; "
            "allowed now 4.149..4.3 V") in proc.stderr
    assert "cell_undervoltage.trip_delay_s (cell_uv_delay_ms): 99 s: beyond hard limit 60 s" \
        in proc.stderr
    assert "allowed now 0..60 s" in proc.stderr
    assert "wrote 1 of 3 keys" in proc.stdout
    assert get(sim.port, "temp_max_dc")["value"] == 580
    assert get(sim.port, "cell_ov_mv")["value"] == 4250


def test_load_asks_on_a_terminal(sim: SimulatedBoard, tmp_path: Path) -> None:
    path = tmp_path / "one.toml"
    path.write_text("[general]\ntelemetry_period_s = 0.5\n")
    for answer, code, value in ((b"n\n", 1, 1000), (b"y\n", 0, 500)):
        master, slave = os.openpty()
        try:
            proc = subprocess.Popen([*CLI, "config", "load", str(path), "--port", sim.port],
                                    stdin=slave, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            asked = b""
            deadline = time.monotonic() + 20
            while b"[y/N]" not in asked and time.monotonic() < deadline:
                assert proc.stderr is not None
                if select.select([proc.stderr], [], [], 0.1)[0]:
                    asked += os.read(proc.stderr.fileno(), 4096)
            assert b"write 1 keys to board sim-4s" in asked
            os.write(master, answer)
            _, err = proc.communicate(timeout=20)
        finally:
            os.close(master)
            os.close(slave)
        assert proc.returncode == code, err
        if code:
            assert b"cancelled: nothing written" in err
        assert get(sim.port, "telemetry_period_ms")["value"] == value


def test_severity_words_and_file_keys_on_the_command_line(sim: SimulatedBoard,
                                                        capsys: Any) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return here(capsys, *args)

    proc = run("config", "set", "cell_spread_severity", "alarm", "--port", sim.port, "--json")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)[0]
    assert row["value"] == 1 and row["severity"] == "alarm"
    proc = run("config", "set", "cell_overvoltage.trip_v", "4.2", "--port", sim.port)
    assert proc.returncode == 0 and "4200 mV (4.2 V)" in proc.stdout, proc.stderr
    assert "allowed 4149..4300 (4.149..4.3 V)" in proc.stdout
    proc = run("config", "get", "cell_ov_severity", "--port", sim.port)
    assert "2 (fault)" in proc.stdout and "(warning..fault)" in proc.stdout
    clean_error(run("config", "set", "cell_ov_severity", "severe", "--port", sim.port),
                "not a severity", "warning, alarm, fault")
    clean_error(run("config", "set", "cell_ov_mv", "4.5V", "--port", sim.port),
                "beyond hard limit", "limit 4300 mV (4.3 V)")
    proc = run("config", "dump", "-", "--port", sim.port)
    assert proc.returncode == 0 and tomllib.loads(proc.stdout)["cell_imbalance"]["severity"] \
        == "alarm"


def test_config_file_errors_are_one_line_before_any_board(tmp_path: Path,
                                                         capsys: Any) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return here(capsys, *args)

    bad = tmp_path / "bad.toml"
    bad.write_text("[cell_overvoltage]\ntrip_v = 4.2\nbogus = 1\n")
    proc = run("config", "load", str(bad), "--port", "/dev/cellguard-no-such-port", "--yes")
    clean_error(proc, "line 3", "unknown key cell_overvoltage.bogus")
    assert proc.stderr.count("\n") == 1
    bad.write_text("this is not toml\n")
    clean_error(run("config", "diff", str(bad), "--port", "/dev/x"), "not a valid TOML file")
    clean_error(run("config", "diff", str(tmp_path / "none.toml"), "--port", "/dev/x"),
                "no such configuration file")
    clean_error(run("config", "dump", str(tmp_path / "no" / "x.toml"), "--port", "/dev/x"),
                "does not exist")
    assert not (tmp_path / "no").exists()
    usage = run("config", "diff", "--port", "/dev/x")
    assert usage.returncode == 2 and "needs a FILE" in usage.stderr
    usage = run("config", "dump", "a.toml", "--yes", "--port", "/dev/x")
    assert usage.returncode == 2 and "--yes goes with config load" in usage.stderr


def test_config_on_ports_that_are_not_boards(silent_pty: str, tmp_path: Path,
                                             capsys: Any) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return here(capsys, *args)

    out = tmp_path / "x.toml"
    clean_error(run("config", "dump", str(out), "--port", "/dev/cellguard-no-such-port"),
                "no such device")
    with serial.Serial(silent_pty, exclusive=True):
        clean_error(run("config", "dump", str(out), "--port", silent_pty), "busy")
    assert not out.exists()
