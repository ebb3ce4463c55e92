"""Fit a cell model (``cell.json``) from logged tests: ``cellguard characterize``.

Inputs are trace CSVs (``t_s,current_a,cell1_v[,temp1_c,...]``, current
positive when charging, the current being what flowed over the interval that
ends at ``t_s``) of two kinds, told apart by their current:

- a pulse test (HPPC-style): current steps of at least C/5 with rests after
  them, at several SoC levels;
- a low-rate test: a C/10 or slower constant-current discharge (or charge)
  over most of the SoC range.

A trace whose first current discharges starts full (100 %). One whose first
current charges starts where the low-rate discharge ended (a C/20 discharge to
the lower cut-off, a rest, a C/20 charge: the lab's usual sequence), or, with
no low-rate discharge, ends full. ``initial_soc_pct`` overrides both for every
trace. Its SoC is counted with the
capacity (given, or what the low-rate discharge delivered).
Traces are grouped by temperature (the median of ``temp1_c``; traces within
:data:`TEMP_GROUP_C` of each other are one group) and each group gives one row
of every table. Per group:

1. RC pairs: the rests after current are grouped by SoC (levels at most
   :data:`LEVEL_SPAN_PCT` wide). In a rest the model's voltage is
   ``V_rest + R1 x1(t) + R2 x2(t)``, where ``xk`` is the state of an RC pair of
   time constant ``tau_k`` and 1 ohm driven by the trace's whole current history
   (exact for piecewise-constant current) and decaying through the rest. For
   given time constants that is linear in ``R1``, ``R2`` and one ``V_rest`` per
   rest, so the fit is a variable projection: a search over a log-spaced grid
   of (tau1, tau2) pairs for the initial guess, then Levenberg-Marquardt on
   (ln tau1, ln tau2) with numerical derivatives; numpy only. Each rest
   weighs the same, its samples thinned to log-spaced times.
2. R0: at each current step of at least C/5, the voltage step between the
   samples on either side less what the RC pairs (step 1) and the OCV did over
   that interval, over the current step; the median per level.
3. OCV: from the low-rate test, the voltage less the model's overpotential
   (``R0 i`` plus both RC states, run over the whole test), or, with a low-rate
   charge and discharge, the mean of the two voltage curves; without a low-rate
   test, from the fitted rest asymptotes ``V_rest`` of the long rests (coarse).
   Made strictly rising.

Levels are interpolated linearly onto the SoC breakpoints, held beyond the
first and last level. ``docs/cell-model.md`` tells the limits.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CellguardError
from .cellmodel import CHEMISTRIES, TABLE_KEYS, CellModel

DEFAULT_SOC_GRID: tuple[float, ...] = (
    0.0, 2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0,
    65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 97.5, 100.0)
"""SoC breakpoints of a fitted model: every 5 %, every 2.5 % in the first and
last 10 % where OCV bends most."""

PULSE_MIN_C = 0.2  # a current step of at least C/5 is a pulse edge
REST_MAX_C = 0.01  # |i| below C/100 is rest
LOW_RATE_MAX_C = 0.1  # a low-rate test runs at C/10 or slower ...
LOW_RATE_MIN_SPAN_PCT = 40.0  # ... over at least this much SoC
MIN_REST_S = 10.0  # a shorter rest is not fitted
LONG_REST_S = 300.0  # RC levels need one rest at least this long (if any level has one)
MIN_REST_BEFORE_S = 300.0  # a rest this long before a low-rate test gives the OCV there
LEVEL_SPAN_PCT = 5.0  # rests and edges within this much SoC make one level
TEMP_GROUP_C = 5.0
MIN_ROWS = 20
MIN_DURATION_S = 60.0
MAX_EDGE_DT_S = 5.0  # samples further apart than this across a step give no R0
REST_SAMPLES = 150  # samples kept of one rest (log-spaced in time)
TAU_MIN_S = 1.0
TAU_MAX_S = 20000.0


class CharacterizeError(CellguardError):
    """Inputs that cannot give a cell model."""


# -- traces ------------------------------------------------------------------------


@dataclass
class Trace:
    name: str
    t: np.ndarray
    i: np.ndarray
    v: np.ndarray
    temp: np.ndarray | None
    true_soc: np.ndarray | None = None
    soc: np.ndarray = field(default_factory=lambda: np.zeros(0))  # counted, percent
    column: str = "cell1_v"  # the voltage column read
    soc_origin: str = ""  # where the counted SoC starts, and why (for messages)

    def __post_init__(self) -> None:
        self.dt = np.diff(self.t, prepend=self.t[0])  # the interval ending at each sample
        # Runs of equal current (samples p..q): the interval they cover
        # (t[p-1], t[q]], their current and last sample, for rc_states.
        change = np.flatnonzero(np.diff(self.i[1:]) != 0) + 2  # first sample of a new run
        starts = np.concatenate(([1], change)) if len(self.t) > 1 else np.zeros(0, int)
        ends = np.concatenate((change - 1, [len(self.t) - 1])) if len(self.t) > 1 else starts
        self.run_lo = self.t[starts - 1]
        self.run_hi = self.t[ends]
        self.run_i = self.i[starts]
        self.run_first = starts

    @property
    def temperature_c(self) -> float:
        return float(np.median(self.temp)) if self.temp is not None else 25.0


def read_trace(path: str | Path, cell: int = 1) -> Trace:
    """Read a trace CSV; CharacterizeError says what is wrong with it."""
    p = Path(path)
    vcol = f"cell{cell}_v"
    try:
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise CharacterizeError(f"{p}: empty file")
            header = [h.strip() for h in header]
            missing = [c for c in ("t_s", "current_a", vcol) if c not in header]
            if missing:
                raise CharacterizeError(
                    f"{p}: missing column {', '.join(missing)} (has: {', '.join(header)}); "
                    f"a trace needs t_s, current_a and {vcol} (temp1_c for the temperature)")
            cols = {name: header.index(name) for name in
                    ("t_s", "current_a", vcol, "temp1_c", "true_soc_pct") if name in header}
            data: dict[str, list[float]] = {name: [] for name in cols}
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                for name, k in cols.items():
                    try:
                        x = float(row[k])
                    except (IndexError, ValueError):
                        cell_text = row[k] if k < len(row) else ""
                        raise CharacterizeError(
                            f"{p}:{lineno}: {name} is not a number: {cell_text!r}") from None
                    if not math.isfinite(x):
                        raise CharacterizeError(f"{p}:{lineno}: {name} is {x}")
                    data[name].append(x)
    except OSError as exc:
        raise CharacterizeError(f"cannot read {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CharacterizeError(f"{p}: not a text CSV file") from None
    t = np.array(data["t_s"])
    bad = np.flatnonzero(np.diff(t) <= 0)
    if len(bad):
        raise CharacterizeError(f"{p}:{bad[0] + 3}: t_s must rise: {t[bad[0] + 1]:g} "
                                f"follows {t[bad[0]]:g}")
    if len(t) < MIN_ROWS or t[-1] - t[0] < MIN_DURATION_S:
        raise CharacterizeError(
            f"{p}: too short ({len(t)} rows over {t[-1] - t[0] if len(t) else 0:g} s); a "
            f"trace needs at least {MIN_ROWS} rows over {MIN_DURATION_S:g} s")
    return Trace(
        name=str(p), t=t, i=np.array(data["current_a"]), v=np.array(data[vcol]),
        temp=np.array(data["temp1_c"]) if "temp1_c" in data else None,
        true_soc=np.array(data["true_soc_pct"]) if "true_soc_pct" in data else None,
        column=vcol)


def _first_current_sign(tr: Trace, threshold_a: float) -> float:
    moving = np.flatnonzero(np.abs(tr.i) > threshold_a)
    return float(np.sign(tr.i[moving[0]])) if len(moving) else -1.0


def count_soc(tr: Trace, capacity_ah: float, initial_soc_pct: float | None = None,
              empty_soc_pct: float | None = None) -> None:
    """Fill ``tr.soc`` by counting charge from ``initial_soc_pct``; by default from
    100 % if the trace first discharges, else from ``empty_soc_pct`` if given,
    else so that it ends at 100 %."""
    ah = np.cumsum(tr.i * tr.dt) / 3600.0
    soc = 100.0 * ah / capacity_ah
    if initial_soc_pct is not None:
        tr.soc = initial_soc_pct + soc
        tr.soc_origin = "as given"
    elif _first_current_sign(tr, REST_MAX_C * capacity_ah) < 0:
        tr.soc = 100.0 + soc
        tr.soc_origin = "full, as a trace that first discharges"
    elif empty_soc_pct is not None:
        tr.soc = empty_soc_pct + soc
        tr.soc_origin = "where the low-rate discharge ended, as a trace that first charges"
    else:
        tr.soc = 100.0 - soc[-1] + soc
        tr.soc_origin = "so that it ends full, as a trace that first charges"


SOC_SLACK_PCT = 5.0
"""How far beyond 0..100 % a counted SoC may go (capacity and sensor error)."""
FULL_CYCLE_SPAN_PCT = 50.0
"""One run of pulse-sized current over this much SoC is a cycle, not a pulse."""


def _longest_run(tr: Trace, capacity_ah: float) -> tuple[float, float]:
    """(C-rate, SoC span %) of the run of steady current of at least C/5 that moves
    the SoC most."""
    best = (0.0, 0.0)
    for lo, hi, i in zip(tr.run_lo, tr.run_hi, tr.run_i, strict=True):
        if abs(i) >= PULSE_MIN_C * capacity_ah:
            span = 100.0 * abs(i) * (hi - lo) / 3600.0 / capacity_ah
            if span > best[1]:
                best = (abs(i) / capacity_ah, span)
    return best


def check_soc_span(tr: Trace, capacity_ah: float) -> None:
    """Refuse a trace whose counted SoC leaves 0..100 % (give or take
    SOC_SLACK_PCT), naming the likely cause: a full cycle where a pulse test
    belongs, or a wrong capacity or start."""
    top, bottom = float(np.max(tr.soc)), float(np.min(tr.soc))
    if bottom >= -SOC_SLACK_PCT and top <= 100.0 + SOC_SLACK_PCT:
        return
    worst = top if top > 100.0 + SOC_SLACK_PCT else bottom
    counted = f"counted with {capacity_ah:.4g} Ah from {tr.soc[0]:.1f} %, {tr.soc_origin}"
    c_rate, span = _longest_run(tr, capacity_ah)
    if span >= FULL_CYCLE_SPAN_PCT:
        raise CharacterizeError(
            f"{tr.name}: the pulse test's SoC went to {worst:.0f} % ({counted}): this looks "
            f"like a full cycle (one {c_rate:.2g}C run over {span:.0f} % SoC), not an HPPC "
            f"pulse test (pulses of at least C/5 with rests, about 10 % SoC apart)")
    raise CharacterizeError(
        f"{tr.name}: its SoC went to {worst:.0f} % ({counted}): is the capacity "
        "(--capacity-ah) or the start (--initial-soc) right?")


# -- what a trace holds --------------------------------------------------------------


@dataclass
class Rest:
    trace: Trace
    anchor: int  # the last sample with current before the rest
    end: int  # the rest's last sample (inclusive)

    @property
    def soc(self) -> float:
        return float(self.trace.soc[self.anchor])

    @property
    def duration_s(self) -> float:
        return float(self.trace.t[self.end] - self.trace.t[self.anchor])


def find_rests(tr: Trace, capacity_ah: float) -> list[Rest]:
    """Rests of at least MIN_REST_S after current flowed."""
    resting = np.abs(tr.i) < REST_MAX_C * capacity_ah
    rests: list[Rest] = []
    n = len(tr.t)
    k = 0
    while k < n:
        if not resting[k]:
            k += 1
            continue
        start = k
        while k < n and resting[k]:
            k += 1
        end = k - 1
        if start == 0 or not np.any(~resting[:start]):
            continue  # nothing flowed before it: nothing relaxes
        if tr.t[end] - tr.t[start - 1] >= MIN_REST_S and end - start >= 3:
            rests.append(Rest(tr, start - 1, end))
    return rests


def find_edges(tr: Trace, capacity_ah: float) -> np.ndarray:
    """Indices n where the current stepped by at least C/5 between n-1 and n."""
    di = np.abs(np.diff(tr.i))
    dt = np.diff(tr.t)
    return np.flatnonzero((di >= PULSE_MIN_C * capacity_ah) & (dt <= MAX_EDGE_DT_S)) + 1


@dataclass
class LowRate:
    trace: Trace
    start: int
    end: int  # inclusive
    sign: float  # -1 discharge, +1 charge


def find_low_rate(tr: Trace, capacity_ah: float) -> list[LowRate]:
    """Runs of near-constant current between C/100 and C/10 over a wide SoC span."""
    i = tr.i
    lo, hi = REST_MAX_C * capacity_ah, LOW_RATE_MAX_C * capacity_ah * 1.05
    ok = (np.abs(i) >= lo) & (np.abs(i) <= hi)
    found = []
    n = len(i)
    k = 0
    while k < n:
        if not ok[k]:
            k += 1
            continue
        start = k
        sign = np.sign(i[k])
        while k < n and ok[k] and np.sign(i[k]) == sign:
            k += 1
        end = k - 1
        if abs(tr.soc[end] - tr.soc[start]) >= LOW_RATE_MIN_SPAN_PCT:
            found.append(LowRate(tr, start, end, float(sign)))
    return found


# -- RC states -----------------------------------------------------------------------


def rc_states(tr: Trace, idx: np.ndarray, tau: float) -> np.ndarray:
    """The state (V) of an RC pair of ``tau`` and 1 ohm at samples ``idx``, driven by
    the trace's current from its start (current held over each interval).

    Exact: a current i held over (t0, t1] adds i (e^-(ta-t1)/tau - e^-(ta-t0)/tau)
    at ta, so a run of equal current adds that over its whole span.
    """
    out = np.empty(len(idx))
    for k, a in enumerate(idx):
        ta = tr.t[a]
        last = int(np.searchsorted(tr.run_first, a, side="right"))  # runs starting <= a
        first = int(np.searchsorted(tr.run_hi[:last], ta - 40.0 * tau))
        lo = tr.run_lo[first:last]
        hi = np.minimum(tr.run_hi[first:last], ta)
        out[k] = float(np.sum(tr.run_i[first:last]
                              * (np.exp(-(ta - hi) / tau) - np.exp(-(ta - lo) / tau))))
    return out


def simulate_rc(t: np.ndarray, i: np.ndarray, r: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Voltage (V) over an RC pair whose R and tau may change per sample."""
    out = np.empty(len(t))
    x = 0.0
    prev = t[0]
    for n in range(len(t)):
        dt = t[n] - prev
        prev = t[n]
        decay = math.exp(-dt / tau[n])
        x = x * decay + r[n] * (1.0 - decay) * i[n]
        out[n] = x
    return out


