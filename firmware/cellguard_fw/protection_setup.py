"""What turns a board file into protection settings, needed only while ``Bms`` is
built: the protection table's rows (names, fault bits, limit keys, default delays,
severities and debounce counts), the limits (chemistry defaults, board overrides,
plausibility limits) and the severity overrides.

A board would otherwise keep these rows, their names and this code in RAM for good
(about 2 KB). ``Bms`` imports the module, builds its :class:`Protection`, then calls
:func:`release`: the module leaves ``sys.modules`` and the package, and the next
collection frees it. Anything that needs it again (``protection.protection_table``,
``app.board_limits``) imports it again.
"""

import sys

from micropython import const

from .chemistry import PROFILES
from .protection import (
    ABOVE,
    ALARM,
    BELOW,
    BLOCKS_BOTH,
    BLOCKS_CHARGE,
    BLOCKS_DISCHARGE,
    FAULT,
    Q_CELL_SPREAD_MV,
    Q_CHARGE_MA,
    Q_DISCHARGE_MA,
    Q_MAX_CELL_MV,
    Q_MAX_TEMP_DC,
    Q_MIN_CELL_MV,
    Q_MIN_TEMP_DC,
    Q_PACK_MISMATCH_MV,
    Q_STUCK_MS,
    Q_TEMP_RISE_DC,
    Q_TEMPS_RAILED,
    WARNING,
)

# The protocol numbers used here, as folded copies of codec.py's: the board
# interns no name for them (tests/test_firmware_build.py holds them equal).
_FAULT_CELL_IMBALANCE = const(0x1000)
_FAULT_CELL_OVERVOLTAGE = const(0x1)
_FAULT_CELL_UNDERVOLTAGE = const(0x2)
_FAULT_DEEP_DISCHARGE = const(0x40)
_FAULT_OPEN_WIRE = const(0x10000)
_FAULT_OVERCURRENT_CHARGE = const(0x10)
_FAULT_OVERCURRENT_CHARGE_PEAK = const(0x200)
_FAULT_OVERCURRENT_DISCHARGE = const(0x20)
_FAULT_OVERCURRENT_DISCHARGE_PEAK = const(0x400)
_FAULT_OVERTEMPERATURE = const(0x4)
_FAULT_OVERTEMPERATURE_CHARGE = const(0x80)
_FAULT_PACK_VOLTAGE_MISMATCH = const(0x100000)
_FAULT_SENSOR_DISCONNECTED = const(0x40000)
_FAULT_SENSOR_RANGE = const(0x20000)
_FAULT_SENSOR_STUCK = const(0x80000)
_FAULT_SHORT_CIRCUIT = const(0x800)
_FAULT_TEMPERATURE_RISE = const(0x200000)
_FAULT_UNDERTEMPERATURE = const(0x8)
_FAULT_UNDERTEMPERATURE_CHARGE = const(0x100)


