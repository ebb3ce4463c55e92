"""Friction a careless user meets (issue 11, item 9): each with the fix's proof.

Config keys with a suggestion and units people write; one duration parser for
every option; one-line errors where a traceback or a wrong message was; a log
appended by a second connection summarised per board; JSON without float noise;
plurals; estimate errors that name the column and an output without exponents;
a zoomed plot scaled to the data with the limits marked at the edge.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import INFO_FIELDS
from test_offline import INFO, OTHER, Run, write

from cellguard import cli
from cellguard.config.command import entry_line, entry_row, print_entries, resolve_key
from cellguard.errors import CellguardError
from cellguard.link.client import ConfigEntry
from cellguard.sim.script import parse_script

NO_PORT = "/dev/cellguard-no-such-port"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# -- config: keys, values, units -----------------------------------------------------------
def test_unknown_key_suggests_the_closest_and_points_to_config_dump(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "config", "set", "cell_ov_m", "4200", "--port", NO_PORT)
    assert code == 1
    assert err.count("\n") == 1 and "did you mean cell_ov_mv?" in err
    assert "config dump" in err and "cell_uv_release_delay_ms" not in err  # not all 117 keys
    assert "no such device" not in err  # the key is judged before the port is opened
    with pytest.raises(CellguardError) as exc:
        resolve_key("cell_overvoltage.trip")
    assert "did you mean cell_overvoltage.trip_v?" in str(exc.value)
    with pytest.raises(CellguardError) as exc:
        resolve_key("zzzz")
    assert "did you mean" not in str(exc.value) and "config dump" in str(exc.value)


@pytest.mark.parametrize(("key", "typed", "hint"), [
    ("cell_ov_mv", "4.2", "4.2V"), ("temp_max_dc", "60.5", "60.5C"),
    ("cell_ov_delay_ms", "0.5", "0.5s"), ("capacity_mah", "2.5", "2.5Ah"),
    ("charge_current_max_ma", "5.5", "5.5A"),
])
def test_a_bare_fraction_for_a_whole_unit_key_hints_at_the_si_form(
        capsys: pytest.CaptureFixture[str], key: str, typed: str, hint: str) -> None:
    code, _, err = run(capsys, "config", "set", key, typed, "--port", NO_PORT)
    assert code == 1 and f"did you mean {hint}?" in err, err
    assert err.count("\n") == 1


def _entries() -> list[ConfigEntry]:
    return [ConfigEntry("cell_ov_mv", 4250, 4149, 4300),
            ConfigEntry("temp_max_dc", 600, 549, 700),
            ConfigEntry("discharge_current_release_delay_ms", 10000, 0, 60000),
            ConfigEntry("capacity_mah", 3000, 1, 10000000),
            ConfigEntry("charge_current_max_ma", 6000, 2999, 50000),
            ConfigEntry("cell_ov_debounce", 1, 1, 1000),
            ConfigEntry("sensor_disconnected_count", 0, 0, 2),
            ConfigEntry("cell_ov_severity", 2, 0, 2)]


def test_config_lines_write_units_as_people_do_and_align(
        capsys: pytest.CaptureFixture[str]) -> None:
    print_entries(_entries(), as_json=False)
    lines = capsys.readouterr().out.splitlines()
    text = "\n".join(lines)
    for unit in ("4250 mV", "600 0.1 °C", "3000 mAh", "6000 mA", "10000 ms", "1 sample "):
        assert re.search(unit.replace(" ", r"\s+"), text), unit
    assert not re.search(r"\b(mv|ma|dc|mah)\b", text)
    # Columns: the value ends, the unit starts, and "allowed" starts at one place.
    ends = {re.match(r"^\S+\s+\d+", line).end() for line in lines}  # type: ignore[union-attr]
    assert len(ends) == 1, lines
    assert len({line.index("allowed") for line in lines}) == 1, lines
    assert entry_line(_entries()[0]).split()[:3] == ["cell_ov_mv", "4250", "mV"]


def test_config_json_names_units_as_people_do() -> None:
    rows = {e.key: entry_row(e) for e in _entries()}
    assert rows["cell_ov_mv"]["unit"] == "mV" and rows["temp_max_dc"]["unit"] == "0.1 °C"
    assert rows["capacity_mah"]["unit"] == "mAh" and rows["cell_ov_debounce"]["unit"] == "samples"


def test_refusals_and_events_write_units_as_people_do() -> None:
    from cellguard.config.file import describe_wire

    assert describe_wire("cell_ov_mv", 4300) == "4300 mV (4.3 V)"
    assert describe_wire("temp_max_dc", 600) == "600 0.1 °C (60 °C)"


# -- info ----------------------------------------------------------------------------------
def test_info_prints_message_names_not_a_tuple(fake_board: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from cellguard.protocol.codec import build_payload, encode_frame

    board = fake_board(lambda f: encode_frame(0x02, f.seq, build_payload("info", INFO_FIELDS)))
    code, out, _ = run(capsys, "info", "--port", board.port)
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("known_types"))
    assert line.split(None, 1)[1] == "hello, info, telemetry"
    assert "(" not in line and "'" not in line


# -- durations everywhere ------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "dest", "seconds"), [
    (["log", "--port", "p", "--out", "o", "--duration", "15m"], "duration", 900.0),
    (["log", "--port", "p", "--out", "o", "--duration", "1:30"], "duration", 90.0),
    (["monitor", "--port", "p", "--duration", "1:00:00"], "duration", 3600.0),
    (["monitor", "--port", "p", "--interval", "500ms"], "interval", 0.5),
    (["ports", "--timeout", "1.5s"], "timeout", 1.5),
    (["info", "--port", "p", "--timeout", "2s"], "timeout", 2.0),
    (["export", "x", "--from", "1:30"], "t_from", 90.0),
    (["plot", "x", "-o", "y", "--to", "1.5h"], "t_to", 5400.0),
    (["report", "x", "--from", "1:30:00"], "t_from", 5400.0),
])
def test_every_duration_option_takes_the_same_forms(argv: list[str], dest: str,
                                                    seconds: float) -> None:
    args = cli.build_parser().parse_args(argv)
    assert getattr(args, dest) == pytest.approx(seconds)


@pytest.mark.parametrize(("argv", "words"), [
    (["log", "--port", "p", "--out", "o", "--duration", "1:75"], "seconds must be below 60"),
    (["monitor", "--port", "p", "--duration", "0s"], "must be greater than 0"),
    (["export", "x", "--from", "tomorrow"], "M:SS (1:30 = 90 s) or H:MM:SS"),
])
def test_a_bad_duration_is_a_usage_error_that_names_the_forms(
        capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and words in err, err


def test_sim_script_times_take_the_same_forms() -> None:
    script = parse_script("at 1:30 current 1\nat 2m current 0\nat +1:00 ambient 30\n"
                          "at 0:03:00 hang 1500ms\nat 1h end\n")
    assert [s.t_ms for s in script.steps] == [90_000, 120_000, 180_000, 180_000, 3_600_000]
    assert script.steps[3].args == (1.5,)


# -- hil on a port that is not there -------------------------------------------------------
def test_hil_on_a_missing_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "hil", "--port", NO_PORT)
    assert code == 1
    assert err == f"cellguard: error: cannot open port {NO_PORT}: no such device " \
                  "(is the board plugged in?)\n"
    assert "Traceback" not in out + err and "passed" not in out and "error" not in out


def test_hil_summary_counts_one_test_in_the_singular() -> None:
    from cellguard.hil import CaseResult, summary_lines

    case = CaseResult("test_protocol.py::test_stats_count_the_link", "passed", 0.3, "")
    assert summary_lines([case], 3.3, "board b")[-1] == (
        "1 test on board b: 1 passed, 0 failed in 3.3 s")


# -- a log appended by a second connection -------------------------------------------------
def test_summary_lists_a_board_once_and_sums_its_connections(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Two `log` runs of one board into one file (60 s, then 120 s), and another board.
    log = write(tmp_path / "two.sqlite", (INFO, Run().add(61).rows), (INFO, Run().add(121).rows),
                (OTHER, Run().add(31).rows))
    code, out, _ = run(capsys, "summary", str(log), "--json")
    data = json.loads(out)
    assert code == 0
    assert data["boards"] == [
        {"board": "sim-4s", "unique_id": "abcd", "connections": 2, "board_ids": [1, 2],
         "samples": 182, "duration_s": 180.0},
        {"board": "sim-8s", "unique_id": "beef", "connections": 1, "board_ids": [3],
         "samples": 31, "duration_s": 30.0}]
    assert data["duration_s"] == 180.0  # the board logged longest, over its connections
    code, out, _ = run(capsys, "summary", str(log))
    first = out.splitlines()[0]
    assert first.count("abcd") == 1 and "2 connections, 180.0 s" in first
    assert "180.0 s of board time" in out


def test_report_prints_no_negative_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    log = write(tmp_path / "rest.sqlite", (INFO, Run().add(61).rows))  # no current at all
    for fmt in ("md", "html", "json"):
        code, out, _ = run(capsys, "report", str(log), "--format", fmt)
        assert code == 0
        assert not re.search(r"-0\.0*(?![0-9])", out), (fmt, re.findall(r".{30}-0\.0+.{10}", out))
    code, out, _ = run(capsys, "report", str(log))
    assert "**charge in / out**: 0.000 Ah / 0.000 Ah (net +0.000 Ah)" in out
    assert "peak 0.000 A charging, 0.000 A discharging" in out


# -- JSON without float noise --------------------------------------------------------------
def _floats(data: Any, key: str = "") -> list[tuple[str, float]]:
    if isinstance(data, float):
        return [(key, data)]
    if isinstance(data, dict):
        return [x for k, v in data.items() for x in _floats(v, str(k))]
    if isinstance(data, list):
        return [x for v in data for x in _floats(v, key)]
    return []


def test_json_floats_carry_no_noise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_ = Run(period_ms=100)
    for k in range(30):
        run_.add(1, current_ma=100 + 100 * (k % 3), cells=(3700 + k, 3711 + 2 * k))
    log = write(tmp_path / "noise.sqlite", (INFO, run_.rows))
    texts = []
    for argv in (["summary", str(log), "--json"], ["report", str(log), "--json"],
                 ["plot", str(log), "-o", str(tmp_path / "p.png"), "--json"]):
        code, out, _ = run(capsys, *argv)
        assert code == 0
        texts.append(out)
        for key, value in _floats(json.loads(out)):
            digits = len(repr(value).split(".")[1]) if "." in repr(value) else 0
            assert digits <= 6 and "e" not in repr(value), (argv[0], key, value)
    summary = json.loads(texts[0])
    assert summary["charge_in_ah"] == round(summary["charge_in_ah"], 6)
    assert not any(re.search(r"\d\.\d*(0000000|9999999)\d", t) for t in texts)


# -- plurals -------------------------------------------------------------------------------
def test_wrote_one_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(tmp_path / "one.sqlite", (INFO, Run().add(1).rows))
    code, _, err = run(capsys, "export", str(log), "-o", str(tmp_path / "one.csv"))
    assert code == 0 and f"wrote 1 row to {tmp_path / 'one.csv'}" in err


# -- a folder where a log is expected ------------------------------------------------------
@pytest.mark.parametrize("command", ["export", "plot", "report", "summary"])
def test_a_folder_is_called_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     command: str) -> None:
    extra = ["-o", str(tmp_path / "x.png")] if command == "plot" else []
    code, _, err = run(capsys, command, str(tmp_path), *extra)
    assert code == 1
    assert err == f"cellguard: error: {tmp_path} is a folder, not a log file\n"


# -- estimate: errors name the column; no exponents in its output --------------------------
def _trace(path: Path, rows: list[list[str]], header: str = "t_s,current_a,cell1_v,cell2_v,"
           "temp1_c") -> Path:
    path.write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize(("bad", "words"), [
    (["5", "0", "3.7", "abc", "25"], "line 7: cell2_v is not a number: 'abc'"),
    (["5", "0", "3.7", "3.7"], "line 7: no value for temp1_c"),
    (["x", "0", "3.7", "3.7", "25"], "line 7: t_s is not a number: 'x'"),
    (["5", "", "3.7", "3.7", "25"], "line 7: no value for current_a"),
    (["5", "0", "3.7", "inf", "25"], "line 7: cell2_v is not a finite number: 'inf'"),
])
def test_estimate_errors_name_the_line_and_the_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: list[str], words: str) -> None:
    rows = [[str(t), "0", "3.7", "3.7", "25"] for t in range(5)] + [bad]
    trace = _trace(tmp_path / "trace.csv", rows)
    code, _, err = run(capsys, "estimate", "--input", str(trace), "--cell",
                       "cells/sim-nmc.json", "--out", str(tmp_path / "est.csv"))
    assert code == 1
    assert err == f"cellguard: error: {trace} {words}\n", err


def test_estimate_output_has_fixed_decimals_and_no_exponents(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [[str(t), "0", "3.75", "3.75", "25"] for t in range(0, 120)]  # at rest: bias ~ 0
    trace = _trace(tmp_path / "trace.csv", rows)
    out = tmp_path / "est.csv"
    code, _, _ = run(capsys, "estimate", "--input", str(trace), "--cell", "cells/sim-nmc.json",
                     "--out", str(out))
    assert code == 0
    with out.open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 120
    text = out.read_text()
    assert "e-" not in text and "e+" not in text
    decimals = {k: {len(r[k].split(".")[1]) if "." in r[k] else 0 for r in table}
                for k in table[0]}
    assert all(len(d) == 1 for d in decimals.values()), decimals  # fixed per column
    assert decimals["t_s"] == {3} and decimals["soc_pct"] == {2} and decimals["bias_a"] == {4}
    assert decimals["balancing"] == {0}


# -- a zoomed plot: scaled to the cells, limits marked at the edge -------------------------
@pytest.fixture
def flat_log(tmp_path: Path) -> Path:
    """Cells between 3.700 and 3.725 V, far from the limits (2.8 and 4.25 V)."""
    run_ = Run()
    for k in range(100):
        run_.add(1, cells=(3700 + k // 10, 3715 + k // 10))
    return write(tmp_path / "flat.sqlite", (INFO, run_.rows))


def test_zoomed_png_scales_to_the_cells_and_marks_the_limits(flat_log: Path) -> None:
    import matplotlib.pyplot as plt

    from cellguard.views.plot import draw_overview, load_plot_data

    data = load_plot_data(flat_log, t_from=20, t_to=60)
    fig = draw_overview(data.series, data.events, data.protections, data.gaps)
    try:
        ax_v = fig.axes[0]
        lo, hi = ax_v.get_ylim()
        cells = data.series.cells_v
        assert lo < np.nanmin(cells) and hi > np.nanmax(cells)
        assert hi - lo < 0.1, (lo, hi)  # the cells fill the panel, not 2.8..4.25 V
        texts = [t.get_text() for t in ax_v.texts]
        assert any("OV 4.25 V" in t and "↑" in t for t in texts), texts
        assert any("UV 2.8 V" in t and "↓" in t for t in texts), texts
        assert not [ln for ln in ax_v.get_lines() if ln.get_label() in ("OV limit", "UV limit")]
    finally:
        plt.close(fig)


def test_a_plot_near_the_limits_keeps_the_limit_lines(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from cellguard.views.plot import draw_overview, load_plot_data

    run_ = Run()
    for k in range(50):  # a charge from 3.0 V to 4.2 V: the OV limit is near, UV too
        run_.add(1, cells=(3000 + 24 * k, 3010 + 24 * k))
    log = write(tmp_path / "charge.sqlite", (INFO, run_.rows))
    data = load_plot_data(log)
    fig = draw_overview(data.series, data.events, data.protections, data.gaps)
    try:
        ax_v = fig.axes[0]
        labels = {ln.get_label() for ln in ax_v.get_lines()}
        assert {"OV limit", "UV limit"} <= labels
        lo, hi = ax_v.get_ylim()
        assert lo < 2.8 and hi > 4.25
        assert not [t for t in ax_v.texts if "↑" in t.get_text() or "↓" in t.get_text()]
    finally:
        plt.close(fig)


def test_zoomed_html_scales_to_the_cells_and_marks_the_limits(flat_log: Path) -> None:
    from cellguard.views.plot import html_figure, load_plot_data

    fig = html_figure(load_plot_data(flat_log, t_from=20, t_to=60))
    lo, hi = fig.layout.yaxis.range
    assert 3.65 < lo < 3.7 and 3.72 < hi < 3.78
    notes = [a.text for a in fig.layout.annotations]
    assert any("OV 4.25 V" in n and "↑" in n for n in notes), notes
    assert any("UV 2.8 V" in n and "↓" in n for n in notes), notes
    assert not [s for s in fig.layout.shapes if s.type == "line" and s.y0 in (4.25, 2.8)]
