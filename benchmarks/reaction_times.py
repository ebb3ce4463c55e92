"""Protection reaction times, measured on the simulated board.

Run from the repository root::

    .venv/bin/python benchmarks/reaction_times.py [--runtime micropython|cpython] [--write-docs]

For every protection of the firmware's ``protection_table()`` (read at run
time, so a new protection shows up by itself) it boots the firmware of the
default board (``sim-4s``: default limits, delays, severities and debounce
counts, 100 ms control period) and drives it through the simulated board's
firmware path (``hal_sim.SimBoard.step`` via a ``cellguard.sim`` runtime;
MicroPython by default, the firmware compiled by mpy-cross as a deploy builds it)
with ADC codes built from the simulator's sensor model (the pack-voltage code and
the rest of the 8-byte tail are built here):

1. a few control steps at nominal values (the output closes);
2. at ``t_cross`` the stimulus starts. The crossing is placed ``phase`` ms into
   a control period, not on a step, and the firmware samples at its step
   instants, so it first sees it at the next step. The stimulus depends on
   what the protection watches:

   - a threshold quantity (a voltage, a current, a temperature, a count of
     railed sensors, the pack sensor against the cells) steps just beyond its
     trip limit (``StepSpec``);
   - ``Q_STUCK_MS`` is itself a time: one cell's code freezes while a current
     above the board's ``stuck_current_ma`` flows and every other code keeps
     moving (``StuckSpec``);
   - ``Q_TEMP_RISE_DC`` is a rise over the last minute: after a steady minute
     one sensor ramps at a rate above the limit (``RiseSpec``);

   Trip reaction = from ``t_cross`` to the step at which the protection's
   severity acts: a fault opens the output, an alarm clears its direction's
   bit in ``allowed`` (the ``OUT_CHARGE`` / ``OUT_DISCHARGE`` flags), a warning
   only sends its FAULT_EVENT;
3. in the control period after the trip step, again ``phase`` ms into it, the
   stimulus is cleared (``t_clear``): the quantity goes back just inside its
   release threshold, the frozen code moves again, the ramp stops. Release =
   from ``t_clear`` to the step at which the output closes again (fault), the
   direction is allowed again (alarm) or the release event is sent (warning).
   If the output stays open well past the release delay the fault latches: the
   run sends CLEAR_FAULTS (the output must close), and the phase is run again
   with a host that sends CLEAR_FAULTS every period from the clearing on; the
   release column then gives that time.

Each protection is measured at several phases; the table gives min and max.
Every time here is simulated time (integer ms), so the table is deterministic:
reruns give identical output. The firmware's own FAULT_EVENT frames are
decoded too and must agree (the right bit and severity, at the step the output
or ``allowed`` moved, with the value the stimulus was built to give).

``--write-docs`` writes the table into ``docs/reaction-times.md`` (keeping the
section ``two_layers.py`` writes after it); ``tests/test_reaction_times.py``
checks that page is up to date.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cellguard.boards import load_board
from cellguard.config.safety_spec import Expected, expected, load_spec
from cellguard.deploy.build import built_firmware
from cellguard.link.framing import FrameReader
from cellguard.paths import repo_root
from cellguard.protocol.codec import encode_frame, parse_payload
from cellguard.protocol.messages import BY_NAME
from cellguard.sim.runtime import FirmwareRuntime, MicroPythonRuntime, make_runtime
from cellguard.sim.sensors import SensorModel
from cellguard_fw.hal_sim import EXTRA_BYTES, OUT_CHARGE, OUT_CLOSED, OUT_DISCHARGE, SimBoard
from cellguard_fw.measurement import RISE_SLOT_MS, RISE_SLOTS, Measurement
from cellguard_fw.protection import (
    ALARM,
    BLOCKS_CHARGE,
    BLOCKS_DISCHARGE,
    FAULT,
    Q_CELL_SPREAD_MV,
    Q_CHARGE_MA,
    Q_DISCHARGE_MA,
    Q_MAX_CELL_MV,
    Q_MAX_TEMP_DC,
    Q_MIN_CELL_MV,
    Q_MIN_TEMP_DC,
    Q_PACK_MISMATCH_MV,
    Q_STUCK_MS,
    Q_TEMP_RISE_DC,
    Q_TEMPS_RAILED,
    WARNING,
    protection_table,
)

BOARD = "sim-4s"
PHASES_MS: tuple[int, ...] = (0, 25, 50, 75, 99)
"""Where in a control period the stimulus starts (and later clears)."""
WARMUP_STEPS = 3
LATCH_MARGIN_STEPS = 5
"""Steps past the release worst case after which an open output counts as latched."""
DOCS_PAGE = Path("docs") / "reaction-times.md"
COMMAND = ".venv/bin/python benchmarks/reaction_times.py --write-docs"
KEPT = "\n\n<!-- BEGIN "
"""Where a section another generator writes after this page's content starts
(``benchmarks/two_layers.py``): ``--write-docs`` keeps it, the test ignores it."""

FAULT_EVENT = BY_NAME["fault_event"].msg_id
CLEAR_FAULTS = BY_NAME["clear_faults"].msg_id

SEVERITY_NAMES = {WARNING: "warning", ALARM: "alarm", FAULT: "fault"}
HOLDS_BITS = {"charge": BLOCKS_CHARGE, "discharge": BLOCKS_DISCHARGE,
              "both": BLOCKS_CHARGE | BLOCKS_DISCHARGE}
DIRECTIONS: tuple[tuple[str, int, int], ...] = (
    ("charge", BLOCKS_CHARGE, OUT_CHARGE),
    ("discharge", BLOCKS_DISCHARGE, OUT_DISCHARGE),
)
"""Direction name, the protection's ``blocks`` bit, and the ``hal_sim`` output flag."""

# Nominal plant: well inside every default limit.
NOMINAL_CELL_V = 3.7
NOMINAL_CURRENT_A = 0.0
NOMINAL_TEMP_C = 25.0

STUCK_CURRENT_FACTOR = 2
"""The stuck-reading run charges at this multiple of the board's ``stuck_current_ma``."""
RISE_RATE_C_PER_MIN = 3.0
"""The temperature-rise run ramps one sensor at this rate (the default limit is 2 °C/min)."""
RISE_SPAN_MS = RISE_SLOTS * RISE_SLOT_MS
"""The firmware's temperature history: ``RISE_SLOTS`` slots written every ``RISE_SLOT_MS``."""

TAIL_FORMAT = "<HlbB"
"""After the u16 codes: pack-voltage code, DC-link mV (-1: none), contactor feedback
(-1: none), presence button (0: not held), as ``hal_sim.SimHal`` unpacks them."""
if struct.calcsize(TAIL_FORMAT) != EXTRA_BYTES:
    raise RuntimeError(f"hal_sim expects {EXTRA_BYTES} bytes after the codes; "
                       f"{TAIL_FORMAT!r} packs {struct.calcsize(TAIL_FORMAT)}")


# -- stimulus: physical values -> ADC codes ---------------------------------------


