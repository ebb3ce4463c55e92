"""The SoC band: the estimator's SoC ± 2σ, from the log's ESTIMATE rows, in `cellguard plot`
(the PNG/SVG overview and the HTML page) and in `cellguard monitor`.

Logs are written with LogWriter (as test_offline's): telemetry rows and, beside each,
an ESTIMATE whose SoC and standard deviation are known, so the band's extent is
known here. The SVG's coordinates are mapped back to SoC through the SoC panel's
frame in the same file (its y range is fixed at -2..102 %).
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import INFO_FIELDS, TELEMETRY_FIELDS
from test_offline import INFO, Row, Run, main

from cellguard.link.client import Info, Telemetry
from cellguard.store import LogWriter, Series, SocEstimates
from cellguard.views.monitor import Limits, MonitorState, snapshot_text
from cellguard.views.plot import (
    BAND_LABEL,
    ESTIMATE_LABEL,
    PNG_BUCKETS,
    estimate_gaps,
    html_figure,
    load_plot_data,
    thin_estimates,
)

T0 = 1_700_000_000.0
SVG = "{http://www.w3.org/2000/svg}"
SOC_VIEW = (-2.0, 102.0)  # the SoC panel's y range
PLAIN_TRACES = ["cell 1", "cell 2", "current", "SoC", "sensor 1"]


def estimate(ms: int, soc_cpct: int, std_cpct: int, mode: str = "ekf") -> dict[str, Any]:
    """An ESTIMATE payload as the logger stores it."""
    return {"board_time_ms": ms, "mode": mode, "soc_cpct": soc_cpct, "soc_std_cpct": std_cpct,
            "cell_soc_min_cpct": soc_cpct, "cell_soc_max_cpct": soc_cpct, "capacity_mah": 3000,
            "capacity_cpct": 10000, "r0_growth_cpct": 10000, "bias_ma": 0,
            **{k: 0 for k in ("charge_limit_ma", "charge_peak_2s_ma", "charge_peak_10s_ma",
                              "charge_peak_30s_ma", "discharge_limit_ma",
                              "discharge_peak_2s_ma", "discharge_peak_10s_ma",
                              "discharge_peak_30s_ma", "balancing")}}


def write_log(path: Path, rows: list[Row], std_cpct: Callable[[Row], int] | None) -> Path:
    """Telemetry rows, each followed by an ESTIMATE of the same SoC (none: ``std_cpct``
    None) at the same board time; a negative standard deviation is the coulomb mode's."""
    w = LogWriter(path)
    bid = w.add_board(INFO, "/dev/ttyTEST")
    for r in rows:
        w.add(bid, r.telemetry(), host_time=T0 + r.ms / 1000)
        if std_cpct is not None:
            std = std_cpct(r)
            w.add_estimate(bid, estimate(r.ms, r.soc, std, "ekf" if std >= 0 else "coulomb"),
                           host_time=T0 + r.ms / 1000)
    w.close()
    return path


def rising(n: int = 100) -> list[Row]:
    """SoC 95.00 % rising 0.05 points a second: 99.95 % at the last row."""
    rows = Run().add(n, 1500).rows
    for r in rows:
        r.soc = 9500 + 5 * r.seq
    return rows


# --- reading the written files ---------------------------------------------------------------


def svg_ids(svg: str) -> dict[str, ET.Element]:
    return {el.get("id", ""): el for el in ET.fromstring(svg).iter() if el.get("id")}


def _vertices(path: ET.Element) -> np.ndarray:
    nums = re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", path.get("d", ""))
    return np.array([float(v) for v in nums]).reshape(-1, 2)


def path_points(group: ET.Element) -> np.ndarray:
    """Every (x, y) vertex an SVG group draws: its paths, and the paths in its <defs>
    where a <use> places them (matplotlib writes a filled area so, with an offset)."""
    defined = {p.get("id"): p for d in group.iter(f"{SVG}defs") for p in d.iter(f"{SVG}path")}
    drawn = [_vertices(p) for p in group.iter(f"{SVG}path") if p.get("id") not in defined]
    for use in group.iter(f"{SVG}use"):
        ref = next(v for k, v in use.attrib.items() if k.endswith("href")).lstrip("#")
        offset = np.array([float(use.get("x", 0)), float(use.get("y", 0))])
        drawn.append(_vertices(defined[ref]) + offset)
    return np.concatenate(drawn)


