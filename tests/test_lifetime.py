"""The lifetime record (issue 16, item 1): exact integer counters, each trip edge
counted once, a record that survives power loss and corruption, and an update
that allocates nothing under real MicroPython."""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import struct
from binascii import crc32
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellguard.sim.flash import FlashModel, PowerLost
from cellguard_fw import codec, life_admin, lifetime
from cellguard_fw.chemistry import PROFILES
from cellguard_fw.life_admin import decode
from cellguard_fw.lifetime import Lifetime

NMC = PROFILES["nmc"]
WORDS = lifetime._WORDS
SIZE = lifetime._SIZE
PATH = "/flash/life"

# The layout (docs/lifetime.md), by word index.
CHG_AH, DSG_AH, CHG_WH, DSG_WH = 0, 3, 6, 10
OP_S, OP_MS, REST_S, CHG_S, DSG_S = 14, 15, 16, 17, 18
HOT_IDLE, HOT_CHG, COLD_IDLE, COLD_CHG = 19, 20, 21, 22
N_DEEP, N_OVERCHARGE, N_OVERTEMP, N_OVERCURRENT, N_SHORT = 23, 24, 25, 26, 27
N_BOOTS, N_WATCHDOG, N_CONFIG = 28, 29, 30
HIST = 31


def charge_mams(w: Any, base: int) -> int:
    """A charge counter as mA*ms."""
    return (w[base] * 1000 + w[base + 1]) * 3_600_000 + w[base + 2]


def energy_uwms(w: Any, base: int) -> int:
    """An energy counter as mV*mA*ms (uW*ms)."""
    return ((w[base] * 1000 + w[base + 1]) * 3_600_000 + w[base + 2]) * 1000 + w[base + 3]


def encode(words: list[int], seq: int) -> bytes:
    """A record as the firmware saves it (built here with struct, independently)."""
    body = struct.pack(f"<LL{len(words)}LL", lifetime._MAGIC, len(words), *words, seq)
    return body + struct.pack("<L", crc32(body))


def hist(w: Any, soc_bin: int, temp_bin: int) -> int:
    return w[HIST + 4 * soc_bin + temp_bin]


def test_fault_masks_are_the_codecs_bits() -> None:
    assert lifetime._F_DEEP == codec.FAULT_DEEP_DISCHARGE
    assert lifetime._F_OVERCHARGE == codec.FAULT_CELL_OVERVOLTAGE
    assert lifetime._F_OVERTEMP == codec.FAULT_OVERTEMPERATURE | codec.FAULT_OVERTEMPERATURE_CHARGE
    assert lifetime._F_OVERCURRENT == (
        codec.FAULT_OVERCURRENT_CHARGE | codec.FAULT_OVERCURRENT_DISCHARGE
        | codec.FAULT_OVERCURRENT_CHARGE_PEAK | codec.FAULT_OVERCURRENT_DISCHARGE_PEAK)
    assert lifetime._F_SHORT == codec.FAULT_SHORT_CIRCUIT
    assert HIST + 20 == lifetime._HARM_TOTAL == 51  # layout 1's end
    # the record saved every few minutes: words 0-84, inline in LittleFS (no data block)
    assert SIZE == 16 + 4 * lifetime._HOT <= FlashModel().inline_max


def test_chip_masks_are_the_simulated_chips_status_bits() -> None:
    """The monitor chip's trips of each harmful kind (Safety Status A | B << 8 | C << 16;
    Status C's latches, which the simulated chip does not model, from the datasheet:
    OCD3 bit 7, SCDL 6, OCDL 5, COVL 4)."""
    from cellguard.sim import bq76952 as chip

    assert lifetime._C_OVERCHARGE == chip.COV | 0x10 << 16
    assert lifetime._C_OVERTEMP == (chip.OTC | chip.OTD | chip.OTINT | chip.OTF) << 8
    assert lifetime._C_OVERCURRENT == chip.OCC | chip.OCD1 | chip.OCD2 | (0x80 | 0x20) << 16
    assert lifetime._C_SHORT == chip.SCD | 0x40 << 16


# -- counters against the integrated truth -------------------------------------------------