@dataclass(frozen=True)
class Stimulus:
    """What the sensors see: cell voltages (V), current (A, + = charging),
    temperatures (°C); the first ``open_sensors`` temperature channels open (code
    at the top rail), and the pack-voltage sensor ``pack_offset_mv`` above the
    sum of the cells."""

    cells_v: tuple[float, ...]
    current_a: float
    temps_c: tuple[float, ...]
    open_sensors: int = 0
    pack_offset_mv: int = 0


class Encoder:
    """Stimulus -> the bytes ``hal_sim.SimHal`` reads: u16 per cell, the current,
    u16 per temperature sensor, then ``TAIL_FORMAT`` (pack code, no DC-link
    sensor, no contactor feedback)."""

    def __init__(self, board: dict[str, Any], sensors: SensorModel) -> None:
        self.sensors = sensors
        fe = board["frontend"]
        self.temp_rail = (1 << fe["temp_adc"]["bits"]) - 1
        pack = fe.get("pack_adc")
        self.pack_max = (1 << pack["bits"]) - 1 if pack else 0
        self.pack_fs_mv = pack["full_scale_mv"] if pack else 0

    def cell_codes(self, s: Stimulus) -> list[int]:
        return [self.sensors.cell_code(v) for v in s.cells_v]

    def pack_code(self, s: Stimulus) -> int:
        """The pack sensor's code (0 on a board without one: SimHal ignores it)."""
        if not self.pack_max:
            return 0
        mv = sum(s.cells_v) * 1000 + s.pack_offset_mv
        return min(max(round(mv / self.pack_fs_mv * self.pack_max), 0), self.pack_max)

    def pack(self, cells: Sequence[int], s: Stimulus) -> bytes:
        """``s`` with the cell codes ``cells`` (a stuck or moving reading)."""
        temps = [self.sensors.temp_code(t) for t in s.temps_c]
        for j in range(s.open_sensors):
            temps[j] = self.temp_rail
        values = [*cells, self.sensors.current_code(s.current_a), *temps]
        return (struct.pack(f"<{len(values)}H", *values)
                + struct.pack(TAIL_FORMAT, self.pack_code(s), -1, -1, 0))

    def codes(self, s: Stimulus) -> bytes:
        return self.pack(self.cell_codes(s), s)


def nominal(board: dict[str, Any]) -> Stimulus:
    return Stimulus((NOMINAL_CELL_V,) * board["cells"], NOMINAL_CURRENT_A,
                    (NOMINAL_TEMP_C,) * board["temp_sensors"])


def _replace(values: tuple[float, ...], index: int, value: float) -> tuple[float, ...]:
    out = list(values)
    out[index] = value
    return tuple(out)


@dataclass(frozen=True)
class QuantityKind:
    """How to show a watched quantity and how to force it to a value.

    ``force(base, value)`` returns ``base`` with the quantity at ``value`` (in the
    firmware's unit) and everything else left alone; ``where`` names what is
    forced; ``show`` formats a value in the firmware's unit.
    """

    label: str
    where: str
    force: Callable[[Stimulus, int], Stimulus]
    show: Callable[[int], str]


def _mv(value: int) -> str:
    return f"{value} mV"


def _ma(value: int) -> str:
    return f"{value} mA"


def _ms(value: int) -> str:
    return f"{value} ms"


def _s(ms: int) -> str:
    return f"{ms // 1000} s" if ms % 1000 == 0 else _ms(ms)


def _dc(value: int) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 10}.{abs(value) % 10} °C"


def _channels(value: int) -> str:
    return f"{value} channel" if value == 1 else f"{value} channels"


def _cell(s: Stimulus, mv: int) -> Stimulus:
    return replace(s, cells_v=_replace(s.cells_v, 0, mv / 1000))


def _sensor(s: Stimulus, dc: int) -> Stimulus:
    return replace(s, temps_c=_replace(s.temps_c, 0, dc / 10))


QUANTITIES: dict[int, QuantityKind] = {
    Q_MAX_CELL_MV: QuantityKind("highest cell voltage", "cell 1", _cell, _mv),
    Q_MIN_CELL_MV: QuantityKind("lowest cell voltage", "cell 1", _cell, _mv),
    Q_MAX_TEMP_DC: QuantityKind("hottest sensor", "sensor 1", _sensor, _dc),
    Q_MIN_TEMP_DC: QuantityKind("coldest sensor", "sensor 1", _sensor, _dc),
    Q_CHARGE_MA: QuantityKind(
        "charge current", "current",
        lambda s, ma: replace(s, current_a=ma / 1000), _ma),
    Q_DISCHARGE_MA: QuantityKind(
        "discharge current", "current",
        lambda s, ma: replace(s, current_a=-ma / 1000), _ma),
    Q_CELL_SPREAD_MV: QuantityKind(
        "cell spread (highest - lowest)", "cell 1 above the others",
        lambda s, mv: _cell(s, round(s.cells_v[1] * 1000) + mv), _mv),
    Q_TEMPS_RAILED: QuantityKind(
        "temperature channels at an ADC rail", "sensor 1 open (its code at the top rail)",
        lambda s, n: replace(s, open_sensors=n), _channels),
    Q_PACK_MISMATCH_MV: QuantityKind(
        "pack sensor against the sum of cells", "pack sensor above the sum of cells",
        lambda s, mv: replace(s, pack_offset_mv=mv), _mv),
}
"""Threshold quantities: a static step across the limit trips them."""


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
    severity: int
    blocks: int
    debounce: int

    def beyond(self, reading: int) -> bool:
        return reading > self.trip if self.above else reading < self.trip

    def inside(self, reading: int) -> bool:
        return reading < self.release if self.above else reading > self.release

    @property
    def severity_name(self) -> str:
        return SEVERITY_NAMES[self.severity]

    @property
    def directions(self) -> tuple[str, ...]:
        """The directions an alarm holds at zero (none for a warning or fault)."""
        if self.severity != ALARM:
            return ()
        return tuple(name for name, bit, _ in DIRECTIONS if self.blocks & bit)


