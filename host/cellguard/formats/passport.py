"""The Battery Pass *Performance and Durability* aspect (version 1.2.1) of one pack.

Two halves meet in :func:`build_passport`:

- :class:`Static`: what the pack was built as (rated capacity, voltage limits,
  temperature range, ...), from the board's INFO and its chemistry profile;
- :class:`Lifetime`: what happened to it (throughput, equivalent full cycles,
  time at extreme temperatures, harmful events, health estimates), each figure
  with the time it was last updated.

:func:`lifetime_from_board` fills :class:`Lifetime` from the board's own lifetime
record (LIFETIME: the pack's whole life as its firmware counted it);
:func:`lifetime_from_log` from a cellguard log (only what a host saw while logging,
with every harmful event's time and value).

The model is kept valid: every property it requires is written. A figure the
source cannot give is written as 0 (the model has no null) and its path is
listed in the extension block's ``unavailable``, so a reader never mistakes
it for a measurement. Exact figures the model lacks, or declares in a wrong
unit (``remainingCapacity`` in kWh), go in :data:`EXTENSION`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CellguardError
from ..files import atomic_output, check_output
from ..link.client import FAULT_VALUE_UNITS, UNITS, Info
from ..link.lifetime import HARMFUL_KINDS, SOC_BINS_PCT, TEMP_BINS_C, LifetimeRecord
from ..store import LogReader
from ..store.query import choose_boards
from ..views.report import integrate_split
from .batterypass import EXTENSION, HISTOGRAM

FORMATS = ("json", "md", "html")
"""json: the model; md and html: the one-page health report (:mod:`.passport_report`)."""

# Protection trips the model's free-text negativeEvents carries, and the
# counts the extension block keeps (the model has no integer property for them).
HARMFUL = ("deep_discharge", "cell_overvoltage", "cell_undervoltage", "overtemperature",
           "undertemperature", "overtemperature_charge", "undertemperature_charge",
           "overcurrent_charge", "overcurrent_discharge", "overcurrent_charge_peak",
           "overcurrent_discharge_peak", "short_circuit")


def iso(unix: float) -> str:
    """A model ``Timestamp``: UTC, milliseconds, with the zone."""
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")


@dataclass
class Static:
    """What the pack was built as (SI units, pack level)."""

    board: str
    unique_id: str
    chemistry: str
    cells: int
    rated_capacity_ah: float
    nominal_voltage_v: float  # cells x the chemistry's open-circuit voltage at 50 % SoC
    minimum_voltage_v: float  # cells x the under-voltage trip the board enforces
    maximum_voltage_v: float  # cells x the over-voltage trip the board enforces
    temp_min_c: float
    temp_max_c: float
    temp_charge_min_c: float
    temp_charge_max_c: float
    discharge_current_max_a: float
    expected_cycles: int | None = None  # from a cell file that gives it (none does yet)

    @property
    def rated_energy_kwh(self) -> float:
        return self.rated_capacity_ah * self.nominal_voltage_v / 1000.0

    @property
    def rated_maximum_power_kw(self) -> float:
        return self.discharge_current_max_a * self.nominal_voltage_v / 1000.0


def static_from_info(info: Info) -> Static:
    """The pack as its INFO describes it, with the chemistry profile's figures."""
    from cellguard_fw.chemistry import PROFILES

    profile = PROFILES.get(info.chemistry)
    if profile is None:
        raise CellguardError(f"board {info.board!r} reports chemistry {info.chemistry!r}, which "
                             f"this host has no profile for ({', '.join(PROFILES)})")
    ocv = profile["ocv_mv"]
    n = info.cell_count
    return Static(
        board=info.board, unique_id=info.unique_id, chemistry=info.chemistry, cells=n,
        rated_capacity_ah=info.capacity_ah,
        nominal_voltage_v=n * ocv[len(ocv) // 2] / 1000.0,
        minimum_voltage_v=n * info.cell_uv_v, maximum_voltage_v=n * info.cell_ov_v,
        temp_min_c=info.temp_min_c, temp_max_c=info.temp_max_c,
        temp_charge_min_c=profile["temp_charge_min_dc"][0] / 10.0,
        temp_charge_max_c=profile["temp_charge_max_dc"][0] / 10.0,
        discharge_current_max_a=info.discharge_current_max_a,
    )


@dataclass
class HarmfulEvent:
    name: str
    host_time: float
    value: float  # SI (V, A, °C, s), from the wire unit of the protection
    unit: str
    operating_s: float | None = None  # from the board's record: its operating time then


@dataclass
class Lifetime:
    """What happened to the pack, SI units; ``*_at`` are Unix times of the last update."""

    source: str  # "log" (what the host saw) or "board" (the board's lifetime record)
    charge_in_ah: float = 0.0
    charge_out_ah: float = 0.0
    energy_in_wh: float = 0.0
    energy_out_wh: float = 0.0
    throughput_at: float = 0.0
    observed_s: float = 0.0  # time the figures cover (gaps left out)
    time_above_max_s: float = 0.0
    time_below_min_s: float = 0.0
    time_above_charge_max_s: float = 0.0  # while charging
    time_below_charge_min_s: float = 0.0
    rest_s: float = 0.0  # |current| below the rest current (C/100), as the board counts
    charging_s: float = 0.0
    discharging_s: float = 0.0
    # seconds per [SoC bin][temperature bin] (SOC_BINS_PCT x TEMP_BINS_C); None: no
    # temperature or SoC to bin by
    histogram_s: list[list[float]] | None = None
    unbinned_s: float = 0.0  # time without a SoC or a temperature (left out of the bins)
    soc_pct: float | None = None
    soc_at: float = 0.0
    capacity_ah: float | None = None  # the estimator's relearned capacity
    r0_growth_pct: float | None = None  # 100 = as new
    estimate_at: float = 0.0
    events: list[HarmfulEvent] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    record: LifetimeRecord | None = None  # the board's record, when it is the source
    counted_cycles: float | None = None  # the board's own count (each save's capacity)

    def equivalent_full_cycles(self, capacity_ah: float) -> float:
        """Charge throughput (in and out) over twice the capacity."""
        return (self.charge_in_ah + self.charge_out_ah) / (2.0 * capacity_ah)


def _pack_ids(reader: LogReader, board: str | None) -> tuple[Info, list[int]]:
    """One pack's INFO and its board rows (one per connection)."""
    chosen = choose_boards(reader, board)
    packs = sorted({info.unique_id for _, info in chosen})
    if len(packs) > 1:
        raise CellguardError(f"{reader.path} holds {len(packs)} packs ({', '.join(packs)}): "
                             "a passport is for one; choose it with --board")
    ids = [b for b, _ in chosen]
    return chosen[-1][1], ids


def rest_current_a(static: Static) -> float:
    """Below this |current| the pack is at rest: C/100 of the rated capacity, in whole
    mA, as the firmware's record counts it (``app.py``)."""
    return round(static.rated_capacity_ah * 1000.0) // 100 / 1000.0


def lifetime_from_log(reader: LogReader, static: Static, ids: list[int]) -> Lifetime:
    """Integrate the logged samples of these board rows (gaps left out)."""
    life = Lifetime(source="log")
    infos = dict(reader.boards())
    rest_a = rest_current_a(static)
    hist = np.zeros((len(SOC_BINS_PCT) - 1, len(TEMP_BINS_C) + 1))
    for bid in ids:
        s = reader.series(bid, infos[bid])
        if len(s) == 0:
            continue
        skip = s.gap_mask()
        a_in, a_out = integrate_split(s.t, s.current_a, skip)
        w_in, w_out = integrate_split(s.t, s.pack_v * s.current_a, skip)
        life.charge_in_ah += a_in / 3600.0
        life.charge_out_ah += a_out / 3600.0
        life.energy_in_wh += w_in / 3600.0
        life.energy_out_wh += w_out / 3600.0
        # Times: each interval counted at its first sample's state, as the board's
        # record counts each second at its step's state (docs/lifetime.md).
        dt = np.diff(s.t)
        keep = (dt > 0) & ~skip if len(dt) else np.zeros(0, dtype=bool)
        dt = np.where(keep, dt, 0.0)
        temps = s.temps_c[:-1]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a sample without sensors
            hot = np.nanmax(temps, axis=1) if temps.size else np.full(len(dt), np.nan)
            cold = np.nanmin(temps, axis=1) if temps.size else np.full(len(dt), np.nan)
        current = s.current_a[:-1]
        rest = np.abs(current) < rest_a
        charging = ~rest & (current > 0)
        with np.errstate(invalid="ignore"):
            life.time_above_max_s += float(dt[~charging & (hot > static.temp_max_c)].sum())
            life.time_below_min_s += float(dt[~charging & (cold < static.temp_min_c)].sum())
            life.time_above_charge_max_s += float(
                dt[charging & (hot > static.temp_charge_max_c)].sum())
            life.time_below_charge_min_s += float(
                dt[charging & (cold < static.temp_charge_min_c)].sum())
        life.rest_s += float(dt[rest].sum())
        life.charging_s += float(dt[charging].sum())
        life.discharging_s += float(dt[~rest & ~charging].sum())
        # SoC x temperature (the mean of the coldest and hottest sensor), the board's bins
        soc = s.soc_pct[:-1]
        mean = (hot + cold) / 2.0
        binned = np.isfinite(soc) & np.isfinite(mean)
        soc_bin = np.clip(np.floor(np.where(binned, soc, 0.0) / 20.0), 0, 4).astype(int)
        temp_bin = np.digitize(np.where(binned, mean, 0.0), TEMP_BINS_C)
        np.add.at(hist, (soc_bin[binned], temp_bin[binned]), dt[binned])
        life.unbinned_s += float(dt[~binned].sum())
        life.observed_s += float(dt.sum())
        last = float(s.host_time[-1])
        if last >= life.soc_at:
            life.soc_pct, life.soc_at = float(s.soc_pct[-1]), last
        life.throughput_at = max(life.throughput_at, last)
    for ev in reader.events():
        if ev.board_id not in ids or ev.kind != "trip":
            continue
        for name in ev.names:
            if name not in HARMFUL:
                continue
            wire = FAULT_VALUE_UNITS.get(name, "")
            unit, scale = UNITS.get(wire, (wire, 1.0))
            life.events.append(HarmfulEvent(name, ev.host_time, ev.value / scale, unit))
            life.counts[name] = life.counts.get(name, 0) + 1
    for est in reader.estimates():
        if est["board_id"] in ids and est["host_time"] >= life.estimate_at:
            life.capacity_ah = est["capacity_mah"] / 1000.0
            life.r0_growth_pct = est["r0_growth_cpct"] / 100.0
            life.estimate_at = float(est["host_time"])
    if life.unbinned_s < life.observed_s:  # anything binned at all
        life.histogram_s = hist.tolist()
    return life


def lifetime_from_record(record: LifetimeRecord, at: float) -> Lifetime:
    """The board's own record (read at Unix time ``at``): the pack's whole life as its
    firmware counted it, not only what a host saw. The health figures come from its
    newest state-of-health snapshot (a capacity only once the board has relearned
    it: before that it is the rated one, not a measurement)."""
    life = Lifetime(
        source="board", charge_in_ah=record.charge_in_ah, charge_out_ah=record.charge_out_ah,
        energy_in_wh=record.energy_in_wh, energy_out_wh=record.energy_out_wh,
        throughput_at=at, observed_s=record.operating_s,
        time_above_max_s=float(record.hot_idle_s), time_below_min_s=float(record.cold_idle_s),
        time_above_charge_max_s=float(record.hot_charging_s),
        time_below_charge_min_s=float(record.cold_charging_s),
        rest_s=float(record.rest_s), charging_s=float(record.charging_s),
        discharging_s=float(record.discharging_s),
        histogram_s=[[float(v) for v in row] for row in record.histogram_s],
        counts=dict(record.harmful), record=record,
        counted_cycles=record.equivalent_full_cycles,
        events=[HarmfulEvent(e.kind, float(e.unix_time or 0), e.value, e.unit, e.operating_s)
                for e in record.last_harmful])
    if record.snapshots:
        last = record.snapshots[-1]
        when = float(last.unix_time or at)
        if last.relearns:
            life.capacity_ah, life.estimate_at = last.capacity_ah, when
        if last.r0_growth_pct is not None:
            life.r0_growth_pct, life.estimate_at = last.r0_growth_pct, when
    return life


SOC_SIGMA_PCT = 2.0
"""The SoC uncertainty (1 sigma, %) the round-trip efficiency's bound assumes: the
estimator's converged error is below it (docs/estimation.md)."""


def round_trip_efficiency(record: LifetimeRecord, static: Static,
                          ) -> dict[str, float] | None:
    """Energy out over energy in between the first and the newest health snapshot,
    corrected for the energy stored between them (their SoC difference at the nominal
    voltage and the rated capacity), with a bound from the SoC's uncertainty and the
    counters' 1 Wh resolution: None until at least two full cycles of energy went in."""
    if len(record.snapshots) < 2:
        return None
    a, b = record.snapshots[0], record.snapshots[-1]
    e_in = b.energy_in_wh - a.energy_in_wh
    e_out = b.energy_out_wh - a.energy_out_wh
    rated_wh = static.rated_energy_kwh * 1000.0
    if e_in < 2.0 * rated_wh or e_in <= 0:
        return None
    stored = (b.soc_pct - a.soc_pct) / 100.0 * rated_wh
    bound = (2.0 * SOC_SIGMA_PCT * 2**0.5 / 100.0 * rated_wh + 2.0) / e_in
    return {"percent": 100.0 * (e_out + stored) / e_in, "uncertaintyPercent": 100.0 * bound,
            "energyInWh": float(e_in), "energyOutWh": float(e_out),
            "fromOperatingS": float(a.operating_s), "toOperatingS": float(b.operating_s)}


def lifetime_from_board(port: str, at: float) -> tuple[Info, Lifetime]:
    """Ask the board on ``port`` who it is and for its lifetime record."""
    from ..link.client import BoardClient

    with BoardClient(port) as client:
        info = client.hello()
        record = client.lifetime()
    return info, lifetime_from_record(record, at)


def build_passport(static: Static, life: Lifetime, generated: float) -> dict[str, Any]:
    """The aspect as a JSON-ready dict, valid against the 1.2.1 schema."""
    unavailable: list[str] = []

    def value(path: str, v: float | None) -> float:
        if v is None:
            unavailable.append(path)
            return 0
        return v

    def dyn(name: str, v: float | None, at: float) -> dict[str, Any]:
        return {f"{name}Value": value(f"batteryCondition.{name}", v),
                "lastUpdate": iso(at or generated)}

    tp = "batteryTechicalProperties"
    for name in ("originalPowerCapability", "powerCapabilityRatio", "initialSelfDischarge",
                 "roundtripEfficiency", "initialInternalResistance", "expectedLifetime",
                 "capacityThresholdForExhaustion", "lifetimeReferenceTest",
                 "cRateLifeCycleTest", "roundTripEfficiencyat50PerCentCycleLife",
                 "roundTripEfficiencyFade", "powerFade", "cRate"):
        unavailable.append(f"{tp}.{name}")
    technical: dict[str, Any] = {
        "originalPowerCapability": [],
        "ratedMaximumPower": static.rated_maximum_power_kw,
        "powerCapabilityRatio": 0,
        "ratedEnergy": static.rated_energy_kwh,
        "expectedNumberOfCycles": value(f"{tp}.expectedNumberOfCycles", static.expected_cycles),
        "initialSelfDischarge": 0,
        "roundtripEfficiency": 0,
        "ratedCapacity": static.rated_capacity_ah,
        "initialInternalResistance": [],
        "expectedLifetime": 0,
        "nominalVoltage": static.nominal_voltage_v,
        "minimumVoltage": static.minimum_voltage_v,
        "maximumVoltage": static.maximum_voltage_v,
        "capacityThresholdForExhaustion": 0,
        "lifetimeReferenceTest": "urn:cellguard:not-available",
        "cRateLifeCycleTest": 0,
        "temperatureRangeIdleState": {"minimum": static.temp_min_c,
                                      "maximum": static.temp_max_c},
        "roundTripEfficiencyat50PerCentCycleLife": 0,
        "roundTripEfficiencyFade": 0,
        "powerFade": 0,
        "cRate": 0,
    }
    capacity = life.capacity_ah
    cycles = life.counted_cycles if life.counted_cycles is not None else \
        life.equivalent_full_cycles(capacity or static.rated_capacity_ah)
    fade = None if capacity is None else 100.0 * (1.0 - capacity / static.rated_capacity_ah)
    remaining_kwh = None if capacity is None else capacity * static.nominal_voltage_v / 1000.0
    energy_now = None
    if life.soc_pct is not None:
        energy_now = life.soc_pct / 100.0 * (capacity or static.rated_capacity_ah) \
            * static.nominal_voltage_v / 1000.0
    t_at, e_at = life.throughput_at, life.estimate_at
    condition: dict[str, Any] = {
        "energyThroughput": dyn("energyThroughput",
                                (life.energy_in_wh + life.energy_out_wh) / 1000.0, t_at),
        "capacityThroughput": dyn("capacityThroughput",
                                  life.charge_in_ah + life.charge_out_ah, t_at),
        "numberOfFullCycles": dyn("numberOfFullCycles", int(cycles), t_at),
        "stateOfCertifiedEnergy": dyn("stateOfCertifiedEnergy", None, 0),
        "capacityFade": dyn("capacityFade", fade, e_at),
        "remainingEnergy": dyn("remainingEnergy", energy_now, life.soc_at),
        "remainingCapacity": dyn("remainingCapacity", remaining_kwh, e_at),
        "negativeEvents": [
            {"negativeEvent": f"{e.name}: {e.value:g} {e.unit}" + (
                "" if e.operating_s is None else f" at {e.operating_s:g} s of operation"
                + ("" if e.host_time else " (board clock not set)")),
             "lastUpdate": iso(e.host_time or generated)}
            for e in life.events],
        "temperatureInformation": {
            "timeExtremeHighTemp": life.time_above_max_s / 60.0,
            "timeExtremeLowTemp": life.time_below_min_s / 60.0,
            "timeExtremeHighTempCharging": life.time_above_charge_max_s / 60.0,
            "timeExtremeLowTempCharging": life.time_below_charge_min_s / 60.0,
            "lastUpdate": iso(t_at or generated),
        },
        "remainingPowerCapability": {
            "remainingPowerCapabilityValue": {"atSoC": 0, "powerCapabilityAt": 0,
                                              "rPCLastUpdated": iso(generated)},
            "lastUpdate": iso(generated),
        },
        "evolutionOfSelfDischarge": {"evolutionOfSelfDischargeValue": 0,
                                     "lastUpdate": iso(generated)},
        "internalResistanceIncrease": [] if life.r0_growth_pct is None else [
            {"internalResistanceIncreaseValue": life.r0_growth_pct - 100.0,
             "batteryComponent": "pack", "lastUpdate": iso(e_at)}],
        "stateOfCharge": dyn("stateOfCharge", life.soc_pct, life.soc_at),
    }
    rec = life.record
    power = next((h for h in reversed(rec.snapshots) if h.power_w > 0), None) if rec else None
    if power is not None:
        when = iso(power.unix_time or generated)
        condition["remainingPowerCapability"] = {
            "remainingPowerCapabilityValue": {"atSoC": power.soc_pct,
                                              "powerCapabilityAt": power.power_w / 1000.0,
                                              "rPCLastUpdated": when},
            "lastUpdate": when}
        first = rec.snapshots[0] if rec else None
        if first is not None and first.power_w > 0:
            technical["originalPowerCapability"] = [
                {"atSoC": first.soc_pct, "powerCapabilityAt": first.power_w / 1000.0}]
            unavailable.remove(f"{tp}.originalPowerCapability")
    else:
        unavailable.append("batteryCondition.remainingPowerCapability")
    rate = rec.self_discharge_pct_per_month if rec else None
    condition["currentSelfDischargingRate"] = dyn("currentSelfDischargingRate", rate, t_at)
    efficiency = round_trip_efficiency(rec, static) if rec else None
    condition["remainingRoundTripEnergyEfficiency"] = dyn(
        "remainingRoundTripEnergyEfficiency",
        None if efficiency is None else efficiency["percent"], t_at)
    unavailable.append("batteryCondition.evolutionOfSelfDischarge")
    if life.r0_growth_pct is None:
        unavailable.append("batteryCondition.internalResistanceIncrease")
    histogram = None
    if life.histogram_s is None:
        unavailable.append(f"{EXTENSION}.{HISTOGRAM}")
    else:
        histogram = {
            "unit": "s",
            "seconds": life.histogram_s,  # [SoC bin][temperature bin]
            "socBinEdgesPct": list(SOC_BINS_PCT),  # 100 % falls in the last bin
            # the outer bins are open: below 0 degC, from 45 degC
            "temperatureBinEdgesC": [None, *TEMP_BINS_C, None],
            "temperature": "mean of the coldest and hottest sensor",
            "unbinnedSeconds": life.unbinned_s,
        }
    extension = {
        "version": 1,
        "source": life.source,
        "generated": iso(generated),
        "pack": {"board": static.board, "uniqueId": static.unique_id,
                 "chemistry": static.chemistry, "cells": static.cells},
        "observedSeconds": life.observed_s,
        "chargeInAh": life.charge_in_ah,
        "chargeOutAh": life.charge_out_ah,
        "energyInWh": life.energy_in_wh,
        "energyOutWh": life.energy_out_wh,
        "equivalentFullCycles": cycles,
        "stateSeconds": {"rest": life.rest_s, "charging": life.charging_s,
                         "discharging": life.discharging_s,
                         "restBelowA": rest_current_a(static)},
        HISTOGRAM: histogram,
        "remainingCapacityAh": capacity,
        # By protection from a log; by kind (HARMFUL_KINDS) from the board's record.
        "harmfulEventCounts": {name: life.counts.get(name, 0)
                               for name in (HARMFUL_KINDS if life.source == "board"
                                            else HARMFUL)},
        "temperatureLimitsC": {"idle": [static.temp_min_c, static.temp_max_c],
                               "charging": [static.temp_charge_min_c,
                                            static.temp_charge_max_c]},
        "unavailable": sorted(unavailable),
    }
    if rec is not None:
        extension.update(_record_extension(rec, efficiency))
    return {tp: technical, "batteryCondition": condition, EXTENSION: extension}


def _record_extension(rec: LifetimeRecord, efficiency: dict[str, float] | None,
                      ) -> dict[str, Any]:
    """What the board's record holds beyond the model (layout 2), in SI units."""
    def when(unix: int | None) -> str | None:
        return None if unix is None else iso(unix)

    out: dict[str, Any] = {
        "recordLayout": rec.layout,
        "uncertainty": UNCERTAINTY,
        "lastHarmfulEvents": [
            {"kind": e.kind, "value": e.value, "unit": e.unit, "operatingSeconds": e.operating_s,
             "time": when(e.unix_time)} for e in rec.last_harmful],
        "healthSnapshots": [
            {"time": when(h.unix_time), "operatingSeconds": h.operating_s,
             "capacityAh": h.capacity_ah, "capacityRelearns": h.relearns,
             "internalResistancePct": h.r0_growth_pct, "socPct": h.soc_pct,
             "powerCapabilityW": h.power_w, "energyInWh": h.energy_in_wh,
             "energyOutWh": h.energy_out_wh} for h in rec.snapshots],
        "roundTripEfficiency": efficiency,
    }
    if rec.layout >= 2:
        out["selfDischarge"] = {
            "socLostPct": rec.self_discharge_lost_pct,
            "socGainedPct": rec.self_discharge_gained_pct,
            "restSeconds": rec.self_discharge_rest_s,
            "ratePctPerMonth": rec.self_discharge_pct_per_month,
            "uncertaintyPctPerMonth": None if not rec.self_discharge_rest_s else
            2.0 * SOC_SIGMA_PCT / rec.self_discharge_rest_s * 30.44 * 86_400}
        out["commissioning"] = {"manufactured": when(rec.manufactured),
                                "inService": when(rec.in_service),
                                "identity": rec.identity}
        out["lives"] = rec.lives
        out["deploys"] = rec.deploys
        out["previousLives"] = None if rec.history is None else {
            "chargeInAh": rec.history.charge_in_ah, "chargeOutAh": rec.history.charge_out_ah,
            "energyInWh": rec.history.energy_in_wh, "energyOutWh": rec.history.energy_out_wh,
            "operatingSeconds": rec.history.operating_s,
            "harmfulEventCounts": rec.history.harmful}
    return out


UNCERTAINTY = {
    "throughput": "exact sums of the board's integer readings; the current sensor's own "
                  "error (a board file's figure) applies",
    "capacity": "within 2 % after a full cycle's relearn (benchmarks/estimator_accuracy.py); "
                "the rated capacity until the first relearn",
    "internalResistance": "the mean ratio of voltage to current steps; about 5 % "
                          "(docs/estimation.md)",
    "temperatureTimes": "one second per interval (the board counts whole seconds), plus "
                        "up to one save interval (5 minutes) lost at a power cut",
    "selfDischarge": "two SoC uncertainties over the rest time measured",
    "roundTripEfficiency": "roundTripEfficiency.uncertaintyPercent",
}
"""How far each board figure can be off, as docs/lifetime.md states it."""


@dataclass
class PassportResult:
    out: str
    format: str
    board: str
    unique_id: str
    unavailable: int

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.out, "format": self.format, "board": self.board,
                "unique_id": self.unique_id, "unavailable": self.unavailable}


