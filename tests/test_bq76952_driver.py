"""The BQ76952 driver and its HAL against a recording bus (``bq76952_bus``).

Golden transactions are TI's (SLUAA11, the BQ769x2 Software Development Guide;
SLUUBY2, the Technical Reference Manual), byte for byte, with CRC off and on.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import pytest
from bq76952_bus import ImageBus, crc8, data_sum
from hypothesis import given, settings
from hypothesis import strategies as st

from cellguard_fw import bq76952_setup as setup
from cellguard_fw.bq76952 import CRC_TABLE, Bq76952
from cellguard_fw.bq76952_setup import control_bits, encode, gains, scd_mv
from cellguard_fw.hal import Hal
from cellguard_fw.hal_bq76952 import Bq76952Hal

A = 0x08


def drv(crc: bool = False, bus: ImageBus | None = None) -> tuple[Bq76952, ImageBus]:
    bus = bus or ImageBus(A, crc)
    return Bq76952(bus, A, crc, sleep=lambda us: None), bus


def framed(reg: int, data: list[int]) -> bytes:
    """A CRC write as the chip expects it (the test's own bitwise CRC)."""
    out = [reg, data[0], crc8([A << 1, reg, data[0]])]
    for b in data[1:]:
        out += [b, crc8([b])]
    return bytes(out)


# -- CRC ---------------------------------------------------------------------------------
def test_crc_matches_sluaa11_examples() -> None:
    # SLUAA11 section 4: FET_ENABLE [0x10 0x3E 0x22] -> 0x63, [0x00] -> 0x00;
    # Cell 1 read [0x10 0x14 0x11 0x68] -> 0x33, [0x0B] -> 0x31.
    for f in (crc8, setup.crc8):
        assert f([0x10, 0x3E, 0x22]) == 0x63
        assert f([0x00]) == 0x00
        assert f([0x10, 0x14, 0x11, 0x68]) == 0x33
        assert f([0x0B]) == 0x31


def test_crc_table_is_the_polynomial() -> None:
    """The driver's CRC table (a bytes constant on the board) is CRC-8, polynomial
    0x07, of each byte, computed bit by bit."""
    assert isinstance(CRC_TABLE, bytes) and len(CRC_TABLE) == 256
    assert [CRC_TABLE[i] for i in range(256)] == [crc8([i]) for i in range(256)]


# -- the HAL interface -------------------------------------------------------------------
def test_chip_hal_has_every_hal_method_without_subclassing() -> None:
    """Bq76952Hal keeps hal.py off a chip board's heap by not subclassing Hal: it
    must still have every method of the interface, with the same parameters, and
    where the chip board has no hardware behave as Hal's default."""
    assert Hal not in Bq76952Hal.__mro__
    methods = [n for n, f in vars(Hal).items() if inspect.isfunction(f)]
    assert len(methods) >= 14
    for name in methods:
        mine = getattr(Bq76952Hal, name, None)
        assert inspect.isfunction(mine), f"Bq76952Hal has no {name}"
        assert (list(inspect.signature(mine).parameters)
                == list(inspect.signature(getattr(Hal, name)).parameters)), name
    hal = Bq76952Hal(make_board(), ImageBus(A, False))
    base = Hal()
    for name in ("read_link_mv", "output_feedback"):
        assert getattr(hal, name)() == getattr(base, name)() == -1
    assert hal.set_precharge(True) is None and base.set_precharge(True) is None


# -- golden transactions -------------------------------------------------------------------
def test_alarm_enable_write_golden() -> None:
    d, bus = drv()
    assert setup.write_reg(d, 0x66, 0xF082)
    assert bus.log == [("writeto_mem", A, 0x66, bytes([0x82, 0xF0]))]
    d, bus = drv(crc=True)
    assert setup.write_reg(d, 0x66, 0xF082)
    assert bus.log == [("writeto", A, framed(0x66, [0x82, 0xF0]), True)]
    assert bus.regs[0x66:0x68] == bytes([0x82, 0xF0])


def test_cell1_read_golden() -> None:
    d, bus = drv()
    bus.set16(0x14, 0x0E74)  # SLUAA11: 3700 mV
    assert setup.read_reg(d, 0x14) == 3700
    assert bus.log == [("readfrom_mem_into", A, 0x14, 2)]
    d, bus = drv(crc=True)
    bus.set16(0x14, 0x0B68)
    raw = bytearray(4)
    bus.record = False
    bus.ptr = 0x14
    bus.readfrom_into(A, raw)
    assert bytes(raw) == bytes([0x68, 0x33, 0x0B, 0x31])  # SLUAA11 figure 4-2
    bus.record = True
    assert setup.read_reg(d, 0x14) == 2920
    assert bus.log == [("writeto", A, bytes([0x14]), False), ("readfrom_into", A, 4)]


@pytest.mark.parametrize("cmd", [0x0022, 0x0012, 0x0090, 0x0092])
def test_command_only_subcommands_golden(cmd: int) -> None:
    # FET_ENABLE, RESET, SET_CFGUPDATE, EXIT_CFGUPDATE: the command to 0x3E, low byte first
    d, bus = drv()
    assert setup.subcommand(d, cmd)
    assert bus.log == [("writeto_mem", A, 0x3E, bytes([cmd & 0xFF, cmd >> 8]))]
    d, bus = drv(crc=True)
    assert setup.subcommand(d, cmd)
    assert bus.log == [("writeto", A, framed(0x3E, [cmd & 0xFF, cmd >> 8]), True)]
    if cmd == 0x0022:  # SLUAA11 figure 4-1, every byte
        assert bus.log[0][2] == bytes([0x3E, 0x22, 0x63, 0x00, 0x00])
    d, bus = drv()
    assert setup.reset(d) if cmd == 0x0012 else True


def test_enabled_protections_a_read_golden() -> None:
    d, bus = drv()
    bus.dm_set(0x9261, 1, 0x88)  # SLUAA11: the default, COV and SCD
    assert setup.dm_read(d, 0x9261, 1) == 0x88
    block = bytes(bus.dm[0x9261 - 0x9180:0x9261 - 0x9180 + 32])
    assert bus.log == [
        ("writeto_mem", A, 0x3E, bytes([0x61, 0x92])),
        ("readfrom_mem_into", A, 0x3E, 2),
        ("readfrom_mem_into", A, 0x60, 2),
        ("readfrom_mem_into", A, 0x40, 32),
    ]
    assert bus.regs[0x60] == ~data_sum(0x9261, block) & 0xFF
    assert bus.regs[0x61] == 0x24  # TRM: 32 bytes + 4


def test_enabled_protections_a_read_with_crc() -> None:
    d, bus = drv(crc=True)
    bus.dm_set(0x9261, 1, 0x88)
    assert setup.dm_read(d, 0x9261, 1) == 0x88
    assert bus.log == [
        ("writeto", A, framed(0x3E, [0x61, 0x92]), True),
        ("writeto", A, bytes([0x3E]), False), ("readfrom_into", A, 4),
        ("writeto", A, bytes([0x60]), False), ("readfrom_into", A, 4),
        ("writeto", A, bytes([0x40]), False), ("readfrom_into", A, 64),
    ]
    bus.regs[0x40] = 0x89  # the buffer no longer matches the checksum: caught
    bus.record = False
    bus._run = lambda cmd: None  # (the chip does not refill it)
    assert setup.dm_read(d, 0x9261, 1) == -1 and d.errors[2] == 3


def test_enabled_protections_a_write_golden() -> None:
    # SLUAA11 3.3: 0x8C to 0x9261, checksum of (0x61, 0x92, 0x8C) = 0x80, length 5
    d, bus = drv()
    bus.regs[0x12] |= 1  # in CONFIG_UPDATE
    assert setup.dm_write(d, 0x9261, 1, 0x8C)
    assert bus.log[:2] == [
        ("writeto_mem", A, 0x3E, bytes([0x61, 0x92, 0x8C])),
        ("writeto_mem", A, 0x60, bytes([0x80, 0x05])),
    ]
    assert bus.dm_get(0x9261, 1) == 0x8C
    d, bus = drv(crc=True)
    bus.regs[0x12] |= 1
    assert setup.dm_write(d, 0x9261, 1, 0x8C)
    assert bus.log[:2] == [
        ("writeto", A, framed(0x3E, [0x61, 0x92, 0x8C]), True),
        ("writeto", A, framed(0x60, [0x80, 0x05]), True),
    ]


def test_cell1_gain_write_matches_trm_example() -> None:
    # TRM: Cell 1 Gain (0x9180) = 12410 (0x307A): checksum 0x44, length 0x06
    d, bus = drv()
    bus.regs[0x12] |= 1
    assert setup.dm_write(d, 0x9180, 2, 12410)
    assert bus.log[1] == ("writeto_mem", A, 0x60, bytes([0x44, 0x06]))


# -- configure ------------------------------------------------------------------------------
def test_configure_enters_config_update_only_when_something_differs() -> None:
    d, bus = drv(crc=True)
    want = [(0x9261, 1, 0xFC), (0x9278, 1, 90), (0x9279, 2, 607)]
    assert setup.configure(d, want)
    assert 0x0090 in bus.commands and 0x0092 in bus.commands
    assert d.written == 3
    assert [bus.dm_get(a, s) for a, s, _ in want] == [v for _, _, v in want]
    bus.commands.clear()
    assert setup.configure(d, want)  # a restart: the chip has its settings
    assert 0x0090 not in bus.commands and d.written == 0
    assert bus.commands == [0x9261]  # one 32-byte read serves all three
    bus.dm_set(0x9278, 1, 86)  # one differs: only it is written
    bus.commands.clear()
    assert setup.configure(d, want)
    assert d.written == 1 and bus.commands.count(0x0090) == 1
    assert not bus.regs[0x12] & 1  # left CONFIG_UPDATE


def test_configure_write_that_does_not_hold_fails_and_counts() -> None:
    d, bus = drv()
    orig = bus._apply
    bus._apply = lambda cmd, payload, k: None  # the chip ignores the write
    assert not setup.configure(d, [(0x9261, 1, 0xFC)])
    assert d.errors[4] > 0 and d.errors[0] == 0  # a verify failure, not a bus one
    assert not bus.regs[0x12] & 1  # CONFIG_UPDATE left even so
    bus._apply = orig


# -- FETs and balancing -----------------------------------------------------------------------
def test_fet_control_bit_order_differs_from_fet_status() -> None:
    # FET Status (0x7F): bit 0 CHG, 1 PCHG, 2 DSG, 3 PDSG (FET on).
    # FET_CONTROL (0x0097): bit 0 DSG_OFF, 1 PDSG_OFF, 2 CHG_OFF, 3 PCHG_OFF.
    chg, pchg, dsg, pdsg = 1, 2, 4, 8
    assert control_bits(chg | pchg | dsg | pdsg) == 0
    assert control_bits(0) == 0x0F
    assert control_bits(chg | pchg | dsg) == 0b0010  # PDSG off
    assert control_bits(pchg | dsg | pdsg) == 0b0100  # CHG off
    assert control_bits(chg | pchg | pdsg) == 0b0001  # DSG off
    assert control_bits(chg | dsg | pdsg) == 0b1000  # PCHG off
    d, bus = drv(crc=True)
    assert setup.fet_control(d, chg)  # CHG only: DSG, PDSG, PCHG off
    assert bus.fet_control == 0b1011
    assert bus.log[0][2] == framed(0x3E, [0x97, 0x00, 0x0B])


def test_fet_blocking_commands() -> None:
    d, bus = drv()
    assert d.block(True, True, -1)
    assert bus.commands == [0x0095]  # ALL_FETS_OFF
    bus.commands.clear()
    assert d.block(False, True, 3)  # lift the charge block: ALL_FETS_ON, block discharge
    assert bus.commands == [0x0096, 0x0093]
    bus.commands.clear()
    assert d.block(True, True, 2)  # add the charge block
    assert bus.commands == [0x0095]
    bus.commands.clear()
    assert d.block(True, False, 0)
    assert bus.commands == [0x0094]  # CHG_PCHG_OFF


def test_fet_enable_only_toggles_when_clear() -> None:
    d, bus = drv()
    bus.mfg_status = 0
    assert setup.fet_enable(d) and bus.mfg_status & 0x10
    bus.commands.clear()
    assert setup.fet_enable(d) and 0x0022 not in bus.commands


def test_balancing_mask_written_and_read_back() -> None:
    d, bus = drv(crc=True)
    assert d.balance(0x8005)
    assert bus.cb_active == 0x8005
    s = (0x83 + 0x00 + 0x05 + 0x80) & 0xFF
    assert bus.log[1][2] == framed(0x60, [~s & 0xFF, 6])
    bus.ignore_cb = True
    assert not d.balance(0x0001)  # the chip did not take it: reported


# -- measurement and units ---------------------------------------------------------------------
def image(bus: ImageBus, cells: list[int], current_raw: int, temps_k: list[int],
          stack: int, status: tuple[int, ...] = (0,) * 6, fets: int = 0x05) -> None:
    for i, v in enumerate(status):
        bus.regs[0x02 + i] = v
    for i, mv in enumerate(cells):
        bus.set16(0x14 + 2 * i, mv)
    bus.set16(0x34, stack)
    bus.set16(0x36, stack)
    bus.set16(0x38, stack)
    bus.set16(0x3A, current_raw)
    for i, k in enumerate(temps_k):
        bus.set16(0x68 + 2 * i, k)
    bus.regs[0x7F] = fets


@pytest.mark.parametrize("crc", [False, True])
def test_measurement_cycle_is_four_block_reads(crc: bool) -> None:
    d, bus = drv(crc)
    cells = [3000 + 7 * i for i in range(16)]
    image(bus, cells, -1234, [2982 + i for i in range(7)], 4800, (1, 2, 3, 4, 5, 6), 0x0D)
    assert d.read()
    assert list(d.cells) == cells
    assert d.current_ma == -1234 and d.stack_mv == 48000
    assert list(d.temps) == [2982 + i for i in range(7)]
    assert bytes(d.safety) == bytes([1, 2, 3, 4, 5, 6]) and d.fet_status == 0x0D
    if crc:
        regs = [e[2][0] for e in bus.log if e[0] == "writeto"]
        sizes = [e[2] for e in bus.log if e[0] == "readfrom_into"]
        assert sizes == [12, 84, 40, 2]
    else:
        regs = [e[2] for e in bus.log]
        sizes = [e[3] for e in bus.log]
        assert sizes == [6, 42, 20, 1]
    assert regs == [0x02, 0x12, 0x62, 0x7F]


@settings(max_examples=200, deadline=None)
@given(da=st.integers(0, 7), ma=st.integers(-3_000_000, 3_000_000),
       cv=st.integers(0, 32767), crc=st.booleans())
def test_decoding_within_one_lsb_across_da_scalings(da: int, ma: int, cv: int,
                                                     crc: bool) -> None:
    unit_01ma = (1, 10, 100, 1000)[da & 3]  # user-amps in 0.1 mA
    raw = round(ma * 10 / unit_01ma)
    raw = max(-32768, min(32767, raw))
    want_ma = raw * unit_01ma / 10
    d, bus = drv(crc)
    setup.units(d, da)
    volts = 10 if da & 4 else 1
    image(bus, [3300] * 16, raw, [2731] * 7, cv)
    assert d.read()
    assert abs(d.current_ma - want_ma) <= max(1, unit_01ma / 10) / 2 + 1e-9
    assert d.stack_mv == cv * volts


def test_hal_reads_every_thermistor_source() -> None:
    sources = ["int", "cfetoff", "dfetoff", "alert", "ts1", "ts2", "ts3"]
    board = make_board(cells=4, temps=7)
    board["afe"]["ts"] = list(reversed(sources))
    bus = ImageBus(A, True)
    hal = Bq76952Hal(board, bus)
    assert [bus.dm_get(0x92FD + i, 1) for i in range(3)] == [0x07] * 3  # TS pins: thermistors
    kelvin = [2731 + 100 * i for i in range(7)]  # 0.0 .. 60.0 degC, one per source
    image(bus, [3000, 3100, 3200, 0] + [0] * 11 + [3300], 0, kelvin, 1280)
    cells, temps = [0] * 4, [0] * 7
    hal.sample(cells, temps)
    assert cells == [3000, 3100, 3200, 3300]  # VC1..VC3 and VC16 by default
    assert temps == list(reversed(kelvin))
    fe = hal.frontend(board["frontend"])
    for code in temps:
        assert abs(fe.temp.convert(code) - (code - 2731.5)) <= 1  # 0.1 K -> 0.1 degC


def test_frontend_rails_open_cold_short_hot() -> None:
    fe = setup.frontend({"type": "bq76952", "cell_adc": {"full_scale_mv": 5000}})
    assert fe.temp.max_code // 100 == 2732 - 400  # -40.0 degC: an open thermistor
    assert fe.temp.open_code == 2732 + 1500  # 150.0 degC: a shorted one
    assert fe.cell.convert(3456) == 3456 and fe.current.convert(-5000) == -5000


# -- threshold encoding ---------------------------------------------------------------------------
# The chip's value for each code (TRM), independent of the driver's arithmetic.
DECODE = {
    "cov": (lambda c, r: c * 50.6, 20, 110),
    "cuv": (lambda c, r: c * 50.6, 20, 90),
    "occ": (lambda c, r: c * 2e6 / r, 2, 62),  # mA across r uOhm
    "ocd": (lambda c, r: c * 2e6 / r, 2, 100),
    "temp_hi": (lambda c, r: c * 10, -40, 120),
    "temp_lo": (lambda c, r: c * 10, -40, 120),
    "v_delay": (lambda c, r: c * 3.3, 1, 2047),
    "oc_delay": (lambda c, r: (c + 2) * 3.3, 1, 127),
    "scd_delay": (lambda c, r: (c - 1) * 15, 1, 31),
}
STEP = {"cov": 50.6, "cuv": 50.6, "occ": None, "ocd": None, "temp_hi": 10, "temp_lo": 10,
        "v_delay": 3.3, "oc_delay": 3.3, "scd_delay": 15}
UP = {"cov", "occ", "ocd", "temp_hi", "v_delay", "oc_delay", "scd_delay"}


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(DECODE)), value=st.integers(-2000, 7000),
       shunt=st.integers(50, 5000))
