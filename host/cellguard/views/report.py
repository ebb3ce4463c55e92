"""`cellguard report`: a run summary a technician can hand in (Markdown, HTML or JSON).

For each board of the log (each connection): who it was, how long it ran, the
charge and energy in and out, cell voltages, imbalance over time, temperatures,
protections with their times, lost frames and gaps.

Charge and energy are integrated with the trapezoid rule over ``t_s`` (board
time): charge from the current samples, energy from pack voltage × current.
An interval longer than :data:`~cellguard.store.query.GAP_PERIODS` telemetry
periods, or across a board restart, is not integrated (nothing is known about
it); the report says how much time that left out. Where the current changes
sign within an interval, the interval is split at the zero crossing of the
straight line between its two samples, so "in" and "out" each get their part.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..store import LogReader, SocEstimates
from ..store.query import (
    GAP_PERIODS,
    UNPLUGGED,
    Series,
    check_range,
    check_samples,
    choose_boards,
    episodes,
    load_series,
    read_events,
    read_gaps,
)
from ..units import fixed, plural, to_json

FORMATS = ("md", "html", "json")
PERCENTILES = (50, 90, 95, 99)
_NICE_INTERVALS_S = (60, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600,
                     86400, 2 * 86400, 7 * 86400)
MAX_INTERVALS = 12


# --- numbers -------------------------------------------------------------------------------


def integrate_split(t: np.ndarray, y: np.ndarray, skip: np.ndarray | None = None
                    ) -> tuple[float, float]:
    """Trapezoid integral of ``y`` over ``t``, as (positive part, negative part as a magnitude).

    ``skip`` marks intervals (i, i+1) to leave out. An interval whose ends have
    opposite signs is split at the zero crossing of the line between them.
    """
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(t) < 2:
        return 0.0, 0.0
    d = np.diff(t)
    keep = d > 0
    if skip is not None:
        keep &= ~skip
    y0, y1, d = y[:-1][keep], y[1:][keep], d[keep]
    pos = (y0 >= 0) & (y1 >= 0)
    neg = (y0 <= 0) & (y1 <= 0) & ~pos
    cross = ~pos & ~neg
    area = (y0 + y1) / 2.0 * d
    p = float(area[pos].sum())
    n = -float(area[neg].sum()) + 0.0  # never a negative zero
    if cross.any():
        a, b, dc = y0[cross], y1[cross], d[cross]
        f = a / (a - b)  # fraction of the interval before the zero crossing
        first, second = a * f * dc / 2.0, b * (1.0 - f) * dc / 2.0
        p += float(np.where(a > 0, first, second).sum())
        n += float(-np.where(a > 0, second, first).sum())
    return p, n


def charge_energy(series: Series) -> dict[str, Any]:
    skip = series.gap_mask()
    amp_in, amp_out = integrate_split(series.t, series.current_a, skip)
    watt_in, watt_out = integrate_split(series.t, series.pack_v * series.current_a, skip)
    dts = np.diff(series.t) if len(series) > 1 else np.zeros(0)
    skipped = float(dts[skip].sum()) if len(dts) else 0.0
    return {
        "charge_in_ah": amp_in / 3600.0,
        "charge_out_ah": amp_out / 3600.0,
        "net_charge_ah": (amp_in - amp_out) / 3600.0,
        "energy_in_wh": watt_in / 3600.0,
        "energy_out_wh": watt_out / 3600.0,
        "net_energy_wh": (watt_in - watt_out) / 3600.0,
        "integrated_s": float(dts.sum()) - skipped if len(dts) else 0.0,
        "skipped_s": skipped,
        "skipped_intervals": int(skip.sum()),
        "max_interval_s": series.max_dt_s,
        "method": (f"trapezoid rule over t_s; intervals longer than {GAP_PERIODS:g} telemetry "
                   f"periods ({series.max_dt_s:g} s) or across a board restart are left out"),
    }


def _nice_interval(duration_s: float) -> float:
    for step in _NICE_INTERVALS_S:
        if duration_s / step <= MAX_INTERVALS:
            return float(step)
    return float(math.ceil(duration_s / MAX_INTERVALS / 86400.0) * 86400.0)


def imbalance(series: Series) -> dict[str, Any] | None:
    """Cell spread (max - min) per sample: percentiles and per-interval maxima, in mV."""
    if series.cells_v.shape[1] < 2 or not len(series):
        return None
    spread = (np.nanmax(series.cells_v, axis=1) - np.nanmin(series.cells_v, axis=1)) * 1000.0
    k = int(np.argmax(spread))
    t0 = float(series.t[0])
    step = _nice_interval(float(series.t[-1]) - t0)
    index = np.floor((series.t - t0) / step).astype(np.int64)
    intervals = []
    for i in np.unique(index):
        sel = index == i
        j = int(np.argmax(np.where(sel, spread, -np.inf)))
        intervals.append({"from_s": t0 + i * step,
                          "to_s": min(t0 + (i + 1) * step, float(series.t[-1])),
                          "samples": int(sel.sum()), "max_mv": float(spread[j]),
                          "max_t_s": float(series.t[j]), "mean_mv": float(spread[sel].mean())})
    return {
        "percentiles_mv": {f"p{p}": float(np.percentile(spread, p)) for p in PERCENTILES},
        "mean_mv": float(spread.mean()),
        "max_mv": float(spread[k]),
        "max_t_s": float(series.t[k]),
        "interval_s": step,
        "intervals": intervals,
    }


def _extremes(values: np.ndarray, t: np.ndarray, label: str) -> list[dict[str, Any]]:
    rows = []
    for c in range(values.shape[1]):
        col = values[:, c]
        ok = ~np.isnan(col)
        if not ok.any():
            continue
        lo = int(np.argmin(np.where(ok, col, np.inf)))
        hi = int(np.argmax(np.where(ok, col, -np.inf)))
        rows.append({label: c + 1, "min": float(col[lo]), "min_t_s": float(t[lo]),
                     "max": float(col[hi]), "max_t_s": float(t[hi]),
                     "mean": float(col[ok].mean())})
    return rows


def _utc(unix: float) -> str | None:
    if not unix or not math.isfinite(unix):
        return None
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def board_report(reader: LogReader, series: Series, port: str | None,
                 t_from: float | None = None, t_to: float | None = None) -> dict[str, Any]:
    info = series.info
    gaps = read_gaps(reader, series, t_from, t_to)
    events = read_events(reader, series, t_from, t_to)
    s = series
    return {
        "board_id": s.board_id,
        "board": info.board,
        "unique_id": info.unique_id,
        "firmware": info.firmware_version,
        "protocol": info.protocol,
        "chemistry": info.chemistry,
        "cell_count": info.cell_count,
        "temp_count": info.temp_count,
        "capacity_ah": info.capacity_ah,
        "telemetry_period_s": info.telemetry_period_s,
        "port": port,
        "t_first_s": float(s.t[0]),
        "t_last_s": float(s.t[-1]),
        "duration_s": float(s.t[-1] - s.t[0]),
        "start_utc": _utc(float(s.host_time[0])),
        "end_utc": _utc(float(s.host_time[-1])),
        "samples": len(s),
        "lost_frames": sum(g.lost for g in gaps if g.reason == "lost frames"),
        "missed_unplugged": sum(g.lost for g in gaps if g.reason == UNPLUGGED),
        "unplugged": sum(g.reason == UNPLUGGED for g in gaps),
        "unplugged_s": sum(g.away_s or 0.0 for g in gaps if g.reason == UNPLUGGED),
        "restarts": int(np.count_nonzero(np.diff(s.boot))) if len(s) > 1 else 0,
        "charge_energy": charge_energy(s),
        "pack": {
            "v_min": float(s.pack_v.min()), "v_max": float(s.pack_v.max()),
            "current_max_charge_a": float(max(0.0, s.current_a.max())),
            "current_max_discharge_a": float(max(0.0, -s.current_a.min())),
            "soc_start_pct": float(s.soc_pct[0]), "soc_end_pct": float(s.soc_pct[-1]),
            "soc_min_pct": float(s.soc_pct.min()), "soc_max_pct": float(s.soc_pct.max()),
        },
        "cells_v": _extremes(s.cells_v, s.t, "cell"),
        "imbalance": imbalance(s),
        "temperatures_c": _extremes(s.temps_c, s.t, "sensor"),
        "protections": [e.to_dict() for e in episodes(s)],
        "warnings_logged": s.warnings is not None,
        "events": [e.to_dict() for e in events],
        "gaps": [g.to_dict() for g in gaps],
    }


def build_report(log: str | Path, board: str | None = None, t_from: float | None = None,
                 t_to: float | None = None
                 ) -> tuple[dict[str, Any], list[Series], list[SocEstimates]]:
    """The report, and each reported board's series and SoC estimates (the charts'
    data)."""
    check_range(t_from, t_to)
    with LogReader(log) as reader:
        chosen = choose_boards(reader, board)
        check_samples(reader, chosen, t_from, t_to)
        meta = reader.meta()
        ports = reader.board_ports()
        boards, kept, estimates = [], [], []
        for bid, info in chosen:
            series = load_series(reader, bid, info, t_from, t_to)
            if not len(series):
                continue
            boards.append(board_report(reader, series, ports.get(bid), t_from, t_to))
            kept.append(series)
            estimates.append(reader.soc_estimates(bid, t_from, t_to))
    try:
        created = _utc(float(meta.get("created", "0")))
    except ValueError:
        created = None
    report = {
        "file": str(log),
        "generated_utc": _utc(dt.datetime.now(dt.UTC).timestamp()),
        "generator": f"cellguard {__version__}",
        "schema": meta.get("schema"),
        "log_created_utc": created,
        "from_s": t_from,
        "to_s": t_to,
        "boards": boards,
    }
    return report, kept, estimates


# --- text ----------------------------------------------------------------------------------


def hms(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    days, h = divmod(int(h), 24)
    secs = f"{sec:02.0f}" if abs(sec - round(sec)) < 0.05 and round(sec) < 60 else f"{sec:04.1f}"
    text = f"{h:d}:{int(m):02d}:{secs}"
    return sign + (f"{days}d {text}" if days else text)


def _t(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s ({hms(seconds)})"


def _dur(seconds: float | None) -> str:
    return "-" if seconds is None else hms(seconds)


def _f(value: float | None, digits: int, unit: str = "") -> str:
    return "-" if value is None else fixed(value, digits, unit)


def _sections(rep: dict[str, Any]) -> list[tuple[str, Any]]:
    """The report as (kind, content) blocks shared by Markdown and HTML.

    kinds: h1/h2/h3 (title), p (text), kv (list of (key, value)), table ((header, rows)),
    chart (board index, name).
    """
    out: list[tuple[str, Any]] = [("h1", f"cellguard run report: {Path(rep['file']).name}")]
    rng = ""
    if rep["from_s"] is not None or rep["to_s"] is not None:
        rng = (f"; t_s from {_f(rep['from_s'], 1, 's') if rep['from_s'] is not None else 'start'}"
               f" to {_f(rep['to_s'], 1, 's') if rep['to_s'] is not None else 'end'}")
    out.append(("p", f"Log {rep['file']} (schema {rep['schema']}, created "
                     f"{rep['log_created_utc'] or 'unknown'}){rng}. Report by {rep['generator']}, "
                     f"{rep['generated_utc']}. Units: V, A, Ah, Wh, °C; times are board time "
                     "t_s since the first sample of each connection."))
    out.append(("table", (["id", "board", "unique id", "firmware", "protocol", "chemistry",
                           "cells", "sensors", "capacity", "port"],
                          [[b["board_id"], b["board"], b["unique_id"], b["firmware"],
                            b["protocol"], b["chemistry"], b["cell_count"], b["temp_count"],
                            _f(b["capacity_ah"], 2, "Ah"), b["port"] or "-"]
                           for b in rep["boards"]])))
    for idx, b in enumerate(rep["boards"]):
        ce, pk = b["charge_energy"], b["pack"]
        out.append(("h2", f"Board {b['board_id']}: {b['board']} ({b['unique_id']})"))
        out.append(("kv", [
            ("time", f"t_s {b['t_first_s']:.1f} to {b['t_last_s']:.1f} s: "
                     f"{hms(b['duration_s'])} of board time"),
            ("host clock", f"{b['start_utc'] or '-'} to {b['end_utc'] or '-'}"),
            ("samples", f"{b['samples']} logged, {b['lost_frames']} lost on the link"
                        + (f", unplugged {b['unplugged']}x ({hms(b['unplugged_s'])}, "
                           f"{b['missed_unplugged']} frames missed)" if b["unplugged"] else "")
                        + (f", {plural(b['restarts'], 'board restart')}" if b["restarts"] else "")),
            ("charge in / out", f"{_f(ce['charge_in_ah'], 3, 'Ah')} / "
                                f"{_f(ce['charge_out_ah'], 3, 'Ah')} "
                                f"(net {fixed(ce['net_charge_ah'], 3, 'Ah', sign=True)})"),
            ("energy in / out", f"{_f(ce['energy_in_wh'], 3, 'Wh')} / "
                                f"{_f(ce['energy_out_wh'], 3, 'Wh')} "
                                f"(net {fixed(ce['net_energy_wh'], 3, 'Wh', sign=True)})"),
            ("how", f"{ce['method']}; {hms(ce['integrated_s'])} integrated"
                    + (f", {hms(ce['skipped_s'])} in {plural(ce['skipped_intervals'], 'gap')} "
                       "left out" if ce["skipped_intervals"] else "")),
            ("pack voltage", f"{_f(pk['v_min'], 3)} to {_f(pk['v_max'], 3, 'V')}"),
            ("current", f"peak {_f(pk['current_max_charge_a'], 3, 'A')} charging, "
                        f"{_f(pk['current_max_discharge_a'], 3, 'A')} discharging"),
            ("SoC", f"{pk['soc_start_pct']:.1f} % at start, {pk['soc_end_pct']:.1f} % at end "
                    f"(range {pk['soc_min_pct']:.1f} to {pk['soc_max_pct']:.1f} %)"),
        ]))
        out.append(("chart", (idx, "overview")))
        out.append(("h3", "Cell voltages"))
        out.append(("table", (["cell", "min (V)", "at", "max (V)", "at", "mean (V)"],
                              [[c["cell"], f"{c['min']:.3f}", _t(c["min_t_s"]),
                                f"{c['max']:.3f}", _t(c["max_t_s"]), f"{c['mean']:.4f}"]
                               for c in b["cells_v"]])))
        imb = b["imbalance"]
        out.append(("h3", "Imbalance (cell spread: max - min per sample)"))
        if imb is None:
            out.append(("p", "One cell: no spread."))
        else:
            pct = imb["percentiles_mv"]
            out.append(("table", ([*(f"p{p} (mV)" for p in PERCENTILES), "mean (mV)",
                                   "max (mV)", "max at"],
                                  [[*(f"{pct[f'p{p}']:.1f}" for p in PERCENTILES),
                                    f"{imb['mean_mv']:.1f}", f"{imb['max_mv']:.1f}",
                                    _t(imb["max_t_s"])]])))
            out.append(("p", f"Per {hms(imb['interval_s'])} of board time:"))
            out.append(("table", (["from", "to", "samples", "max (mV)", "at", "mean (mV)"],
                                  [[hms(r["from_s"]), hms(r["to_s"]), r["samples"],
                                    f"{r['max_mv']:.1f}", _t(r["max_t_s"]),
                                    f"{r['mean_mv']:.1f}"] for r in imb["intervals"]])))
            out.append(("chart", (idx, "imbalance")))
        out.append(("h3", "Temperatures"))
        if b["temperatures_c"]:
            out.append(("table", (["sensor", "min (°C)", "at", "max (°C)", "at", "mean (°C)"],
                                  [[r["sensor"], _f(r["min"], 1), _t(r["min_t_s"]),
                                    _f(r["max"], 1), _t(r["max_t_s"]), _f(r["mean"], 1)]
                                   for r in b["temperatures_c"]])))
        else:
            out.append(("p", "No temperature sensor."))
        out.append(("h3", "Faults, alarms and warnings"))
        what = "faults, alarms and warnings" if b["warnings_logged"] else (
            "faults (this log does not record alarms and warnings per sample)")
        if b["protections"]:
            out.append(("p", f"Spans during which the telemetry reported {what}:"))
            out.append(("table", (["protection", "severity", "from", "to", "lasted"],
                                  [[e["name"], e["severity"], _t(e["start_s"]),
                                    _t(e["end_s"]) if e["end_s"] is not None else "still set",
                                    hms(e["end_s"] - e["start_s"])
                                    if e["end_s"] is not None else "-"]
                                   for e in b["protections"]])))
        else:
            out.append(("p", f"The telemetry reported no {what}."))
        if b["events"]:
            out.append(("p", "Events the board sent (FAULT_EVENT):"))
            out.append(("table", (["at", "event", "severity", "protection", "value",
                                   "faults held"],
                                  [[_t(e["t_s"]), e["kind"], e["severity"],
                                    ", ".join(e["names"]) or "-", e["value_si"] or "-",
                                    _held(e["faults"])] for e in b["events"]])))
        out.append(("h3", "Lost frames and gaps"))
        if b["gaps"]:
            out.append(("table", (["reason", "last sample before", "first sample after",
                                   "no samples for", "frames lost", "unplugged for"],
                                  [[g["reason"], _t(g["start_s"]),
                                    _t(g["end_s"]) if g["end_s"] is not None else "run ended",
                                    _dur(g["no_samples_s"]), g["lost"], _dur(g["away_s"])]
                                   for g in b["gaps"]])))
        else:
            out.append(("p", "None: every frame of the run is in the log."))
    return out


def _held(bits: int | None) -> str:
    from ..link.client import fault_names

    if bits is None:
        return "-"
    return ", ".join(fault_names(bits)) or "none"


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(rep: dict[str, Any]) -> str:
    lines: list[str] = []
    for kind, content in _sections(rep):
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + content, ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "kv":
            lines += [f"- **{k}**: {v}" for k, v in content] + [""]
        elif kind == "table":
            header, rows = content
            lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
            lines.append("")
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; } dd { margin: 0; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
@media print { h2 { page-break-before: always; } }
"""