def run_profile(lt: Lifetime, steps: list[tuple[int, int, int]]) -> dict[str, int]:
    """Feed (dt ms, mA, pack mV) steps; return the exact integrals."""
    truth = {"chg_mams": 0, "dsg_mams": 0, "chg_uwms": 0, "dsg_uwms": 0, "ms": 0}
    for dt, ma, mv in steps:
        lt.update(dt, ma, mv, 5000, 250, 250, 0)
        d = "chg" if ma > 0 else "dsg"
        truth[d + "_mams"] += abs(ma) * dt
        truth[d + "_uwms"] += abs(ma) * mv * dt
        truth["ms"] += dt
    return truth


def check_exact(lt: Lifetime, truth: dict[str, int]) -> None:
    w = lt.w
    assert charge_mams(w, CHG_AH) == truth["chg_mams"]
    assert charge_mams(w, DSG_AH) == truth["dsg_mams"]
    assert energy_uwms(w, CHG_WH) == truth["chg_uwms"]
    assert energy_uwms(w, DSG_WH) == truth["dsg_uwms"]
    assert w[OP_S] * 1000 + w[OP_MS] == truth["ms"]
    # every remainder word below its unit, every word a small int on a 32-bit port
    for base in (CHG_AH, DSG_AH):
        assert w[base + 1] < 1000 and w[base + 2] < 3_600_000
    for base in (CHG_WH, DSG_WH):
        assert w[base + 1] < 1000 and w[base + 2] < 3_600_000 and w[base + 3] < 1000
    assert w[OP_MS] < 1000 and max(w) < 2**30


def test_throughput_and_energy_are_exact_over_a_synthetic_day() -> None:
    """A day of a 16S pack at 100 ms (uneven steps too): charge and energy in and
    out equal the sums of mA*ms and mV*mA*ms to the last unit."""
    rng = random.Random(16)
    steps = []
    ma = 0
    for _ in range(864_000):
        if rng.random() < 0.001:  # a new current level every ~100 s
            ma = rng.choice([0, 0, 30, -30, 1000, -1000, 50_000, -100_000, 150_000, -7])
        dt = 100 if rng.random() < 0.99 else rng.choice([1, 37, 250, 1000])
        steps.append((dt, ma + rng.randint(-50, 50), 52_000 + rng.randint(-4000, 4000)))
    lt = Lifetime(NMC)
    truth = run_profile(lt, steps)
    check_exact(lt, truth)
    assert lt.w[CHG_AH] > 100 and lt.w[DSG_WH] > 1000  # the profile moved real charge


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5000), st.integers(-1_000_000, 1_000_000),
                          st.integers(0, 999_999)), min_size=1, max_size=200))
def test_throughput_is_exact_at_the_limits(steps: list[tuple[int, int, int]]) -> None:
    """Up to 1,000 A and 1,000 V (the documented limits), steps up to 5 s."""
    lt = Lifetime(NMC)
    check_exact(lt, run_profile(lt, steps))


def test_times_states_extremes_and_the_histogram() -> None:
    """Blocks of whole seconds at 100 ms steps: each block's seconds go to its
    state, its extreme-temperature counters and its histogram bin (NMC: hot above
    60 degC, cold below -20 degC; charging: above 45, below 0)."""
    lt = Lifetime(NMC, capacity_mah=5000)
    blocks = [  # seconds, mA, SoC cpct, coldest, hottest
        (30, 0, 5000, 250, 260),  # rest; SoC bin 2, temperature bin 2
        (40, 20_000, 7000, 440, 470),  # charging hot; bin 3, 3
        (20, 20_000, 1000, -10, 20),  # charging cold; bin 0, 1
        (15, -30_000, 9999, 610, 620),  # discharging hot; bin 4, 3
        (12, 0, 10000, -250, -240),  # rest cold; bin 4, 0
        (7, -40, 3000, 100, 100),  # below the rest current: rest; bin 1, 1
        (9, 30_000, 4100, 460, 460),  # charging at 46 degC: hot for charging only
    ]
    for seconds, ma, soc, tmin, tmax in blocks:
        for _ in range(seconds * 10):
            lt.update(100, ma, 50_000, soc, tmin, tmax, 0)
    w = lt.w
    assert (w[OP_S], w[OP_MS]) == (133, 0)
    assert (w[REST_S], w[CHG_S], w[DSG_S]) == (30 + 12 + 7, 40 + 20 + 9, 15)
    assert (w[HOT_IDLE], w[HOT_CHG], w[COLD_IDLE], w[COLD_CHG]) == (15, 40 + 9, 12, 20)
    assert hist(w, 2, 2) == 30 and hist(w, 3, 3) == 40 and hist(w, 0, 1) == 20
    assert hist(w, 4, 3) == 15 and hist(w, 4, 0) == 12 and hist(w, 1, 1) == 7
    assert hist(w, 2, 3) == 9  # 41 % SoC, 46 degC
    assert sum(w[HIST:HIST + 20]) == w[OP_S]


