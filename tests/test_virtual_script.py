"""Scripts and the plant options on the virtual dev board: `VirtualBoard.run_script`
(the simulated board's step files and current profiles, on the board's clock),
`power_cycle`, `pause`/`resume`, and `cellguard sim --virtual --script/--soc/...`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellguard.cli import main
from cellguard.sim.script import ScriptError
from cellguard.sim.virtual import VirtualBoard, install_firmware


def test_a_step_file_plays_on_the_boards_clock(tmp_path: Path) -> None:
    path = tmp_path / "steps.txt"
    path.write_text("at 0 current -2\nat 1.5 inject open_wire cell=1\nat 3 ambient 35\n")
    with VirtualBoard("pico-4s", flash=tmp_path / "flash", speed=5) as vb:
        runner = vb.run_script(path, wait=True, timeout_s=60)
        assert runner.done.is_set() and runner.applied == 3 and not runner.ended
        assert runner.start_ms is not None and runner.done_s is not None
        # Applied at the first plant tick at or after its time (10 ms ticks).
        assert 3000 <= runner.done_s * 1000 - runner.start_ms < 3000 + 200
        assert vb.injections() == [("open_wire", {"cell": 1})]
        # No firmware closes the output here: the current is asked for, none flows.
        assert vb.plant.requested_current_a == -2.0 and vb.truth().ambient_c == 35.0


def test_a_bad_step_is_refused_before_anything_runs(tmp_path: Path) -> None:
    path = tmp_path / "steps.txt"
    path.write_text("at 0 current -1\nat 1 inject open_wire cell=9\n")
    vb = VirtualBoard("pico-4s", flash=tmp_path / "flash")
    with pytest.raises(ScriptError, match=r":2: cell must be an integer 0\.\.3"):
        vb.run_script(path)
    assert vb.tick_hooks == [] and not vb.running


def test_power_cycle_keeps_the_port_and_boots_the_flash_again(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text(
        "import machine\nprint('cause', machine.reset_cause())\n")
    with VirtualBoard("esp32-4s", flash=flash) as vb:
        port = vb.port
        vb.power_cycle()
        vb.wait_reset("power_on", timeout_s=20)
        vb.wait_booted(timeout_s=20)
        assert vb.port == port and vb.resets == ["power_on"]


def test_pause_stops_the_board_and_its_plant_until_resume(tmp_path: Path) -> None:
    with VirtualBoard("pico-4s", flash=tmp_path / "flash", speed=5) as vb:
        vb.wait_time(500, timeout_s=20)
        vb.pause()
        time.sleep(0.1)  # a tick already on its way
        stopped_at, plant_s = vb.time_ms, vb.truth().time_s
        time.sleep(0.5)  # 2.5 s of board time, were it running
        assert (vb.time_ms, vb.truth().time_s) == (stopped_at, plant_s)
        vb.resume()
        vb.wait_time(stopped_at + 500, timeout_s=20)
        assert vb.truth().time_s > plant_s


def test_cli_virtual_plays_a_script_with_the_plant_options(tmp_path: Path) -> None:
    install_firmware(tmp_path / "flash", "pico-4s")
    path = tmp_path / "steps.txt"
    path.write_text("at 0 current -1\nat 2 inject stuck_sensor cell=0\nat 4 end\n")
    proc = subprocess.run(
        [sys.executable, "-m", "cellguard.cli", "sim", "--virtual", "--board", "pico-4s",
         "--flash", str(tmp_path / "flash"), "--speed", "5", "--soc", "80", "--ambient", "30",
         "--script", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("port: /dev/")
    steps = [line.split()[2:] for line in lines[2:]]
    assert steps == [["line", "1:", "at", "0", "current", "-1"],
                     ["line", "2:", "at", "2", "inject", "stuck_sensor", "cell=0"],
                     ["line", "3:", "at", "4", "end"],
                     ["script", "done"]]
    assert float(lines[-1].split()[0]) == pytest.approx(float(lines[-2].split()[0]))


def test_cli_virtual_starts_the_plant_where_the_options_say(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # --soc, --ambient and --seed reach the virtual board's plant (they used to be
    # ignored): the board the command makes has the plant the options describe.
    import cellguard.sim.virtual as virtual

    made: dict[str, float] = {}

    class Probe(VirtualBoard):
        def start(self, timeout_s: float = 0.0) -> str:
            made.update(soc=self.truth().soc_pct, ambient=self.plant.ambient_c,
                        current=self.plant.requested_current_a)
            raise SystemExit(7)  # before any process starts

    monkeypatch.setattr(virtual, "VirtualBoard", Probe)
    with pytest.raises(SystemExit):
        main(["sim", "--virtual", "--soc", "80", "--ambient", "30", "--current", "-1.5"])
    assert made == {"soc": pytest.approx(80.0, abs=0.5), "ambient": 30.0, "current": -1.5}


@pytest.mark.parametrize(("args", "says"), [
    (["--link", "x"], "--link do not go with --virtual"),
    (["--plant", "pybamm"], "--plant do not go with --virtual"),
    (["--repeat", "2"], "--repeat and --exit-at-end go with --script"),
    (["--current", "1e9"], "--current"),
])
def test_cli_virtual_refuses_what_it_cannot_do(args: list[str], says: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--virtual", *args]) != 0
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
