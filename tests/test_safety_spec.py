"""The firmware's protection defaults against the safety specification
(spec/safety.toml), field by field, for every board file and every chemistry.

The specification is written by hand from its sources, not from the code, so a
default changed in the firmware alone, or in the specification alone, fails here:
the tests at the end change one value on either side (in memory, or in a copy of
the file) and check the comparison names it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cellguard_fw.protection
from cellguard.boards import load_board
from cellguard.config.safety_spec import (
    HOLDS,
    SpecError,
    expected,
    load_spec,
    spec_path,
)
from cellguard.paths import boards_dir, repo_root
from cellguard_fw.app import Bms
from cellguard_fw.chemistry import PROFILES
from cellguard_fw.hal import Hal
from cellguard_fw.protection import ALARM, FAULT, WARNING, protection_table

SEVERITY = {WARNING: "warning", ALARM: "alarm", FAULT: "fault"}
HOLDS_BY_BITS = {bits: name for name, bits in HOLDS.items()}
BOARDS = sorted(p.stem for p in boards_dir().glob("*.json"))
CHEMISTRIES = sorted(PROFILES)


class QuietHal(Hal):
    """Enough of a HAL to build a ``Bms``; nothing is stepped."""

    def __init__(self, n_cells: int, n_temps: int) -> None:
        self.n_cells, self.n_temps = n_cells, n_temps

    def sample(self, raw_cells: Any, raw_temps: Any) -> int:
        return 0

    def frontend(self, cfg: dict[str, Any]) -> Any:
        if "type" in cfg:  # a monitor chip's board: the chip's front end, as its HAL gives
            from cellguard_fw.bq76952_setup import frontend

            return frontend(cfg)
        return super().frontend(cfg)

    def set_output(self, closed: bool) -> None:
        pass

    def unique_id(self) -> bytes:
        return b"\x00" * 8

    def storage_dir(self) -> None:
        return None


class NullPort:
    def readinto(self, buf: Any) -> int:
        return 0

    def write(self, data: Any) -> int:
        return len(data)


def board_with(name: str, chemistry: str) -> dict[str, Any]:
    board = dict(load_board(name))
    board["chemistry"] = chemistry
    board["estimator"] = "none"  # not what is compared; keeps the build quick
    return board


def firmware_defaults(board: dict[str, Any]) -> dict[str, dict[str, object]]:
    """The protection the firmware builds for ``board`` (through ``Bms``, as a board
    boots), field by field, in the specification's terms."""
    bms = Bms(board, QuietHal(board["cells"], board["temp_sensors"]), NullPort())
    p = bms.protection
    names = [row[0] for row in protection_table()]
    return {name: {
        "above": bool(p.above[i]), "trip": p.trip[i], "release": p.release[i],
        "trip_delay_ms": p.trip_delay_ms[i], "release_delay_ms": p.release_delay_ms[i],
        "debounce": p.debounce[i], "severity": SEVERITY[p.severity[i]],
        "holds": HOLDS_BY_BITS[p.blocks[i]],
    } for i, name in enumerate(names)}


def mismatches(spec: dict[str, Any], board: dict[str, Any]) -> list[str]:
    """Every field in which the firmware differs from the specification."""
    want = expected(spec, board)
    have = firmware_defaults(board)
    out: list[str] = []
    if list(have) != list(want):
        out.append(f"protections: firmware {list(have)}, spec {list(want)}")
    for name in want.keys() & have.keys():
        for field, value in want[name].fields().items():
            if have[name][field] != value:
                out.append(f"{board['name']}/{board['chemistry']} {name}.{field}: "
                           f"firmware {have[name][field]!r}, spec {value!r}")
    return sorted(out)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


def test_spec_covers_every_board_file_and_chemistry(spec: dict[str, Any]) -> None:
    assert sorted(spec["board"]) == BOARDS
    assert sorted(spec["chemistry"]) == CHEMISTRIES
    assert list(spec["protection"]) == [row[0] for row in protection_table()]
    for name in BOARDS:
        assert spec["board"][name]["control_period_ms"] == load_board(name)[
            "control_period_ms"], name


@pytest.mark.parametrize("chemistry", CHEMISTRIES)
@pytest.mark.parametrize("board", BOARDS)
def test_firmware_defaults_match_the_spec(spec: dict[str, Any], board: str,
                                          chemistry: str) -> None:
    assert mismatches(spec, board_with(board, chemistry)) == []


def test_every_number_has_a_source(spec: dict[str, Any]) -> None:
    keys = set(spec["sources"])
    for name, p in spec["protection"].items():
        assert any(k in p["source"] for k in keys), f"{name}: cites no [sources] key"
    for chem, table in spec["chemistry"].items():
        for key, text in table.items():
            if key.endswith("_source"):
                assert any(k in text for k in keys), f"{chem}.{key}: cites no [sources] key"


# -- a change on one side alone fails -----------------------------------------------


def _table_with(name: str, column: int, value: object) -> Callable[[], tuple[Any, ...]]:
    original = cellguard_fw.protection.protection_table

    def table() -> tuple[Any, ...]:
        rows = []
        for row in original():
            if row[0] == name:
                row = (*row[:column], value, *row[column + 1:])
            rows.append(row)
        return tuple(rows)

    return table


