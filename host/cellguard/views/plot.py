"""Plot a cellguard log: cell voltages, current, SoC, temperatures and protections over time.

A PNG through matplotlib, or an interactive HTML page (zoom, pan, hover) through
plotly with its JavaScript embedded, so the page works offline. Long logs are
thinned for drawing by keeping each bucket's minimum and maximum, so a short
peak still shows; lines break at gaps rather than bridging them. Where the log
holds ESTIMATE rows the SoC panel adds the estimator's SoC and its ±2σ band,
thinned to each bucket's envelope so the band drawn covers every row's.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; works without a display
import matplotlib.pyplot as plt

from ..errors import LogFileError
from ..files import atomic_output, check_output, write_text
from ..store import LogReader, SocEstimates
from ..store.query import (
    GAP_PERIODS,
    Series,
    check_range,
    check_samples,
    choose_boards,
    episodes,
    load_series,
    read_events,
    read_gaps,
)

PNG_BUCKETS = 2000
HTML_BUCKETS = 5000
SVG_BUCKETS = 800
SEVERITY_COLOURS = {"fault": "red", "alarm": "darkorange", "warning": "gold"}
LIMIT_NEAR = 0.25
"""A limit closer to the cells than this share of their span (at least LIMIT_NEAR_V)
is drawn as a line in view; a farther one is marked at the panel's edge instead, so
a zoomed plot keeps the cells spread over the panel."""
LIMIT_NEAR_V = 0.05
BAND_SIGMAS = 2.0
"""The SoC band drawn: the estimate ± this many of its standard deviations (about 95 %
of the time the true SoC is inside it, when the estimator is calibrated)."""
BAND_LABEL = "estimate ±2σ (≈95 %)"
ESTIMATE_LABEL = "SoC estimate"
BAND_RGBA = "rgba(44, 160, 44, 0.25)"  # tab:green, as the SoC line


# --- thinning ------------------------------------------------------------------------------


def _minmax(t: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """At most 2 points per bucket and column: its extremes, in the order they occur."""
    n = len(t)
    if n <= 2 * buckets:
        return t, y
    size = int(np.ceil(n / buckets))
    m = n // size
    head_t, head_y = t[: m * size].reshape(m, size), y[: m * size].reshape(m, size, -1)
    lo = np.argmin(np.where(np.isnan(head_y), np.inf, head_y), axis=1)  # (m, cols)
    hi = np.argmax(np.where(np.isnan(head_y), -np.inf, head_y), axis=1)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    rows = np.arange(m)[:, None]
    cols = np.arange(head_y.shape[2])[None, :]
    y_out = np.stack([head_y[rows, first, cols], head_y[rows, second, cols]], axis=1)
    t_out = np.stack([head_t[:, 0], head_t[:, -1]], axis=1)
    t_out = t_out.reshape(-1)
    y_out = y_out.reshape(2 * m, -1)
    if m * size < n:
        t_out = np.concatenate([t_out, t[m * size :]])
        y_out = np.concatenate([y_out, y[m * size :]])
    return t_out, y_out


def _envelope(t: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """A band's two columns (low, high) at most 2 points per bucket: the bucket's lowest
    low and highest high, at its first and last time (the buckets of :func:`_minmax`),
    so the thinned band covers every row's band. A bucket without a band stays NaN."""
    n = len(t)
    if n <= 2 * buckets:
        return t, y
    size = int(np.ceil(n / buckets))
    m = n // size
    head_t = t[: m * size].reshape(m, size)
    lo = y[: m * size, 0].reshape(m, size)
    hi = y[: m * size, 1].reshape(m, size)
    lo_min = np.where(np.isnan(lo), np.inf, lo).min(axis=1)
    hi_max = np.where(np.isnan(hi), -np.inf, hi).max(axis=1)
    lo_min[np.isinf(lo_min)] = np.nan
    hi_max[np.isinf(hi_max)] = np.nan
    t_out = np.stack([head_t[:, 0], head_t[:, -1]], axis=1).reshape(-1)
    y_out = np.repeat(np.stack([lo_min, hi_max], axis=1), 2, axis=0)
    if m * size < n:
        t_out = np.concatenate([t_out, t[m * size :]])
        y_out = np.concatenate([y_out, y[m * size :]])
    return t_out, y_out