def test_encoding_round_trip_within_one_step_or_clamped(kind: str, value: int,
                                                        shunt: int) -> None:
    if kind in ("occ", "ocd"):
        value = value * 100  # mA
    decode, lo, hi = DECODE[kind]
    code, clamped = encode(kind, value, shunt)
    assert lo <= code <= hi
    back = decode(code, shunt)
    step = STEP[kind] or 2e6 / shunt
    if clamped:  # only when the value lies beyond the range, and never wrapped
        assert value > decode(hi, shunt) - step or value < decode(lo, shunt) + step
        assert code in (lo, hi)
    else:
        assert abs(back - value) < step + 1e-6
        # rounded away from tripping early: over-limits up, under-limits down
        assert back >= value - 1e-6 if kind in UP else back <= value + 1e-6


def test_scd_table_and_clamp() -> None:
    table = [10, 20, 40, 60, 80, 100, 125, 150, 175, 200, 250, 300, 350, 400, 450, 500]
    assert [scd_mv(i) for i in range(16)] == table
    for i, mv in enumerate(table):
        assert encode("scd", mv * 2, 500_000) == (i, False)  # 2 mA x 0.5 Ohm = 1 mV
        assert encode("scd", mv * 2 - 1, 500_000)[0] == i  # just below: the same step
    assert encode("scd", 2_000_000, 500) == (15, True)  # 1000 mV: beyond the table
    assert encode("scd", 1, 500) == (0, False)


