"""The passport as a one-page health report for a person (``cellguard passport --format
md`` or ``html``): what a second-life buyer reads before buying a used pack, and what a
lab technician checks.

Both formats render from the passport dict :func:`.passport.build_passport` makes, never
from the source itself, so every figure of the report is one of the JSON passport. The
content is gathered once (:func:`gather`, plain text) and each format only lays it out
and escapes it: HTML with :func:`html.escape`, Markdown with :func:`md_text`. An
attribute the passport lists in ``cellguardExtension.unavailable`` is shown as "not
available", never as its model value 0.

The HTML page is one self-contained file: inline CSS and one inline SVG per histogram
(the SoC x temperature time heat map), no script, no external font, image or link,
laid out to print on one A4 page.
"""

from __future__ import annotations

import html
import itertools
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .batterypass import EXTENSION, HISTOGRAM

NA = "not available"
TECH = "batteryTechicalProperties"
COND = "batteryCondition"
EVENTS_SHOWN = 6
"""The last harmful events the report lists (all of them are in the JSON passport)."""


# -- numbers and words ----------------------------------------------------------------------
def sig(v: float, digits: int = 4) -> str:
    """``v`` with at least ``digits`` significant digits, never in exponent form."""
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    places = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    return f"{v:,.{places}f}"


def hours(seconds: float) -> str:
    """Seconds as hours (no unit): a time that is not 0 never shows as 0."""
    h = seconds / 3600.0
    if seconds == 0:
        return "0"
    if h < 0.005:
        return "< 0.01"
    if h < 10:
        return f"{h:.2f}"
    if h < 100:
        return f"{h:.1f}"
    return f"{h:,.0f}"


def minutes(m: float) -> str:
    """Minutes (no unit): a time that is not 0 never shows as 0."""
    if m == 0:
        return "0"
    return "< 0.1" if m < 0.05 else f"{m:,.1f}"


def when(iso: str) -> str:
    """A model timestamp as a person reads it: ``2026-12-07 00:03:36 UTC``."""
    try:
        t = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return str(iso)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def words(name: str) -> str:
    """A counter's or a protection's name in words: ``deep_discharge`` -> deep discharge."""
    return str(name).replace("_", " ")


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def bin_labels(edges: list[float | None], unit: str) -> list[str]:
    """Labels of the bins between ``edges`` (``None``: an open end)."""
    out = []
    for lo, hi in itertools.pairwise(edges):
        if lo is None:
            out.append(f"below {hi:g} {unit}")
        elif hi is None:
            out.append(f"from {lo:g} {unit}")
        else:
            out.append(f"{lo:g}–{hi:g} {unit}")
    return out


# -- the content, once for both formats -----------------------------------------------------
@dataclass
class Fact:
    """One headline figure of the summary: a value (or "not available") and its detail."""

    label: str
    value: str
    detail: str = ""
    available: bool = True


@dataclass
class Histogram:
    """Seconds per [SoC bin][temperature bin], with the bins' labels (rows: SoC)."""

    seconds: list[list[float]]
    soc_labels: list[str]
    temp_labels: list[str]
    temperature: str
    unbinned_s: float

    @property
    def max_s(self) -> float:
        return max((v for row in self.seconds for v in row), default=0.0)


@dataclass
class Report:
    """Everything the report shows, as plain (unescaped) text."""

    title: str
    identity: str
    source: str  # board or log
    source_text: str
    verdict: str
    summary: list[Fact]
    throughput: list[list[str]]  # quantity, in, out, total
    states: list[tuple[str, float]]  # rest, charging, discharging: seconds
    rest_below_a: float
    temperatures: list[list[str]]  # condition, limit, minutes
    temperature_note: str
    counts: list[tuple[str, int]]
    events: list[list[str]]  # time, event, value: the last EVENTS_SHOWN
    events_total: int
    events_note: str
    histogram: Histogram | None
    histogram_note: str
    ratings: list[list[str]]
    record_rows: list[list[str]]  # the board record's health, commissioning and lives
    updates: list[list[str]]
    unavailable: list[str]
    generated: str

    @property
    def counts_text(self) -> str:
        """The counts by kind: those above 0, then the kinds with none."""
        seen = ", ".join(f"{k} {n}" for k, n in self.counts if n)
        zero = ", ".join(k for k, n in self.counts if not n)
        if not zero:
            return seen
        return f"{seen}; none of: {zero}" if seen else f"none of: {zero}"

    @property
    def unavailable_groups(self) -> list[tuple[str, list[str]]]:
        """The unavailable attributes by block (the model's or the extension's)."""
        groups: dict[str, list[str]] = {}
        for path in self.unavailable:
            block, _, name = path.partition(".")
            groups.setdefault(block, []).append(name or block)
        return list(groups.items())


