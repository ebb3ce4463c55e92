"""I2C on the virtual dev board: `machine.I2C`/`SoftI2C` on the board, chips attached from
the host (`VirtualBoard.attach_i2c`, `cellguard.sim.i2c`), bus faults as the ports report
them (docs/virtual_board.md, "I2C")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_virtual_board import mpremote, ok

from cellguard.sim.i2c import ADDRESSES, I2cBus, I2cDevice, RegisterDevice
from cellguard.sim.virtual import VirtualBoard

BOARDS = ["pico-4s", "esp32-4s"]
# (scl, sda) of I2C0 and I2C1 by default, as the ports have them
PINS = {"pico-4s": ((5, 4), (7, 6)), "esp32-4s": ((18, 19), (25, 26))}
ERR = {"pico-4s": 5, "esp32-4s": 19}  # a NACK on the hardware I2C: rp2 EIO, esp32 ENODEV
ENODEV, ETIMEDOUT = 19, 110
TRY = ("def tryit(f):\n"
       "    try:\n        return f()\n"
       "    except OSError as e:\n        return 'E' + str(e.args[0])\n")


class Recorder(RegisterDevice):
    """A register device that keeps what it saw on the wire, in order."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.seen: list[str] = []

    def address(self, read: bool) -> bool:
        self.seen.append("R" if read else "W")
        return super().address(read)

    def write(self, data: bytes) -> int:
        self.seen.append("w" + data.hex())
        return super().write(data)

    def read(self, n: int) -> bytes:
        self.seen.append(f"r{n}")
        return super().read(n)

    def stop(self) -> None:
        self.seen.append("P")
        super().stop()


def run(vb: VirtualBoard, code: str) -> list[str]:
    return ok(mpremote(vb.port, "exec", code)).split()


# ---------------------------------------------------------------- on the board
@pytest.mark.parametrize("board", BOARDS)
def test_scan_finds_the_attached_devices_and_only_them(board: str, tmp_path: Path) -> None:
    (scl1, sda1) = PINS[board][1]
    with VirtualBoard(board, flash=tmp_path, plant=False) as vb:
        for address in (0x08, 0x3C, 0x77):
            vb.attach_i2c(address, RegisterDevice())
        vb.attach_i2c(0x50, RegisterDevice(), bus=(scl1, sda1))  # on the other bus
        out = run(vb, "from machine import I2C\n"
                      "print(I2C(0).scan(), I2C(1).scan())")
        assert out == ["[8,", "60,", "119]", "[80]"]
        vb.detach_i2c(0x3C)
        assert run(vb, "from machine import I2C\nprint(I2C(0).scan())") == ["[8,", "119]"]
        assert vb.i2c_bus().transfers == 2 * len(ADDRESSES)  # every address probed once


@pytest.mark.parametrize("board", BOARDS)
def test_memory_writes_read_back_with_8_and_16_bit_addresses(board: str, tmp_path: Path) -> None:
    eeprom = RegisterDevice(4096, addrsize=16)
    sensor = RegisterDevice(registers={0x0F: 0x5A})
    with VirtualBoard(board, flash=tmp_path, plant=False) as vb:
        vb.attach_i2c(0x50, eeprom)
        vb.attach_i2c(0x18, sensor)
        out = run(vb, "from machine import I2C\n"
                      "i2c = I2C(0, freq=100000)\n"
                      "print(i2c.readfrom_mem(0x18, 0x0F, 1).hex())\n"
                      "i2c.writeto_mem(0x18, 0x20, b'\\x01\\x02\\x03')\n"
                      "buf = bytearray(4)\n"
                      "i2c.readfrom_mem_into(0x18, 0x1F, buf)\n"
                      "print(buf.hex())\n"
                      "i2c.writeto_mem(0x50, 0x0123, b'cellguard', addrsize=16)\n"
                      "print(i2c.readfrom_mem(0x50, 0x0123, 9, addrsize=16))\n")
    assert out == ["5a", "00010203", "b'cellguard'"]
    assert bytes(eeprom.memory[0x123:0x12C]) == b"cellguard"  # big-endian, as the ports send it
    assert bytes(sensor.memory[0x20:0x23]) == b"\x01\x02\x03"