def test_cc_gain_from_shunt() -> None:
    import struct

    cc, cap = gains(500)  # 0.5 mOhm
    f = struct.unpack("<f", struct.pack("<I", cc))[0]
    g = struct.unpack("<f", struct.pack("<I", cap))[0]
    assert f == pytest.approx(7.4768 / 0.5, rel=1e-6)
    assert g == pytest.approx(7.4768 / 0.5 * 298261.6178, rel=1e-6)


# -- the HAL -------------------------------------------------------------------------------------
def make_board(cells: int = 16, temps: int = 2, crc: bool = True) -> dict[str, Any]:
    return {
        "name": "t", "cells": cells, "temp_sensors": temps, "chemistry": "lfp",
        "capacity_mah": 100000, "charge_current_max_ma": 50000,
        "discharge_current_max_ma": 100000, "control_period_ms": 100,
        "afe": {"chip": "bq76952", "address": 8, "crc": crc, "shunt_uohm": 500},
        "frontend": {"type": "bq76952", "cell_adc": {"full_scale_mv": 5000},
                     "current_adc": {"full_scale_ma": 300000}},
    }


def trips() -> list[int]:
    # the protection table's order: OV, UV, OT, UT, charge, discharge, deep, OT/UT
    # charge, charge peak, discharge peak, short circuit
    return [3650, 2500, 600, -200, 50000, 100000, 2000, 450, 0, 100000, 200000, 400000]


