"""Export a cellguard log to CSV or Parquet (SI units, one row per sample), or to BDF.

BDF (the Battery Data Format) is :mod:`cellguard.formats.bdf`; what follows is
the plain export.

Columns: t_s, seq, state, faults, pack_v, current_a, soc_pct, cell1_v..cellN_v,
temp1_c..tempM_c, with a leading ``board`` column (the board id) when the
selection holds several boards. In Parquet the columns are typed: float64 for
values (exact: wire value / scale), int64 for board, seq and faults, string for
state; each field's metadata names its unit, and the file's metadata holds the
boards' INFO.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..errors import CellguardError
from ..files import atomic_output, check_output, check_stdout
from ..store import LogReader, Sample
from ..store.query import check_range, check_samples, choose_boards, load_series
from .bdf import CsvStyle, check_rows, export_bdf

FORMATS = ("csv", "parquet", "bdf")
_BATCH = 65536
_UNITS = {"board": "", "t_s": "s", "seq": "", "state": "", "faults": "bits", "pack_v": "V",
          "current_a": "A (+ = charging)", "soc_pct": "%"}


@dataclass
class ExportResult:
    rows: int
    columns: list[str]
    boards: list[int]
    out: str | None = None
    format: str = "csv"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.out, "format": self.format, "rows": self.rows,
                "boards": self.boards, "columns": self.columns, **self.extra}


@dataclass
class _Plan:
    reader: LogReader
    boards: list[int]
    several: bool
    n_cells: int
    n_temps: int
    t_from: float | None
    t_to: float | None
    infos: list[dict[str, Any]]
    every: int = 1
    style: CsvStyle = field(default_factory=CsvStyle)

    @property
    def columns(self) -> list[str]:
        head = ["board"] if self.several else []
        head += ["t_s", "seq", "state", "faults", "pack_v", "current_a", "soc_pct"]
        head += [f"cell{i + 1}_v" for i in range(self.n_cells)]
        return head + [f"temp{i + 1}_c" for i in range(self.n_temps)]

    def samples(self) -> Iterator[Sample]:
        """Each board's samples; with ``every`` N its first and every Nth after it."""
        for bid in self.boards:
            for k, s in enumerate(self.reader.samples(bid, self.t_from, self.t_to)):
                if k % self.every == 0:
                    yield s

    def rows(self) -> int:
        """How many rows the export writes (counted in the log, nothing read)."""
        rows = 0
        for bid in self.boards:
            span = self.reader.time_span([bid])
            if span is None:
                continue
            lo = span[0] if self.t_from is None else self.t_from
            hi = span[1] if self.t_to is None else self.t_to
            n = self.reader.count_samples([bid], lo, hi)
            rows += -(-n // self.every)
        return rows


def _plan(reader: LogReader, board: str | int | None, t_from: float | None,
          t_to: float | None, every: int = 1, style: CsvStyle | None = None) -> _Plan:
    check_range(t_from, t_to)
    chosen = choose_boards(reader, board)
    check_samples(reader, chosen, t_from, t_to)
    return _Plan(
        reader=reader, boards=[b for b, _ in chosen], several=len(chosen) > 1,
        n_cells=max(i.cell_count for _, i in chosen), n_temps=max(i.temp_count for _, i in chosen),
        t_from=t_from, t_to=t_to,
        infos=[{"board_id": b, **i.to_dict()} for b, i in chosen], every=every,
        style=style or CsvStyle(),
    )


def _write_csv(plan: _Plan, out: TextIO) -> int:
    num = plan.style.number
    writer = csv.writer(out, delimiter=plan.style.sep, lineterminator="\n")
    writer.writerow(plan.columns)
    n_cells, n_temps = plan.n_cells, plan.n_temps
    rows = 0
    for s in plan.samples():
        row: list[object] = [s.board_id] if plan.several else []
        row += [num(f"{s.t_s:.3f}"), s.seq, s.state, s.faults, num(f"{s.pack_v:.3f}"),
                num(f"{s.current_a:.3f}"), num(f"{s.soc_pct:.2f}")]
        row += [num(f"{v:.3f}") for v in s.cells_v[:n_cells]] + [""] * (n_cells - len(s.cells_v))
        row += [num(f"{c:.1f}") for c in s.temps_c[:n_temps]] + [""] * (n_temps - len(s.temps_c))
        writer.writerow(row)
        rows += 1
    return rows


def _arrow_schema(plan: _Plan, source: str) -> Any:
    import pyarrow as pa

    def typ(name: str) -> Any:
        if name in ("board", "seq", "faults"):
            return pa.int64()
        return pa.string() if name == "state" else pa.float64()

    def unit(name: str) -> str:
        if name.startswith("cell"):
            return "V"
        return "°C" if name.startswith("temp") else _UNITS[name]

    fields = [pa.field(c, typ(c), nullable=c.startswith(("cell", "temp")),
                       metadata={"unit": unit(c)}) for c in plan.columns]
    return pa.schema(fields, metadata={
        "cellguard.source": source,
        "cellguard.boards": json.dumps(plan.infos),
        "cellguard.from_s": "" if plan.t_from is None else repr(plan.t_from),
        "cellguard.to_s": "" if plan.t_to is None else repr(plan.t_to),
    })


def _write_parquet(plan: _Plan, path: Path, source: str) -> int:
    """One board at a time, as arrays (see :func:`logdata.load_series`), in row groups."""
    try:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - a dependency of the package
        raise CellguardError("Parquet export needs pyarrow: pip install pyarrow") from None
    schema = _arrow_schema(plan, source)
    infos = dict(plan.reader.boards())
    rows = 0

    def column(values: np.ndarray, name: str) -> Any:
        typ = schema.field(name).type
        if name.startswith(("cell", "temp")):
            return pa.array(values, type=typ, mask=np.isnan(values))
        return pa.array(values, type=typ)

    def padded(block: np.ndarray, width: int) -> np.ndarray:
        if block.shape[1] >= width:
            return block[:, :width]
        pad = np.full((block.shape[0], width - block.shape[1]), np.nan)
        return np.hstack([block, pad])

    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for bid in plan.boards:
            s = load_series(plan.reader, bid, infos[bid], plan.t_from, plan.t_to)
            if not len(s):
                continue
            keep = slice(None, None, plan.every)
            cells, temps = padded(s.cells_v, plan.n_cells), padded(s.temps_c, plan.n_temps)
            arrays = {"board": np.full(len(s), bid, dtype=np.int64), "t_s": s.t, "seq": s.seq,
                      "faults": s.faults, "pack_v": s.pack_v, "current_a": s.current_a,
                      "soc_pct": s.soc_pct}
            arrays |= {f"cell{i + 1}_v": cells[:, i] for i in range(plan.n_cells)}
            arrays |= {f"temp{i + 1}_c": temps[:, i] for i in range(plan.n_temps)}
            data = [pa.array(s.state[keep], type=pa.string()) if c == "state"
                    else column(arrays[c][keep], c) for c in plan.columns]
            table = pa.Table.from_arrays(data, schema=schema)
            writer.write_table(table, row_group_size=_BATCH)
            rows += table.num_rows
        if not rows:
            writer.write_table(schema.empty_table())
    return rows


def export_csv(log: str | Path, out: TextIO, board_id: str | int | None = None,
               t_from: float | None = None, t_to: float | None = None) -> int:
    """Write the samples of ``log`` to ``out`` as CSV; return the number of rows."""
    with LogReader(log) as reader:
        return _write_csv(_plan(reader, board_id, t_from, t_to), out)


def export(log: str | Path, out: str | None, fmt: str = "csv", board: str | int | None = None,
           t_from: float | None = None, t_to: float | None = None,
           force: bool = False, *, every: int = 1, sep: str = ",", decimal: str = ".",
           no_row_limit: bool = False, per_cell: bool = False, extra: bool = False,
           rest_current_a: float | None = None, min_step_s: float | None = None,
           note: Callable[[str], None] | None = None) -> ExportResult:
    """Export to ``out`` (CSV may go to standard output with ``None`` or ``-``).

    ``out`` is checked first (never the log itself; an existing file only with
    ``force``), then the log and the selection, before anything is written; the
    file is written beside ``out`` and renamed (:func:`cellguard.files.atomic_output`),
    so an error leaves no half-written file and the old one as it was.

    ``every`` N keeps the first sample and every Nth after it (per board); ``sep``
    and ``decimal`` shape a CSV; a CSV longer than a spreadsheet takes is refused
    unless ``no_row_limit``. ``fmt`` ``bdf`` is :func:`cellguard.formats.bdf.export_bdf`
    (CSV or Parquet by the name of ``out``; ``per_cell``, ``extra``, the step rule's
    ``rest_current_a`` and ``min_step_s`` go with it only).
    """
    if fmt not in FORMATS:
        raise CellguardError(f"unknown export format {fmt!r} (choose {', '.join(FORMATS)})")
    style = CsvStyle(sep, decimal)
    if every < 1:
        raise CellguardError(f"--every {every}: give a whole number >= 1")
    if fmt == "bdf":
        r = export_bdf(log, out, board=board, t_from=t_from, t_to=t_to, force=force,
                       per_cell=per_cell, extra=extra, rest_current_a=rest_current_a,
                       min_step_s=min_step_s, every=every, style=style,
                       no_row_limit=no_row_limit, note=note)
        to_stdout = out is None or out == "-"
        return ExportResult(r.rows, r.columns, r.boards, None if to_stdout else str(out), fmt,
                            {"files": r.files})
    given = [name for name, on in (("--per-cell", per_cell), ("--extra", extra),
                                   ("--rest-current", rest_current_a is not None),
                                   ("--min-step", min_step_s is not None)) if on]
    if given:
        raise CellguardError(f"{', '.join(given)} go with --format bdf")
    to_stdout = out is None or out == "-"
    if fmt == "parquet" and to_stdout:
        raise CellguardError("Parquet is binary: give an output file with -o FILE.parquet")
    if fmt == "parquet" and (sep != "," or decimal != "."):
        raise CellguardError("--sep and --decimal are for CSV, not Parquet")
    if to_stdout:
        check_stdout([log])
    else:
        assert out is not None
        check_output(out, inputs=[log], force=force)
    with LogReader(log) as reader:
        plan = _plan(reader, board, t_from, t_to, every, style)
        if fmt == "csv":
            check_rows(plan.rows(), no_row_limit)
        result = ExportResult(0, plan.columns, plan.boards, None if to_stdout else str(out), fmt,
                              {"files": [] if to_stdout else [str(out)]})
        if to_stdout:
            result.rows = _write_csv(plan, sys.stdout)
            return result
        assert out is not None
        with atomic_output(out, inputs=[log], force=force) as tmp:
            if fmt == "csv":
                with open(tmp, "w", newline="", encoding="utf-8") as f:
                    result.rows = _write_csv(plan, f)
            else:
                result.rows = _write_parquet(plan, tmp, str(log))
    return result


def export_to_path(log: str | Path, out: str | None, **kwargs: Any) -> int:
    """CSV to a path or standard output (kept for callers of the first version)."""
    board = kwargs.pop("board_id", None)
    return export(log, out, "csv", board=board, **kwargs).rows
