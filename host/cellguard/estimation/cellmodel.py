"""The cell model file (``cell.json``): load, validate, interpolate, save.

A cell model is an equivalent circuit: an open-circuit voltage OCV(SoC, T) in
series with R0(SoC, T) and two RC pairs (R1, tau1) and (R2, tau2), all tabulated
on one grid of SoC breakpoints (percent, 0 and 100 included) and one or more
temperatures (degC). Units are SI: V, ohm, s, A·h. ``docs/cell-model.md``
describes the format; this module is its reference reader and writer.

Lookups are bilinear in SoC and temperature and clamped at the table's edges.
Every error a file can have comes out as one :class:`CellModelError` that names
the key and the index (``r0_ohm[1][4] must be above 0, not -0.002``).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ..errors import CellguardError

FORMAT = "cellguard-cell"
VERSION = 1
CHEMISTRIES = ("nmc", "lfp", "sodium_ion")
TABLE_KEYS = ("ocv_v", "r0_ohm", "r1_ohm", "tau1_s", "r2_ohm", "tau2_s")
"""The [temperature][soc] tables, in the order the file lists them."""
KEYS = ("format", "version", "name", "chemistry", "capacity_ah", "soc_pct", "temps_c",
        *TABLE_KEYS, "source")
"""Every key of a cell file, in the order :meth:`CellModel.to_json` writes them."""


class CellModelError(CellguardError):
    """A cell file that cannot be read or is not a valid cell model."""


@dataclass(frozen=True)
class CellParams:
    """The model's values at one SoC and temperature."""

    ocv_v: float
    r0_ohm: float
    r1_ohm: float
    tau1_s: float
    r2_ohm: float
    tau2_s: float


def _bracket(axis: list[float], x: float) -> tuple[int, float]:
    """Index ``i`` and weight ``w`` so that x ~ axis[i] * (1 - w) + axis[i + 1] * w,
    clamped to the axis (a one-point axis gives (0, 0.0))."""
    if len(axis) == 1 or x <= axis[0]:
        return 0, 0.0
    if x >= axis[-1]:
        return len(axis) - 2, 1.0
    i = bisect.bisect_right(axis, x) - 1
    return i, (x - axis[i]) / (axis[i + 1] - axis[i])


@dataclass
class CellModel:
    """One cell model; tables are ``[temperature][soc]`` lists of floats."""

    name: str
    chemistry: str
    capacity_ah: float
    soc_pct: list[float]
    temps_c: list[float]
    ocv_v: list[list[float]]
    r0_ohm: list[list[float]]
    r1_ohm: list[list[float]]
    tau1_s: list[list[float]]
    r2_ohm: list[list[float]]
    tau2_s: list[list[float]]
    source: str = ""
    _where: str = field(default="cell model", repr=False, compare=False)

    def __post_init__(self) -> None:
        # Checked on construction, so no invalid model exists.
        _check(self.to_dict(), self._where)

    # -- lookups ---------------------------------------------------------------
    def table(self, key: str) -> list[list[float]]:
        if key not in TABLE_KEYS:
            raise KeyError(f"not a table of a cell model: {key!r}")
        return getattr(self, key)

    def value(self, key: str, soc_pct: float, temp_c: float = 25.0) -> float:
        """Table ``key`` at ``soc_pct`` and ``temp_c``: bilinear, clamped."""
        rows = self.table(key)
        i, ws = _bracket(self.soc_pct, soc_pct)
        j, wt = _bracket(self.temps_c, temp_c)

        def along_soc(row: list[float]) -> float:
            if len(row) == 1:
                return row[0]
            return row[i] + (row[i + 1] - row[i]) * ws

        low = along_soc(rows[j])
        if len(rows) == 1:
            return low
        return low + (along_soc(rows[j + 1]) - low) * wt

    def params(self, soc_pct: float, temp_c: float = 25.0) -> CellParams:
        """All parameters at one SoC and temperature."""
        return CellParams(*(self.value(k, soc_pct, temp_c) for k in TABLE_KEYS))

    def ocv(self, soc_pct: float, temp_c: float = 25.0) -> float:
        return self.value("ocv_v", soc_pct, temp_c)

    def soc_from_ocv(self, ocv_v: float, temp_c: float = 25.0) -> float:
        """The SoC (percent, clamped 0..100) whose OCV is ``ocv_v`` at ``temp_c``
        (OCV rises strictly with SoC at every temperature, so this is unique)."""
        curve = [self.ocv(s, temp_c) for s in self.soc_pct]
        if ocv_v <= curve[0]:
            return self.soc_pct[0]
        if ocv_v >= curve[-1]:
            return self.soc_pct[-1]
        i = bisect.bisect_right(curve, ocv_v) - 1
        w = (ocv_v - curve[i]) / (curve[i + 1] - curve[i])
        return self.soc_pct[i] + (self.soc_pct[i + 1] - self.soc_pct[i]) * w

    # -- to and from JSON --------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format": FORMAT, "version": VERSION, "name": self.name,
                             "chemistry": self.chemistry, "capacity_ah": self.capacity_ah,
                             "soc_pct": list(self.soc_pct), "temps_c": list(self.temps_c)}
        for key in TABLE_KEYS:
            d[key] = [list(row) for row in getattr(self, key)]
        d["source"] = self.source
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str = "cell model") -> CellModel:
        """A checked model from parsed JSON; CellModelError names what is wrong."""
        _check(data, where)
        tables = {k: [[float(x) for x in row] for row in data[k]] for k in TABLE_KEYS}
        return cls(name=data["name"], chemistry=data["chemistry"],
                   capacity_ah=float(data["capacity_ah"]),
                   soc_pct=[float(x) for x in data["soc_pct"]],
                   temps_c=[float(x) for x in data["temps_c"]],
                   source=data.get("source", ""), _where=where, **tables)

    def to_json(self) -> str:
        """The file's text: one key a line, each table row on one line."""
        d = self.to_dict()
        lines = []
        for key in KEYS:
            value = d[key]
            if key in TABLE_KEYS:
                rows = ",\n    ".join(json.dumps(row) for row in value)
                text = f"[\n    {rows}\n  ]"
            else:
                text = json.dumps(value, ensure_ascii=False)
            lines.append(f"  {json.dumps(key)}: {text}")
        return "{\n" + ",\n".join(lines) + "\n}\n"

    @classmethod
    def from_json(cls, text: str, where: str = "cell model") -> CellModel:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CellModelError(f"{where}: not valid JSON: {exc}") from None
        return cls.from_dict(data, where)