def test_hal_arms_the_chip_beyond_the_firmware_limits() -> None:
    bus = ImageBus(A, True)
    hal = Bq76952Hal(make_board(), bus)
    assert hal.configured
    assert bus.dm_get(0x9303, 1) == 0x06  # 400 A sense range: 10 mA user-amps, cV
    assert bus.dm_get(0x9304, 2) == 0xFFFF
    assert hal.arm(trips())
    cov = bus.dm_get(0x9278, 1)
    cuv = bus.dm_get(0x9275, 1)
    assert cov * 50.6 >= 3650 + 100 > (cov - 1) * 50.6
    assert cuv * 50.6 <= 2500 - 100 < (cuv + 1) * 50.6
    occ = bus.dm_get(0x9280, 1) * 2e6 / 500  # mA
    assert occ >= 100000 * 1.25
    ocd1 = bus.dm_get(0x9282, 1) * 2e6 / 500
    assert ocd1 >= 200000 * 1.25
    assert scd_mv(bus.dm_get(0x9286, 1)) * 1e6 / 500 >= 2 * 400000
    assert bus.dm_get(0x929A, 1) == 65 and bus.dm_get(0x92A6, 1) == -25 & 0xFF
    assert bus.dm_get(0x9261, 1) == 0xFC
    assert hal.clamped == ("ocd2",)  # 500 A across 0.5 mOhm is 250 mV: beyond OCD2's 200 mV
    bus.commands.clear()
    board = make_board()
    hal2 = Bq76952Hal(board, bus)  # a restart: nothing differs, no CONFIG_UPDATE
    assert hal2.arm(trips()) and 0x0090 not in bus.commands
    board["frontend"]["current_adc"]["full_scale_ma"] = 327671  # more than 10 mA hold
    with pytest.raises(ValueError, match="full_scale_ma above the 327670 mA"):
        Bq76952Hal(board, bus)