def render_html(rep: dict[str, Any], series: list[Series],
                estimates: Sequence[SocEstimates] | None = None) -> str:
    from .plot import imbalance_svg, overview_svg

    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{e(Path(rep['file']).name)}: cellguard run report</title>",
             f"<style>{_CSS}</style></head><body>"]
    for kind, content in _sections(rep):
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{e(content)}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{e(content)}</p>")
        elif kind == "kv":
            parts.append("<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>"
                                          for k, v in content) + "</dl>")
        elif kind == "table":
            header, rows = content
            parts.append("<table><thead><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header)
                         + "</tr></thead><tbody>")
            parts += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>"
                      for r in rows]
            parts.append("</tbody></table>")
        elif kind == "chart":
            idx, name = content
            s = series[idx]
            b = rep["boards"][idx]
            est = estimates[idx] if estimates else None
            svg = (overview_svg(s, b["events"], b["protections"], b["gaps"], est)
                   if name == "overview" else imbalance_svg(s))
            parts.append(f"<figure>{svg}</figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render(rep: dict[str, Any], series: list[Series], fmt: str,
           estimates: Sequence[SocEstimates] | None = None) -> str:
    if fmt == "json":
        return to_json(rep)
    if fmt == "html":
        return render_html(rep, series, estimates)
    return render_markdown(rep)