# -- the RC fit ----------------------------------------------------------------------


@dataclass
class RcFit:
    soc: float
    r1: float
    tau1: float
    r2: float
    tau2: float
    rms_v: float
    rests: int
    asymptotes: list[tuple[float, float, float]]  # (soc, V_rest, rest duration s)


class _LevelData:
    """The rests of one level, thinned, with their anchors."""

    def __init__(self, rests: list[Rest]) -> None:
        self.rests = rests
        self.rows: list[tuple[np.ndarray, np.ndarray, float]] = []  # (dt since anchor, v, w)
        for r in rests:
            tr = r.trace
            n = np.arange(r.anchor + 1, r.end + 1)
            since = tr.t[n] - tr.t[r.anchor]
            if len(n) > REST_SAMPLES:
                keep = np.unique(np.round(np.geomspace(1, len(n), REST_SAMPLES)).astype(int) - 1)
                n, since = n[keep], since[keep]
            self.rows.append((since, tr.v[n], 1.0 / math.sqrt(len(n))))
        self._x_cache: dict[tuple[int, float], float] = {}

    def anchor_state(self, k: int, tau: float) -> float:
        key = (k, tau)
        x = self._x_cache.get(key)
        if x is None:
            r = self.rests[k]
            x = float(rc_states(r.trace, np.array([r.anchor]), tau)[0])
            self._x_cache[key] = x
        return x

    def solve(self, tau1: float, tau2: float) -> tuple[np.ndarray, np.ndarray]:
        """Linear least squares for given taus: (params [R1, R2, V_rest...], weighted
        residuals)."""
        n_rests = len(self.rests)
        blocks, targets = [], []
        for k, (since, v, w) in enumerate(self.rows):
            a = np.zeros((len(since), 2 + n_rests))
            a[:, 0] = self.anchor_state(k, tau1) * np.exp(-since / tau1)
            a[:, 1] = self.anchor_state(k, tau2) * np.exp(-since / tau2)
            a[:, 2 + k] = 1.0
            blocks.append(a * w)
            targets.append(v * w)
        a_all = np.vstack(blocks)
        b_all = np.concatenate(targets)
        coef, *_ = np.linalg.lstsq(a_all, b_all, rcond=None)
        return coef, a_all @ coef - b_all