def held_ms(delay_ms: int, debounce: int, period_ms: int) -> int:
    """From the first sample that sees a condition to the one that acts on it: the
    delay in whole periods, and at least ``debounce`` samples in all."""
    return max(-(-delay_ms // period_ms), debounce - 1) * period_ms


def worst_case_ms(onset_ms: int, delay_ms: int, debounce: int, period_ms: int) -> int:
    """Latest reaction: the condition holds at every instant ``onset_ms`` after the
    stimulus started, so a sample sees it at most one period later; then the delay
    and debounce count."""
    return onset_ms + period_ms + held_ms(delay_ms, debounce, period_ms)


def expected_ms(onset_ms: int, phase_ms: int, delay_ms: int, debounce: int,
                period_ms: int) -> int:
    """The exact reaction when the stimulus starts ``phase_ms`` into a period and the
    condition holds at every instant more than ``onset_ms`` after that: the first
    sample after it, then the delay and debounce count."""
    first = ((phase_ms + onset_ms) // period_ms + 1) * period_ms - phase_ms
    return first + held_ms(delay_ms, debounce, period_ms)


class Spec(ABC):
    """One protection and the stimulus that trips and releases it.

    ``codes(t, t_cross, t_clear)`` are the codes of the sample at board time ``t``
    for a stimulus that started at ``t_cross`` (None: not yet) and was cleared at
    ``t_clear`` (None: not yet). ``trip_onset_ms``: the condition holds at every
    instant that long after ``t_cross``; ``release_onset_ms`` likewise after
    ``t_clear`` (None: not known exactly; ``release_bound_ms`` bounds it).
    """

    limit: Limit
    crossed: tuple[Limit, ...]
    """Other protections the stimulus crosses too (the same quantity watched at
    another level, say). The clearing is back inside their release thresholds as
    well, so that none of them holds the output open."""
    scenario: str
    period_ms: int
    trip_onset_ms: int
    release_onset_ms: int | None
    release_bound_ms: int
    warmup_steps: int

    @property
    def name(self) -> str:
        return self.limit.name

    @abstractmethod
    def codes(self, t_ms: int, t_cross: int | None, t_clear: int | None) -> bytes: ...

    @property
    @abstractmethod
    def label(self) -> str: ...

    @property
    @abstractmethod
    def where(self) -> str: ...

    @abstractmethod
    def show(self, value: int) -> str: ...

    def trip_worst_ms(self, lim: Limit | None = None) -> int:
        lim = lim or self.limit
        return worst_case_ms(self.trip_onset_ms, lim.trip_delay_ms, lim.debounce, self.period_ms)

    def release_worst_ms(self, lim: Limit | None = None) -> int:
        lim = lim or self.limit
        return worst_case_ms(self.release_bound_ms, lim.release_delay_ms, lim.debounce,
                             self.period_ms)

    def _stage(self, t_ms: int, t_cross: int | None, t_clear: int | None) -> int:
        """0 before the crossing, 1 from it, 2 from the clearing (instants after)."""
        if t_clear is not None and t_ms > t_clear:
            return 2
        return 1 if t_cross is not None and t_ms > t_cross else 0


@dataclass(frozen=True)
class StepSpec(Spec):
    """A threshold quantity: steps from ``base`` to just beyond the trip limit, and
    back to just inside the release threshold of everything it crossed."""

    limit: Limit
    crossed: tuple[Limit, ...]
    period_ms: int
    base: Stimulus  # the plant before the crossing and around it
    beyond: int  # forced value (firmware unit), just past the trip limit
    beyond_reads: int  # what the firmware reads for it
    inside: int  # forced value after the clearing
    inside_reads: int
    base_codes: bytes
    beyond_codes: bytes
    inside_codes: bytes
    scenario: str = "step"
    trip_onset_ms: int = 0
    release_onset_ms: int | None = 0
    release_bound_ms: int = 0
    warmup_steps: int = WARMUP_STEPS

    @property
    def kind(self) -> QuantityKind:
        return QUANTITIES[self.limit.quantity]

    @property
    def label(self) -> str:
        return self.kind.label

    @property
    def where(self) -> str:
        return self.kind.where

    def show(self, value: int) -> str:
        return self.kind.show(value)

    def codes(self, t_ms: int, t_cross: int | None, t_clear: int | None) -> bytes:
        return (self.base_codes, self.beyond_codes, self.inside_codes)[
            self._stage(t_ms, t_cross, t_clear)]


@dataclass(frozen=True)
class StuckSpec(Spec):
    """``Q_STUCK_MS``: a live plant (every cell code moves by one LSB each period,
    as converter noise does) charging at ``current_ma``; cell 1's code freezes at
    the crossing, at the value the firmware read last, and moves again at the
    clearing (its first code after it differs from the frozen one)."""

    limit: Limit
    crossed: tuple[Limit, ...]
    period_ms: int
    base: Stimulus
    cell_codes: tuple[int, ...]
    current_ma: int
    stuck_current_ma: int
    encoder: Encoder = field(compare=False, repr=False)
    scenario: str = "stuck"
    trip_onset_ms: int = 0
    release_onset_ms: int | None = 0
    release_bound_ms: int = 0
    warmup_steps: int = WARMUP_STEPS

    @property
    def label(self) -> str:
        return f"longest unchanged cell code while ≥ {self.stuck_current_ma} mA flows"

    @property
    def where(self) -> str:
        return (f"cell 1's code frozen at its last reading, charging at {self.current_ma} mA; "
                "every other code moves 1 LSB each period")

    def show(self, value: int) -> str:
        return _ms(value)

    def live(self, t_ms: int, shift: int = 0) -> list[int]:
        parity = (t_ms // self.period_ms + shift) % 2
        return [c + parity for c in self.cell_codes]

    def codes(self, t_ms: int, t_cross: int | None, t_clear: int | None) -> bytes:
        cells = self.live(t_ms)
        stage = self._stage(t_ms, t_cross, t_clear)
        if stage:
            assert t_cross is not None
            # The last sample at or before the freeze: its code is the frozen one.
            frozen = self.live(t_cross // self.period_ms * self.period_ms)[0]
            if stage == 1:
                cells[0] = frozen
            else:
                assert t_clear is not None
                first = (t_clear // self.period_ms + 1) * self.period_ms
                shift = 1 if self.live(first)[0] == frozen else 0
                cells[0] = self.live(t_ms, shift)[0]
        return self.encoder.pack(cells, self.base)


@dataclass(frozen=True)
class RiseSpec(Spec):
    """``Q_TEMP_RISE_DC``: every sensor steady at the base temperature for a whole
    history span, then sensor 1 ramps at ``rate_c_per_min`` from the crossing; the
    ramp stops at the clearing and the sensor holds the temperature it reached."""

    limit: Limit
    crossed: tuple[Limit, ...]
    period_ms: int
    base: Stimulus
    rate_c_per_min: float
    encoder: Encoder = field(compare=False, repr=False)
    trip_onset_ms: int = 0
    """The longest ramp time at which the firmware does not yet read the rise beyond
    the trip limit (from the firmware's own conversion of the codes)."""
    scenario: str = "ramp"
    release_onset_ms: int | None = None
    release_bound_ms: int = RISE_SPAN_MS
    """A span after the ramp stops every history slot holds the final temperature."""
    warmup_steps: int = 0

    @property
    def label(self) -> str:
        return ("largest sensor rise against the oldest slot of its history "
                f"({_s(RISE_SPAN_MS)})")

    @property
    def where(self) -> str:
        return (f"sensor 1 ramps at {self.rate_c_per_min:g} °C/min from "
                f"{self.base.temps_c[0]:g} °C, steady for {_s(RISE_SPAN_MS)} before")

    def show(self, value: int) -> str:
        return _dc(value)

    def at(self, ramp_ms: int) -> Stimulus:
        t = self.base.temps_c[0] + self.rate_c_per_min * ramp_ms / 60000
        return replace(self.base, temps_c=_replace(self.base.temps_c, 0, t))

    def codes(self, t_ms: int, t_cross: int | None, t_clear: int | None) -> bytes:
        stage = self._stage(t_ms, t_cross, t_clear)
        if not stage:
            return self.encoder.codes(self.base)
        assert t_cross is not None
        end = t_ms if stage == 1 or t_clear is None else t_clear
        return self.encoder.codes(self.at(end - t_cross))


class _Reader:
    """The firmware itself under CPython, reading one stimulus after another: what
    a control step one period after a first sample (at boot) reads.

    Every quantity the protection watches is loaded from the measurement alone, and
    each read starts a fresh one: a pair of samples reads the same whatever was read
    before. So each pair is stepped once and all its quantities kept (the searches
    read several quantities of one stimulus, and the stimuli of protections on the
    same quantity over again)."""

    def __init__(self, board: dict[str, Any]) -> None:
        self.sim = SimBoard(json.dumps(board))  # no storage: nothing is written anywhere
        self.period_ms: int = board["control_period_ms"]
        self._read: dict[tuple[bytes, bytes], tuple[int, ...]] = {}

    def read(self, before: bytes, after: bytes, quantity: int) -> int:
        """The value of ``quantity`` at a sample of ``after`` that follows one of
        ``before`` by a period, on a fresh measurement (the history of the
        temperature rise and the stuck reading starts at ``before``)."""
        values = self._read.get((before, after))
        if values is None:
            sim = self.sim
            bms = sim.bms
            bms.meas = Measurement(bms.n_cells, bms.n_temps, bms.meas.stuck_current_ma)
            sim.step(0, before, b"")
            sim.step(self.period_ms, after, b"")
            values = self._read[before, after] = tuple(bms.protection.values)
        return int(values[quantity])


def _search(limit: Limit, start: int, outward: bool, done: Callable[[int], bool]) -> int:
    """The first value from ``start`` on, one firmware unit after another (outward:
    in the tripping direction), that satisfies ``done``."""
    step = 1 if outward == limit.above else -1
    for k in range(1, 100_001):
        value = start + k * step
        if done(value):
            return value
    raise RuntimeError(f"{limit.name}: no stimulus found from {start}")


def protection_limits(board: dict[str, Any]) -> list[Limit]:
    """Every protection of the firmware table, as the firmware configures it for
    ``board`` (limits, delays, severities, debounce counts read back from its
    Protection)."""
    p = SimBoard(json.dumps(board)).bms.protection
    return [Limit(str(row[0]), int(p.bit[i]), int(p.quantity[i]), bool(p.above[i]),
                  int(p.trip[i]), int(p.release[i]), int(p.trip_delay_ms[i]),
                  int(p.release_delay_ms[i]), int(p.severity[i]), int(p.blocks[i]),
                  int(p.debounce[i]))
            for i, row in enumerate(protection_table())]


def _check_base(reader: _Reader, before: bytes, after: bytes, limits: Sequence[Limit],
                name: str) -> None:
    for other in limits:
        if not other.inside(reader.read(before, after, other.quantity)):
            raise RuntimeError(f"{name}: the plant before the stimulus is not inside the "
                               f"release threshold of {other.name}")


def _step_spec(lim: Limit, limits: list[Limit], board: dict[str, Any], encoder: Encoder,
               reader: _Reader) -> StepSpec:
    kind = QUANTITIES[lim.quantity]
    base = nominal(board)
    base_codes = encoder.codes(base)
    _check_base(reader, base_codes, base_codes, limits, lim.name)

    def reads(value: int, quantity: int) -> int:
        return reader.read(base_codes, encoder.codes(kind.force(base, value)), quantity)

    beyond = _search(lim, lim.trip, True, lambda v: lim.beyond(reads(v, lim.quantity)))
    crossed = tuple(o for o in limits if o is not lim and o.beyond(reads(beyond, o.quantity)))
    involved = (lim, *crossed)
    inside = _search(lim, lim.release, False,
                     lambda v: all(o.inside(reads(v, o.quantity)) for o in involved))
    return StepSpec(lim, crossed, reader.period_ms, base, beyond, reads(beyond, lim.quantity),
                    inside, reads(inside, lim.quantity), base_codes,
                    encoder.codes(kind.force(base, beyond)),
                    encoder.codes(kind.force(base, inside)))


def _stuck_spec(lim: Limit, limits: list[Limit], board: dict[str, Any], encoder: Encoder,
                reader: _Reader) -> StuckSpec:
    stuck_ma = int(reader.sim.bms.meas.stuck_current_ma)
    current_ma = STUCK_CURRENT_FACTOR * stuck_ma
    base = replace(nominal(board), current_a=current_ma / 1000)
    period = reader.period_ms
    spec = StuckSpec(lim, (), period, base, tuple(encoder.cell_codes(base)), current_ma,
                     stuck_ma, encoder,
                     # The firmware counts the time unchanged in whole periods from the
                     # last sample at which the code moved: past the limit on the
                     # (limit // period + 1)-th frozen sample.
                     trip_onset_ms=lim.trip // period * period)
    # A live plant is inside every release threshold, the stuck reading's included.
    _check_base(reader, spec.codes(0, None, None), spec.codes(period, None, None), limits,
                lim.name)
    return spec


def _rise_spec(lim: Limit, limits: list[Limit], board: dict[str, Any], encoder: Encoder,
               reader: _Reader) -> RiseSpec:
    base = nominal(board)
    base_codes = encoder.codes(base)
    _check_base(reader, base_codes, base_codes, limits, lim.name)
    if lim.trip >= RISE_RATE_C_PER_MIN * 10:
        raise RuntimeError(f"{lim.name}: a ramp of {RISE_RATE_C_PER_MIN} °C/min does not "
                           f"exceed the limit of {_dc(lim.trip)} per minute")
    period = reader.period_ms
    spec = RiseSpec(lim, (), period, base, RISE_RATE_C_PER_MIN, encoder,
                    warmup_steps=-(-RISE_SPAN_MS // period) + WARMUP_STEPS)

    def beyond(ramp_ms: int) -> bool:
        return lim.beyond(reader.read(base_codes, encoder.codes(spec.at(ramp_ms)),
                                      lim.quantity))

    # The reading only grows along the ramp: bisect for the first ramp time beyond.
    lo, hi = 0, 1
    while not beyond(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if beyond(mid) else (mid, hi)
    if hi + period >= RISE_SPAN_MS - RISE_SLOT_MS:
        raise RuntimeError(f"{lim.name}: the ramp is too slow to trip within the history")
    after = encoder.codes(spec.at(hi))
    crossed = tuple(o for o in limits
                    if o is not lim and o.beyond(reader.read(base_codes, after, o.quantity)))
    return replace(spec, crossed=crossed, trip_onset_ms=lo)


SCENARIOS: dict[int, Callable[[Limit, list[Limit], dict[str, Any], Encoder, _Reader], Spec]] = {
    Q_STUCK_MS: _stuck_spec,
    Q_TEMP_RISE_DC: _rise_spec,
}
"""Time-based quantities: no static stimulus crosses them; a scenario does."""


def protection_specs(board: dict[str, Any], sensors: SensorModel) -> list[Spec]:
    """Every protection with its stimulus. A threshold quantity goes one firmware
    unit after another past the trip limit until the firmware reads it past, and
    back until it reads inside the release threshold of everything that crossed;
    a time-based one gets its scenario."""
    encoder = Encoder(board, sensors)
    reader = _Reader(board)
    limits = protection_limits(board)
    specs: list[Spec] = []
    for lim in limits:
        if lim.quantity in QUANTITIES:
            specs.append(_step_spec(lim, limits, board, encoder, reader))
        elif lim.quantity in SCENARIOS:
            specs.append(SCENARIOS[lim.quantity](lim, limits, board, encoder, reader))
        else:
            raise RuntimeError(
                f"protection {lim.name} watches quantity {lim.quantity}, which has no forcing "
                "function or scenario: add one to QUANTITIES or SCENARIOS in "
                "benchmarks/reaction_times.py"
            )
    return specs


# -- one run -------------------------------------------------------------------------


@dataclass
class Run:
    """One stimulus and its clearing at one phase (all times simulated ms)."""

    phase_ms: int
    reaction_ms: int | None  # crossing -> output open (None: it stayed closed)
    release_ms: int | None  # clearing -> output closed, host silent (None: latched or never open)
    blocked: dict[str, int]  # direction -> crossing to its `allowed` bit dropping
    unblocked: dict[str, int]  # direction -> clearing to its `allowed` bit coming back
    trips: dict[str, int]  # protection -> crossing to its FAULT_EVENT trip
    releases: dict[str, int]  # protection -> clearing to its FAULT_EVENT release
    trip_value: int  # the value in the protection's own trip event
    release_value: int  # ... and in its release event
    cleared_release_ms: int | None = None
    """Latched only: clearing -> output closed with CLEAR_FAULTS sent every period."""


@dataclass(frozen=True)
class Event:
    t_ms: int
    kind: str
    bits: int
    severity: str
    value: int


class BoardDriver:
    """The firmware on a runtime, stepped on simulated time with given codes."""

    def __init__(self, runtime: FirmwareRuntime, board: dict[str, Any]) -> None:
        self.runtime = runtime
        self.board_json = json.dumps(board)
        self.unique_id = b"\x5e\x11" + board["name"].encode()[:6]  # as SimulatedBoard
        self.period_ms: int = board["control_period_ms"]
        self.t_ms = 0
        self.outputs = 0
        self.reader = FrameReader()
        self.events: list[Event] = []
        self.seq = 0

    def boot(self) -> None:
        self.runtime.boot(self.board_json, self.unique_id)
        self.t_ms = 0
        self.outputs = 0
        self.reader = FrameReader()
        self.events = []

    @property
    def closed(self) -> bool:
        return bool(self.outputs & OUT_CLOSED)

    def allowed(self, flag: int) -> bool:
        return bool(self.outputs & flag)

    def step(self, codes: bytes, rx: bytes = b"") -> bool:
        """One control step at ``t_ms + period``; return whether the output is closed."""
        self.t_ms += self.period_ms
        tx, self.outputs = self.runtime.step(self.period_ms, codes, rx)
        for frame in self.reader.feed(tx):
            if frame.msg_type == FAULT_EVENT:
                ev = parse_payload(frame.msg_type, frame.payload)
                self.events.append(Event(int(ev["board_time_ms"]), str(ev["kind"]),
                                         int(ev["fault"]), str(ev["severity"]),
                                         int(ev["value"])))
        return self.closed

    def clear_faults_frame(self) -> bytes:
        self.seq += 1
        return encode_frame(CLEAR_FAULTS, self.seq, b"")

    def first_events(self, kind: str, after_ms: int) -> dict[int, Event]:
        """Fault bit -> its first ``kind`` event after ``after_ms``."""
        out: dict[int, Event] = {}
        for ev in self.events:
            if ev.kind == kind and ev.t_ms > after_ms:
                bit = 1
                while bit <= ev.bits:
                    if ev.bits & bit and bit not in out:
                        out[bit] = ev
                    bit <<= 1
        return out

    def event_times(self, kind: str, after_ms: int) -> dict[int, int]:
        return {bit: ev.t_ms for bit, ev in self.first_events(kind, after_ms).items()}


def _check_events(name: str, events: dict[int, Event], involved: dict[int, Limit]) -> None:
    for bit, ev in events.items():
        if bit not in involved:
            raise RuntimeError(f"{name}: fault bit {bit} ({ev.kind}) changed too")
        if ev.severity != involved[bit].severity_name:
            raise RuntimeError(f"{name}: {involved[bit].name} {ev.kind} event says severity "
                               f"{ev.severity}, the table {involved[bit].severity_name}")


def measure_run(drv: BoardDriver, spec: Spec, phase_ms: int,
                clear_every_period: bool = False) -> Run:
    """Boot, start the stimulus at ``phase_ms`` into a period, clear it at the same
    phase in the period after the trip; with ``clear_every_period`` the host sends
    CLEAR_FAULTS at every step from the clearing on."""
    period = drv.period_ms
    own = spec.limit
    involved = {lim.bit: lim for lim in (own, *spec.crossed)}
    margin = LATCH_MARGIN_STEPS * period

    drv.boot()
    for _ in range(spec.warmup_steps):
        drv.step(spec.codes(drv.t_ms + period, None, None))
    if not drv.closed or any(not drv.allowed(flag) for _, _, flag in DIRECTIONS):
        raise RuntimeError(f"{own.name}: output not closed, or a direction not allowed, at "
                           "nominal values after boot (a fault latched from an earlier run?)")

    # Crossing: the stimulus acts at every instant after t_cross; sampled at step instants.
    t_cross = drv.t_ms + phase_ms
    t_open: int | None = None
    t_blocked: dict[str, int] = {}
    while drv.t_ms + period - t_cross <= spec.trip_worst_ms() + margin:
        if not drv.step(spec.codes(drv.t_ms + period, t_cross, None)) and t_open is None:
            t_open = drv.t_ms
        for direction, _, flag in DIRECTIONS:
            if not drv.allowed(flag) and direction not in t_blocked:
                t_blocked[direction] = drv.t_ms
        if own.bit in drv.event_times("trip", t_cross):
            break
    trip_events = drv.first_events("trip", t_cross)
    if own.bit not in trip_events:
        raise RuntimeError(f"{own.name}: no trip event after the crossing")
    _check_events(own.name, trip_events, involved)
    trips = {bit: ev.t_ms for bit, ev in trip_events.items()}
    fault_trips = [t for bit, t in trips.items() if involved[bit].severity == FAULT]
    if t_open != (min(fault_trips) if fault_trips else None):
        raise RuntimeError(f"{own.name}: output opened at {t_open} ms, the fault trip events "
                           f"say {fault_trips}")
    for direction, bit, _ in DIRECTIONS:
        blocking = [t for b, t in trips.items()
                    if involved[b].severity == ALARM and involved[b].blocks & bit]
        if t_blocked.get(direction) != (min(blocking) if blocking else None):
            raise RuntimeError(f"{own.name}: {direction} blocked at {t_blocked.get(direction)} "
                               f"ms, the alarm trip events say {blocking}")

    # Clearing: in the period after the trip step, at the same phase.
    t_clear = drv.t_ms + phase_ms
    release_limit = max(spec.release_worst_ms(involved[bit]) for bit in trips) + period
    t_closed: int | None = None
    t_unblocked: dict[str, int] = {}
    while drv.t_ms + period - t_clear <= release_limit + margin:
        rx = drv.clear_faults_frame() if clear_every_period and drv.t_ms > t_clear else b""
        closed = drv.step(spec.codes(drv.t_ms + period, t_cross, t_clear), rx)
        if closed and t_open is not None and t_closed is None:
            t_closed = drv.t_ms
        for direction, _, flag in DIRECTIONS:
            if direction in t_blocked and drv.allowed(flag) and direction not in t_unblocked:
                t_unblocked[direction] = drv.t_ms
        released = drv.event_times("release", t_clear)
        if (all(bit in released for bit in trips) and (t_open is None or t_closed is not None)
                and len(t_unblocked) == len(t_blocked)):
            break
    release_events = drv.first_events("release", t_clear)
    if any(bit not in release_events for bit in trips):
        raise RuntimeError(f"{own.name}: not everything that tripped released after the "
                           "clearing")
    _check_events(own.name, release_events, involved)
    releases = {bit: ev.t_ms for bit, ev in release_events.items()}
    for direction, bit, _ in DIRECTIONS:
        blocking = [releases[b] for b in trips
                    if involved[b].severity == ALARM and involved[b].blocks & bit]
        if t_unblocked.get(direction) != (max(blocking) if blocking else None):
            raise RuntimeError(f"{own.name}: {direction} allowed again at "
                               f"{t_unblocked.get(direction)} ms, the alarm release events "
                               f"say {blocking}")
    if t_closed is None and t_open is not None:
        # Latched (or it would have closed by now): the host clears it, so that the
        # next boot starts clean (latches survive resets), and it must close.
        rx = drv.clear_faults_frame()
        for _ in range(LATCH_MARGIN_STEPS):
            if drv.step(spec.codes(drv.t_ms + period, t_cross, t_clear), rx):
                break
            rx = b""
        else:
            raise RuntimeError(f"{own.name}: output still open after CLEAR_FAULTS")
    elif t_closed is not None and not clear_every_period:
        last = max(t for bit, t in releases.items() if involved[bit].severity == FAULT)
        if t_closed != last:
            raise RuntimeError(f"{own.name}: output closed at {t_closed} ms but the last "
                               f"fault release event says {last} ms")
    return Run(
        phase_ms=phase_ms,
        reaction_ms=None if t_open is None else t_open - t_cross,
        release_ms=None if t_closed is None else t_closed - t_clear,
        blocked={d: t - t_cross for d, t in sorted(t_blocked.items())},
        unblocked={d: t - t_clear for d, t in sorted(t_unblocked.items())},
        trips={involved[bit].name: t - t_cross for bit, t in sorted(trips.items())},
        releases={involved[bit].name: releases[bit] - t_clear for bit in sorted(trips)},
        trip_value=trip_events[own.bit].value,
        release_value=release_events[own.bit].value,
    )


def measure_phase(drv: BoardDriver, spec: Spec, phase_ms: int) -> Run:
    """One phase; a latching protection is run again with a host that clears."""
    run = measure_run(drv, spec, phase_ms)
    if run.reaction_ms is not None and run.release_ms is None:
        again = measure_run(drv, spec, phase_ms, clear_every_period=True)
        if (again.reaction_ms, again.blocked, again.trips, again.releases) != (
                run.reaction_ms, run.blocked, run.trips, run.releases):
            raise RuntimeError(f"{spec.name}: CLEAR_FAULTS changed the timing: {again}")
        run.cleared_release_ms = again.release_ms
    if isinstance(spec, StepSpec) and (run.trip_value, run.release_value) != (
            spec.beyond_reads, spec.inside_reads):
        raise RuntimeError(f"{spec.name}: the events report {run.trip_value} and "
                           f"{run.release_value}, the stimulus was built to read "
                           f"{spec.beyond_reads} and {spec.inside_reads}")
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
        return self.spec.trip_worst_ms()

    @property
    def release_worst_ms(self) -> int:
        """Latched: with a host that sends CLEAR_FAULTS every period, which the
        firmware handles before the step in which the protection releases."""
        worst = self.spec.release_worst_ms()
        return worst + self.period_ms if self.latched else worst


def measure_all(runtime: str = "micropython", board: str = BOARD,
                phases: Sequence[int] = PHASES_MS,
                only: Sequence[str] | None = None) -> list[Timing]:
    """Measure every protection (or those named in ``only``) on ``runtime``."""
    # One switch for both directions, so every fault's reaction is the output
    # opening; on a board with separate charge and discharge switches a cell-voltage
    # fault stops its own direction instead, in the same step (tests/test_flash_policy.py).
    board_cfg = {**load_board(board), "switches": "single"}
    sensors = SensorModel(board_cfg)  # no noise: codes are exact and repeatable
    specs = [s for s in protection_specs(board_cfg, sensors) if only is None or s.name in only]
    if only is not None and len(specs) != len(set(only)):
        raise ValueError(f"unknown protection among {list(only)}")
    period = int(board_cfg["control_period_ms"])
    if any(not 0 <= p < period for p in phases):
        raise ValueError(f"phases must lie in [0, {period}) ms")
    rt = make_runtime(runtime)
    try:
        if isinstance(rt, MicroPythonRuntime):
            # as deployed: CLEAR_FAULTS imports admin.mpy, not admin.py
            rt.install_mpy(built_firmware())
        drv = BoardDriver(rt, board_cfg)
        out: list[Timing] = []
        for spec in specs:
            timing = Timing(spec, period)
            for phase in phases:
                timing.runs.append(measure_phase(drv, spec, phase))
            kinds = {(r.reaction_ms is None, r.release_ms is None, tuple(r.blocked))
                     for r in timing.runs}
            if len(kinds) > 1:
                raise RuntimeError(f"{spec.name}: opens, latches or blocks at some phases only")
            out.append(timing)
        return out
    finally:
        rt.close()


def spec_check(timings: Sequence[Timing], board: str = BOARD,
               safety: dict[str, Any] | None = None) -> list[str]:
    """The measured behaviour against the safety specification (``spec/safety.toml``),
    not against the firmware's own table: every protection's trip and release come at
    exactly the time its specified delay and debounce count give (the first sample
    after the crossing, then the delay in whole periods, at least debounce - 1
    periods; a release whose onset is not known exactly within its bound), and it
    acts as its specified severity: a fault opens the output and latches, an alarm
    holds exactly its specified direction(s) and leaves the output closed, a warning
    changes neither. Returns what disagrees (empty: all agree)."""
    want = expected(load_spec() if safety is None else safety, load_board(board))
    out: list[str] = []
    for t in timings:
        s, period = t.spec, t.period_ms
        name = s.name
        if name not in want:
            out.append(f"{name}: not in the safety specification")
            continue
        w = want[name]
        for run in t.runs:
            at = f"{name} (phase {run.phase_ms} ms)"
            trip = expected_ms(s.trip_onset_ms, run.phase_ms, w.trip_delay_ms, w.debounce,
                               period)
            if run.trips[name] != trip:
                out.append(f"{at}: tripped after {run.trips[name]} ms; the specified "
                           f"{w.trip_delay_ms} ms delay and debounce {w.debounce} give "
                           f"{trip} ms")
            own = run.releases[name]
            if s.release_onset_ms is not None:
                release = expected_ms(s.release_onset_ms, run.phase_ms, w.release_delay_ms,
                                      w.debounce, period)
                if own != release:
                    out.append(f"{at}: released after {own} ms; the specified "
                               f"{w.release_delay_ms} ms delay and debounce {w.debounce} "
                               f"give {release} ms")
            else:
                low = max(w.release_delay_ms, (w.debounce - 1) * period)
                high = worst_case_ms(s.release_bound_ms, w.release_delay_ms, w.debounce,
                                     period)
                if not low < own <= high:
                    out.append(f"{at}: released after {own} ms, outside the specified "
                               f"({low}, {high}] ms")
        out += _severity_check(t, w)
    return out


def _severity_check(t: Timing, w: Expected) -> list[str]:
    name = t.spec.name
    holds = {d for d, bit, _ in DIRECTIONS if HOLDS_BITS[w.holds] & bit}
    if w.severity == "fault":
        ok = t.opens_output and t.latched
    elif w.severity == "alarm":
        ok = not t.opens_output and all(set(r.blocked) == holds for r in t.runs)
    else:
        ok = not t.opens_output and all(not r.blocked for r in t.runs)
    if ok:
        return []
    return [f"{name}: specified {w.severity} holding {w.holds}, but the output "
            f"{'opened' if t.opens_output else 'stayed closed'}"
            f"{', latched' if t.latched else ''} and `allowed` dropped "
            f"{sorted({d for r in t.runs for d in r.blocked}) or 'nothing'}"]


# -- output ----------------------------------------------------------------------------


def _span(values: Sequence[int], show: Callable[[int], str] = _ms) -> str:
    lo, hi = min(values), max(values)
    if lo == hi:
        return show(lo)
    lo_text, hi_text = show(lo), show(hi)
    unit = lo_text.split(" ", 1)[1] if " " in lo_text else ""
    if unit and hi_text.endswith(" " + unit):
        return f"{lo_text.split(' ', 1)[0]}–{hi_text}"
    return f"{lo_text}–{hi_text}"


def _limit(spec: Spec, threshold: int, tripping: bool) -> str:
    sign = ">" if spec.limit.above == tripping else "<"
    return f"{sign} {spec.show(threshold)}"


def _known(values: Sequence[int | None]) -> list[int]:
    return [v for v in values if v is not None]


def _and(words: Sequence[str]) -> str:
    return " and ".join(words)


def severity_text(lim: Limit) -> str:
    """What the firmware table says the protection does when it trips."""
    if lim.severity == FAULT:
        return "fault: opens the output, latches"
    if lim.severity == ALARM:
        return f"alarm: holds {_and(lim.directions)} at zero"
    return "warning: reported only"


def table_rows(timings: Sequence[Timing], board: str = BOARD) -> list[list[str]]:
    """One row a protection; its delays are the safety specification's (which the
    measured times are checked against: :func:`spec_check`)."""
    want = expected(load_spec(), load_board(board))
    rows: list[list[str]] = []
    for t in timings:
        s = t.spec
        lim = s.limit
        w = want[lim.name]
        runs = t.runs
        own_trip, own_release = _span(t.own_trips()), _span(t.own_releases())
        if t.opens_output:
            reactions = _known([r.reaction_ms for r in runs])
            reaction = f"{_span(reactions)}: output opens"
            if reactions != t.own_trips():
                reaction += f" (own trip {own_trip})"
            if t.latched:
                release = ("latched until CLEAR_FAULTS; "
                           f"{_span(_known([r.cleared_release_ms for r in runs]))} "
                           "with CLEAR_FAULTS every period")
            else:
                releases = _known([r.release_ms for r in runs])
                release = f"{_span(releases)}: output closes"
                if releases != t.own_releases():
                    release += f" (own release {own_release})"
        elif lim.directions:
            dirs = _and(lim.directions)
            reaction = (f"{_span([r.blocked[d] for r in runs for d in lim.directions])}: "
                        f"`allowed` drops {dirs}; output stays closed")
            release = (f"{_span([r.unblocked[d] for r in runs for d in lim.directions])}: "
                       f"{dirs} allowed again")
        else:
            untouched = all(not r.blocked for r in runs)
            reaction = f"{own_trip}: trip event" + (
                "; output and `allowed` unchanged" if untouched else "")
            release = f"{own_release}: release event"
        debounce = f"{lim.debounce} sample" + ("s" if lim.debounce != 1 else "")
        rows.append([
            f"`{lim.name}`", severity_text(lim), s.label, _limit(s, lim.trip, True),
            _limit(s, lim.release, False), debounce, f"{w.trip_delay_ms} ms", reaction,
            f"{t.trip_worst_ms} ms", f"{w.release_delay_ms} ms", release,
            f"{t.release_worst_ms} ms",
        ])
    return rows


HEADER = ["protection", "severity", "quantity", "trip at", "release at", "debounce",
          "trip delay (spec)", "reaction min–max", "reaction worst case",
          "release delay (spec)",
          "release min–max", "release worst case"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_table(timings: Sequence[Timing], board: str = BOARD) -> str:
    return markdown_table(HEADER, table_rows(timings, board))


def stimulus_table(timings: Sequence[Timing]) -> str:
    rows: list[list[str]] = []
    for t in timings:
        s = t.spec
        names = []
        for o in s.crossed:
            tripped = sum(o.name in r.trips for r in t.runs)
            note = ("" if tripped == len(t.runs) else
                    " (cleared before its delay)" if not tripped else " (trips at some phases)")
            names.append(f"`{o.name}`{note}")
        crossed = ", ".join(names) or "—"
        trip_values = _span([r.trip_value for r in t.runs], s.show)
        release_values = _span([r.release_value for r in t.runs], s.show)
        if isinstance(s, StepSpec):
            beyond = f"{s.show(s.beyond)} (reads {s.show(s.beyond_reads)})"
            inside = f"{s.show(s.inside)} (reads {s.show(s.inside_reads)})"
        elif isinstance(s, StuckSpec):
            beyond = f"frozen (reads {trip_values} at the trip)"
            inside = f"moves again (reads {release_values} at the release)"
        elif isinstance(s, RiseSpec):
            beyond = (f"read beyond after {s.trip_onset_ms + 1} ms of ramp "
                      f"(reads {trip_values} at the trip)")
            inside = f"ramp stops, sensor holds (reads {release_values} at the release)"
        else:
            raise TypeError(s)
        rows.append([f"`{s.name}`", s.where, beyond, inside, crossed])
    return markdown_table(["protection", "forced", "beyond the trip limit", "after clearing",
                           "also crosses"], rows)


RUNTIME_NAMES = {"micropython": "MicroPython (WebAssembly port), as deployed (mpy-cross .mpy)",
                 "cpython": "CPython"}


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
    stuck = next((t.spec for t in timings if isinstance(t.spec, StuckSpec)), None)
    rise = next((t.spec for t in timings if isinstance(t.spec, RiseSpec)), None)
    scenarios = ""
    if stuck is not None:
        frozen_samples = stuck.limit.trip // period + 1
        scenarios += f"""- `{stuck.name}` watches a time, so no step crosses it. The plant is
  live (every cell code moves by one LSB each period, as converter noise
  does) and charges at {stuck.current_ma} mA, above the board's `stuck_current_ma`
  ({stuck.stuck_current_ma} mA). At the crossing cell 1's code freezes at the value
  the firmware read last; at the clearing it moves again. Reaction: from the
  freeze to the trip; release: from the code moving again. The firmware counts
  the time unchanged in whole periods from the last sample at which the code
  moved, so it passes its limit of {_ms(stuck.limit.trip)} on frozen sample
  {frozen_samples}: the worst case adds {_ms(stuck.trip_onset_ms)}.
"""
    if rise is not None:
        oldest = ((RISE_SLOTS - 1) * RISE_SLOT_MS, RISE_SPAN_MS - period)
        scenarios += f"""- `{rise.name}` watches the rise of each sensor against the oldest
  slot of a history ring ({RISE_SLOTS} slots written every {_s(RISE_SLOT_MS)}, so that
  slot is {oldest[0]}–{_ms(oldest[1])} old): no step crosses it alone. Every
  sensor stays at {rise.base.temps_c[0]:g} °C for {_s(RISE_SPAN_MS)} (the ring holds
  nothing else), then at the crossing sensor 1 ramps at
  {rise.rate_c_per_min:g} °C/min, against a limit of {_dc(rise.limit.trip)}.
  Reaction: from the start of the ramp to the trip event; the worst case adds
  the ramp time after which the firmware reads the rise beyond the limit
  ({_ms(rise.trip_onset_ms + 1)}, found by converting the codes the firmware's
  way). Release: from the ramp stopping (the sensor holds the temperature it
  reached) to the release event; the worst case adds the {_s(RISE_SPAN_MS)} after
  which every slot holds the stopped temperature.
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
- Board `{board}`: default limits, delays, severities and debounce counts,
  control period {period} ms.
- Each protection watching a threshold quantity, on a freshly booted board
  at nominal values: the quantity steps just beyond its trip limit
  {phase_list} ms into a control period. It is beyond at every instant after the crossing and
  the firmware samples at its step instants, so it sees the crossing at the
  next step. In the period after the trip, at the same phase, it steps back
  just inside its release threshold, and that of any other protection the step
  crossed too (the last column of the second table).
{scenarios}- **severity**, from the firmware's table: a **fault** opens the output and
  latches (measured with one switch for both directions: on a board with
  `"switches": "dual"` the cell-voltage faults stop only their own direction
  instead, in the same step, and latch it); an **alarm** leaves the output
  closed and clears its direction's bit in `allowed` (the charge or
  discharge switch the board drives; on a board with `"switches": "dual"`
  that direction's current is held at zero) and releases by itself; a
  **warning** is only reported (FAULT_EVENT, telemetry `warnings`).
- **reaction**: from the crossing to the first control step at which the
  severity acts: the output is open (fault), `allowed` has dropped the
  direction (alarm), the trip event is sent (warning). **release**: from the
  clearing to the first step at which the output is closed again, the
  direction is allowed again, or the release event is sent. Min and max over
  the phases, in simulated time, so every rerun gives the same figures.
- **debounce**: the trip (and the release) also needs that many samples past
  the limit (a run restarts on the third sample back inside within 8).
- **worst case**: one period (a crossing just after a sample), plus the delay
  rounded up to whole control periods, or debounce − 1 periods if that is
  more.
{latching}- **checked against the specification**: the delays in the table are those of
  the safety specification (`spec/safety.toml`), not of the firmware's table.
  Every trip and every release measured here came at exactly the time the
  specified delay and debounce count give (first sample after the crossing,
  then the delay in whole periods; for a release whose onset is not known
  exactly, within its bound), and every protection acted as its specified
  severity and direction; the page is not written otherwise.

{render_table(timings, board)}
The stimulus: the value the sensor model turns into ADC codes and what the
firmware reads from them, one unit (1 mV, 1 mA, 0.1 °C, 1 channel) after
another past the threshold until the firmware reads it past. Everything else
stays at {NOMINAL_CELL_V} V per cell, {NOMINAL_CURRENT_A:g} A and {NOMINAL_TEMP_C:g} °C, and
the pack sensor reads the sum of the cells, except where "forced" says
otherwise. An "also crosses" protection marked "cleared before its delay" saw
the crossing but did not trip: the clearing came first.
For the time-based protections the value is the one in the firmware's own trip
and release events.

{stimulus_table(timings)}
See [protection.md](protection.md) for what the limits and delays mean.
"""


def own_part(page: str) -> str:
    """What this script generates of ``page``: all before a kept section (KEPT)."""
    i = page.find(KEPT)
    return page if i < 0 else page[:i + 1]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Protection reaction times, measured on the "
                                 "simulated board; prints a Markdown table.")
    ap.add_argument("--runtime", choices=["micropython", "cpython"], default="micropython")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="measure only this protection (repeatable; not with --write-docs)")
    ap.add_argument("--write-docs", action="store_true",
                    help=f"write the table into {DOCS_PAGE}")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run in seconds: the CPython runtime, the first protection "
                         "of the table only (unless --only)")
    args = ap.parse_args(argv)
    if (args.only or args.quick) and args.write_docs:
        ap.error("--write-docs needs every protection: drop --only and --quick")
    if args.quick:
        args.runtime = "cpython"
        args.only = args.only or [protection_table()[0][0]]
    timings = measure_all(args.runtime, only=args.only)
    sys.stdout.write(render_table(timings))
    disagree = spec_check(timings)
    if disagree:
        print("the measured behaviour disagrees with spec/safety.toml:", file=sys.stderr)
        for line in disagree:
            print(f"  {line}", file=sys.stderr)
        return 1
    if args.write_docs:
        path = repo_root() / DOCS_PAGE
        old = path.read_text() if path.exists() else ""
        path.write_text(render_page(timings, args.runtime) + old[len(own_part(old)):])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