def gather(p: dict[str, Any]) -> Report:
    """The report's content from a passport dict (:func:`.passport.build_passport`)."""
    ext, cond, tech = p[EXTENSION], p[COND], p[TECH]
    missing = set(ext["unavailable"])
    pack = ext["pack"]
    board_src = ext["source"] == "board"
    rated = float(tech["ratedCapacity"])
    identity = (f"{pack['board']} · pack {pack['uniqueId']} · {str(pack['chemistry']).upper()}, "
                f"{plural(int(pack['cells']), 'cell')} in series")
    observed = float(ext["observedSeconds"])
    later_life = bool(ext.get("lives"))  # a second-life reset started this record
    span = "this life" if later_life else "the pack's whole life"
    if board_src:
        source_text = (f"From the board's own lifetime record: {span} as its firmware "
                       f"counted it, read {when(ext['generated'])}"
                       + ("; the earlier lives' totals are below." if later_life else "."))
    else:
        source_text = (f"From a cellguard log: only the logged runs ({hours(observed)} h of "
                       f"samples, gaps left out), last sample "
                       f"{when(cond['capacityThroughput']['lastUpdate'])}.")

    # state of health: remaining capacity against rated
    cap = ext.get("remainingCapacityAh")
    fade = 0.0
    if cap is not None and f"{COND}.remainingCapacity" not in missing:
        fade = float(cond["capacityFade"]["capacityFadeValue"])
        soh = Fact("State of health (capacity)", f"{100.0 * cap / rated:.1f} %",
                   f"{sig(cap)} Ah of {sig(rated)} Ah rated; capacity fade {fade:.1f} %")
    else:
        soh = Fact("State of health (capacity)", NA,
                   "no capacity estimate in this source", available=False)
    efc = float(ext["equivalentFullCycles"])
    basis = "estimated" if cap is not None else "rated"
    expected = (f"; {sig(tech['expectedNumberOfCycles'], 3)} expected"
                if f"{TECH}.expectedNumberOfCycles" not in missing else
                "; expected cycles not available")
    cycles = Fact("Equivalent full cycles", sig(efc, 3),
                  f"charge throughput ÷ (2 × {basis} capacity){expected}")
    if f"{COND}.internalResistanceIncrease" in missing or not cond["internalResistanceIncrease"]:
        ir = Fact("Internal resistance increase", NA, "no resistance estimate in this source",
                  available=False)
        ir_words = "internal resistance increase not available"
    else:
        r = float(cond["internalResistanceIncrease"][0]["internalResistanceIncreaseValue"])
        ir = Fact("Internal resistance increase", f"{r:+.1f} %", "pack, against new")
        ir_words = f"internal resistance {r:+.1f} %"
    counts = [(words(k), int(n)) for k, n in ext["harmfulEventCounts"].items()]
    total = sum(n for _, n in counts)
    kinds = [(k, n) for k, n in counts if n]
    seen = ", ".join(f"{n} {k}" for k, n in kinds[:3])
    if len(kinds) > 3:
        seen += f" and {len(kinds) - 3} more kinds"
    where = "counted by the board" if board_src else "tripped while logged"
    harm = Fact("Harmful events", "none" if total == 0 else str(total),
                f"{seen} ({where})" if total else f"none {where}")
    harm_words = (f"{plural(total, 'harmful event')} ({seen})" if total else
                  "no harmful events")
    ti = cond["temperatureInformation"]
    hot = float(ti["timeExtremeHighTemp"]) + float(ti["timeExtremeHighTempCharging"])
    cold = float(ti["timeExtremeLowTemp"]) + float(ti["timeExtremeLowTempCharging"])
    temp = Fact("Time beyond the temperature limits", f"{minutes(hot + cold)} min",
                f"too hot {minutes(hot)} min, too cold {minutes(cold)} min")
    states = ext.get("stateSeconds") or {}
    operating = Fact("Operating time" if board_src else "Logged time", f"{hours(observed)} h",
                     ", ".join(f"{k} {hours(float(states.get(k, 0)))} h"
                               for k in ("rest", "charging", "discharging")))
    if soh.available:
        lead = (f"State of health {soh.value} (capacity fade {fade:.1f} %) after {sig(efc, 3)} "
                "equivalent full cycles")
    else:
        lead = (f"{sig(efc, 3)} equivalent full cycles; state of health not available (no "
                "capacity estimate)")
    verdict = (f"{lead}; {ir_words}; {harm_words}; {minutes(hot + cold)} min beyond the "
               "temperature limits" + (f" ({span})." if board_src else
                                       " (the logged runs only)."))

    a_in, a_out = float(ext["chargeInAh"]), float(ext["chargeOutAh"])
    e_in, e_out = float(ext["energyInWh"]) / 1000.0, float(ext["energyOutWh"]) / 1000.0
    thr = [["charge (Ah)", sig(a_in, 3), sig(a_out, 3), sig(a_in + a_out, 3)],
           ["energy (kWh)", sig(e_in, 3), sig(e_out, 3), sig(e_in + e_out, 3)]]

    idle_lo, idle_hi = ext["temperatureLimitsC"]["idle"]
    chg_lo, chg_hi = ext["temperatureLimitsC"]["charging"]
    temperatures = [
        ["hot, not charging", f"above {idle_hi:g} °C",
         minutes(float(ti["timeExtremeHighTemp"]))],
        ["cold, not charging", f"below {idle_lo:g} °C",
         minutes(float(ti["timeExtremeLowTemp"]))],
        ["hot while charging", f"above {chg_hi:g} °C",
         minutes(float(ti["timeExtremeHighTempCharging"]))],
        ["cold while charging", f"below {chg_lo:g} °C",
         minutes(float(ti["timeExtremeLowTempCharging"]))]]
    temperature_note = ("Hottest sensor above, coldest below the limit; each second counted "
                        "once, charging or not.")

    events: list[list[str]] = []
    for e in cond["negativeEvents"][-EVENTS_SHOWN:][::-1]:
        name, _, value = str(e["negativeEvent"]).partition(": ")
        events.append([when(e["lastUpdate"]).removesuffix(" UTC"), words(name), value])
    events_total = len(cond["negativeEvents"])
    if board_src:
        events_note = ("The board's record counts every harmful event by kind and keeps the "
                       "last four with their time and value (the event log has more).")
    elif events_total > EVENTS_SHOWN:
        events_note = f"The last {EVENTS_SHOWN} of {events_total}, newest first."
    else:
        events_note = "Newest first." if events_total else "No harmful trip in the log."

    hist_doc = ext.get(HISTOGRAM)
    histogram = None
    if hist_doc is not None and f"{EXTENSION}.{HISTOGRAM}" not in missing:
        histogram = Histogram(
            seconds=[[float(v) for v in row] for row in hist_doc["seconds"]],
            soc_labels=bin_labels(hist_doc["socBinEdgesPct"], "%"),
            temp_labels=bin_labels(hist_doc["temperatureBinEdgesC"], "°C"),
            temperature=str(hist_doc.get("temperature", "")),
            unbinned_s=float(hist_doc.get("unbinnedSeconds", 0.0)))
        histogram_note = "Hours in each bin; the darker, the longer."
        if histogram.unbinned_s:
            histogram_note += (f" {hours(histogram.unbinned_s)} h without a temperature or "
                               "SoC reading are left out.")
        if not board_src:
            histogram_note += " From the logged samples, each interval at its first sample."
    else:
        histogram_note = ("Not available from this source: no temperature readings to bin "
                          "the time by.")

    def rating(path: str, text: str) -> str:
        return NA if f"{TECH}.{path}" in missing else text

    tr = tech["temperatureRangeIdleState"]
    ratings = [
        ["chemistry, cells", f"{str(pack['chemistry']).upper()}, "
                             f"{plural(int(pack['cells']), 'cell')} in series"],
        ["rated capacity", rating("ratedCapacity", f"{sig(rated)} Ah")],
        ["rated energy", rating("ratedEnergy", f"{sig(tech['ratedEnergy'])} kWh")],
        ["voltage min / nominal / max",
         f"{tech['minimumVoltage']:.2f} / {tech['nominalVoltage']:.2f} / "
         f"{tech['maximumVoltage']:.2f} V"],
        ["rated maximum power", rating("ratedMaximumPower",
                                       f"{sig(tech['ratedMaximumPower'])} kW")],
        ["temperature range, idle", f"{tr['minimum']:g} to {tr['maximum']:g} °C"],
        ["temperature range, charging", f"{chg_lo:g} to {chg_hi:g} °C"],
        ["expected cycles", rating("expectedNumberOfCycles",
                                   sig(tech["expectedNumberOfCycles"], 3))],
    ]
    record_rows = _record_rows(ext, cond, tech, missing) if board_src else []
    soc = (NA if f"{COND}.stateOfCharge" in missing else
           f"{float(cond['stateOfCharge']['stateOfChargeValue']):.1f} % at "
           f"{when(cond['stateOfCharge']['lastUpdate'])}")
    estimate = (NA if cap is None else
                f"{when(cond['capacityFade']['lastUpdate'])} (capacity, resistance)")
    updates = [
        ["source", "board (its lifetime record)" if board_src else "log (the logged runs)"],
        ["throughput, cycles and times up to", when(cond["capacityThroughput"]["lastUpdate"])],
        ["last health estimate", estimate],
        ["state of charge", soc],
        ["report generated", when(ext["generated"])],
    ]
    return Report(
        title="Battery health report", identity=identity, source=str(ext["source"]),
        source_text=source_text, verdict=verdict,
        summary=[soh, cycles, ir, harm, temp, operating],
        throughput=thr,
        states=[(k, float(states.get(k, 0.0))) for k in ("rest", "charging", "discharging")],
        rest_below_a=float(states.get("restBelowA", 0.0)),
        temperatures=temperatures, temperature_note=temperature_note,
        counts=counts, events=events, events_total=events_total, events_note=events_note,
        histogram=histogram, histogram_note=histogram_note, ratings=ratings,
        record_rows=record_rows, updates=updates, unavailable=sorted(missing),
        generated=when(ext["generated"]))


