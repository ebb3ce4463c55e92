"""Run the firmware's state estimator over a recorded trace, offline.

The same code as on the board (``cellguard_fw.estimator``), under CPython, real
MicroPython (both double precision here) or CPython in single precision
(``float32``: every float a binary32, as on an RP2040 or ESP32; :mod:`.float32`),
so an engineer can tune on real logs. Input: a CSV with
``t_s, current_a, cell1_v .. cellN_v`` and optionally ``temp1_c ..`` (current
positive when charging); output: one row per input row with the SoC, its
standard deviation, the emptiest and fullest cell's SoC, capacity, R0 growth,
the current-sensor bias and the current limits (SI units, %), and whether the
row was gated: a cell reading outside the chemistry's plausible range (0.5 V
beyond its hard limits) updates nothing, as on the board (docs/estimation.md).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CellguardError
from ..files import atomic_output, check_output
from ..units import fixed
from . import cellmodel, plausible

OUTPUT_COLUMNS = (
    "t_s", "soc_pct", "soc_std_pct", "cell_soc_min_pct", "cell_soc_max_pct", "capacity_ah",
    "r0_growth", "bias_a", "charge_limit_a", "charge_peak_2s_a", "charge_peak_10s_a",
    "charge_peak_30s_a", "discharge_limit_a", "discharge_peak_2s_a", "discharge_peak_10s_a",
    "discharge_peak_30s_a", "balancing", "gated",
)
OUTPUT_DECIMALS: dict[str, int] = {
    "t_s": 3, "soc_pct": 2, "soc_std_pct": 2, "cell_soc_min_pct": 2, "cell_soc_max_pct": 2,
    "capacity_ah": 4, "r0_growth": 4, "bias_a": 4, **{c: 3 for c in OUTPUT_COLUMNS
                                                      if c.endswith("_a") and c != "bias_a"},
    "balancing": 0, "gated": 0,
}
"""Fixed decimals per output column: the resolution the estimator's figures have
(0.01 % of SoC, 0.1 mAh, 0.1 mA of bias, 1 mA of limits, 1 ms), never an exponent."""
MODES = ("ekf", "coulomb")
RUNTIMES = ("cpython", "micropython", "float32")


class TraceError(CellguardError):
    """The input trace cannot be used."""


@dataclass
class Trace:
    t_s: list[float]
    current_a: list[float]
    cells_v: list[list[float]]  # [row][cell]
    temps_c: list[list[float]]  # [row][sensor]; empty rows when the trace has none
    cell_columns: list[str] = field(default_factory=list)  # the header's cellN_v names
    temp_columns: list[str] = field(default_factory=list)


def read_trace(path: str | Path) -> Trace:
    """Read a trace CSV; a clear error for anything unusable."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise TraceError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TraceError(f"{path} is not a CSV file: {exc}") from None
    if not rows:
        raise TraceError(f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    for need in ("t_s", "current_a", "cell1_v"):
        if need not in header:
            raise TraceError(f"{path}: no column {need!r} (need t_s, current_a, cell1_v..)")
    cells = [i for i, h in enumerate(header) if h.startswith("cell") and h.endswith("_v")]
    temps = [i for i, h in enumerate(header) if h.startswith("temp") and h.endswith("_c")]
    it, ii = header.index("t_s"), header.index("current_a")
    trace = Trace([], [], [], [], [header[i] for i in cells], [header[i] for i in temps])

    def number(row: list[str], i: int, n: int) -> float:
        """The value in column ``i`` of line ``n``; TraceError names the column."""
        text = row[i].strip() if i < len(row) else ""
        if not text:
            raise TraceError(f"{path} line {n}: no value for {header[i]}")
        try:
            value = float(text)
        except ValueError:
            raise TraceError(f"{path} line {n}: {header[i]} is not a number: {text!r}") from None
        if not math.isfinite(value):
            raise TraceError(f"{path} line {n}: {header[i]} is not a finite number: {text!r}")
        return value

    for n, row in enumerate(rows[1:], start=2):
        if not row or all(not x.strip() for x in row):
            continue
        t = number(row, it, n)
        current = number(row, ii, n)
        values = [number(row, i, n) for i in cells]
        temp = [number(row, i, n) for i in temps]
        if trace.t_s and t <= trace.t_s[-1]:
            raise TraceError(f"{path} line {n}: t_s does not increase ({t:g} after "
                             f"{trace.t_s[-1]:g})")
        trace.t_s.append(t)
        trace.current_a.append(current)
        trace.cells_v.append(values)
        trace.temps_c.append(temp)
    if len(trace.t_s) < 2:
        raise TraceError(f"{path}: fewer than two samples")
    return trace


def check_plausible(where: str, trace: Trace, model: cellmodel.CellModel) -> list[str]:
    """Refuse a trace in the wrong units (mV, mA, 0.1 °C: :mod:`.plausible`); return
    warnings for readings beyond what the model's chemistry can read."""
    warnings: list[str] = []
    for c, name in enumerate(trace.cell_columns):
        warnings += plausible.check_cell_volts(where, name, [row[c] for row in trace.cells_v],
                                               model.chemistry)
    plausible.check_current(where, trace.current_a, model.capacity_ah)
    for k, name in enumerate(trace.temp_columns):
        plausible.check_temps(where, name, [row[k] for row in trace.temps_c])
    return warnings


def estimator_board(model: cellmodel.CellModel, n_cells: int, mode: str,
                    initial_soc_pct: float | None) -> dict[str, Any]:
    """The board dict the firmware's StateEstimator reads."""
    board: dict[str, Any] = {
        "cells": n_cells, "capacity_mah": round(model.capacity_ah * 1000),
        "cell_model": model.to_dict(), "estimator": mode, "balancing": False,
    }
    if initial_soc_pct is not None:
        board["initial_soc_pct"] = float(initial_soc_pct)
    return board


def coulomb_ocv_mv(model: cellmodel.CellModel, temp_c: float) -> tuple[int, ...]:
    """The fitted cell's OCV at ``temp_c`` as the coulomb counter's table (integer mV
    every 5 % SoC from 0 to 100 %, rising strictly, as ``soc_from_ocv`` needs): the
    baseline starts and re-anchors from the same OCV as the EKF, not from the
    chemistry's generic table."""
    table: list[int] = []
    for k in range(21):
        mv = round(model.ocv(5.0 * k, temp_c) * 1000)
        table.append(max(mv, table[-1] + 1) if table else mv)
    return tuple(table)


def _start_temp_c(trace: Trace) -> float:
    first = trace.temps_c[0]
    return sum(first) / len(first) if first else 25.0


def _ratings(model: cellmodel.CellModel) -> tuple[float, float, float, float]:
    # Offline there is no board: rate the cell at 2C sustained and 5C peak.
    c = model.capacity_ah
    return (2 * c, 5 * c, 2 * c, 5 * c)


@dataclass
class RunSummary:
    """What a replay's numbers did, judged after every step: whether the pack
    filter's covariance P stayed positive definite (symmetric, its Cholesky
    factorisation succeeding: every leading minor positive) and whether a NaN or
    an infinity appeared in the state or the outputs. For ``float32`` also the
    binary32 operations' counters and the plain doubles left in the state (none in
    a faithful replay)."""

    runtime: str
    steps: int = 0
    pd_steps: int = 0  # steps after which P was positive definite
    first_not_pd_s: float | None = None
    min_pivot: float = 1.0  # the smallest Cholesky pivot over its diagonal element, any step
    nonfinite_steps: int = 0  # steps with a NaN or an infinity in the state or outputs
    first_nonfinite_s: float | None = None
    stats: Any = None  # float32.Float32Stats of the replay (float32 only)
    leaks: list[str] = field(default_factory=list)  # plain floats in the state at the end

    @property
    def pd_every_step(self) -> bool:
        return self.steps > 0 and self.pd_steps == self.steps

    @property
    def finite(self) -> bool:
        return self.nonfinite_steps == 0

    def check(self, t: float, est: Any) -> None:
        """Judge the estimator's state after the step at ``t``."""
        from .float32 import covariance_check, nonfinite

        self.steps += 1
        ekf = est.ekf
        p = [[ekf.p00, ekf.p01], [ekf.p01, ekf.p11]]
        c = covariance_check(p)
        if c.pd:
            self.pd_steps += 1
        elif self.first_not_pd_s is None:
            self.first_not_pd_s = t
        self.min_pivot = min(self.min_pivot, c.pivot)
        h = est.health
        values = [est.soc_pct, est.soc_std_pct, est.cell_soc_min_pct, est.cell_soc_max_pct,
                  est.bias_a, h.capacity_ah, h.r0_growth, *est.limits_a, ekf.soc, ekf.bias,
                  ekf.v1, ekf.v2, ekf.nu_mean, ekf.p00, ekf.p01, ekf.p11, est.offset_var]
        if nonfinite(values):
            if not self.nonfinite_steps:
                self.first_nonfinite_s = t
            self.nonfinite_steps += 1

    def describe(self) -> str:
        """One line: the covariance, NaN and infinity, and for float32 what the
        binary32 operations met."""
        if self.pd_every_step:
            cov = (f"covariance positive definite after every one of {self.steps} steps "
                   f"(smallest Cholesky pivot {self.min_pivot:.2g} of its diagonal)")
        else:
            first = ("" if self.first_not_pd_s is None
                     else f", first at t = {self.first_not_pd_s:g} s")
            cov = (f"covariance NOT positive definite after {self.steps - self.pd_steps} of "
                   f"{self.steps} steps{first}")
        bad = ("no NaN or infinity" if self.finite else
               f"NaN or infinity in {self.nonfinite_steps} steps (first at t = "
               f"{self.first_nonfinite_s:g} s)")
        text = f"{self.runtime}: {cov}, {bad}"
        if self.stats is not None:
            text += (f"; {self.stats.subnormals} subnormal results, {self.stats.overflows} "
                     f"overflows, {self.stats.mixed + len(self.leaks)} doubles met")
        return text


class ReplayRun(Iterator[tuple[float, ...]]):
    """The output rows of a replay, one per trace row, and its :class:`RunSummary`
    (complete once the rows are exhausted)."""

    def __init__(self, rows: Iterator[tuple[float, ...]], summary: RunSummary) -> None:
        self._rows = rows
        self.summary = summary

    def __iter__(self) -> ReplayRun:
        return self

    def __next__(self) -> tuple[float, ...]:
        return next(self._rows)


def run_cpython(trace: Trace, model: cellmodel.CellModel, mode: str = "ekf",
                initial_soc_pct: float | None = None,
                summary: RunSummary | None = None) -> Iterator[tuple[float, ...]]:
    """The estimator in this interpreter: one output row per trace row."""
    import cellguard_fw.chemistry
    import cellguard_fw.estimator
    import cellguard_fw.soc

    fw = (cellguard_fw.chemistry, cellguard_fw.estimator, cellguard_fw.soc)
    return _replay(trace, model, mode, initial_soc_pct, fw, None, summary)


def run_float32(trace: Trace, model: cellmodel.CellModel, mode: str = "ekf",
                initial_soc_pct: float | None = None,
                summary: RunSummary | None = None) -> Iterator[tuple[float, ...]]:
    """The estimator in single precision (:mod:`.float32`): the firmware's code with
    every float a binary32; the board file (and its cell model) and the ratings as
    binary32 numbers, the readings as the board's integers."""
    from . import float32

    pkg = float32.load()
    fw = (pkg.chemistry, pkg.estimator, pkg.soc)
    return _replay(trace, model, mode, initial_soc_pct, fw, float32.to_f32, summary)


def _replay(trace: Trace, model: cellmodel.CellModel, mode: str,
            initial_soc_pct: float | None, fw: tuple[Any, Any, Any],
            convert: Any, summary: RunSummary | None) -> Iterator[tuple[float, ...]]:
    chemistry, estimator, soc = fw
    n = len(trace.cells_v[0])
    profile = chemistry.PROFILES[model.chemistry]
    board = estimator_board(model, n, mode, initial_soc_pct)
    ocv_mv = (coulomb_ocv_mv(model, _start_temp_c(trace)) if mode == "coulomb"
              else profile["ocv_mv"])
    ratings: Any = _ratings(model)
    if convert is not None:
        from .float32 import STATS

        STATS.reset()
        board, ratings = convert(board), convert(ratings)
    counter = soc.CoulombCounter(board["capacity_mah"], ocv_mv)
    est = estimator.StateEstimator(board, profile, None, counter)
    prev = trace.t_s[0]
    for k, t in enumerate(trace.t_s):
        dt_ms = max(round((t - prev) * 1000), 1) if k else 1
        prev = t
        cells_mv = [round(v * 1000) for v in trace.cells_v[k]]
        temps_dc = [round(c * 10) for c in trace.temps_c[k]] or [250]
        current_ma = round(trace.current_a[k] * 1000)
        mean_mv = sum(cells_mv) // n
        if mode == "coulomb" and initial_soc_pct is not None and k == 0:
            counter.set_from_ocv(mean_mv)
            counter.charge_mas = round(initial_soc_pct * 100) * counter.mas_per_cpct
        counter.step(dt_ms, current_ma, mean_mv)
        est.sample(dt_ms, current_ma, mean_mv)
        gated = est.gated
        try:
            est.run(cells_mv, temps_dc, ratings, False)
        except (ArithmeticError, ValueError) as exc:
            where = "" if summary is None else f" ({summary.runtime})"
            raise TraceError(f"the estimator failed at t = {t:g} s{where}: "
                             f"{type(exc).__name__}: {exc}") from None
        if summary is not None:
            summary.check(t, est)
        row = _row(t, est, est.gated - gated)
        yield row if convert is None else tuple(float(x) for x in row)
    if summary is not None and convert is not None:
        from .float32 import STATS, plain_floats

        summary.stats = STATS.snapshot()
        summary.leaks = plain_floats(est)


def _row(t: float, est: Any, gated: int) -> tuple[float, ...]:
    h = est.health
    return (t, est.soc_pct, est.soc_std_pct, est.cell_soc_min_pct, est.cell_soc_max_pct,
            h.capacity_ah, h.r0_growth, est.bias_a, *est.limits_a, float(est.balancing),
            float(gated))


_MP_SETUP = """
import json
from cellguard_fw.chemistry import PROFILES
from cellguard_fw.estimator import StateEstimator
from cellguard_fw.soc import CoulombCounter
_board = json.loads({board!r})
_profile = PROFILES[{chemistry!r}]
_counter = CoulombCounter(_board["capacity_mah"], {ocv_mv!r} or _profile["ocv_mv"])
_est = StateEstimator(_board, _profile, None, _counter)
_ratings = {ratings!r}

def _feed(rows):
    out = []
    for dt_ms, current_ma, cells_mv, temps_dc in rows:
        mean_mv = sum(cells_mv) // len(cells_mv)
        _counter.step(dt_ms, current_ma, mean_mv)
        _est.sample(dt_ms, current_ma, mean_mv)
        gated = _est.gated
        _est.run(cells_mv, temps_dc, _ratings, False)
        h = _est.health
        out.append([_est.soc_pct, _est.soc_std_pct, _est.cell_soc_min_pct,
                    _est.cell_soc_max_pct, h.capacity_ah, h.r0_growth, _est.bias_a]
                   + list(_est.limits_a) + [_est.balancing, _est.gated - gated])
    print(json.dumps(out))
"""


def run_micropython(trace: Trace, model: cellmodel.CellModel, mode: str = "ekf",
                    initial_soc_pct: float | None = None,
                    batch: int = 400) -> Iterator[tuple[float, ...]]:
    """The estimator under real MicroPython (the WebAssembly port), in batches."""
    from ..sim.runtime import MicroPythonRuntime

    if mode == "coulomb" and initial_soc_pct is not None:
        raise TraceError("--initial-soc with the coulomb baseline runs under CPython only")
    n = len(trace.cells_v[0])
    board = estimator_board(model, n, mode, initial_soc_pct)
    rt = MicroPythonRuntime()
    try:
        ocv_mv = coulomb_ocv_mv(model, _start_temp_c(trace)) if mode == "coulomb" else ()
        rt.exec(_MP_SETUP.format(board=json.dumps(board), chemistry=model.chemistry,
                                 ratings=_ratings(model), ocv_mv=ocv_mv))
        prev = trace.t_s[0]
        rows: list[list[Any]] = []
        times: list[float] = []
        for k, t in enumerate(trace.t_s):
            dt_ms = max(round((t - prev) * 1000), 1) if k else 1
            prev = t
            rows.append([dt_ms, round(trace.current_a[k] * 1000),
                         [round(v * 1000) for v in trace.cells_v[k]],
                         [round(c * 10) for c in trace.temps_c[k]] or [250]])
            times.append(t)
            if len(rows) == batch or k == len(trace.t_s) - 1:
                out = json.loads(rt.exec(f"_feed(json.loads({json.dumps(rows)!r}))"))
                for tt, values in zip(times, out, strict=True):
                    yield (tt, *map(float, values))
                rows, times = [], []
    finally:
        rt.close()


def run(trace: Trace, model: cellmodel.CellModel, mode: str = "ekf",
        initial_soc_pct: float | None = None,
        runtime: str = "cpython") -> Iterator[tuple[float, ...]]:
    """The estimator over ``trace``, one output row per row. Under ``float32`` the
    result is a :class:`ReplayRun`, whose ``summary`` says whether the covariance
    stayed positive definite and the numbers finite (``run_cpython`` with a
    :class:`RunSummary` judges a double-precision run the same way)."""
    if mode not in MODES:
        raise TraceError(f"unknown estimator {mode!r}; choose one of {', '.join(MODES)}")
    if initial_soc_pct is not None and not 0.0 <= initial_soc_pct <= 100.0:
        raise TraceError(f"initial SoC {initial_soc_pct} % is outside 0..100 %")
    if runtime == "cpython":
        return run_cpython(trace, model, mode, initial_soc_pct)
    if runtime == "float32":
        summary = RunSummary(runtime)
        return ReplayRun(run_float32(trace, model, mode, initial_soc_pct, summary), summary)
    if runtime == "micropython":
        return run_micropython(trace, model, mode, initial_soc_pct)
    raise TraceError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")


def write_csv(path: str | Path, rows: Sequence[tuple[float, ...]] | Iterator[tuple[float, ...]],
              *, inputs: Sequence[str | Path] = (), force: bool = False) -> int:
    """Write the output CSV through a temporary file (never over one of ``inputs``;
    over an existing file only with ``force``); return the rows written."""
    count = 0
    with atomic_output(path, inputs=inputs, force=force) as tmp, \
            open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(OUTPUT_COLUMNS)
        for row in rows:
            w.writerow([fixed(x, OUTPUT_DECIMALS[c]) for c, x in zip(OUTPUT_COLUMNS[:-2], row,
                                                                     strict=False)]
                       + [int(row[-2]), int(row[-1])])
            count += 1
    return count


def command(args: Any) -> int:
    """`cellguard estimate`: read, run, write, and say what was done."""
    inputs = [args.input, args.cell]
    check_output(args.out, inputs=inputs, force=args.force)
    trace = read_trace(args.input)
    model = cellmodel.load(args.cell)
    for warning in check_plausible(str(args.input), trace, model):
        print(f"cellguard: warning: {warning}", file=sys.stderr)
    n = len(trace.cells_v[0])
    rows = run(trace, model, args.estimator, args.initial_soc, args.runtime)
    gated: list[float] = []

    def counted() -> Iterator[tuple[float, ...]]:
        for row in rows:
            if row[-1]:
                gated.append(row[0])
            yield row

    count = write_csv(args.out, counted(), inputs=inputs, force=args.force)
    print(f"{count} estimates of {n} cells ({args.estimator}, {args.runtime}) written to "
          f"{args.out}")
    if gated:
        lo, hi = plausible_cell_range_v(model.chemistry)
        print(f"{len(gated)} of {count} samples gated (first at t = {gated[0]:g} s): a cell "
              f"read outside the {model.chemistry} range of {lo:g}..{hi:g} V, so those "
              f"samples updated nothing (column 'gated')")
    if args.runtime == "float32" and isinstance(rows, ReplayRun):
        print(rows.summary.describe())
    return 0


def plausible_cell_range_v(chemistry: str) -> tuple[float, float]:
    """The cell readings the firmware's estimator takes for ``chemistry`` (V)."""
    from cellguard_fw.chemistry import PROFILES
    from cellguard_fw.estimator import PLAUSIBLE_MARGIN_MV

    lo, hi = PROFILES[chemistry]["hard_cell_mv"]
    return (lo - PLAUSIBLE_MARGIN_MV) / 1000.0, (hi + PLAUSIBLE_MARGIN_MV) / 1000.0
