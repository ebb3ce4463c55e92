"""The simulated BQ76952 (cellguard.sim.bq76952; docs/bq76952.md, "The simulated chip"),
driven through an I2cBus with the operations the virtual board's machine.I2C sends."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellguard.sim import bq76952 as bq
from cellguard.sim.bq76952 import Bq76952, checksum, crc8
from cellguard.sim.i2c import I2cBus

W, R = "10", "11"  # the chip's address bytes on the wire (0x08 << 1, | 1)


class Host:
    """A controller as the rp2 port drives it: a register write is one transfer; a
    register read is the pointer written without a STOP, then a repeated START and the
    read. ``t`` is the board clock (ms) the bus gives the chip at each START."""

    def __init__(self, chip: Bq76952, *, crc: bool = False) -> None:
        self.chip, self.crc, self.t = chip, crc, 0.0
        self.bus = I2cBus("test")
        self.bus.attach(0x08, chip)

    def raw(self, ops: list[str]) -> list[str]:
        return self.bus.transfer(ops, self.t)

    def write(self, reg: int, data: bytes) -> list[str]:
        body = bytes([reg])
        if self.crc:
            framed = bytearray(body)
            for i, byte in enumerate(data):
                framed.append(byte)
                framed.append(crc8(bytes([0x10, reg, byte]) if i == 0 else bytes([byte])))
            body = bytes(framed)
        else:
            body += data
        return self.raw(["S", "W" + W + body.hex(), "P"])

    def read(self, reg: int, n: int) -> bytes:
        first = self.raw(["S", "W" + W + f"{reg:02x}"])
        assert first == ["-", "2"], first
        wire = 2 * n if self.crc else n
        res = self.raw(["S", "W" + R, f"R{wire}", "P"])
        assert res[1] == "1", res
        got = bytes.fromhex(res[2])
        if not self.crc:
            return got
        out = bytearray()
        for i in range(n):
            byte, crc = got[2 * i], got[2 * i + 1]
            cover = bytes([0x10, reg, 0x11, byte]) if i == 0 else bytes([byte])
            if crc8(cover) != crc:
                raise OSError("bad CRC")
            out.append(byte)
        return bytes(out)

    def u16(self, reg: int) -> int:
        return struct.unpack("<H", self.read(reg, 2))[0]

    def i16(self, reg: int) -> int:
        return struct.unpack("<h", self.read(reg, 2))[0]

    def sub(self, cmd: int) -> None:
        self.write(0x3E, struct.pack("<H", cmd))

    def wait_ready(self, cmd: int, polls: int = 100) -> int:
        """Poll 0x3E/0x3F until the chip answers the subcommand: the polls it took."""
        for i in range(1, polls + 1):
            if self.u16(0x3E) == cmd:
                return i
        raise TimeoutError(f"subcommand 0x{cmd:04x} still busy")

    def sub_read(self, cmd: int, n: int) -> bytes:
        self.sub(cmd)
        self.wait_ready(cmd)
        length = self.read(0x61, 1)[0]
        data = self.read(0x40, length - 4)
        assert self.read(0x60, 1)[0] == checksum(struct.pack("<H", cmd) + data)
        return data[:n]

    def sub_write(self, cmd: int, data: bytes, *, cks: int | None = None,
                  length: int | None = None) -> None:
        self.write(0x3E, struct.pack("<H", cmd) + data)
        if cks is None:
            cks = checksum(struct.pack("<H", cmd) + data)
        self.write(0x60, bytes([cks, len(data) + 4 if length is None else length]))

    def config(self, writes: list[tuple[int, bytes]]) -> None:
        self.sub(bq.SUB_SET_CFGUPDATE)
        for address, data in writes:
            self.sub_write(address, data)
        self.sub(bq.SUB_EXIT_CFGUPDATE)

    def at(self, t_ms: float) -> Host:
        self.t = t_ms
        self.chip.advance(t_ms)
        return self


def chip_and_host(crc: bool = False, **kw: object) -> tuple[Bq76952, Host]:
    chip = Bq76952(crc=crc, **kw)  # type: ignore[arg-type]
    return chip, Host(chip, crc=crc)


# ============================================================ golden transactions (SLUAA11)
def test_golden_alarm_enable_write_byte_for_byte() -> None:
    _chip, host = chip_and_host()
    assert host.u16(0x66) == 0xF800  # the default, Default Alarm Mask
    # I2C_Write(0x10, 0x66, [0x82, 0xF0])
    assert host.raw(["S", "W106682f0", "P"]) == ["-", "4", "-"]
    assert host.read(0x66, 2) == bytes([0x82, 0xF0])
    assert host.u16(0x66) == 0xF082


def test_golden_cell1_voltage_read_byte_for_byte() -> None:
    chip, host = chip_and_host()
    chip.set_inputs(cells_v=[3.700] + [3.3] * 15)
    assert host.raw(["S", "W1014"]) == ["-", "2"]
    assert host.raw(["S", "W11", "R2", "P"]) == ["-", "1", "740e", "-"]  # 0x0E74 = 3700 mV


def test_golden_device_number_and_manufacturing_status() -> None:
    _chip, host = chip_and_host()
    host.raw(["S", "W103e0100", "P"])
    host.wait_ready(0x0001)
    assert host.raw(["S", "W1040"]) == ["-", "2"]
    assert host.raw(["S", "W11", "R2", "P"])[2] == "9576"  # 0x7695
    assert host.read(0x60, 2) == bytes([0xF3, 0x06])  # ~(01+00+95+76), 2 data + 4
    assert host.sub_read(bq.SUB_MANUFACTURING_STATUS, 2) == bytes([0x40, 0x00])


def test_golden_read_enabled_protections_a() -> None:
    _chip, host = chip_and_host()
    assert host.raw(["S", "W103e6192", "P"]) == ["-", "4", "-"]
    host.wait_ready(0x9261)
    assert host.read(0x40, 1) == bytes([0x88])  # COV and SCD, the defaults
    assert host.read(0x61, 1) == bytes([0x24])  # a 32-byte block + 4
    block = host.read(0x40, 32)
    assert host.read(0x60, 1)[0] == checksum(bytes([0x61, 0x92]) + block)


def test_golden_write_enabled_protections_a_in_config_update() -> None:
    chip, host = chip_and_host()
    assert host.raw(["S", "W103e9000", "P"]) == ["-", "4", "-"]  # SET_CFGUPDATE
    host.wait_ready(0x0090)
    assert host.u16(0x12) & bq.BS_CFGUPDATE
    # I2C_Write(0x10, 0x3E, [0x61, 0x92, 0x8C]); checksum ~(0x61+0x92+0x8C) = 0x80, length 5
    assert host.raw(["S", "W103e61928c", "P"]) == ["-", "5", "-"]
    assert host.raw(["S", "W10608005", "P"]) == ["-", "4", "-"]
    assert chip.dm_read(bq.ENABLED_PROT_A, "<B") == 0x8C
    assert host.raw(["S", "W103e9200", "P"]) == ["-", "4", "-"]  # EXIT_CFGUPDATE
    host.wait_ready(0x0092)
    assert not host.u16(0x12) & bq.BS_CFGUPDATE
    assert host.sub_read(0x9261, 1) == bytes([0x8C])
    # and it acts: CUV now trips
    chip.set_inputs(cells_v=[3.3] * 15 + [2.0])
    host.at(1000.0)
    assert chip.safety_status[0] & bq.CUV


def test_golden_i2c_with_crc() -> None:
    chip, host = chip_and_host(crc=True)
    assert crc8(bytes([0x10, 0x3E, 0x22])) == 0x63 and crc8(bytes([0x00])) == 0x00
    assert crc8(bytes([0x10, 0x14, 0x11, 0x68])) == 0x33 and crc8(bytes([0x0B])) == 0x31
    assert not chip.fet_enabled
    # FET_ENABLE with CRC: [0x10 0x3E 0x22] → 0x63, [0x00] → 0x00
    assert host.raw(["S", "W103e22630000", "P"]) == ["-", "6", "-"]
    assert chip.fet_enabled
    # VCell 1 with CRC: 0x0B68 (2920 mV): [0x10 0x14 0x11 0x68] → 0x33, [0x0B] → 0x31
    chip.set_inputs(cells_v=[2.920] + [3.3] * 15)
    assert host.raw(["S", "W1014"]) == ["-", "2"]
    assert host.raw(["S", "W11", "R4", "P"]) == ["-", "1", "68330b31", "-"]


def test_golden_alarm_enable_and_dm_write_with_crc() -> None:
    _chip, host = chip_and_host(crc=True)
    host.write(0x66, bytes([0x82, 0xF0]))
    assert host.u16(0x66) == 0xF082
    host.config([(0x9261, bytes([0x8C]))])
    assert host.sub_read(0x9261, 1) == bytes([0x8C])


def test_crc_write_with_a_bad_crc_is_nacked_and_ignored() -> None:
    chip, host = chip_and_host(crc=True)
    good, second = crc8(bytes([0x10, 0x66, 0x82])), crc8(bytes([0xF0]))
    res = host.raw(["S", f"W106682{good ^ 0x01:02x}f0{second:02x}", "P"])
    assert res == ["-", "3", "-"]  # address, register, data ACKed; the bad CRC NACKed
    assert host.u16(0x66) == 0xF800
    assert chip.rejected_writes == 1
    # a bad CRC on the second byte drops the whole write too
    res = host.raw(["S", f"W106682{good:02x}f0{second ^ 0x10:02x}", "P"])
    assert res[1] == "5" and host.u16(0x66) == 0xF800


def test_crc_mode_switches_by_comm_type_and_swap_comm_mode() -> None:
    chip, host = chip_and_host()
    host.config([(bq.COMM_TYPE, bytes([0x12]))])  # I2C fast with CRC
    assert not chip.crc_mode  # not on exit of CONFIG_UPDATE
    host.sub(bq.SUB_SWAP_COMM_MODE)
    assert chip.crc_mode
    host.crc = True
    assert host.u16(0x66) == 0xF800  # CRC-framed read now checks out
    chip.power_on_reset()  # RAM back to defaults: Comm Type 0 = the OTP mode (no CRC)
    assert not chip.crc_mode


# ============================================================ direct commands
def test_block_read_of_cells_stack_pack_ld_current_in_one_transfer() -> None:
    chip, host = chip_and_host(shunt_ohm=0.001)
    cells = [3.0 + 0.01 * i for i in range(16)]
    chip.set_inputs(cells_v=cells, current_a=-12.5, pack_v=50.0, ld_v=49.5)
    block = host.read(0x14, 0x3C - 0x14)
    values = struct.unpack("<16hhhhh", block)
    assert list(values[:16]) == [round(v * 1000) for v in cells]
    assert values[16] == round(sum(cells) * 100)  # userV = cV by default (DA 0x05)
    assert values[17:19] == (5000, 4950)
    assert values[19] == -12500  # userA = mA by default, negative discharging
    for i in range(16):  # the same as one read each
        assert host.i16(0x14 + 2 * i) == values[i]


def test_direct_command_map_defaults() -> None:
    chip, host = chip_and_host()
    chip.set_inputs(die_c=30.0, ts_c=[25.0, 40.0, 10.0])
    assert host.read(0x02, 6) == bytes(6)  # Safety Alert/Status A..C clear
    assert host.read(0x0A, 8) == bytes(8)  # PF alerts and status: none
    status = host.u16(0x12)
    assert status & bq.BS_POR and not status & bq.BS_CFGUPDATE  # just powered up
    assert host.i16(0x68) == 3032  # 30.0 °C in 0.1 K
    assert host.i16(0x70) == 2982  # TS1: a cell thermistor by default (TS1 Config 0x07)
    assert host.i16(0x72) == 0 and host.i16(0x74) == 0  # TS2/TS3 unused by default
    assert host.read(0x7F, 1) == bytes([0])  # FET test mode after reset: all FETs off
    assert host.u16(0x62) == 0 and not chip.alert


def test_read_only_registers_ignore_writes() -> None:
    chip, host = chip_and_host()
    chip.set_inputs(cells_v=[3.5] * 16)
    assert host.write(0x14, bytes([0, 0])) == ["-", "4", "-"]  # ACKed
    assert host.i16(0x14) == 3500


# ============================================================ subcommands
def test_subcommand_reads_busy_then_id_on_the_chips_clock() -> None:
    chip, host = chip_and_host()
    host.sub(bq.SUB_DEVICE_NUMBER)
    assert host.read(0x3E, 2) == b"\xff\xff"  # busy
    polls = host.wait_ready(bq.SUB_DEVICE_NUMBER)  # the board clock stands still
    assert polls > 1
    assert chip._now >= bq.BUSY_MS_DEFAULT  # the bus bytes carried the chip's clock
    host2 = chip_and_host()[1]
    host2.sub(bq.SUB_DEVICE_NUMBER)
    host2.t = 5.0  # the board clock moved on: ready at once
    assert host2.wait_ready(bq.SUB_DEVICE_NUMBER) == 1


def test_fw_version_and_command_only_subcommands() -> None:
    chip, host = chip_and_host()
    fw = host.sub_read(bq.SUB_FW_VERSION, 6)
    assert struct.unpack(">H", fw[:2])[0] == 0x7695
    assert not chip.fet_enabled
    host.sub(bq.SUB_FET_ENABLE)  # takes effect on the write, no poll needed
    assert chip.fet_enabled
    assert struct.unpack("<H", host.sub_read(0x0057, 2))[0] & bq.MS_FET_EN


@pytest.mark.parametrize("how", ["checksum", "length-long", "length-short", "length-zero"])
def test_buffer_write_with_bad_checksum_or_length_is_rejected(how: str) -> None:
    chip, host = chip_and_host()
    host.sub(bq.SUB_SET_CFGUPDATE)
    good = checksum(bytes([0x61, 0x92, 0x8C]))
    cks, length = {"checksum": (good ^ 1, 5), "length-long": (good, 37),
                   "length-short": (good, 4), "length-zero": (good, 0)}[how]
    host.sub_write(0x9261, bytes([0x8C]), cks=cks, length=length)
    assert chip.dm_read(bq.ENABLED_PROT_A, "<B") == 0x88
    assert chip.rejected_writes == 1
    host.sub_write(0x9261, bytes([0x8C]))  # the right one goes in
    assert chip.dm_read(bq.ENABLED_PROT_A, "<B") == 0x8C


def test_data_memory_write_outside_config_update_is_ignored_but_reads_work() -> None:
    chip, host = chip_and_host()
    host.sub_write(bq.COV_THRESHOLD, bytes([70]))
    assert chip.ignored_dm_writes == 1
    assert host.sub_read(bq.COV_THRESHOLD, 1) == bytes([86])
    host.config([(bq.COV_THRESHOLD, bytes([70]))])
    assert host.sub_read(bq.COV_THRESHOLD, 1) == bytes([70])


def test_data_memory_defaults_from_the_trm() -> None:
    _chip, host = chip_and_host()
    for address, fmt, value in bq.DATA_MEMORY_DEFAULTS:
        size = struct.calcsize(fmt)
        raw = host.sub_read(address, size)
        got = struct.unpack(fmt, raw)[0]
        assert got == pytest.approx(value, rel=1e-6), hex(address)
    assert bq.DATA_MEMORY_DEFAULTS[0] == (bq.CC_GAIN, "<f", 7.4768)


def test_config_update_turns_fets_off_and_exit_applies_settings() -> None:
    chip, host = chip_and_host()
    host.sub(bq.SUB_FET_ENABLE)
    host.at(10.0)
    assert chip.chg_on and chip.dsg_on
    chip.set_inputs(cells_v=[4.0] * 16)
    host.sub(bq.SUB_SET_CFGUPDATE)
    assert not chip.chg_on and not chip.dsg_on
    host.sub_write(bq.COV_THRESHOLD, bytes([78]))  # 78 × 50.6 = 3946.8 mV
    host.at(2000.0)
    assert chip.safety_status[0] == 0  # protections stop in CONFIG_UPDATE
    assert chip.trips == []
    host.sub(bq.SUB_EXIT_CFGUPDATE)
    assert chip.dsg_on
    host.at(3000.0)
    assert chip.safety_status[0] & bq.COV  # the new threshold applies after exit
    assert not chip.chg_on and chip.dsg_on


# ============================================================ FETs
def test_fet_control_bit_order_differs_from_fet_status() -> None:
    chip, host = chip_and_host()
    assert not chip.fet_enabled  # FET test mode
    # FET_CONTROL: bit0 DSG_OFF, bit1 PDSG_OFF, bit2 CHG_OFF, bit3 PCHG_OFF
    host.sub_write(bq.SUB_FET_CONTROL, bytes([0x0E]))  # only DSG allowed on
    assert chip.dsg_on and not chip.chg_on
    # FET Status: bit0 CHG_FET, bit1 PCHG_FET, bit2 DSG_FET, bit3 PDSG_FET
    assert host.read(0x7F, 1)[0] == 0x04
    host.sub_write(bq.SUB_FET_CONTROL, bytes([0x0B]))  # only CHG allowed on
    assert chip.chg_on and not chip.dsg_on
    assert host.read(0x7F, 1)[0] == 0x01
    assert host.sub_read(bq.SUB_FET_CONTROL, 1) == bytes([0x0B])


def test_fet_control_only_in_fet_test_mode() -> None:
    chip, host = chip_and_host()
    host.sub(bq.SUB_FET_ENABLE)  # FET_EN = 1: the chip drives the FETs
    host.sub_write(bq.SUB_FET_CONTROL, bytes([0x0F]))
    assert chip.chg_on and chip.dsg_on
    assert chip.rejected_writes == 0


def test_host_fet_blocking_commands() -> None:
    chip, host = chip_and_host()
    host.sub(bq.SUB_FET_ENABLE)
    assert (chip.chg_on, chip.dsg_on) == (True, True)
    host.sub(bq.SUB_CHG_PCHG_OFF)
    assert (chip.chg_on, chip.dsg_on) == (False, True)
    host.sub(bq.SUB_DSG_PDSG_OFF)
    assert (chip.chg_on, chip.dsg_on) == (False, False)
    host.sub(bq.SUB_ALL_FETS_ON)
    assert (chip.chg_on, chip.dsg_on) == (True, True)
    host.sub(bq.SUB_ALL_FETS_OFF)
    assert host.read(0x7F, 1)[0] & 0x0F == 0
    host.sub(bq.SUB_ALL_FETS_ON)
    assert host.read(0x7F, 1)[0] & 0x0F == bq.FS_CHG | bq.FS_DSG


# ============================================================ balancing, ALERT
def test_cb_active_cells_read_write_and_cleared_by_config_update() -> None:
    chip, host = chip_and_host()
    host.sub_write(bq.SUB_CB_ACTIVE_CELLS, struct.pack("<H", 0x8005))
    assert chip.balancing_mask == 0x8005
    assert host.sub_read(bq.SUB_CB_ACTIVE_CELLS, 2) == struct.pack("<H", 0x8005)
    host.sub(bq.SUB_SET_CFGUPDATE)
    assert chip.balancing_mask == 0
    host.sub(bq.SUB_EXIT_CFGUPDATE)
    assert chip.balancing_mask == 0
    host.sub_write(bq.SUB_CB_ACTIVE_CELLS, struct.pack("<H", 0x0002))
    chip.power_on_reset()
    assert chip.balancing_mask == 0


def test_alert_pin_follows_alarm_status_and_enable_write_one_to_clear() -> None:
    chip, host = chip_and_host()
    host.sub(bq.SUB_FET_ENABLE)
    chip.set_inputs(cells_v=[4.5] * 16)
    host.at(1000.0)
    assert chip.safety_status[0] & bq.COV
    status = host.u16(0x62)
    assert status & bq.AL_SSA and status & bq.AL_MSK_SFALERT
    assert chip.alert and host.read(0x7F, 1)[0] & bq.FS_ALRT
    assert host.u16(0x64) & bq.AL_SSA  # raw
    host.write(0x62, struct.pack("<H", status))  # write 1 to clear
    assert host.u16(0x62) == 0 and not chip.alert
    assert host.u16(0x64) & bq.AL_SSA  # the raw bit still follows the fault
    # a masked source does not latch
    host.write(0x66, struct.pack("<H", 0x0000))
    chip.set_inputs(cells_v=[3.3] * 16)
    host.at(5000.0)
    chip.set_inputs(cells_v=[4.5] * 16)
    host.at(7000.0)
    assert not chip.alert


# ============================================================ measurements
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3), st.booleans(), st.floats(-200.0, 200.0),
       st.floats(0.0002, 0.005))
def test_current_and_voltage_scaling_per_da_configuration(
        amps_code: int, centivolts: bool, current: float, shunt: float) -> None:
    chip, host = chip_and_host(shunt_ohm=shunt)
    gain = bq.CC_GAIN_1MOHM / (shunt * 1000.0)  # CC Gain programmed for this shunt
    da = amps_code | (0x04 if centivolts else 0)
    host.config([(bq.DA_CONFIGURATION, bytes([da])),
                 (bq.CC_GAIN, struct.pack("<f", gain))])
    chip.set_inputs(cells_v=[3.2] * 16, current_a=current)
    lsb_a = bq.USER_AMPS_MA[amps_code] / 1000.0
    expect = max(-32768, min(32767, round(current / lsb_a)))
    assert abs(host.i16(0x3A) - expect) <= 1
    assert host.i16(0x34) == round(51.2 * (100 if centivolts else 1000)) or (
        not centivolts and host.i16(0x34) == 32767)  # 51.2 V in mV overflows int16


def test_current_reads_wrong_without_cc_gain_for_the_shunt() -> None:
    chip, host = chip_and_host(shunt_ohm=0.0001)  # a 100 µΩ shunt
    chip.set_inputs(current_a=50.0)
    assert host.i16(0x3A) == 5000  # default CC Gain assumes 1 mΩ: reads 10× low
    host.config([(bq.CC_GAIN, struct.pack("<f", 74.768))])
    assert host.i16(0x3A) == 32767  # 50 A in mA overflows int16: the driver needs cA
    host.config([(bq.DA_CONFIGURATION, bytes([0x06]))])  # USER_AMPS = 10 mA
    assert host.i16(0x3A) == 5000


@pytest.mark.parametrize("temp", [-40.0, -20.0, 0.0, 25.0, 60.0, 85.0, None])
def test_thermistors_in_deci_kelvin_and_open_reads_cold(temp: float | None) -> None:
    chip, host = chip_and_host()
    host.config([(bq.TS2_CONFIG, bytes([0x07])), (bq.TS3_CONFIG, bytes([0x0B]))])
    chip.set_inputs(ts_c=[temp, temp, temp])
    expect = round(((bq.OPEN_THERMISTOR_C if temp is None else temp) + 273.15) * 10)
    assert host.i16(0x70) == expect
    assert host.i16(0x72) == expect
    assert host.i16(0x74) == expect  # reported-only thermistor (OPT[1:0] = 10)


def test_unwired_inputs_read_zero_and_vcell_mode_selects_protected_cells() -> None:
    chip, host = chip_and_host(cells=4, cell_inputs=[1, 2, 3, 16])
    chip.set_inputs(cells_v=[3.3, 3.3, 3.3, 3.3])
    assert host.i16(0x14) == 3300 and host.i16(0x1A) == 0 and host.i16(0x32) == 3300
    host.sub(bq.SUB_FET_ENABLE)
    host.config([(bq.ENABLED_PROT_A, bytes([0x8C]))])  # CUV on, all 16 inputs protected
    host.at(1000.0)
    assert chip.safety_status[0] & bq.CUV  # the shorted inputs read 0 V
    chip.power_on_reset()
    host.sub(bq.SUB_FET_ENABLE)
    host.config([(bq.ENABLED_PROT_A, bytes([0x8C])),
                 (bq.VCELL_MODE, struct.pack("<H", 0x8007))])
    host.at(5000.0)
    assert not chip.safety_status[0] & bq.CUV


# ============================================================ protections
def enabled(host: Host, a: int = 0xFC, b: int = 0x00) -> None:
    host.sub(bq.SUB_FET_ENABLE)
    host.config([(bq.ENABLED_PROT_A, bytes([a])), (bq.ENABLED_PROT_B, bytes([b]))])


def test_cov_alert_then_status_after_delay_chg_off_then_recovery() -> None:
    chip, host = chip_and_host()
    enabled(host)
    host.at(100.0)
    chip.set_inputs(cells_v=[3.6] * 15 + [4.40])  # COV 86 × 50.6 = 4351.6 mV
    host.at(200.0)
    assert chip.safety_alert[0] & bq.COV and not chip.safety_status[0] & bq.COV
    host.at(350.0)
    assert not chip.safety_status[0] & bq.COV  # 250.8 ms after the onset at 100 ms
    host.at(351.0)
    assert chip.safety_status[0] & bq.COV
    assert not chip.chg_on and chip.dsg_on  # CHG FET Protections A has COV, DSG not
    trip = chip.trips[-1]
    assert trip.name == "COV" and trip.onset_ms == 100.0
    assert trip.trip_ms == pytest.approx(100.0 + 76 * 3.3)  # (74 + 2) × 3.3 ms
    chip.set_inputs(cells_v=[3.6] * 15 + [4.30])  # inside the hysteresis (4250.4 mV)
    host.at(5000.0)
    assert chip.safety_status[0] & bq.COV
    chip.set_inputs(cells_v=[3.6] * 16)
    host.at(6000.0)
    assert chip.safety_status[0] & bq.COV  # the recovery time (3 s) is running
    host.at(8100.0)
    assert not chip.safety_status[0] & bq.COV and chip.chg_on
    assert trip.recovered_ms == pytest.approx(8000.0)


def test_cuv_trips_dsg_off() -> None:
    chip, host = chip_and_host()
    enabled(host)
    host.at(10.0)
    chip.set_inputs(cells_v=[2.4] + [3.3] * 15)  # CUV 50 × 50.6 = 2530 mV
    host.at(400.0)
    assert chip.safety_status[0] & bq.CUV
    assert chip.chg_on and not chip.dsg_on


@pytest.mark.parametrize("name,bit,current,delay_ms,chg,dsg", [
    ("OCC", bq.OCC, 4.5, (4 + 2) * 3.3, False, True),  # 4 mV across 1 mΩ
    ("OCD1", bq.OCD1, -8.5, (1 + 2) * 3.3, True, False),  # 8 mV
    ("OCD2", bq.OCD2, -6.5, (7 + 2) * 3.3, True, False),  # 6 mV
])
def test_overcurrent_trips_after_its_delay(name: str, bit: int, current: float,
                                           delay_ms: float, chg: bool, dsg: bool) -> None:
    chip, host = chip_and_host(shunt_ohm=0.001)
    enabled(host)
    host.at(50.0)
    chip.set_inputs(current_a=current)
    host.at(50.0 + delay_ms - 0.5)
    assert not chip.safety_status[0] & bit
    host.at(200.0)
    assert chip.safety_status[0] & bit
    trip = next(t for t in chip.trips if t.name == name)
    assert trip.trip_ms == pytest.approx(50.0 + delay_ms)
    assert (chip.chg_on, chip.dsg_on) == (chg, dsg)


def test_scd_trips_in_microseconds_and_recovers_after_its_recovery_time() -> None:
    chip, host = chip_and_host(shunt_ohm=0.0005)
    host.sub(bq.SUB_FET_ENABLE)
    host.config([(bq.SCD_THRESHOLD, bytes([5])),  # 100 mV
                 (bq.SCD_DELAY, bytes([11]))])  # (11 - 1) × 15 µs = 150 µs
    host.at(20.0)
    chip.set_inputs(current_a=-150.0)  # 75 mV: under the threshold
    host.at(30.0)
    assert not chip.trips
    chip.set_inputs(current_a=-400.0, at_ms=31.0)  # 200 mV from t = 31 ms
    host.at(32.0)
    trip = chip.trips[-1]
    assert trip.name == "SCD" and trip.onset_ms == 31.0
    assert trip.trip_ms == pytest.approx(31.15)
    assert not chip.dsg_on and not chip.chg_on  # SCD is in both default masks
    chip.set_inputs(current_a=0.0)
    host.at(32.0 + 4000.0)
    assert chip.safety_status[0] & bq.SCD
    host.at(32.0 + 5001.0)  # SCD Recovery Time 5 s
    assert not chip.safety_status[0] & bq.SCD and chip.dsg_on
    assert bq.scd_delay_us(1) == 0.0 and bq.scd_delay_us(2) == 15.0


@pytest.mark.parametrize("name,bit,temp,chg,dsg", [
    ("OTC", bq.OTC, 58.0, False, True),
    ("OTD", bq.OTD, 65.0, False, False),  # above OTC too: both open
    ("UTC", bq.UTC, -2.0, False, False),  # UTD too (both 0 °C)
])
def test_temperature_protections(name: str, bit: int, temp: float, chg: bool,
                                 dsg: bool) -> None:
    chip, host = chip_and_host()
    enabled(host, b=bq.OTC | bq.OTD | bq.UTC | bq.UTD)
    host.at(100.0)
    chip.set_inputs(ts_c=[temp, 25.0, 25.0])
    host.at(1500.0)
    assert not chip.safety_status[1] & bit  # 2 s delay
    host.at(2200.0)
    assert chip.safety_status[1] & bit
    assert any(t.name == name and t.trip_ms == pytest.approx(2100.0) for t in chip.trips)
    assert (chip.chg_on, chip.dsg_on) == (chg, dsg)
    chip.set_inputs(ts_c=[25.0, 25.0, 25.0])
    host.at(6000.0)
    assert chip.safety_status[1] == 0 and chip.chg_on and chip.dsg_on


def test_open_thermistor_trips_undertemperature() -> None:
    chip, host = chip_and_host()
    enabled(host, b=bq.UTC | bq.UTD)
    chip.set_inputs(ts_c=[None, 25.0, 25.0])
    host.at(3000.0)
    assert chip.safety_status[1] & (bq.UTC | bq.UTD) == bq.UTC | bq.UTD


def test_disabled_protections_do_not_trip() -> None:
    chip, host = chip_and_host()
    host.sub(bq.SUB_FET_ENABLE)
    chip.set_inputs(cells_v=[2.0] * 16, ts_c=[90.0, 25.0, 25.0])  # CUV/OT* off by default
    host.at(10_000.0)
    assert chip.safety_status == (0, 0, 0) and chip.chg_on and chip.dsg_on


# ============================================================ fault injection
def test_injected_nacks_are_counted() -> None:
    chip, host = chip_and_host()
    chip.inject_nack(2)
    assert host.raw(["S", "W1066", "P"]) == ["-", "0", "-"]
    assert host.raw(["S", "W1066", "P"]) == ["-", "0", "-"]
    assert host.raw(["S", "W1066", "P"]) == ["-", "2", "-"]
    chip.inject_nack(phase="data")
    assert host.raw(["S", "W10668200", "P"]) == ["-", "1", "-"]  # the register byte NACKed
    assert host.u16(0x66) == 0xF800  # nothing written
    assert chip.injected["nack_address"] == 2 and chip.injected["nack_data"] == 1
    with pytest.raises(ValueError):
        chip.inject_nack(phase="stop")


def test_injected_stuck_busy_never_finishes_until_the_next_subcommand() -> None:
    chip, host = chip_and_host()
    chip.inject_stuck_busy()
    host.sub(bq.SUB_DEVICE_NUMBER)
    host.at(10_000.0)
    assert host.read(0x3E, 2) == b"\xff\xff"
    with pytest.raises(TimeoutError):
        host.wait_ready(bq.SUB_DEVICE_NUMBER, polls=5)
    assert host.sub_read(bq.SUB_DEVICE_NUMBER, 2) == struct.pack("<H", 0x7695)  # retry
    assert chip.injected["stuck_busy"] == 1


def test_injected_crc_corruption_on_reads() -> None:
    chip, host = chip_and_host(crc=True)
    chip.inject_crc_error()
    with pytest.raises(OSError, match="CRC"):
        host.u16(0x66)
    assert host.u16(0x66) == 0xF800
    assert chip.injected["crc_corrupt"] == 1
    chip2, host2 = chip_and_host(crc=False)
    chip2.inject_crc_error()
    assert host2.u16(0x66) == 0xF800  # no CRC mode: nothing to corrupt
    assert chip2.injected["crc_corrupt"] == 0


def test_power_on_reset_restores_defaults_fets_off_and_clears_protections() -> None:
    chip, host = chip_and_host()
    enabled(host)
    host.config([(bq.COV_THRESHOLD, bytes([80]))])
    chip.set_inputs(cells_v=[4.2] * 16)
    host.at(1000.0)
    assert chip.safety_status[0] & bq.COV and chip.dsg_on
    assert not host.u16(0x12) & bq.BS_POR  # cleared on exit of CONFIG_UPDATE
    chip.power_on_reset()
    assert chip.injected["por"] == 1
    assert chip.safety_status == (0, 0, 0)
    assert not chip.chg_on and not chip.dsg_on and not chip.fet_enabled
    assert chip.dm_read(bq.COV_THRESHOLD, "<B") == 86
    host.at(1000.0 + bq.RESET_BOOT_MS + 1)
    assert host.u16(0x12) & bq.BS_POR


def test_reset_subcommand_reboots_the_chip() -> None:
    _chip, host = chip_and_host()
    host.config([(bq.ENABLED_PROT_A, bytes([0x8C]))])
    host.at(100.0)
    host.sub(bq.SUB_RESET)
    assert host.raw(["S", "W1012", "P"]) == ["-", "0", "-"]  # booting: NACK
    host.at(100.0 + bq.RESET_BOOT_MS + 1)
    assert host.sub_read(0x9261, 1) == bytes([0x88])
    assert host.u16(0x12) & bq.BS_POR


def test_bad_constructor_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="cells"):
        Bq76952(cells=17)
    with pytest.raises(ValueError, match="cell_inputs"):
        Bq76952(cells=2, cell_inputs=[1, 1])
    with pytest.raises(ValueError, match="shunt"):
        Bq76952(shunt_ohm=0)
    chip = Bq76952(cells=4)
    with pytest.raises(ValueError, match="4-cell"):
        chip.set_inputs(cells_v=[3.3] * 5)


def test_esp32_style_single_transfer_read_and_crc() -> None:
    """The ESP32 port writes the register and reads after a repeated START in one
    transfer; the CRC of the first byte still covers both address bytes and the register."""
    for crc in (False, True):
        chip, host = chip_and_host(crc=crc)
        chip.set_inputs(cells_v=[2.920] + [3.3] * 15)
        res = host.raw(["S", "W1014", "S", "W11", "R4" if crc else "R2", "P"])
        assert res[1:4] == ["2", "-", "1"]
        assert res[4] == ("68330b31" if crc else "680b")


def test_internal_overtemperature_opens_both_fets() -> None:
    chip, host = chip_and_host()
    enabled(host, b=bq.OTINT)
    host.at(100.0)
    chip.set_inputs(die_c=90.0)  # OTINT 85 °C, 2 s
    host.at(2200.0)
    assert chip.safety_status[1] & bq.OTINT
    assert not chip.chg_on and not chip.dsg_on  # in both default B masks
    chip.set_inputs(die_c=79.0)  # recovery at 80 °C, then 3 s
    host.at(6000.0)
    assert not chip.safety_status[1] & bq.OTINT and chip.dsg_on


def test_chip_time_only_moves_forward() -> None:
    chip, host = chip_and_host()
    host.at(500.0)
    host.t = 100.0  # a transfer stamped earlier than the chip's clock
    host.u16(0x66)
    assert chip._now >= 500.0


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 3), st.integers(0, 7))
def test_crc_framed_writes_round_trip_and_any_bad_crc_bit_is_refused(
        value: int, which: int, bit: int) -> None:
    _chip, host = chip_and_host(crc=True)
    lo, hi = value & 0xFF, value >> 8
    frame = [0x10, 0x66, lo, crc8(bytes([0x10, 0x66, lo])), hi, crc8(bytes([hi]))]
    bad = list(frame)
    crc_index = (3, 5)[which % 2]
    bad[crc_index] ^= 1 << bit
    res = host.raw(["S", "W" + bytes(bad).hex(), "P"])
    assert res[1] == str(crc_index)  # ACKed up to the bad CRC byte, which is NACKed
    assert host.u16(0x66) == 0xF800
    assert host.raw(["S", "W" + bytes(frame).hex(), "P"])[1] == "6"
    assert host.u16(0x66) == value


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([a for a, _, _ in bq.DATA_MEMORY_DEFAULTS]),
       st.binary(min_size=1, max_size=32), st.booleans())
def test_data_memory_write_read_round_trip(address: int, data: bytes, crc: bool) -> None:
    chip, host = chip_and_host(crc=crc)
    data = data[:bq.DM_END - address]
    host.config([(address, data)])
    assert host.sub_read(address, len(data)) == data
    assert chip.rejected_writes == 0


# ============================================================ on the virtual dev board
DRIVER_SNIPPET = """
from machine import I2C
i2c = I2C(0)
def crc8(data):
    c = 0
    for b in data:
        c ^= b
        for _ in range(8):
            c = ((c << 1) ^ 7) & 255 if c & 128 else (c << 1) & 255
    return c