def _record_rows(ext: dict[str, Any], cond: dict[str, Any], tech: dict[str, Any],
                 missing: set[str]) -> list[list[str]]:
    """What only a board's record says: who the pack is, its lives, and the health
    figures its snapshots give (power, efficiency, self-discharge)."""
    com = ext.get("commissioning") or {}
    rows = [["identity", str(com.get("identity") or NA)],
            ["manufactured", when(com["manufactured"]) if com.get("manufactured") else NA],
            ["in service since", when(com["inService"]) if com.get("inService") else NA]]
    lives = ext.get("lives")
    before = ext.get("previousLives")
    if lives is not None:
        text = "first life" if not lives else f"life {lives + 1}"
        if before:
            text += (f"; earlier lives: {sig(before['chargeOutAh'])} Ah out, "
                     f"{hours(before['operatingSeconds'])} h of operation")
        rows.append(["life", text])
    if f"{COND}.remainingPowerCapability" in missing:
        rows.append(["power capability (10 s discharge)", NA])
    else:
        now = cond["remainingPowerCapability"]["remainingPowerCapabilityValue"]
        text = f"{sig(now['powerCapabilityAt'])} kW at {now['atSoC']:.0f} % SoC"
        first = tech.get("originalPowerCapability") or []
        if first:
            text += (f" (first: {sig(first[0]['powerCapabilityAt'])} kW at "
                     f"{first[0]['atSoC']:.0f} %)")
        rows.append(["power capability (10 s discharge)", text])
    eff = ext.get("roundTripEfficiency")
    rows.append(["round-trip energy efficiency", NA if not eff else
                 f"{eff['percent']:.1f} % ± {eff['uncertaintyPercent']:.1f} "
                 f"(over {sig(eff['energyInWh'] / 1000.0)} kWh in)"])
    sd = ext.get("selfDischarge") or {}
    rows.append(["self-discharge", NA if sd.get("ratePctPerMonth") is None else
                 f"{sd['ratePctPerMonth']:.2f} %/month ± {sd['uncertaintyPctPerMonth']:.2f} "
                 f"(over {hours(sd['restSeconds'])} h of rest)"])
    rows.append(["health snapshots", str(len(ext.get("healthSnapshots") or []))])
    return rows


