"""Is a trace what its header says? The unit and kind mistakes people make.

``estimate`` and ``characterize`` read traces of ``cellN_v`` in volts,
``current_a`` in amperes and ``tempN_c`` in °C. A column in mV, 0.1 °C or mA
parses fine and gives nonsense (SoC pinned at 100 %, R1 of 15 ohm), so it is
refused with the likely cause; a column plausible as a whole that strays
beyond what the cell can read gets a warning. What a cell can read comes from
the firmware's chemistry profiles (``hard_cell_mv``: no configuration may set
a threshold beyond it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import CellguardError

MAX_C_RATE = 50.0
"""A current above this many times the capacity per hour is not a cell's current."""
TEMP_RANGE_C = (-60.0, 150.0)
"""What a cell's temperature sensor can plausibly read, °C."""


_A_CELL = {"nmc": "an NMC cell", "lfp": "an LFP cell", "sodium_ion": "a sodium-ion cell"}


class ImplausibleTrace(CellguardError):
    """A trace whose values cannot be in the units its columns name."""


def cell_range_v(chemistry: str | None) -> tuple[float, float]:
    """The lowest and highest voltage a cell of ``chemistry`` can read (any of the
    firmware's chemistries when None), from its profile's hard limits."""
    from cellguard_fw.chemistry import PROFILES

    profiles = [PROFILES[chemistry]] if chemistry in PROFILES else list(PROFILES.values())
    return (min(p["hard_cell_mv"][0] for p in profiles) / 1000.0,
            max(p["hard_cell_mv"][1] for p in profiles) / 1000.0)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def check_cell_volts(where: str, column: str, values: Sequence[float],
                     chemistry: str | None) -> list[str]:
    """Refuse a cell-voltage column that is not one cell's volts; return warnings
    for readings beyond what the chemistry's cell can read."""
    if not values:
        return []
    lo, hi = cell_range_v(chemistry)
    cell = _A_CELL.get(chemistry or "", "a cell")
    span = f"{lo:g}..{hi:g} V"
    top, bottom, mid = max(values), min(values), _median(values)
    if lo * 0.5 <= mid / 1000.0 <= hi * 1.1:
        raise ImplausibleTrace(f"{where}: {column} has values up to {top:g}: are these mV? give "
                               f"volts ({cell} reads {span})")
    if mid > hi * 1.1:
        raise ImplausibleTrace(f"{where}: {column} has values up to {top:g} V, more than {cell} "
                               f"reads ({span}): a pack or module voltage? give one cell's "
                               "voltage per column (cell1_v, cell2_v, ...)")
    if mid < lo * 0.5:
        raise ImplausibleTrace(f"{where}: {column} reads {mid:g} V in the middle, less than "
                               f"{cell} reads ({span}): give the cell's voltage in volts")
    warnings = []
    if top > hi:
        warnings.append(f"{where}: {column} reaches {top:.3f} V, above the {hi:g} V {cell} "
                        "can read (a sensor fault, or another chemistry?)")
    if bottom < lo:
        warnings.append(f"{where}: {column} falls to {bottom:.3f} V, below the {lo:g} V {cell} "
                        "can read (an open wire, a sensor fault, or another chemistry?)")
    return warnings


def check_current(where: str, values: Iterable[float], capacity_ah: float | None) -> None:
    """Refuse a current beyond any cell's: MAX_C_RATE times the capacity (mA for A)."""
    if capacity_ah is None or not capacity_ah > 0:
        return
    peak = max((abs(v) for v in values), default=0.0)
    if peak > MAX_C_RATE * capacity_ah:
        raise ImplausibleTrace(
            f"{where}: current_a reaches {peak:g} A, {peak / capacity_ah:.0f}C for a "
            f"{capacity_ah:g} Ah cell: is it in mA? give amperes (+ = charging)")


def check_temps(where: str, column: str, values: Sequence[float]) -> None:
    """Refuse a temperature column that is not °C (0.1 °C, kelvin)."""
    if not values:
        return
    lo, hi = TEMP_RANGE_C
    top, bottom, mid = max(values), min(values), _median(values)
    if lo <= bottom and top <= hi:
        return
    if 200.0 <= mid <= 400.0:
        cause = "are these kelvin or 0.1 °C? give °C"
    elif lo <= mid / 10.0 <= hi:
        cause = "are these 0.1 °C? give °C"
    else:
        cause = "give the sensor's temperature in °C"
    reach = f"up to {top:g}" if top > hi else f"down to {bottom:g}"
    raise ImplausibleTrace(f"{where}: {column} has values {reach}, beyond {lo:g}..{hi:g} °C: "
                           f"{cause}")