def test_state_times_and_histogram_sum_to_the_operating_time() -> None:
    rng = random.Random(7)
    lt = Lifetime(PROFILES["lfp"])
    total = 0
    for _ in range(50_000):
        dt = rng.choice([100, 100, 333, 1000, 2500])  # a late step spans seconds
        total += dt
        t = rng.randint(-300, 700)
        lt.update(dt, rng.choice([0, 20, -20, 5000, -5000]), 13_000, rng.randint(0, 10_000),
                  t, t + rng.randint(0, 50), 0)
    w = lt.w
    assert w[OP_S] * 1000 + w[OP_MS] == total
    assert w[REST_S] + w[CHG_S] + w[DSG_S] == w[OP_S]
    assert sum(w[HIST:HIST + 20]) == w[OP_S]
    assert all(w[i] for i in range(HIST, HIST + 20))  # every bin was reached


# -- harmful events ------------------------------------------------------------------------


def test_each_trip_edge_is_counted_once() -> None:
    lt = Lifetime(NMC)
    f = codec
    trips = [
        0, f.FAULT_DEEP_DISCHARGE, f.FAULT_DEEP_DISCHARGE | f.FAULT_CELL_UNDERVOLTAGE,
        f.FAULT_DEEP_DISCHARGE, 0, f.FAULT_DEEP_DISCHARGE,  # two deep discharges
        f.FAULT_CELL_OVERVOLTAGE, f.FAULT_CELL_OVERVOLTAGE,  # one overcharge
        f.FAULT_OVERTEMPERATURE, f.FAULT_OVERTEMPERATURE | f.FAULT_OVERTEMPERATURE_CHARGE,
        0, f.FAULT_OVERTEMPERATURE_CHARGE,  # over-temperature twice (the kind held across)
        f.FAULT_OVERCURRENT_CHARGE | f.FAULT_OVERCURRENT_DISCHARGE_PEAK,
        f.FAULT_OVERCURRENT_DISCHARGE, 0, f.FAULT_OVERCURRENT_CHARGE_PEAK,  # twice
        f.FAULT_SHORT_CIRCUIT | f.FAULT_OVERCURRENT_DISCHARGE_PEAK,  # over-current held
        f.FAULT_SHORT_CIRCUIT,  # one short circuit
        f.FAULT_CELL_UNDERVOLTAGE | f.FAULT_HOST_LOST | f.FAULT_SENSOR_BUS,  # not harmful
        0,
    ]
    for bits in trips:
        lt.update(100, 0, 50_000, 5000, 250, 250, bits)
    w = lt.w
    assert (w[N_DEEP], w[N_OVERCHARGE], w[N_OVERTEMP], w[N_OVERCURRENT], w[N_SHORT]) == (
        2, 1, 2, 2, 1)


def test_saves_are_due_every_five_minutes_and_soon_after_an_event() -> None:
    lt = Lifetime(NMC)
    for _ in range(299):
        lt.update(1000, 0, 50_000, 5000, 250, 250, 0)
        assert not lt.due()
    lt.update(1000, 0, 50_000, 5000, 250, 250, 0)
    assert lt.due()
    lt.save()
    assert not lt.due()
    lt.update(1000, 0, 50_000, 5000, 250, 250, codec.FAULT_SHORT_CIRCUIT)
    for _ in range(8):  # an event: a save after 10 s, not at once (a bounded rate)
        assert not lt.due()
        lt.update(1000, 0, 50_000, 5000, 250, 250, codec.FAULT_SHORT_CIRCUIT)
    lt.update(1000, 0, 50_000, 5000, 250, 250, 0)
    assert lt.due()
    lt.save()
    lt.config_changed()
    assert not lt.due()
    for _ in range(10):
        lt.update(1000, 0, 50_000, 5000, 250, 250, 0)
    assert lt.due() and lt.w[N_CONFIG] == 1