def test_hal_fets_follow_output_and_directions() -> None:
    bus = ImageBus(A, False)
    hal = Bq76952Hal(make_board(), bus)
    assert 0x0095 in bus.commands and bus.cb_active == 0  # blocked, not balancing
    bus.commands.clear()
    hal.set_output(True)
    assert bus.commands == [0x0096]
    bus.commands.clear()
    hal.set_directions(True, False)
    assert bus.commands == [0x0093]  # DSG_PDSG_OFF
    bus.commands.clear()
    hal.set_directions(True, False)
    assert bus.commands == []  # nothing changed: nothing sent
    hal.set_output(False)
    assert bus.commands == [0x0095]
    bus.commands.clear()
    image(bus, [3300] * 16, 0, [2982] * 7, 5280, fets=0x05)  # FETs on though blocked
    hal.sample([0] * 16, [0] * 2)
    assert bus.commands == [0x0095]  # re-asserted


def test_hal_chip_trips_and_balancing() -> None:
    bus = ImageBus(A, True)
    board = make_board(cells=4)
    board["afe"]["cells"] = [1, 2, 5, 16]
    hal = Bq76952Hal(board, bus)
    image(bus, [3300] * 16, 0, [2982] * 7, 1320, status=(0, 0x08, 0, 0x10, 0, 0x80))
    hal.sample([0] * 4, [0] * 2)
    assert hal.chip_trips() == 0x08 | 0x10 << 8 | 0x80 << 16  # COV, OTC, OCD3
    hal.set_balancing(0b1010)  # firmware cells 1 and 3: VC2 and VC16
    assert bus.cb_active == (1 << 1) | (1 << 15)