def protection_table():
    """The protection table (``protection.protection_table``). Built on each call:
    :class:`Protection` copies it into arrays."""
    return (
        ("cell_overvoltage", _FAULT_CELL_OVERVOLTAGE, Q_MAX_CELL_MV, ABOVE, "cell_ov_mv",
         1000, 2000, FAULT, BLOCKS_CHARGE, 1),
        ("cell_undervoltage", _FAULT_CELL_UNDERVOLTAGE, Q_MIN_CELL_MV, BELOW, "cell_uv_mv",
         1000, 2000, FAULT, BLOCKS_DISCHARGE, 1),
        ("overtemperature", _FAULT_OVERTEMPERATURE, Q_MAX_TEMP_DC, ABOVE, "temp_max_dc",
         2000, 5000, FAULT, BLOCKS_BOTH, 1),
        ("undertemperature", _FAULT_UNDERTEMPERATURE, Q_MIN_TEMP_DC, BELOW, "temp_min_dc",
         2000, 5000, FAULT, BLOCKS_BOTH, 1),
        ("overcurrent_charge", _FAULT_OVERCURRENT_CHARGE, Q_CHARGE_MA, ABOVE,
         "charge_current_max_ma", 500, 10000, FAULT, BLOCKS_CHARGE, 1),
        ("overcurrent_discharge", _FAULT_OVERCURRENT_DISCHARGE, Q_DISCHARGE_MA, ABOVE,
         "discharge_current_max_ma", 500, 10000, FAULT, BLOCKS_DISCHARGE, 1),
        # A lower, latching level: a cell this empty may be damaged.
        ("deep_discharge", _FAULT_DEEP_DISCHARGE, Q_MIN_CELL_MV, BELOW, "deep_discharge_mv",
         1000, 2000, FAULT, BLOCKS_BOTH, 1),
        # Charging has narrower temperature limits than discharging (lithium plating
        # below freezing, ageing when hot): an alarm that stops charging only.
        ("overtemperature_charge", _FAULT_OVERTEMPERATURE_CHARGE, Q_MAX_TEMP_DC, ABOVE,
         "temp_charge_max_dc", 2000, 5000, ALARM, BLOCKS_CHARGE, 1),
        ("undertemperature_charge", _FAULT_UNDERTEMPERATURE_CHARGE, Q_MIN_TEMP_DC, BELOW,
         "temp_charge_min_dc", 2000, 5000, ALARM, BLOCKS_CHARGE, 1),
        # Over-current at two levels: sustained (above) and peak (short delay), and a
        # short circuit that trips on the first sample.
        ("overcurrent_charge_peak", _FAULT_OVERCURRENT_CHARGE_PEAK, Q_CHARGE_MA, ABOVE,
         "charge_current_peak_ma", 100, 10000, FAULT, BLOCKS_CHARGE, 1),
        ("overcurrent_discharge_peak", _FAULT_OVERCURRENT_DISCHARGE_PEAK, Q_DISCHARGE_MA, ABOVE,
         "discharge_current_peak_ma", 100, 10000, FAULT, BLOCKS_DISCHARGE, 1),
        ("short_circuit", _FAULT_SHORT_CIRCUIT, Q_DISCHARGE_MA, ABOVE, "short_circuit_ma",
         0, 10000, FAULT, BLOCKS_DISCHARGE, 1),
        # Cells drifting apart: a failing cell, a loose sense wire, a balancer fault.
        ("cell_imbalance", _FAULT_CELL_IMBALANCE, Q_CELL_SPREAD_MV, ABOVE, "cell_spread_mv",
         5000, 10000, WARNING, BLOCKS_BOTH, 1),
        # Sensor plausibility. An open sense wire lets its tap float towards the tap
        # below: the cell under it reads near 0 V, lower than any cell in service.
        ("open_wire", _FAULT_OPEN_WIRE, Q_MIN_CELL_MV, BELOW, "open_wire_mv",
         300, 2000, FAULT, BLOCKS_BOTH, 3),
        # ... and the cell above reads two cells' worth: beyond any chemistry, at the
        # ADC's full scale. Either way the reading cannot be trusted.
        ("sensor_range", _FAULT_SENSOR_RANGE, Q_MAX_CELL_MV, ABOVE, "sensor_range_mv",
         300, 2000, FAULT, BLOCKS_BOTH, 3),
        ("sensor_disconnected", _FAULT_SENSOR_DISCONNECTED, Q_TEMPS_RAILED, ABOVE,
         "sensor_disconnected_count", 1000, 5000, FAULT, BLOCKS_BOTH, 3),
        # The quantity is itself a time: no further delay by default.
        ("sensor_stuck", _FAULT_SENSOR_STUCK, Q_STUCK_MS, ABOVE, "sensor_stuck_ms",
         0, 0, FAULT, BLOCKS_BOTH, 1),
        ("pack_voltage_mismatch", _FAULT_PACK_VOLTAGE_MISMATCH, Q_PACK_MISMATCH_MV, ABOVE,
         "pack_mismatch_mv", 1000, 5000, FAULT, BLOCKS_BOTH, 1),
        # Early warning of thermal runaway; the quantity is a rise over a minute.
        ("temperature_rise", _FAULT_TEMPERATURE_RISE, Q_TEMP_RISE_DC, ABOVE, "temp_rise_dc",
         0, 10000, WARNING, BLOCKS_BOTH, 1),
    )


