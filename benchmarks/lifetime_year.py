"""Lifetime year: a simulated year of the firmware's lifetime record against the plant.

Run from the repository root::

    .venv/bin/python benchmarks/lifetime_year.py [--days 365] [--seed 1] [--quick]

The firmware's own application (``cellguard_fw``: ``hal_sim.SimBoard`` and its
``Bms`` with protection, coulomb counter and lifetime record, under CPython in
this process) runs the 4-cell simulated board against the equivalent-circuit
plant through an accelerated life (``cellguard.sim.life``): a daily charge and
discharge, seasons, day and night, cold snaps and hot spells, injected harmful
events of every kind the record counts, power cycles and torn saves at seeded
random points, its files on the flash model (``cellguard.sim.flash``). It prints
the record against the truth the host integrated from the plant (quantity,
truth, record, difference, tolerance, PASS/FAIL), then the flash writes of the
life, scaled to a year. Every figure is counted in simulated time: a rerun
with the same seed prints the same table. Exits 1 if a row fails.

``--quick``: one simulated day (a smoke run; the seasons squeezed into it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))

from cellguard.sim.life import (  # noqa: E402
    ACTIVE_MS,
    FINE_MS,
    RECORD_BYTES,
    Life,
    LifeResult,
    agreement,
    format_table,
    markdown_table,
)

PROBE_CUT_MS = (2 * 60 + 5) * 60_000  # 02:05, five minutes into the over-temperature hold
RATED_ERASES = 100_000  # NOR flash sector endurance (W25Q16JV and typical ESP32 modules)


def flash_report(result: LifeResult) -> list[str]:
    f = result.flash
    year = 365.0 / result.days
    saves = f["life_saves"]
    per_year_block = f["max_block"] * year
    years = RATED_ERASES / per_year_block if per_year_block else float("inf")
    rows = [
        ("record saves", f"{saves:,}", f"{saves * year:,.0f}"),
        ("record saves torn by a power cut", f"{f['torn']:,}", ""),
        ("record bytes written", f"{saves * RECORD_BYTES:,}",
         f"{saves * RECORD_BYTES * year:,.0f}"),
        ("flash bytes programmed (256 B units)", f"{f['programs'] * 256:,}",
         f"{f['programs'] * 256 * year:,.0f}"),
        ("flash erases (4 KB blocks)", f"{f['erases']:,}", f"{f['erases'] * year:,.0f}"),
        ("flash programs (256 B units)", f"{f['programs']:,}", f"{f['programs'] * year:,.0f}"),
        ("metadata commits", f"{f['commits']:,}", f"{f['commits'] * year:,.0f}"),
        ("most-erased block, erases", f"{f['max_block']:,}", f"{per_year_block:,.0f}"),
        ("flash stall time, s", f"{f['stall_ms'] / 1000:,.1f}",
         f"{f['stall_ms'] / 1000 * year:,.1f}"),
    ]
    lines = [f"{'flash (whole firmware)':<40}{'this life':>16}{'per year':>16}"]
    lines += [f"{a:<40}{b:>16}{c:>16}" for a, b, c in rows]
    lines.append(f"years to {RATED_ERASES:,} erases of the most-erased block: {years:,.0f}")
    return lines


def probes(seed: int) -> list[str]:
    """Power cycles at chosen points of a short life (02:00-04:48, the over-temperature
    injection at 02:00): during the 68 degC hold, and 5 s and 15 s after a boot."""
    hot = Life(0.2, seed=seed, cuts_per_day=0, events=1, extra_cuts=(PROBE_CUT_MS,)).run()
    lines = [f"power cycle during an over-temperature (cell held at 68 degC): "
             f"{hot.record.harmful['overtemperature']} over-temperature events counted, "
             f"{hot.seen_in_plant['overtemperature']} in the plant"]
    for after_s in (5, 15):
        first = 3 * 3_600_000
        # the first cut's board is off 5 s: the second comes ``after_s`` of operation later
        life = Life(0.2, seed=seed, cuts_per_day=0, events=1,
                    extra_cuts=(first, first + 5_000 + after_s * 1000)).run()
        lines.append(f"power cycle {after_s} s after a boot: {life.record.boots} boots "
                     f"counted of {life.boots} (an event is saved 10 s after the last save)")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=float, default=365.0, help="simulated days (365)")
    ap.add_argument("--seed", type=int, default=1, help="weather, cells, power cycles (1)")
    ap.add_argument("--events", type=int, default=None,
                    help="injections of each harmful kind (default: 1 per 73 days, at least 1)")
    ap.add_argument("--cuts-per-day", type=float, default=None,
                    help="power cycles per day, half of them torn saves (default 0.25)")
    ap.add_argument("--quick", action="store_true", help="one simulated day")
    ap.add_argument("--markdown", action="store_true",
                    help="also print the agreement table as docs/lifetime.md shows it")
    args = ap.parse_args()
    days = 1.0 if args.quick else args.days
    if days <= 0:
        ap.error("--days must be positive")
    events = args.events if args.events is not None else max(1, round(days / 73))
    cuts = args.cuts_per_day if args.cuts_per_day is not None else (2.0 if args.quick
                                                                     else 0.25)
    life = Life(days, seed=args.seed, cuts_per_day=cuts, events=events)
    wall0 = time.monotonic()

    def progress(lf: Life) -> None:
        day = lf.t_ms / 86_400_000
        if day >= 1 and (int(day) % 10 == 0 or args.quick):
            print(f"  day {day:,.0f}: {lf.steps:,} steps, {time.monotonic() - wall0:,.0f} s",
                  file=sys.stderr, flush=True)

    result = life.run(progress)
    wall = time.monotonic() - wall0
    cuts_done = result.cuts
    torn = sum(1 for c in cuts_done if c.torn)
    print(f"Lifetime year: sim-4s (nmc, 3 Ah), {days:g} simulated days, seed {args.seed}, "
          f"firmware under CPython in-process")
    print(f"life: {events} injection(s) of each harmful kind, {len(cuts_done)} power cycles "
          f"({torn} of them torn saves), {result.boots} boots")
    mix = result.step_counts
    fine = mix.get(FINE_MS, 0)
    active = mix.get(ACTIVE_MS, 0)
    print(f"steps: {result.steps:,} ({fine:,} of {FINE_MS} ms, {active:,} of {ACTIVE_MS} ms, "
          f"{result.steps - fine - active:,} of other lengths up to 60 s); wall {wall:,.0f} s")
    print()
    rows = agreement(result)
    for line in format_table(rows):
        print(line)
    print()
    worst = max(cuts_done, key=lambda c: c.loss_s, default=None)
    if worst is not None:
        print(f"worst loss: {worst.loss_s:,.3f} s of operation at a "
              f"{'torn save (byte ' + str(worst.byte) + ')' if worst.torn else 'power cycle'}"
              f" on day {worst.at_ms / 86_400_000:,.2f}")
    lost = result.lost.v
    print(f"lost at power cycles in all: {lost['operating_s']:,.1f} s of operation, "
          f"{lost['charge_in_ah'] + lost['charge_out_ah']:,.4f} Ah of throughput "
          f"(taken out of the truth above)")
    spurious = sum(result.spurious.values())
    print(f"harmful crossings in the plant outside the injections: {spurious}")
    print()
    for line in flash_report(result):
        print(line)
    # Outside the proof (the random cuts keep out of the injections' windows and an
    # hour apart): a power cycle while a harmful condition persists, and power
    # cycles soon after a boot (an event edge, saved 10 s after the last save).
    print()
    for line in probes(args.seed):
        print(line)
    if args.markdown:
        print()
        for line in markdown_table(rows):
            print(line)
    failed = [r.quantity for r in rows if not r.ok]
    print()
    print(f"agreement: {'PASS' if not failed else 'FAIL: ' + ', '.join(failed)}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
