"""Export a cellguard log in the Battery Data Format (BDF, Battery Data Alliance / LF Energy).

One test object per file: the pack (``Voltage / V`` is the pack voltage) or,
with ``per_cell``, one file per cell (series cells share the pack current).
Column labels are BDF's preferred labels as the ``batterydf`` package (0.1.0,
``bdf.normalize.REQUIRED``/``OPTIONAL``) spells them; steps, cycles, capacities
and energies are derived by :mod:`cellguard.formats.cycling`. Beside each file
a sidecar ``<file>.metadata.json`` (the name ``bdf.io`` uses) holds the board's
INFO, the log's provenance and the step rule. Columns beyond BDF are written only
with ``extra`` and are named ``cellguard ...``. The mapping is in docs/logging.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .. import __version__
from ..errors import CellguardError
from ..files import atomic_output, check_outputs, check_stdout
from ..link.client import Info
from ..store import LogReader, Series
from ..store.query import check_range, check_samples, choose_boards, describe_board, read_gaps
from .cycling import (
    MODE_NAMES,
    StepRule,
    default_rest_current_a,
    derive,
)

# BDF preferred labels (batterydf 0.1.0: bdf.normalize.REQUIRED and OPTIONAL).
TEST_TIME = "Test Time / s"
VOLTAGE = "Voltage / V"
CURRENT = "Current / A"
UNIX_TIME = "Unix Time / s"
CYCLE = "Cycle Count / 1"
STEP = "Step Count / 1"
CHARGE_AH = "Charging Capacity / Ah"
DISCHARGE_AH = "Discharging Capacity / Ah"
NET_AH = "Net Capacity / Ah"
CHARGE_WH = "Charging Energy / Wh"
DISCHARGE_WH = "Discharging Energy / Wh"
NET_WH = "Net Energy / Wh"
POWER = "Power / W"
SURFACE_TEMPS = tuple(f"Surface Temperature T{k} / degC" for k in range(1, 6))
AMBIENT = "Ambient Temperature / degC"  # no cellguard board marks a sensor as ambient (yet)

BDF_LABELS = (TEST_TIME, VOLTAGE, CURRENT, UNIX_TIME, CYCLE, STEP, CHARGE_AH, DISCHARGE_AH,
              NET_AH, CHARGE_WH, DISCHARGE_WH, NET_WH, POWER, *SURFACE_TEMPS)
"""Every BDF label this export writes (the temperatures as far as the board has sensors)."""

EXTRA_PREFIX = "cellguard "
SHEET_ROWS = 1_048_576
"""Rows of a spreadsheet (Excel, LibreOffice Calc), the header included."""

# Printed precision of each CSV column: the wire's resolution, or finer for derived values.
_FLOAT = {TEST_TIME: 3, UNIX_TIME: 3, VOLTAGE: 3, CURRENT: 3, CHARGE_AH: 6, DISCHARGE_AH: 6,
          NET_AH: 6, CHARGE_WH: 6, DISCHARGE_WH: 6, NET_WH: 6, POWER: 6}


@dataclass
class Column:
    """One output column: BDF (or ``cellguard ...``) label, values, CSV decimals (None: integer
    or text), unit and where it comes from (for the sidecar)."""

    label: str
    values: np.ndarray | list[str]
    decimals: int | None
    unit: str
    source: str

    @property
    def is_text(self) -> bool:
        return isinstance(self.values, list)

    def take(self, index: np.ndarray) -> Column:
        if isinstance(self.values, list):
            return Column(self.label, [self.values[k] for k in index], self.decimals, self.unit,
                          self.source)
        return Column(self.label, self.values[index], self.decimals, self.unit, self.source)


@dataclass
class CsvStyle:
    """Separator and decimal mark of a CSV file (``;`` and ``,`` for European spreadsheets)."""

    sep: str = ","
    decimal: str = "."

    def __post_init__(self) -> None:
        if self.sep in ("tab", "\\t"):
            self.sep = "\t"
        if self.sep not in (",", ";", "\t"):
            raise CellguardError(f"--sep {self.sep!r}: choose ',', ';' or tab")
        if self.decimal not in (".", ","):
            raise CellguardError(f"--decimal {self.decimal!r}: choose '.' or ','")
        if self.decimal == "," and self.sep == ",":
            raise CellguardError("--decimal ',' needs another separator: add --sep ';' "
                                 "(a comma cannot separate columns and decimals at once)")

    def number(self, text: str) -> str:
        return text if self.decimal == "." else text.replace(".", ",")


def check_rows(rows: int, allow: bool, what: str = "the CSV") -> None:
    """Refuse a CSV longer than a spreadsheet takes, unless ``allow`` (``--no-row-limit``)."""
    if rows + 1 > SHEET_ROWS and not allow:
        raise CellguardError(
            f"{what} would have {rows:,} rows and a header, more than a spreadsheet holds "
            f"({SHEET_ROWS:,} rows in Excel and LibreOffice): write Parquet (-o FILE.parquet), "
            f"keep every Nth sample with --every N (--every {math.ceil(rows / (SHEET_ROWS - 1))} "
            "fits), or give --no-row-limit to write it anyway")


def decimate(n: int, every: int) -> np.ndarray:
    """The rows ``--every N`` keeps: the first sample, then every Nth."""
    if every < 1:
        raise CellguardError(f"--every {every}: give a whole number >= 1")
    return np.arange(0, n, every)


def write_csv(columns: list[Column], out: TextIO, style: CsvStyle) -> int:
    """The columns as CSV: a header of labels, a row per sample; NaN is an empty field."""
    writer = csv.writer(out, delimiter=style.sep, lineterminator="\n")
    writer.writerow([c.label for c in columns])
    formatted: list[list[str]] = []
    for c in columns:
        if isinstance(c.values, list):
            formatted.append(c.values)
        elif c.decimals is None:
            formatted.append([str(int(v)) for v in c.values])
        else:
            fmt = f"{{:.{c.decimals}f}}"
            formatted.append([style.number(fmt.format(v)) if v == v else "" for v in c.values])
    rows = len(formatted[0]) if formatted else 0
    writer.writerows(zip(*formatted, strict=True))
    return rows


def write_parquet(columns: list[Column], path: Path, metadata: dict[str, Any]) -> int:
    """The columns as Parquet: float64 values (exact), int64 counts, strings; each field's
    metadata names its unit; the file's metadata holds the sidecar's JSON."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, fields = [], []
    for c in columns:
        if isinstance(c.values, list):
            typ = pa.string()
            arr = pa.array(c.values, type=typ)
        elif c.decimals is None:
            typ = pa.int64()
            arr = pa.array(np.asarray(c.values, dtype=np.int64), type=typ)
        else:
            typ = pa.float64()
            v = np.asarray(c.values, dtype=float)
            arr = pa.array(v, type=typ, mask=np.isnan(v))
        fields.append(pa.field(c.label, typ, metadata={"unit": c.unit}))
        arrays.append(arr)
    schema = pa.schema(fields, metadata={"cellguard.metadata": json.dumps(metadata)})
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path, compression="zstd")
    return len(columns[0].values) if columns else 0


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unix_offset_s(series: Series) -> float:
    """Host Unix time minus board time, the median over the samples: ``Unix Time`` is
    ``t_s`` plus this, so test time and Unix time advance together (the host's
    receive jitter does not make Unix time run backwards)."""
    return float(np.median(series.host_time - series.t))


