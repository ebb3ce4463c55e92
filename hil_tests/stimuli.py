"""How the suite makes each protection of the firmware's table trip.

Every stimulus is computed from the board's own limits (``BoardLimits``: INFO,
the configuration dump, the firmware's table) and its present readings, never
from numbers written for one board. Two kinds:

- ``threshold``: move the protection's threshold across the present reading
  over the link (SET_CONFIG); the board's own measurement then trips it, and
  putting the threshold back releases it. Needs no rig, so it runs unattended
  on a real board (cell voltages, temperatures; the cell spread, which may need
  a current to open up).
- ``plant``: make the plant cross the limit through the rig: a charge or load
  current, a hot or cold cell, an injected wiring or sensor fault.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from cellguard.hil import BoardLimits, HilClient, ProtectionLimits, Rig, set_config
from cellguard.link.client import Telemetry

# Margins a threshold is moved past the present reading (wire units).
VOLTAGE_MARGIN_MV = 100
TEMPERATURE_MARGIN_DC = 30
MIN_SPREAD_MV = 3  # a cell spread the imbalance threshold can be moved across (1 mV apart)
SPREAD_SETTLE_S = 120.0  # under current, before the spread is read (median of five)
BLEED_OHMS = 0.25  # drains a cell at about 5 % of its charge a minute (a 3 Ah cell)
BLEED_WITHIN_S = 600.0  # board time the bleed gets to open the spread


@dataclass
class Bench:
    client: HilClient
    rig: Rig
    limits: BoardLimits

    def reading(self) -> Telemetry:
        return self.client.next_telemetry()


@dataclass
class Stimulus:
    describe: str
    apply: Callable[[], None]
    remove: Callable[[], None]
    trip: int  # the threshold in force while applied (wire unit)
    extra_s: float = 0.0  # board time the condition needs before the trip delay counts
    release_extra_s: float = 0.0


Maker = Callable[[Bench, ProtectionLimits], Stimulus]


def _cells_mv(t: Telemetry) -> list[int]:
    return [round(v * 1000) for v in t.cells_v]


def _temps_dc(t: Telemetry) -> list[int]:
    return [round(c * 10) for c in t.temps_c]


READINGS: dict[str, Callable[[Telemetry], int]] = {
    "cell_overvoltage": lambda t: max(_cells_mv(t)),
    "cell_undervoltage": lambda t: min(_cells_mv(t)),
    "deep_discharge": lambda t: min(_cells_mv(t)),
    "overtemperature": lambda t: max(_temps_dc(t)),
    "undertemperature": lambda t: min(_temps_dc(t)),
    "overtemperature_charge": lambda t: max(_temps_dc(t)),
    "undertemperature_charge": lambda t: min(_temps_dc(t)),
    "cell_imbalance": lambda t: max(_cells_mv(t)) - min(_cells_mv(t)),
}
"""What a protection watches, as telemetry shows it (wire units)."""


# -- threshold ------------------------------------------------------------------------------
def _threshold(bench: Bench, spec: ProtectionLimits, margin: int,
               reading: int | None = None) -> Stimulus:
    now = READINGS[spec.name](bench.reading()) if reading is None else reading
    toward = -1 if spec.above else 1  # towards the present reading, past it
    trip = now + toward * margin
    release = trip + toward * margin
    if not spec.hard_min <= min(trip, release) <= max(trip, release) <= spec.hard_max:
        pytest.skip(f"{spec.name}: the reading {now} {spec.unit} is too close to the hard "
                    f"limits {spec.hard_min}..{spec.hard_max} {spec.unit} to move the "
                    "threshold across it")
    client = bench.client
    moved = {spec.release_key: release, spec.trip_key: trip}
    back = {spec.trip_key: spec.trip, spec.release_key: spec.release}
    return Stimulus(
        f"{spec.trip_key} {spec.trip} -> {trip} {spec.unit} across the reading {now}",
        apply=lambda: set_config(client, moved), remove=lambda: set_config(client, back),
        trip=trip)


def voltage_threshold(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    return _threshold(bench, spec, VOLTAGE_MARGIN_MV)


def temperature_threshold(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    return _threshold(bench, spec, TEMPERATURE_MARGIN_DC)


def _gentle_charge_a(limits: BoardLimits) -> float:
    """A charge current every board takes: C/2, at most half its rating."""
    info = limits.info
    return min(info.capacity_ah / 2, info.charge_current_max_a / 2)


def _spread_error_mv(rig: Rig) -> int:
    """How far a reported cell spread may be off (two readings, each within the rig's
    stated accuracy), mV rounded up; 0 where the rig does not know its front end."""
    try:
        accuracy_v = rig.cell_accuracy_v()
    except pytest.skip.Exception:  # a real board without a board file for its front end
        return 0
    return math.ceil(2 * accuracy_v * 1000)


def imbalance_threshold(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    """The cell spread at rest (or, where the cells agree at rest, under a current,
    through their different resistances: the median of five readings once the RC
    pairs have built up) against a lowered threshold: half-way to
    the spread, and at least the spread's error below it (two readings, each within
    the rig's stated accuracy), down to 0 mV.

    On a front end whose readings differ by more than the cells do (an MCU's
    converter: 8 mV a cell), the spread at rest is the converter's noise; a
    threshold half-way to one sample of it is crossed and uncrossed by that noise.
    There the threshold goes to 0 mV (release 0 mV): any spread the readings show
    trips it, none can release it until the threshold is put back."""
    rig = bench.rig
    spread = READINGS[spec.name](bench.reading())
    amps = 0.0
    if spread < MIN_SPREAD_MV:
        info = bench.limits.info
        # Half the larger rating: the cells' resistances differ more than their volts.
        amps = max(info.charge_current_max_a / 2, -info.discharge_current_max_a / 2, key=abs)
        rig.set_current(amps)
        bench.client.run(SPREAD_SETTLE_S)  # the RC pairs' share of the spread builds up
        spread = sorted(READINGS[spec.name](bench.reading()) for _ in range(5))[2]  # median
        if spread < MIN_SPREAD_MV:
            pytest.skip(f"the cells agree within {spread} mV even at {amps:g} A: no spread "
                        "to move the threshold across")
    half = spread // 2
    trip = max(spread - max(half, _spread_error_mv(rig)), 0)
    release = max(trip - half, 0)
    client = bench.client
    moved = {spec.release_key: release, spec.trip_key: trip}
    back = {spec.trip_key: spec.trip, spec.release_key: spec.release}

    def remove() -> None:
        set_config(client, back)
        if amps:
            rig.set_current(0.0)

    return Stimulus(
        f"{spec.trip_key} {spec.trip} -> {trip} {spec.unit} (release {release}) across "
        f"the spread {spread}" + (f" at {amps:g} A" if amps else ""),
        apply=lambda: set_config(client, moved), remove=remove, trip=trip)


# -- plant ---------------------------------------------------------------------------------
EMULATED_MARGIN_MV = 40
"""How far past a cell-voltage trip an emulated cell is held: inside a monitor chip's
own margin (its COV and CUV sit 100 mV beyond the firmware's, docs/bq76952.md)."""


def emulated_cell(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    """Cell 1 held past the trip by a cell emulator's channel (the plant's cell on a
    simulated board), then given back: the board's own measurement, no threshold moved."""
    rig = bench.rig
    volts = (spec.trip + (1 if spec.above else -1) * EMULATED_MARGIN_MV) / 1000
    return Stimulus(f"cell 1 emulated at {volts:.3f} V",
                    apply=lambda: rig.set_cell_voltage(0, volts),
                    remove=lambda: rig.set_cell_voltage(0, None), trip=spec.trip)


def _cell_temperature(bench: Bench, spec: ProtectionLimits, celsius: float,
                      **extra: float) -> Stimulus:
    """Cell 0 (every board has a temperature sensor on it) at ``celsius``."""
    rig = bench.rig
    return Stimulus(f"cell 1 at {celsius:.1f} °C",
                    apply=lambda: rig.set_cell_temperature(0, celsius),
                    remove=lambda: rig.set_cell_temperature(0, None), trip=spec.trip, **extra)


def hot_cell(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    return _cell_temperature(bench, spec, spec.trip / 10 + 5)


def cold_cell(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    return _cell_temperature(bench, spec, spec.trip / 10 - 5)


def _between(bench: Bench, spec: ProtectionLimits, fault: str) -> Stimulus:
    """A temperature past an alarm's threshold but short of the fault's (charging
    too hot or too cold, discharging still fine)."""
    other = bench.limits.protections[fault].trip
    if (other - spec.trip) * (1 if spec.above else -1) <= 10:
        pytest.skip(f"{fault} trips at {other} dC, no further out than {spec.name} "
                    f"({spec.trip} dC): no temperature trips only the alarm")
    return _cell_temperature(bench, spec, (spec.trip + other) / 20)


def warm_charge_cell(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    return _between(bench, spec, "overtemperature")


def cool_charge_cell(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    return _between(bench, spec, "undertemperature")


def warming_cell(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    """A step of 2.5x the allowed rise per minute, below every temperature limit."""
    now = READINGS["overtemperature"](bench.reading())
    target = now + 2.5 * spec.trip
    ceiling = bench.limits.protections["overtemperature_charge"].trip - 10
    if target > ceiling:
        target = max(now + spec.trip + 5, ceiling)
    minute = 66.0  # the rise is taken against a slot written 54..60 s ago
    return _cell_temperature(bench, spec, target / 10, extra_s=minute, release_extra_s=minute)


def _current(bench: Bench, spec: ProtectionLimits, amps: float, **extra: float) -> Stimulus:
    rig = bench.rig
    return Stimulus(f"{amps:+.2f} A", apply=lambda: rig.set_current(amps),
                    remove=lambda: rig.set_current(0.0), trip=spec.trip, **extra)


def _above(trip_ma: int, ceiling_ma: int) -> float:
    """Amps past ``trip_ma`` and short of ``ceiling_ma`` (the next protection up, or
    what the sensor measures)."""
    if ceiling_ma <= trip_ma:
        return trip_ma * 1.2 / 1000
    return min(trip_ma * 1.25, (trip_ma + ceiling_ma) / 2) / 1000


def charge_overcurrent(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    peak = bench.limits.protections["overcurrent_charge_peak"].trip
    return _current(bench, spec, _above(spec.trip, peak))


def discharge_overcurrent(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    peak = bench.limits.protections["overcurrent_discharge_peak"].trip
    return _current(bench, spec, -_above(spec.trip, peak))


def charge_peak(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    return _current(bench, spec, _above(spec.trip, bench.limits.current_full_scale_ma))


def discharge_peak(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    short = bench.limits.protections["short_circuit"]
    if short.trip <= spec.trip and short.trip_delay_ms <= spec.trip_delay_ms:
        pytest.skip(f"short_circuit trips at {short.trip} mA, no higher than {spec.name} "
                    f"({spec.trip} mA), and sooner: {spec.name} cannot trip on its own on "
                    "this board (both are capped by the current sensor's range)")
    ceiling = short.trip if short.trip > spec.trip else bench.limits.current_full_scale_ma
    return _current(bench, spec, -_above(spec.trip, ceiling))


def _injection(bench: Bench, spec: ProtectionLimits, fault: str, describe: str = "",
               **params: float) -> Stimulus:
    rig = bench.rig
    return Stimulus(describe or fault, apply=lambda: rig.inject(fault, **params),
                    remove=lambda: rig.clear(fault), trip=spec.trip)


SHORT_OVER_TRIP = 1.8
"""A short circuit here draws up to this many times the firmware's trip: the pack's
voltage over the short's resistance; the cells' own resistance makes it less (sim-4s:
four 20 mOhm cells against a 0.18 Ohm short still draw 56 A, past its 45 A trip and
its sensor's 50 A range). A harder short is a battery-monitor chip's to open, in
microseconds and before the firmware samples it (its SCD is armed at twice the
firmware's trip: tests/test_bq76952_board.py): a firmware protection must trip on a
short that the chip leaves to it."""


def short_circuit(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    pack_v = bench.reading().pack_v
    ohms = pack_v / (SHORT_OVER_TRIP * spec.trip / 1000.0)
    return _injection(bench, spec, "short_circuit",
                      f"a {ohms * 1000:.0f} mOhm short across the output", ohms=ohms)


def open_sense_wire(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    """The wire at the top of cell 1: cell 1 reads 0 V, cell 2 both cells."""
    if spec.name == "sensor_range" and bench.limits.info.cell_count < 2:
        pytest.skip("an open wire reads two cells as one only on a board with 2 cells or more")
    return _injection(bench, spec, "open_wire", "the sense wire above cell 1 open", cell=0)


def open_temperature_sensor(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    sensor = bench.limits.info.temp_count - 1
    return _injection(bench, spec, "disconnected_temp",
                      f"temperature sensor {sensor + 1} open", sensor=sensor)


def pack_sensor_offset(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    volts = 2 * spec.trip / 1000
    return _injection(bench, spec, "pack_sensor_offset",
                      f"the pack-voltage sensor {volts:+.3f} V off", volts=volts)


def stuck_cell_reading(bench: Bench, spec: ProtectionLimits) -> Stimulus:
    """The last cell's reading frozen while a charge current flows (the stuck clock
    runs only with current)."""
    rig, amps = bench.rig, _gentle_charge_a(bench.limits)
    cell = bench.limits.info.cell_count - 1

    def apply() -> None:
        rig.inject("stuck_sensor", cell=cell)  # first: a rig that cannot skips at once
        rig.set_current(amps)

    def remove() -> None:
        rig.clear("stuck_sensor")
        rig.set_current(0.0)

    return Stimulus(f"cell {cell + 1}'s reading frozen at {amps:g} A", apply, remove,
                    spec.trip, extra_s=spec.trip / 1000)


STIMULI: dict[str, dict[str, Maker]] = {
    "cell_overvoltage": {"plant": emulated_cell, "threshold": voltage_threshold},
    "cell_undervoltage": {"plant": emulated_cell, "threshold": voltage_threshold},
    "overtemperature": {"plant": hot_cell, "threshold": temperature_threshold},
    "undertemperature": {"plant": cold_cell, "threshold": temperature_threshold},
    "overcurrent_charge": {"plant": charge_overcurrent},
    "overcurrent_discharge": {"plant": discharge_overcurrent},
    "deep_discharge": {"plant": emulated_cell, "threshold": voltage_threshold},
    "overtemperature_charge": {"plant": warm_charge_cell, "threshold": temperature_threshold},
    "undertemperature_charge": {"plant": cool_charge_cell, "threshold": temperature_threshold},
    "overcurrent_charge_peak": {"plant": charge_peak},
    "overcurrent_discharge_peak": {"plant": discharge_peak},
    "short_circuit": {"plant": short_circuit},
    "cell_imbalance": {"threshold": imbalance_threshold},
    "open_wire": {"plant": open_sense_wire},
    "sensor_range": {"plant": open_sense_wire},
    "sensor_disconnected": {"plant": open_temperature_sensor},
    "sensor_stuck": {"plant": stuck_cell_reading},
    "pack_voltage_mismatch": {"plant": pack_sensor_offset},
    "temperature_rise": {"plant": warming_cell},
}
"""Protection -> {variant: how to trip it}. The voltage protections trip against
the plant in test_soc_cycle.py too (a full discharge and charge)."""