SEVERITY_NAMES = {"warning": WARNING, "alarm": ALARM, "fault": FAULT}


def one_way(board):
    """The fault bits that stop one direction only, as ``(charge, discharge)``: on a
    board with separate charge and discharge switches (``"switches": "dual"``) the
    cell-voltage limits, whose way back is the other direction; (0, 0) elsewhere,
    where every fault opens the output."""
    cw = dw = 0
    if board.get("switches") == "dual":
        for row in protection_table():
            if row[2] == Q_MAX_CELL_MV or row[2] == Q_MIN_CELL_MV:
                if row[8] == BLOCKS_CHARGE:
                    cw |= row[1]
                elif row[8] == BLOCKS_DISCHARGE:
                    dw |= row[1]
    return cw, dw


def board_severities(board):
    """The board file's ``"severity"`` overrides, as numbers."""
    out = {}
    for name, level in board.get("severity", {}).items():
        if level not in SEVERITY_NAMES:
            raise ValueError("severity of %s must be warning, alarm or fault" % name)
        out[name] = SEVERITY_NAMES[level]
    return out


def board_limits(board):
    """The (trip, release) limit pairs: chemistry defaults, board overrides."""
    profile = PROFILES[board["chemistry"]]
    overrides = board.get("limits", {})
    n = board["cells"]
    cell_fs = board["frontend"]["cell_adc"]["full_scale_mv"]
    # Plausibility: no cell in service reads below 0.4 V (an open tap does); none
    # reads 0.5 V beyond its chemistry's hard limit (a sensor at its rail does).
    beyond = min(cell_fs * 99 // 100, profile["hard_cell_mv"][1] + 500)
    mismatch = 100 + 25 * n  # divider tolerance plus busbar drops, mV
    limits = {
        "open_wire_mv": (400, 800),
        "sensor_range_mv": (beyond, beyond - 200),
        "sensor_disconnected_count": (0, 1),  # any channel at a rail; released when none
        "sensor_stuck_ms": (60000, 1),  # released as soon as the reading moves
        "pack_mismatch_mv": (mismatch, mismatch // 2),
        "temp_rise_dc": (20, 10),  # 2.0 degC per minute; released below 1.0
    }
    for key in limits:
        if key in overrides:
            limits[key] = tuple(overrides[key])
    for key in ("cell_ov_mv", "cell_uv_mv", "temp_max_dc", "temp_min_dc", "deep_discharge_mv",
                "temp_charge_max_dc", "temp_charge_min_dc", "cell_spread_mv"):
        limits[key] = tuple(overrides.get(key, profile[key]))
    charge = board["charge_current_max_ma"]
    discharge = board["discharge_current_max_ma"]
    full_scale = board["frontend"]["current_adc"]["full_scale_ma"]
    limits["charge_current_max_ma"] = (charge, charge // 2)
    limits["discharge_current_max_ma"] = (discharge, discharge // 2)
    # Peak levels default to twice the sustained rating, a short circuit to four
    # times; a short circuit at most 90 % of what the current sensor measures, so
    # a saturated reading still trips, and the peaks at most 80 %, so that on a
    # small sensor they still trip before the short circuit does.
    top = full_scale * 9 // 10
    peak_top = full_scale * 8 // 10
    limits["charge_current_peak_ma"] = tuple(overrides.get(
        "charge_current_peak_ma", (min(2 * charge, peak_top), charge)))
    limits["discharge_current_peak_ma"] = tuple(overrides.get(
        "discharge_current_peak_ma", (min(2 * discharge, peak_top), discharge)))
    limits["short_circuit_ma"] = tuple(overrides.get(
        "short_circuit_ma", (min(4 * discharge, top), discharge)))
    return limits


def release():
    """Forget this module, so its code and rows are garbage once nothing else holds
    them (``Bms`` calls it once its protection is built)."""
    name = "cellguard_fw.protection_setup"
    sys.modules.pop(name, None)
    package = sys.modules.get("cellguard_fw")
    if package is not None:
        try:
            delattr(package, "protection_setup")
        except AttributeError:
            pass
