"""The virtual board's silicon switches (``cellguard.sim.silicon.Silicon``): each behaviour
where silicon bites, on (the chip's default) and off, so the board path is proven
against it (docs/virtual_board.md, "What is faithful")."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from test_virtual_board import Terminal, mpremote, ok

from cellguard.errors import CellguardError
from cellguard.sim.silicon import Silicon
from cellguard.sim.virtual import VirtualBoard

RP2_PAD_DEFAULT = {"mode": 0, "pull": 2, "latch": 0, "level": 0}  # input, pull-down


def board(tmp_path: Path, name: str = "pico-4s", **changes: object) -> VirtualBoard:
    mcu = "esp32" if name.startswith("esp32") else "rp2040"
    return VirtualBoard(name, flash=tmp_path / "flash", plant=False,
                        silicon=Silicon.default(mcu, **changes))


# -- the options object -----------------------------------------------------------------
def test_each_mcu_has_its_chip_as_the_default() -> None:
    rp2, esp32 = Silicon.default("rp2040"), Silicon.default("esp32")
    assert rp2.usb_write_timeout_ms == 500.0  # the rp2 port's USB CDC write
    assert esp32.usb_write_timeout_ms == 0.0  # UART0 through the dev board's bridge
    assert (rp2.tx_buffer_bytes, esp32.tx_buffer_bytes) == (256.0, 65536.0)
    for chip in (rp2, esp32):
        assert chip.soft_reset_keeps_pins and chip.hard_reset_resets_pins
        assert chip.watchdog_survives_soft_reset and chip.drop_output_without_host
        assert chip.flash_stall_ms == 45.0 and chip.flash_worst_share == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        rp2.flash_stall_ms = 1.0  # type: ignore[misc]
    with pytest.raises(CellguardError, match="no silicon model"):
        Silicon.default("stm32")


@pytest.mark.parametrize("changes, message", [
    ({"usb_write_timeout_ms": -1.0}, "0 or more"),
    ({"flash_stall_ms": float("nan")}, "a number"),
    ({"flash_worst_share": 1.5}, "0 to 1"),
    ({"soft_reset_keeps_pins": 1}, "on or off"),
    ({"usb_write_timeout_ms": "500"}, "a number"),
    ({"no_such_switch": True}, "unknown silicon switch"),
])
def test_bad_values_get_a_clear_error(changes: dict[str, object], message: str) -> None:
    with pytest.raises(CellguardError, match=message):
        Silicon.default("rp2040", **changes)


def test_switches_parse_from_name_value_texts() -> None:
    chip = Silicon.default("rp2040").parsed(
        ["usb_write_timeout_ms=0", "watchdog_survives_soft_reset=off", "flash_stall_ms=400",
         "drop_output_without_host = No"])
    assert chip == Silicon.default("rp2040", usb_write_timeout_ms=0.0, flash_stall_ms=400.0,
                                   watchdog_survives_soft_reset=False,
                                   drop_output_without_host=False)
    for text, message in [("flash_stall_ms", "NAME=VALUE"), ("bogus=1", "unknown switch"),
                          ("soft_reset_keeps_pins=maybe", "on or off"),
                          ("flash_stall_ms=fast", "is a number"),
                          ("flash_stall_ms=-3", "0 or more")]:
        with pytest.raises(CellguardError, match=message):
            Silicon.default("rp2040").parsed([text])


def test_the_cli_takes_silicon_switches_and_refuses_bad_ones(
        capsys: pytest.CaptureFixture[str]) -> None:
    from cellguard.cli import main

    assert main(["sim", "--silicon", "flash_stall_ms=0"]) != 0
    assert "--silicon goes with --virtual" in capsys.readouterr().err
    assert main(["sim", "--virtual", "--silicon", "bogus=1"]) != 0
    err = capsys.readouterr().err
    assert "unknown switch 'bogus'" in err and "usb_write_timeout_ms" in err
    assert "Traceback" not in err
    assert main(["sim", "--virtual", "--silicon", "usb_write_timeout_ms=soon"]) != 0
    assert "usb_write_timeout_ms is a number" in capsys.readouterr().err
    assert main(["sim", "--virtual", "--board", "sim-4s", "--silicon", "flash_stall_ms=1"]) != 0
    assert "mcu" in capsys.readouterr().err


# -- the switches, on and off, on a running board ----------------------------------------
@pytest.mark.parametrize("keeps", [True, False])
def test_pads_across_a_soft_reset(tmp_path: Path, keeps: bool) -> None:
    with board(tmp_path, soft_reset_keeps_pins=keeps) as vb:
        ok(mpremote(vb.port, "exec", "from machine import Pin; Pin(15, Pin.OUT, value=1)"))
        assert vb.pins()[15]["level"] == 1
        out = ok(mpremote(vb.port, "soft-reset", "exec",
                          "from machine import Pin; print(Pin(15).value())"))
        if keeps:  # silicon: the pad is the chip's, not the interpreter's
            assert out.strip() == "1" and vb.pins()[15]["level"] == 1
        else:
            assert out.strip() == "0" and vb.pins()[15] == RP2_PAD_DEFAULT


@pytest.mark.parametrize("resets", [True, False])
def test_pads_after_a_hard_reset(tmp_path: Path, resets: bool) -> None:
    with board(tmp_path, hard_reset_resets_pins=resets) as vb:
        ok(mpremote(vb.port, "exec", "from machine import Pin; Pin(15, Pin.OUT, value=1)"))
        ok(mpremote(vb.port, "reset"))
        vb.wait_reset("reset")
        if resets:  # silicon: an output falls back to an input with its pull-down
            assert vb.pins()[15] == RP2_PAD_DEFAULT
        else:
            assert vb.pins()[15] == {"mode": 1, "pull": 2, "latch": 1, "level": 1}


@pytest.mark.parametrize("survives", [True, False])
def test_the_watchdog_across_a_soft_reset(tmp_path: Path, survives: bool) -> None:
    with board(tmp_path, watchdog_survives_soft_reset=survives) as vb:
        # Started, then at once a fresh interpreter, which never feeds it.
        ok(mpremote(vb.port, "exec", "import machine; machine.WDT(timeout=1000)",
                    "+", "soft-reset"))
        if survives:  # silicon: the watchdog is the chip's; it bites at the REPL
            vb.wait_reset("watchdog")
        else:  # 2.5 s of board time, more than twice the timeout
            out = ok(mpremote(vb.port, "exec", "import time\ntime.sleep_ms(2500)\nprint('slept')"))
            assert out.strip() == "slept"
            vb.poll()
            assert "watchdog" not in vb.resets


MAIN_FILLS_THE_PORT = (
    "import time\n"
    "time.sleep_ms(300)\n"  # the host opens the port meanwhile, and never reads
    "longest = 0\n"
    "for i in range(COUNT):\n"
    "    t = time.ticks_ms()\n"
    "    print('%04d' % i + 'x' * 3995)\n"
    "    time.sleep_ms(6)\n"  # a clock read: the launcher writes to the port here
    "    longest = max(longest, time.ticks_diff(time.ticks_ms(), t))\n"
    "with open('longest', 'w') as f:\n"
    "    f.write(str(longest))\n")


@pytest.mark.parametrize("name, timeout_ms", [("pico-4s", None), ("pico-4s", 0.0),
                                              ("esp32-4s", None), ("esp32-4s", 500.0)])
def test_a_write_to_a_host_that_does_not_read(tmp_path: Path, name: str,
                                              timeout_ms: float | None) -> None:
    changes = {} if timeout_ms is None else {"usb_write_timeout_ms": timeout_ms}
    flash = tmp_path / "flash"
    flash.mkdir()
    # 48 KB fills the rp2's 256-byte buffer and the pty; behind an ESP32's bridge the
    # host's 64 KB serial buffer takes that much: 96 KB there.
    (flash / "main.py").write_text(MAIN_FILLS_THE_PORT.replace(
        "COUNT", "12" if name == "pico-4s" else "24"))
    with board(tmp_path, name, **changes) as vb:
        wait_ms = vb.silicon.usb_write_timeout_ms
        assert wait_ms == (500.0 if (name == "pico-4s") == (timeout_ms is None) else 0.0)
        t = Terminal(vb.port)  # opened, never read
        try:
            deadline = time.monotonic() + 120
            while not (flash / "longest").exists():
                assert time.monotonic() < deadline, "the board stalled on a full port"
                time.sleep(0.1)
        finally:
            t.close()
        longest = int((flash / "longest").read_text())
        vb.poll()
        drops = vb.usb_drops
    assert drops, "the port never filled: the test proves nothing"
    if wait_ms:  # rp2: each write waits 500 ms of board time, then its bytes go
        assert longest >= wait_ms
        assert all(waited >= wait_ms for _, waited, _ in drops)
    else:  # a UART through a bridge: the bytes go at once, the board never waits
        assert longest < 250
        assert all(waited < 50 for _, waited, _ in drops)


@pytest.mark.parametrize("drops", [True, False])
def test_output_while_no_host_has_the_port_open(tmp_path: Path, drops: bool) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text("print('said while nobody listened')\n")
    with board(tmp_path, drop_output_without_host=drops) as vb:
        vb.wait_ready()
        t = Terminal(vb.port)
        try:
            t.type(b"print('heard')\r")
            out = t.read_until(b"heard\r\n>>> ")
        finally:
            t.close()
    assert (b"said while nobody listened" in out) is not drops


def test_poll_reports_room_on_the_port_only_while_there_is_some(tmp_path: Path) -> None:
    # rp2: POLLOUT on the USB serial only while its TX buffer has room, so a writer that
    # polls first (the firmware's UsbSerialPort) never waits on a host that does not read.
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text(
        "import sys, time, select\n"
        "time.sleep_ms(300)\n"
        "p = select.poll()\n"
        "p.register(sys.stdout.buffer, select.POLLOUT)\n"
        "one = b'x'\n"
        "sent = refused = 0\n"
        "t = time.ticks_ms()\n"
        "while time.ticks_diff(time.ticks_ms(), t) < 1500:\n"
        "    if p.poll(0):\n"
        "        sys.stdout.buffer.write(one)\n"
        "        sent += 1\n"
        "    else:\n"
        "        refused += 1\n"
        "with open('counts', 'w') as f:\n"
        "    f.write('%d %d' % (sent, refused))\n")
    with board(tmp_path) as vb:
        t = Terminal(vb.port)  # opened, never read
        try:
            deadline = time.monotonic() + 60
            while not (flash / "counts").exists():
                assert time.monotonic() < deadline
                time.sleep(0.1)
        finally:
            t.close()
        vb.poll()
        sent, refused = map(int, (flash / "counts").read_text().split())
        assert refused > 0 and sent > 4000  # the port filled, then poll said so
        assert vb.usb_drops == []  # and no write ever waited or lost a byte
