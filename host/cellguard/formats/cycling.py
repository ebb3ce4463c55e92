"""Steps, cycles, capacities and energies derived from a log's current, for cycler formats.

A cellguard log has no test program, so what a cycler writes per sample (step
count, cycle count, accumulated Ah and Wh) is derived here from the current,
by one documented rule (docs/logging.md, "Battery Data Format"):

- **Mode of a sample** (rest, charge, discharge), with hysteresis: from rest, a
  current above ``+rest_current_a`` is charge and below ``-rest_current_a`` is
  discharge; a charge (discharge) goes on until the current falls below
  ``rest_current_a / 2`` in magnitude (or crosses into the other direction past
  ``rest_current_a``).
- **Minimum duration**: a run of one mode shorter than ``min_step_s`` (time with
  samples, gaps not counted) is not a step of its own: it joins the step before
  it (at the start of the log: the step after it). So sensor noise and a short
  spike do not make steps. (A selection with no run that long is one step.)
- **Step Count** starts at 1 and goes up by one at each change of mode.
- **Cycle Count** starts at 1 and goes up by one at the start of every charge
  step that follows a discharge step (rests between them do not matter).
- **Gaps**: an interval between two samples that :meth:`Series.gap_mask` calls a
  gap (longer than ``GAP_PERIODS`` telemetry periods, or across a board restart)
  is not a rest and not integrated: capacities and energies stay as they were
  over it, and the step changes after it only when the mode of the samples after
  it differs.
- **Capacities and energies**: trapezoid rule on the samples from the first
  sample on, never reset; an interval whose ends have opposite signs is split at
  the zero crossing (as ``cellguard report`` does), so the charging and
  discharging parts each only grow and net = charging − discharging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REST, CHARGE, DISCHARGE = 0, 1, -1
MODE_NAMES = {REST: "rest", CHARGE: "charge", DISCHARGE: "discharge"}

DEFAULT_REST_CURRENT_C = 0.01
"""Default rest threshold as a C-rate: 1/100 of the board's capacity in A ..."""
MIN_REST_CURRENT_A = 0.02
"""... but never below 20 mA (about ten steps of a 16-bit, ±50 A current ADC)."""
DEFAULT_MIN_STEP_S = 10.0
"""Default minimum duration of a step, s."""


def default_rest_current_a(capacity_ah: float) -> float:
    """The rest threshold used when none is given: C/100, at least 20 mA."""
    return max(MIN_REST_CURRENT_A, DEFAULT_REST_CURRENT_C * max(capacity_ah, 0.0))


@dataclass(frozen=True)
class StepRule:
    """The thresholds of the step rule (see the module's docstring)."""

    rest_current_a: float
    min_step_s: float = DEFAULT_MIN_STEP_S

    def __post_init__(self) -> None:
        if not (np.isfinite(self.rest_current_a) and self.rest_current_a > 0):
            raise ValueError(f"the rest current must be > 0 A, not {self.rest_current_a!r}")
        if not (np.isfinite(self.min_step_s) and self.min_step_s >= 0):
            raise ValueError(f"the minimum step duration must be >= 0 s, not {self.min_step_s!r}")

    @property
    def release_current_a(self) -> float:
        """Below this magnitude a charge or discharge becomes rest (the hysteresis)."""
        return self.rest_current_a / 2.0

    def to_dict(self) -> dict[str, object]:
        return {
            "rest_current_a": self.rest_current_a,
            "release_current_a": self.release_current_a,
            "min_step_s": self.min_step_s,
            "rule": ("mode from the current with hysteresis: rest -> charge above "
                     "+rest_current_a, -> discharge below -rest_current_a; charge or "
                     "discharge -> rest below release_current_a in magnitude; a run of one "
                     "mode shorter than min_step_s (time with samples) joins the step before "
                     "it (at the start: the step after it); Step Count +1 at each change of "
                     "mode, from 1; Cycle Count +1 at "
                     "each charge step after a discharge step, from 1; nothing integrated "
                     "across a gap, which is no rest and no step change by itself"),
        }


@dataclass
class Cycling:
    """Per-sample results, each an array as long as the samples."""

    mode: np.ndarray  # REST, CHARGE or DISCHARGE of the step the sample is in
    step: np.ndarray  # Step Count, from 1
    cycle: np.ndarray  # Cycle Count, from 1
    charge_ah: np.ndarray  # charging capacity since the first sample, Ah
    discharge_ah: np.ndarray  # discharging capacity (a magnitude), Ah
    charge_wh: np.ndarray  # charging energy, Wh
    discharge_wh: np.ndarray  # discharging energy (a magnitude), Wh

    @property
    def net_ah(self) -> np.ndarray:
        return self.charge_ah - self.discharge_ah

    @property
    def net_wh(self) -> np.ndarray:
        return self.charge_wh - self.discharge_wh

    @property
    def step_type(self) -> list[str]:
        return [MODE_NAMES[int(m)] for m in self.mode]


def raw_modes(current_a: np.ndarray, rule: StepRule) -> np.ndarray:
    """Each sample's mode by the thresholds with hysteresis, before the minimum duration."""
    on, off = rule.rest_current_a, rule.release_current_a
    out = np.zeros(len(current_a), dtype=np.int8)
    mode = REST
    for k, i in enumerate(np.asarray(current_a, dtype=float)):
        if i > on:
            mode = CHARGE
        elif i < -on:
            mode = DISCHARGE
        elif abs(i) < off or (mode == CHARGE and i < 0) or (mode == DISCHARGE and i > 0):
            mode = REST
        out[k] = mode
    return out