# -- bus faults ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("crc", "fault"), [(False, "nack"), (True, "nack"), (False, "timeout"),
                                            (True, "timeout"), (True, "crc")])
def test_transient_faults_are_retried_and_counted(crc: bool, fault: str) -> None:
    d, bus = drv(crc)
    image(bus, [3300] * 16, 0, [2982] * 7, 5280)
    if fault == "crc":
        bus.corrupt = 2
    else:
        bus.fail = 2
        bus.timeout = fault == "timeout"
    assert d.read()  # two failures, then the third try of the same transaction works
    # counted by kind: a NACK, a timeout (ETIMEDOUT) and a bad CRC each their own
    assert d.errors[{"nack": 0, "crc": 1, "timeout": 5}[fault]] == 2
    assert sum(d.errors) == 2
    assert not d.dead and list(d.cells) == [3300] * 16


@pytest.mark.parametrize(("crc", "fault"), [(False, "nack"), (True, "nack"), (True, "crc")])
def test_dead_bus_becomes_a_sensor_fault_without_exceptions(crc: bool, fault: str) -> None:
    bus = ImageBus(A, crc)
    hal = Bq76952Hal(make_board(crc=crc), bus)
    image(bus, [3300] * 16, 0, [2982] * 7, 5280)
    cells, temps = [0] * 16, [0] * 2
    hal.sample(cells, temps)
    assert hal.chip_trips() != -1
    if fault == "crc":
        bus.corrupt = 10**6  # every answer garbled
    else:
        bus.fail = 10**6  # the chip is gone
    for n in range(1, 4):
        hal.sample(cells, temps)  # never raises
        hal.set_output(n % 2 == 0)
        hal.set_balancing(n)
        assert (hal.chip_trips() == -1) == (n >= 3)
    assert cells == [3300] * 16  # the last readings kept
    assert hal.driver.errors[1 if fault == "crc" else 0] >= 9  # 3 cycles x 3 tries, counted
    bus.fail = bus.corrupt = 0
    hal.sample(cells, temps)
    assert hal.chip_trips() != -1  # back: the firmware's latch holds the fault


