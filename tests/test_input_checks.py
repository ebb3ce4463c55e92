"""Bad input gets one clear line naming the likely cause, never a traceback or silent nonsense.

Issue 11, item 4: a config value beyond the wire's 32 bits, options out of
range (``sim --speed -1``, ``--soc 150``), NaN and infinity where a number is
parsed, traces in the wrong units (mV, mA, 0.1 °C) or of the wrong kind (a full
cycle given as a pulse test), a replay from an impossible SoC, board files the
firmware cannot run with. Usage errors exit 2 (argparse), refusals exit 1.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellguard import cli
from cellguard.boards import BoardFileError, load_board
from cellguard.config import file as cf
from cellguard.config.command import parse_key_value
from cellguard.errors import CellguardError
from cellguard.link.client import CONFIG_KEYS
from cellguard.protocol.codec import build_payload
from cellguard.sim import SimulatedBoard, parse_script

ROOT = Path(__file__).resolve().parents[1]
NMC_CELL = ROOT / "cells" / "sim-nmc.json"
CLI = [sys.executable, "-m", "cellguard.cli"]


def main(*args: str | Path) -> int:
    return cli.main([str(a) for a in args])


def refused(capsys: pytest.CaptureFixture[str], *args: str | Path, words: str) -> str:
    """Exit 1 with one ``cellguard: error:`` line holding ``words``."""
    assert main(*args) == 1, args
    err = capsys.readouterr().err
    assert err.startswith("cellguard: error: ") and words in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def usage_error(capsys: pytest.CaptureFixture[str], *args: str | Path, words: str) -> None:
    """argparse's exit 2 with ``words`` in its message."""
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args([str(a) for a in args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err


# --- config set: the wire's range, and what the board allows ------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedBoard]:
    with SimulatedBoard(runtime="cpython", speed=20.0) as board:
        yield board


@pytest.mark.parametrize("key, value, words", [
    ("cell_ov_mv", "4200000000000", "the board allows 4149..4300"),
    ("capacity_mah", "2147483648", "the board allows 1..10000000"),
    ("cell_overvoltage.trip_v", "1e30", "the board allows 4149..4300"),
    ("cell_ov_mv", "-4200000000000", "the board allows 4149..4300"),
])
def test_config_set_beyond_32_bits_is_a_clear_refusal(sim: SimulatedBoard, key: str,
                                                      value: str, words: str,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    err = refused(capsys, "config", "set", key, value, "--port", sim.port, words=words)
    assert "32-bit" in err


def test_config_set_severity_and_pin_out_of_range(sim: SimulatedBoard,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, "config", "set", "cell_ov_severity", "99999999999", "--port", sim.port,
            words="not a severity for cell_ov_severity")
    refused(capsys, "config", "set", "cell_ov_severity", "3", "--port", sim.port,
            words="give warning, alarm, fault or 0, 1, 2")
    usage_error(capsys, "config", "set", "cell_ov_mv", "4200", "--port", sim.port, "--pin",
                "99999999999", words="at most 4294967295")
    usage_error(capsys, "config", "set", "cell_ov_mv", "4200", "--port", sim.port, "--pin", "-1",
                words="must be 0 or more")
    assert main("config", "set", "cell_ov_mv", "4.2V", "--port", sim.port) == 0  # still works
    assert "4200" in capsys.readouterr().out


def test_config_load_says_the_same_as_set(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text("[general]\ncapacity_ah = 2147483.648\n")
    with pytest.raises(cf.ConfigFileError, match=r"line 2: .* out of the board's range"):
        cf.read_file(path)


_KEYS = [*CONFIG_KEYS, *(fk.path for fk in cf.LAYOUT)]
_VALUES = st.one_of(
    st.text(max_size=30),
    st.integers().map(str),
    st.floats().map(repr),
    st.tuples(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
        ["V", "mV", "mv", "A", "mA", "C", "°C", "dc", "s", "ms", "Ah", "mAh", ""])).map(
        lambda t: f"{t[0]!r}{t[1]}"),
    st.sampled_from(["warning", "ALARM", " fault ", "0", "2", "1e400", "nan", "-inf",
                     "4.2V", "1_000", "0x10", "", " "]),
)


@settings(max_examples=400, deadline=None)
@given(key=st.one_of(st.sampled_from(_KEYS), st.text(max_size=20)), text=_VALUES)
def test_any_typed_value_is_a_clean_error_or_sendable(key: str, text: str) -> None:
    """What `config set` does with what a person types: a CellguardError, or a value the
    wire can carry (building the SET_CONFIG payload raises nothing)."""
    try:
        wire_key, value = parse_key_value(key, text)
    except CellguardError:
        return
    assert isinstance(value, int) and cf.I32_MIN <= value <= cf.I32_MAX
    build_payload("set_config", {"key": CONFIG_KEYS[wire_key], "value": value, "pin": 0})


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from(list(CONFIG_KEYS)), text=_VALUES)
def test_parse_config_value_raises_only_clean_errors(key: str, text: str) -> None:
    try:
        value = cli.parse_config_value(key, text)
    except CellguardError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert cf.I32_MIN <= value <= cf.I32_MAX


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(_KEYS), text=_VALUES, pin=st.one_of(st.integers(), st.text(
    max_size=12)))
def test_config_set_on_the_command_line_never_raises(key: str, text: str, pin: Any) -> None:
    """Through main(): exit 1 (a clean refusal; here at the latest the missing port) or
    argparse's exit 2, nothing else."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main("config", "set", key, text, "--pin", str(pin), "--port",
                        "/dev/cellguard-no-such-port")
        except SystemExit as exc:
            code = exc.code
            assert code == 2
    if code == 1:
        assert err.getvalue().startswith("cellguard: error: ")
    assert "Traceback" not in err.getvalue()


# --- numeric options ------------------------------------------------------------------------


@pytest.mark.parametrize("argv, words", [
    (["sim", "--speed", "-1"], "must be 0 or more, not -1 (0: as fast as possible)"),
    (["sim", "--speed", "nan"], "not a number"),
    (["sim", "--speed", "inf"], "must be 0 or more, not inf"),
    (["sim", "--soc", "150"], "--soc: must be between 0 and 100, not 150"),
    (["sim", "--soc", "-5"], "--soc: must be between 0 and 100, not -5"),
    (["sim", "--soc", "nan"], "--soc: not a number"),
    (["sim", "--ambient", "1000"], "--ambient: must be between -55 and 125 °C"),
    (["sim", "--ambient", "nan"], "--ambient: not a number"),
    (["sim", "--current", "nan"], "--current: not a number"),
    (["sim", "--current=-inf"], "--current: must be a finite number"),
    (["sim", "--seed", "-1"], "--seed: must be 0 or more"),
    (["sim", "--repeat", "-2"], "--repeat: must be 0 or more"),
    (["demo", "--seed", "-3"], "--seed: must be 0 or more"),
    (["ports", "--timeout", "inf"], "--timeout: not a time: 'inf'"),
    (["info", "--port", "x", "--timeout", "nan"], "--timeout: not a time: 'nan'"),
    (["monitor", "--port", "x", "--interval", "0"], "--interval: must be greater than 0"),
    (["log", "--port", "x", "--out", "y", "--duration", "inf"], "--duration: not a time"),
    (["estimate", "--input", "t", "--cell", "c", "--out", "o", "--initial-soc", "150"],
     "--initial-soc: must be between 0 and 100"),
    (["characterize", "--input", "t", "--out", "o", "--initial-soc", "-1"],
     "--initial-soc: must be between 0 and 100"),
    (["characterize", "--input", "t", "--out", "o", "--capacity-ah", "inf"],
     "--capacity-ah: must be greater than 0"),
    (["characterize", "--input", "t", "--out", "o", "--capacity-ah", "0"],
     "--capacity-ah: must be greater than 0"),
    (["characterize", "--input", "t", "--out", "o", "--cell", "0"], "--cell: cells count from 1"),
])
def test_numeric_options_out_of_range_are_usage_errors(argv: list[str], words: str,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    usage_error(capsys, *argv, words=words)


def test_sim_current_beyond_the_current_sensor_is_refused() -> None:
    proc = subprocess.run([*CLI, "sim", "--runtime", "cpython", "--current", "80"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("cellguard: error: --current: a current of 80 A is beyond the "
                                  "board's current sensor (±50 A)"), proc.stderr
    assert "port:" not in proc.stdout  # refused before the board started


def test_scripts_and_the_python_api_check_the_same_ranges() -> None:
    sim = SimulatedBoard(runtime="cpython", lockstep=True)  # not started: only checked against
    for text, words in (("at 5 current -60\n", "beyond the board's current sensor (±50 A)"),
                        ("t_s,current_a\n0,1\n10,75\n", "beyond the board's current sensor"),
                        ("at 5 ambient 300\n", "outside -55..125 °C")):
        with pytest.raises(CellguardError, match=re.escape(words)):
            sim.run_script(parse_script(text))
    sim.run_script(parse_script("at 5 current -49\nat 6 ambient 120\n"))  # in range: accepted
    for kwargs, words in (({"initial_soc_pct": 150.0}, "between 0 and 100 %, not 150"),
                          ({"initial_soc_pct": -5.0}, "between 0 and 100 %, not -5"),
                          ({"initial_soc_pct": float("nan")}, "not nan"),
                          ({"ambient_c": float("nan")}, "finite")):
        with pytest.raises(BoardFileError, match=words):
            SimulatedBoard(runtime="cpython", **kwargs)
    for speed in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="speed must be 0"):
            SimulatedBoard(runtime="cpython", speed=speed)


@pytest.mark.parametrize("change, words", [
    ({"cells": "4"}, "cells must be a whole number 1..16, not '4'"),
    ({"capacity_mah": -3000}, "capacity_mah must be a whole number 1..10000000"),
    ({"capacity_mah": float("nan")}, "capacity_mah must be a whole number"),
    ({"chemistry": "lead_acid"}, "chemistry must be one of nmc, lfp, sodium_ion"),
    ({"control_period_ms": 0}, "control_period_ms must be a whole number 1..60000"),
    ({"telemetry_period_ms": 10**12}, "telemetry_period_ms must be a whole number 1..60000"),
    ({"telemetry_period_ms": 50}, "shorter than control_period_ms"),
    ({"temp_sensors": -1}, "temp_sensors must be a whole number 1..16"),
    ({"stuck_band_mv": -1}, "stuck_band_mv must be a whole number 0..1000, not -1"),
    ({"stuck_band_mv": 2.5}, "stuck_band_mv must be a whole number 0..1000"),
    ({"stuck_current_ma": 0}, "stuck_current_ma must be a whole number 1..1073741823"),
    ({"discharge_current_max_ma": 90000}, "beyond what the current sensor measures"),
])
def test_board_files_the_firmware_cannot_run_with(change: dict[str, Any], words: str,
                                                  tmp_path: Path) -> None:
    board = {**load_board("sim-4s"), **change}
    path = tmp_path / "board.json"
    path.write_text(json.dumps(board))
    with pytest.raises(BoardFileError, match=re.escape(words)):
        load_board(str(path))


@pytest.mark.parametrize("base, watchdog, words", [
    ("pico-4s", 9000, "watchdog_ms must be a whole number 1..8388 (the most an rp2040 "
                      "watchdog takes), not 9000"),
    ("pico-4s", 8389, "watchdog_ms must be a whole number 1..8388"),
    ("sim-4s", "2000", "watchdog_ms must be a whole number 1..2147483647, not '2000'"),
    ("esp32-4s", 100, "watchdog_ms (100) must be longer than control_period_ms (100)"),
])
def test_watchdog_beyond_the_port_is_refused_at_load(base: str, watchdog: Any, words: str,
                                                     tmp_path: Path) -> None:
    """Issue 12, item 14: the RP2040's watchdog takes at most 8388 ms; a board file
    asking more is refused when it is loaded, not when the board boots."""
    path = tmp_path / "board.json"
    path.write_text(json.dumps({**load_board(base), "watchdog_ms": watchdog}))
    with pytest.raises(BoardFileError, match=re.escape(words)):
        load_board(str(path))
    path.write_text(json.dumps({**load_board(base), "watchdog_ms": 8388}))
    assert load_board(str(path))["watchdog_ms"] == 8388  # the limit itself is fine


def test_a_bad_board_file_is_one_line_from_sim(tmp_path: Path) -> None:
    path = tmp_path / "board.json"
    path.write_text(json.dumps({**load_board("sim-4s"), "temp_sensors": -1}))
    proc = subprocess.run([*CLI, "sim", "--runtime", "cpython", "--board", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "temp_sensors must be a whole number 1..16, not -1" in proc.stderr


# --- traces: units and kinds ----------------------------------------------------------------


def trace_rows(path: Path, rows: list[list[float]], header: tuple[str, ...] | None = None
               ) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header or ("t_s", "current_a", "cell1_v", "temp1_c"))
        w.writerows(rows)
    return path


def discharge(volts: float = 3.9, amps: float = -3.0, temp: float = 25.0, n: int = 120,
              scale_v: float = 1.0) -> list[list[float]]:
    return [[k, amps, round((volts - 0.002 * k) * scale_v, 4), temp] for k in range(n)]


@pytest.mark.parametrize("rows, header, words", [
    (discharge(scale_v=1000.0), None, "cell1_v has values up to 3900: are these mV? give volts "
                                      "(an NMC cell reads 2.5..4.3 V)"),
    (discharge(amps=-3000.0), None, "current_a reaches 3000 A, 1000C for a 3 Ah cell: is it in "
                                    "mA? give amperes"),
    (discharge(temp=250.0), None, "temp1_c has values up to 250"),
    (discharge(temp=450.0), None, "temp1_c has values up to 450, beyond -60..150 °C: are these "
                                  "0.1 °C? give °C"),
    ([[k, -3.0, 14.8 - 0.01 * k] for k in range(60)], ("t_s", "current_a", "cell1_v"),
     "a pack or module voltage? give one cell's voltage per column"),
])
def test_estimate_refuses_a_trace_in_the_wrong_units(rows: list[list[float]],
                                                     header: tuple[str, ...] | None, words: str,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    trace = trace_rows(tmp_path / "trace.csv", rows, header)
    out = tmp_path / "est.csv"
    refused(capsys, "estimate", "--input", trace, "--cell", NMC_CELL, "--out", out, words=words)
    assert not out.exists()


def test_estimate_warns_of_readings_beyond_the_chemistry(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    rows = discharge()
    rows[50][2] = 4.6  # one reading above what an NMC cell can read
    trace = trace_rows(tmp_path / "trace.csv", rows)
    assert main("estimate", "--input", trace, "--cell", NMC_CELL, "--out",
                tmp_path / "est.csv") == 0
    err = capsys.readouterr().err
    assert "cellguard: warning: " in err and "cell1_v reaches 4.600 V, above the 4.3 V an NMC " \
        "cell can read" in err


@pytest.fixture(scope="module")
def fit_traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from test_characterize import CAP_AH, hppc, low_rate, plant_trace

    from cellguard.estimation import pybamm_traces

    S = pybamm_traces.Segment
    d = tmp_path_factory.mktemp("traces")
    pulse = plant_trace(d / "hppc.csv", hppc(level_rest_s=1800.0))
    # A 1C cycle from nearly empty: charge, rest, most of the way back down, rest.
    cycle = plant_trace(d / "cycle.csv", [S(0.0, 600.0), S(CAP_AH, 3300.0), S(0.0, 1800.0),
                                          S(-CAP_AH, 2400.0), S(0.0, 1800.0)], soc_pct=5.0)
    out = {"hppc": pulse, "low": plant_trace(d / "low.csv", low_rate(), dt=20.0),
           "cycle": cycle}
    for name, source, column, scale in (("hppc-mv", pulse, "cell1_v", 1000.0),
                                        ("cycle-no-truth", cycle, None, 1.0)):
        with source.open() as f:
            rows = list(csv.reader(f))
        head = rows[0]
        keep = [i for i, h in enumerate(head) if h != "true_soc_pct"]
        path = d / f"{name}.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow([head[i] for i in keep])
            for r in rows[1:]:
                w.writerow([float(r[i]) * scale if head[i] == column else r[i] for i in keep])
        out[name] = path
    return out


def test_characterize_refuses_a_trace_in_mv(fit_traces: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, "characterize", "--input", fit_traces["hppc-mv"], "--input",
            fit_traces["low"], "--out", tmp_path / "cell.json",
            words="hppc-mv.csv: cell1_v has values up to 4236")
    assert not (tmp_path / "cell.json").exists()


def test_characterize_refuses_a_full_cycle_given_as_a_pulse_test(
        fit_traces: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, "characterize", "--input", fit_traces["cycle"], "--out", tmp_path / "c.json",
            "--capacity-ah", "3", "--chemistry", "nmc",
            words="the pulse test's SoC went to 167 %")
    refused(capsys, "characterize", "--input", fit_traces["cycle"], "--out", tmp_path / "c.json",
            "--capacity-ah", "3", "--chemistry", "nmc",
            words="this looks like a full cycle (one 1C run over 92 % SoC), not an HPPC pulse "
                  "test")


def test_characterize_names_a_wrong_capacity(fit_traces: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # The pulse test of a 3 Ah cell counted with 2 Ah: it runs 50 % below empty.
    refused(capsys, "characterize", "--input", fit_traces["hppc"], "--out", tmp_path / "c.json",
            "--capacity-ah", "2", words="is the capacity (--capacity-ah) or the start "
                                        "(--initial-soc) right?")


def test_characterize_will_not_replay_from_an_impossible_soc(
        fit_traces: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cell.json"
    err = refused(capsys, "characterize", "--input", fit_traces["hppc"], "--input",
                  fit_traces["low"], "--out", out, "--validate", fit_traces["cycle-no-truth"],
                  words="cannot replay")
    assert "from 75.0 % SoC (so that it ends full, as a trace that first charges)" in err
    assert "its SoC would reach 166.7 %" in err and "true_soc_pct" in err
    assert not out.exists()
    # With its true SoC the same cycle replays.
    assert main("characterize", "--input", fit_traces["hppc"], "--input", fit_traces["low"],
                "--out", out, "--validate", fit_traces["cycle"]) == 0
    assert "cycle.csv: voltage error RMS" in capsys.readouterr().out