def soc_of_svg_y(svg: str, y: np.ndarray) -> np.ndarray:
    """SVG y coordinates in the SoC panel as SoC, through the panel's frame (its first
    patch: the axes' background rectangle)."""
    frame = path_points(next(iter(svg_ids(svg)["axes_3"])))
    top, bottom = frame[:, 1].min(), frame[:, 1].max()
    lo, hi = SOC_VIEW
    return lo + (bottom - y) / (bottom - top) * (hi - lo)


def page_traces(page: str) -> list[dict[str, Any]]:
    """The plotly traces written into an HTML page, their arrays decoded."""
    start = page.index("[", page.index("Plotly.newPlot("))
    traces, _ = json.JSONDecoder().raw_decode(page, start)
    for trace in traces:
        for key in ("x", "y"):
            v = trace.get(key)
            if isinstance(v, dict) and "bdata" in v:
                trace[key] = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return traces


def plot_files(path: Path, tmp_path: Path,
               capsys: pytest.CaptureFixture[str]) -> tuple[str, str, dict[str, Any]]:
    svg, page = tmp_path / "p.svg", tmp_path / "p.html"
    assert main("plot", str(path), "-o", str(svg), "--html", str(page), "--json") == 0
    return svg.read_text(), page.read_text(), json.loads(capsys.readouterr().out)


# --- cellguard plot ----------------------------------------------------------------------------