# -- the record ---------------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(u32, min_size=WORDS, max_size=WORDS), u32, st.data())
def test_record_round_trip_and_a_flipped_byte_is_refused(words: list[int], seq: int,
                                                         data: st.DataObject) -> None:
    buf = encode(words, seq)
    out = [0] * WORDS
    assert decode(bytes(buf), out) == seq and out == words
    at = data.draw(st.integers(0, SIZE - 1))
    bad = bytearray(buf)
    bad[at] ^= data.draw(st.integers(1, 255))
    out2 = [7] * WORDS
    assert decode(bytes(bad), out2) == -1 and out2 == [7] * WORDS  # untouched
    cut = data.draw(st.integers(0, SIZE - 1))
    assert decode(bytes(buf[:cut])) == -1  # a torn record


@pytest.mark.parametrize("n", [40, 60])
def test_a_record_of_another_layout_keeps_the_words_both_know(n: int) -> None:
    """Words are only appended: an older (shorter) record loads with the new words
    zero, a newer (longer) one with the words this layout knows."""
    body = struct.pack("<LL", lifetime._MAGIC, n) + struct.pack(f"<{n}L", *range(1, n + 1))
    body += struct.pack("<L", 9)
    record = body + struct.pack("<L", crc32(body))
    out = [5] * WORDS
    assert decode(record, out) == 9
    assert out == [i + 1 if i < n else 0 for i in range(WORDS)]


def busy(lt: Lifetime, seconds: int, trips: int = 0) -> None:
    for _ in range(seconds):
        lt.update(1000, 12_345, 51_000, 6000, 300, 310, trips)


def test_save_and_load_round_trip(flash: FlashModel) -> None:
    lt = Lifetime(NMC, PATH)
    assert lt.seq == 0 and max(lt.w) == 0  # a new board: nothing yet
    lt.boot(watchdog=True)
    busy(lt, 400, codec.FAULT_OVERTEMPERATURE)
    lt.save()
    again = Lifetime(NMC, PATH)
    assert list(again.w) == list(lt.w) and again.seq == lt.seq == 1
    assert again.w[N_BOOTS] == again.w[N_WATCHDOG] == again.w[N_OVERTEMP] == 1
    assert set(flash.files) == {"/life.0"} and len(flash.files["/life.0"]) == SIZE
    again.save()
    assert set(flash.files) == {"/life.0", "/life.1"}  # the previous record is kept


def test_a_corrupt_or_torn_newest_record_falls_back_to_the_previous(flash: FlashModel) -> None:
    lt = Lifetime(NMC, PATH)
    busy(lt, 100)
    lt.save()
    first = list(lt.w)
    busy(lt, 100)
    lt.save()
    newest = "/life.1"
    good = flash.files[newest]
    for damaged in (good[:-1], good[:37], b"", good[:50] + bytes([good[50] ^ 4]) + good[51:]):
        flash.files[newest] = damaged
        back = Lifetime(NMC, PATH)
        assert list(back.w) == first and back.seq == 1
        back.save()  # over the damaged one, never over the previous record
        assert decode(flash.files[newest]) == 2 and decode(flash.files["/life.0"]) == 1
        flash.files[newest] = good
    del flash.files["/life.0"], flash.files[newest]
    fresh = Lifetime(NMC, PATH)  # both gone: the life starts again at zero
    assert fresh.seq == 0 and max(fresh.w) == 0


def test_power_lost_at_every_point_of_a_save(flash: FlashModel) -> None:
    """Whatever operation the power fails at, the next boot reads the record before
    the save or the one after it, never less."""
    def fresh() -> tuple[Lifetime, list[int]]:
        empty = FlashModel(mount_point="/flash")
        flash.files, flash.blocks_of = empty.files, empty.blocks_of
        flash.reboot()
        lt = Lifetime(NMC, PATH)
        busy(lt, 50)
        lt.save()
        busy(lt, 50)
        lt.save()
        before = list(lt.w)
        busy(lt, 50, codec.FAULT_SHORT_CIRCUIT)
        return lt, before

    lt, _ = fresh()
    start = flash.ops
    lt.save()
    n = flash.ops - start
    after = list(lt.w)  # as the save writes it (the kinds active, the cycles counted)
    assert n >= 2  # open, write, close at least
    outcomes = set()
    for k in range(n + 1):
        lt, before = fresh()
        flash.fail_after = flash.ops + k
        with contextlib.suppress(PowerLost):
            lt.save()
        flash.reboot()
        back = Lifetime(NMC, PATH)
        assert list(back.w) in (before, after), k
        assert back.seq >= 2
        outcomes.add(back.seq)
    assert outcomes == {2, 3}  # lost early: the record before; late: the new one