def fit_rc_level(rests: list[Rest], tau_min: float, tau_max: float) -> RcFit:
    """Two RC pairs shared by the rests of one level (variable projection)."""
    data = _LevelData(rests)
    grid = np.geomspace(tau_min, tau_max, 20)
    best: tuple[float, float, float] | None = None
    for a, t1 in enumerate(grid):
        for t2 in grid[a + 1:]:
            if t2 < 2.0 * t1:
                continue
            coef, res = data.solve(float(t1), float(t2))
            if coef[0] < 0 or coef[1] < 0:
                continue
            sse = float(res @ res)
            if best is None or sse < best[0]:
                best = (sse, float(t1), float(t2))
    if best is None:  # nothing fits with both resistances positive: one pair
        t1 = float(grid[len(grid) // 3])
        best = (math.inf, t1, t1 * 10.0)
    theta = np.log([best[1], best[2]])
    lo, hi = math.log(tau_min), math.log(tau_max)

    def residual(th: np.ndarray) -> np.ndarray:
        t1, t2 = math.exp(th[0]), math.exp(th[1])
        return data.solve(t1, t2)[1]

    res = residual(theta)
    sse = float(res @ res)
    lam = 1e-2
    for _ in range(40):
        jac = np.empty((len(res), 2))
        for j in range(2):
            step = np.zeros(2)
            step[j] = 1e-4
            jac[:, j] = (residual(theta + step) - residual(theta - step)) / 2e-4
        g = jac.T @ res
        h = jac.T @ jac
        improved = False
        while lam < 1e8:
            delta = -np.linalg.solve(h + lam * np.diag(np.diag(h) + 1e-12), g)
            cand = np.clip(theta + delta, lo, hi)
            cand[1] = max(cand[1], cand[0] + math.log(1.05))
            cres = residual(cand)
            csse = float(cres @ cres)
            if csse < sse:
                improved = abs(sse - csse) > 1e-12 * max(sse, 1e-30)
                theta, res, sse = cand, cres, csse
                lam = max(lam / 5.0, 1e-9)
                break
            lam *= 5.0
        if not improved:
            break
    t1, t2 = math.exp(theta[0]), math.exp(theta[1])
    coef, res = data.solve(t1, t2)
    r1, r2 = float(coef[0]), float(coef[1])
    if r1 < 0 or r2 < 0:  # degenerate: keep the grid's best (both positive)
        t1, t2 = best[1], best[2]
        coef, res = data.solve(t1, t2)
        r1, r2 = max(float(coef[0]), 0.0), max(float(coef[1]), 0.0)
    # Unweighted RMS of the fit over the kept samples.
    sq, count = 0.0, 0
    for k, (since, v, _w) in enumerate(data.rows):
        model = (coef[2 + k] + r1 * data.anchor_state(k, t1) * np.exp(-since / t1)
                 + r2 * data.anchor_state(k, t2) * np.exp(-since / t2))
        sq += float(np.sum((model - v) ** 2))
        count += len(v)
    socs = [r.soc for r in rests]
    asym = [(r.soc, float(coef[2 + k]), r.duration_s) for k, r in enumerate(rests)]
    return RcFit(float(np.mean(socs)), r1, t1, r2, t2, math.sqrt(sq / count), len(rests), asym)


def _levels(items: list[Any], soc_of: Callable[[Any], float]) -> list[list[Any]]:
    """Group items by SoC: sorted, a new group once one spans LEVEL_SPAN_PCT."""
    ordered = sorted(items, key=soc_of)
    groups: list[list[Any]] = []
    for it in ordered:
        if groups and soc_of(it) - soc_of(groups[-1][0]) <= LEVEL_SPAN_PCT:
            groups[-1].append(it)
        else:
            groups.append([it])
    return groups


def _on_grid(socs: Sequence[float], values: Sequence[float], grid: np.ndarray) -> np.ndarray:
    """Linear in SoC between levels, held beyond the first and last."""
    order = np.argsort(socs)
    return np.interp(grid, np.asarray(socs)[order], np.asarray(values)[order])


# -- one temperature ---------------------------------------------------------------


@dataclass
class GroupFit:
    temp_c: float
    traces: list[str]
    rc: list[RcFit]
    r0_levels: list[tuple[float, float, int]]  # (soc, median R0, edges)
    ocv_source: str
    tables: dict[str, np.ndarray]


def _fit_group(traces: list[Trace], capacity_ah: float, grid: np.ndarray,
               temp_c: float) -> GroupFit:
    rests: list[Rest] = []
    edges: list[tuple[Trace, int]] = []
    low: list[LowRate] = []
    for tr in traces:
        tr_edges = find_edges(tr, capacity_ah)
        tr_rests = find_rests(tr, capacity_ah)
        tr_low = find_low_rate(tr, capacity_ah)
        if len(tr_edges) and tr_rests:
            rests += tr_rests
            edges += [(tr, int(n)) for n in tr_edges]
        elif not tr_low:
            raise CharacterizeError(
                f"{tr.name}: neither a pulse test (current steps of at least C/5 = "
                f"{PULSE_MIN_C * capacity_ah:.3g} A with rests of {MIN_REST_S:g} s or more "
                f"after them) nor a low-rate test (C/10 = {LOW_RATE_MAX_C * capacity_ah:.3g} A "
                f"or less over {LOW_RATE_MIN_SPAN_PCT:g} % SoC or more)")
        low += tr_low
    names = ", ".join(tr.name for tr in traces)
    if not rests:
        raise CharacterizeError(
            f"no pulses at {temp_c:.1f} degC ({names}): characterize needs a pulse test "
            f"(HPPC-style: current steps of at least C/5 = {PULSE_MIN_C * capacity_ah:.3g} A "
            f"with rests after them) at every temperature")
    # 1. RC pairs per level.
    min_dt = min(float(np.min(np.diff(tr.t))) for tr in traces)
    tau_min = max(TAU_MIN_S, min_dt)
    longest = max(r.duration_s for r in rests)
    tau_max = min(TAU_MAX_S, max(2.0 * longest, 20.0 * tau_min))
    rest_levels = _levels(rests, lambda r: r.soc)
    # A level with only short rests (the top one of an HPPC test: pulses but no
    # long rest) cannot place the slow pair: its neighbours' values hold there.
    long_levels = [g for g in rest_levels if max(r.duration_s for r in g) >= LONG_REST_S]
    rc = [fit_rc_level(group, tau_min, tau_max) for group in (long_levels or rest_levels)]
    rc_socs = [f.soc for f in rc]
    tables: dict[str, np.ndarray] = {}
    for key, attr in (("r1_ohm", "r1"), ("tau1_s", "tau1"), ("r2_ohm", "r2"),
                      ("tau2_s", "tau2")):
        tables[key] = _on_grid(rc_socs, [getattr(f, attr) for f in rc], grid)

    def rc_at(soc: float) -> tuple[float, float, float, float]:
        return tuple(float(np.interp(soc, grid, tables[k]))  # type: ignore[return-value]
                     for k in ("r1_ohm", "tau1_s", "r2_ohm", "tau2_s"))

    # 2. R0 per edge, less the RC pairs' (and then the OCV's) move over the step.
    def r0_levels(ocv_slope: Callable[[float], float] | None
                  ) -> tuple[list[tuple[float, float, int]], np.ndarray]:
        per_edge: list[tuple[float, float]] = []
        for tr, n in edges:
            r1, tau1, r2, tau2 = rc_at(float(tr.soc[n]))
            dv = tr.v[n] - tr.v[n - 1]
            for r, tau in ((r1, tau1), (r2, tau2)):
                x = rc_states(tr, np.array([n - 1, n]), tau)
                dv -= r * (x[1] - x[0])
            if ocv_slope is not None:
                dv -= ocv_slope(float(tr.soc[n])) * (tr.soc[n] - tr.soc[n - 1])
            di = tr.i[n] - tr.i[n - 1]
            per_edge.append((float(tr.soc[n]), float(dv / di)))
        levels = [(float(np.mean([s for s, _ in g])), float(np.median([r for _, r in g])),
                   len(g)) for g in _levels(per_edge, lambda e: e[0])]
        return levels, _on_grid([s for s, _, _ in levels], [r for _, r, _ in levels], grid)

    levels, tables["r0_ohm"] = r0_levels(None)
    # 3. OCV.
    ocv, source = _fit_ocv(low, rc, tables, grid, traces, capacity_ah)
    tables["ocv_v"] = ocv
    slope = np.gradient(ocv, grid)  # V per % SoC

    def ocv_slope(soc: float) -> float:
        return float(np.interp(soc, grid, slope))

    levels, tables["r0_ohm"] = r0_levels(ocv_slope)
    if np.any(tables["r0_ohm"] <= 0):
        raise CharacterizeError(
            f"the fitted R0 at {temp_c:.1f} degC is not positive (voltage steps the wrong way "
            "for the current steps): is current positive when charging?")
    return GroupFit(temp_c, [tr.name for tr in traces], rc, levels, source, tables)


def _fit_ocv(low: list[LowRate], rc: list[RcFit], tables: dict[str, np.ndarray],
             grid: np.ndarray, traces: list[Trace], capacity_ah: float
             ) -> tuple[np.ndarray, str]:
    if low:
        discharge = [seg for seg in low if seg.sign < 0]
        charge = [seg for seg in low if seg.sign > 0]
        both = bool(discharge) and bool(charge)
        per_dir: list[np.ndarray] = []
        for segs in (discharge, charge):
            if not segs:
                continue
            values = []
            for seg in segs:
                tr = seg.trace
                sl = slice(0, seg.end + 1)  # from the start, so the RC states are right
                soc, v = tr.soc[sl], tr.v[sl]
                if not both:
                    v = v - _overpotential(tr.t[sl], tr.i[sl], soc, tables, grid)
                values.append(_curve_on_grid(soc[seg.start:], v[seg.start:], grid))
            per_dir.append(np.mean(values, axis=0))
        ocv = np.mean(per_dir, axis=0)
        how = ("mean of the low-rate charge and discharge voltages" if both else
               "low-rate " + ("discharge" if discharge else "charge")
               + " less the fitted R0 and RC overpotential")
        # A rest before the low-rate current is the OCV where it ends; one at
        # (within 0.5 % of) full or empty pins the curve's end there, where the
        # curve is steepest and the low-rate voltages say least.
        pinned = set()
        for seg in low:
            tr = seg.trace
            k = seg.start - 1
            moving = np.flatnonzero(np.abs(tr.i[: seg.start]) >= REST_MAX_C * capacity_ah)
            first_rest = int(moving[-1]) + 1 if len(moving) else 0
            if k < 0 or tr.t[k] - tr.t[first_rest] < MIN_REST_BEFORE_S:
                continue
            for end in (0, len(grid) - 1):
                if abs(float(tr.soc[k]) - grid[end]) <= 0.5:
                    ocv[end] = float(tr.v[k])
                    pinned.add(f"{grid[end]:g} %")
        if pinned:
            how += f"; at {' and '.join(sorted(pinned))} the rested voltage before it"
    else:
        pts = [(s, v) for f in rc for s, v, d in f.asymptotes if d >= 300.0]
        for tr in traces:  # a rested start
            pts.append((float(tr.soc[0]), float(tr.v[0])))
        if len(pts) < 3:
            raise CharacterizeError(
                "no low-rate test and too few long rests (300 s or more) to place the OCV "
                "curve; give a C/20 discharge as another --input")
        socs = np.array([p[0] for p in pts])
        vs = np.array([p[1] for p in pts])
        order = np.argsort(socs)
        ocv = np.interp(grid, socs[order], vs[order])
        how = f"{len(pts)} rest asymptotes of the pulse test (no low-rate test: coarse)"
    ocv = ocv.copy()
    for k in range(1, len(ocv)):  # strictly rising
        ocv[k] = max(ocv[k], ocv[k - 1] + 1e-4)
    return ocv, how


def _overpotential(t: np.ndarray, i: np.ndarray, soc: np.ndarray,
                   tables: dict[str, np.ndarray], grid: np.ndarray) -> np.ndarray:
    def at(key: str) -> np.ndarray:
        return np.interp(soc, grid, tables[key])

    return (at("r0_ohm") * i + simulate_rc(t, i, at("r1_ohm"), at("tau1_s"))
            + simulate_rc(t, i, at("r2_ohm"), at("tau2_s")))


def _curve_on_grid(soc: np.ndarray, v: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A measured V(SoC) at the grid points: smoothed over 0.1 % SoC, linear in
    between, extrapolated linearly from the last 1 % beyond the data."""
    order = np.argsort(soc)
    s, y = soc[order], v[order]
    step = float(np.median(np.abs(np.diff(s)))) or 1e-3
    k = max(1, min(len(s) // 10, round(0.1 / step)))
    if k > 1:
        kernel = np.ones(k) / k
        y = np.convolve(y, kernel, mode="valid")
        s = np.convolve(s, kernel, mode="valid")
    out = np.interp(grid, s, y)
    for end in (0, 1):
        sel = (s <= s[0] + 1.0) if end == 0 else (s >= s[-1] - 1.0)
        if np.count_nonzero(sel) >= 2 and np.ptp(s[sel]) > 0:
            a, b = np.polyfit(s[sel], y[sel], 1)
            outside = grid < s[0] if end == 0 else grid > s[-1]
            out[outside] = a * grid[outside] + b
    return out


# -- the whole fit -----------------------------------------------------------------


@dataclass
class Report:
    capacity_ah: float
    capacity_source: str
    groups: list[GroupFit]
    chemistry: str
    chemistry_guessed: bool
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        guessed = " (guessed; --chemistry sets it)" if self.chemistry_guessed else ""
        out = [f"capacity {self.capacity_ah:.4g} Ah ({self.capacity_source}); chemistry "
               f"{self.chemistry}{guessed}"]
        for g in self.groups:
            out.append(f"{g.temp_c:.1f} degC: {', '.join(g.traces)}")
            out.append(f"  OCV: {g.ocv_source}")
            out.append("  R0 levels  " + "  ".join(
                f"{s:5.1f}%: {r * 1000:.2f} mOhm ({n})" for s, r, n in g.r0_levels))
            out.append("  RC levels:    SoC   R1 mOhm  tau1 s   R2 mOhm  tau2 s   fit rms mV")
            for f in g.rc:
                out.append(f"            {f.soc:6.1f}  {f.r1 * 1000:8.3f} {f.tau1:7.1f}  "
                           f"{f.r2 * 1000:8.3f} {f.tau2:7.1f}   {f.rms_v * 1000:.2f}")
        return out


def _guess_chemistry(ocv: np.ndarray, grid: np.ndarray) -> str:
    mid = float(np.interp(50.0, grid, ocv))
    if mid < 3.45 and ocv[-1] < 3.8:
        return "lfp"
    if ocv[0] < 2.2:
        return "sodium_ion"
    return "nmc"


def characterize(traces: Sequence[Trace], *, chemistry: str | None = None,
                 capacity_ah: float | None = None, name: str | None = None,
                 initial_soc_pct: float | None = None,
                 soc_grid: Sequence[float] = DEFAULT_SOC_GRID) -> tuple[CellModel, Report]:
    """Fit a cell model from pulse tests and low-rate tests (see the module text)."""
    if not traces:
        raise CharacterizeError("no input traces")
    if chemistry is not None and chemistry not in CHEMISTRIES:
        raise CharacterizeError(f"chemistry must be one of {', '.join(CHEMISTRIES)}, "
                                f"not {chemistry!r}")
    grid = np.array(soc_grid, dtype=float)
    if grid[0] != 0 or grid[-1] != 100 or np.any(np.diff(grid) <= 0):
        raise CharacterizeError("SoC breakpoints must rise strictly from 0 to 100")
    if initial_soc_pct is not None and not 0.0 <= initial_soc_pct <= 100.0:
        raise CharacterizeError(f"the initial SoC must be between 0 and 100 %, not "
                                f"{initial_soc_pct:g}")
    warnings = check_units(traces, chemistry, capacity_ah)
    # Capacity: given, or what a low-rate discharge from full delivered.
    if capacity_ah is not None:
        if not capacity_ah > 0:
            raise CharacterizeError(f"capacity must be above 0 Ah, not {capacity_ah}")
        cap, cap_source = capacity_ah, "given"
    else:
        cap, cap_source = _measured_capacity(traces)
    for tr in traces:
        count_soc(tr, cap, initial_soc_pct)
    # Where "empty" is: the end of the low-rate discharge (from full).
    ends = [float(tr.soc[seg.end]) for tr in traces for seg in find_low_rate(tr, cap)
            if seg.sign < 0 and tr.soc[0] == 100.0]
    if ends and initial_soc_pct is None:
        for tr in traces:
            if _first_current_sign(tr, REST_MAX_C * cap) > 0:
                count_soc(tr, cap, empty_soc_pct=float(np.mean(ends)))
    for tr in traces:
        check_soc_span(tr, cap)
    # Temperature groups.
    ordered = sorted(traces, key=lambda tr: tr.temperature_c)
    groups: list[list[Trace]] = []
    for tr in ordered:
        if groups and tr.temperature_c - groups[-1][0].temperature_c <= TEMP_GROUP_C:
            groups[-1].append(tr)
        else:
            groups.append([tr])
    fits = []
    for g in groups:
        temp = float(np.mean([tr.temperature_c for tr in g]))
        fits.append(_fit_group(g, cap, grid, temp))
    guessed = chemistry is None
    chem = chemistry or _guess_chemistry(fits[len(fits) // 2].tables["ocv_v"], grid)
    rounding = {"ocv_v": 5, "r0_ohm": 7, "r1_ohm": 7, "r2_ohm": 7, "tau1_s": 2, "tau2_s": 2}
    tables: dict[str, list[list[float]]] = {k: [] for k in TABLE_KEYS}
    for f in fits:
        tau1 = np.maximum(f.tables["tau1_s"], TAU_MIN_S)
        tau2 = np.maximum(f.tables["tau2_s"], tau1 * 1.05)
        f.tables["tau1_s"], f.tables["tau2_s"] = tau1, tau2
        for k in TABLE_KEYS:
            tables[k].append([round(float(x), rounding[k]) for x in f.tables[k]])
    for row1, row2 in zip(tables["tau1_s"], tables["tau2_s"], strict=True):
        for j in range(len(row2)):  # still above after rounding
            row2[j] = max(row2[j], round(row1[j] + 0.01, 2))
    files = "; ".join(f"{f.temp_c:.1f} degC: " + ", ".join(Path(n).name for n in f.traces)
                      for f in fits)
    model = CellModel(
        name=name or f"fitted {chem} cell",
        chemistry=chem,
        capacity_ah=round(cap, 6),
        soc_pct=[float(x) for x in grid],
        temps_c=[round(f.temp_c, 2) for f in fits],
        source=(f"cellguard characterize from {files}; capacity {cap_source}; OCV: "
                + " / ".join(sorted({f.ocv_source for f in fits}))
                + "; R0 from the voltage step at each current step, two RC pairs fitted to "
                  "the rests after current (variable projection)"),
        **tables,
    )
    return model, Report(cap, cap_source, fits, chem, guessed, warnings)


def check_units(traces: Sequence[Trace], chemistry: str | None,
                capacity_ah: float | None) -> list[str]:
    """Refuse traces in the wrong units (:mod:`.plausible`); return warnings."""
    from . import plausible

    warnings: list[str] = []
    for tr in traces:
        try:
            warnings += plausible.check_cell_volts(tr.name, tr.column, list(tr.v), chemistry)
            plausible.check_current(tr.name, tr.i, capacity_ah)
            if tr.temp is not None:
                plausible.check_temps(tr.name, "temp1_c", list(tr.temp))
        except plausible.ImplausibleTrace as exc:
            raise CharacterizeError(str(exc)) from None
    return warnings


def _measured_capacity(traces: Sequence[Trace]) -> tuple[float, str]:
    for tr in traces:
        # A provisional SoC (any capacity) to find a low-rate discharge by its span.
        total = float(np.sum(np.maximum(-tr.i, 0.0) * tr.dt) / 3600.0)
        if total <= 0:
            continue
        count_soc(tr, total, 100.0)
        for seg in find_low_rate(tr, total):
            if seg.sign < 0 and _first_current_sign(tr, REST_MAX_C * total) < 0:
                ah = float(-np.sum(tr.i[: seg.end + 1] * tr.dt[: seg.end + 1]) / 3600.0)
                return ah, f"discharged by the low-rate test {Path(tr.name).name}"
    raise CharacterizeError("give the capacity (--capacity-ah): no low-rate discharge from "
                            "full among the inputs to measure it from")


# -- replaying a model over a trace -------------------------------------------------


def simulate(model: CellModel, tr: Trace, initial_soc_pct: float) -> np.ndarray:
    """The model's terminal voltage over a trace's current and temperature,
    its SoC counted from ``initial_soc_pct`` with the model's capacity."""
    temps = tr.temp if tr.temp is not None else np.full(len(tr.t), 25.0)
    cap = model.capacity_ah
    out = np.empty(len(tr.t))
    soc = initial_soc_pct
    x1 = x2 = 0.0
    prev = tr.t[0]
    for n in range(len(tr.t)):
        dt = tr.t[n] - prev
        prev = tr.t[n]
        i = float(tr.i[n])
        soc += 100.0 * i * dt / 3600.0 / cap
        p = model.params(soc, float(temps[n]))
        d1, d2 = math.exp(-dt / p.tau1_s), math.exp(-dt / p.tau2_s)
        x1 = x1 * d1 + p.r1_ohm * (1.0 - d1) * i
        x2 = x2 * d2 + p.r2_ohm * (1.0 - d2) * i
        out[n] = p.ocv_v + p.r0_ohm * i + x1 + x2
    return out


@dataclass
class Replay:
    trace: str
    rms_mv: float
    max_mv: float
    rows: int
    initial_soc_pct: float

    def line(self) -> str:
        return (f"{Path(self.trace).name}: voltage error RMS {self.rms_mv:.1f} mV, max "
                f"{self.max_mv:.1f} mV over {self.rows} samples (from {self.initial_soc_pct:.1f} "
                "% SoC)")


def replay(model: CellModel, tr: Trace, initial_soc_pct: float | None = None) -> Replay:
    """How well ``model`` reproduces a trace: the voltage error of :func:`simulate`
    (from the trace's true_soc_pct at its start if it has one)."""
    if initial_soc_pct is not None:
        origin = "as given"
    elif tr.true_soc is not None:
        initial_soc_pct, origin = float(tr.true_soc[0]), "its true_soc_pct"
    else:
        count_soc(tr, model.capacity_ah)
        initial_soc_pct, origin = float(tr.soc[0]), tr.soc_origin
    soc = initial_soc_pct + 100.0 * np.cumsum(tr.i * tr.dt) / 3600.0 / model.capacity_ah
    worst = float(np.max(soc)) if np.max(soc) - 100.0 > -np.min(soc) else float(np.min(soc))
    if not -SOC_SLACK_PCT <= worst <= 100.0 + SOC_SLACK_PCT:
        raise CharacterizeError(
            f"cannot replay {tr.name}: from {initial_soc_pct:.1f} % SoC ({origin}) with the "
            f"model's {model.capacity_ah:.4g} Ah its SoC would reach {worst:.1f} %; give the "
            "trace a true_soc_pct column, or one that starts with a discharge from full")
    err = simulate(model, tr, initial_soc_pct) - tr.v
    return Replay(tr.name, float(np.sqrt(np.mean(err**2)) * 1000.0),
                  float(np.max(np.abs(err)) * 1000.0), len(err), initial_soc_pct)


def run(inputs: Sequence[str], out: str, *, chemistry: str | None = None,
        capacity_ah: float | None = None, name: str | None = None,
        initial_soc_pct: float | None = None, cell: int = 1,
        validate: Sequence[str] = (), force: bool = False
        ) -> tuple[CellModel, Report, list[Replay]]:
    """What ``cellguard characterize`` does: read, fit, write, replay.

    ``out`` is checked before any work: never one of the traces (inputs or
    ``validate``), an existing file only with ``force``."""
    from ..files import check_output
    from .cellmodel import save

    sources = [*inputs, *validate]
    check_output(out, inputs=sources, force=force)
    traces = [read_trace(p, cell) for p in inputs]
    checks = [read_trace(p, cell) for p in validate]  # a bad one fails before the fit
    model, report = characterize(traces, chemistry=chemistry, capacity_ah=capacity_ah,
                                 name=name, initial_soc_pct=initial_soc_pct)
    replays = [replay(model, tr) for tr in checks]  # one that cannot be replayed: no file
    save(model, out, inputs=sources, force=force)
    return model, report, replays


def command(args: Any) -> int:
    """``cellguard characterize`` (arguments as cli.py defines them)."""
    import sys

    from ..units import to_json

    model, report, replays = run(args.input, args.out, chemistry=args.chemistry,
                                 capacity_ah=args.capacity_ah, name=args.name,
                                 initial_soc_pct=args.initial_soc, cell=args.cell,
                                 validate=args.validate or (), force=args.force)
    for warning in report.warnings:
        print(f"cellguard: warning: {warning}", file=sys.stderr)
    if args.json:
        print(to_json({"cell": model.to_dict(), "capacity_source": report.capacity_source,
                        "replays": [r.__dict__ for r in replays]}))
        return 0
    for line in report.lines():
        print(line)
    for r in replays:
        print(r.line())
    print(f"wrote {args.out} ({len(model.temps_c)} temperature(s) x {len(model.soc_pct)} "
          "SoC points)")
    return 0
