"""The virtual dev board's `machine` module: the API of the stubs, the state of silicon."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_virtual_board import BANNER_END, Terminal, mpremote, ok

from cellguard.paths import repo_root
from cellguard.sim.virtual import VirtualBoard, install_firmware

MACHINE = Path(__file__).resolve().parents[1] / "host/cellguard/sim/vboard_lib/machine.py"
STUBS = repo_root() / ".stubs"


def _signatures(tree: ast.Module) -> dict[str, list[tuple[list[str], set[str]]]]:
    """name or Class.name -> every declared (positional parameters, keyword-only ones).

    A method a class declares only as ``(*args, **kwargs)`` (the stubs' SoftI2C) is its
    base class's method; its ``init`` takes what its constructor takes (extmod's
    ``init`` runs the constructor's argument parsing again)."""
    out: dict[str, list[tuple[list[str], set[str]]]] = {}
    bases = {node.name: [b.id for b in node.bases if isinstance(b, ast.Name)]
             for node in tree.body if isinstance(node, ast.ClassDef)}

    def add(key: str, fn: ast.FunctionDef) -> None:
        a = fn.args
        if a.vararg or a.kwarg:  # `*args, **kwargs`: the stub says nothing to check
            sig: tuple[list[str], set[str]] = (["*"], set())
        else:
            sig = ([x.arg for x in a.posonlyargs + a.args], {x.arg for x in a.kwonlyargs})
        out.setdefault(key, []).append(sig)

    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            add(node.name, node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    add(f"{node.name}.{item.name}", item)
    for cls, parents in bases.items():
        for key in [k for k in out if k.startswith(cls + ".")]:
            if any(sig[0] != ["*"] for sig in out[key]):
                continue
            method = key.partition(".")[2]
            if method == "init" and f"{cls}.__init__" in out:
                out[key] = out[f"{cls}.__init__"]
            for parent in parents[:1]:
                if method != "init" and f"{parent}.{method}" in out:
                    out[key] = out[f"{parent}.{method}"]
    return out


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_the_emulated_machine_module_declares_what_the_stubs_declare(port: str) -> None:
    stub_file = STUBS / port / "machine.pyi"
    if not stub_file.is_file():
        pytest.fail(f"{stub_file} missing: run `make setup`")
    stub = _signatures(ast.parse(stub_file.read_text()))
    ours = _signatures(ast.parse(MACHINE.read_text()))
    checked = 0
    for name, [(params, kwonly)] in ours.items():
        short = name.rpartition(".")[2]
        if short.startswith("_") and short not in ("__init__", "__call__"):
            continue  # our own helpers, and __repr__
        if name not in stub:
            # Methods one port has and the other not (ADC.read_uv on esp32) are fine on the
            # other port; a name neither stub has is drift.
            other = _signatures(ast.parse(
                (STUBS / ("esp32" if port == "rp2" else "rp2") / "machine.pyi").read_text()))
            assert name in other, f"machine.{name} is in neither port's stub"
            continue
        overloads = [s for s in stub[name] if s[0] != ["*"]]
        if not overloads:
            continue
        # One signature of ours covers every overload: the positional parameters of
        # the longest, in order, and every keyword-only one.
        longest = max((s[0] for s in overloads), key=len)
        assert params == longest, f"machine.{name}{params} vs the stub's {longest}"
        wanted = set().union(*(s[1] for s in overloads))
        assert kwonly == wanted, f"machine.{name} keywords {kwonly} vs the stub's {wanted}"
        checked += 1
    assert checked >= 45
    for name in ("Pin.__init__", "Pin.value", "Pin.on", "Pin.off", "ADC.read_u16", "ADC.atten",
                 "WDT.__init__", "WDT.feed", "reset", "soft_reset", "reset_cause", "unique_id",
                 "freq", "I2C.__init__", "I2C.scan", "I2C.readfrom", "I2C.readfrom_into",
                 "I2C.writeto", "I2C.writevto", "I2C.readfrom_mem", "I2C.readfrom_mem_into",
                 "I2C.writeto_mem", "SoftI2C.__init__", "SoftI2C.init", "SoftI2C.start",
                 "SoftI2C.stop", "SoftI2C.readinto", "SoftI2C.write"):
        assert name in ours


def test_pads_keep_their_level_across_a_soft_reset_and_not_a_hard_one(tmp_path: Path) -> None:
    with VirtualBoard("pico-4s", flash=tmp_path) as vb:
        ok(mpremote(vb.port, "exec", "from machine import Pin; Pin(15, Pin.OUT, value=1)"))
        assert vb.pins()[15] == {"mode": 1, "pull": 2, "latch": 1, "level": 1}
        out = ok(mpremote(vb.port, "soft-reset", "exec",
                          "from machine import Pin; print(Pin(15).value())"))
        assert out.strip() == "1"
        assert vb.pins()[15]["level"] == 1
        ok(mpremote(vb.port, "reset"))
        vb.wait_reset("reset")
        assert vb.pins()[15] == {"mode": 0, "pull": 2, "latch": 0, "level": 0}  # rp2 default
        out = ok(mpremote(vb.port, "exec", "import machine; print(machine.reset_cause())"))
        assert out.strip() == "3"  # rp2's machine.reset() goes through its watchdog


def test_machine_reset_runs_no_finally_block(tmp_path: Path) -> None:
    with VirtualBoard("esp32-4s", flash=tmp_path) as vb:
        t = Terminal(vb.port)
        try:
            t.type(b"\x02")
            t.read_until(BANNER_END)
            t.type(b"import machine\rtry:\r machine.reset()\rfinally:\r print('fin' + 'ally')\r\r")
            vb.wait_reset("reset")
            t.type(b"print(machine.reset_cause())\r")
            # A fresh interpreter: `machine` is not imported there.
            out = t.read_until(b"NameError")
        finally:
            t.close()
    assert b"\nfinally\r\n" not in out and b"soft reboot" not in out
    with VirtualBoard("esp32-4s", flash=tmp_path) as vb:
        ok(mpremote(vb.port, "reset"))
        vb.wait_reset("reset")
        out = ok(mpremote(vb.port, "exec", "import machine; print(machine.reset_cause())"))
        assert out.strip() == "5"  # esp32: machine.reset() is a software reset (SOFT_RESET)


def test_a_starved_watchdog_resets_the_board_even_across_a_soft_reset(tmp_path: Path) -> None:
    with VirtualBoard("pico-4s", flash=tmp_path) as vb:
        out = ok(mpremote(vb.port, "exec",
                          "import machine, time\n"
                          "w = machine.WDT(timeout=300)\n"
                          "for _ in range(10):\n    time.sleep_ms(100)\n    w.feed()\n"
                          "print('fed for 1 s')"))
        assert out.strip() == "fed for 1 s"  # fed in time: no reset
        assert "watchdog" not in vb.resets
        ok(mpremote(vb.port, "soft-reset"))  # the watchdog keeps running; nothing feeds it
        vb.wait_reset("watchdog")
        out = ok(mpremote(vb.port, "exec",
                          "import machine; print(machine.reset_cause() == machine.WDT_RESET)"))
        assert out.strip() == "True"


def test_adc_reads_the_voltage_the_host_puts_on_the_pin(tmp_path: Path) -> None:
    with VirtualBoard("pico-4s", flash=tmp_path / "a") as vb:
        vb.set_adc_mv(26, 1650.0)
        vb.set_adc_mv(27, 5000.0)  # above the 3.3 V reference: the code saturates
        out = ok(mpremote(vb.port, "exec",
                          "from machine import ADC, Pin\n"
                          "print(ADC(0).read_u16(), ADC(Pin(26)).read_u16(), ADC(27).read_u16())"))
        assert out.split() == ["32768", "32768", "65535"]
    with VirtualBoard("esp32-4s", flash=tmp_path / "b") as vb:
        vb.set_adc_mv(34, 1000.0)
        out = ok(mpremote(vb.port, "exec",
                          "from machine import ADC, Pin\n"
                          "a = ADC(Pin(34), atten=ADC.ATTN_11DB)\n"
                          "print(a.read_u16(), a.read_uv())\n"
                          "a.atten(ADC.ATTN_0DB)\nprint(a.read_u16())\n"
                          "try:\n    ADC(Pin(2))\nexcept ValueError:\n    print('no ADC')"))
        assert out.split() == [str(round(1000 / 2450 * 65535)), "1000000", "65535", "no", "ADC"]


def test_an_input_reads_its_pull_or_what_the_host_drives(tmp_path: Path) -> None:
    with VirtualBoard("pico-4s", flash=tmp_path) as vb:
        probe = ("from machine import Pin\n"
                 "print(Pin(4, Pin.IN, Pin.PULL_UP).value(), Pin(5, Pin.IN, Pin.PULL_DOWN)())")
        assert ok(mpremote(vb.port, "exec", probe)).split() == ["1", "0"]
        vb.drive_pin(4, 0)
        vb.drive_pin(5, 1)
        assert ok(mpremote(vb.port, "exec", probe)).split() == ["0", "1"]


def test_unique_id_belongs_to_the_board_and_its_flash(tmp_path: Path) -> None:
    ids = []
    for flash in ("a", "a", "b"):
        with VirtualBoard("pico-4s", flash=tmp_path / flash) as vb:
            ids.append(ok(mpremote(vb.port, "exec",
                                   "import machine; print(machine.unique_id().hex())")).strip())
            assert bytes.fromhex(ids[-1]) == vb.unique_id and len(vb.unique_id) == 8
    assert ids[0] == ids[1] != ids[2]


def test_a_periodic_timer_that_fell_behind_fires_for_every_period_it_missed(
        tmp_path: Path) -> None:
    # A loop that never reads the clock holds the timer's callbacks back (they are
    # scheduled, as soft timers are); then each missed period fires, as the ports'
    # soft timers do (expiry += period), not one call for the lot.
    with VirtualBoard("pico-4s", flash=tmp_path, speed=100.0) as vb:
        out = ok(mpremote(vb.port, "exec",
                          "from machine import Timer\nimport time\nc = [0]\n"
                          "def tick(t):\n    c[0] += 1\n"
                          "t = Timer(period=10, mode=Timer.PERIODIC, callback=tick)\n"
                          "t0 = time.ticks_ms()\n"
                          "for i in range(200000):\n    pass\n"
                          "t1 = time.ticks_ms()\nt.deinit()\n"
                          "print(time.ticks_diff(t1, t0), c[0])\n", timeout=60))
    behind_ms, fired = (int(x) for x in out.split())
    assert behind_ms >= 100  # at 100x the loop is seconds of board time, at most 400 ms a read
    # Every period from t0 to t1 fired; the two clock reads from the timer's start to t0
    # (its due time, then t0) may add some: at 100x one read can be up to 400 ms.
    assert behind_ms // 10 <= fired <= behind_ms // 10 + 80


def test_board_time_runs_at_the_speed_factor(tmp_path: Path) -> None:
    # 200 s of board time: at 100x it takes 2 s; at real time it would outlast the timeout.
    with VirtualBoard("pico-4s", flash=tmp_path, speed=100.0) as vb:
        out = ok(mpremote(vb.port, "exec",
                          "import time\nt0 = time.ticks_ms()\ntime.sleep(200)\n"
                          "print(time.ticks_diff(time.ticks_ms(), t0) >= 200_000)", timeout=60))
    assert out.strip() == "True"


# Work, then a look at the clock, for 500 ms of board time: how much work was done.
COUNT_FOR_500_MS = ("import time\nn = 0\nt0 = time.ticks_ms()\n"
                    "while time.ticks_diff(time.ticks_ms(), t0) < 500:\n"
                    "    for _ in range(1000):\n        n += 1\n"
                    "print(n)")


def test_a_host_that_gives_the_board_less_cpu_stops_its_clock_not_its_firmware(
        tmp_path: Path) -> None:
    # Three busy processes on the board process's CPU leave it about a quarter of it.
    # The board's clock counts only its own time (CPU used, sleeps), so the firmware
    # does as much per board millisecond as on an idle host: a loaded CI machine does
    # not make a control step look 4x slower and starve the watchdog.
    cpu = min(os.sched_getaffinity(0))
    with VirtualBoard("pico-4s", flash=tmp_path, speed=1.0) as vb:
        assert vb._proc is not None
        os.sched_setaffinity(vb._proc.pid, {cpu})
        idle = int(ok(mpremote(vb.port, "exec", COUNT_FOR_500_MS)))
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                 preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
                                 start_new_session=True)  # a share each (autogroups)
                for _ in range(3)]
        try:
            loaded = int(ok(mpremote(vb.port, "exec", COUNT_FOR_500_MS)))
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
    # A wall clock would give about idle / 4.
    assert loaded > idle / 2, (idle, loaded)


