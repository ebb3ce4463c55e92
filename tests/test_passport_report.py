"""cellguard passport --format html / md: the one-page health report for a person.

The HTML is parsed with the standard library's html.parser: one self-contained page
(no script, no external link, balanced elements), one SVG per histogram whose bins
carry the same seconds as the source (a board's lifetime record, or the JSON
passport of the same log), and every text from the board shown as text. The
expected figures come from the record's words or the logged inputs, not from the
report's own output.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from test_offline import INFO, Run, write
from test_passport import T0, estimate_row, main, refused

from cellguard.formats.passport import (
    EXTENSION,
    build_passport,
    lifetime_from_record,
    static_from_info,
)
from cellguard.formats.passport_report import render_html, render_markdown
from cellguard.link.client import FAULT_BITS
from cellguard.link.lifetime import LAYOUT, WORDS, LifetimeRecord
from cellguard.store import LogWriter

HOSTILE = '<script>alert("x")</script>'
SOC_LABELS = ["0–20 %", "20–40 %", "40–60 %", "60–80 %", "80–100 %"]  # docs/lifetime.md
TEMP_LABELS = ["below 0 °C", "0–25 °C", "25–45 °C", "from 45 °C"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "source", "track", "wbr"}


# -- a strict reading of the page -----------------------------------------------------------
@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # its own text and its children's

    def all_text(self) -> str:
        return "".join(self.text)

    def find(self, tag: str, cls: str | None = None) -> list[Element]:
        found = []
        for child in self.children:
            if child.tag == tag and (cls is None or cls in child.attrs.get("class", "").split()):
                found.append(child)
            found += child.find(tag, cls)
        return found


class Page(HTMLParser):
    """The document as a tree; any unbalanced or misnested element is an error."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.open = self.root
        self.errors: list[str] = []
        self.doctype = ""
        self.tags: list[Element] = []
        self.feed(text)
        self.close()
        if self.open is not self.root:
            self.errors.append(f"<{self.open.tag}> never closed")

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def _element(self, tag: str, attrs: list[tuple[str, str | None]]) -> Element:
        el = Element(tag, {k: v or "" for k, v in attrs}, self.open)
        self.open.children.append(el)
        self.tags.append(el)
        return el

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = self._element(tag, attrs)
        if tag not in VOID:
            self.open = el

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, attrs)  # <rect/> in SVG

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if self.open.tag != tag:
            self.errors.append(f"</{tag}> closes <{self.open.tag}>")
            return
        assert self.open.parent is not None
        self.open = self.open.parent

    def handle_data(self, data: str) -> None:
        el: Element | None = self.open
        while el is not None:
            el.text.append(data)
            el = el.parent


def check_self_contained(text: str) -> Page:
    """Valid-looking HTML5 with nothing outside the file and nothing that runs."""
    page = Page(text)
    assert page.errors == []
    assert page.doctype.lower() == "doctype html"
    html = page.root.find("html")
    assert len(html) == 1 and html[0].attrs.get("lang") == "en"
    assert [m.attrs.get("charset") for m in page.root.find("meta") if "charset" in m.attrs] \
        == ["utf-8"]
    head = page.root.find("head")
    assert len(head) == 1 and len([t for t in head[0].children if t.tag == "title"]) == 1
    assert len(page.root.find("h1")) == 1
    tags = {el.tag for el in page.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "image", "use",
                       "foreignobject", "base", "form", "a"}, tags
    for el in page.tags:
        for name, value in el.attrs.items():
            assert not name.startswith("on"), (el.tag, name)
            assert "://" not in value and not value.startswith("//"), (el.tag, name, value)
            assert not value.lower().startswith(("javascript:", "data:")), (el.tag, name)
            assert "url(" not in value or value.startswith("url(#"), (el.tag, name, value)
    style = "".join(s.all_text() for s in page.root.find("style"))
    assert "@import" not in style and "://" not in style and "url(" not in style
    assert "@font-face" not in style
    assert "<script" not in text.lower()
    return page


def hours_of(text: str) -> tuple[float, float]:
    """A shown number of hours, and how far from the truth its rounding may be."""
    text = text.strip().replace(",", "")
    if text.startswith("<"):
        return 0.0, float(text.lstrip("< "))
    places = len(text.split(".")[1]) if "." in text else 0
    return float(text), 0.5 * 10 ** -places + 1e-12


def assert_hours(text: str, seconds: float) -> None:
    shown, tol = hours_of(text)
    assert abs(shown - seconds / 3600.0) <= tol, (text, seconds)
    assert (shown == 0 and not text.startswith("<")) == (seconds == 0), (text, seconds)