def sidecar_path(out: str | Path) -> Path:
    """``<file>.metadata.json``, the sidecar name ``bdf.io.save`` writes."""
    p = Path(out)
    return p.with_name(p.name + ".metadata.json")


def cell_path(out: str | Path, cell: int, cells: int) -> Path:
    """``run.bdf.csv`` -> ``run.cell01.bdf.csv`` (``x.parquet`` -> ``x.cell01.parquet``)."""
    p = Path(out)
    width = max(2, len(str(cells)))
    name = p.name
    lower = name.lower()
    for suffix in (".bdf.csv", ".bdf.parquet", ".csv", ".parquet"):
        if lower.endswith(suffix):
            stem, tail = name[: -len(suffix)], name[-len(suffix):]
            return p.with_name(f"{stem}.cell{cell:0{width}d}{tail}")
    raise CellguardError(f"{out}: end the name with .csv or .parquet (BDF CSV or Parquet)")


def container(out: str | None) -> str:
    """``csv`` or ``parquet`` from the output's name; standard output is CSV."""
    if out is None or out == "-":
        return "csv"
    lower = out.lower()
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith(".csv"):
        return "csv"
    raise CellguardError(f"--format bdf picks CSV or Parquet by the output's name: give "
                         f"-o {Path(out).stem}.bdf.csv or -o {Path(out).stem}.bdf.parquet "
                         f"(not {out!r})")