def test_the_unchanged_firmware_boots_and_answers_hello_over_the_pty(tmp_path: Path) -> None:
    from cellguard.link.client import BoardClient

    install_firmware(tmp_path, "pico-4s")
    # No plant: nothing on the ADC pins, the cells read 0 V and the output stays open.
    with VirtualBoard("pico-4s", flash=tmp_path, plant=False) as vb:
        client = BoardClient(vb.port)
        try:
            info = client.hello(timeout_s=10)
            assert info.board == "pico-4s"
            assert info.unique_id == vb.unique_id.hex()  # through machine.unique_id()
            assert vb.pins()[15]["mode"] == 1 and vb.pins()[15]["latch"] == 0  # output open
            client.reset()  # the protocol's RESET: board_main calls machine.reset()
            vb.wait_reset("reset")
            assert client.hello(timeout_s=10).board == "pico-4s"  # booted again
        finally:
            client.close()
        assert "watchdog" not in vb.resets  # the loop fed it all along


def test_timers_fire_on_board_time_and_end_at_a_soft_reset(tmp_path: Path) -> None:
    with VirtualBoard("pico-4s", flash=tmp_path) as vb:
        # One mpremote session: it soft-resets the board only before its first command.
        out = ok(mpremote(vb.port, "exec",
                          "from machine import Timer\nimport time\n"
                          "c = [0]\nfired = []\n"
                          "def tick(t):\n    c[0] += 1\n"
                          "t = Timer(period=10, mode=Timer.PERIODIC, callback=tick)\n"
                          "t0 = time.ticks_ms()\n"
                          "Timer(mode=Timer.ONE_SHOT, period=30,\n"
                          "      callback=lambda t: fired.append(1))\n"
                          "time.sleep_ms(205)\n"
                          "el = time.ticks_diff(time.ticks_ms(), t0)\n"
                          "t.deinit()\nseen = c[0]\ntime.sleep_ms(50)\n"
                          "print(el, seen, c[0] == seen, len(fired))\n"
                          "import builtins\nbuiltins.LEFT = c\n"
                          "Timer(period=10, callback=tick)\n",
                          "+", "exec", "import _vboard; print(_vboard.timer_count())",
                          "+", "soft-reset",
                          "+", "exec", "import time, builtins, _vboard\ntime.sleep_ms(50)\n"
                                       "print(hasattr(builtins, 'LEFT'), _vboard.timer_count())"))
        elapsed, seen, stopped, one_shot, before, fresh, after = out.split()
        # Every 10 ms from the start (a busy host may stretch the sleep; each period
        # still fires once), nothing after deinit, the one-shot once. A firing due in
        # the very millisecond the clock was read may run just after the reading.
        el = int(elapsed)
        assert el >= 205 and (el - 1) // 10 <= int(seen) <= el // 10 + 5
        assert stopped == "True" and one_shot == "1"
        assert before == "1"  # the last timer runs on at the raw REPL
        assert (fresh, after) == ("False", "0")  # a fresh interpreter, no timer left