# -- Markdown -------------------------------------------------------------------------------
_MD_SPECIAL = "\\`*_[]<>|~&"
"""Backslash-escaped in Markdown text (CommonMark escapes any ASCII punctuation): no
emphasis, link, code, table cell, HTML tag or entity can start from the data."""


def md_text(text: object) -> str:
    """Text from the board or a file, shown as text in Markdown (no markup, no HTML)."""
    s = " ".join(str(text).split())  # one line: a table row stays one row
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in s)


def text_bar(value: float, top: float, width: int = 24) -> str:
    """A bar of ``width`` characters at most; a value above 0 shows at least a sliver."""
    if top <= 0 or value <= 0:
        return ""
    n = round(width * value / top)
    return "█" * n if n else "▏"


def render_markdown(p: dict[str, Any]) -> str:
    """The one-page health report as Markdown."""
    r = gather(p)
    m = md_text

    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(m(h) for h in header) + " |",
                "|" + "|".join("---" for _ in header) + "|",
                *("| " + " | ".join(m(c) for c in row) + " |" for row in rows)]

    out = [f"# {m(r.title)}: {m(r.identity)}", "", m(r.source_text), "",
           "## Summary", "", f"**{m(r.verdict)}**", ""]
    out += table(["", "value", "detail"], [[f.label, f.value, f.detail] for f in r.summary])
    out += ["", "## Throughput and operating time", ""]
    out += table(["quantity", "in", "out", "in + out"], r.throughput)
    total_s = sum(s for _, s in r.states)
    out += [""]
    out += table(["state", "time (h)", "share (%)"],
                 [[k, hours(s), f"{100.0 * s / total_s:.1f}" if total_s else "0"]
                  for k, s in r.states])
    out += ["", m(f"At rest: |current| below {sig(r.rest_below_a, 2)} A (C/100)."), "",
            "## Beyond the temperature limits", ""]
    out += table(["condition", "limit", "time (min)"], r.temperatures)
    out += ["", m(r.temperature_note), "",
            "## Time at state of charge × temperature (h)", ""]
    h = r.histogram
    if h is None:
        out += [m(r.histogram_note)]
    else:
        rows = []
        for i in reversed(range(len(h.soc_labels))):
            rows.append([f"SoC {h.soc_labels[i]}", *(hours(v) for v in h.seconds[i]),
                         hours(sum(h.seconds[i]))])
        out += table(["state of charge \\ temperature", *h.temp_labels, "all (h)"], rows)
        out += ["", m(r.histogram_note), "", "```text"]
        width = max(len(s) for s in h.soc_labels) + 1
        twidth = max(len(s) for s in h.temp_labels) + 1
        for i in reversed(range(len(h.soc_labels))):
            for j, label in enumerate(h.temp_labels):
                soc = h.soc_labels[i] if j == 0 else ""
                soc, label = soc.replace("`", "'"), label.replace("`", "'")
                bar = text_bar(h.seconds[i][j], h.max_s)
                out.append(f"{soc:<{width}}{label:<{twidth}}|{bar:<24}| "
                           f"{hours(h.seconds[i][j])} h")
        out += ["```"]
    out += ["", "## Harmful events", ""]
    out += [m(r.counts_text) + ".", "", m(r.events_note)]
    if r.events:
        out += [""]
        out += table(["time (UTC)", "event", "value"], r.events)
    out += ["", "## Ratings", ""]
    out += table(["rating", "value"], r.ratings)
    if r.record_rows:
        out += ["", "## The pack's record", ""]
        out += table(["", ""], r.record_rows)
    out += ["", "## Source and updates", ""]
    out += table(["", ""], r.updates)
    out += ["", "## Not available from this source", "",
            m("Written as 0 in the JSON passport (the model has no null): not a measurement."),
            ""]
    out += [f"- {m(block)}: {m(', '.join(names))}" for block, names in r.unavailable_groups]
    out += [""] if r.unavailable else ["None.", ""]
    return "\n".join(out)


