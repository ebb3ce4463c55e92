"""Configuration files (TOML) and typed values, without a board."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime

import pytest
from fakes import INFO_FIELDS
from hypothesis import given, settings
from hypothesis import strategies as st

from cellguard.config import file as cf
from cellguard.config.command import parse_key_value, resolve_key
from cellguard.errors import CellguardError
from cellguard.link.client import CONFIG_KEYS, ConfigEntry, Info

INFO = Info.from_wire(INFO_FIELDS)


def entries(values: dict[str, int]) -> list[ConfigEntry]:
    return [ConfigEntry(k, v, v - 10, v + 10) for k, v in values.items()]


def test_every_board_key_has_a_place_in_the_file() -> None:
    assert set(cf.BY_WIRE) == set(CONFIG_KEYS)
    assert len(cf.BY_PATH) == len(cf.LAYOUT)  # no two keys share a file name
    assert cf.BY_WIRE["cell_ov_mv"].path == "cell_overvoltage.trip_v"
    assert cf.BY_WIRE["charge_current_max_ma"].path == "overcurrent_charge.trip_a"
    assert cf.BY_WIRE["temp_max_release_delay_ms"].path == "overtemperature.release_delay_s"
    assert cf.BY_WIRE["cell_spread_severity"].path == "cell_imbalance.severity"
    assert cf.BY_WIRE["sensor_disconnected_count"].kind == cf.WHOLE
    assert cf.BY_WIRE["capacity_mah"].path == "general.capacity_ah"


def test_dump_is_toml_in_si_units_with_a_board_header() -> None:
    text = cf.dump_text(entries({"cell_ov_mv": 4250, "temp_max_dc": 605, "cell_ov_delay_ms": 1500,
                                 "cell_ov_severity": 1, "cell_ov_debounce": 3,
                                 "capacity_mah": 3000}),
                        INFO, now=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    data = tomllib.loads(text)
    assert data["board"]["name"] == "fake" and data["board"]["unique_id"] == "01"
    assert data["board"]["firmware"] == "fake"
    assert data["cell_overvoltage"] == {"trip_v": 4.25, "trip_delay_s": 1.5, "debounce": 3,
                                        "severity": "alarm"}
    assert data["overtemperature"] == {"trip_c": 60.5}
    assert data["general"] == {"capacity_ah": 3.0}
    # the unit and the allowed range are in the comment, the board's key too
    assert "trip_v = 4.25  # cell_ov_mv, allowed 4.24..4.26 V" in text
    assert "severity = \"alarm\"  # cell_ov_severity: warning, alarm, fault" in text


def test_unknown_board_keys_are_kept_as_comments() -> None:
    text = cf.dump_text([ConfigEntry("key250", 7, 0, 9), *entries({"cell_ov_mv": 4200})], INFO)
    assert "# key250 = 7" in text
    assert cf.parse_text(text).values == {"cell_ov_mv": 4200}


key_values = st.fixed_dictionaries({}, optional={
    fk.wire_key: (st.integers(0, 2) if fk.kind == cf.SEVERITY
                  else st.integers(0, 10**6) if fk.kind == cf.WHOLE
                  else st.integers(cf.I32_MIN, cf.I32_MAX))
    for fk in cf.LAYOUT
})


@settings(max_examples=150, deadline=None)
@given(key_values)
def test_dump_then_load_gives_back_every_value(values: dict[str, int]) -> None:
    text = cf.dump_text(entries(values), INFO)
    parsed = cf.parse_text(text)
    assert parsed.values == values
    assert parsed.board["unique_id"] == INFO.unique_id


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(cf.LAYOUT), st.integers(cf.I32_MIN, cf.I32_MAX))
def test_each_value_converts_both_ways(fk: cf.FileKey, wire: int) -> None:
    if fk.kind == cf.SEVERITY:
        wire = wire % 3
    assert fk.to_wire(fk.to_file(wire)) == wire


@pytest.mark.parametrize(("text", "words"), [
    ("[cell_overvoltage]\ntrip_v = \"high\"\n",
     ["line 2", "cell_overvoltage.trip_v", "takes a number in V"]),
    ("[cell_overvoltage]\ntrip_v = true\n", ["line 2", "takes a number in V"]),
    ("[cell_overvoltage]\n\ntrip_vv = 4.1\n",
     ["line 3", "unknown key cell_overvoltage.trip_vv", "trip_v, release_v"]),
    ("[board]\nname = \"x\"\n[tool.poetry]\nname = 1\n", ["line 3", "unknown table [tool]"]),
    ("trip_v = 4.2\n", ["line 1", "'trip_v' is not a table"]),
    ("[cell_overvoltage]\ndebounce = 1.5\n", ["line 2", "takes a whole number"]),
    ("[cell_overvoltage]\nseverity = \"severe\"\n",
     ["line 2", "one of warning, alarm, fault"]),
    ("[cell_overvoltage]\ntrip_v = 4.2005\n", ["line 2", "whole mV", "4200.5"]),
    ("[cell_overvoltage]\ntrip_v = nan\n", ["line 2", "not a finite number"]),
    ("[general]\ncapacity_ah = 1e12\n", ["line 2", "32-bit"]),
    ("[cell_overvoltage\ntrip_v = 4.2\n", ["not a valid TOML file", "line 1"]),
    ("[cell_overvoltage]\ntrip_v = [4.2]\n", ["line 2", "takes a number"]),
])
def test_bad_files_get_one_clear_line(text: str, words: list[str]) -> None:
    with pytest.raises(cf.ConfigFileError) as exc:
        cf.parse_text(text, "my.toml")
    message = str(exc.value)
    assert "\n" not in message and message.startswith("my.toml")
    for word in words:
        assert word in message


def test_read_file_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(cf.ConfigFileError, match="no such configuration file"):
        cf.read_file(tmp_path / "missing.toml")
    with pytest.raises(cf.ConfigFileError, match="is a folder"):
        cf.read_file(tmp_path)
    binary = tmp_path / "log.sqlite"
    binary.write_bytes(b"SQLite format 3\x00\xff\xfe\x00")
    with pytest.raises(cf.ConfigFileError, match="not a TOML file"):
        cf.read_file(binary)


def test_a_partial_file_and_severity_words_in_any_case() -> None:
    parsed = cf.parse_text("[cell_imbalance]\nseverity = \"Alarm\"\n[general]\n"
                           "telemetry_period_s = 0.5\n")
    assert parsed.values == {"cell_spread_severity": 1, "telemetry_period_ms": 500}


@pytest.mark.parametrize(("key", "text", "wire"), [
    ("cell_ov_mv", "4200", 4200), ("cell_ov_mv", "4.2V", 4200), ("cell_ov_mv", "4.2 v", 4200),
    ("cell_ov_mv", "4200mv", 4200), ("temp_max_dc", "55C", 550), ("temp_max_dc", "55°C", 550),
    ("cell_ov_delay_ms", "1.5s", 1500), ("capacity_mah", "3Ah", 3000),
    ("cell_ov_severity", "warning", 0), ("cell_ov_severity", "ALARM", 1),
    ("cell_ov_severity", "fault", 2), ("cell_ov_severity", "2", 2),
    ("cell_ov_debounce", "3", 3),
])
def test_values_on_the_command_line(key: str, text: str, wire: int) -> None:
    assert cf.parse_value(key, text) == wire


def test_bad_values_on_the_command_line() -> None:
    with pytest.raises(CellguardError, match="not a severity for cell_ov_severity"):
        cf.parse_value("cell_ov_severity", "loud")
    with pytest.raises(CellguardError, match="takes whole mV"):
        cf.parse_value("cell_ov_mv", "4.2005V")
    with pytest.raises(CellguardError, match="not a value for cell_ov_mv"):
        cf.parse_value("cell_ov_mv", "4.2.1V")


def test_file_keys_on_the_command_line() -> None:
    assert resolve_key("cell_overvoltage.trip_v")[0] == "cell_ov_mv"
    assert parse_key_value("cell_overvoltage.trip_v", "4.2") == ("cell_ov_mv", 4200)
    assert parse_key_value("cell_overvoltage.trip_v", "4150mv") == ("cell_ov_mv", 4150)
    assert parse_key_value("cell_ov_mv", "4150") == ("cell_ov_mv", 4150)
    assert parse_key_value("cell_overvoltage.severity", "alarm") == ("cell_ov_severity", 1)
    with pytest.raises(CellguardError, match=r"unknown configuration key 'cell_overvoltage\.x'"):
        resolve_key("cell_overvoltage.x")


def test_diff_lists_only_changes() -> None:
    board = entries({"cell_ov_mv": 4250, "cell_ov_severity": 2, "temp_max_dc": 600})
    changes = cf.diff({"cell_ov_mv": 4200, "cell_ov_severity": 2, "cell_uv_mv": 2900}, board)
    assert [(c.key, c.board, c.file) for c in changes] == [
        ("cell_ov_mv", 4250, 4200), ("cell_uv_mv", None, 2900)]
    assert "4.25 V -> 4.2 V" in changes[0].line()
    assert "not on this board" in changes[1].line()
