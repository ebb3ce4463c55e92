"""Scripts of timed steps for the simulated board: parsing, line-numbered errors, the
runner as a tick hook (lock-step and free-running), and `cellguard sim --script`."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from cellguard.cli import main
from cellguard.sim import ScriptError, ScriptRunner, SimulatedBoard, load_script, parse_script
from cellguard.sim.script import PROFILE, STEPS, Step

STEP_FILE = """\
# a step file
at 0 current -3.0            # discharge
at 500ms ambient 40
at 2s inject open_wire cell=2
at +1.5 clear open_wire
at 0.1min cell_temp 1 55
at 7 cell_temp 1 model
at 7 cell_heat 3 2.5
at 8 inject current_offset amps=0.5
at 9 power_cycle
at 9.05 hang 3
at 0.004h end
"""


def test_a_step_file_parses_to_timed_steps() -> None:
    script = parse_script(STEP_FILE, "steps.txt")
    assert script.kind == STEPS
    got = [(s.t_ms, s.action, s.args, s.line) for s in script.steps]
    assert got == [
        (0, "current", (-3.0,), 2),
        (500, "ambient", (40.0,), 3),
        (2000, "inject", ("open_wire", {"cell": 2}), 4),
        (3500, "clear", ("open_wire",), 5),
        (6000, "cell_temp", (1, 55.0), 6),
        (7000, "cell_temp", (1, None), 7),
        (7000, "cell_heat", (3, 2.5), 8),
        (8000, "inject", ("current_offset", {"amps": 0.5}), 9),
        (9000, "power_cycle", (), 10),
        (9050, "hang", (3.0,), 11),
        (14400, "end", (), 12),
    ]
    assert script.steps[0].text == "at 0 current -3.0"  # the comment is not part of it
    assert script.length_s == 14.4


def test_a_csv_profile_parses_to_current_steps() -> None:
    script = parse_script("t_s,current_a\n0,3\n\n# rest\n10.5 , -1.5\n20,0\n", "p.csv")
    assert script.kind == PROFILE
    assert [(s.t_ms, s.action, s.args, s.line) for s in script.steps] == [
        (0, "current", (3.0,), 2), (10500, "current", (-1.5,), 5), (20000, "current", (0.0,), 6)]


@pytest.mark.parametrize(("text", "line", "words"), [
    ("at 0 current 1\nat 5 curent 2\n", 2, "unknown action 'curent'; actions: current"),
    ("at 0 current 1\n\nat 5 current two\n", 3, "amps must be a number, not 'two'"),
    ("at 0 current nan\n", 1, "amps must be a finite number"),
    ("at 10 current 1\nat 5 current 2\n", 2, "time goes backwards: 5 s after 10 s"),
    ("at 5x current 1\n", 1, "not a time: '5x'"),
    ("at -5 current 1\n", 1, "not a time: '-5'"),
    ("current 1\n", 1, "a step reads `at TIME ACTION ...`"),
    ("at 1 ambient\n", 1, "ambient takes 1 value: `at TIME ambient CELSIUS`"),
    ("at 1 power_cycle now\n", 1, "power_cycle takes no values"),
    ("at 1 cell_temp one 40\n", 1, "cell must be a whole number from 0, not 'one'"),
    ("at 1 inject open_wire cell\n", 1, "inject parameters read NAME=VALUE, not 'cell'"),
    ("at 1 inject open_wire cell=1 cell=2\n", 1, "inject: cell given twice"),
    ("at 1 inject\n", 1, "inject needs a fault"),
    ("at 1 hang 0\n", 1, "hang needs seconds above 0"),
    ("at 1 clear open_wire stuck_sensor\n", 1, "clear takes at most one fault"),
    ("t_s,current_a\n0,1\n5\n", 3, "a profile row is `t_s,current_a`, not 1 field"),
    ("t_s,current_a\n0,1\n5,1,2\n", 3, "not 3 fields"),
    ("t_s,current_a\n0,1\n5,x\n", 3, "current_a must be a number, not 'x'"),
    ("t_s,current_a\n5,1\n2,1\n", 3, "time goes backwards"),
    ("t_s,amps\n0,1\n", 1, "a current profile starts with the header `t_s,current_a`"),
])
def test_bad_input_is_an_error_naming_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ScriptError) as exc:
        parse_script(text, "bad.txt")
    assert str(exc.value).startswith(f"bad.txt:{line}: "), exc.value
    assert words in str(exc.value)


def test_a_csv_file_needs_the_header_and_an_empty_script_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match=r"p\.csv:2: a current profile starts with the header"):
        parse_script("# profile\n0,1\n", "p.csv")
    with pytest.raises(ScriptError, match="no steps"):
        parse_script("# nothing\n\n", "empty.txt")
    with pytest.raises(ScriptError, match="cannot read script"):
        load_script(tmp_path / "missing.txt")


def test_steps_are_checked_against_the_board_before_anything_runs() -> None:
    sim = SimulatedBoard(runtime="cpython", lockstep=True)  # 4 cells, 2 sensors: not started
    for text, words in (
        ("at 0 current 1\nat 1 cell_temp 4 50\n", "x:2: cell must be an integer 0..3, not 4"),
        ("at 1 inject melted_busbar\n", "x:1: unknown fault 'melted_busbar'"),
        ("at 1 inject open_wire cell=1.5\n", "x:1: cell must be an integer 0..3, not 1.5"),
        ("at 1 inject disconnected_temp sensor=2\n", "sensor must be an integer 0..1"),
        ("at 1 inject precharge_short\n", "no precharge circuit"),
        ("at 1 clear open_wires\n", "x:1: unknown fault 'open_wires'"),
    ):
        with pytest.raises(ScriptError) as exc:
            sim.run_script(parse_script(text, "x"))
        assert words in str(exc.value)
    assert sim.tick_hooks == [] and sim.injections() == []


def test_runner_applies_each_step_at_the_first_period_at_or_after_its_time() -> None:
    applied: list[tuple[int, str]] = []
    with SimulatedBoard(runtime="cpython", lockstep=True) as sim:
        firmware = sim.runtime.firmware if sim.runtime else None
        states: dict[str, object] = {}

        def record(board: SimulatedBoard, step: Step, pass_index: int) -> None:
            action = step.action
            applied.append((board.time_ms, action))
            if action == "inject" and not states.get("open_wire"):
                states["open_wire"] = set(board.sensors.open_wires)
            if action == "cell_temp" and "held" not in states:
                states["held"] = list(board.plant.cell_temperature_override_c)

        runner = sim.run_script(parse_script(STEP_FILE, "steps.txt"), wait=True, on_step=record)
        assert runner.done.is_set() and runner.ended and runner.applied == 11
        period = sim.period_ms
        want = [(math.ceil(s.t_ms / period) * period, s.action) for s in runner.script.steps]
        assert applied == want
        assert runner.done_s == want[-1][0] / 1000.0
        assert sim.time_ms == want[-1][0] + period  # wait=True stops at the end
        assert states == {"open_wire": {2}, "held": [None, 55.0, None, None]}
        # And the state the steps left behind:
        truth = sim.truth()
        assert sim.plant.requested_current_a == -3.0 and truth.ambient_c == 40.0
        assert sim.sensors.open_wires == set() and sim.plant.cell_temperature_override_c == [
            None] * 4
        assert sim.plant.cell_extra_heat_w == [0.0, 0.0, 0.0, 2.5]
        assert sim.injections() == [("current_offset", {"amps": 0.5})]
        assert sim.runtime is not None and sim.runtime.firmware is not firmware  # rebooted
        assert sim.watchdog_resets == 1  # the hang outlasted the watchdog (2 s)


def test_a_repeated_profile_is_piecewise_constant_pass_after_pass() -> None:
    rows = [(0.0, 2.0), (1.25, -1.0), (3.0, 0.5), (4.0, 0.0)]
    text = "t_s,current_a\n" + "".join(f"{t},{a}\n" for t, a in rows)
    with SimulatedBoard(runtime="cpython", lockstep=True) as sim:
        seen: list[tuple[int, float]] = []
        sim.set_current(9.0)
        runner = sim.run_script(parse_script(text, "p.csv"), repeat=3)
        sim.tick_hooks.append(lambda b: seen.append((b.time_ms, b.plant.requested_current_a)))
        assert runner.duration_s == 12.0
        assert runner.wait(sim)
        sim.advance(1.0)

    def expected(t_ms: int) -> float:
        if t_ms >= 12000:  # after the last pass the last row holds
            return rows[-1][1]
        t = (t_ms % 4000) / 1000.0
        return [a for s, a in rows if s <= t][-1]

    assert len(seen) == 131
    assert [a for _, a in seen] == [expected(t) for t, _ in seen]
    assert runner.pass_index == 3 and not runner.ended


def test_repeat_needs_a_pass_longer_than_zero_and_forever_has_no_end() -> None:
    once = parse_script("at 0 current 1\n", "x")
    with pytest.raises(ScriptError, match="repeat needs a script whose last step comes after"):
        ScriptRunner(once, repeat=2)
    with pytest.raises(ScriptError, match="repeat must be a whole number"):
        ScriptRunner(once, repeat=-1)
    sim = SimulatedBoard(runtime="cpython", lockstep=True)
    forever = sim.run_script(parse_script("at 0 current 1\nat 5 current 0\n", "x"), repeat=0)
    assert forever.duration_s == math.inf
    with pytest.raises(ScriptError, match="never done"):
        forever.wait(sim)


def test_run_script_from_a_file_on_a_free_running_board(tmp_path: Path) -> None:
    path = tmp_path / "run.txt"
    path.write_text("at 0 current 2\nat 30 current -2\nat 60 end\n")
    with SimulatedBoard(runtime="cpython", speed=math.inf) as sim:
        runner = sim.run_script(path, wait=True, timeout_s=120.0)
        assert runner.ended and runner.done_s is not None
        # `end` paused the board right after the period it came in.
        assert sim.time_ms == round(runner.done_s * 1000) + sim.period_ms
        truth = sim.truth()
        assert truth.current_a == -2.0 and truth.charge_in_ah > 0 and truth.charge_out_ah > 0


# -- the command line -------------------------------------------------------------------------
def test_cli_plays_a_script_and_exits_at_its_end(tmp_path: Path) -> None:
    path = tmp_path / "steps.txt"
    path.write_text("at 0 current -1\nat 2 inject open_wire cell=0\nat 5 end\n")
    proc = subprocess.run(
        [sys.executable, "-m", "cellguard.cli", "sim", "--runtime", "cpython", "--speed", "0",
         "--script", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("port: /dev/")
    assert [line.split() for line in lines[2:]] == [
        ["0.0", "s", "line", "1:", "at", "0", "current", "-1"],
        ["2.0", "s", "line", "2:", "at", "2", "inject", "open_wire", "cell=0"],
        ["5.0", "s", "line", "3:", "at", "5", "end"],
        ["5.0", "s", "script", "done"],
    ]


@pytest.mark.parametrize(("script", "args", "words"), [
    ("at 0 current 1\nat 3 cell_temp 9 40\n", [], ":2: cell must be an integer 0..3, not 9"),
    ("t_s,current_a\n0,1\n4,oops\n", [], ":3: current_a must be a number, not 'oops'"),
    ("at 0 current 1\n", ["--repeat", "2"], "repeat needs a script whose last step"),
])
def test_cli_script_errors_are_one_line_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], script: str, args: list[str],
        words: str) -> None:
    path = tmp_path / "s.csv" if script.startswith("t_s") else tmp_path / "s.txt"
    path.write_text(script)
    assert main(["sim", "--runtime", "cpython", "--script", str(path), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"cellguard: error: {path}") and words in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_cli_repeat_without_a_script_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--repeat", "3"]) == 1
    assert "--repeat and --exit-at-end go with --script" in capsys.readouterr().err