def test_the_sequence_and_the_counters_never_go_back(flash: FlashModel) -> None:
    """Random power cuts during saves and a flipped byte now and then: each boot
    reads a sequence number and an operating time no lower than the last boot's
    (a damaged newest record costs one save interval, not the life)."""
    rng = random.Random(3)
    lt = Lifetime(NMC, PATH)
    last_seq = last_op = 0
    rotted = 0
    for _ in range(150):
        busy(lt, rng.randint(1, 400))
        if rng.random() < 0.3:
            flash.fail_after = flash.ops + rng.randint(0, 3)  # within the save
        with contextlib.suppress(PowerLost):
            lt.save()
        flash.reboot()
        rot = rng.random() < 0.1 and lt.slot >= 0
        if rot:  # bit rot in the newest record
            name = f"/life.{lt.slot}"
            data = bytearray(flash.files[name])
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            flash.files[name] = bytes(data)
            rotted += 1
        lt = Lifetime(NMC, PATH)
        if rot:  # the previous record stands: one save back, not the life
            assert lt.seq >= last_seq - 1 and lt.seq > 0
        else:
            assert lt.seq >= last_seq and lt.w[OP_S] >= last_op
        last_seq, last_op = lt.seq, lt.w[OP_S]
    assert rotted > 5
    assert last_seq > 50


# -- under real MicroPython --------------------------------------------------------------


@pytest.mark.timeout(180)
def test_update_allocates_nothing_under_micropython() -> None:
    """The per-step update, at the documented limits (1,000 A, 999 V), with steps
    longer than a second and trip edges, under ``heap_lock``; and it counts what
    CPython counts."""
    from cellguard.sim.runtime import MicroPythonRuntime

    steps = [(100, 20_000, 52_000, 5000, 250, 260, 0, 0, 3000, 3100),
             (1000, -1_000_000, 999_999, 10_000, -300, 700, codec.FAULT_SHORT_CIRCUIT, 0,
              3000, 3100),
             (1000, 1_000_000, 999_999, 0, 600, 700, codec.FAULT_OVERTEMPERATURE, 0x100008,
              4300, 4400),
             (37, -7, 3300, 2500, 0, 0, 0, 0x400080, 3000, 3100),
             (2500, -1_000_000, 999_999, 8000, -250, -200, codec.FAULT_DEEP_DISCHARGE,
              0xA00070, 1900, 2000),
             (2000, 0, 50_000, 8000, 0, 0, 0, 0, 3000, 3100)] * 40
    lt = Lifetime(NMC)
    for s in steps:
        lt.update(*s)
    rt = MicroPythonRuntime()
    try:
        out = rt.exec(f"""
import gc, json, micropython
from cellguard_fw.chemistry import PROFILES
from cellguard_fw.lifetime import Lifetime
steps = {steps!r}
lt = Lifetime(PROFILES["nmc"])
s = None
alloc = "ALLOCATED"
gc.collect()
micropython.heap_lock()
try:
    for s in steps:
        lt.update(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9])
    alloc = "NO-ALLOC"
except MemoryError:
    pass
micropython.heap_unlock()
print(json.dumps(list(lt.w)))
print(alloc)
""")
    finally:
        rt.close()
    lines = out.strip().splitlines()
    assert lines[-1] == "NO-ALLOC", out
    assert json.loads(lines[-2]) == list(lt.w)
    # short circuit: the firmware's trip, then the chip's SCD after a step without
    assert lt.w[N_SHORT] == 80 and lt.w[CHG_AH] > 0


