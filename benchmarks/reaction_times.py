"""Protection reaction times, measured on the simulated board.

Run from the repository root::

    .venv/bin/python benchmarks/reaction_times.py [--runtime micropython|cpython] [--write-docs]

For every protection in the firmware's ``PROTECTIONS`` table (read at run time,
so a new protection shows up by itself) it boots the firmware of the default
board (``sim-4s``: default limits and delays, 100 ms control period) and drives
it through the simulated board's firmware path (``hal_sim.SimBoard.step`` via a
``cellguard.sim`` runtime; MicroPython by default) with ADC codes from the
simulator's sensor model:

1. a few control steps at nominal values (the output closes);
2. at ``t_cross`` the watched quantity steps just beyond its trip limit. The
   crossing is placed ``phase`` ms into a control period, not on a step: the
   value is beyond for every instant *after* ``t_cross`` and the firmware
   samples at its step instants, so it first sees the crossing at the next
   step. Trip reaction = first step at which the output is open - ``t_cross``;
3. in the control period after the trip step, again ``phase`` ms into it, the
   quantity goes back just inside its release threshold (``t_clear``).
   Release = first step at which the output is closed again - ``t_clear``.
   If the output stays open well past the release delay the fault latches: the
   run sends CLEAR_FAULTS (the output must close), and the phase is run again
   with a host that sends CLEAR_FAULTS every period from the clearing on; the
   release column then gives that time.

Each protection is measured at several phases; the table gives min and max.
Every time here is simulated time (integer ms), so the table is deterministic:
reruns give identical output. The firmware's own FAULT_EVENT frames are
decoded too and must agree (the right fault bit, at the step the output moved).

``--write-docs`` writes the table into ``docs/reaction-times.md``;
``tests/test_reaction_times.py`` checks that page is up to date.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellguard.boards import load_board
from cellguard.link import FrameReader
from cellguard.paths import repo_root
from cellguard.protocol.codec import encode_frame, parse_payload
from cellguard.protocol.messages import BY_NAME
from cellguard.sim.runtime import FirmwareRuntime, make_runtime
from cellguard.sim.sensors import SensorModel
from cellguard_fw.hal_sim import SimBoard
from cellguard_fw.protection import (
    PROTECTIONS,
    Q_CELL_SPREAD_MV,
    Q_CHARGE_MA,
    Q_DISCHARGE_MA,
    Q_MAX_CELL_MV,
    Q_MAX_TEMP_CHARGING_DC,
    Q_MAX_TEMP_DC,
    Q_MIN_CELL_MV,
    Q_MIN_TEMP_CHARGING_DC,
    Q_MIN_TEMP_DC,
)

BOARD = "sim-4s"
PHASES_MS: tuple[int, ...] = (0, 25, 50, 75, 99)
"""Where in a control period the limit is crossed (and later cleared)."""
WARMUP_STEPS = 3
LATCH_MARGIN_STEPS = 5
"""Steps past the release worst case after which an open output counts as latched."""
DOCS_PAGE = Path("docs") / "reaction-times.md"
COMMAND = ".venv/bin/python benchmarks/reaction_times.py --write-docs"

FAULT_EVENT = BY_NAME["fault_event"].msg_id
CLEAR_FAULTS = BY_NAME["clear_faults"].msg_id

# Nominal plant: well inside every default limit.
NOMINAL_CELL_V = 3.7
NOMINAL_CURRENT_A = 0.0
NOMINAL_TEMP_C = 25.0


# -- stimulus: physical values -> ADC codes ---------------------------------------


@dataclass(frozen=True)
class Stimulus:
    """What the sensors see: cell voltages (V), current (A, + = charging), temperatures (°C)."""

    cells_v: tuple[float, ...]
    current_a: float
    temps_c: tuple[float, ...]

    def codes(self, sensors: SensorModel) -> bytes:
        """Packed as ``hal_sim.SimHal`` expects: cells, current, temperatures."""
        values = [sensors.cell_code(v) for v in self.cells_v]
        values.append(sensors.current_code(self.current_a))
        values += [sensors.temp_code(t) for t in self.temps_c]
        return struct.pack(f"<{len(values)}H", *values)


def nominal(board: dict[str, Any]) -> Stimulus:
    return Stimulus((NOMINAL_CELL_V,) * board["cells"], NOMINAL_CURRENT_A,
                    (NOMINAL_TEMP_C,) * board["temp_sensors"])


def _replace(values: tuple[float, ...], index: int, value: float) -> tuple[float, ...]:
    out = list(values)
    out[index] = value
    return tuple(out)


def _identity(s: Stimulus) -> Stimulus:
    return s


def _charging(s: Stimulus) -> Stimulus:
    return Stimulus(s.cells_v, CHARGING_A, s.temps_c)


@dataclass(frozen=True)
class QuantityKind:
    """How to show a watched quantity and how to force it to a value.

    ``prepare(nominal)`` is the plant for the whole run (e.g. charging, for a
    quantity only watched while charging); ``force(base, value)`` returns
    ``base`` with the quantity at ``value`` (in the firmware's unit) and
    everything else left alone; ``where`` names what is forced; ``show``
    formats a value in the firmware's unit.
    """

    label: str
    where: str
    force: Callable[[Stimulus, int], Stimulus]
    show: Callable[[int], str]
    prepare: Callable[[Stimulus], Stimulus] = _identity


def _mv(value: int) -> str:
    return f"{value} mV"


def _ma(value: int) -> str:
    return f"{value} mA"


def _dc(value: int) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 10}.{abs(value) % 10} °C"


def _cell(s: Stimulus, mv: int) -> Stimulus:
    return Stimulus(_replace(s.cells_v, 0, mv / 1000), s.current_a, s.temps_c)


def _sensor(s: Stimulus, dc: int) -> Stimulus:
    return Stimulus(s.cells_v, s.current_a, _replace(s.temps_c, 0, dc / 10))


CHARGING_A = 1.0
"""Charge current while a charging-only quantity is tested (well below every limit)."""

QUANTITIES: dict[int, QuantityKind] = {
    Q_MAX_CELL_MV: QuantityKind("highest cell voltage", "cell 1", _cell, _mv),
    Q_MIN_CELL_MV: QuantityKind("lowest cell voltage", "cell 1", _cell, _mv),
    Q_MAX_TEMP_DC: QuantityKind("hottest sensor", "sensor 1", _sensor, _dc),
    Q_MIN_TEMP_DC: QuantityKind("coldest sensor", "sensor 1", _sensor, _dc),
    Q_CHARGE_MA: QuantityKind(
        "charge current", "current",
        lambda s, ma: Stimulus(s.cells_v, ma / 1000, s.temps_c), _ma),
    Q_DISCHARGE_MA: QuantityKind(
        "discharge current", "current",
        lambda s, ma: Stimulus(s.cells_v, -ma / 1000, s.temps_c), _ma),
    Q_MAX_TEMP_CHARGING_DC: QuantityKind(
        "hottest sensor while charging", f"sensor 1, charging at {CHARGING_A:g} A",
        _sensor, _dc, _charging),
    Q_MIN_TEMP_CHARGING_DC: QuantityKind(
        "coldest sensor while charging", f"sensor 1, charging at {CHARGING_A:g} A",
        _sensor, _dc, _charging),
    Q_CELL_SPREAD_MV: QuantityKind(
        "cell spread (highest - lowest)", "cell 1 above the others",
        lambda s, mv: _cell(s, round(s.cells_v[1] * 1000) + mv), _mv),
}


# -- the protections as the firmware configures them ------------------------------


@dataclass(frozen=True)
class Limit:
    """One protection as the firmware built it for the board."""

    name: str
    bit: int
    quantity: int
    above: bool
    trip: int
    release: int
    trip_delay_ms: int
    release_delay_ms: int

    def beyond(self, reading: int) -> bool:
        return reading > self.trip if self.above else reading < self.trip

    def inside(self, reading: int) -> bool:
        return reading < self.release if self.above else reading > self.release


@dataclass(frozen=True)
class Spec:
    """One protection, and the stimulus that trips and releases it."""

    limit: Limit
    base: Stimulus  # the plant before the crossing and around it
    beyond: int  # forced value (firmware unit), just past the trip limit
    beyond_reads: int  # what the firmware reads for it
    inside: int  # forced value after the clearing
    inside_reads: int
    crossed: tuple[Limit, ...]
    """Other protections whose trip limit ``beyond`` crosses too (the same quantity
    watched at a lower level, say). ``inside`` is back inside their release
    thresholds as well, so that none of them holds the output open."""

    @property
    def kind(self) -> QuantityKind:
        return QUANTITIES[self.limit.quantity]

    @property
    def name(self) -> str:
        return self.limit.name


class _Reader:
    """The firmware's own measurement path under CPython: codes -> watched quantities."""

    def __init__(self, board_json: str, sensors: SensorModel) -> None:
        self.sim = SimBoard(board_json)  # no storage: nothing is written anywhere
        self.sensors = sensors

    def read(self, stimulus: Stimulus, quantity: int) -> int:
        bms = self.sim.bms
        hal = self.sim.hal
        m = bms.meas
        hal.codes[:] = stimulus.codes(self.sensors)
        raw_current = hal.sample(m.raw_cells, m.raw_temps)
        m.update(bms.frontend, raw_current)
        bms.protection.load(m)
        return int(bms.protection.values[quantity])


def _search(reader: _Reader, base: Stimulus, limit: Limit, start: int, outward: bool,
            done: Callable[[Stimulus], bool]) -> int:
    """The first value from ``start`` on, one firmware unit after another (outward:
    in the tripping direction), whose stimulus satisfies ``done``."""
    step = 1 if outward == limit.above else -1
    kind = QUANTITIES[limit.quantity]
    for k in range(1, 100_001):
        value = start + k * step
        if done(kind.force(base, value)):
            return value
    raise RuntimeError(f"{limit.name}: no stimulus found from {kind.show(start)}")


def protection_limits(board: dict[str, Any]) -> list[Limit]:
    """Every protection of the firmware table, as the firmware configures it for
    ``board`` (limits, release thresholds and delays read back from its Protection)."""
    p = SimBoard(json.dumps(board)).bms.protection
    return [Limit(str(row[0]), int(p.bit[i]), int(p.quantity[i]), bool(p.above[i]),
                  int(p.trip[i]), int(p.release[i]), int(p.trip_delay_ms[i]),
                  int(p.release_delay_ms[i]))
            for i, row in enumerate(PROTECTIONS)]


def protection_specs(board: dict[str, Any], sensors: SensorModel) -> list[Spec]:
    """Every protection with its stimulus: the watched quantity one firmware unit
    after another past the trip limit until the firmware reads it past, and back
    until it reads inside the release threshold of everything that crossed."""
    reader = _Reader(json.dumps(board), sensors)
    limits = protection_limits(board)
    specs: list[Spec] = []
    for lim in limits:
        if lim.quantity not in QUANTITIES:
            raise RuntimeError(
                f"protection {lim.name} watches quantity {lim.quantity}, which has no forcing "
                "function: add one to QUANTITIES in benchmarks/reaction_times.py"
            )
        kind = QUANTITIES[lim.quantity]
        base = kind.prepare(nominal(board))
        for other in limits:
            if not other.inside(reader.read(base, other.quantity)):
                raise RuntimeError(f"{lim.name}: the plant before the crossing is not inside "
                                   f"the release threshold of {other.name}")

        def past_trip(st: Stimulus, lim: Limit = lim) -> bool:
            return lim.beyond(reader.read(st, lim.quantity))

        beyond = _search(reader, base, lim, lim.trip, True, past_trip)
        beyond_st = kind.force(base, beyond)
        crossed = tuple(o for o in limits
                        if o is not lim and o.beyond(reader.read(beyond_st, o.quantity)))

        def inside_all(st: Stimulus, involved: tuple[Limit, ...] = (lim, *crossed)) -> bool:
            return all(o.inside(reader.read(st, o.quantity)) for o in involved)

        inside = _search(reader, base, lim, lim.release, False, inside_all)
        specs.append(Spec(lim, base, beyond, reader.read(beyond_st, lim.quantity), inside,
                          reader.read(kind.force(base, inside), lim.quantity), crossed))
    return specs


def worst_case_ms(delay_ms: int, period_ms: int) -> int:
    """Latest reaction after a crossing: the delay, counted in whole periods from the
    first sample that sees the condition, plus up to one period until that sample."""
    return -(-delay_ms // period_ms) * period_ms + period_ms


# -- one run -------------------------------------------------------------------------


@dataclass
class Run:
    """One crossing and clearing at one phase (all times simulated ms)."""

    phase_ms: int
    reaction_ms: int | None  # crossing -> output open (None: it stayed closed)
    release_ms: int | None  # clearing -> output closed, host silent (None: latched)
    trips: dict[str, int]  # protection -> crossing to its FAULT_EVENT trip
    releases: dict[str, int]  # protection -> clearing to its FAULT_EVENT release
    cleared_release_ms: int | None = None
    """Latched only: clearing -> output closed with CLEAR_FAULTS sent every period."""


class BoardDriver:
    """The firmware on a runtime, stepped on simulated time with given codes."""

    def __init__(self, runtime: FirmwareRuntime, board: dict[str, Any]) -> None:
        self.runtime = runtime
        self.board_json = json.dumps(board)
        self.unique_id = b"\x5e\x11" + board["name"].encode()[:6]  # as SimulatedBoard
        self.period_ms: int = board["control_period_ms"]
        self.t_ms = 0
        self.closed = False
        self.reader = FrameReader()
        self.events: list[tuple[int, str, int]] = []  # (board ms, kind, fault bits)
        self.seq = 0

    def boot(self) -> None:
        self.runtime.boot(self.board_json, self.unique_id)
        self.t_ms = 0
        self.closed = False
        self.reader = FrameReader()
        self.events = []

    def step(self, codes: bytes, rx: bytes = b"") -> bool:
        """One control step at ``t_ms + period``; return whether the output is closed."""
        self.t_ms += self.period_ms
        tx, self.closed = self.runtime.step(self.period_ms, codes, rx)
        for frame in self.reader.feed(tx):
            if frame.msg_type == FAULT_EVENT:
                ev = parse_payload(frame.msg_type, frame.payload)
                self.events.append((int(ev["board_time_ms"]), str(ev["kind"]), int(ev["fault"])))
        return self.closed

    def clear_faults_frame(self) -> bytes:
        self.seq += 1
        return encode_frame(CLEAR_FAULTS, self.seq, b"")

    def event_times(self, kind: str, after_ms: int) -> dict[int, int]:
        """Fault bit -> board time of its first ``kind`` event after ``after_ms``."""
        out: dict[int, int] = {}
        for t, k, bits in self.events:
            if k == kind and t > after_ms:
                bit = 1
                while bit <= bits:
                    if bits & bit and bit not in out:
                        out[bit] = t
                    bit <<= 1
        return out


def measure_run(drv: BoardDriver, spec: Spec, sensors: SensorModel, phase_ms: int,
                clear_every_period: bool = False) -> Run:
    """Boot, cross the trip limit at ``phase_ms`` into a period, clear at the same
    phase in the period after the trip; with ``clear_every_period`` the host sends
    CLEAR_FAULTS at every step from the clearing on."""
    period = drv.period_ms
    own = spec.limit
    names = {lim.bit: lim.name for lim in (own, *spec.crossed)}
    nominal_codes = spec.base.codes(sensors)
    beyond_codes = spec.kind.force(spec.base, spec.beyond).codes(sensors)
    inside_codes = spec.kind.force(spec.base, spec.inside).codes(sensors)
    margin = LATCH_MARGIN_STEPS * period

    drv.boot()
    for _ in range(WARMUP_STEPS):
        drv.step(nominal_codes)
    if not drv.closed:
        raise RuntimeError(f"{own.name}: output not closed at nominal values after boot "
                           "(a fault latched from an earlier run?)")

    # Crossing: beyond for every instant after t_cross; sampled at step instants.
    t_cross = drv.t_ms + phase_ms
    t_open: int | None = None
    while drv.t_ms + period - t_cross <= worst_case_ms(own.trip_delay_ms, period) + margin:
        if not drv.step(beyond_codes if drv.t_ms + period > t_cross else nominal_codes):
            t_open = drv.t_ms if t_open is None else t_open
        if own.bit in drv.event_times("trip", t_cross):
            break
    trips = drv.event_times("trip", t_cross)
    if own.bit not in trips:
        raise RuntimeError(f"{own.name}: no trip event after the crossing")
    unexpected = [bit for bit in trips if bit not in names]
    if unexpected:
        raise RuntimeError(f"{own.name}: fault bits {unexpected} tripped too")
    if t_open is not None and t_open != min(trips.values()):
        raise RuntimeError(f"{own.name}: output opened at {t_open} ms, the first trip event "
                           f"says {min(trips.values())} ms")

    # Clearing: in the period after the trip step, at the same phase.
    t_clear = drv.t_ms + phase_ms
    release_limit = max(worst_case_ms(lim.release_delay_ms, period)
                        for lim in (own, *spec.crossed) if lim.bit in trips) + period
    t_closed: int | None = None
    while drv.t_ms + period - t_clear <= release_limit + margin:
        cleared = drv.t_ms + period > t_clear
        rx = drv.clear_faults_frame() if clear_every_period and drv.t_ms > t_clear else b""
        if drv.step(inside_codes if cleared else beyond_codes, rx) and t_open is not None:
            t_closed = drv.t_ms
            break
    releases = drv.event_times("release", t_clear)
    if any(bit not in releases for bit in trips):
        raise RuntimeError(f"{own.name}: not every fault released after the clearing")
    if t_closed is None and t_open is not None:
        # Latched (or it would have closed by now): the host clears it, so that the
        # next boot starts clean (latches survive resets), and it must close.
        rx = drv.clear_faults_frame()
        for _ in range(LATCH_MARGIN_STEPS):
            if drv.step(inside_codes, rx):
                break
            rx = b""
        else:
            raise RuntimeError(f"{own.name}: output still open after CLEAR_FAULTS")
    elif t_closed is not None and not clear_every_period \
            and t_closed != max(releases[bit] for bit in trips):
        raise RuntimeError(f"{own.name}: output closed at {t_closed} ms but the last release "
                           f"event says {max(releases.values())} ms")
    return Run(
        phase_ms=phase_ms,
        reaction_ms=None if t_open is None else t_open - t_cross,
        release_ms=None if t_closed is None else t_closed - t_clear,
        trips={names[bit]: t - t_cross for bit, t in sorted(trips.items())},
        releases={names[bit]: releases[bit] - t_clear for bit in sorted(trips)},
    )


def measure_phase(drv: BoardDriver, spec: Spec, sensors: SensorModel, phase_ms: int) -> Run:
    """One phase; a latching protection is run again with a host that clears."""
    run = measure_run(drv, spec, sensors, phase_ms)
    if run.reaction_ms is not None and run.release_ms is None:
        again = measure_run(drv, spec, sensors, phase_ms, clear_every_period=True)
        if (again.reaction_ms, again.trips, again.releases) != (run.reaction_ms, run.trips,
                                                                run.releases):
            raise RuntimeError(f"{spec.name}: CLEAR_FAULTS changed the timing: {again}")
        run.cleared_release_ms = again.release_ms
    return run


# -- all protections ---------------------------------------------------------------


@dataclass
class Timing:
    spec: Spec
    period_ms: int
    runs: list[Run] = field(default_factory=lambda: list[Run]())

    @property
    def opens_output(self) -> bool:
        return all(r.reaction_ms is not None for r in self.runs)

    @property
    def latched(self) -> bool:
        return self.opens_output and any(r.release_ms is None for r in self.runs)

    def own_trips(self) -> list[int]:
        return [r.trips[self.spec.name] for r in self.runs]

    def own_releases(self) -> list[int]:
        return [r.releases[self.spec.name] for r in self.runs]

    @property
    def trip_worst_ms(self) -> int:
        return worst_case_ms(self.spec.limit.trip_delay_ms, self.period_ms)

    @property
    def release_worst_ms(self) -> int:
        """Latched: with a host that sends CLEAR_FAULTS every period, which the
        firmware handles before the step in which the protection releases."""
        worst = worst_case_ms(self.spec.limit.release_delay_ms, self.period_ms)
        return worst + self.period_ms if self.latched else worst


def measure_all(runtime: str = "micropython", board: str = BOARD,
                phases: Sequence[int] = PHASES_MS,
                only: Sequence[str] | None = None) -> list[Timing]:
    """Measure every protection (or those named in ``only``) on ``runtime``."""
    board_cfg = load_board(board)
    sensors = SensorModel(board_cfg)  # no noise: codes are exact and repeatable
    specs = [s for s in protection_specs(board_cfg, sensors) if only is None or s.name in only]
    if only is not None and len(specs) != len(set(only)):
        raise ValueError(f"unknown protection among {list(only)}")
    period = int(board_cfg["control_period_ms"])
    if any(not 0 <= p < period for p in phases):
        raise ValueError(f"phases must lie in [0, {period}) ms")
    rt = make_runtime(runtime)
    try:
        drv = BoardDriver(rt, board_cfg)
        out: list[Timing] = []
        for spec in specs:
            timing = Timing(spec, period)
            for phase in phases:
                timing.runs.append(measure_phase(drv, spec, sensors, phase))
            kinds = {(r.reaction_ms is None, r.release_ms is None) for r in timing.runs}
            if len(kinds) > 1:
                raise RuntimeError(f"{spec.name}: opens or latches at some phases only")
            out.append(timing)
        return out
    finally:
        rt.close()


# -- output ----------------------------------------------------------------------------


def _span(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo} ms" if lo == hi else f"{lo}–{hi} ms"


def _limit(spec: Spec, threshold: int, tripping: bool) -> str:
    sign = ">" if spec.limit.above == tripping else "<"
    return f"{sign} {spec.kind.show(threshold)}"


def _known(values: Sequence[int | None]) -> list[int]:
    return [v for v in values if v is not None]


def table_rows(timings: Sequence[Timing]) -> list[list[str]]:
    rows: list[list[str]] = []
    for t in timings:
        s = t.spec
        lim = s.limit
        runs = t.runs
        own_trip, own_release = _span(t.own_trips()), _span(t.own_releases())
        if t.opens_output:
            reactions = _known([r.reaction_ms for r in runs])
            reaction = _span(reactions)
            if reactions != t.own_trips():
                reaction += f" (own trip {own_trip})"
            if t.latched:
                release = ("latched until CLEAR_FAULTS; "
                           f"{_span(_known([r.cleared_release_ms for r in runs]))} "
                           "with CLEAR_FAULTS every period")
            else:
                releases = _known([r.release_ms for r in runs])
                release = _span(releases)
                if releases != t.own_releases():
                    release += f" (own release {own_release})"
        else:  # a fault that does not open the output: its FAULT_EVENTs
            reaction = f"output stays closed; fault after {own_trip}"
            release = f"fault releases after {own_release}"
        rows.append([
            f"`{lim.name}`", s.kind.label, _limit(s, lim.trip, True),
            _limit(s, lim.release, False), f"{lim.trip_delay_ms} ms", reaction,
            f"{t.trip_worst_ms} ms", f"{lim.release_delay_ms} ms", release,
            f"{t.release_worst_ms} ms",
        ])
    return rows


HEADER = ["protection", "quantity", "trip at", "release at", "trip delay", "reaction min–max",
          "reaction worst case", "release delay", "release min–max", "release worst case"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_table(timings: Sequence[Timing]) -> str:
    return markdown_table(HEADER, table_rows(timings))


def stimulus_table(timings: Sequence[Timing]) -> str:
    rows: list[list[str]] = []
    for t in timings:
        s = t.spec
        k = s.kind
        crossed = ", ".join(f"`{o.name}`" for o in s.crossed) or "—"
        rows.append([f"`{s.name}`", k.where,
                     f"{k.show(s.beyond)} (reads {k.show(s.beyond_reads)})",
                     f"{k.show(s.inside)} (reads {k.show(s.inside_reads)})", crossed])
    return markdown_table(["protection", "forced", "beyond the trip limit", "after clearing",
                           "also crosses"], rows)


RUNTIME_NAMES = {"micropython": "MicroPython (WebAssembly port)", "cpython": "CPython"}


def render_page(timings: Sequence[Timing], runtime: str, board: str = BOARD,
                phases: Sequence[int] = PHASES_MS) -> str:
    """The generated docs page: no dates, wall times or paths, so reruns are identical."""
    period = timings[0].period_ms if timings else 0
    phase_list = ", ".join(str(p) for p in phases)
    latching = ""
    if any(t.latched for t in timings):
        latching = """- **latched until CLEAR_FAULTS**: the output stays open after the
  condition has cleared until the host sends CLEAR_FAULTS. The time given is
  from the clearing to the output closing for a host that sends CLEAR_FAULTS
  every control period; its worst case is one period more than for a fault
  that releases by itself (a CLEAR_FAULTS is handled before the control step
  in which the protection releases, so it is the next one that closes the
  output).
"""
    return f"""# Protection reaction times

<!-- Generated by `{COMMAND}`; do not edit by hand. -->

Generated from simulated runs by `benchmarks/reaction_times.py`, not typed by
hand. After changing the protection table, its defaults or the control step,
regenerate it (`tests/test_reaction_times.py` fails while it is out of date):

```sh
{COMMAND}
```

- Firmware under {RUNTIME_NAMES.get(runtime, runtime)}, driven through the simulated
  board's firmware path (`hal_sim.SimBoard.step`) with ADC codes from the
  simulator's sensor model (no noise).
- Board `{board}`: default limits and delays, control period {period} ms.
- Each protection, on a freshly booted board at nominal values: the watched
  quantity steps just beyond its trip limit {phase_list} ms into a control
  period. It is beyond at every instant after the crossing and the firmware
  samples at its step instants, so it sees the crossing at the next step. In
  the period after the trip, at the same phase, it steps back just inside its
  release threshold, and that of any other protection the step crossed too
  (the last column of the second table).
- **reaction**: from the crossing to the first control step at which the
  output is open. **release**: from the clearing to the first step at which it
  is closed again. Min and max over the phases, in simulated time, so every
  rerun gives the same figures.
- **worst case**: the delay, rounded up to whole control periods, plus one
  period (a crossing just after a sample).
{latching}
{render_table(timings)}
The stimulus: the value the sensor model turns into ADC codes and what the
firmware reads from them, one unit (1 mV, 1 mA, 0.1 °C) after another past
the threshold until the firmware reads it past. Everything else stays at
{NOMINAL_CELL_V} V per cell, {NOMINAL_CURRENT_A:g} A and {NOMINAL_TEMP_C:g} °C, except where
"forced" says otherwise for the whole run.

{stimulus_table(timings)}
See [protection.md](protection.md) for what the limits and delays mean.
"""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Protection reaction times, measured on the "
                                 "simulated board; prints a Markdown table.")
    ap.add_argument("--runtime", choices=["micropython", "cpython"], default="micropython")
    ap.add_argument("--write-docs", action="store_true",
                    help=f"write the table into {DOCS_PAGE}")
    args = ap.parse_args(argv)
    timings = measure_all(args.runtime)
    sys.stdout.write(render_table(timings))
    if args.write_docs:
        path = repo_root() / DOCS_PAGE
        path.write_text(render_page(timings, args.runtime))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
