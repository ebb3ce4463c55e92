"""Render docs/protection.md's protection tables from the safety specification.

    python tools/gen_safety_docs.py          # rewrite the tables in docs/protection.md
    python tools/gen_safety_docs.py --check  # exit 1 if they are stale

The tables come from ``spec/safety.toml`` (written by hand against its sources),
never from the firmware: ``tests/test_safety_spec.py`` compares the firmware with
the same file, so the page shows what the firmware is required to do. Only the
text between the two markers in the page is replaced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cellguard.config.safety_spec import SpecError, load_spec, thresholds

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "protection.md"
COMMAND = ".venv/bin/python tools/gen_safety_docs.py"
BEGIN = "<!-- begin: rendered from spec/safety.toml"
END = "<!-- end: rendered from spec/safety.toml -->"
SHOWN_BOARD = "sim-4s"
SHOWN_CHEMISTRY = "nmc"
CHEMISTRY_NAMES = {"nmc": "NMC", "lfp": "LFP", "sodium_ion": "sodium-ion"}


def _value(unit: str, v: float) -> str:
    return f"{v:.1f}" if unit == "°C" else f"{int(v)}"


def _pair(p: dict[str, Any], pair: tuple[float, float]) -> str:
    trip_sign, release_sign = (">", "<") if p["trips"] == "above" else ("<", ">")
    unit = p["unit"]
    return (f"{trip_sign} {_value(unit, pair[0])} / {release_sign} "
            f"{_value(unit, pair[1])} {unit}")


def _severity(p: dict[str, Any]) -> str:
    if p["severity"] == "warning":
        return "**warning**"
    word = "fault" if p["severity"] == "fault" else "**alarm**"
    return f"{word} ({p['holds']})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(r) + " |" for r in rows])


def render_tables(spec: dict[str, Any]) -> str:
    prot = spec["protection"]
    period = spec["board"][SHOWN_BOARD]["control_period_ms"]
    lines = [
        f"{BEGIN} by `{COMMAND}`; edit the spec, not this text -->",
        "",
        f"Defaults for `{SHOWN_BOARD}` ({CHEMISTRY_NAMES[SHOWN_CHEMISTRY]}, "
        f"{period} ms control period); the severity's direction is the one an alarm "
        "holds at zero.",
        "",
    ]
    rows = []
    for name, p in prot.items():
        pair = thresholds(spec, name, SHOWN_CHEMISTRY, SHOWN_BOARD)
        rows.append([f"`{name}`", p["watches"], _pair(p, pair),
                     f"{p['trip_delay_ms']} / {p['release_delay_ms']} ms",
                     str(p["debounce"]), _severity(p)])
    lines += _table(["protection", "watches", "trip / release", "trip / release delay",
                     "debounce", "severity (direction)"], rows)

    chems = list(spec["chemistry"])
    lines += ["", "Thresholds that come from the cells, per chemistry:", ""]
    rows = []
    for name, p in prot.items():
        if any(name in spec["chemistry"][c] for c in chems):
            rows.append([f"`{name}`"] + [_pair(p, thresholds(spec, name, c, SHOWN_BOARD))
                                         for c in chems])
    lines += _table(["protection"] + [CHEMISTRY_NAMES.get(c, c) for c in chems], rows)

    boards = list(spec["board"])
    lines += ["", "Thresholds that come from the board (its current ratings, current "
              "sensor and cell count), per board file:", ""]
    rows = []
    for name, p in prot.items():
        if any(name in spec["board"][b] for b in boards):
            rows.append([f"`{name}`"] + [_pair(p, thresholds(spec, name, SHOWN_CHEMISTRY, b))
                                         for b in boards])
    lines += _table(["protection"] + [f"`{b}`" for b in boards], rows)

    lines += ["", "### Sources", "",
              "Where a number comes from (\"project\": no outside document gives it; "
              "the reason is given instead):", ""]
    lines += [f"- **{key}**: {text}" for key, text in spec["sources"].items()]
    lines += [""]
    for name, p in prot.items():
        lines.append(f"- `{name}`: {p['source']}")
        for c in chems:
            source = spec["chemistry"][c].get(f"{name}_source")
            if source:
                lines.append(f"  - {CHEMISTRY_NAMES.get(c, c)}: {source}")
    lines.append("")
    for b in boards:
        lines.append(f"- `{b}`: {spec['board'][b]['source']}")
    lines += ["", END]
    return "\n".join(lines)


def render(page: str, spec: dict[str, Any]) -> str:
    """``page`` with the text between the markers replaced by the spec's tables."""
    start = page.find(BEGIN)
    stop = page.find(END)
    if start < 0 or stop < start:
        raise SpecError(f"{PAGE.name} has no '{BEGIN} ... {END}' block to fill")
    return page[:start] + render_tables(spec) + page[stop + len(END):]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the page is stale")
    args = ap.parse_args(argv)
    try:
        page = PAGE.read_text(encoding="utf-8")
        text = render(page, load_spec())
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        if text != page:
            print(f"{PAGE} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    if text != page:
        PAGE.write_text(text, encoding="utf-8")
        print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