Thinner = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def _thin_stretches(t: np.ndarray, gaps: np.ndarray, y2: np.ndarray, buckets: int,
                    thinner: Thinner) -> tuple[np.ndarray, np.ndarray]:
    """Each stretch between gaps (``gaps[i]``: the interval i, i+1 is one) thinned on its
    share of the buckets, with a NaN row between stretches so lines break there."""
    cuts = np.flatnonzero(gaps) + 1
    edges = [0, *cuts.tolist(), len(t)]
    ts, ys = [], []
    for a, b in itertools.pairwise(edges):
        share = max(1, int(buckets * (b - a) / len(t)))
        t_part, y_part = thinner(t[a:b], y2[a:b], share)
        if ts:
            ts.append(np.array([(ts[-1][-1] + t_part[0]) / 2.0]))
            ys.append(np.full((1, y2.shape[1]), np.nan))
        ts.append(t_part)
        ys.append(y_part)
    return np.concatenate(ts), np.concatenate(ys)


def thin(series: Series, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """(t, y) for drawing: min/max thinned per stretch between gaps, NaN rows at the gaps."""
    y2 = y.reshape(len(y), -1)
    if not len(series):
        return series.t, y2
    return _thin_stretches(series.t, series.gap_mask(), y2, buckets, _minmax)


# --- the estimator's SoC and its band ------------------------------------------------------


def soc_band(est: SocEstimates) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the band, ±BAND_SIGMAS standard deviations clipped to 0..100 %;
    NaN where the estimator gave no standard deviation (the coulomb baseline)."""
    half = BAND_SIGMAS * est.std_pct
    return np.clip(est.soc_pct - half, 0.0, 100.0), np.clip(est.soc_pct + half, 0.0, 100.0)


def estimate_gaps(est: SocEstimates, series: Series) -> np.ndarray:
    """True for each interval (i, i+1) of the estimates that is a gap: longer than
    GAP_PERIODS of their own period, or spanning a gap of the telemetry (a replug, a
    board restart) with no estimate inside it."""
    n = len(est)
    if n < 2:
        return np.zeros(0, dtype=bool)
    dt = np.diff(est.t)
    steps = dt[dt > 0]
    period = float(np.median(steps)) if len(steps) else series.period_s
    mask = dt > GAP_PERIODS * period
    held = np.flatnonzero(series.gap_mask())
    if len(held):
        before = np.searchsorted(est.t, series.t[held], side="right") - 1
        inside = (before >= 0) & (before < n - 1)
        before, after = before[inside], series.t[held + 1][inside]
        mask[before[est.t[before + 1] >= after]] = True
    return mask


@dataclass
class EstimateLines:
    """The estimator's SoC and its band, thinned for drawing (NaN rows at gaps)."""

    t: np.ndarray
    soc: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def has_band(self) -> bool:
        return bool(np.isfinite(self.lo).any())


def _soc_and_band(t: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    t_out, soc = _minmax(t, y[:, :1], buckets)
    _, band = _envelope(t, y[:, 1:], buckets)  # the same buckets: the same times
    return t_out, np.hstack([soc, band])


def thin_estimates(est: SocEstimates, series: Series, buckets: int) -> EstimateLines:
    """The SoC min/max-thinned and the band envelope-thinned, per stretch between gaps."""
    lo, hi = soc_band(est)
    if not len(est):
        return EstimateLines(est.t, est.soc_pct, lo, hi)
    y = np.column_stack([est.soc_pct, lo, hi])
    t, out = _thin_stretches(est.t, estimate_gaps(est, series), y, buckets, _soc_and_band)
    return EstimateLines(t, out[:, 0], out[:, 1], out[:, 2])


def band_polygons(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed outlines (along ``hi``, back along ``lo``) of each stretch with a band,
    NaN between them: one trace filled "toself" draws them all."""
    idx = np.flatnonzero(np.isfinite(lo) & np.isfinite(hi))
    if not len(idx):
        return np.zeros(0), np.zeros(0)
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]] + 1
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        if xs:
            xs.append(np.array([np.nan]))
            ys.append(np.array([np.nan]))
        xs.append(np.concatenate([x[a:b], x[a:b][::-1]]))
        ys.append(np.concatenate([hi[a:b], lo[a:b][::-1]]))
    return np.concatenate(xs), np.concatenate(ys)


@dataclass
class TimeAxis:
    scale: float
    unit: str

    @classmethod
    def for_series(cls, series: Series) -> TimeAxis:
        span = float(series.t[-1] - series.t[0]) if len(series) else 0.0
        if span >= 2 * 3600:
            return cls(3600.0, "h")
        if span >= 180:
            return cls(60.0, "min")
        return cls(1.0, "s")


def _spans(protections: Sequence[dict[str, Any]], last_t: float) -> list[tuple[float, float, str]]:
    """(start, end, severity) of the protection episodes, merged per severity."""
    out = []
    for severity in ("warning", "alarm", "fault"):
        ranges = sorted((p["start_s"], p["end_s"] if p["end_s"] is not None else last_t)
                        for p in protections if p["severity"] == severity)
        merged: list[list[float]] = []
        for a, b in ranges:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out += [(a, b, severity) for a, b in merged]
    return out


def _gap_spans(series: Series, gaps: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """(start, end) of the gaps long enough to see: longer than the gap threshold."""
    spans = {(g["start_s"], g["end_s"]) for g in gaps
             if g["start_s"] is not None and g["end_s"] is not None
             and g["end_s"] - g["start_s"] > series.max_dt_s}
    return sorted(spans)


@dataclass
class Limit:
    name: str  # OV, UV
    volts: float
    dash: str  # "--" or ":" (matplotlib); the page maps them to plotly's

    @property
    def label(self) -> str:
        return f"{self.name} {self.volts:g} V"


@dataclass
class VoltageView:
    """The cell-voltage panel's y range and where each limit goes."""

    lo: float
    hi: float
    inside: list[Limit]  # drawn as lines
    above: list[Limit]  # beyond the top: marked at the top edge (↑)
    below: list[Limit]  # below the bottom: marked at the bottom edge (↓)

    def edge_text(self, where: str) -> str:
        limits, arrow = (self.above, "↑") if where == "top" else (self.below, "↓")
        return "   ".join(f"{lim.label} {arrow}" for lim in limits)


def voltage_view(cells: np.ndarray, limits: Sequence[Limit]) -> VoltageView:
    """Scale to the cells (a margin of 5 %); keep a limit in view only when it is near them."""
    finite = cells[np.isfinite(cells)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
    else:  # no cell reading: show the limits
        lo = min((lim.volts for lim in limits), default=0.0)
        hi = max((lim.volts for lim in limits), default=1.0)
    near = max(LIMIT_NEAR * (hi - lo), LIMIT_NEAR_V)
    view_lo, view_hi = lo, hi
    for lim in limits:
        if lo - near <= lim.volts <= hi + near:
            view_lo, view_hi = min(view_lo, lim.volts), max(view_hi, lim.volts)
    pad = max(0.05 * (view_hi - view_lo), 0.005)
    view_lo, view_hi = view_lo - pad, view_hi + pad
    return VoltageView(view_lo, view_hi,
                       [lim for lim in limits if view_lo <= lim.volts <= view_hi],
                       [lim for lim in limits if lim.volts > view_hi],
                       [lim for lim in limits if lim.volts < view_lo])


def cell_limits(series: Series) -> list[Limit]:
    info = series.info
    return [Limit("OV", info.cell_ov_v, "--"), Limit("UV", info.cell_uv_v, ":")]


# --- matplotlib ----------------------------------------------------------------------------


def draw_overview(series: Series, events: Sequence[dict[str, Any]],
                  protections: Sequence[dict[str, Any]], gaps: Sequence[dict[str, Any]],
                  buckets: int = PNG_BUCKETS, figsize: tuple[float, float] = (10, 9),
                  estimates: SocEstimates | None = None) -> Any:
    info = series.info
    ax_t_ = TimeAxis.for_series(series)
    names = sorted({p["name"] for p in protections})
    rows = 5 if names else 4
    ratios = [3, 2, 2, 2] + ([max(1.0, 0.35 * len(names))] if names else [])
    fig, axes = plt.subplots(rows, 1, sharex=True, figsize=figsize, constrained_layout=True,
                             gridspec_kw={"height_ratios": ratios})
    ax_v, ax_i, ax_soc, ax_temp = axes[:4]

    def x(t: np.ndarray) -> np.ndarray:
        return t / ax_t_.scale

    t, cells = thin(series, series.cells_v, buckets)
    for c in range(cells.shape[1]):
        ax_v.plot(x(t), cells[:, c], lw=1, label=f"cell {c + 1}")
    view = voltage_view(series.cells_v, cell_limits(series))
    for lim in view.inside:
        ax_v.axhline(lim.volts, color="red", ls=lim.dash, lw=0.8, label=f"{lim.name} limit")
    for where, y, va in (("top", 0.98, "top"), ("bottom", 0.02, "bottom")):
        text = view.edge_text(where)
        if text:  # a limit beyond the view: named at the edge it lies past
            ax_v.text(0.995, y, text, transform=ax_v.transAxes, ha="right", va=va,
                      color="red", fontsize=7,
                      bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 1})
    ax_v.set_ylim(view.lo, view.hi)
    ax_v.set_ylabel("cell voltage (V)")
    ax_v.legend(loc="best", fontsize=7, ncol=min(6, cells.shape[1] + 2))
    t, cur = thin(series, series.current_a, buckets)
    ax_i.plot(x(t), cur[:, 0], color="tab:purple", lw=1)
    ax_i.axhline(0, color="grey", lw=0.5)
    ax_i.set_ylabel("current (A)\n+ = charging")
    t, soc = thin(series, series.soc_pct, buckets)
    (soc_line,) = ax_soc.plot(x(t), soc[:, 0], color="tab:green", lw=1)
    if estimates is not None and len(estimates):
        est = thin_estimates(estimates, series, buckets)
        soc_line.set_label("SoC (telemetry)")
        if est.has_band:
            band = ax_soc.fill_between(x(est.t), est.lo, est.hi, color="tab:green",
                                       alpha=0.25, lw=0, label=BAND_LABEL)
            band.set_gid("soc_band")
        (est_line,) = ax_soc.plot(x(est.t), est.soc, color="darkgreen", lw=0.8, ls="--",
                                  label=ESTIMATE_LABEL)
        est_line.set_gid("soc_estimate")
        ax_soc.legend(loc="best", fontsize=7, ncol=3)
    ax_soc.set_ylabel("SoC (%)")
    ax_soc.set_ylim(-2, 102)
    t, temps = thin(series, series.temps_c, buckets)
    for c in range(temps.shape[1]):
        ax_temp.plot(x(t), temps[:, c], lw=1, label=f"sensor {c + 1}")
    if temps.shape[1]:
        ax_temp.legend(loc="best", fontsize=7, ncol=min(6, temps.shape[1]))
    ax_temp.set_ylabel("temperature (°C)")
    last = float(series.t[-1])
    for a, b, severity in _spans(protections, last):
        for ax in axes[:4]:
            ax.axvspan(a / ax_t_.scale, b / ax_t_.scale, color=SEVERITY_COLOURS[severity],
                       alpha=0.15 if severity == "fault" else 0.1, lw=0)
    for a, b in _gap_spans(series, gaps):
        for ax in axes[:4]:
            ax.axvspan(a / ax_t_.scale, b / ax_t_.scale, color="grey", alpha=0.25, lw=0)
    trips = [e for e in events if e["t_s"] is not None]
    for e in trips:
        colour = "grey" if e["kind"] != "trip" else SEVERITY_COLOURS.get(e["severity"], "red")
        for ax in axes[:4]:
            ax.axvline(e["t_s"] / ax_t_.scale, color=colour, lw=0.7, ls="--")
    if trips:
        ax_v.plot([e["t_s"] / ax_t_.scale for e in trips if e["kind"] == "trip"],
                  [1.0] * sum(e["kind"] == "trip" for e in trips), "v", color="red",
                  transform=ax_v.get_xaxis_transform(), clip_on=False, ms=6)
    if names:
        ax_p = axes[4]
        for k, name in enumerate(names):
            for p in protections:
                if p["name"] != name:
                    continue
                end = p["end_s"] if p["end_s"] is not None else last
                ax_p.broken_barh([(p["start_s"] / ax_t_.scale,
                                   max(end - p["start_s"], 0) / ax_t_.scale)],
                                 (k - 0.35, 0.7), color=SEVERITY_COLOURS[p["severity"]])
        ax_p.set_yticks(range(len(names)), names, fontsize=7)
        ax_p.set_ylim(-0.6, len(names) - 0.4)
        ax_p.set_ylabel("protections")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(f"board time t_s ({ax_t_.unit})")
    fig.suptitle(f"{info.board} ({info.unique_id}), {info.chemistry}, {info.cell_count} cells"
                 " — shaded: red fault, orange alarm, yellow warning, grey gap;"
                 " dashed: FAULT_EVENT", fontsize=9)
    return fig


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    try:
        fig.savefig(buf, format="svg", metadata={"Creator": None, "Date": None,
                                                  "Format": None, "Type": None})
    finally:
        plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # inline: no XML prolog or DOCTYPE


def overview_svg(series: Series, events: Sequence[dict[str, Any]],
                 protections: Sequence[dict[str, Any]], gaps: Sequence[dict[str, Any]],
                 estimates: SocEstimates | None = None) -> str:
    return _svg(draw_overview(series, events, protections, gaps, buckets=SVG_BUCKETS,
                              figsize=(10, 8), estimates=estimates))


def imbalance_svg(series: Series) -> str:
    spread = (np.nanmax(series.cells_v, axis=1) - np.nanmin(series.cells_v, axis=1)) * 1000.0
    axis = TimeAxis.for_series(series)
    t, y = thin(series, spread, SVG_BUCKETS)
    fig, ax = plt.subplots(figsize=(10, 2.8), constrained_layout=True)
    ax.plot(t / axis.scale, y[:, 0], color="tab:blue", lw=1)
    ax.set_ylabel("cell spread (mV)")
    ax.set_xlabel(f"board time t_s ({axis.unit})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    return _svg(fig)


# --- loading -------------------------------------------------------------------------------


@dataclass
class PlotData:
    series: Series
    events: list[dict[str, Any]]
    protections: list[dict[str, Any]]
    gaps: list[dict[str, Any]]
    boards_in_log: int
    estimates: SocEstimates = field(default_factory=SocEstimates.empty)


def load_plot_data(log: str | Path, board: str | int | None = None,
                   t_from: float | None = None, t_to: float | None = None) -> PlotData:
    check_range(t_from, t_to)
    with LogReader(log) as reader:
        all_boards = reader.boards()
        chosen = choose_boards(reader, board)
        check_samples(reader, chosen, t_from, t_to)
        for bid, info in chosen:  # the first that has samples in the range
            series = load_series(reader, bid, info, t_from, t_to)
            if len(series):
                break
        gaps = read_gaps(reader, series, t_from, t_to)
        events = [e.to_dict() for e in read_events(reader, series, t_from, t_to)]
        estimates = reader.soc_estimates(series.board_id, t_from, t_to)
    return PlotData(series, events, [p.to_dict() for p in episodes(series)],
                    [g.to_dict() for g in gaps], len(all_boards), estimates)


def plot_log(log: str | Path, out: str | Path, board_id: str | int | None = None,
             t_from: float | None = None, t_to: float | None = None,
             force: bool = False) -> PlotData:
    """Write a PNG (or any format matplotlib knows by the extension) of one board."""
    check_output(out, inputs=[log], force=force)
    data = load_plot_data(log, board_id, t_from, t_to)
    write_png(data, out, inputs=[log], force=force)
    return data


def write_png(data: PlotData, out: str | Path, *, inputs: Iterable[str | Path] = (),
              force: bool = False) -> None:
    """The overview to ``out`` (format by its extension), written through a
    temporary file (:func:`cellguard.files.atomic_output`)."""
    fmt = Path(out).suffix[1:].lower() or None
    fig = draw_overview(data.series, data.events, data.protections, data.gaps,
                        estimates=data.estimates)
    try:
        with atomic_output(out, inputs=inputs, force=force) as tmp:
            fig.savefig(tmp, dpi=110, format=fmt or plt.rcParams["savefig.format"])
    except ValueError as exc:  # an extension matplotlib does not know
        raise LogFileError(f"cannot write plot {out}: {exc}") from None
    finally:
        plt.close(fig)


# --- interactive HTML ----------------------------------------------------------------------


def html_figure(data: PlotData) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    s, info = data.series, data.series.info
    axis = TimeAxis.for_series(s)
    names = sorted({p["name"] for p in data.protections})
    rows = 5 if names else 4
    heights = [0.34, 0.2, 0.18, 0.18] + ([0.1] if names else [])
    total = sum(heights)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.025,
                        row_heights=[h / total for h in heights])
    hover = "t_s %{customdata:.1f} s<br>%{fullData.name}: %{y}<extra></extra>"

    def add(y: np.ndarray, row: int, labels: list[str], unit: str, fmt: str) -> None:
        t, ys = thin(s, y, HTML_BUCKETS)
        for c, label in enumerate(labels):
            fig.add_trace(go.Scattergl(
                x=t / axis.scale, y=ys[:, c], customdata=t, name=label, mode="lines",
                line={"width": 1}, legendgroup=str(row),
                hovertemplate=hover.replace("%{y}", f"%{{y:{fmt}}} {unit}"),
            ), row=row, col=1)

    add(s.cells_v, 1, [f"cell {c + 1}" for c in range(s.cells_v.shape[1])], "V", ".3f")
    add(s.current_a, 2, ["current"], "A", "+.3f")
    add(s.soc_pct, 3, ["SoC (telemetry)" if len(data.estimates) else "SoC"], "%", ".1f")
    if len(data.estimates):
        est = thin_estimates(data.estimates, s, HTML_BUCKETS)
        if est.has_band:
            px, py = band_polygons(est.t / axis.scale, est.lo, est.hi)
            fig.add_trace(go.Scatter(
                x=px, y=py, mode="lines", fill="toself", fillcolor=BAND_RGBA,
                line={"width": 0}, name=BAND_LABEL, legendgroup="3", hoverinfo="skip",
            ), row=3, col=1)
        fig.add_trace(go.Scattergl(
            x=est.t / axis.scale, y=est.soc, customdata=est.t, name=ESTIMATE_LABEL,
            mode="lines", line={"width": 1, "dash": "dash", "color": "darkgreen"},
            legendgroup="3", text=_band_text(est),
            hovertemplate="t_s %{customdata:.1f} s<br>SoC estimate: %{y:.1f} %<br>%{text}"
                          "<extra></extra>",
        ), row=3, col=1)
    add(s.temps_c, 4, [f"sensor {c + 1}" for c in range(s.temps_c.shape[1])], "°C", ".1f")
    view = voltage_view(s.cells_v, cell_limits(s))
    for lim in view.inside:
        fig.add_hline(y=lim.volts, line={"color": "red", "width": 1,
                                         "dash": "dash" if lim.dash == "--" else "dot"},
                      row=1, col=1)
    for where, y, anchor in (("top", 1.0, "top"), ("bottom", 0.0, "bottom")):
        text = view.edge_text(where)
        if text:  # a limit beyond the view: named at the edge it lies past
            fig.add_annotation(text=text, xref="x domain", yref="y domain", x=1.0, y=y,
                               xanchor="right", yanchor=anchor, showarrow=False,
                               font={"color": "red", "size": 11},
                               bgcolor="rgba(255,255,255,0.7)")
    fig.update_yaxes(range=[view.lo, view.hi], row=1, col=1)
    last = float(s.t[-1])
    shapes = _spans(data.protections, last)
    for a, b, severity in shapes[:300]:  # beyond that the page gets slow; the bars show all
        fig.add_vrect(x0=a / axis.scale, x1=b / axis.scale, fillcolor=SEVERITY_COLOURS[severity],
                      opacity=0.15, line_width=0, row="all", col=1)
    for a, b in _gap_spans(s, data.gaps)[:300]:
        fig.add_vrect(x0=a / axis.scale, x1=b / axis.scale, fillcolor="grey", opacity=0.25,
                      line_width=0, row="all", col=1)
    placed = [e for e in data.events if e["t_s"] is not None]
    if placed:
        top = float(np.nanmax(s.cells_v)) if np.isfinite(s.cells_v).any() else 0.0
        fig.add_trace(go.Scatter(
            x=[e["t_s"] / axis.scale for e in placed], y=[top] * len(placed),
            mode="markers", name="FAULT_EVENT", marker={
                "symbol": ["triangle-down" if e["kind"] == "trip" else "triangle-up"
                           for e in placed],
                "size": 10, "color": [SEVERITY_COLOURS.get(e["severity"], "grey")
                                      if e["kind"] == "trip" else "grey" for e in placed]},
            text=[f"{e['kind']} {', '.join(e['names']) or '-'}"
                  + (f" at {e['value_si']}" if e["value_si"] else "") + f" ({e['severity']})"
                  for e in placed],
            customdata=[e["t_s"] for e in placed],
            hovertemplate="t_s %{customdata:.1f} s<br>%{text}<extra></extra>",
        ), row=1, col=1)
    if names:
        for severity in ("warning", "alarm", "fault"):
            xs: list[float | None] = []
            ys: list[str | None] = []
            for p in data.protections:
                if p["severity"] != severity:
                    continue
                end = p["end_s"] if p["end_s"] is not None else last
                xs += [p["start_s"] / axis.scale, end / axis.scale, None]
                ys += [p["name"], p["name"], None]
            if xs:
                fig.add_trace(go.Scatter(
                    x=xs, y=ys, mode="lines", name=severity,
                    line={"color": SEVERITY_COLOURS[severity], "width": 8},
                    hovertemplate=f"%{{y}} ({severity})<extra></extra>",
                ), row=5, col=1)
        fig.update_yaxes(type="category", categoryorder="array", categoryarray=names,
                         row=5, col=1, title_text="protections")
    for row, title in enumerate(["cell voltage (V)", "current (A), + charging", "SoC (%)",
                                 "temperature (°C)"], start=1):
        fig.update_yaxes(title_text=title, row=row, col=1)
    fig.update_xaxes(title_text=f"board time t_s ({axis.unit})", row=rows, col=1)
    fig.update_layout(
        title=f"{info.board} ({info.unique_id}), {info.chemistry}, {info.cell_count} cells,"
              f" firmware {info.firmware_version} — shaded: red fault, orange alarm,"
              " yellow warning, grey gap",
        height=250 * rows, hovermode="closest", template="plotly_white",
        legend={"groupclick": "toggleitem"},
    )
    return fig


def _band_text(est: EstimateLines) -> list[str]:
    """Each point's band for the hover: ``±2σ 61.2..64.0 %``."""
    out = []
    for soc, lo, hi in zip(est.soc.tolist(), est.lo.tolist(), est.hi.tolist(), strict=True):
        if np.isfinite(lo) and np.isfinite(hi):
            out.append(f"±2σ {lo:.1f}..{hi:.1f} %")
        else:
            out.append("" if not np.isfinite(soc) else "no band (coulomb baseline)")
    return out


def plot_html(log: str | Path, out: str | Path, board_id: str | int | None = None,
              t_from: float | None = None, t_to: float | None = None,
              force: bool = False) -> PlotData:
    """An interactive page (zoom, pan, hover) with plotly's JavaScript inside: works offline."""
    check_output(out, inputs=[log], force=force)
    data = load_plot_data(log, board_id, t_from, t_to)
    write_html(data, out, inputs=[log], force=force)
    return data


def write_html(data: PlotData, out: str | Path, *, inputs: Iterable[str | Path] = (),
               force: bool = False) -> None:
    fig = html_figure(data)
    text = fig.to_html(include_plotlyjs=True, full_html=True,
                       config={"displaylogo": False, "scrollZoom": True,
                               "toImageButtonOptions": {"format": "png"}})
    write_text(out, text, inputs=inputs, force=force)