# -- HTML -----------------------------------------------------------------------------------
def esc(text: object) -> str:
    """Any text from the board or a file, as HTML text (quotes too: safe in attributes)."""
    return html.escape(str(text), quote=True)


_BLUES = ((0.0, (247, 251, 255)), (0.25, (198, 219, 239)), (0.5, (107, 174, 214)),
          (0.75, (33, 113, 181)), (1.0, (8, 48, 107)))


def shade(frac: float) -> str:
    """The heat map's colour for a fraction of the fullest bin (white to dark blue)."""
    frac = min(1.0, max(0.0, frac))
    for (f0, c0), (f1, c1) in itertools.pairwise(_BLUES):
        if frac <= f1:
            k = (frac - f0) / (f1 - f0)
            r, g, b = (round(a + (z - a) * k) for a, z in zip(c0, c1, strict=True))
            return f"#{r:02x}{g:02x}{b:02x}"
    return "#08306b"


def heat_map_svg(h: Histogram) -> str:
    """The SoC x temperature histogram as an inline SVG heat map: hours in every bin,
    labelled axes and a colour legend. Each bin carries its exact seconds."""
    rows, cols = len(h.soc_labels), len(h.temp_labels)
    cw, rh, x0, y0 = 62, 26, 86, 6
    x1, y1 = x0 + cols * cw, y0 + rows * rh
    width, height = x1 + 8, y1 + 78
    top = h.max_s
    title = "Hours at state of charge and temperature"
    parts = [f'<svg class="histogram" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{esc(title)}" font-size="10">',
             f"<title>{esc(title)} (h per bin)</title>",
             '<defs><linearGradient id="heat-legend" x1="0" x2="1" y1="0" y2="0">',
             *(f'<stop offset="{f:g}" stop-color="{shade(f)}"/>' for f, _ in _BLUES),
             "</linearGradient></defs>"]
    for i in range(rows):
        y = y1 - (i + 1) * rh  # SoC grows upwards
        parts.append(f'<text class="soc-label" x="{x0 - 5}" y="{y + rh / 2 + 3.5:g}" '
                     f'text-anchor="end">{esc(h.soc_labels[i])}</text>')
        for j in range(cols):
            s = h.seconds[i][j]
            frac = s / top if top > 0 else 0.0
            x = x0 + j * cw
            ink = "#ffffff" if frac > 0.55 else "#111111"
            parts.append(
                f'<g class="bin" data-soc-bin="{i}" data-temp-bin="{j}" data-seconds="{s:g}">'
                f"<title>SoC {esc(h.soc_labels[i])}, {esc(h.temp_labels[j])}: "
                f"{esc(hours(s))} h ({s:,.0f} s)</title>"
                f'<rect x="{x}" y="{y}" width="{cw}" height="{rh}" fill="{shade(frac)}" '
                f'stroke="#9e9e9e" stroke-width="0.5"/>'
                f'<text x="{x + cw / 2:g}" y="{y + rh / 2 + 3.5:g}" text-anchor="middle" '
                f'fill="{ink}">{esc(hours(s))}</text></g>')
    for j in range(cols):
        parts.append(f'<text class="temp-label" x="{x0 + j * cw + cw / 2:g}" y="{y1 + 13}" '
                     f'text-anchor="middle">{esc(h.temp_labels[j])}</text>')
    parts += [
        f'<text class="axis" x="{(x0 + x1) / 2:g}" y="{y1 + 28}" text-anchor="middle">'
        f'<tspan font-size="9">temperature (°C), {esc(h.temperature)}</tspan></text>',
        f'<text class="axis" transform="rotate(-90)" x="{-(y0 + y1) / 2:g}" y="11" '
        'text-anchor="middle">state of charge (%)</text>',
        f'<text class="legend" x="{x0 - 5}" y="{y1 + 51}" text-anchor="end">h per bin</text>',
        f'<rect x="{x0}" y="{y1 + 43}" width="{x1 - x0}" height="10" '
        'fill="url(#heat-legend)" stroke="#9e9e9e" stroke-width="0.5"/>',
        f'<text class="legend" x="{x0}" y="{y1 + 66}" text-anchor="start">0 h</text>',
        f'<text class="legend" x="{(x0 + x1) / 2:g}" y="{y1 + 66}" text-anchor="middle">'
        f"{esc(hours(top / 2))} h</text>",
        f'<text class="legend" x="{x1}" y="{y1 + 66}" text-anchor="end">'
        f"{esc(hours(top))} h</text>",
        "</svg>"]
    return "\n".join(parts)


