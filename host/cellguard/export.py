"""Export a cellguard log to CSV (SI units, one row per sample)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import TextIO

from .errors import LogFileError
from .logfile import LogReader


def export_csv(
    log: str | Path,
    out: TextIO,
    board_id: int | None = None,
    t_from: float | None = None,
    t_to: float | None = None,
) -> int:
    """Write the samples of ``log`` to ``out`` as CSV; return the number of rows.

    Columns: t_s, seq, state, faults, pack_v, current_a, soc_pct, cell1_v..cellN_v,
    temp1_c..tempM_c (plus ``board`` when the log holds several boards).
    """
    with LogReader(log) as reader:
        boards = reader.boards()
        if not boards:
            raise LogFileError(f"{log} holds no board yet")
        if board_id is not None and board_id not in {b for b, _ in boards}:
            raise LogFileError(f"{log} has no board {board_id}")
        chosen = [(b, i) for b, i in boards if board_id is None or b == board_id]
        n_cells = max(i.cell_count for _, i in chosen)
        n_temps = max(i.temp_count for _, i in chosen)
        several = len(chosen) > 1
        header = ["board"] if several else []
        header += ["t_s", "seq", "state", "faults", "pack_v", "current_a", "soc_pct"]
        header += [f"cell{i + 1}_v" for i in range(n_cells)]
        header += [f"temp{i + 1}_c" for i in range(n_temps)]
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        rows = 0
        for s in reader.samples(board_id, t_from, t_to):
            row: list[object] = [s.board_id] if several else []
            row += [f"{s.t_s:.3f}", s.seq, s.state, s.faults, f"{s.pack_v:.3f}",
                    f"{s.current_a:.3f}", f"{s.soc_pct:.2f}"]
            row += [f"{v:.3f}" for v in s.cells_v] + [""] * (n_cells - len(s.cells_v))
            row += [f"{c:.1f}" for c in s.temps_c] + [""] * (n_temps - len(s.temps_c))
            writer.writerow(row)
            rows += 1
        return rows


def export_to_path(log: str | Path, out: str | None, **kwargs: object) -> int:
    if out is None or out == "-":
        return export_csv(log, sys.stdout, **kwargs)  # type: ignore[arg-type]
    try:
        with open(out, "w", newline="") as f:
            return export_csv(log, f, **kwargs)  # type: ignore[arg-type]
    except OSError as exc:
        raise LogFileError(f"cannot write {out}: {exc.strerror}") from None
