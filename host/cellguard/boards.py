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
    missing = [k for k in REQUIRED if k not in board]
    if missing:
        raise BoardFileError(f"board file {path} lacks {', '.join(missing)}")
    if not 1 <= board["cells"] <= 16:
        raise BoardFileError(f"board file {path}: cells must be 1..16")
    return board