def test_a_log_with_estimates_gets_the_band_clipped_at_100(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """σ = 1.5 points: the band is SoC ± 3, so 92..98 % at the start and up to 100 %,
    not 102.95, at the end; over the estimates' whole time span."""
    path = write_log(tmp_path / "a.sqlite", rising(), lambda r: 150)
    svg, page, info = plot_files(path, tmp_path, capsys)
    assert info["estimates"] == 100
    ids = svg_ids(svg)
    band, line = path_points(ids["soc_band"]), path_points(ids["soc_estimate"])
    soc = soc_of_svg_y(svg, band[:, 1])
    assert soc.min() == pytest.approx(92.0, abs=0.01)
    assert soc.max() == pytest.approx(100.0, abs=0.01)
    first = soc[band[:, 0] == band[:, 0].min()]
    assert first.min() == pytest.approx(92.0, abs=0.01)  # at t = 0: 95 ± 3
    assert first.max() == pytest.approx(98.0, abs=0.01)
    assert band[:, 0].min() == pytest.approx(line[:, 0].min(), abs=1e-3)
    assert band[:, 0].max() == pytest.approx(line[:, 0].max(), abs=1e-3)
    assert any(k.startswith("legend") for k in svg_ids(ET.tostring(ids["axes_3"], "unicode")))

    traces = {t.get("name"): t for t in page_traces(page)}
    assert list(traces) == ["cell 1", "cell 2", "current", "SoC (telemetry)", BAND_LABEL,
                            ESTIMATE_LABEL, "sensor 1"]
    fill = traces[BAND_LABEL]
    assert fill["fill"] == "toself"
    x, y = fill["x"], fill["y"]
    assert np.nanmin(y) == pytest.approx(92.0) and np.nanmax(y) == pytest.approx(100.0)
    assert (np.nanmin(x), np.nanmax(x)) == (0.0, 99.0)  # seconds: the run is 99 s
    assert y[x == 0.0].tolist() == pytest.approx([98.0, 92.0])
    assert y[x == 99.0].tolist() == pytest.approx([100.0, 99.95 - 3.0])


def test_the_html_report_shades_the_band_in_its_overview(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`cellguard report --format html`: the overview chart is the plot's, band included
    (92..100 %: σ = 1.5 points); a log without estimates gets none."""
    for std, band in ((150, (92.0, 100.0)), (None, None)):
        path = write_log(tmp_path / f"r{std}.sqlite", rising(),
                         None if std is None else (lambda r, s=std: s))
        out = tmp_path / f"r{std}.html"
        assert main("report", str(path), "--format", "html", "-o", str(out)) == 0
        page = out.read_text()
        svg = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
        ids = svg_ids(svg)
        if band is None:
            assert "soc_band" not in ids
            continue
        soc = soc_of_svg_y(svg, path_points(ids["soc_band"])[:, 1])
        assert (soc.min(), soc.max()) == (pytest.approx(band[0], abs=0.01),
                                          pytest.approx(band[1], abs=0.01))


def test_a_log_without_estimates_plots_as_before(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_log(tmp_path / "a.sqlite", rising(), None)
    svg, page, info = plot_files(path, tmp_path, capsys)
    assert info["estimates"] == 0
    ids = svg_ids(svg)
    assert "soc_band" not in ids and "soc_estimate" not in ids
    assert not any(k.startswith("legend") for k in svg_ids(ET.tostring(ids["axes_3"], "unicode")))
    assert [t.get("name") for t in page_traces(page)] == PLAIN_TRACES
    assert "±2σ" not in page and "\\u00b12\\u03c3" not in page


def test_coulomb_rows_get_no_band(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The coulomb baseline (soc_std_cpct -1) draws its SoC without a band; a log that
    switches from the filter to the baseline has the band over the filter's rows only."""
    path = write_log(tmp_path / "coulomb.sqlite", rising(), lambda r: -1)
    svg, page, info = plot_files(path, tmp_path, capsys)
    assert info["estimates"] == 100
    ids = svg_ids(svg)
    assert "soc_estimate" in ids and "soc_band" not in ids
    traces = {t.get("name"): t for t in page_traces(page)}
    assert BAND_LABEL not in traces and ESTIMATE_LABEL in traces
    assert set(traces[ESTIMATE_LABEL]["text"]) == {"no band (coulomb baseline)"}

    mixed = write_log(tmp_path / "mixed.sqlite", rising(), lambda r: 100 if r.seq < 50 else -1)
    fig = html_figure(load_plot_data(mixed))
    band = next(t for t in fig.data if t.name == BAND_LABEL)
    assert (np.nanmin(band.x), np.nanmax(band.x)) == (0.0, 49.0)


def test_an_estimate_that_is_not_a_number_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_log(tmp_path / "a.sqlite", rising(10), lambda r: 100)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE estimates SET soc_std_cpct = 'abc' WHERE rowid = 5")
    db.close()
    assert main("plot", str(path), "-o", str(tmp_path / "p.png")) == 1
    err = capsys.readouterr().err
    assert "the estimates hold a value that is not a number" in err and "Traceback" not in err
    assert not (tmp_path / "p.png").exists()


# --- thinning ---------------------------------------------------------------------------------


def series_at(t: np.ndarray, boot: np.ndarray | None = None) -> Series:
    n = len(t)
    zeros = np.zeros(n)
    return Series(board_id=1, info=INFO, t=t, boot=np.zeros(n, np.int64) if boot is None else boot,
                  seq=np.arange(n), board_ms=(t * 1000).astype(np.int64), host_time=t + T0,
                  state=["active"] * n, faults=np.zeros(n, np.int64), warnings=None,
                  alarms=None, pack_v=zeros, current_a=zeros, soc_pct=zeros,
                  cells_v=np.zeros((n, 2)), temps_c=np.zeros((n, 1)))


def test_a_week_is_thinned_to_the_buckets_and_the_band_covers_every_row() -> None:
    """A week at 1 s with an hour unplugged: about 2 points a bucket, a break at the gap,
    the SoC's extremes kept, and the thinned band is each bucket's envelope: it covers
    every row's band and goes no wider than the widest."""
    rng = np.random.default_rng(1)
    t = np.arange(7 * 24 * 3600, dtype=float)
    t = t[(t < 3 * 86400) | (t >= 3 * 86400 + 3600)]
    soc = np.clip(50 + np.cumsum(rng.normal(0, 0.05, len(t))), 0, 100)
    std = np.where(rng.random(len(t)) < 0.01, -1.0, rng.uniform(0.2, 3.0, len(t)))
    est = SocEstimates.from_wire(t, np.round(soc * 100), np.round(std * 100))
    lines = thin_estimates(est, series_at(t), PNG_BUCKETS)
    assert len(lines.t) < 2 * PNG_BUCKETS + 2 * 400
    gap = (lines.t > 3 * 86400 - 1) & (lines.t < 3 * 86400 + 3600)
    assert gap.sum() == 1 and np.isnan(lines.soc[gap]).all()  # the line breaks there
    assert np.nanmin(lines.soc) == est.soc_pct.min()
    assert np.nanmax(lines.soc) == est.soc_pct.max()
    drawn = np.isfinite(lines.lo)
    lo = np.interp(est.t, lines.t[drawn], lines.lo[drawn])
    hi = np.interp(est.t, lines.t[drawn], lines.hi[drawn])
    band_lo = np.clip(est.soc_pct - 2 * est.std_pct, 0, 100)
    band_hi = np.clip(est.soc_pct + 2 * est.std_pct, 0, 100)
    has = np.isfinite(band_lo)
    assert (lo[has] <= band_lo[has] + 1e-9).all() and (hi[has] >= band_hi[has] - 1e-9).all()
    assert np.nanmin(lines.lo) == np.nanmin(band_lo)
    assert np.nanmax(lines.hi) == np.nanmax(band_hi)


def test_estimates_break_at_their_own_gaps_and_where_the_telemetry_restarted() -> None:
    """A board restart between two samples a second apart breaks the telemetry's line;
    the estimates' too, unless one came between. Estimates missing for longer than five
    of their periods break the line while telemetry went on."""
    t = np.arange(20, dtype=float)
    series = series_at(t, boot=(t >= 10).astype(np.int64))
    est = SocEstimates.from_wire(t, np.full(20, 5000), np.full(20, 100))
    assert np.flatnonzero(estimate_gaps(est, series)).tolist() == [9]
    between = SocEstimates.from_wire(np.r_[t[:10], 9.5, t[10:]], np.full(21, 5000),
                                     np.full(21, 100))
    assert not estimate_gaps(between, series).any()
    t = np.arange(100, dtype=float)
    held = np.r_[t[:40], t[44:60], t[70:]]  # 5 s and 11 s from one estimate to the next
    est = SocEstimates.from_wire(held, np.full(len(held), 5000), np.full(len(held), 100))
    assert np.flatnonzero(estimate_gaps(est, series_at(t))).tolist() == [55]


# --- cellguard monitor ----------------------------------------------------------------------


def monitor_with(std_cpct: int | None, mode: str = "ekf", est_ms: int = 1000) -> MonitorState:
    info = Info.from_wire({**INFO_FIELDS, "known_types": [0x10, 0x12]})
    s = MonitorState("/dev/ttyACM0", info, Limits.from_info(info), started=0.0)
    s.on_telemetry(Telemetry.from_wire({**TELEMETRY_FIELDS, "board_time_ms": 1100,
                                        "soc_cpct": 6320}), 1.0)
    if std_cpct is not None:
        s.on_estimate(estimate(est_ms, 6320, std_cpct, mode))
    return s


def soc_cell(state: MonitorState) -> str:
    line = next(x for x in snapshot_text(state, 1.5).splitlines() if "| SoC" in x)
    return line.split("|")[2].strip()


def test_monitor_shows_the_band_beside_the_soc() -> None:
    assert soc_cell(monitor_with(None)) == "63.2 %"  # no ESTIMATE: as before
    s = monitor_with(70)
    assert soc_cell(s) == "63.2 % ± 1.4 (2σ)"
    assert s.to_dict(1.5)["estimate"] == {"board_time_s": 1.0, "mode": "ekf",
                                          "soc_pct": 63.2, "soc_std_pct": 0.7}
    coulomb = monitor_with(-1, "coulomb")
    assert soc_cell(coulomb) == "63.2 % (coulomb: no band)"
    assert coulomb.to_dict(1.5)["estimate"]["soc_std_pct"] is None
    assert soc_cell(monitor_with(70, est_ms=60_000)) == "63.2 %"  # not this moment's
    assert monitor_with(None).to_dict(1.5)["estimate"] is None