def load(path: str | Path) -> CellModel:
    """Read and check a cell file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CellModelError(f"cannot read cell file {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CellModelError(f"{p}: not a text file") from None
    return CellModel.from_json(text, str(p))


def save(model: CellModel, path: str | Path, *, inputs: Sequence[str | Path] = (),
         force: bool = False) -> None:
    """Write ``model`` to ``path`` (checked again on the way out) through a temporary
    file: never over one of ``inputs``, over an existing file only with ``force``."""
    from ..files import write_text

    _check(model.to_dict(), str(path))
    write_text(path, model.to_json(), inputs=inputs, force=force)


# -- validation ------------------------------------------------------------------
def _is_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, int | float) and math.isfinite(x)


def _check(data: Any, where: str) -> None:
    def fail(message: str) -> NoReturn:
        raise CellModelError(f"{where}: {message}")

    if not isinstance(data, dict):
        fail(f"a cell file is a JSON object, not {type(data).__name__}")
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        fail(f"unknown key {', '.join(map(repr, unknown))}; valid keys: {', '.join(KEYS)}")
    missing = [k for k in KEYS if k not in data and k != "source"]
    if missing:
        fail(f"missing key {', '.join(map(repr, missing))}")
    if data["format"] != FORMAT:
        fail(f"format must be {FORMAT!r}, not {data['format']!r}")
    if data["version"] != VERSION or isinstance(data["version"], bool):
        fail(f"version must be {VERSION} (this cellguard reads version {VERSION} only), "
             f"not {data['version']!r}")
    for key in ("name", "source"):
        if key in data and not isinstance(data[key], str):
            fail(f"{key} must be a string, not {data[key]!r}")
    if not data["name"].strip():
        fail("name must not be empty")
    if data["chemistry"] not in CHEMISTRIES:
        fail(f"chemistry must be one of {', '.join(CHEMISTRIES)}, not {data['chemistry']!r}")
    cap = data["capacity_ah"]
    if not _is_number(cap) or cap <= 0:
        fail(f"capacity_ah must be a number above 0, not {cap!r}")

    def axis(key: str) -> list[float]:
        values = data[key]
        if not isinstance(values, list) or not values:
            fail(f"{key} must be a non-empty list of numbers, not {values!r}")
        for i, x in enumerate(values):
            if not _is_number(x):
                fail(f"{key}[{i}] must be a finite number, not {x!r}")
            if i and x <= values[i - 1]:
                fail(f"{key} must rise strictly: {key}[{i}] = {x!r} follows "
                     f"{key}[{i - 1}] = {values[i - 1]!r}")
        return values

    socs = axis("soc_pct")
    if len(socs) < 2 or socs[0] != 0 or socs[-1] != 100:
        fail(f"soc_pct must run from 0 to 100 (both included), not {socs[0]!r}..{socs[-1]!r}")
    temps = axis("temps_c")
    if temps[0] < -273.15:
        fail(f"temps_c[0] = {temps[0]!r} is below absolute zero")
    shape = (len(temps), len(socs))
    for key in TABLE_KEYS:
        rows = data[key]
        if not isinstance(rows, list) or len(rows) != shape[0]:
            n = len(rows) if isinstance(rows, list) else type(rows).__name__
            fail(f"{key} must be a list of {shape[0]} rows (one per temps_c), not {n}")
        for j, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != shape[1]:
                n = len(row) if isinstance(row, list) else type(row).__name__
                fail(f"{key}[{j}] must be a list of {shape[1]} numbers (one per soc_pct), "
                     f"not {n}")
            for i, x in enumerate(row):
                if not _is_number(x):
                    fail(f"{key}[{j}][{i}] must be a finite number, not {x!r}")
                if key == "ocv_v":
                    if x <= 0:
                        fail(f"ocv_v[{j}][{i}] must be above 0 V, not {x!r}")
                    if i and x <= row[i - 1]:
                        fail(f"ocv_v[{j}] must rise strictly with soc_pct: ocv_v[{j}][{i}] = "
                             f"{x!r} follows {row[i - 1]!r}")
                elif key in ("r0_ohm", "tau1_s", "tau2_s") and x <= 0:
                    fail(f"{key}[{j}][{i}] must be above 0, not {x!r}")
                elif x < 0:
                    fail(f"{key}[{j}][{i}] must be 0 or more, not {x!r}")
                if key == "tau2_s" and x <= data["tau1_s"][j][i]:
                    fail(f"tau2_s[{j}][{i}] = {x!r} must be above tau1_s[{j}][{i}] = "
                         f"{data['tau1_s'][j][i]!r} (the second RC pair is the slow one)")


# -- the simulator's cells -------------------------------------------------------
def sim_cell(chemistry: str, board: dict[str, Any] | None = None) -> CellModel:
    """The cell the built-in plant simulates for ``chemistry``: the OCV table of
    ``cellguard_fw.chemistry`` and the plant's R0/R1/tau1/R2/tau2 (the board
    file's ``"plant"`` over the plant's defaults; sim-4s unless ``board``),
    which do not depend on SoC or temperature (one temperature, 25 degC)."""
    from cellguard_fw.chemistry import OCV_STEP_CPCT, PROFILES

    from ..boards import load_board
    from ..sim.plant import plant_parameters

    if chemistry not in PROFILES:
        raise CellModelError(f"no chemistry {chemistry!r}; known: {', '.join(PROFILES)}")
    board = load_board("sim-4s") if board is None else board
    p = plant_parameters(board)
    table = PROFILES[chemistry]["ocv_mv"]
    n = len(table)
    socs = [k * OCV_STEP_CPCT / 100.0 for k in range(n)]

    def row(value: float) -> list[list[float]]:
        return [[value] * n]

    return CellModel(
        name=f"cellguard simulator, {chemistry}",
        chemistry=chemistry,
        capacity_ah=board["capacity_mah"] / 1000.0,
        soc_pct=socs,
        temps_c=[25.0],
        ocv_v=[[mv / 1000.0 for mv in table]],
        r0_ohm=row(p["r0_mohm"] / 1000.0),
        r1_ohm=row(p["r1_mohm"] / 1000.0),
        tau1_s=row(p["tau1_s"]),
        r2_ohm=row(p["r2_mohm"] / 1000.0),
        tau2_s=row(p["tau2_s"]),
        source=(f"the built-in plant (host/cellguard/sim/plant.py) as board {board['name']} "
                f"sets it: OCV table of cellguard_fw.chemistry[{chemistry!r}], R0/R1/tau1/"
                "R2/tau2 from the board's plant keys over PLANT_DEFAULTS; nominal values "
                "(the plant spreads each cell's capacity and resistances around them); no "
                "temperature dependence"),
    )
