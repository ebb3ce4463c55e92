"""Board files (``boards/<name>.json``): MCU, pins, front end, cells, chemistry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import CellguardError
from .paths import boards_dir

REQUIRED = (
    "name", "mcu", "cells", "temp_sensors", "chemistry", "capacity_mah",
    "charge_current_max_ma", "discharge_current_max_ma", "control_period_ms",
    "telemetry_period_ms", "frontend",
)


class BoardFileError(CellguardError):
    pass


def board_names() -> list[str]:
    return sorted(p.stem for p in boards_dir().glob("*.json"))


def load_board(name_or_path: str) -> dict[str, Any]:
    """Load a board by name (``sim-4s``) or by path to a JSON file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = boards_dir() / f"{name_or_path}.json"
    if not path.exists():
        raise BoardFileError(
            f"unknown board {name_or_path!r}; known boards: {', '.join(board_names())}"
        )
    try:
        board = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BoardFileError(f"cannot read board file {path}: {exc}") from None
    if not isinstance(board, dict):
        raise BoardFileError(f"board file {path}: not a JSON object")
    missing = [k for k in REQUIRED if k not in board]
    if missing:
        raise BoardFileError(f"board file {path} lacks {', '.join(missing)}")
    check_board(board, f"board file {path}")
    return board


# Whole numbers a board file gives, and the range the firmware and the wire take
# (INFO carries the periods as 16 bits; the firmware's own limits for capacity
# and telemetry period).
_WHOLE: dict[str, tuple[int, int]] = {
    "cells": (1, 16),
    "temp_sensors": (1, 16),
    "capacity_mah": (1, 10_000_000),
    "charge_current_max_ma": (1, 2**31 - 1),
    "discharge_current_max_ma": (1, 2**31 - 1),
    "control_period_ms": (1, 60_000),
    "telemetry_period_ms": (1, 60_000),
}

_OPTIONAL_WHOLE: dict[str, tuple[int, int]] = {
    # the current step a live cell reading must follow (firmware default C/10) ...
    "stuck_current_ma": (1, 2**30 - 1),
    # ... beyond the front end's noise, mV (0: any code that moves is live)
    "stuck_band_mv": (0, 1000),
}


# The longest watchdog timeout each port's hardware takes, ms: the RP2040's
# counter holds 0x7fffff µs (MicroPython's rp2 port refuses more); the ESP32's
# task watchdog has no such small limit.
WATCHDOG_MAX_MS: dict[str, int] = {"rp2040": 8388}
_WATCHDOG_DEFAULT_MS = 2000


class _NoBus:
    """An I2C bus with nothing on it: the chip's HAL built on the host for its settings."""

    def _none(self, *args: Any, **kwargs: Any) -> None:
        raise OSError(19, "no chip on the host")

    readfrom_mem_into = writeto_mem = readfrom_into = writeto = _none


def chip_backstop(board: dict[str, Any]) -> tuple[int, list[str]]:
    """What a board's monitor chip is armed with at boot from the board's default
    limits (``bq76952_setup.settings``): the count of protection settings and the names
    of those the chip's register range clamped (a limit beyond what the chip can be
    set to: its backstop sits at the end of its range instead)."""
    from cellguard_fw.bq76952_setup import settings as chip_settings
    from cellguard_fw.hal_bq76952 import Bq76952Hal
    from cellguard_fw.protection_setup import board_limits, protection_table

    limits = board_limits(board)
    trip = [limits[row[4]][0] for row in protection_table()]
    hal = Bq76952Hal(json.loads(json.dumps(board)), _NoBus())
    settings = chip_settings(hal, trip)
    return len(settings), list(hal.clamped)


CHIPS = ("bq76952",)
"""The battery-monitor chips a board file's ``"afe"`` object may name."""