@pytest.mark.parametrize("board", BOARDS)
def test_a_write_without_stop_then_a_repeated_start(board: str, tmp_path: Path) -> None:
    dev = Recorder(registers={0x10: 0xAA, 0x11: 0xBB})
    with VirtualBoard(board, flash=tmp_path, plant=False) as vb:
        vb.attach_i2c(0x42, dev)
        out = run(vb, "from machine import I2C\ni2c = I2C(0)\n"
                      "print(i2c.writeto(0x42, b'\\x10', False))\n"
                      "buf = bytearray(2)\ni2c.readfrom_into(0x42, buf)\nprint(buf.hex())\n"
                      "print(i2c.writevto(0x42, [b'\\x11', b'\\xcc']))\n")
    # No STOP between the register write and the read: a repeated START.
    assert dev.seen == ["W", "w10", "R", "r2", "P", "W", "w11cc", "P"]
    assert out == ["1", "aabb", "2"]
    assert dev.memory[0x11] == 0xCC


@pytest.mark.parametrize("board", BOARDS)
def test_a_nack_raises_the_ports_errno_and_the_board_runs_on(board: str, tmp_path: Path) -> None:
    scl, sda = PINS[board][0]
    dev = RegisterDevice(registers={0: 0x11})
    with VirtualBoard(board, flash=tmp_path, plant=False) as vb:
        vb.attach_i2c(0x50, dev)
        bus = vb.i2c_bus()
        bus.nack(0x50, times=2)
        code = (TRY + f"from machine import I2C, SoftI2C, Pin\ni2c = I2C(0)\n"
                f"s = SoftI2C(Pin({scl}), Pin({sda}))\n")
        out = run(vb, code + "print(tryit(lambda: i2c.readfrom_mem(0x50, 0, 1)),"
                             " tryit(lambda: i2c.readfrom_mem(0x50, 0, 1)),"
                             " tryit(lambda: i2c.readfrom(0x51, 1)),"
                             " tryit(lambda: i2c.writeto(0x51, b'')),"
                             " tryit(lambda: s.readfrom(0x51, 1)),"
                             " tryit(lambda: s.writeto(0x51, b'x')))")
        # NACKed twice (rp2: the address write and its STOP probe; esp32: two transfers),
        # then it answers; nobody at 0x51.
        if board == "pico-4s":
            assert out == ["E5", "b'\\x11'", "E5", "E19", "E19", "E19"]
        else:
            assert out == ["E19", "E19", "E19", "E19", "E19", "E19"]
        bus.nack(0x50)  # until cleared
        out = run(vb, code + "print(tryit(lambda: i2c.writeto_mem(0x50, 0, b'x')),"
                             " tryit(lambda: s.writeto_mem(0x50, 0, b'x')), i2c.scan())")
        assert out == [f"E{ERR[board]}", "E19", "[]"]
        bus.clear_faults()
        assert run(vb, code + "print(i2c.scan(), i2c.readfrom_mem(0x50, 0, 1))") == [
            "[80]", "b'\\x11'"]
        assert bus.nacks >= 2 + 1 + 2


@pytest.mark.parametrize("board", BOARDS)
def test_a_stuck_bus_times_out_with_etimedout_and_the_board_runs_on(board: str,
                                                                    tmp_path: Path) -> None:
    dev = RegisterDevice(registers={0: 0x22})
    with VirtualBoard(board, flash=tmp_path, plant=False) as vb:
        vb.attach_i2c(0x50, dev)
        vb.i2c_bus().timeout(times=1)
        out = run(vb, TRY + "from machine import I2C\nimport time\n"
                            "i2c = I2C(0, timeout=30000)\nt0 = time.ticks_us()\n"
                            "r = tryit(lambda: i2c.readfrom_mem(0x50, 0, 1))\n"
                            "print(r, time.ticks_diff(time.ticks_us(), t0) >= 30000)\n"
                            "print(i2c.readfrom_mem(0x50, 0, 1).hex())")
    assert out == [f"E{ETIMEDOUT}", "True", "22"]  # the timeout took its board time