# -- sources --------------------------------------------------------------------------------
def board_record() -> LifetimeRecord:
    """A record with a distinct value in every histogram word (a transposed or shifted
    bin fails), an empty bin, a bin of a few seconds and a few harmful events."""
    w = [0] * WORDS
    for k in range(20):
        w[31 + k] = 3600 * (k + 1) * 7 + 13 * k  # seconds, word 31 + 4 * soc + temp
    w[31 + 4 * 0 + 3] = 0  # 0-20 %, from 45 degC: never
    w[31 + 4 * 4 + 0] = 9  # 80-100 %, below 0 degC: 9 s
    w[0], w[3] = 500, 480  # Ah in, out
    w[14] = sum(w[31:51])  # operating s
    w[16], w[17] = 100_000, 200_000
    w[18] = w[14] - w[16] - w[17]
    w[19], w[21] = 1800, 600  # hot / cold, not charging (s)
    w[23], w[25] = 2, 1  # deep discharge, overtemperature
    w[82] = 163_333  # equivalent full cycles as the board counts them (0.001)
    return LifetimeRecord.from_words(LAYOUT, 3, w)


def board_passport(info: Any = INFO) -> tuple[LifetimeRecord, dict[str, Any]]:
    rec = board_record()
    return rec, build_passport(static_from_info(info), lifetime_from_record(rec, T0), T0)


def trip(ms: int, name: str, value: int) -> dict[str, Any]:
    return {"event_index": ms, "board_time_ms": ms, "kind": "trip", "severity": "fault",
            "fault": FAULT_BITS[name], "value": value, "faults": FAULT_BITS[name]}


def a_log(tmp_path: Path, info: Any = INFO) -> Path:
    """Known SoC and temperature segments (1 s period), two trips and an estimate."""
    run = Run().add(600, soc=9000, temps=(240, 270))  # 80-100 %, 25-45 degC
    run.add(1200, -1500, soc=3000, temps=(-80, -20))  # 20-40 %, below 0 degC, discharging
    run.add(300, 2000, soc=5000, temps=(300, 700))  # 40-60 %, from 45 degC, charging
    events = [(1, trip(700_000, "deep_discharge", 2400)),
              (1, trip(1_900_000, "overtemperature_charge", 520))]
    path = write(tmp_path / "a.sqlite", (replace(info, temp_count=2), run.rows), events=events)
    w = LogWriter(path)
    bid = w.add_board(replace(info, temp_count=2), "/dev/ttyTEST")
    estimate = estimate_row()
    w.add_estimate(bid, estimate, host_time=T0 + 2200)
    w.close()
    return path


def bins_of(page: Page) -> list[list[float]]:
    """The seconds each SVG bin carries, [soc bin][temperature bin]; checks the text
    shown in each bin against them."""
    svg = page.root.find("svg")[0]
    found: dict[tuple[int, int], float] = {}
    for g in svg.find("g", "bin"):
        i, j = int(g.attrs["data-soc-bin"]), int(g.attrs["data-temp-bin"])
        assert (i, j) not in found
        found[i, j] = float(g.attrs["data-seconds"])
        texts = g.find("text")
        assert len(texts) == 1
        assert_hours(texts[0].all_text(), found[i, j])
        assert len(g.find("rect")) == 1 and len(g.find("title")) == 1
    assert sorted(found) == [(i, j) for i in range(5) for j in range(4)]
    return [[found[i, j] for j in range(4)] for i in range(5)]


# -- HTML -----------------------------------------------------------------------------------
def test_html_from_a_board_record_draws_its_histogram() -> None:
    rec, doc = board_passport()
    page = check_self_contained(render_html(doc))
    svgs = page.root.find("svg")
    assert len(svgs) == 1 and svgs[0].attrs.get("class") == "histogram"
    assert bins_of(page) == [[float(v) for v in row] for row in rec.histogram_s]
    svg = svgs[0]
    assert [t.all_text() for t in svg.find("text", "soc-label")] == SOC_LABELS
    assert [t.all_text() for t in svg.find("text", "temp-label")] == TEMP_LABELS
    axes = [t.all_text() for t in svg.find("text", "axis")]
    assert any("state of charge (%)" in a for a in axes)
    assert any("temperature (°C)" in a for a in axes)
    legend = [t.all_text() for t in svg.find("text", "legend")]
    top = max(map(max, rec.histogram_s))
    assert legend[0] == "h per bin" and legend[1] == "0 h"
    assert_hours(legend[-1].removesuffix(" h"), top)  # the legend's scale: the fullest bin
    assert len(svg.find("linearGradient")) + len(svg.find("lineargradient")) == 1