def wr(reg, data):
    if CRC:
        out = bytearray()
        for i, b in enumerate(data):
            out.append(b)
            out.append(crc8(bytes([16, reg, b]) if i == 0 else bytes([b])))
        data = bytes(out)
    i2c.writeto_mem(8, reg, data)
def rd(reg, n):
    raw = i2c.readfrom_mem(8, reg, 2 * n if CRC else n)
    if not CRC:
        return raw
    for i in range(n):
        cover = bytes([16, reg, 17, raw[0]]) if i == 0 else bytes([raw[2 * i]])
        assert crc8(cover) == raw[2 * i + 1], 'crc'
    return bytes([raw[2 * i] for i in range(n)])
wr(0x3E, b'\\x01\\x00')
while rd(0x3E, 2) != b'\\x01\\x00':
    pass
print(rd(0x40, 2).hex(), rd(0x14, 2).hex())
"""


@pytest.mark.parametrize("board,crc", [("pico-4s", False), ("esp32-4s", False),
                                       ("pico-4s", True)])
def test_on_the_virtual_board_through_machine_i2c(board: str, crc: bool,
                                                   tmp_path: Path) -> None:
    from test_virtual_board import mpremote, ok

    from cellguard.sim.virtual import VirtualBoard

    chip = Bq76952(crc=crc)
    chip.set_inputs(cells_v=[3.7] + [3.3] * 15)
    with VirtualBoard(board, flash=tmp_path, plant=False) as vb:
        vb.attach_i2c(0x08, chip)
        out = ok(mpremote(vb.port, "exec", f"CRC = {crc}\n" + DRIVER_SNIPPET)).split()
    assert out == ["9576", "740e"]


def test_sleep_enable_flag_follows_power_config_and_commands() -> None:
    _chip, host = chip_and_host()
    assert host.u16(0x12) & bq.BS_SLEEP_EN  # Power Config default 0x2982 has SLEEP
    host.sub(bq.SUB_SLEEP_DISABLE)
    assert not host.u16(0x12) & bq.BS_SLEEP_EN
    host.sub(bq.SUB_SLEEP_ENABLE)
    assert host.u16(0x12) & bq.BS_SLEEP_EN
    host.config([(bq.POWER_CONFIG, struct.pack("<H", 0x2902))])
    assert not host.u16(0x12) & bq.BS_SLEEP_EN


def test_power_on_reset_at_time_zero_still_boots() -> None:
    chip, host = chip_and_host()
    chip.power_on_reset()
    assert host.raw(["S", "W1066", "P"])[1] == "0"  # booting
    host.at(bq.RESET_BOOT_MS + 0.1)
    assert host.u16(0x66) == 0xF800


@pytest.mark.parametrize("gain,expect", [(float("inf"), 32767), (float("-inf"), -32768),
                                         (float("nan"), 0)])
def test_a_nonsense_cc_gain_reads_clamped_never_crashes(gain: float, expect: int) -> None:
    chip, host = chip_and_host()
    host.config([(bq.CC_GAIN, struct.pack("<f", gain))])
    chip.set_inputs(current_a=1.0)
    assert host.i16(0x3A) == expect
    host.at(1000.0)  # the protections run on it too


_OP = st.one_of(st.just("S"), st.just("P"), st.just("W10"), st.just("W11"),
                st.binary(min_size=1, max_size=40).map(lambda b: "W" + b.hex()),
                st.integers(1, 40).map(lambda n: f"R{n}"))


@settings(max_examples=150, deadline=None)
@given(st.booleans(), st.lists(st.lists(_OP, max_size=12), max_size=6))
def test_any_wire_traffic_leaves_a_chip_that_still_answers(
        crc: bool, transfers: list[list[str]]) -> None:
    chip, host = chip_and_host(crc=crc)
    for i, ops in enumerate(transfers):
        host.t = i * 0.5
        host.raw(ops)
    host.raw(["P"])
    host.at(1000.0)  # past any reset it may have sent
    if chip.crc_mode != crc:  # the traffic may have swapped the CRC mode: follow it
        host.crc = chip.crc_mode
    assert host.sub_read(bq.SUB_DEVICE_NUMBER, 2) == struct.pack("<H", 0x7695)


def test_occ_recovers_by_discharge_current_or_by_pack_below_the_stack() -> None:
    for how in ("current", "pack"):
        chip, host = chip_and_host(shunt_ohm=0.001)
        enabled(host)
        host.at(10.0)
        chip.set_inputs(cells_v=[3.3] * 16, current_a=5.0)  # 5 mV > 4 mV
        host.at(100.0)
        assert chip.safety_status[0] & bq.OCC and not chip.chg_on
        chip.set_inputs(current_a=0.0, pack_v=52.8)  # no current, PACK at the stack
        host.at(10_000.0)
        assert chip.safety_status[0] & bq.OCC  # neither mechanism holds
        if how == "current":
            chip.set_inputs(current_a=-0.2)  # -200 mA: the OCC recovery threshold
        else:
            chip.set_inputs(pack_v=52.8 - 2.0)  # PACK-TOS delta 200 × 10 mV
        host.at(12_000.0)
        assert chip.safety_status[0] & bq.OCC
        host.at(13_001.0)
        assert not chip.safety_status[0] & bq.OCC and chip.chg_on, how
