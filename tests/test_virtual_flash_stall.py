"""A flash erase/program stalls the virtual board (``Silicon.flash_stall_ms``, typical
by default; ``flash_stall_worst_ms`` for a seeded share of the stalls), as an RP2040 or
ESP32 stalls with its flash's execute-in-place off: and the firmware opens the output
on a trip before the flash write of that trip's event stalls it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cellguard.errors import CellguardError
from cellguard.hil.client import HilClient
from cellguard.sim.silicon import FLASH_ERASE_TYPICAL_MS, Silicon
from cellguard.sim.virtual import VirtualBoard, install_firmware

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))

STALL_MS = 400  # a worst-case sector erase (typical: about 45 ms on a Pico's flash)


def ok_exec(port: str, code: str) -> str:
    result = subprocess.run([MPREMOTE, "connect", port, "exec", code], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def test_a_flash_write_stalls_the_interpreter_for_the_configured_time(tmp_path: Path) -> None:
    silicon = Silicon.default("rp2040", flash_stall_ms=STALL_MS)
    with VirtualBoard("pico-4s", flash=tmp_path, plant=False, speed=2.0,
                      silicon=silicon) as vb:
        vb.wait_ready()
        import serial  # the board's REPL, as a host would

        with serial.Serial(vb.port, timeout=5) as port:
            port.write(b"\x03\x01")  # raw REPL
            port.read_until(b"raw REPL; CTRL-B to exit\r\n>")
            code = (b"import time\nt=time.ticks_ms()\nf=open('x.txt','w')\nf.write('1')\n"
                    b"f.close()\nprint(time.ticks_diff(time.ticks_ms(),t))\n")
            port.write(code + b"\x04")
            out = port.read_until(b"\x04>")
        elapsed_ms = int(out.split(b"OK", 1)[1].split(b"\x04", 1)[0])
        assert elapsed_ms >= STALL_MS, out
        assert len(vb.flash_stalls) == 1 and vb.flash_stall_lengths == [STALL_MS]
        assert (tmp_path / "x.txt").read_text() == "1"


@pytest.mark.parametrize("board", ["pico-4s", "esp32-4s"])
def test_the_typical_stall_is_on_by_default(board: str, tmp_path: Path) -> None:
    with VirtualBoard(board, flash=tmp_path, plant=False) as vb:
        assert vb.flash_stall_ms == FLASH_ERASE_TYPICAL_MS
        ok_exec(vb.port, "f = open('x.txt', 'w'); f.write('1'); f.close()")
        vb.poll()
        assert vb.flash_stall_lengths == [FLASH_ERASE_TYPICAL_MS]


def test_a_seeded_share_of_the_stalls_takes_the_worst_case(tmp_path: Path) -> None:
    silicon = Silicon.default("rp2040", flash_stall_ms=5.0, flash_stall_worst_ms=120.0,
                              flash_worst_share=0.5)
    code = "for i in range(12):\n    f = open('f%d' % i, 'w'); f.write('x'); f.close()"
    runs = []
    for seed in (4, 4, 5):
        with VirtualBoard("pico-4s", flash=tmp_path / str(len(runs)), plant=False, seed=seed,
                          silicon=silicon, speed=4.0) as vb:
            ok_exec(vb.port, code)
            runs.append(list(vb.flash_stall_lengths))
    assert len(runs[0]) == 12 and set(runs[0]) == {5.0, 120.0}  # both kinds
    assert runs[0] == runs[1]  # the same seed: the same stalls
    assert runs[0] != runs[2]
    with pytest.raises(CellguardError, match="flash_stall_worst_ms"):
        Silicon.default("rp2040", flash_stall_worst_ms=1.0, flash_worst_share=0.1)


def test_without_the_switch_a_flash_write_does_not_stall(tmp_path: Path) -> None:
    install_firmware(tmp_path, "pico-4s")
    with VirtualBoard("pico-4s", flash=tmp_path, speed=5.0, flash_stall_ms=0) as vb:
        client = HilClient(vb.port, 2.5)
        try:
            client.hello()
            client.set_config("telemetry_period_ms", 1001)  # a flash write
            client.run(2.0)
        finally:
            client.close()
        assert vb.flash_stalls == []


@pytest.mark.parametrize("board", ["pico-4s", "esp32-4s"])
def test_a_trip_opens_the_output_before_the_flash_stall(board: str, tmp_path: Path) -> None:
    install_firmware(tmp_path, board)
    with VirtualBoard(board, flash=tmp_path, speed=5.0, seed=3,
                      flash_stall_ms=STALL_MS) as vb:  # the shortcut for silicon's
        client = HilClient(vb.port, 2.5)
        try:
            client.hello()
            client.wait_telemetry("the output closed", lambda t: t.state == "active", 15.0)
            client.run(2.0)
            assert vb.truth().output_closed
            injected_ms = vb.time_ms
            mark = client.mark()
            vb.set_cell_temperature(0, 85.0)  # past overtemperature: a fault, latched
            client.wait_event("trip", "overtemperature", 10.0, mark)
            client.run(2.0)
        finally:
            client.close()
        with vb._lock:
            history = list(vb.history)
        opened_ms = next(t for t, truth in history
                         if t >= injected_ms and not truth.output_closed)
        stalls = [t for t in vb.flash_stalls if t >= injected_ms]
        # The trip's event is written to flash just after the output opened ...
        after = [t for t in stalls if t >= opened_ms]
        assert after and after[0] - opened_ms < 1000, (opened_ms, stalls)
        # ... and no flash stall came between the trip and the opening: none began
        # in the stall's length and a control period before the pin went low.
        period_ms = vb.board["control_period_ms"]
        assert not [t for t in stalls if opened_ms - STALL_MS - period_ms <= t < opened_ms], (
            opened_ms, stalls)
        assert vb.watchdog_resets == 0 and "watchdog" not in vb.resets
