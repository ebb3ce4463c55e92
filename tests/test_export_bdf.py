"""export --format bdf: read back by the Battery Data Alliance's own reader (batterydf, ``bdf``)
and by cellpy, every column checked against the log; the step/cycle rule's properties.

Logs are written with LogWriter from synthetic telemetry of known currents and
voltages (tests/test_offline.py's Run), so steps, cycles, Ah and Wh are known
here in closed form. No network: batterydf only reads an ontology when
BDF_ONTOLOGY(_PATH) is set, which the autouse fixture removes, and it and
cellpy run with sockets refused.
"""

from __future__ import annotations

import hashlib
import json
import socket
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_offline import INFO, OTHER, Run, write

from cellguard import cli
from cellguard.formats import bdf as bdfmod
from cellguard.formats.cycling import (
    CHARGE,
    DISCHARGE,
    REST,
    StepRule,
    derive,
    raw_modes,
    step_modes,
)
from cellguard.store import LogReader

ROOT = Path(__file__).resolve().parents[1]
YML = ROOT / "host" / "cellguard" / "formats" / "cellpy_cellguard.yml"

STRICT = ["Test Time / s", "Voltage / V", "Current / A", "Unix Time / s", "Cycle Count / 1",
          "Step Count / 1", "Charging Capacity / Ah", "Discharging Capacity / Ah",
          "Net Capacity / Ah", "Charging Energy / Wh", "Discharging Energy / Wh",
          "Net Energy / Wh", "Power / W", "Surface Temperature T1 / degC"]

CHG, DCH = (4000, 4100), (3600, 3650)  # cell mV while charging, discharging; rest (3700, 3710)
LOST = 30  # frames lost in the middle of the second charge: a 31 s interval, a gap


def cycling_run() -> Run:
    """rest (with a 3 s spike) | charge 3 A | rest | discharge 6 A | rest | charge 3 A, a gap
    in it | rest. Steps 1..7; cycle 2 from the second charge."""
    return (Run().add(30).add(3, 2000).add(27)
            .add(600, 3000, cells=CHG).add(120)
            .add(300, -6000, cells=DCH).add(60)
            .add(200, 3000, cells=CHG).add(200, 3000, skip=LOST, cells=CHG).add(30))


