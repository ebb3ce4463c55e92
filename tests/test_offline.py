"""export, plot and report: numbers derived from the logged inputs, selections, error paths.

Logs are written with LogWriter from synthetic telemetry whose currents and
voltages are known, so charge and energy are computed here from the inputs.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellguard import cli
from cellguard.link.client import FAULT_BITS, Info, Telemetry
from cellguard.store import LogReader, LogWriter
from cellguard.views.report import build_report, integrate_split

INFO = Info(protocol="1.2", firmware_version="0.1.0", board="sim-4s", unique_id="abcd",
            chemistry="nmc", cell_count=2, temp_count=1, capacity_ah=3.0,
            control_period_s=0.1, telemetry_period_s=1.0, cell_ov_v=4.25, cell_uv_v=2.8,
            temp_max_c=60.0, temp_min_c=-20.0, charge_current_max_a=6.0,
            discharge_current_max_a=15.0)
OTHER = replace(INFO, board="sim-8s", unique_id="beef", cell_count=3, temp_count=2)
OV = FAULT_BITS["cell_overvoltage"]
HAS_EVENTS = hasattr(LogWriter, "add_event")


@dataclass
class Row:
    """One sample as the board sends it (wire units)."""

    seq: int
    ms: int
    current_ma: int = 0
    cells: tuple[int, ...] = (3700, 3710)
    temps: tuple[int, ...] = (251,)
    faults: int = 0
    warnings: int = 0
    soc: int = 5000

    def telemetry(self) -> Telemetry:
        return Telemetry.from_wire({
            "telemetry_seq": self.seq, "board_time_ms": self.ms, "state": "active",
            "faults": self.faults, "warnings": self.warnings, "alarms": 0, "allowed": 3,
            "pack_mv": sum(self.cells), "current_ma": self.current_ma, "soc_cpct": self.soc,
            "cells_mv": list(self.cells), "temps_dc": list(self.temps),
        })


@dataclass
class Run:
    """Builds a row list: segments of constant current at a fixed period."""

    period_ms: int = 1000
    rows: list[Row] = field(default_factory=list)

    def add(self, n: int, current_ma: int = 0, skip: int = 0, **kw: object) -> Run:
        seq = self.rows[-1].seq + 1 + skip if self.rows else 0
        for k in range(n):
            self.rows.append(Row(seq + k, (seq + k) * self.period_ms, current_ma, **kw))  # type: ignore[arg-type]
        return self


def write(path: Path, *boards: tuple[Info, list[Row]],
          events: Sequence[tuple[int, dict]] = ()) -> Path:
    w = LogWriter(path)
    for info, rows in boards:
        bid = w.add_board(info, "/dev/ttyTEST")
        mine = sorted((p for b, p in events if b == bid), key=lambda p: p["board_time_ms"])
        for r in rows:
            while mine and mine[0]["board_time_ms"] <= r.ms:  # as they arrive: in time order
                w.add_event(bid, mine.pop(0), host_time=1_700_000_000.0 + r.ms / 1000)
            w.add(bid, r.telemetry(), host_time=1_700_000_000.0 + r.ms / 1000)
    w.close()
    return path


def main(*args: str) -> int:
    return cli.main(list(args))


def report_json(path: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main("report", str(path), "--json", *extra) == 0
    return json.loads(capsys.readouterr().out)


# --- charge and energy ---------------------------------------------------------------------


def test_charge_and_energy_from_known_currents(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # Between rests, N samples of current I at period p carry exactly I*N*p by the
    # trapezoid rule (half a period at each edge, where the neighbour reads 0 A).
    p = 1.0
    charge = dict(n=1800, current_ma=2000, cells=(4000, 4100))  # 2 A at 8.1 V for 1800 samples
    discharge = dict(n=900, current_ma=-1500, cells=(3500, 3600))  # -1.5 A at 7.1 V
    run = Run().add(10).add(**charge).add(60).add(**discharge).add(10)
    path = write(tmp_path / "a.sqlite", (INFO, run.rows))
    rep = report_json(path, capsys=capsys)
    ce = rep["boards"][0]["charge_energy"]
    ah_in = 2.0 * 1800 * p / 3600
    ah_out = 1.5 * 900 * p / 3600
    assert ce["charge_in_ah"] == pytest.approx(ah_in, rel=1e-12)
    assert ce["charge_out_ah"] == pytest.approx(ah_out, rel=1e-12)
    assert ce["net_charge_ah"] == pytest.approx(ah_in - ah_out, rel=1e-12)
    assert ce["energy_in_wh"] == pytest.approx(8.1 * ah_in, rel=1e-12)
    assert ce["energy_out_wh"] == pytest.approx(7.1 * ah_out, rel=1e-12)
    assert ce["skipped_s"] == 0 and ce["integrated_s"] == len(run.rows) - 1
    b = rep["boards"][0]
    assert b["duration_s"] == len(run.rows) - 1
    assert b["samples"] == len(run.rows) and b["lost_frames"] == 0 and b["gaps"] == []
    assert b["pack"]["current_max_charge_a"] == 2.0
    assert b["pack"]["current_max_discharge_a"] == 1.5
    assert b["pack"]["v_min"] == pytest.approx(7.1) and b["pack"]["v_max"] == pytest.approx(8.1)


def test_a_gap_is_not_integrated_and_is_listed(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # 2 A throughout; 99 frames lost in the middle: the 100 s interval is left out.
    n1, n2, lost = 300, 200, 99
    run = Run().add(5).add(n1, 2000).add(n2, 2000, skip=lost).add(5)
    path = write(tmp_path / "a.sqlite", (INFO, run.rows))
    b = report_json(path, capsys=capsys)["boards"][0]
    ce = b["charge_energy"]
    # Inside each block (n-1) periods, half a period at each rest edge; none across the gap.
    # JSON carries Ah to 1 µAh (docs/cli.md): half a period at 2 A is 278 µAh.
    assert ce["charge_in_ah"] == pytest.approx(2.0 * (n1 - 1 + n2 - 1 + 1) / 3600, abs=1e-6)
    assert ce["skipped_s"] == lost + 1 and ce["skipped_intervals"] == 1
    assert b["lost_frames"] == lost
    gap = b["gaps"][0]
    assert gap["lost"] == lost and gap["reason"] == "lost frames"
    resume = run.rows[5 + n1].ms / 1000
    assert gap["end_s"] == resume and gap["start_s"] == resume - lost - 1
    assert gap["no_samples_s"] == lost + 1


def test_silent_spell_without_a_recorded_gap_is_listed(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run = Run().add(20, 1000)
    for r in run.rows[10:]:  # board time jumps 60 s, the counter does not
        r.ms += 60_000
    path = write(tmp_path / "a.sqlite", (INFO, run.rows))
    b = report_json(path, capsys=capsys)["boards"][0]
    assert [(g["reason"], g["no_samples_s"]) for g in b["gaps"]] == [("no samples", 61.0)]
    assert b["charge_energy"]["charge_in_ah"] == pytest.approx(1.0 * 18 / 3600, rel=1e-12)


def test_integrate_split_matches_the_trapezoid_and_splits_at_zero() -> None:
    t = np.array([0.0, 1.0, 2.0, 4.0])
    y = np.array([2.0, -2.0, -2.0, 0.0])
    pos, neg = integrate_split(t, y)
    assert pos == pytest.approx(0.5)  # 2 A falling to 0 over half a second
    assert neg == pytest.approx(0.5 + 2.0 + 2.0)
    skip = np.array([False, True, False])
    assert integrate_split(t, y, skip) == pytest.approx((0.5, 0.5 + 2.0))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=40),
       st.lists(st.floats(0.01, 10), min_size=39, max_size=39))
def test_integrate_split_parts_add_up(ys: list[float], steps: list[float]) -> None:
    t = np.concatenate([[0.0], np.cumsum(steps[: len(ys) - 1])])
    y = np.array(ys)
    pos, neg = integrate_split(t, y)
    assert pos >= 0 and neg >= 0
    net = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(t)))
    assert pos - neg == pytest.approx(net, abs=1e-9 * (1 + np.abs(y).sum() * t[-1]))


segments = st.lists(st.tuples(st.integers(-5000, 5000), st.integers(1, 15)), min_size=1,
                    max_size=8)


@settings(max_examples=25, deadline=None)
@given(segments, st.sampled_from([100, 1000, 2500]))
def test_charge_of_piecewise_constant_current(tmp_path_factory: pytest.TempPathFactory,
                                              segs: list[tuple[int, int]],
                                              period_ms: int) -> None:
    """Segments of constant current, sampled every period, through a real log.

    By the trapezoid rule the net charge is p * (sum of the samples - (first + last) / 2);
    it splits into in and out, each within a period's worth of current per change of the
    true (sample-and-hold) charge in and out.
    """
    run = Run(period_ms=period_ms)
    for current, n in segs:
        run.add(n, current)
    path = write(tmp_path_factory.mktemp("log") / "a.sqlite", (INFO, run.rows))
    rep, _, _ = build_report(path)
    ce = rep["boards"][0]["charge_energy"]
    p = period_ms / 1000
    amps = [r.current_ma / 1000 for r in run.rows]
    net_as = p * (sum(amps) - (amps[0] + amps[-1]) / 2)
    assert ce["charge_in_ah"] >= 0 and ce["charge_out_ah"] >= 0
    assert (ce["charge_in_ah"] - ce["charge_out_ah"]) * 3600 == pytest.approx(net_as, abs=1e-9)
    true_in = p * sum(max(i, 0) / 1000 * n for i, n in segs)
    true_out = p * sum(max(-i, 0) / 1000 * n for i, n in segs)
    changes = itertools.pairwise(i for i, _ in segs)
    tolerance = p * (sum(max(abs(a), abs(b)) for a, b in changes) + abs(segs[-1][0])) / 1000
    tolerance += 1e-9
    assert abs(ce["charge_in_ah"] * 3600 - true_in) <= tolerance
    assert abs(ce["charge_out_ah"] * 3600 - true_out) <= tolerance
    if all(i >= 0 for i, _ in segs):
        assert ce["charge_out_ah"] == 0


@pytest.mark.skipif(not hasattr(LogWriter, "port_lost"), reason="this logger records no replug")
def test_replug_gap_is_listed_once_with_its_reason(tmp_path: Path) -> None:
    run = Run().add(20, 1000).add(20, 1000, skip=60)  # 60 frames sent while unplugged
    w = LogWriter(tmp_path / "a.sqlite")
    bid = w.add_board(INFO, "/dev/serial/by-id/test")
    for r in run.rows[:20]:
        w.add(bid, r.telemetry(), host_time=1000.0 + r.ms / 1000)
    w.port_lost(bid, host_time=1020.5)
    w.port_back(bid, host_time=1079.5, uptime_ms=run.rows[20].ms - 100)
    for r in run.rows[20:]:
        w.add(bid, r.telemetry(), host_time=1000.0 + r.ms / 1000)
    w.close()
    rep, _, _ = build_report(tmp_path / "a.sqlite")
    b = rep["boards"][0]
    assert [(g["reason"], g["start_s"], g["end_s"], g["away_s"]) for g in b["gaps"]] == [
        ("unplugged", 19.0, 80.0, 59.0)]
    assert b["unplugged"] == 1 and b["lost_frames"] == 0 and b["missed_unplugged"] == 60
    assert b["charge_energy"]["skipped_s"] == 61.0


# --- cells, temperatures, imbalance, protections -------------------------------------------


def test_report_statistics_from_the_inputs(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(7)
    cells = rng.integers(3000, 4200, size=(400, 3))
    temps = rng.integers(-100, 450, size=(400, 2))
    rows = [Row(k, k * 1000, 0, tuple(int(v) for v in cells[k]), tuple(int(v) for v in temps[k]),
                faults=OV if 100 <= k < 150 else 0, warnings=1 if k >= 390 else 0)
            for k in range(400)]
    path = write(tmp_path / "a.sqlite", (OTHER, rows))
    b = report_json(path, capsys=capsys)["boards"][0]
    assert (b["board"], b["unique_id"], b["firmware"]) == ("sim-8s", "beef", "0.1.0")
    for c, stats in enumerate(b["cells_v"]):
        assert stats["min"] == cells[:, c].min() / 1000
        assert stats["max"] == cells[:, c].max() / 1000
        assert stats["min_t_s"] == float(np.argmin(cells[:, c]))
        assert stats["mean"] == pytest.approx(cells[:, c].mean() / 1000, abs=0.5e-4)  # 0.1 mV
    for s, stats in enumerate(b["temperatures_c"]):
        assert stats["min"] == pytest.approx(temps[:, s].min() / 10)
        assert stats["max_t_s"] == float(np.argmax(temps[:, s]))
    spread = (cells.max(axis=1) - cells.min(axis=1)).astype(float)
    imb = b["imbalance"]
    for q in (50, 90, 99):
        assert imb["percentiles_mv"][f"p{q}"] == pytest.approx(np.percentile(spread, q))
    assert imb["max_mv"] == pytest.approx(spread.max())
    assert imb["max_t_s"] == float(np.argmax(spread))
    assert sum(r["samples"] for r in imb["intervals"]) == 400
    assert max(r["max_mv"] for r in imb["intervals"]) == pytest.approx(spread.max())
    got = [(e["name"], e["severity"], e["start_s"], e["end_s"]) for e in b["protections"]]
    assert ("cell_overvoltage", "fault", 100.0, 150.0) in got
    assert (next(iter(FAULT_BITS)), "warning", 390.0, None) in got


@pytest.mark.skipif(not HAS_EVENTS, reason="this logger stores no FAULT_EVENTs")
def test_fault_events_appear_in_report_and_plot(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rows = [Row(k, 10_000 + k * 1000, faults=OV if 20 <= k < 30 else 0) for k in range(40)]
    trip = {"event_index": 5, "board_time_ms": 10_000 + 20_000, "kind": "trip",
            "severity": "fault", "fault": OV, "value": 4260, "faults": OV}
    release = {**trip, "event_index": 6, "board_time_ms": 10_000 + 30_000, "kind": "release",
               "value": 4100, "faults": 0}
    path = write(tmp_path / "a.sqlite", (INFO, rows), events=[(1, trip), (1, release)])
    b = report_json(path, capsys=capsys)["boards"][0]
    ev = [(e["t_s"], e["kind"], e["names"], e["value_si"]) for e in b["events"]]
    assert ev == [(20.0, "trip", ["cell_overvoltage"], "4.26 V"),
                  (30.0, "release", ["cell_overvoltage"], "4.1 V")]
    assert main("report", str(path)) == 0
    md = capsys.readouterr().out
    assert "cell_overvoltage" in md and "4.26 V" in md and "FAULT_EVENT" in md
    assert main("plot", str(path), "-o", str(tmp_path / "p.png"), "--json") == 0
    assert json.loads(capsys.readouterr().out)["events"] == 2


def test_schema_1_log_without_events_or_warnings(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "old.sqlite", (INFO, Run().add(30, 500).add(10, 500, skip=3).rows))
    with sqlite3.connect(path) as db:  # what a first-version logger left behind
        if db.execute("SELECT name FROM sqlite_master WHERE name = 'events'").fetchone():
            db.execute("DROP TABLE events")
        cols = {r[1] for r in db.execute("PRAGMA table_info(telemetry)")}
        for col in ("warnings", "alarms", "allowed"):
            if col in cols:
                db.execute(f"ALTER TABLE telemetry DROP COLUMN {col}")
        if "duration_s" in {r[1] for r in db.execute("PRAGMA table_info(gaps)")}:
            db.execute("CREATE TABLE old_gaps AS SELECT board_id, boot, after_seq, lost, t_s,"
                       " host_time, reason FROM gaps")
            db.execute("DROP TABLE gaps")
            db.execute("ALTER TABLE old_gaps RENAME TO gaps")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    b = report_json(path, capsys=capsys)["boards"][0]
    assert b["events"] == [] and b["warnings_logged"] is False
    assert b["lost_frames"] == 3 and b["gaps"][0]["no_samples_s"] == 4.0
    # 0.5 A over 29 + 9 one-second intervals; the 4 s one is within five periods: kept.
    assert b["charge_energy"]["charge_in_ah"] == pytest.approx(0.5 * (29 + 4 + 9) / 3600,
                                                               abs=1e-6)
    assert main("report", str(path)) == 0
    assert "does not record alarms and warnings" in capsys.readouterr().out


# --- export --------------------------------------------------------------------------------


def two_board_log(tmp_path: Path) -> Path:
    a = Run().add(50, 1000).rows
    b = [Row(k, k * 500, -2000, (3300, 3400, 3500), (200, 210)) for k in range(80)]
    return write(tmp_path / "two.sqlite", (INFO, a), (OTHER, b))


def test_parquet_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    path = two_board_log(tmp_path)
    out = tmp_path / "x.parquet"
    assert main("export", str(path), "--format", "parquet", "-o", str(out), "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    table = pq.read_table(out)
    assert summary["rows"] == table.num_rows == 130
    assert table.column_names == summary["columns"] == [
        "board", "t_s", "seq", "state", "faults", "pack_v", "current_a", "soc_pct",
        "cell1_v", "cell2_v", "cell3_v", "temp1_c", "temp2_c"]
    schema = table.schema
    for name in ("board", "seq", "faults"):
        assert schema.field(name).type == pa.int64()
    for name in ("t_s", "pack_v", "current_a", "cell1_v", "temp2_c"):
        assert schema.field(name).type == pa.float64()
    assert schema.field("cell1_v").metadata[b"unit"] == b"V"
    data = table.to_pydict()
    with LogReader(path) as r:
        samples = list(r.samples())
    assert data["t_s"] == [s.t_s for s in samples]
    assert data["cell2_v"] == [s.cells_v[1] for s in samples]
    assert data["current_a"][-1] == -2.0 and data["current_a"][0] == 1.0
    assert data["cell3_v"][0] is None and data["cell3_v"][-1] == 3.5  # board 1 has 2 cells
    assert data["temp2_c"][-1] == 21.0
    boards = json.loads(schema.metadata[b"cellguard.boards"])
    assert [b["unique_id"] for b in boards] == ["abcd", "beef"]


def test_selection_by_time_and_board(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = two_board_log(tmp_path)
    assert main("export", str(path), "--board", "beef", "--from", "10", "--to", "0:20") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("t_s,seq,") and "cell3_v" in lines[0]  # one board: no column
    times = [float(x.split(",")[0]) for x in lines[1:]]
    assert times == [10 + 0.5 * k for k in range(21)]
    assert main("export", str(path), "--board", "1", "--to", "1m") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 50 and "cell3_v" not in lines[0]
    assert main("export", str(path)) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("board,t_s,")
    rep = report_json(path, "--board", "sim-8s", "--from", "30", capsys=capsys)
    assert [b["unique_id"] for b in rep["boards"]] == ["beef"]
    assert rep["boards"][0]["t_first_s"] == 30 and rep["boards"][0]["samples"] == 20


# --- plot and the HTML pages ---------------------------------------------------------------


def no_remote_resources(page: str) -> None:
    assert not re.search(r"""<script[^>]*\bsrc\s*=\s*["']?(https?:)?//""", page, re.I)
    assert not re.search(r"""<link[^>]*\bhref\s*=\s*["']?(https?:)?//""", page, re.I)
    assert not re.search(r"""@import|url\(\s*["']?(https?:)?//""", page, re.I)
    assert not re.search(r"""<img[^>]*\bsrc\s*=\s*["']?(https?:)?//""", page, re.I)


