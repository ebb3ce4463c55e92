"""Quantities as people type and read them: durations, numbers, counts, JSON.

Every part of the command line shares these, so a duration is typed the same
way wherever one is taken and a number is printed the same way wherever one is
shown.

Durations and times (``--duration``, ``--from``/``--to``, ``--timeout``,
``--interval``, the ``at`` times of a sim script) are one of:

- a number of seconds, with an optional unit: ``90``, ``90s``, ``1500ms``,
  ``15m`` or ``15min``, ``1.5h``, ``2d``;
- a clock reading: ``M:SS`` with two fields (``1:30`` is 90 s) or ``H:MM:SS``
  with three (``1:30:00`` is 5400 s). The first field may be as large as it
  likes (``90:00`` is 90 minutes); the others are below 60.

JSON output rounds every float to the resolution of its unit, which the key's
name ends with (see :data:`JSON_DECIMALS`), so no value shows floating-point
noise such as ``0.30000000000000016``; NaN and infinities become ``null``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

DURATION_FORMS = "90, 90s, 1500ms, 15m, 1.5h, 2d, M:SS (1:30 = 90 s) or H:MM:SS (1:30:00)"
"""The forms :func:`parse_duration` takes, for help texts and error messages."""

DURATION_UNITS: dict[str, float] = {
    "ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0,
    "d": 86400.0,
}
"""Unit suffixes of a duration (any case), in seconds."""

_NUMBER = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)$", re.IGNORECASE)
_WHOLE = re.compile(r"^[0-9]+$")
_SECONDS = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (see the module's doc for the forms); ValueError says why not."""
    t = text.strip()
    if t.startswith("-"):
        raise ValueError(f"not a time: {text!r} (a time is not negative)")
    if ":" in t:
        return _parse_clock(text, t)
    m = _NUMBER.match(t)
    if m is None:
        raise ValueError(f"not a time: {text!r} (give {DURATION_FORMS})")
    unit = m.group(2).lower()
    if unit not in ("", *DURATION_UNITS):
        raise ValueError(f"not a time: {text!r}: unknown unit {m.group(2)!r} (units: "
                         f"{', '.join(DURATION_UNITS)}; or M:SS, H:MM:SS)")
    value = float(m.group(1)) * DURATION_UNITS.get(unit, 1.0)
    if not math.isfinite(value):
        raise ValueError(f"not a time: {text!r} (too large)")
    return value


def _parse_clock(text: str, t: str) -> float:
    parts = t.split(":")
    form = {2: "M:SS", 3: "H:MM:SS"}.get(len(parts))
    if form is None:
        raise ValueError(f"not a time: {text!r} (a clock time is M:SS or H:MM:SS)")
    *whole, last = parts
    if not all(_WHOLE.match(p) for p in whole) or not _SECONDS.match(last):
        raise ValueError(f"not a time: {text!r} (in {form} every field is a number; "
                         "only the seconds may have decimals)")
    names = ["minutes", "seconds"] if len(parts) == 2 else ["hours", "minutes", "seconds"]
    for name, p in list(zip(names, parts, strict=True))[1:]:
        if float(p) >= 60:
            raise ValueError(f"not a time: {text!r} ({name} must be below 60 in {form})")
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + float(p)
    return seconds


# -- numbers for people --------------------------------------------------------------------
def fixed(value: float, digits: int, unit: str = "", sign: bool = False) -> str:
    """``value`` with ``digits`` decimals and never a negative zero (``-0.000`` is ``0.000``).

    ``sign`` puts a ``+`` before positive values (and zero)."""
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    if text.startswith("-") and float(text) == 0.0:
        text = ("+" if sign else "") + text[1:]
    return f"{text} {unit}" if unit else text


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 row``, ``2 rows``, ``0 rows`` (``many``: the plural when not word + s)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


# -- wire units ----------------------------------------------------------------------------
WIRE_UNIT_NAMES: dict[str, str] = {
    "mv": "mV", "ma": "mA", "dc": "0.1 °C", "ms": "ms", "mah": "mAh", "count": "",
}
"""The integer units on the wire (a configuration key's suffix), as people write them."""


def wire_unit_name(suffix: str) -> str:
    """``mV`` for ``mv``, ``0.1 °C`` for ``dc``; an unknown suffix as it is."""
    return WIRE_UNIT_NAMES.get(suffix, suffix)


# -- JSON ----------------------------------------------------------------------------------
JSON_DECIMALS: tuple[tuple[str, int], ...] = (
    ("_mah", 3), ("_mv", 2), ("_ma", 2), ("_ms", 1), ("_ohm", 6), ("_pct", 3), ("_ah", 6),
    ("_wh", 6), ("_v", 4), ("_a", 4), ("_c", 2), ("_s", 3),
)
"""Decimals of a JSON float by the unit its key ends with (the first suffix that matches).

One digit finer than the wire's resolution (1 mV, 1 mA, 0.1 °C, 0.01 %) so a
mean keeps a digit; time to the millisecond the wire counts in; charge and
energy to 1 µAh and 1 µWh; resistance to 1 µΩ. Values in a list or an object
under such a key (``cells_v``, ``percentiles_mv``) take its unit; any other
float gets :data:`JSON_DEFAULT_DECIMALS`."""

JSON_DEFAULT_DECIMALS = 6


def _decimals(key: str | None) -> int | None:
    if key is None:
        return None
    for suffix, digits in JSON_DECIMALS:
        if key.endswith(suffix):
            return digits
    return None


def round_json(data: Any, key: str | None = None, digits: int | None = None) -> Any:
    """``data`` with every float rounded for its unit (see :data:`JSON_DECIMALS`)."""
    own = _decimals(key)
    digits = own if own is not None else digits
    if isinstance(data, bool) or data is None or isinstance(data, int | str):
        return data
    if isinstance(data, float):
        if not math.isfinite(data):
            return None
        return round(data, JSON_DEFAULT_DECIMALS if digits is None else digits) + 0.0
    if isinstance(data, dict):
        return {k: round_json(v, str(k), digits) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [round_json(v, None, digits) for v in data]
    if hasattr(data, "item"):  # a numpy scalar
        return round_json(data.item(), key, digits)
    return data


def to_json(data: Any, indent: int | None = 2) -> str:
    """The JSON text a command prints: floats rounded by :func:`round_json`."""
    return json.dumps(round_json(data), indent=indent)