@dataclass
class BdfResult:
    rows: int
    columns: list[str]
    boards: list[int]
    files: list[str] = field(default_factory=list)


def _board_definition(info: Info) -> dict[str, Any] | None:
    from ..boards import load_board

    try:
        board = load_board(info.board)
    except CellguardError:
        return None
    keys = ("name", "description", "cells", "temp_sensors", "chemistry", "capacity_mah")
    return {k: board[k] for k in keys if k in board}


class _Export:
    """One board row's series, turned into the columns of each test object."""

    def __init__(self, reader: LogReader, log: str | Path, board: str | int | None,
                 t_from: float | None, t_to: float | None, rule: StepRule | None,
                 min_step_s: float | None) -> None:
        check_range(t_from, t_to)
        chosen = choose_boards(reader, board)
        if len(chosen) != 1:
            held = "; ".join(describe_board(b, i) for b, i in chosen)
            raise CellguardError(
                f"BDF holds one test object per file and {reader.path} holds {len(chosen)} "
                f"board rows{'' if board is None else f' matching {board!r}'} ({held}): "
                "choose one with --board ID (a board id, the first number)")
        check_samples(reader, chosen, t_from, t_to)
        self.board_id, self.info = chosen[0]
        self.series = s = reader.series(self.board_id, self.info, t_from, t_to)
        self.gap = s.gap_mask()
        self.gaps = read_gaps(reader, s, t_from, t_to)
        if rule is None:
            kwargs = {} if min_step_s is None else {"min_step_s": min_step_s}
            rule = StepRule(default_rest_current_a(self.info.capacity_ah), **kwargs)
        self.rule = rule
        self.offset = unix_offset_s(s)
        self.log, self.t_from, self.t_to = log, t_from, t_to
        self.reader = reader

    def columns(self, cell: int | None, extra: bool) -> list[Column]:
        """The columns of the pack (``cell`` None) or of cell ``cell`` (from 0)."""
        s = self.series
        v = s.pack_v if cell is None else s.cells_v[:, cell]
        what = "pack_mv" if cell is None else f"cells_mv[{cell}]"
        cyc = derive(s.t, s.current_a, v, self.gap, self.rule)
        cols = [
            Column(TEST_TIME, s.t, 3, "s", "t_s (board time since the board row's first sample)"),
            Column(VOLTAGE, v, 3, "V", f"{what} / 1000"),
            Column(CURRENT, s.current_a, 3, "A", "current_ma / 1000 (+ = charging, as BDF)"),
            Column(UNIX_TIME, s.t + self.offset, 3, "s",
                   "t_s + median(host_time - t_s) of the board row"),
            Column(CYCLE, cyc.cycle, None, "1", "derived from the current (step rule)"),
            Column(STEP, cyc.step, None, "1", "derived from the current (step rule)"),
            Column(CHARGE_AH, cyc.charge_ah, 6, "Ah", "trapezoid of current > 0, from the start"),
            Column(DISCHARGE_AH, cyc.discharge_ah, 6, "Ah",
                   "trapezoid of current < 0 (magnitude), from the start"),
            Column(NET_AH, cyc.net_ah, 6, "Ah", "charging - discharging capacity"),
            Column(CHARGE_WH, cyc.charge_wh, 6, "Wh", "trapezoid of voltage * current > 0"),
            Column(DISCHARGE_WH, cyc.discharge_wh, 6, "Wh",
                   "trapezoid of voltage * current < 0 (magnitude)"),
            Column(NET_WH, cyc.net_wh, 6, "Wh", "charging - discharging energy"),
            Column(POWER, v * s.current_a, 6, "W", "voltage * current (+ = charging)"),
        ]
        n_temps = s.temps_c.shape[1]
        for k in range(min(n_temps, len(SURFACE_TEMPS))):
            cols.append(Column(SURFACE_TEMPS[k], s.temps_c[:, k], 1, "degC",
                               f"temps_dc[{k}] / 10 (the board's sensor {k + 1})"))
        if not extra:
            return cols
        x = EXTRA_PREFIX
        for k in range(len(SURFACE_TEMPS), n_temps):
            cols.append(Column(f"{x}Surface Temperature T{k + 1} / degC", s.temps_c[:, k], 1,
                               "degC", f"temps_dc[{k}] / 10"))
        if cell is None:
            for k in range(s.cells_v.shape[1]):
                cols.append(Column(f"{x}Cell {k + 1} Voltage / V", s.cells_v[:, k], 3, "V",
                                   f"cells_mv[{k}] / 1000"))
        cols += [
            Column(f"{x}Step Type", [MODE_NAMES[int(m)] for m in cyc.mode], None, "",
                   "rest, charge or discharge: the step rule's mode"),
            Column(f"{x}SoC / %", s.soc_pct, 2, "%", "soc_cpct / 100 (the board's SoC)"),
            Column(f"{x}State", list(s.state), None, "", "state (BMS state name)"),
            Column(f"{x}Faults", s.faults, None, "bits", "faults (protocol Faults bits)"),
        ]
        if s.warnings is not None and s.alarms is not None:
            cols += [Column(f"{x}Warnings", s.warnings, None, "bits", "warnings"),
                     Column(f"{x}Alarms", s.alarms, None, "bits", "alarms")]
        cols += [Column(f"{x}Boot", s.boot, None, "", "boot (restarts seen)"),
                 Column(f"{x}Sequence", s.seq, None, "", "seq (the telemetry counter)")]
        return cols

    def metadata(self, cell: int | None, columns: list[Column], every: int,
                 sha256: str, rows: int, dropped_temps: int) -> dict[str, Any]:
        s, info = self.series, self.info
        test_object = ({"kind": "pack", "cells_in_series": info.cell_count} if cell is None
                       else {"kind": "cell", "cell": cell + 1,
                             "note": "a series cell: it carries the pack current"})
        return {
            "format": "Battery Data Format (BDF), preferred labels of batterydf 0.1.0",
            "test_object": test_object,
            "board": {"board_id": self.board_id, **info.to_dict(),
                      "port": self.reader.board_ports().get(self.board_id)},
            "board_definition": _board_definition(info),
            "cell_model": {"chemistry": info.chemistry, "capacity_ah": info.capacity_ah,
                           "model": None,
                           "note": "the log names the chemistry and capacity only"},
            "provenance": {
                "source_file": Path(self.log).name,
                "source_sha256": sha256,
                "generator": f"cellguard {__version__}",
                "exported_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "log_meta": self.reader.meta(),
                "from_s": self.t_from, "to_s": self.t_to, "every": every,
                "samples": len(s), "rows": rows,
            },
            "time": {"test_time": "t_s: board time in s since the board row's first sample",
                     "unix_offset_s": self.offset,
                     "unix_time": "Test Time + unix_offset_s, the median of host receipt time "
                                  "minus board time"},
            "step_rule": self.rule.to_dict(),
            "gaps": {
                "rule": "an interval longer than GAP_PERIODS (5) telemetry periods, or across "
                        "a board restart: nothing integrated over it, no rest, no step change "
                        "by itself",
                "max_interval_s": s.max_dt_s,
                "list": [g.to_dict() for g in self.gaps],
            },
            "temperature_sensors_left_out": dropped_temps,
            "columns": [{"label": c.label, "unit": c.unit, "source": c.source,
                         "decimals_in_csv": c.decimals} for c in columns],
        }