CSS = """
@page { size: A4; margin: 9mm 10mm; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font: 8pt/1.25 "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; color: #111;
       max-width: 190mm; margin: 0 auto; }
h1 { font-size: 15pt; margin: 0; }
h2 { font-size: 9.5pt; margin: 2mm 0 0.8mm; padding-bottom: 0.3mm;
     border-bottom: 0.3mm solid #8a8a8a; }
p { margin: 0.8mm 0; }
.identity { font-size: 10pt; margin: 0.5mm 0; }
.source, .note { font-size: 7.5pt; color: #333; }
.verdict { font-size: 9pt; margin: 1mm 0 1.5mm; padding: 1.2mm 2.5mm; background: #eef3fa;
           border-left: 1.2mm solid #2171b5; }
.tiles { display: grid; grid-template-columns: repeat(3, 1fr); gap: 1.5mm; }
.tile { border: 0.3mm solid #b0b0b0; border-radius: 1mm; padding: 1mm 2mm; }
.tile .k { font-size: 7.5pt; color: #333; }
.tile .v { font-size: 12pt; font-weight: bold; }
.tile .d { font-size: 6.8pt; color: #333; }
.na { color: #8a4b00; font-style: italic; }
.events th[scope="row"] { white-space: nowrap; font-weight: normal; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 5mm; align-items: start; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.2mm 1.2mm; border-bottom: 0.2mm solid #d6d6d6;
         vertical-align: top; }
th { font-weight: bold; }
.n { text-align: right; white-space: nowrap; }
.bar { display: flex; height: 3.5mm; border: 0.2mm solid #8a8a8a; margin: 1mm 0 0.5mm; }
.bar span { display: block; height: 100%; }
.rest { background: #bdbdbd; } .charging { background: #74c476; }
.discharging { background: #fd8d3c; }
.key { display: inline-block; width: 2.5mm; height: 2.5mm; margin-right: 1mm;
       border: 0.2mm solid #8a8a8a; }
svg.histogram { width: 100%; height: auto; display: block; }
.unavailable ul { font-size: 7pt; color: #333; margin: 0; padding-left: 4mm; }
footer { font-size: 7pt; color: #555; margin-top: 2mm; padding-top: 0.5mm;
         border-top: 0.2mm solid #aaa; }
"""