def test_html_summary_leads_with_the_verdict_and_never_shows_a_missing_zero() -> None:
    rec, doc = board_passport()
    page = check_self_contained(render_html(doc))
    main_text = page.root.find("main")[0].all_text()
    summary = page.root.find("section", "summary")[0]
    assert main_text.lstrip().startswith("Summary")  # the verdict first, the details after
    tiles = {t.children[0].all_text(): t.children[1] for t in summary.find("div", "tile")}
    # from a board: no capacity or resistance estimate: "not available", marked, never 0
    soh = tiles["State of health (capacity)"]
    assert soh.all_text() == "not available" and "na" in soh.attrs["class"]
    assert tiles["Internal resistance increase"].all_text() == "not available"
    assert float(tiles["Equivalent full cycles"].all_text()) == pytest.approx(163.333, abs=0.5)
    assert tiles["Harmful events"].all_text() == "3"
    assert tiles["Time beyond the temperature limits"].all_text() == "40.0 min"  # 1800+600 s
    assert_hours(tiles["Operating time"].all_text().removesuffix(" h"), rec.operating_s)
    verdict = summary.find("p", "verdict")[0].all_text()
    assert "3 harmful events (2 deep discharge, 1 overtemperature)" in verdict
    assert "the pack's whole life" in verdict
    # every attribute the passport lists as unavailable is named on the page
    listed = page.root.find("section", "unavailable")[0].all_text()
    for path in doc[EXTENSION]["unavailable"]:
        assert path.split(".", 1)[1] in listed
    assert "stateOfCharge" in listed


def test_html_escapes_every_text_from_the_board() -> None:
    hostile = replace(INFO, board=HOSTILE, unique_id="&amp;<b>id</b>")
    _, doc = board_passport(hostile)
    text = render_html(doc)
    page = check_self_contained(text)  # no <script> element, nothing run
    assert not [el for el in page.tags if el.all_text() == "id"]  # the <b> is not markup
    identity = page.root.find("p", "identity")[0].all_text()
    assert HOSTILE in identity and "&amp;<b>id</b>" in identity  # shown as it was sent
    assert HOSTILE in page.root.find("head")[0].find("title")[0].all_text()
    assert "&lt;script&gt;" in text and "&amp;amp;" in text


def test_html_and_md_from_a_log_show_the_passports_figures(tmp_path: Path) -> None:
    log = a_log(tmp_path)
    js, page_html, page_md = (tmp_path / "p.json", tmp_path / "p.html", tmp_path / "p.md")
    for out, fmt in ((js, "json"), (page_html, "html"), (page_md, "md")):
        assert main("passport", log, "-o", out, "--format", fmt) == 0
    doc = json.loads(js.read_text(encoding="utf-8"))
    hist = doc[EXTENSION]["timeAtStateHistogram"]["seconds"]
    # the inputs: 600 s at 80-100 %/25-45, 1200 s at 20-40 %/below 0, 299 s at 40-60 %/45+
    assert hist[4][2] == pytest.approx(600) and hist[1][0] == pytest.approx(1200)
    assert hist[2][3] == pytest.approx(299)
    page = check_self_contained(page_html.read_text(encoding="utf-8"))
    assert bins_of(page) == [[pytest.approx(v) for v in row] for row in hist]
    summary = page.root.find("section", "summary")[0].all_text()
    assert "90.0 %" in summary and "capacity fade 10.0 %" in summary  # 2.7 of 3 Ah
    assert "+15.0 %" in summary  # r0 growth 115 %
    assert "the logged runs only" in summary
    # the last harmful events: each with its time and value, from the log
    events = page.root.find("section", "events")[0]
    rows = [[c.all_text() for c in tr.children] for tr in events.find("tbody")[0].find("tr")]
    assert rows == [["2023-11-14 22:45:00", "overtemperature charge", "52 °C"],
                    ["2023-11-14 22:25:00", "deep discharge", "2.4 V"]]
    states = {row[0]: row[1] for row in (
        [c.all_text() for c in tr.children]
        for table in page.root.find("table") for tr in table.find("tr"))}
    assert_hours(states["discharging"], 1200)
    assert_hours(states["charging"], 299)
    assert_hours(states["rest"], 600)
    text = page_md.read_text(encoding="utf-8")
    assert_md_histogram(text, hist)
    assert "| Equivalent full cycles |" in text and "| 2023-11-14 22:25:00 | deep discharge |" \
        in text