def passport(log: str | Path | None, out: str, fmt: str = "json", board: str | None = None,
             force: bool = False, now: float | None = None,
             port: str | None = None) -> PassportResult:
    """Write the passport of the pack a log holds, or of the board on ``port``, to
    ``out`` (atomically; an existing file only with ``force``)."""
    if fmt not in FORMATS:
        raise CellguardError(f"unknown passport format {fmt!r} (choose {', '.join(FORMATS)})")
    if (log is None) == (port is None):
        raise CellguardError("a passport comes from a log file or from a board's port: "
                             "give one of them")
    inputs = [] if log is None else [log]
    check_output(out, inputs=inputs, force=force)
    generated = datetime.now(UTC).timestamp() if now is None else now
    if port is not None:
        info, life = lifetime_from_board(port, generated)
        static = static_from_info(info)
    else:
        assert log is not None
        with LogReader(log) as reader:
            info, ids = _pack_ids(reader, board)
            static = static_from_info(info)
            if reader.time_span(ids) is None:
                raise CellguardError(f"{reader.path} holds no samples of {info.board} "
                                     f"{info.unique_id}")
            life = lifetime_from_log(reader, static, ids)
    doc = build_passport(static, life, generated)
    if fmt == "json":
        text = json.dumps(doc, indent=2) + "\n"
    else:  # the one-page report for a person, from the same dict
        from .passport_report import render_html, render_markdown

        text = render_html(doc) if fmt == "html" else render_markdown(doc)
    with atomic_output(out, inputs=inputs, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return PassportResult(str(out), fmt, info.board, info.unique_id,
                          len(doc[EXTENSION]["unavailable"]))