def test_plot_png_and_offline_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = Run().add(100, 1500).add(100, -1500, skip=20).rows
    for r in rows[120:140]:
        r.faults = OV
    path = write(tmp_path / "a.sqlite", (INFO, rows))
    png, page = tmp_path / "p.png", tmp_path / "p.html"
    assert main("plot", str(path), "-o", str(png), "--html", str(page), "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 200 and info["protections"] == 1 and info["gaps"] == 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    no_remote_resources(text)
    assert "Plotly.newPlot" in text and "cell_overvoltage" in text
    assert len(re.findall(r"<script", text)) >= 1


def test_report_html_is_self_contained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = Run().add(5).add(100, 1500).add(5).add(50, -1000).add(5).rows
    path = write(tmp_path / "a.sqlite", (INFO, rows))
    out = tmp_path / "r.html"
    assert main("report", str(path), "-o", str(out)) == 0
    page = out.read_text()
    no_remote_resources(page)
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2
    assert f"{1.5 * 100 / 3600:.3f} Ah / {1.0 * 50 / 3600:.3f} Ah" in page  # charge in / out
    md = tmp_path / "r.md"
    assert main("report", str(path), "--format", "md", "-o", str(md)) == 0
    assert md.read_text().startswith("# cellguard run report")


# --- errors --------------------------------------------------------------------------------


def test_error_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = two_board_log(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    cases = [
        (["export", str(path), "--from", "20", "--to", "10"], "empty range"),
        (["export", str(path), "--from", "500"], "the log covers"),
        (["export", str(path), "--board", "nope"], "has no board 'nope'"),
        (["export", str(path), "--format", "parquet"], "give an output file"),
        (["export", str(path), "-o", str(tmp_path / "no" / "x.csv")], "cannot write"),
        (["report", str(path), "-o", str(tmp_path / "no" / "r.md")], "cannot write"),
        (["plot", str(path), "-o", str(tmp_path / "no" / "p.png")], "cannot write"),
        (["report", str(path), "--board", "9"], "has no board '9'"),
        (["plot", str(text), "-o", str(tmp_path / "p.png")], "not a cellguard log"),
        (["report", str(tmp_path / "missing.sqlite")], "no such log file"),
        (["export", str(text)], "not a cellguard log"),
    ]
    for argv, words in cases:
        assert main(*argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("cellguard: error: ") and words in err, (argv, err)
    assert not (tmp_path / "no").exists()
    assert list(tmp_path.glob(".*.tmp")) == []
    with pytest.raises(SystemExit) as exc:
        main("export", str(path), "--from", "soon")
    assert exc.value.code == 2 and "not a time" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # a usage error, as the docs say: exit 2
        main("plot", str(path))
    assert exc.value.code == 2
    assert "cellguard plot: error: give -o FILE.png" in capsys.readouterr().err


def test_commands_exit_non_zero_in_a_real_process(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\x00" * 4096)
    for command in ("export", "plot", "report"):
        proc = subprocess.run([sys.executable, "-m", "cellguard.cli", command, str(junk),
                               "-o", str(tmp_path / "out")], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "not a cellguard log" in proc.stderr