class Slow(RegisterDevice):
    """A chip model that takes ``first_s`` of host time for its first read, then
    ``then_s`` for each (the board waits for 0.2 s)."""

    def __init__(self, first_s: float, then_s: float, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.delay_s, self.then_s = first_s, then_s

    def read(self, n: int) -> bytes:
        time.sleep(self.delay_s)
        self.delay_s = self.then_s
        return super().read(n)


def test_a_host_that_does_not_answer_is_a_timeout_and_its_late_answer_is_dropped(
        tmp_path: Path) -> None:
    with VirtualBoard("pico-4s", flash=tmp_path, plant=False, i2c_host_timeout_s=0.2) as vb:
        vb.attach_i2c(0x50, Slow(0.8, 0.0, registers={0: 0x33}))
        vb.attach_i2c(0x51, Slow(0.03, 0.03, fill=0x44))  # its answers come one by one
        # The transfers after the slow one wait behind it on the host and time out too,
        # until the late answers come in a burst: each is taken for its own transfer only
        # (a transfer the board gave up on still reached the chip: its pointer moved).
        out = run(vb, TRY + "from machine import I2C\ni2c = I2C(0)\n"
                            "print(tryit(lambda: i2c.readfrom(0x50, 1)))\n"
                            "for n in range(20):\n"
                            "    r = tryit(lambda: i2c.readfrom(0x51, 1))\n"
                            "    if not isinstance(r, str):\n        break\n"
                            "print(n > 0, r.hex(), i2c.readfrom(0x50, 1).hex())")
    assert out == [f"E{ETIMEDOUT}", "True", "44", "00"]  # 0x50's pointer moved on


class Broken(RegisterDevice):
    def read(self, n: int) -> bytes:
        raise RuntimeError("a bug in the chip model")


def test_a_device_model_that_raises_is_eio_on_the_board_and_kept_on_the_host(
        tmp_path: Path) -> None:
    with VirtualBoard("esp32-4s", flash=tmp_path, plant=False) as vb:
        vb.attach_i2c(0x50, Broken(registers={0: 7}))
        out = run(vb, TRY + "from machine import I2C\ni2c = I2C(0)\n"
                            "print(tryit(lambda: i2c.readfrom(0x50, 1)), i2c.scan())")
        assert out == ["E5", "[80]"]  # and the board runs on
        assert vb.i2c_errors == ["scl=18,sda=19: RuntimeError: a bug in the chip model"]


@pytest.mark.parametrize("board", BOARDS)
def test_a_corrupted_byte_reaches_the_board_once(board: str, tmp_path: Path) -> None:
    dev = RegisterDevice(registers={0: 0x10, 1: 0x20})
    with VirtualBoard(board, flash=tmp_path, plant=False) as vb:
        vb.attach_i2c(0x08, dev)
        vb.i2c_bus().corrupt(xor=0x81, index=1)
        out = run(vb, "from machine import I2C\ni2c = I2C(0)\n"
                      "print(i2c.readfrom_mem(0x08, 0, 2).hex(),"
                      " i2c.readfrom_mem(0x08, 0, 2).hex())")
        assert out == ["10a1", "1020"]
        # What the chip receives: the register address, then the data (index 1).
        vb.i2c_bus().corrupt(direction="write", xor=0x0F, index=1)
        run(vb, "from machine import I2C\nI2C(0).writeto_mem(0x08, 4, b'\\x50\\x60')")
    assert dev.memory[4:6] == b"\x5f\x60"  # the first data byte the chip received, flipped


@pytest.mark.parametrize("board", BOARDS)
def test_soft_i2c_on_the_same_pins_reaches_the_same_device(board: str, tmp_path: Path) -> None:
    (scl, sda), (scl1, sda1) = PINS[board]
    dev = Recorder()
    with VirtualBoard(board, flash=tmp_path, plant=False) as vb:
        vb.attach_i2c(0x29, dev)
        out = run(vb, f"from machine import I2C, SoftI2C, Pin\n"
                      f"I2C(0).writeto_mem(0x29, 0x40, b'\\xde\\xad')\n"
                      f"s = SoftI2C(scl=Pin({scl}), sda=Pin({sda}), freq=100000)\n"
                      f"print(s.readfrom_mem(0x29, 0x40, 2).hex(), s.scan())\n"
                      # the primitives: a register read by hand
                      f"s.start()\nprint(s.write(bytes([0x29 << 1, 0x41])))\n"
                      f"s.start()\nprint(s.write(bytes([0x29 << 1 | 1])))\n"
                      f"b = bytearray(1)\ns.readinto(b)\ns.stop()\nprint(b.hex())\n"
                      f"s.start()\nprint(s.write(bytes([0x2A << 1, 0])))\ns.stop()\n"
                      f"print(SoftI2C(Pin({scl1}), Pin({sda1})).scan())\n"
                      f"print(repr(s))")
        pins = vb.pins()
    assert out[:6] == ["dead", "[41]", "2", "1", "ad", "0"]  # 0x2a NACKs: 0 ACKs
    assert out[6] == "[]"  # other pins: another bus
    assert out[7].startswith(f"SoftI2C(scl={scl},")
    assert dev.seen[-5:] == ["W", "w41", "R", "r1", "P"]
    assert pins[scl]["mode"] == 2 and pins[scl]["level"] == 1  # released open-drain lines


def test_i2c_pins_and_ids_are_checked_as_the_rp2_port_does(tmp_path: Path) -> None:
    with VirtualBoard("pico-4s", flash=tmp_path, plant=False) as vb:
        out = run(vb, "from machine import I2C, Pin\n"
                      "for kw in ({'id': 1}, {'id': 0, 'scl': Pin(9), 'sda': Pin(8)},\n"
                      "           {'id': 0, 'scl': Pin(7)}, {'id': 1, 'sda': Pin(4)}, {'id': 2}):\n"
                      "    try:\n        print(repr(I2C(**kw)).replace(' ', ''))\n"
                      "    except ValueError as e:\n        print(str(e).replace(' ', '_'))")
        pins = vb.pins()
    assert out == ["I2C(1,scl=7,sda=6,freq=400000,timeout=50000)",
                   "I2C(0,scl=9,sda=8,freq=400000,timeout=50000)",
                   "bad_SCL_pin", "bad_SDA_pin", "I2C(2)_doesn't_exist"]
    assert pins[9]["mode"] == 3 and pins[9]["pull"] == 1  # the I2C function, pulled up


@pytest.mark.parametrize("board", BOARDS)
def test_a_device_survives_a_soft_reset_and_a_power_cycle(board: str, tmp_path: Path) -> None:
    vb = VirtualBoard(board, flash=tmp_path, plant=False)
    dev = RegisterDevice()
    vb.attach_i2c(0x50, dev)  # before the board is powered: a chip soldered on
    try:
        vb.start()
        run(vb, "from machine import I2C\nI2C(0).writeto_mem(0x50, 7, b'kept')")
        ok(mpremote(vb.port, "soft-reset"))
        vb.wait_reset("soft")
        read = "from machine import I2C\nprint(I2C(0).readfrom_mem(0x50, 7, 4))"
        assert run(vb, read) == ["b'kept'"]
        vb.restart()
        assert run(vb, read) == ["b'kept'"]
        vb.attach_i2c(0x51, RegisterDevice())  # and after
        assert run(vb, "from machine import I2C\nprint(I2C(0).scan())") == ["[80,", "81]"]
    finally:
        vb.close()


class AdcSetter(I2cDevice):
    """A chip whose every write makes the host send control lines to the board while
    the board waits for the transfer's answer (an ADC voltage, a driven input)."""

    def __init__(self, vb: VirtualBoard, adc_pin: int, in_pin: int) -> None:
        self.vb, self.adc_pin, self.in_pin = vb, adc_pin, in_pin

    def write(self, data: bytes) -> int:
        self.vb.set_adc_mv(self.adc_pin, 100.0 * data[0])
        self.vb.drive_pin(self.in_pin, data[0] & 1)
        return len(data)

    def read(self, n: int) -> bytes:
        return bytes(n)


@pytest.mark.parametrize("board", BOARDS)
def test_control_lines_sent_while_a_transfer_waits_are_taken(board: str, tmp_path: Path) -> None:
    adc_pin, in_pin = (26, 10) if board == "pico-4s" else (34, 13)
    with VirtualBoard(board, flash=tmp_path, plant=False) as vb:
        vb.attach_i2c(0x30, AdcSetter(vb, adc_pin, in_pin))
        out = run(vb, f"from machine import I2C, ADC, Pin\ni2c = I2C(0)\n"
                      f"a = ADC(Pin({adc_pin}), atten=ADC.ATTN_11DB)\n"
                      f"p = Pin({in_pin}, Pin.IN)\n"
                      f"for k in (3, 8, 13, 20):\n"
                      f"    i2c.writeto(0x30, bytes([k]))\n"
                      f"    print(a.read_uv() // 1000, p.value())")
    assert out == ["300", "1", "800", "0", "1300", "1", "2000", "0"]


def test_the_plant_feeds_the_adc_while_the_board_talks_i2c(tmp_path: Path) -> None:
    # Plant ticks go out, their ADC codes come back while the board waits for I2C answers.
    # End to end: it fails when I2C traffic stops the plant's ticks or their codes; a
    # board that dropped lines only during the waits would often still pass (a
    # few codes lines get in between transfers): the exact check of that is
    # test_control_lines_sent_while_a_transfer_waits_are_taken.
    class Load(RegisterDevice):
        def write(self, data: bytes) -> int:
            if data and data[-1] == 0xEE:
                vb.set_current(-20.0)  # a load switched on by the chip's command
            return super().write(data)

    with VirtualBoard("pico-4s", flash=tmp_path) as vb:
        vb.set_current(0.0)
        vb.attach_i2c(0x30, Load())
        out = run(vb, "from machine import I2C, ADC, Pin\nimport time\ni2c = I2C(0)\n"
                      "Pin(15, Pin.OUT, value=1)\n"  # the output closed: current can flow
                      "time.sleep_ms(50)\na = ADC(27)\n"
                      "before = sum(a.read_u16() for _ in range(8)) // 8\n"
                      "i2c.writeto(0x30, b'\\x00\\xee')\n"
                      "t0 = time.ticks_ms()\nn = 0\n"
                      "while time.ticks_diff(time.ticks_ms(), t0) < 200:\n"
                      "    i2c.readfrom(0x30, 2)\n    n += 1\n"
                      "after = sum(a.read_u16() for _ in range(8)) // 8\n"
                      "print(before, after, n)")
    before, after, n = (int(x) for x in out)
    assert n > 20
    # the shunt amplifier's code moved by the 20 A step (far beyond its noise)
    assert abs(after - before) > 2000, (before, after)


@pytest.mark.parametrize("board", BOARDS)
def test_a_transfer_takes_its_bus_time_on_the_board_clock(board: str, tmp_path: Path) -> None:
    with VirtualBoard(board, flash=tmp_path, plant=False) as vb:
        vb.attach_i2c(0x50, RegisterDevice(4096, addrsize=16))
        out = run(vb, "from machine import I2C\nimport time\n"
                      "i2c = I2C(0, freq=10000)\nt0 = time.ticks_us()\n"
                      "i2c.readfrom(0x50, 3000)\n"
                      "print(time.ticks_diff(time.ticks_us(), t0))")
    # START, address, 3000 bytes, STOP at 10 kHz: 9 bits a byte
    assert int(out[0]) >= (9 * 3001 + 2) * 100


# ---------------------------------------------------------------- the bus model (host only)
def test_the_bus_counts_faults_and_releases_a_device_on_a_repeated_start_to_another() -> None:
    a, b = Recorder(), Recorder()
    bus = I2cBus("test")
    bus.attach(0x10, a)
    bus.attach(0x11, b)
    bus.nack(0x10, times=1)
    assert bus.transfer(["S", "W20", "P"]) == ["-", "0", "-"]
    assert bus.transfer(["S", "W2005", "S", "W23", "R1", "P"]) == ["-", "2", "-", "1", "00", "-"]
    assert a.seen == ["W", "w05", "P"] and b.seen == ["R", "r1", "P"]
    bus.timeout(times=1, address=0x11)
    assert bus.transfer(["S", "W22", "P", "S", "W20", "P"]) == ["-", "T", "-", "-", "1", "-"]
    with pytest.raises(ValueError):
        bus.attach(0x10, RegisterDevice())  # taken
    with pytest.raises(ValueError):
        bus.attach(0x80, RegisterDevice())
    with pytest.raises(ValueError):
        bus.nack(0x10, times=0)
    with pytest.raises(ValueError, match="no device at 0x12"):
        bus.detach(0x12)
    assert (bus.nacks, bus.timeouts, bus.transfers) == (1, 1, 5)


@settings(max_examples=60, deadline=None)
@given(addrsize=st.sampled_from([8, 16]), start=st.integers(0, 511),
       data=st.binary(min_size=1, max_size=40))
def test_register_writes_read_back_through_the_bus(addrsize: int, start: int,
                                                   data: bytes) -> None:
    size = 256 if addrsize == 8 else 512
    start %= size
    bus = I2cBus()
    dev = RegisterDevice(size, addrsize=addrsize)
    bus.attach(0x50, dev)
    mem = start.to_bytes(addrsize // 8, "big")
    assert bus.transfer(["S", "WA0" + (mem + data).hex(), "P"])[1] == str(1 + len(mem) + len(data))
    res = bus.transfer(["S", "WA0" + mem.hex(), "S", "WA1", f"R{len(data)}", "P"])
    assert bytes.fromhex(res[4]) == data  # wrapping at the end of the map
    assert all(dev.memory[(start + i) % size] == byte for i, byte in enumerate(data))
