"""The safety specification, ``spec/safety.toml``: what each protection must do by
default, per chemistry and board, with the source of every number.

The file is written and reviewed by hand against its sources; nothing here
generates it from the firmware. This module reads it, checks its shape (a clear
:class:`SpecError` for a missing or misspelt field, never a traceback) and works
out what the firmware must build for a given board file: :func:`expected`, in the
firmware's own units (mV, mA, ms, 0.1 °C, channels). ``tests/test_safety_spec.py``
compares the firmware with it, ``tools/gen_safety_docs.py`` renders
``docs/protection.md``'s tables from it and ``benchmarks/reaction_times.py``
checks measured reaction times against its delays.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import repo_root

SPEC_FILE = Path("spec") / "safety.toml"

SEVERITIES = ("warning", "alarm", "fault")
HOLDS = {"charge": 1, "discharge": 2, "both": 3}
"""Direction held -> the firmware's ``blocks`` bits (1 charge, 2 discharge)."""
UNIT_SCALE = {"mV": 1, "mA": 1, "ms": 1, "channels": 1, "°C": 10}
"""Spec unit -> factor to the firmware's unit (temperatures in 0.1 °C)."""
TRIPS = {"above": True, "below": False}
PROTECTION_FIELDS = ("watches", "trips", "unit", "trip_delay_ms", "release_delay_ms",
                     "debounce", "severity", "holds", "source")


class SpecError(ValueError):
    """The specification file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class Expected:
    """One protection as the specification says the firmware must build it for a
    board, in the firmware's units."""

    name: str
    above: bool
    trip: int
    release: int
    trip_delay_ms: int
    release_delay_ms: int
    debounce: int
    severity: str
    holds: str

    def fields(self) -> dict[str, object]:
        return {"above": self.above, "trip": self.trip, "release": self.release,
                "trip_delay_ms": self.trip_delay_ms,
                "release_delay_ms": self.release_delay_ms, "debounce": self.debounce,
                "severity": self.severity, "holds": self.holds}


def spec_path() -> Path:
    return repo_root() / SPEC_FILE


def load_spec(path: Path | None = None) -> dict[str, Any]:
    """Read and check the specification (``spec/safety.toml`` by default)."""
    path = spec_path() if path is None else path
    try:
        with path.open("rb") as f:
            spec = tomllib.load(f)
    except OSError as e:
        raise SpecError(f"cannot read the safety specification {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path} is not valid TOML: {e}") from e
    check_spec(spec)
    return spec


def _threshold_pair(where: str, value: object) -> None:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool)
                       for v in value)):
        raise SpecError(f"{where} must be [trip, release], two numbers")


def check_spec(spec: dict[str, Any]) -> None:
    """Raise :class:`SpecError` unless every section has its fields and sources."""
    for section in ("sources", "protection", "chemistry", "board"):
        if not isinstance(spec.get(section), dict) or not spec[section]:
            raise SpecError(f"the safety specification has no [{section}] tables")
    for name, p in spec["protection"].items():
        missing = [f for f in PROTECTION_FIELDS if f not in p]
        if missing:
            raise SpecError(f"protection.{name} lacks {', '.join(missing)}")
        if p["trips"] not in TRIPS:
            raise SpecError(f"protection.{name}.trips must be above or below")
        if p["unit"] not in UNIT_SCALE:
            raise SpecError(f"protection.{name}.unit must be one of {', '.join(UNIT_SCALE)}")
        if p["severity"] not in SEVERITIES:
            raise SpecError(f"protection.{name}.severity must be warning, alarm or fault")
        if p["holds"] not in HOLDS:
            raise SpecError(f"protection.{name}.holds must be charge, discharge or both")
        for key in ("trip_delay_ms", "release_delay_ms", "debounce"):
            if not isinstance(p[key], int) or p[key] < (1 if key == "debounce" else 0):
                raise SpecError(f"protection.{name}.{key} must be a whole number "
                                f"of at least {1 if key == 'debounce' else 0}")
        if ("trip" in p) != ("release" in p):
            raise SpecError(f"protection.{name} needs both trip and release, or neither")
        if "trip" in p:
            _threshold_pair(f"protection.{name}", [p["trip"], p["release"]])
    names = set(spec["protection"])
    for kind in ("chemistry", "board"):
        for table_name, table in spec[kind].items():
            if kind == "board" and "source" not in table:
                raise SpecError(f"board.{table_name} has no source")
            for key, value in table.items():
                if key in ("source", "control_period_ms") or key.endswith("_source"):
                    continue
                if key not in names:
                    raise SpecError(f"{kind}.{table_name}.{key}: no such protection")
                _threshold_pair(f"{kind}.{table_name}.{key}", value)
                if kind == "chemistry" and f"{key}_source" not in table:
                    raise SpecError(f"chemistry.{table_name}.{key} has no {key}_source")


def _firmware_units(unit: str, value: float) -> int:
    return round(value * UNIT_SCALE[unit])


def thresholds(spec: dict[str, Any], name: str, chemistry: str,
               board: str) -> tuple[float, float]:
    """(trip, release) of a protection in the spec's unit: the board's value, else
    the chemistry's, else the protection's own."""
    for table in (spec["board"].get(board, {}), spec["chemistry"].get(chemistry, {})):
        if name in table:
            trip, release = table[name]
            return trip, release
    own = spec["protection"][name]
    if "trip" in own:
        return own["trip"], own["release"]
    raise SpecError(f"the safety specification gives no thresholds for {name} "
                    f"on board {board} with chemistry {chemistry}")


def expected(spec: dict[str, Any], board: dict[str, Any]) -> dict[str, Expected]:
    """What the firmware must build for ``board`` (a loaded board file): every
    protection, in the specification's order."""
    name_of_board = board["name"]
    chemistry = board["chemistry"]
    if name_of_board not in spec["board"]:
        raise SpecError(f"the safety specification has no [board.\"{name_of_board}\"]")
    if chemistry not in spec["chemistry"]:
        raise SpecError(f"the safety specification has no [chemistry.{chemistry}]")
    out: dict[str, Expected] = {}
    for name, p in spec["protection"].items():
        trip, release = thresholds(spec, name, chemistry, name_of_board)
        unit = p["unit"]
        out[name] = Expected(name, TRIPS[p["trips"]], _firmware_units(unit, trip),
                             _firmware_units(unit, release), p["trip_delay_ms"],
                             p["release_delay_ms"], p["debounce"], p["severity"], p["holds"])
    return out