def test_busy_subcommand_is_bounded() -> None:
    d, bus = drv()
    bus.busy = 10**6  # never finishes
    assert setup.dm_read(d, 0x9261, 1) == -1
    assert d.errors[3] == 3  # each try gave up after its polls
    assert bus.busy > 10**6 - 100  # bounded: a few dozen polls, not a hang


def test_busy_then_ready_is_waited_for() -> None:
    d, bus = drv(crc=True)
    bus.dm_set(0x9261, 1, 0x88)
    bus.busy = 3
    assert setup.dm_read(d, 0x9261, 1) == 0x88
    assert d.errors[3] == 0


def test_bad_checksum_is_retried_and_counted() -> None:
    d, bus = drv()
    bus.dm_set(0x9261, 1, 0x88)
    bus.bad_checksum = 1
    assert setup.dm_read(d, 0x9261, 1) == 0x88
    assert d.errors[2] == 1
    bus.bad_checksum = 10
    assert setup.dm_read(d, 0x9261, 1) == -1  # past the bound: reported, not raised


def test_configure_on_a_dead_bus_reports_failure() -> None:
    bus = ImageBus(A, True)
    bus.fail = 10**6
    hal = Bq76952Hal(make_board(), bus)  # never raises
    assert not hal.configured
    assert not hal.arm(trips())
    assert copy.copy(hal.driver.errors[0]) > 0


def wire_bytes(log: list[tuple[Any, ...]]) -> tuple[int, int]:
    """(transactions, bytes on the wire) of a recorded log: a read is the address
    byte, the register, the repeated-start address byte and the data; a write the
    address byte, the register and the data."""
    transactions = 0
    total = 0
    for entry in log:
        kind = entry[0]
        if kind == "readfrom_mem_into":
            transactions += 1
            total += 3 + entry[3]
        elif kind == "writeto_mem":
            transactions += 1
            total += 2 + len(entry[3])
        elif kind == "writeto" and entry[3]:
            transactions += 1
            total += 1 + len(entry[2])
        elif kind == "writeto":  # the register of a CRC read, before the repeated start
            transactions += 1
            total += 2
        elif kind == "readfrom_into":
            total += 1 + entry[2]
    return transactions, total


@pytest.mark.parametrize(("crc", "want"), [(False, (4, 81)), (True, (4, 150))])
def test_bus_traffic_per_control_period(crc: bool, want: tuple[int, int]) -> None:
    # docs/bq76952.md: four transactions a period, 81 bytes (CRC off) or 150 (CRC
    # on): 1.82 ms or 3.38 ms at 400 kHz (9 clocks a byte)
    bus = ImageBus(A, crc)
    hal = Bq76952Hal(make_board(crc=crc), bus)
    image(bus, [3300] * 16, 0, [2982] * 7, 5280, fets=0)
    bus.log.clear()
    hal.sample([0] * 16, [0] * 2)
    assert wire_bytes(bus.log) == want


def test_a_chip_reset_is_rearmed() -> None:
    bus = ImageBus(A, True)
    hal = Bq76952Hal(make_board(), bus)
    assert hal.arm(trips())
    image(bus, [3300] * 16, 0, [2982] * 7, 5280, fets=0)
    hal.set_output(True)
    hal.sample([0] * 16, [0] * 2)
    # the chip resets: data memory back to defaults, POR set, host FET blocks gone
    bus.dm = bytearray(len(bus.dm))
    bus.regs[0x12] |= 8
    bus.mfg_status = 0
    bus.commands.clear()
    hal.sample([0] * 16, [0] * 2)
    assert bus.dm_get(0x9303, 1) == hal.da and bus.dm_get(0x9261, 1) == 0xFC
    assert bus.mfg_status & 0x10  # FET_EN again
    assert 0x0096 in bus.commands  # the FETs as the firmware wants them
    bus.commands.clear()
    hal.sample([0] * 16, [0] * 2)  # POR still set: no second re-arm
    assert 0x0090 not in bus.commands