def test_a_refused_write_is_counted_and_the_previous_record_is_kept(
        flash: FlashModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing flash (OSError) must not stop the control loop, nor make the next
    save overwrite the newest good record."""
    lt = Lifetime(NMC, PATH)
    busy(lt, 60)
    lt.save()  # seq 1 in slot 0
    good = flash.files["/life.0"]

    def refuse(path: str, mode: str = "r") -> Any:
        raise OSError(28)  # ENOSPC

    monkeypatch.setattr(lifetime, "open", refuse)
    busy(lt, 60)
    lt.save()
    lt.save()
    assert lt.errors == 2 and lt.slot == 0 and not lt.due()
    monkeypatch.setattr(lifetime, "open", flash.open)
    lt.save()  # seq 4, into slot 1: slot 0 still holds the last good record
    assert flash.files["/life.0"] == good and decode(flash.files["/life.1"]) == 4
    assert list(Lifetime(NMC, PATH).w) == list(lt.w)


# -- layout 2: the last harmful events, self-discharge, snapshots, commissioning, lives --

HARM_TOTAL, RING, MADE, SINCE, IDENTITY, LIVES = 51, 52, 68, 69, 70, 78
SD_LOST, SD_GAINED, SD_S, EFC, N_SNAP, SNAP, HISTORY, DEPLOYS = 79, 80, 81, 82, 85, 86, 122, 153


def ring(w: Any) -> list[tuple[int, int, int, int]]:
    """The last harmful events, oldest first: (kind, operating s, unix2020 s, value)."""
    total = w[HARM_TOTAL] & 0xFFFFFF
    return [tuple(w[RING + 4 * (i % 4):RING + 4 * (i % 4) + 4])  # type: ignore[misc]
            for i in range(max(0, total - 4), total)]


def test_the_last_harmful_events_keep_kind_time_and_value() -> None:
    lt = Lifetime(NMC)
    idle = (1000, 0, 50_000, 5000, 250, 250, 0, 0, 3600, 3700)
    lt.update(*idle)
    lt.unix = 1000  # the host set the clock
    lt.update(1000, -30_000, 50_000, 5000, 250, 250, codec.FAULT_DEEP_DISCHARGE, 0, 2480, 2600)
    lt.update(*idle)
    lt.update(1000, 12_000, 50_000, 5000, 250, 250, 0, 0x08, 3600, 4260)  # the chip's COV
    lt.update(1000, 12_000, 50_000, 5000, 250, 250, codec.FAULT_CELL_OVERVOLTAGE, 0x08,
              3600, 4270)  # the firmware trips too while the chip holds: the same event
    lt.update(1000, 0, 50_000, 5000, 250, 640, codec.FAULT_OVERTEMPERATURE, 0, 3600, 3700)
    lt.update(1000, -900_000, 50_000, 5000, 250, 250, codec.FAULT_SHORT_CIRCUIT
              | codec.FAULT_OVERCURRENT_DISCHARGE_PEAK, 0, 3600, 3700)
    w = lt.w
    assert [w[N_DEEP], w[N_OVERCHARGE], w[N_OVERTEMP], w[N_OVERCURRENT], w[N_SHORT]] == \
        [1, 1, 1, 1, 1]
    assert w[HARM_TOTAL] == 5
    # the ring holds the last four, oldest first; one step brought two kinds
    assert ring(w) == [(2, 4, 1003, 4260), (3, 6, 1005, 640), (4, 7, 1006, 900_000),
                       (5, 7, 1006, 900_000)]
    assert lt.edge and not lt.due()  # saved once 10 s have passed since the last save


def rest_soc(lt: Lifetime, soc_cpct: int) -> None:
    """An estimation step's call with the estimator's SoC (0.01 %)."""
    from types import SimpleNamespace

    from cellguard_fw.estimator import StateEstimator

    StateEstimator.follow_rest(SimpleNamespace(soc_pct=soc_cpct / 100), lt)  # type: ignore[arg-type]


def test_self_discharge_is_the_soc_lost_over_long_rests() -> None:
    lt = Lifetime(NMC, capacity_mah=5000)
    for _ in range(30):  # half an hour: not yet relaxed
        lt.update(60_000, 0, 50_000, 5000, 250, 250, 0)
        rest_soc(lt, 5000)
    assert lt.sd[0] == -1
    soc = 5000
    for _ in range(24 * 60):  # a day at rest, the estimate drifting down 0.5 %
        lt.update(60_000, 10, 50_000, 5000, 250, 250, 0)
        soc -= 50 if lt.w[OP_S] % 14400 == 0 else 0
        rest_soc(lt, soc)
    lost = lt.sd[1] - soc
    assert lost > 0
    lt.update(1000, -5000, 50_000, 5000, 250, 250, 0)  # the rest ends
    rest_soc(lt, soc)
    assert lt.w[SD_LOST] == lost and lt.w[SD_GAINED] == 0
    assert 23 * 3600 <= lt.w[SD_S] <= 24 * 3600 and lt.sd[0] == -1
    # a short rest adds nothing
    for _ in range(120):
        lt.update(60_000, 0, 50_000, 5000, 250, 250, 0)
        rest_soc(lt, soc + 100)
    lt.update(1000, -5000, 50_000, 5000, 250, 250, 0)
    rest_soc(lt, soc)
    assert lt.w[SD_LOST] == lost and lt.w[SD_GAINED] == 0


def test_snapshots_first_after_an_hour_then_weekly_in_a_ring() -> None:
    lt = Lifetime(NMC)
    lt.unix = 500
    taken = []
    for day in range(40):
        for _ in range(24):
            lt.update(3_600_000, 0, 50_000, 5000, 250, 250, 0)
            if lt.snapshot_due():
                life_admin.snapshot(lt, 3000 - day, day, 1000 + day, 5000, 120)
                taken.append(lt.w[OP_S])
    assert taken[0] == 3600 and all(b - a == 7 * 86400 for a, b in itertools.pairwise(taken[1:]))
    assert lt.w[N_SNAP] == len(taken) == 6
    first = list(lt.w[SNAP:SNAP + 9])
    assert first[:2] == [500 + 3600, 3600] and first[2] == 3000
    ring_ops = sorted(lt.w[SNAP + 9 * k + 1] for k in range(1, 4))
    assert ring_ops == taken[-3:]  # the last three after the first


def test_commissioning_data_is_written_once() -> None:
    lt = Lifetime(NMC)
    assert life_admin.commission(lt, 100, 0, b"")
    assert life_admin.commission(lt, 100, 200, "PACK-7 \u00e9".encode())  # same date again: fine
    assert not life_admin.commission(lt, 101, 0, b"")  # another date of manufacture
    assert not life_admin.commission(lt, 0, 0, b"PACK-8")  # another identity
    assert life_admin.commission(lt, 0, 200, b"PACK-7 \xc3\xa9")
    w = lt.w
    assert (w[MADE], w[SINCE]) == (100, 200)
    ident = b"".join(w[IDENTITY + i].to_bytes(3, "little") for i in range(8)).rstrip(b"\0")
    assert ident.decode() == "PACK-7 \u00e9"


def test_a_second_life_keeps_the_old_totals_as_history(flash: FlashModel) -> None:
    lt = Lifetime(NMC, PATH)
    life_admin.commission(lt, 100, 200, b"P1")
    for _ in range(2):
        for _ in range(3):
            busy(lt, 3000)
            lt.update(1000, -900_000, 50_000, 5000, 250, 250, codec.FAULT_SHORT_CIRCUIT)
        life_admin.new_life(lt)
        assert lt.w[LIVES] in (1, 2) and lt.w[MADE] == 100 and lt.w[SINCE] == 0
        assert max(lt.w[:HARM_TOTAL]) == 0 and lt.w[IDENTITY] == 0
    again = Lifetime(NMC, PATH)  # both files hold the new life
    w = again.w
    assert w[LIVES] == 2 and again.seq == lt.seq
    # the history is the sum of both ended lives, carried exactly
    assert charge_mams(w, HISTORY + CHG_AH) == 2 * 3 * 3000 * 12_345 * 1000
    assert charge_mams(w, HISTORY + DSG_AH) == 2 * 3 * 900_000 * 1000
    assert w[HISTORY + OP_S] == 2 * 3 * 3001
    assert w[HISTORY + N_SHORT] == 6 and w[HISTORY + N_BOOTS] == 0
    assert {decode(flash.files["/life.0"]), decode(flash.files["/life.1"])} == \
        {again.seq, again.seq - 1}
    assert {"/life.2", "/life.3"} <= set(flash.files)  # the history's own pair


def test_snapshots_and_history_live_in_their_own_record(flash: FlashModel) -> None:
    lt = Lifetime(NMC, PATH)
    busy(lt, 3600)
    life_admin.snapshot(lt, 2900, 2, 1100, 5000, 90)
    saved = set(flash.files)
    assert {"/life.2"} <= saved and "/life.0" not in saved  # only the snapshots' record
    lt.save()
    back = Lifetime(NMC, PATH)
    assert list(back.w) == list(lt.w) and back.w[SNAP + 2] == 2900


def test_a_second_life_cut_by_power_loss_is_finished_or_not_begun(flash: FlashModel) -> None:
    """Power lost at any point of a second-life reset: the next boot has either the
    old life whole, or the new life with the old one in its history; never both (the
    ended life counted twice) and never neither."""
    def fresh() -> Lifetime:
        empty = FlashModel(mount_point="/flash")
        flash.files, flash.blocks_of = empty.files, empty.blocks_of
        flash.reboot()
        lt = Lifetime(NMC, PATH)
        busy(lt, 600)
        lt.update(1000, -900_000, 50_000, 5000, 250, 250, codec.FAULT_SHORT_CIRCUIT)
        lt.save()
        life_admin.snapshot(lt, 2900, 2, 1100, 5000, 90)
        return lt

    lt = fresh()
    old = list(lt.w)
    start = flash.ops
    life_admin.new_life(lt)
    n = flash.ops - start
    assert n >= 8
    outcomes = set()
    for k in range(n + 1):
        lt = fresh()
        flash.fail_after = flash.ops + k
        with contextlib.suppress(PowerLost):
            life_admin.new_life(lt)
        flash.reboot()
        w = Lifetime(NMC, PATH).w
        if w[LIVES] == 0:  # not begun: the old life whole, no history
            assert list(w) == old, k
        else:  # finished: counters from zero, the ended life in the history
            assert w[LIVES] == 1 and w[OP_S] == 0 and w[N_SHORT] == 0, k
            assert w[HISTORY + OP_S] == old[OP_S] and w[HISTORY + N_SHORT] == 1, k
            assert w[N_SNAP] == 0, k
        outcomes.add(w[LIVES])
    assert outcomes == {0, 1}


def test_a_condition_that_holds_across_a_reset_is_one_event(flash: FlashModel) -> None:
    hot = codec.FAULT_OVERTEMPERATURE
    lt = Lifetime(NMC, PATH)
    lt.boot()
    assert lt.due()  # the boot is saved at the first pass, not 10 s later
    lt.save()
    busy(lt, 20, hot)
    assert lt.due()  # the edge
    lt.save()
    again = Lifetime(NMC, PATH)  # a reset while it is still too hot
    again.boot()
    busy(again, 2)  # the protection has not tripped again yet (its delay)
    busy(again, 20, hot)
    assert again.w[N_OVERTEMP] == 1 and again.w[HARM_TOTAL] & 0xFFFFFF == 1
    busy(again, 20)  # it cools down: the fall is saved soon too
    assert again.due()
    again.save()
    third = Lifetime(NMC, PATH)
    busy(third, 12)  # cool past the boot's grace: the record's active kinds expire
    busy(third, 5, hot)  # hot again after a reset: a new event
    assert third.w[N_OVERTEMP] == 2
    assert [e[0] for e in ring(third.w)] == [3, 3]


def test_equivalent_full_cycles_count_in_the_capacity_at_each_save() -> None:
    lt = Lifetime(NMC, capacity_mah=3000)
    for _ in range(3600):  # 3 A in for an hour, 3 A out for an hour: 6 Ah
        lt.update(1000, 3000, 50_000, 5000, 250, 250, 0)
    for _ in range(3600):
        lt.update(1000, -3000, 50_000, 5000, 250, 250, 0)
    lt.save()
    assert lt.w[EFC] == 1000  # 6 Ah / (2 x 3 Ah): one cycle
    lt.cap = 2000  # relearned: the pack has faded
    for _ in range(1000):  # 1 Ah in 1000 s (3.6 A), a cycle of the faded pack is 4 Ah
        lt.update(1000, 3600, 50_000, 5000, 250, 250, 0)
    lt.save()
    assert lt.w[EFC] == 1250 and lt.w[EFC + 1] == 0  # exact: 1 Ah / 4 Ah = 0.25
    for _ in range(7):  # 7 mAh more (1 s at 3.6 A each)
        lt.update(1000, 3600, 50_000, 5000, 250, 250, 0)
    lt.save()
    # 7 mAh x 1000 = 7000 = one milli-cycle of 4000, and 3000 kept for the next save
    assert (lt.w[EFC], lt.w[EFC + 1], lt.w[EFC + 2]) == (1251, 3000, 7007)


def test_a_deploy_is_a_boot_of_another_build(flash: FlashModel) -> None:
    build_a = b"\x01" + bytes(range(1, 33))
    build_b = b"\x01" + bytes(range(2, 34))
    lt = Lifetime(NMC, PATH, build=build_a)
    assert lt.w[DEPLOYS] == 1 and lt.w[DEPLOYS + 1] == 0x030201
    for build, deploys in ((build_a, 1), (b"\x00", 1), (build_b, 2), (build_b, 2)):
        again = Lifetime(NMC, PATH, build=build)  # saved at once: a reset keeps it
        assert again.w[DEPLOYS] == deploys, build[:4]