STEPS = [(1, 1, 60), (2, 1, 600), (3, 1, 120), (4, 1, 300), (5, 1, 60), (6, 2, 400), (7, 2, 30)]
"""(Step Count, Cycle Count, samples) in order."""
# Closed form, trapezoid between samples 1 s apart; each block starts and ends beside a 0 A
# sample (half a period each side), the gap is not integrated (a period less per side).
CHARGE_AS = 2.0 * 3 + 3.0 * 600 + 3.0 * (400 - 1)
CHARGE_WS = 7.41 * 2.0 * 3 + 8.1 * 3.0 * 600 + 8.1 * 3.0 * (400 - 1)
DISCHARGE_AS, DISCHARGE_WS = 6.0 * 300, 7.25 * 6.0 * 300


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ontology source, no sockets: the readers must work from what is installed."""
    monkeypatch.delenv("BDF_ONTOLOGY_PATH", raising=False)
    monkeypatch.delenv("BDF_ONTOLOGY", raising=False)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network use in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("bdf") / "run.sqlite", (INFO, cycling_run().rows))


def main(*args: str) -> int:
    return cli.main(list(args))


def load_bdf(path: Path) -> pd.DataFrame:
    import bdf
    import bdf.io

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a legacy label or non-monotonic time warns: fail
        df = bdf.io.load(path)
        report = bdf.validate_df(df)
    assert report["ok"] and report["missing"] == []
    assert report["legacy_labels"] == []
    assert report["time_stats"]["monotonic"]
    return df


def check_against_log(df: pd.DataFrame, log: Path, cell: int | None = None) -> None:
    """Every BDF column against the log's samples, within the CSV's printed precision."""
    with LogReader(log) as reader:
        (board_id, info), = reader.boards()
        s = reader.series(board_id, info)
    assert list(df.columns) == STRICT
    assert len(df) == len(s)
    v = s.pack_v if cell is None else s.cells_v[:, cell]
    assert np.allclose(df["Test Time / s"], s.t, atol=5e-4, rtol=0)
    assert np.allclose(df["Voltage / V"], v, atol=5e-4, rtol=0)
    assert np.allclose(df["Current / A"], s.current_a, atol=5e-4, rtol=0)
    assert np.allclose(df["Power / W"], v * s.current_a, atol=5e-6, rtol=0)
    assert np.allclose(df["Surface Temperature T1 / degC"], s.temps_c[:, 0], atol=0.05, rtol=0)
    # Unix time: host time of the samples, advancing with test time, never backwards
    unix, test = df["Unix Time / s"].to_numpy(), df["Test Time / s"].to_numpy()
    assert np.ptp(unix - test) < 1e-3
    assert np.allclose(unix, s.host_time, atol=5e-4, rtol=0)
    assert (np.diff(unix) > 0).all()
    # charging is positive, as in the log and in BDF
    charging = df["Step Count / 1"].isin([2, 6])
    assert (df.loc[charging, "Current / A"] > 0).all()
    assert (df.loc[df["Step Count / 1"] == 4, "Current / A"] < 0).all()
    # steps and cycles: the profile's blocks, in order
    got = [(int(a), int(b), int(n)) for (a, b), n in
           df.groupby(["Step Count / 1", "Cycle Count / 1"], sort=False).size().items()]
    assert got == STEPS
    assert df["Step Count / 1"].is_monotonic_increasing
    # capacities and energies from the start, never reset, in closed form
    last = df.iloc[-1]
    assert last["Charging Capacity / Ah"] == pytest.approx(CHARGE_AS / 3600, abs=1e-6)
    assert last["Discharging Capacity / Ah"] == pytest.approx(DISCHARGE_AS / 3600, abs=1e-6)
    if cell is None:
        assert last["Charging Energy / Wh"] == pytest.approx(CHARGE_WS / 3600, abs=1e-6)
        assert last["Discharging Energy / Wh"] == pytest.approx(DISCHARGE_WS / 3600, abs=1e-6)
    for label in ("Charging Capacity / Ah", "Discharging Capacity / Ah",
                  "Charging Energy / Wh", "Discharging Energy / Wh"):
        assert (np.diff(df[label].to_numpy()) >= 0).all(), label
    net = df["Charging Capacity / Ah"] - df["Discharging Capacity / Ah"]
    assert np.allclose(df["Net Capacity / Ah"], net, atol=2e-6, rtol=0)
    net_wh = df["Charging Energy / Wh"] - df["Discharging Energy / Wh"]
    assert np.allclose(df["Net Energy / Wh"], net_wh, atol=2e-6, rtol=0)
    # the gap: nothing integrated over it, the step goes on
    k = int(np.flatnonzero(np.diff(s.t) > 5.0)[0])
    assert s.t[k + 1] - s.t[k] == pytest.approx(LOST + 1)
    assert df["Charging Capacity / Ah"].iloc[k + 1] == df["Charging Capacity / Ah"].iloc[k]
    assert df["Step Count / 1"].iloc[k + 1] == df["Step Count / 1"].iloc[k] == 6


@pytest.mark.parametrize("suffix", [".bdf.csv", ".bdf.parquet"])
def test_round_trip_through_batterydf(log: Path, tmp_path: Path, suffix: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"run{suffix}"
    assert main("export", str(log), "--format", "bdf", "-o", str(out), "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["format"] == "bdf" and printed["columns"] == STRICT
    assert printed["files"] == [str(out), str(out) + ".metadata.json"]
    check_against_log(load_bdf(out), log)
    if suffix == ".bdf.parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(out)
        assert str(schema.field("Step Count / 1").type) == "int64"
        assert schema.field("Current / A").metadata == {b"unit": b"A"}


def test_sidecar_names_the_source_the_board_and_the_rule(log: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.bdf.csv"
    assert main("export", str(log), "--format", "bdf", "-o", str(out),
                "--rest-current", "0.1", "--min-step", "5") == 0
    meta = json.loads((tmp_path / "run.bdf.csv.metadata.json").read_text())
    prov = meta["provenance"]
    assert prov["source_file"] == "run.sqlite"
    assert prov["source_sha256"] == hashlib.sha256(log.read_bytes()).hexdigest()
    assert prov["generator"].startswith("cellguard ") and prov["rows"] == len(cycling_run().rows)
    assert meta["board"]["unique_id"] == INFO.unique_id and meta["board"]["cell_count"] == 2
    assert meta["cell_model"]["chemistry"] == "nmc"
    assert meta["step_rule"]["rest_current_a"] == 0.1
    assert meta["step_rule"]["release_current_a"] == 0.05
    assert meta["step_rule"]["min_step_s"] == 5
    assert meta["test_object"]["kind"] == "pack"
    assert meta["time"]["unix_offset_s"] == pytest.approx(1_700_000_000.0)
    assert [g["reason"] for g in meta["gaps"]["list"]] == ["lost frames"]
    assert [c["label"] for c in meta["columns"]] == STRICT


def test_per_cell_files(log: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.bdf.parquet"
    assert main("export", str(log), "--format", "bdf", "--per-cell", "-o", str(out)) == 0
    assert not out.exists()
    with LogReader(log) as reader:
        (bid, info), = reader.boards()
        s = reader.series(bid, info)
    for k in range(2):
        path = tmp_path / f"run.cell0{k + 1}.bdf.parquet"
        df = load_bdf(path)
        check_against_log(df, log, cell=k)
        wh = df["Charging Energy / Wh"].iloc[-1]  # the cell's own voltage times the current
        cell_v = {0: (4.0, 3.6), 1: (4.1, 3.65)}[k]
        assert wh == pytest.approx((cell_v[0] * 3.0 * 999 + 3.7 * 2.0 * 3 * (k == 0)
                                    + 3.71 * 2.0 * 3 * (k == 1)) / 3600, abs=1e-6)
        assert np.allclose(df["Voltage / V"], s.cells_v[:, k])
        meta = json.loads(Path(str(path) + ".metadata.json").read_text())
        assert meta["test_object"] == {"kind": "cell", "cell": k + 1,
                                       "note": "a series cell: it carries the pack current"}


def test_extras_only_when_asked_and_clearly_named(log: Path, tmp_path: Path) -> None:
    import bdf

    out = tmp_path / "x.bdf.csv"
    assert main("export", str(log), "--format", "bdf", "--extra", "-o", str(out)) == 0
    df = pd.read_csv(out)
    extra = [c for c in df.columns if c not in STRICT]
    assert list(df.columns[: len(STRICT)]) == STRICT
    assert extra and all(c.startswith("cellguard ") for c in extra)
    assert {"cellguard Cell 1 Voltage / V", "cellguard SoC / %", "cellguard Step Type",
            "cellguard Sequence"} <= set(extra)
    assert bdf.validate_df(df)["extras"] == extra
    types = df.groupby("Step Count / 1")["cellguard Step Type"].first().tolist()
    assert types == ["rest", "charge", "rest", "discharge", "rest", "charge", "rest"]
    with LogReader(log) as reader:
        seq = [s.seq for s in reader.samples()]
    assert df["cellguard Sequence"].tolist() == seq


def test_european_csv_and_every(log: Path, tmp_path: Path) -> None:
    full, eu = tmp_path / "full.bdf.csv", tmp_path / "eu.bdf.csv"
    assert main("export", str(log), "--format", "bdf", "-o", str(full)) == 0
    assert main("export", str(log), "--format", "bdf", "-o", str(eu), "--sep", ";",
                "--decimal", ",", "--every", "10") == 0
    text = eu.read_text()
    assert text.splitlines()[1].startswith("0,000;7,410;0,000;1700000000,000;1;1;")
    a = pd.read_csv(full)
    b = pd.read_csv(eu, sep=";", decimal=",")
    assert list(b.columns) == STRICT
    # every 10th sample, with the capacities integrated over all of them
    pd.testing.assert_frame_equal(b, a.iloc[::10].reset_index(drop=True))
    plain = tmp_path / "plain.csv"
    assert main("export", str(log), "-o", str(plain), "--sep", "\\t", "--decimal", ",",
                "--every", "100") == 0
    rows = plain.read_text().splitlines()
    assert len(rows) == 1 + len(range(0, len(cycling_run().rows), 100))
    assert rows[0].split("\t")[:3] == ["t_s", "seq", "state"]
    assert rows[2].split("\t")[:2] == ["100,000", "100"]


def test_spreadsheet_row_limit(log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bdfmod, "SHEET_ROWS", 500)  # the log has 1 630 samples
    for fmt in ("bdf", "csv"):
        out = tmp_path / f"big.{fmt}.csv"
        assert main("export", str(log), "--format", fmt, "-o", str(out)) == 1
        err = capsys.readouterr().err
        assert "more than a spreadsheet holds" in err and "--every 4 fits" in err, err
        assert "Parquet" in err and "--no-row-limit" in err
        assert not out.exists()
        assert main("export", str(log), "--format", fmt, "-o", str(out), "--every", "4") == 0
        assert main("export", str(log), "--format", fmt, "-o", str(out), "--force",
                    "--no-row-limit") == 0
        assert len(out.read_text().splitlines()) == 1 + len(cycling_run().rows)
    parquet = tmp_path / "big.bdf.parquet"
    assert main("export", str(log), "--format", "bdf", "-o", str(parquet)) == 0


def test_refusals_are_one_line_and_lose_nothing(log: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.bdf.csv"
    out.write_text("keep me")
    link = tmp_path / "link.bdf.csv"
    link.symlink_to(log)  # the log under a BDF name
    cases = [
        (["-o", str(out)], "exists"),
        (["-o", str(link), "--force"], "this command's input"),
        (["-o", str(tmp_path / "run.txt")], "give -o run.bdf.csv or -o run.bdf.parquet"),
        (["-o", str(tmp_path / "e.csv"), "--sep", ",", "--decimal", ","], "--sep ';'"),
        (["-o", str(tmp_path / "e.parquet"), "--sep", ";"], "for CSV, not Parquet"),
        (["--per-cell"], "one file per cell"),
    ]
    for extra, message in cases:
        assert main("export", str(log), "--format", "bdf", *extra) == 1, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert out.read_text() == "keep me"
    sidecar_only = tmp_path / "s.bdf.csv"
    Path(str(sidecar_only) + ".metadata.json").write_text("{}")
    assert main("export", str(log), "--format", "bdf", "-o", str(sidecar_only)) == 1
    assert "exists" in capsys.readouterr().err and not sidecar_only.exists()
    assert main("export", str(log), "--per-cell", "-o", str(tmp_path / "p.csv")) == 1
    assert "go with --format bdf" in capsys.readouterr().err
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a log at all")
    assert main("export", str(junk), "--format", "bdf", "-o", str(tmp_path / "j.bdf.csv")) == 1
    assert "not a cellguard log" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "junk.sqlite", "link.bdf.csv", "run.bdf.csv", "s.bdf.csv.metadata.json"]


def test_several_boards_need_board(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "two.sqlite", (INFO, Run().add(20, 1000).rows),
                 (OTHER, Run().add(30, -1000, cells=(3700, 3710, 3720), temps=(250, 260)).rows))
    out = tmp_path / "two.bdf.csv"
    assert main("export", str(path), "--format", "bdf", "-o", str(out)) == 1
    err = capsys.readouterr().err
    assert "one test object per file" in err and "--board" in err and "2 = sim-8s" in err
    assert main("export", str(path), "--format", "bdf", "--board", "beef", "-o", str(out)) == 0
    df = load_bdf(out)
    assert len(df) == 30 and df["Voltage / V"].iloc[0] == pytest.approx(11.13)
    assert "Surface Temperature T2 / degC" in df.columns


def test_stdout(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main("export", str(log), "--format", "bdf", "--to", "10") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(",") == STRICT and len(lines) == 12


def test_cellpy_instrument_file_loads_the_csv(log: Path, tmp_path: Path) -> None:
    cellpy = pytest.importorskip("cellpy")  # in the dev extra; skipped only outside it
    from cellpy.readers.instruments.configurations import (
        register_local_configuration_from_yaml_file,
    )

    from cellguard.formats.cellpy_hook import cellpy_hook

    params = register_local_configuration_from_yaml_file(YML)
    assert set(params.normal_headers_renaming_dict.values()) <= set(STRICT)
    out = tmp_path / "run.bdf.csv"
    assert main("export", str(log), "--format", "bdf", "-o", str(out)) == 0
    c = cellpy.get(str(out), instrument="local_instrument", instrument_file=str(YML),
                   pre_processor_hook=cellpy_hook,
                   custom_log_dir=str(tmp_path))  # its log files, not in the working folder
    raw = c.data.raw
    assert len(raw) == len(cycling_run().rows)
    assert np.allclose(raw["current"].to_numpy(), pd.read_csv(out)["Current / A"].to_numpy())
    assert raw["date_time"].iloc[0] == pd.Timestamp(1_700_000_000, unit="s")
    summary = c.data.summary
    assert summary.index.tolist() == [1, 2]  # indexed by cycle
    # cellpy's summary, in the file's Ah: each cycle's own charge and discharge
    assert summary["charge_capacity"].tolist() == pytest.approx(
        [(2.0 * 3 + 3.0 * 600) / 3600, 3.0 * 399 / 3600], abs=2e-6)
    assert summary["discharge_capacity"].tolist() == pytest.approx([1800 / 3600, 0.0], abs=2e-6)
    # ... and converted by the file's raw units (Ah) into cellpy's own (mAh)
    assert summary["charge_capacity_absolute"].tolist() == pytest.approx(
        [(2.0 * 3 + 3.0 * 600) / 3.6, 3.0 * 399 / 3.6], abs=2e-3)


# -- the step and cycle rule --------------------------------------------------------------------

RULE = StepRule(rest_current_a=0.05, min_step_s=10.0)

segment = st.tuples(st.sampled_from([0.0, 0.01, -0.02, 0.04, 0.06, 1.0, 2.5, -0.06, -1.0, -3.0]),
                    st.integers(1, 40), st.booleans())


def profile(segments: list[tuple[float, int, bool]]) -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray, np.ndarray]:
    """Piecewise-constant current at 1 s; a segment flagged True starts after a 20 s gap."""
    t, i, seg, gap = [], [], [], []
    now = 0.0
    for k, (amps, n, after_gap) in enumerate(segments):
        for j in range(n):
            if t:
                jump = 20.0 if (after_gap and j == 0) else 1.0
                now += jump
                gap.append(jump > 5.0)
            t.append(now)
            i.append(amps)
            seg.append(k)
    return np.array(t), np.array(i), np.array(seg), np.array(gap, dtype=bool)


@settings(max_examples=150, deadline=None)
@given(st.lists(segment, min_size=1, max_size=12))
def test_step_rule_properties(segments: list[tuple[float, int, bool]]) -> None:
    t, i, seg, gap = profile(segments)
    v = 3.7 + 0.1 * np.sign(i)
    c = derive(t, i, v, gap, RULE)
    # a constant-current segment never holds a step change
    for k in np.unique(seg):
        assert len(np.unique(c.step[seg == k])) == 1
    # steps from 1, up by at most one per sample, only where the mode changes
    assert c.step[0] == 1 and set(np.diff(c.step)) <= {0, 1}
    assert ((np.diff(c.step) == 1) == (np.diff(c.mode) != 0)).all()
    # cycles up only at a charge step's start, after a discharge step
    ups = np.flatnonzero(np.diff(c.cycle)) + 1
    assert c.cycle[0] == 1 and set(np.diff(c.cycle)) <= {0, 1}
    for k in ups:
        assert c.mode[k] == CHARGE and DISCHARGE in c.mode[:k]
    # capacities and energies only grow; net = charge - discharge; nothing over a gap
    for arr in (c.charge_ah, c.discharge_ah, c.charge_wh, c.discharge_wh):
        assert (np.diff(arr) >= 0).all()
        assert (np.diff(arr)[gap] == 0).all()
    assert np.array_equal(c.net_ah, c.charge_ah - c.discharge_ah)
    # the total matches the trapezoid of |I| when no interval crosses zero
    dt = np.where(gap, 0.0, np.diff(t))
    if not ((i[:-1] * i[1:]) < 0).any():
        total = float(((np.abs(i[:-1]) + np.abs(i[1:])) / 2 * dt).sum()) / 3600
        assert c.charge_ah[-1] + c.discharge_ah[-1] == pytest.approx(total, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-0.0249, 0.0249), min_size=30, max_size=300),
       st.integers(0, 299), st.integers(1, 9))
def test_noise_and_short_spikes_make_no_steps(noise: list[float], at: int, width: int) -> None:
    """Rest noise below the release threshold (noise in the hysteresis band holds a charge
    or discharge on), and a spike shorter than the minimum step, stay rest."""
    i = np.array(noise)
    i[at % len(i): at % len(i) + width] = 5.0
    t = np.arange(len(i), dtype=float)
    modes = step_modes(t, i, np.zeros(len(i) - 1, dtype=bool), RULE)
    assert (raw_modes(i, RULE) == CHARGE).any()  # the spike is there before the merge ...
    assert (modes == REST).all()  # ... and gone after it


def test_hysteresis_and_minimum_duration() -> None:
    i = np.array([0.0] * 20 + [0.06] * 20 + [0.03] * 20 + [0.02] * 20 + [-1.0] * 5 + [0.0] * 20)
    t = np.arange(len(i), dtype=float)
    modes = step_modes(t, i, np.zeros(len(i) - 1, dtype=bool), RULE)
    # 0.03 A stays charge (above the release 0.025 A), 0.02 A is rest; the 5 s discharge
    # is too short for a step of its own and joins the rest before it
    assert modes.tolist() == [REST] * 20 + [CHARGE] * 40 + [REST] * 45
    with pytest.raises(ValueError):
        StepRule(0.0)