FIRMWARE_MUTATIONS = {
    # The changes the issue found passing every other safety test.
    "overtemperature demoted to alarm": (("overtemperature", 7, ALARM),
                                         "overtemperature.severity"),
    "overtemperature delay 2000 -> 20000 ms": (("overtemperature", 5, 20000),
                                               "overtemperature.trip_delay_ms"),
    "open_wire debounce 3 -> 1": (("open_wire", 9, 1), "open_wire.debounce"),
    "cell_overvoltage holds discharge": (("cell_overvoltage", 8, 2), "cell_overvoltage.holds"),
    "short_circuit release delay": (("short_circuit", 6, 1000),
                                    "short_circuit.release_delay_ms"),
}


@pytest.mark.parametrize("mutation", sorted(FIRMWARE_MUTATIONS))
def test_a_firmware_table_change_alone_fails(spec: dict[str, Any], mutation: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (name, column, value), field = FIRMWARE_MUTATIONS[mutation]
    monkeypatch.setattr(cellguard_fw.protection, "protection_table",
                        _table_with(name, column, value))
    found = mismatches(spec, board_with("sim-4s", "nmc"))
    assert len(found) == 1 and f" {field}: " in found[0], found


def test_a_firmware_limit_change_alone_fails(spec: dict[str, Any],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROFILES["lfp"], "temp_max_dc", (700, 550))
    found = mismatches(spec, board_with("pico-4s", "lfp"))
    assert found == ["pico-4s/lfp overtemperature.trip: firmware 700, spec 600"]


SPEC_EDITS = [
    # (text in spec/safety.toml, its replacement, the field that must differ)
    ('severity = "fault"\nholds = "both"\nsource = "severity: iec_62619 (discharge',
     'severity = "alarm"\nholds = "both"\nsource = "severity: iec_62619 (discharge',
     "overtemperature.severity"),
    ("unit = \"°C\"\ntrip_delay_ms = 2000\nrelease_delay_ms = 5000\ndebounce = 1\n"
     "severity = \"fault\"\nholds = \"both\"\nsource = \"severity: iec_62619 (discharge",
     "unit = \"°C\"\ntrip_delay_ms = 20000\nrelease_delay_ms = 5000\ndebounce = 1\n"
     "severity = \"fault\"\nholds = \"both\"\nsource = \"severity: iec_62619 (discharge",
     "overtemperature.trip_delay_ms"),
    ("release_delay_ms = 2000\ndebounce = 3\nseverity = \"fault\"\nholds = \"both\"\n"
     "source = \"project (no cell in service",
     "release_delay_ms = 2000\ndebounce = 1\nseverity = \"fault\"\nholds = \"both\"\n"
     "source = \"project (no cell in service",
     "open_wire.debounce"),
    ("cell_overvoltage = [4250, 4150]", "cell_overvoltage = [4300, 4150]",
     "cell_overvoltage.trip"),
    ('[board."sim-4s"]\ncontrol_period_ms = 100\novercurrent_charge = [6000, 3000]',
     '[board."sim-4s"]\ncontrol_period_ms = 100\novercurrent_charge = [6000, 2000]',
     "overcurrent_charge.release"),
]


@pytest.mark.parametrize(("old", "new", "field"), SPEC_EDITS, ids=[e[2] for e in SPEC_EDITS])
def test_a_spec_change_alone_fails(old: str, new: str, field: str, tmp_path: Path) -> None:
    text = spec_path().read_text(encoding="utf-8")
    assert text.count(old) == 1, f"the edit's anchor is gone from the spec: {old!r}"
    copy = tmp_path / "safety.toml"
    copy.write_text(text.replace(old, new), encoding="utf-8")
    found = mismatches(load_spec(copy), board_with("sim-4s", "nmc"))
    assert len(found) == 1 and f" {field}: " in found[0], found


def test_a_malformed_spec_is_a_clear_error(tmp_path: Path) -> None:
    text = spec_path().read_text(encoding="utf-8")
    bad = tmp_path / "safety.toml"
    bad.write_text(text.replace('severity = "warning"', 'severity = "severe"', 1),
                   encoding="utf-8")
    with pytest.raises(SpecError, match=r"protection\.cell_imbalance\.severity must be"):
        load_spec(bad)
    bad.write_text(text.replace("deep_discharge_source =", "deep_discharge_note =", 1),
                   encoding="utf-8")
    with pytest.raises(SpecError, match=r"chemistry\.nmc\.deep_discharge has no"):
        load_spec(bad)
    bad.write_text("[protection\n", encoding="utf-8")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "absent.toml")


def test_a_board_without_a_spec_section_is_named(spec: dict[str, Any]) -> None:
    board = board_with("sim-4s", "nmc")
    board["name"] = "custom-7s"
    with pytest.raises(SpecError, match=re.escape('board."custom-7s"')):
        expected(spec, board)


# -- docs/protection.md renders from the spec --------------------------------------


def test_protection_docs_are_rendered_from_the_spec() -> None:
    tool = repo_root() / "tools" / "gen_safety_docs.py"
    done = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_protection_docs_follow_a_spec_edit(tmp_path: Path) -> None:
    """The page's table comes from the spec: a changed delay in a copy shows there."""
    sys.path.insert(0, str(repo_root() / "tools"))
    try:
        import gen_safety_docs
    finally:
        sys.path.pop(0)
    text = spec_path().read_text(encoding="utf-8")
    copy = tmp_path / "safety.toml"
    copy.write_text(text.replace("trip_delay_ms = 5000", "trip_delay_ms = 5500", 1),
                    encoding="utf-8")
    page = (repo_root() / "docs" / "protection.md").read_text(encoding="utf-8")
    assert "5500" not in page
    assert "| 5500 / 10000 ms |" in gen_safety_docs.render(page, load_spec(copy))
    assert json.dumps(gen_safety_docs.render(page, load_spec())) == json.dumps(page)