def check_board(board: dict[str, Any], where: str) -> None:
    """One clear BoardFileError for a value the firmware cannot run with."""
    from cellguard_fw.adc_front import calibration, range_error
    from cellguard_fw.chemistry import PROFILES

    if not isinstance(board["name"], str) or not board["name"]:
        raise BoardFileError(f"{where}: name must be a non-empty string")
    if board["chemistry"] not in PROFILES:
        raise BoardFileError(f"{where}: chemistry must be one of {', '.join(PROFILES)}, not "
                             f"{board['chemistry']!r}")
    for key, (lo, hi) in _WHOLE.items():
        value = board[key]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise BoardFileError(f"{where}: {key} must be a whole number {lo}..{hi}, not "
                                 f"{value!r}")
    for key, (lo, hi) in _OPTIONAL_WHOLE.items():
        value = board.get(key, lo)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise BoardFileError(f"{where}: {key} must be a whole number {lo}..{hi}, not "
                                 f"{value!r}")
    if board["telemetry_period_ms"] < board["control_period_ms"]:
        raise BoardFileError(f"{where}: telemetry_period_ms ({board['telemetry_period_ms']}) "
                             f"is shorter than control_period_ms ({board['control_period_ms']})")
    watchdog = board.get("watchdog_ms", _WATCHDOG_DEFAULT_MS)
    limit = WATCHDOG_MAX_MS.get(board["mcu"], 2**31 - 1)
    if isinstance(watchdog, bool) or not isinstance(watchdog, int) or not 1 <= watchdog <= limit:
        port = f" (the most an {board['mcu']} watchdog takes)" if board["mcu"] in \
            WATCHDOG_MAX_MS else ""
        raise BoardFileError(f"{where}: watchdog_ms must be a whole number 1..{limit}{port}, "
                             f"not {watchdog!r}")
    if watchdog <= board["control_period_ms"]:
        raise BoardFileError(f"{where}: watchdog_ms ({watchdog}) must be longer than "
                             f"control_period_ms ({board['control_period_ms']})")
    frontend = board["frontend"]
    if not isinstance(frontend, dict):
        raise BoardFileError(f"{where}: frontend must be an object")
    current = frontend.get("current_adc")
    full_scale = current.get("full_scale_ma") if isinstance(current, dict) else None
    if full_scale is not None:
        if isinstance(full_scale, bool) or not isinstance(full_scale, int) or full_scale < 1:
            raise BoardFileError(f"{where}: frontend.current_adc.full_scale_ma must be a whole "
                                 f"number above 0, not {full_scale!r}")
        for key in ("charge_current_max_ma", "discharge_current_max_ma"):
            if board[key] > full_scale:
                raise BoardFileError(f"{where}: {key} ({board[key]}) is beyond what the current "
                                     f"sensor measures (frontend.current_adc.full_scale_ma "
                                     f"{full_scale})")
    if "type" in frontend:  # a monitor chip measures: the MCU's ADC has no part in it
        _check_afe(board, where)
    else:
        _check_adc(board, where, calibration, range_error, PROFILES)


def _check_afe(board: dict[str, Any], where: str) -> None:
    """A battery-monitor chip's board: a chip cellguard drives and what it needs."""
    kind = board["frontend"]["type"]
    afe = board.get("afe")
    if kind not in CHIPS or not isinstance(afe, dict) or afe.get("chip") != kind:
        raise BoardFileError(f"{where}: frontend.type {kind!r} needs a matching \"afe\" "
                             f"object naming the chip ({', '.join(CHIPS)})")
    shunt = afe.get("shunt_uohm")
    if isinstance(shunt, bool) or not isinstance(shunt, int) or not 10 <= shunt <= 1000000:
        raise BoardFileError(f"{where}: afe.shunt_uohm must be a whole number 10..1000000 "
                             f"(the sense resistor, µΩ), not {shunt!r}")
    fe = board["frontend"]
    if not isinstance(fe.get("cell_adc"), dict) or not isinstance(fe.get("current_adc"), dict):
        raise BoardFileError(f"{where}: frontend needs cell_adc.full_scale_mv and "
                             "current_adc.full_scale_ma: what the chip measures")
    try:  # what the chip's HAL arms it with: a board it refuses is refused here
        chip_backstop(board)
    except (KeyError, TypeError, ValueError) as exc:
        raise BoardFileError(f"{where}: {exc}") from None
    if board["mcu"] != "sim" and not isinstance(board.get("pins", {}).get("i2c"), dict):
        raise BoardFileError(f"{where}: pins.i2c ({{\"scl\": .., \"sda\": ..}}) names the "
                             "bus the chip is on")


def _check_adc(board: dict[str, Any], where: str, calibration: Any, range_error: Any,
               profiles: dict[str, Any]) -> None:
    """A Pico's or ESP32's own ADC: the chemistry's highest cell inside the ADC's
    accurate input range, calibration pairs and balancing pins that fit the cells."""
    cell = board["frontend"].get("cell_adc")
    if not isinstance(cell, dict):
        return
    full_scale = cell.get("full_scale_mv")
    if isinstance(full_scale, int) and not isinstance(full_scale, bool) and full_scale > 0:
        error = range_error(board["mcu"], full_scale,
                            profiles[board["chemistry"]]["hard_cell_mv"][1])
        if error:
            raise BoardFileError(f"{where}: {error}")
    try:
        pairs = cell.get("calibration")
        if pairs is not None:
            calibration(pairs, board["cells"], "frontend.cell_adc")
        current = board["frontend"].get("current_adc")
        pair = current.get("calibration") if isinstance(current, dict) else None
        if pair is not None:
            calibration([pair], 1, "frontend.current_adc")
    except (TypeError, ValueError) as exc:
        raise BoardFileError(f"{where}: {exc} (each a [gain, offset] pair of numbers)") from None
    balance = (board.get("pins") or {}).get("balance")
    if balance is not None and (not isinstance(balance, list) or len(balance) != board["cells"]):
        raise BoardFileError(f"{where}: pins.balance must list one pin per cell "
                             f"({board['cells']})")
    if balance is None and board["mcu"] in ("rp2040", "esp32") and board.get("balancing") is True:
        raise BoardFileError(f"{where}: balancing is on but pins.balance names no balancing "
                             f"pins: the board could not apply the mask it reports")