def export_bdf(log: str | Path, out: str | None, *, board: str | int | None = None,
               t_from: float | None = None, t_to: float | None = None, force: bool = False,
               per_cell: bool = False, extra: bool = False, rest_current_a: float | None = None,
               min_step_s: float | None = None, every: int = 1, style: CsvStyle | None = None,
               no_row_limit: bool = False,
               note: Callable[[str], None] | None = None) -> BdfResult:
    """Write the BDF file(s) and their sidecars; see the module's docstring."""
    style = style or CsvStyle()
    kind = container(out)
    to_stdout = out is None or out == "-"
    if kind == "parquet" and (style.sep != "," or style.decimal != "."):
        raise CellguardError("--sep and --decimal are for CSV, not Parquet")
    if to_stdout and per_cell:
        raise CellguardError("--per-cell writes one file per cell: give -o FILE.bdf.csv "
                             "or -o FILE.bdf.parquet")
    if every < 1:
        raise CellguardError(f"--every {every}: give a whole number >= 1")
    try:
        if min_step_s is not None:
            StepRule(1.0, min_step_s)  # checked before the log is read
        rule = None if rest_current_a is None else StepRule(
            rest_current_a, *(() if min_step_s is None else (min_step_s,)))
    except ValueError as exc:
        raise CellguardError(str(exc)) from None
    if to_stdout:
        check_stdout([log])
    with LogReader(log) as reader:
        job = _Export(reader, log, board, t_from, t_to, rule, min_step_s)
        n = len(job.series)
        keep = decimate(n, every)
        if kind == "csv":
            check_rows(len(keep), no_row_limit)
        cells = list(range(job.series.cells_v.shape[1])) if per_cell else [None]
        if per_cell and not cells:
            raise CellguardError(f"{log}: board {job.board_id} logged no cell voltages")
        files: list[Path | None] = ([None] if to_stdout else
                                    [Path(out) if c is None else cell_path(str(out), c + 1,
                                                                           len(cells))
                                     for c in cells])
        if not to_stdout:
            outs = [p for f in files if f is not None for p in (f, sidecar_path(f))]
            check_outputs(outs, inputs=[log], force=force)
        dropped = max(0, job.series.temps_c.shape[1] - len(SURFACE_TEMPS)) if not extra else 0
        if dropped and note:
            note(f"BDF has labels for 5 surface temperatures: the board's sensors 6.."
                 f"{job.series.temps_c.shape[1]} are left out (--extra writes them as "
                 f"'cellguard ...' columns)")
        sha = _sha256(log)
        result = BdfResult(len(keep), [], [job.board_id])
        for cell, path in zip(cells, files, strict=True):
            columns = [c.take(keep) for c in job.columns(cell, extra)]
            result.columns = [c.label for c in columns]
            meta = job.metadata(cell, columns, every, sha, len(keep), dropped)
            if path is None:
                write_csv(columns, sys.stdout, style)
                continue
            with atomic_output(path, inputs=[log], force=force) as tmp:
                if kind == "csv":
                    with open(tmp, "w", newline="", encoding="utf-8") as f:
                        write_csv(columns, f, style)
                else:
                    write_parquet(columns, tmp, meta)
            with atomic_output(sidecar_path(path), inputs=[log], force=force) as tmp:
                tmp.write_text(json.dumps(meta, indent=2, allow_nan=False, default=_json_default)
                               + "\n", encoding="utf-8")
            result.files += [str(path), str(sidecar_path(path))]
    return result


def _json_default(value: object) -> object:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")