def test_html_from_a_log_without_temperatures_says_so(tmp_path: Path) -> None:
    bare = replace(INFO, temp_count=0)
    log = write(tmp_path / "a.sqlite", (bare, Run().add(30, temps=()).rows))
    out = tmp_path / "p.html"
    assert main("passport", log, "-o", out, "--format", "html") == 0
    page = check_self_contained(out.read_text(encoding="utf-8"))
    assert page.root.find("svg") == []
    section = page.root.find("section", "time-at-state")[0]
    assert "Not available from this source" in section.all_text()
    md = tmp_path / "p.md"
    assert main("passport", log, "-o", md, "--format", "md") == 0
    assert "Not available from this source: no temperature" in md.read_text(encoding="utf-8")


# -- Markdown -------------------------------------------------------------------------------
def md_rows(text: str, first: str) -> list[list[str]]:
    """The cells of the Markdown table rows whose first cell starts with ``first``."""
    out = []
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells and cells[0].startswith(first):
            out.append(cells)
    return out


def assert_md_histogram(text: str, seconds: list[list[float]]) -> None:
    rows = md_rows(text, "SoC ")
    assert [r[0] for r in rows] == [f"SoC {label}" for label in reversed(SOC_LABELS)]
    header = md_rows(text, "state of charge")
    assert header and header[0][1:5] == TEMP_LABELS
    for row, i in zip(rows, reversed(range(5)), strict=True):
        for j in range(4):
            assert_hours(row[1 + j].replace("\\<", "<"), seconds[i][j])
        assert_hours(row[5].replace("\\<", "<"), sum(seconds[i]))
    # the text bars: one line a bin, the fullest bin the longest, an empty bin none
    bars = re.findall(r"^(.*?)\|([█▏ ]*)\| (.*) h$", text, flags=re.M)
    assert len(bars) == 20
    top = max(map(max, seconds))
    lengths = [len(b.rstrip()) for _, b, _ in bars]
    values = [seconds[i][j] for i in reversed(range(5)) for j in range(4)]
    for value, length in zip(values, lengths, strict=True):
        assert (length == 0) == (value == 0)
        assert length == max(1, round(24 * value / top)) if value else True
    assert max(lengths) == 24


def test_md_from_a_board_record_has_the_histogram_table_and_bars() -> None:
    rec, doc = board_passport()
    text = render_markdown(doc)
    assert text.startswith("# Battery health report: sim-4s · pack abcd")
    assert_md_histogram(text, [[float(v) for v in row] for row in rec.histogram_s])
    assert md_rows(text, "State of health") == [
        ["State of health (capacity)", "not available", "no capacity estimate in this source"]]
    assert md_rows(text, "charge (Ah)")[0][1:3] == ["500", "480"]


def test_md_escapes_every_text_from_the_board() -> None:
    _, doc = board_passport(replace(INFO, board=HOSTILE + " | *x* [l](u)", unique_id="`c`"))
    text = render_markdown(doc)
    title = text.splitlines()[0]
    # no markup can start from the data: every <, >, `, [, ], |, * of it is escaped
    assert not re.search(r"(?<!\\)[<>`\[\]|*]", title.split(" · NMC")[0].split(": ", 1)[1])
    assert "`c`" not in text and "[l](u)" not in text
    assert title.startswith(r'# Battery health report: \<script\>alert("x")\</script\> \| '
                            r"\*x\* \[l\](u) · pack \`c\`")


# -- files ----------------------------------------------------------------------------------
def test_the_report_never_loses_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = a_log(tmp_path)
    before = log.read_bytes()
    for fmt in ("html", "md"):
        out = tmp_path / f"kept.{fmt}"
        out.write_text("mine")
        refused(capsys, "passport", log, "-o", out, "--format", fmt, words="exists")
        assert out.read_text() == "mine"
        refused(capsys, "passport", log, "-o", log, "--format", fmt, "--force",
                words="is this command's input")
        refused(capsys, "passport", log, "-o", tmp_path / ".." / tmp_path.name / log.name,
                "--format", fmt, "--force", words="is this command's input")
        assert main("passport", log, "-o", out, "--format", fmt, "--force") == 0
        assert out.read_text(encoding="utf-8") != "mine"
        capsys.readouterr()
    assert log.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.sqlite", "kept.html", "kept.md"]  # no temporary
    with pytest.raises(SystemExit) as stop:
        main("passport", log, "-o", tmp_path / "x.pdf", "--format", "pdf")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'pdf'" in err and "Traceback" not in err
    refused(capsys, "passport", tmp_path / "none.sqlite", "-o", tmp_path / "n.html",
            "--format", "html", words="no such log file")
    refused(capsys, "passport", log, "-o", tmp_path / "no" / "such" / "p.html", "--format",
            "html", words="does not exist")
    assert not (tmp_path / "n.html").exists()