def _table(header: list[str] | None, rows: list[list[str]],
           numeric: frozenset[int] = frozenset()) -> str:
    """A table: the first cell of a row heads it; ``numeric`` columns align right."""
    def cls(*names: str) -> str:
        names = tuple(n for n in names if n)
        return f' class="{" ".join(names)}"' if names else ""

    out = ["<table>"]
    if header:
        out.append("<thead><tr>" + "".join(
            f'<th scope="col"{cls("n" if k in numeric else "")}>{esc(h)}</th>'
            for k, h in enumerate(header)) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        cells = []
        for k, c in enumerate(row):
            tag, scope = ("th", ' scope="row"') if k == 0 else ("td", "")
            classes = cls("n" if k in numeric else "", "na" if c == NA else "")
            cells.append(f"<{tag}{scope}{classes}>{esc(c)}</{tag}>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def render_html(p: dict[str, Any]) -> str:
    """The one-page health report as one self-contained HTML5 file."""
    r = gather(p)
    tiles = []
    for f in r.summary:
        v = f'<div class="v na">{esc(f.value)}</div>' if not f.available else \
            f'<div class="v">{esc(f.value)}</div>'
        tiles.append(f'<div class="tile"><div class="k">{esc(f.label)}</div>{v}'
                     f'<div class="d">{esc(f.detail)}</div></div>')
    total_s = sum(s for _, s in r.states)
    bar = "".join(f'<span class="{esc(k)}" style="width: {100.0 * s / total_s:.2f}%" '
                  f'title="{esc(k)}"></span>' for k, s in r.states if total_s and s > 0)
    states = _table(["state", "time (h)", "share (%)"],
                    [[k, hours(s), f"{100.0 * s / total_s:.1f}" if total_s else "0"]
                     for k, s in r.states], numeric=frozenset({1, 2}))
    keys = " ".join(f'<span class="key {esc(k)}"></span>{esc(k)}' for k, _ in r.states)
    if r.histogram is None:
        hist = f'<p class="na">{esc(r.histogram_note)}</p>'
    else:
        hist = heat_map_svg(r.histogram) + f'\n<p class="note">{esc(r.histogram_note)}</p>'
    events = (_table(["time (UTC)", "event", "value"], r.events, numeric=frozenset({2}))
              if r.events else "")
    unavailable = "".join(f"<li><b>{esc(block)}</b>: {esc(', '.join(names))}</li>"
                          for block, names in r.unavailable_groups) or "<li>none</li>"
    body = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(r.title)}: {esc(r.identity)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{esc(r.title)}</h1>",
        f'<p class="identity">{esc(r.identity)}</p>',
        f'<p class="source">{esc(r.source_text)}</p>',
        "</header>",
        "<main>",
        '<section class="summary">',
        "<h2>Summary</h2>",
        f'<p class="verdict">{esc(r.verdict)}</p>',
        '<div class="tiles">', *tiles, "</div>",
        "</section>",
        '<div class="cols">',
        "<div>",
        '<section class="time-at-state">',
        "<h2>Time at state of charge × temperature (h)</h2>",
        hist,
        "</section>",
        '<section class="events">',
        "<h2>Harmful events</h2>",
        f"<p>{esc(r.counts_text)}.</p>",
        f'<p class="note">{esc(r.events_note)}</p>',
        events,
        "</section>",
        "</div>",
        "<div>",
        "<section>",
        "<h2>Throughput</h2>",
        _table(["quantity", "in", "out", "in + out"], r.throughput,
               numeric=frozenset({1, 2, 3})),
        "</section>",
        "<section>",
        "<h2>Operating time</h2>",
        f'<div class="bar">{bar}</div>',
        f'<p class="note">{keys}; at rest: |current| below '
        f"{esc(sig(r.rest_below_a, 2))} A (C/100).</p>",
        states,
        "</section>",
        "<section>",
        "<h2>Beyond the temperature limits</h2>",
        _table(["condition", "limit", "time (min)"], r.temperatures, numeric=frozenset({1, 2})),
        f'<p class="note">{esc(r.temperature_note)}</p>',
        "</section>",
        "<section>",
        "<h2>Ratings</h2>",
        _table(None, r.ratings),
        "</section>",
        *(["<section>", "<h2>The pack's record</h2>", _table(None, r.record_rows),
           "</section>"] if r.record_rows else []),
        "</div>",
        "</div>",
        '<div class="cols">',
        "<section>",
        "<h2>Source and updates</h2>",
        _table(None, r.updates),
        "</section>",
        '<section class="unavailable">',
        "<h2>Not available from this source</h2>",
        '<p class="note">Written as 0 in the JSON passport (the model has no null): not a '
        "measurement.</p>",
        f"<ul>{unavailable}</ul>",
        "</section>",
        "</div>",
        "</main>",
        "<footer>cellguard passport: a reading of the Battery Pass data model, Performance "
        f"and Durability 1.2.1; generated {esc(r.generated)}.</footer>",
        "</body>",
        "</html>",
        ""]
    return "\n".join(body)