def _runs(modes: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end exclusive, mode) of each run of equal modes."""
    if not len(modes):
        return []
    edges = np.flatnonzero(np.diff(modes)) + 1
    starts = [0, *edges.tolist()]
    ends = [*edges.tolist(), len(modes)]
    return [(a, b, int(modes[a])) for a, b in zip(starts, ends, strict=True)]


def step_modes(t_s: np.ndarray, current_a: np.ndarray, gap: np.ndarray,
               rule: StepRule) -> np.ndarray:
    """Each sample's step mode: :func:`raw_modes` with the short runs merged away.

    A run's duration is the time with samples from its first sample to the first
    sample of the next run (to its own last sample at the end), gaps left out. A
    run shorter than ``min_step_s`` takes the mode of the last long run before it
    (at the start of the log: of the first long run); when no run is long enough,
    the whole selection is one step, of the mode that lasted longest.
    """
    modes = raw_modes(current_a, rule)
    n = len(modes)
    if n == 0:
        return modes
    dt = np.diff(np.asarray(t_s, dtype=float)) if n > 1 else np.zeros(0)
    live = np.concatenate([[0.0], np.cumsum(np.where(gap, 0.0, np.maximum(dt, 0.0)))])
    runs = _runs(modes)
    durations = [live[min(b, n - 1)] - live[a] for a, b, _ in runs]
    long = [k for k, d in enumerate(durations) if d >= rule.min_step_s]
    out = np.empty(n, dtype=np.int8)
    if not long:
        time_in = {m: sum(d for (_, _, mm), d in zip(runs, durations, strict=True) if mm == m)
                   for m in (REST, CHARGE, DISCHARGE)}
        out[:] = max(time_in, key=lambda m: (time_in[m], m == REST))
        return out
    mode = runs[long[0]][2]  # the first long run's mode, for the short runs before it
    for k, (a, b, m) in enumerate(runs):
        if durations[k] >= rule.min_step_s:
            mode = m
        out[a:b] = mode
    return out


def _split_intervals(t: np.ndarray, y: np.ndarray, skip: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per interval (i, i+1): the trapezoid's positive part and negative part (a magnitude),
    split at the zero crossing; 0 for a skipped interval or one that does not advance."""
    if len(t) < 2:
        return np.zeros(0), np.zeros(0)
    d = np.diff(t)
    y0, y1 = y[:-1], y[1:]
    keep = (d > 0) & ~skip & np.isfinite(y0) & np.isfinite(y1)
    d = np.where(keep, d, 0.0)
    y0 = np.where(keep, y0, 0.0)
    y1 = np.where(keep, y1, 0.0)
    area = (y0 + y1) / 2.0 * d
    pos = np.where((y0 >= 0) & (y1 >= 0), area, 0.0)
    neg = np.where((y0 <= 0) & (y1 <= 0) & ~((y0 >= 0) & (y1 >= 0)), -area, 0.0)
    cross = ((y0 > 0) & (y1 < 0)) | ((y0 < 0) & (y1 > 0))
    if cross.any():
        a, b, dc = y0[cross], y1[cross], d[cross]
        f = a / (a - b)
        first, second = a * f * dc / 2.0, b * (1.0 - f) * dc / 2.0
        pos[cross] = np.where(a > 0, first, second)
        neg[cross] = -np.where(a > 0, second, first)
    return pos, neg


def _cumulative(parts: np.ndarray, n: int) -> np.ndarray:
    """Running sum at each sample (0 at the first) of the per-interval parts."""
    return np.concatenate([[0.0], np.cumsum(parts)]) if n else np.zeros(0)


def derive(t_s: np.ndarray, current_a: np.ndarray, voltage_v: np.ndarray, gap: np.ndarray,
           rule: StepRule) -> Cycling:
    """Steps, cycles, capacities and energies of one test object.

    ``t_s`` in s (ascending), ``current_a`` in A (positive charging), ``voltage_v``
    the test object's voltage in V, ``gap`` one bool per interval (i, i+1).
    """
    t = np.asarray(t_s, dtype=float)
    i = np.asarray(current_a, dtype=float)
    v = np.asarray(voltage_v, dtype=float)
    gap = np.asarray(gap, dtype=bool)
    n = len(t)
    if not (len(i) == len(v) == n and len(gap) == max(n - 1, 0)):
        raise ValueError("time, current, voltage and gaps differ in length")
    modes = step_modes(t, i, gap, rule)
    changes = np.concatenate([[True], np.diff(modes) != 0]) if n else np.zeros(0, bool)
    step = np.cumsum(changes, dtype=np.int64)  # from 1: the first sample starts step 1
    cycle_of_step = np.ones(int(step[-1]) if n else 0, dtype=np.int64)
    count, seen_discharge = 1, False
    for s, k in enumerate(np.flatnonzero(changes)):
        m = int(modes[k])
        if m == DISCHARGE:
            seen_discharge = True
        elif m == CHARGE and seen_discharge:
            count += 1
            seen_discharge = False
        cycle_of_step[s] = count
    cycle = cycle_of_step[step - 1] if n else np.zeros(0, dtype=np.int64)
    q_in, q_out = _split_intervals(t, i, gap)
    e_in, e_out = _split_intervals(t, v * i, gap)
    return Cycling(mode=modes, step=step, cycle=cycle,
                   charge_ah=_cumulative(q_in, n) / 3600.0,
                   discharge_ah=_cumulative(q_out, n) / 3600.0,
                   charge_wh=_cumulative(e_in, n) / 3600.0,
                   discharge_wh=_cumulative(e_out, n) / 3600.0)