def test_start_up_code_leaves_with_each_use() -> None:
    """``bq76952_setup`` is out of ``sys.modules`` and the package after the HAL's
    start, its front end, ``arm`` and a re-arm, and nothing the HAL keeps is
    from it (a function or class would hold the whole module)."""
    import sys

    import cellguard_fw

    def loaded() -> bool:
        return "cellguard_fw.bq76952_setup" in sys.modules or hasattr(cellguard_fw,
                                                                      "bq76952_setup")

    bus = ImageBus(A, True)
    board = make_board()
    hal = Bq76952Hal(board, bus)
    assert not loaded()
    fe = hal.frontend(board["frontend"])
    assert not loaded()
    assert hal.arm(trips()) and not loaded()
    bus.dm = bytearray(len(bus.dm))
    bus.regs[0x12] |= 8  # a chip reset: re-armed on the next sample
    hal.sample([0] * 16, [0] * 2)
    assert not loaded() and bus.dm_get(0x9261, 1) == 0xFC
    for obj in (hal, hal.driver, fe, fe.temp):
        for value in vars(obj).values():
            assert getattr(value, "__module__", None) != "cellguard_fw.bq76952_setup", value


class Rp2Bus(ImageBus):
    """An rp2's machine.I2C: a NACKed register byte or data byte raises nothing;
    ``readfrom_mem_into`` returns without data, ``writeto`` returns the ACK count."""

    def __init__(self, crc: bool) -> None:
        super().__init__(A, crc)
        self.silent = 0

    def readfrom_mem_into(self, addr: int, reg: int, buf: Any) -> None:
        if self.silent:
            self.silent -= 1
            return
        super().readfrom_mem_into(addr, reg, buf)

    def writeto(self, addr: int, buf: Any, stop: bool = True) -> int:
        if self.silent:
            self.silent -= 1
            return 0
        return super().writeto(addr, buf, stop)


@pytest.mark.parametrize("crc", [False, True])
def test_nacks_an_rp2_does_not_raise_are_caught(crc: bool) -> None:
    bus = Rp2Bus(crc)
    d = Bq76952(bus, A, crc, sleep=lambda us: None)
    image(bus, [3300] * 16, 0, [2982] * 7, 5280)
    assert d.read()
    image(bus, [3400] * 16, 0, [2982] * 7, 5280)
    bus.silent = 2  # the next two transfers NACKed without an error
    assert d.read()
    assert list(d.cells) == [3400] * 16 and d.errors[0] == 2  # retried, counted
    bus.silent = 10**6
    for _ in range(3):
        assert not d.read()
    assert d.dead


def test_board_settings_override_the_base_settings() -> None:
    bus = ImageBus(A, False)
    board = make_board(temps=1)
    board["afe"]["ts"] = ["ts2"]
    board["afe"]["settings"] = [[0x92FE, 1, 0x0B], [0x9308, 1, 0x0D]]  # TS2 config, FET Options
    hal = Bq76952Hal(board, bus)
    assert hal.configured
    assert bus.dm_get(0x92FE, 1) == 0x0B and bus.dm_get(0x9308, 1) == 0x0D
    assert bus.dm_get(0x92FD, 1) == 0  # TS1 not read: left alone


def test_a_fresh_hal_on_a_reset_chip_rearms_once() -> None:
    bus = ImageBus(A, True)
    hal = Bq76952Hal(make_board(), bus)  # nothing needed writing? the image is blank: it did
    image(bus, [3300] * 16, 0, [2982] * 7, 5280, fets=0)
    bus.regs[0x12] |= 8  # POR set (a chip whose defaults are the board's: nothing to write)
    bus.commands.clear()
    hal.sample([0] * 16, [0] * 2)
    assert any(0x9180 <= c < 0x9480 for c in bus.commands)  # its settings read back once
    bus.commands.clear()
    hal.sample([0] * 16, [0] * 2)
    assert not any(0x9180 <= c < 0x9480 for c in bus.commands)  # and not every period


@pytest.mark.parametrize(("change", "message"), [
    ({"cells": [1, 2, 3]}, "afe.cells needs 16 VC inputs"),
    ({"cells": [0, *range(2, 17)]}, "afe.cells needs 16 VC inputs"),
    ({"ts": ["ts1", "ts9"]}, "afe.ts needs 2 of"),
    ({"shunt_uohm": 0}, "afe.shunt_uohm must be"),
    ({"chip": "bq76940"}, "afe.chip must be bq76952"),
])
def test_bad_board_files_get_a_clear_error(change: dict[str, Any], message: str) -> None:
    board = make_board()
    board["afe"].update(change)
    with pytest.raises(ValueError, match=message):
        Bq76952Hal(board, ImageBus(A, True))
