"""Board configuration as a TOML file: dump, load, diff, and typed values.

The wire carries each key as an integer in the unit its name ends with
(``cell_ov_mv``: mV). A configuration file groups the keys by protection and
holds them in SI units, the unit in the key's name (``trip_v``, ``trip_delay_s``,
``trip_c``, ``trip_a``) and the wire key with the allowed range in a comment; a
severity is a word (warning, alarm, fault)::

    [board]
    name = "sim-4s"
    unique_id = "5e1173696d2d3473"
    firmware = "0.1.0"

    [cell_overvoltage]
    trip_v = 4.25  # cell_ov_mv, allowed 4.149..4.3 V
    release_v = 4.15  # cell_ov_release_mv, allowed 2.5..4.251 V
    ...
    severity = "fault"  # cell_ov_severity: warning, alarm or fault

A file may hold only some keys: ``load`` writes only keys that differ from the
board. ``[board]`` says where the file came from and is never written back.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from ..errors import CellguardError
from ..link.client import CONFIG_KEYS, ConfigEntry, Info
from ..protocol.messages import PROTECTION_STEMS, protection_keys
from ..units import wire_unit_name

SEVERITIES: tuple[str, ...] = ("warning", "alarm", "fault")
"""Severity words by their wire value."""

I32_MIN, I32_MAX = -(2**31), 2**31 - 1

BOARD_TABLE = "board"
GENERAL_TABLE = "general"

# wire unit -> (SI unit shown to people, suffix in a file key, wire units per SI unit)
_SI: dict[str, tuple[str, str, float]] = {
    "mv": ("V", "v", 1000.0),
    "ma": ("A", "a", 1000.0),
    "dc": ("°C", "c", 10.0),
    "ms": ("s", "s", 1000.0),
    "mah": ("Ah", "ah", 1000.0),
}

NUMBER, WHOLE, SEVERITY = "number", "whole", "severity"


class ConfigFileError(CellguardError):
    """A configuration file that cannot be read, or a value in it that is wrong."""


class BeyondWireRange(ConfigFileError):
    """A value no board can hold: the wire carries every key as a 32-bit integer."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class FileKey:
    """Where a wire key lives in a configuration file, and how its value converts."""

    wire_key: str  # cell_ov_mv
    table: str  # cell_overvoltage
    name: str  # trip_v
    kind: str  # NUMBER (SI float), WHOLE (integer count), SEVERITY (a word)
    scale: float  # wire units per file unit
    unit: str  # the file unit as people write it: V, A, °C, s, Ah, samples, ""

    @property
    def path(self) -> str:
        return f"{self.table}.{self.name}"

    def to_file(self, wire: int) -> Any:
        """The file value of a wire value."""
        if self.kind == SEVERITY:
            return SEVERITIES[wire] if 0 <= wire < len(SEVERITIES) else wire
        if self.kind == WHOLE:
            return wire
        return wire / self.scale

    def to_wire(self, value: Any) -> int:
        """The wire value of a file value; ConfigFileError says what is wrong."""
        if self.kind == SEVERITY:
            if isinstance(value, str) and value.strip().lower() in SEVERITIES:
                return SEVERITIES.index(value.strip().lower())
            if isinstance(value, int) and not isinstance(value, bool):
                return _i32(self, value)
            raise ConfigFileError(
                f"{self.path} = {_show(value)}: a severity is one of {', '.join(SEVERITIES)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            what = "a whole number" if self.kind == WHOLE else f"a number in {self.unit}"
            raise ConfigFileError(f"{self.path} = {_show(value)}: takes {what}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigFileError(f"{self.path} = {_show(value)}: not a finite number")
        if self.kind == WHOLE:
            if isinstance(value, float):
                if value != int(value):
                    raise ConfigFileError(f"{self.path} = {_show(value)}: takes a whole number")
                value = int(value)
            return _i32(self, value)
        raw = value * self.scale
        if not math.isfinite(raw):  # a huge finite number times the scale
            raise BeyondWireRange(f"{self.path} = {_show(value)}: out of the board's range "
                                  "(32-bit)", self.wire_key)
        wire = round(raw)
        if abs(raw - wire) > 1e-6 * max(1.0, abs(raw)):
            wire_unit = wire_unit_name(self.wire_key.rsplit("_", 1)[-1])
            raise ConfigFileError(
                f"{self.path} = {_show(value)}: the board takes whole {wire_unit} "
                f"({_show(value)} {self.unit} is {raw:g} {wire_unit})")
        return _i32(self, wire)

    def range_text(self, lo: int, hi: int) -> str:
        """An allowed range for people: ``4.149..4.3 V``, ``warning..fault``."""
        if self.kind == SEVERITY:
            return f"{self.to_file(lo)}..{self.to_file(hi)}"
        return f"{_plain(self, lo)}..{_plain(self, hi)} {self.unit}".rstrip()

    def describe(self, wire: int) -> str:
        """A wire value for people: ``4.25 V``, ``3 samples``, ``fault``."""
        v = self.to_file(wire)
        if isinstance(v, str):
            return v
        if isinstance(v, float):
            return f"{v:g} {self.unit}"
        return f"{v} {self.unit}".rstrip()


def _i32(key: FileKey, value: int) -> int:
    if not I32_MIN <= value <= I32_MAX:
        raise BeyondWireRange(f"{key.path} = {value}: out of the board's range (32-bit)",
                              key.wire_key)
    return value


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


def _protection_names() -> list[str]:
    """The protections' names (the fault names), in PROTECTION_STEMS order."""
    from cellguard_fw.protection import protection_table

    return [row[0] for row in protection_table()]


def _general_key(wire_key: str) -> FileKey:
    base, _, unit = wire_key.rpartition("_")
    if unit in _SI:
        si, suffix, scale = _SI[unit]
        return FileKey(wire_key, GENERAL_TABLE, f"{base}_{suffix}", NUMBER, scale, si)
    return FileKey(wire_key, GENERAL_TABLE, wire_key, WHOLE, 1.0, "")


def _layout() -> list[FileKey]:
    """Every key this host knows, in file order: protections, then the rest."""
    ids = protection_keys()
    by_id = {v: k for k, v in ids.items()}
    names = _protection_names()
    keys: list[FileKey] = []
    for i, (stem, unit) in enumerate(PROTECTION_STEMS):
        table = names[i] if i < len(names) else stem
        base = 4 * i + 1
        if unit in _SI:
            si, suffix, scale = _SI[unit]
            kind = NUMBER
        else:  # a count (sensor_disconnected: sensors), no SI unit
            si, suffix, scale, kind = "", unit, 1.0, WHOLE
        keys += [
            FileKey(by_id[base], table, f"trip_{suffix}", kind, scale, si),
            FileKey(by_id[base + 1], table, f"release_{suffix}", kind, scale, si),
            FileKey(by_id[base + 2], table, "trip_delay_s", NUMBER, 1000.0, "s"),
            FileKey(by_id[base + 3], table, "release_delay_s", NUMBER, 1000.0, "s"),
            FileKey(f"{stem}_debounce", table, "debounce", WHOLE, 1.0, "samples"),
            FileKey(f"{stem}_severity", table, "severity", SEVERITY, 1.0, ""),
        ]
    keys += [_general_key(k) for k in CONFIG_KEYS if k not in ids]
    return keys


LAYOUT: list[FileKey] = _layout()
BY_WIRE: dict[str, FileKey] = {k.wire_key: k for k in LAYOUT}
BY_PATH: dict[tuple[str, str], FileKey] = {(k.table, k.name): k for k in LAYOUT}
TABLES: list[str] = list(dict.fromkeys(k.table for k in LAYOUT))


def file_key(wire_key: str) -> FileKey | None:
    return BY_WIRE.get(wire_key)


# -- values on the command line ------------------------------------------------------
def parse_value(key: str, text: str) -> int:
    """A value typed by a person for ``key``, as the integer the wire carries.

    The key's own unit (``4200`` for ``cell_ov_mv``), or SI with its unit
    (``4.2V``, ``4.2 V``, ``60C``, ``0.5s``, ``3Ah``); a severity also as a word.
    """
    from ..link.client import key_unit

    if key.endswith("_severity"):
        word = text.strip().lower()
        if word in SEVERITIES:
            return SEVERITIES.index(word)
        if word in tuple(str(k) for k in range(len(SEVERITIES))):
            return int(word)
        raise CellguardError(
            f"not a severity for {key}: {text!r} (give {', '.join(SEVERITIES)} or 0, 1, 2)")
    wire, si, scale = key_unit(key)
    t = text.strip().replace(" ", "")
    if si and t.lower().endswith(wire):  # before the SI unit: "mv" ends with "v"
        number, factor = t[: -len(wire)], 1.0
    elif si and t.lower().endswith(si.lower()):
        number, factor = t[: -len(si)], scale
    elif si == "°C" and t.lower().endswith("c"):
        number, factor = t[:-1], scale
    else:
        number, factor = t, 1.0
    shown = wire_unit_name(wire)
    try:
        given = float(number)
    except ValueError:
        example = f"give {shown}, e.g. 4200, or {si}, e.g. 4.2{si}" if si else "give a number"
        raise CellguardError(f"not a value for {key}: {text!r} ({example})") from None
    if not math.isfinite(given):
        raise CellguardError(f"not a value for {key}: {text!r} (not a finite number)")
    value = given * factor
    if not I32_MIN <= value <= I32_MAX:  # also a finite number that overflows to infinity
        raise BeyondWireRange(
            f"{key} = {text.strip()} is {value:g} {wire}, beyond what any board holds (a 32-bit "
            f"integer, {I32_MIN}..{I32_MAX})", key)
    if abs(value - round(value)) > 1e-6 * max(1.0, abs(value)):
        hint = ""
        if si and number == t:  # a bare number: the SI value was likely meant
            typed = "C" if si == "°C" else si
            hint = f"; did you mean {t}{typed}?"
        raise CellguardError(f"{key} takes whole {shown}: {text!r} is {value:g} {shown}{hint}")
    return round(value)


def describe_wire(key: str, wire: int) -> str:
    """A wire value with its SI form where it has one: ``4250 mv (4.25 V)``, ``2 (fault)``."""
    fk = file_key(key)
    if fk is None:
        return str(wire)
    if fk.kind == SEVERITY:
        word = fk.to_file(wire)
        return f"{wire} ({word})" if isinstance(word, str) else str(wire)
    unit = wire_unit_name(key.rsplit("_", 1)[-1])
    if fk.kind == NUMBER:
        return f"{wire} {unit} ({fk.describe(wire)})"
    return fk.describe(wire)


# -- writing a file ------------------------------------------------------------------
def _toml_line(name: str, value: Any, comment: str = "") -> str:
    line = tomli_w.dumps({name: value}).rstrip("\n")
    if comment:
        line += "  # " + comment.replace("\n", " ")
    return line


def dump_text(entries: Iterable[ConfigEntry], info: Info | None = None,
              now: datetime | None = None) -> str:
    """The TOML text of a board's configuration (``entries`` from CONFIG_DUMP)."""
    from .. import __version__

    by_key = {e.key: e for e in entries}
    lines = [
        "# cellguard board configuration.",
        "# Values in SI units, the unit in the key's name: _v volts, _a amperes, _c degC,",
        "# _s seconds, _ah ampere-hours; debounce in samples; severity: warning, alarm or",
        "# fault. The comment names the board's key and the range it allowed when dumped",
        "# (a release threshold's range follows its trip threshold).",
        "# `cellguard config diff FILE --port P` compares, `config load FILE` writes back.",
        "",
    ]
    when = (now or datetime.now(UTC)).replace(microsecond=0)
    header: dict[str, Any] = {"dumped_at": when, "host_tool": __version__}
    if info is not None:
        header = {"name": info.board, "unique_id": info.unique_id,
                  "firmware": info.firmware_version, "protocol": info.protocol,
                  "chemistry": info.chemistry, "cells": info.cell_count, **header}
    lines.append(f"[{BOARD_TABLE}]  # where this file came from; never written to a board")
    lines += [_toml_line(k, v) for k, v in header.items()]
    table = None
    for fk in LAYOUT:
        e = by_key.pop(fk.wire_key, None)
        if e is None:
            continue
        if fk.table != table:
            table = fk.table
            lines += ["", f"[{table}]"]
        if fk.kind == SEVERITY:
            comment = f"{fk.wire_key}: {', '.join(SEVERITIES)}"
        else:
            comment = f"{fk.wire_key}, allowed {fk.range_text(e.min, e.max)}"
        lines.append(_toml_line(fk.name, fk.to_file(e.value), comment))
    if by_key:  # keys the board has and this host does not know
        lines += ["", "# Keys this host does not know (a newer firmware?), in the board's",
                  "# units; `load` does not write them:"]
        lines += [f"# {e.key} = {e.value}" for e in by_key.values()]
    return "\n".join(lines) + "\n"


def _plain(fk: FileKey, wire: int) -> str:
    v = fk.to_file(wire) if fk.kind != SEVERITY else wire
    return f"{v:g}" if isinstance(v, float) else str(v)


def check_writable(path: str | Path, force: bool = False) -> None:
    """Fail early (before talking to a board) when ``path`` must not or cannot be
    written: a folder, a missing folder, an existing file without ``force``."""
    from ..files import check_output

    check_output(path, force=force)


def write_file(path: str | Path, text: str, force: bool = False) -> None:
    """Write a configuration file through a temporary file renamed into place."""
    from ..files import write_text

    write_text(path, text, force=force)


# -- reading a file ------------------------------------------------------------------
@dataclass
class ConfigFile:
    path: str
    values: dict[str, int]  # wire key -> wire value, in file order
    board: dict[str, Any]  # the [board] table (informational)


_TABLE_RE = re.compile(r"^\s*\[\s*([A-Za-z0-9_\-\"' .]+?)\s*\]\s*(#.*)?$")


def _line_of(text: str, table: str | None, key: str | None = None) -> int | None:
    """The line (1-based) of ``[table]`` or of ``key`` in it; None when not found."""
    current: str | None = None
    key_re = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=") if key else None
    for n, line in enumerate(text.splitlines(), 1):
        m = _TABLE_RE.match(line)
        if m:
            current = m.group(1).split(".")[0].strip().strip("\"'")
            if key_re is None and current == table:
                return n
            continue
        if key_re is not None and current == table and key_re.match(line):
            return n
    return None


def parse_text(text: str, path: str = "<text>") -> ConfigFile:
    """Parse a configuration file's text; ConfigFileError names the line or key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not a valid TOML file: {exc}") from None

    def where(table: str | None, key: str | None = None) -> str:
        line = _line_of(text, table, key)
        return f"{path}: line {line}" if line else path

    values: dict[str, int] = {}
    for table, body in data.items():
        if table == BOARD_TABLE:
            if not isinstance(body, dict):
                raise ConfigFileError(f"{where(None, table)}: {table} must be a table")
            continue
        if table not in TABLES:
            if not isinstance(body, dict):
                raise ConfigFileError(
                    f"{where(None, table)}: {table!r} is not a table of a cellguard "
                    f"configuration (keys belong in a table such as [cell_overvoltage])")
            raise ConfigFileError(
                f"{where(table)}: unknown table [{table}]; tables: {BOARD_TABLE}, "
                f"{', '.join(TABLES)}")
        if not isinstance(body, dict):
            raise ConfigFileError(f"{where(None, table)}: {table} must be a table [{table}]")
        for name, value in body.items():
            fk = BY_PATH.get((table, name))
            if fk is None:
                known = ", ".join(k.name for k in LAYOUT if k.table == table)
                raise ConfigFileError(
                    f"{where(table, name)}: unknown key {table}.{name}; [{table}] has {known}")
            try:
                values[fk.wire_key] = fk.to_wire(value)
            except ConfigFileError as exc:
                raise ConfigFileError(f"{where(table, name)}: {exc}") from None
    return ConfigFile(path, values, dict(data.get(BOARD_TABLE, {})))


def read_file(path: str | Path) -> ConfigFile:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigFileError(f"no such configuration file: {path}") from None
    except IsADirectoryError:
        raise ConfigFileError(f"{path} is a folder, not a configuration file") from None
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path}: not a TOML file (not UTF-8 text)") from None
    return parse_text(text, str(path))


# -- comparing -----------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """A key whose file value differs from the board's (wire units)."""

    key: str
    board: int | None  # None: the board has no such key
    file: int
    min: int | None = None
    max: int | None = None

    @property
    def file_key(self) -> FileKey:
        return BY_WIRE[self.key]

    def line(self) -> str:
        fk = self.file_key
        old = "(not on this board)" if self.board is None else fk.describe(self.board)
        return f"{fk.path:42} {old:>12} -> {fk.describe(self.file):<12} ({self.key})"

    def to_dict(self) -> dict[str, Any]:
        fk = self.file_key
        return {"key": self.key, "path": fk.path, "board": self.board, "file": self.file,
                "board_si": None if self.board is None else fk.to_file(self.board),
                "file_si": fk.to_file(self.file), "unit": fk.unit,
                "min": self.min, "max": self.max}


def diff(values: Mapping[str, int], entries: Iterable[ConfigEntry]) -> list[Change]:
    """Keys of ``values`` (a file's) that differ from the board's ``entries``."""
    board = {e.key: e for e in entries}
    changes = []
    for key, value in values.items():
        e = board.get(key)
        if e is None:
            changes.append(Change(key, None, value))
        elif e.value != value:
            changes.append(Change(key, e.value, value, e.min, e.max))
    return changes


# -- writing to a board --------------------------------------------------------------
@dataclass(frozen=True)
class Refusal:
    change: Change
    reason: str  # what the board said, with the bound and the range allowed now

    def line(self) -> str:
        return f"{self.change.file_key.path} ({self.change.key}): {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.change.to_dict(), "reason": self.reason}


def apply_changes(client: Any, changes: list[Change], pin: int = 0,
                  max_passes: int = 8) -> tuple[list[Change], list[Refusal]]:
    """Write each change; return (written, refused).

    A threshold's allowed range depends on its partner (a release stays on the
    safe side of its trip), so a key refused in one pass is tried again after
    others were written, as long as a pass makes progress.
    """
    from ..link.client import BoardRefused

    pending = [c for c in changes if c.board is not None]
    refused: dict[str, tuple[Change, BoardRefused]] = {}
    written: list[Change] = []
    for _ in range(max_passes):
        progress = False
        still: list[Change] = []
        for c in pending:
            try:
                client.set_config(c.key, c.file, pin=pin)
            except BoardRefused as exc:
                refused[c.key] = (c, exc)
                still.append(c)
            else:
                refused.pop(c.key, None)
                written.append(c)
                progress = True
        pending = still
        if not pending or not progress:
            break
    out = [Refusal(c, "this board has no such key") for c in changes if c.board is None]
    for c, exc in refused.values():
        out.append(Refusal(c, _refusal_reason(client, c, exc)))
    return written, out


def _refusal_reason(client: Any, c: Change, exc: Any) -> str:
    fk = c.file_key
    error = str(exc.error).replace("_", " ")
    if exc.error == "not_authorised":
        return f"{fk.describe(c.file)}: not authorised (give the board's PIN with --pin)"
    try:
        now = client.get_config(c.key)
        allowed = f"; allowed now {fk.range_text(now.min, now.max)}"
    except CellguardError:
        allowed = ""
    bound = (f" {fk.describe(exc.limit)}"
             if exc.error in ("out_of_range", "beyond_hard_limit") else "")
    return f"{fk.describe(c.file)}: {error}{bound}{allowed}"
