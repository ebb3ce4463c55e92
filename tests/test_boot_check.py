"""Verified at boot, on the virtual Pico (docs/firmware.md, "Verified at boot").

``main.py`` checks each file of the slot it is about to run against the slot's
``manifest.json`` and refuses a build older than the boot record's minimum; the firmware of
a refused build runs only to say why, its output held open. Here the whole path runs as on a
board: a real build deployed, its flash folder changed behind the firmware's back, the board
powered on again, then ``cellguard info``, ``cellguard faults`` and ``cellguard deploy``.
(``tests/test_slots.py`` holds the same checks under real MicroPython, case by case.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cellguard import cli
from cellguard.deploy import build as b
from cellguard.deploy.deploy import plan
from cellguard.deploy.slots import is_downgrade, switch_record
from cellguard.hil.client import HilClient
from cellguard.link.client import FAULT_BITS, BoardClient, Info, boot_status
from cellguard.paths import firmware_dir
from cellguard.sim.virtual import VirtualBoard

BOARD = "pico-4s"


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, b.Build]:
    """The firmware as it is (0.1.0), and the same at 0.2.0."""
    tmp = tmp_path_factory.mktemp("builds")
    fw = tmp / "firmware"
    shutil.copytree(firmware_dir(), fw, ignore=shutil.ignore_patterns("__pycache__"))
    init = fw / "cellguard_fw" / "__init__.py"
    text = init.read_text()
    assert 'FIRMWARE_VERSION = "0.1.0"' in text
    init.write_text(text.replace('"0.1.0"', '"0.2.0"'))
    return {"0.1.0": b.build(BOARD, tmp / "old"),
            "0.2.0": b.build(BOARD, tmp / "new", firmware=fw)}


def install(flash: Path, build: b.Build, slot: str, record: dict[str, str]) -> None:
    """What a deploy of ``build`` into ``slot`` leaves on the flash, and the record."""
    for path, data in build.files.items():
        dest = flash / (path if path == "main.py" else f"{slot}/{path}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    (flash / "slots.json").write_text(json.dumps(record))


def cli_out(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """A command's exit status and what it printed (standard error after standard output;
    with --json: the JSON alone)."""
    capsys.readouterr()
    code = cli.main(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out if "--json" in args and code == 0 else out.out + out.err


def faults(capsys: pytest.CaptureFixture[str], port: str, clear: bool = False) -> Any:
    code, out = cli_out(capsys, "faults", "--port", port, "--json", *(["--clear"] * clear))
    assert code == 0, out
    return json.loads(out)


def held_open(vb: VirtualBoard, seconds: float = 3.0) -> None:
    """Telemetry says fault for ``seconds`` of board time and the output pin stays low."""
    with HilClient(vb.port, min_speed=1.0) as client:
        client.hello(timeout_s=10)
        start = vb.time_ms
        while vb.time_ms - start < seconds * 1000:
            t = client.wait_telemetry("a frame", lambda t: True, 3.0)
            assert t.state == "fault" and t.faults & FAULT_BITS["firmware"], t
            assert not vb.truth().output_closed
            assert vb.pins()[vb.board["pins"]["output"]]["level"] == 0


def test_the_host_compares_versions_as_the_board_does_and_keeps_the_minimum(
        builds: dict[str, b.Build]) -> None:
    assert is_downgrade("0.9.3", {"min": "0.10.0"})  # numbers, not text
    assert not is_downgrade("0.10.0", {"min": "0.9.3"})
    assert not is_downgrade("0.1.0", {"active": "a"})  # no minimum recorded
    assert not is_downgrade("0.2.0", {"min": "0.2.0"})
    assert is_downgrade("0.1.0-dev", {"min": "0.1.0"})  # not dotted integers: refused there too
    assert switch_record({"active": "a", "min": "0.2.0"}) == {"active": "a", "trial": "b",
                                                              "min": "0.2.0"}
    assert switch_record({"active": "a", "min": "0.2.0"}, "0.1.0")["min"] == "0.1.0"
    # The board runs this very build, but below its minimum: the board refuses it, so a
    # deploy (that lowers the minimum) is no "nothing to do".
    old = builds["0.1.0"]
    files = {("/" if p == "main.py" else "/a/") + p: b.sha256(d) for p, d in old.files.items()}
    assert plan(old, {"active": "a", "min": "0.1.0"}, files).running
    refused = plan(old, {"active": "a", "min": "0.2.0"}, files)
    assert not refused.running and refused.slot == "b"


@pytest.mark.parametrize("alter", ["changed", "removed", "unlisted module"])
def test_a_file_altered_after_the_deploy_holds_the_output_open_and_info_says_why(
        builds: dict[str, b.Build], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        alter: str) -> None:
    good = builds["0.1.0"]
    install(tmp_path, good, "a", {"active": "a", "min": "0.1.0"})
    with VirtualBoard(BOARD, flash=tmp_path) as vb:
        with BoardClient(vb.port) as client:  # as deployed: it runs, confirmed
            assert client.hello(timeout_s=10).boot == "confirmed"
        vb.stop()
        if alter == "changed":  # someone edited the board file on the board
            board = json.loads((tmp_path / "a" / "board.json").read_text())
            board["capacity_mah"] = 3200
            (tmp_path / "a" / "board.json").write_text(json.dumps(board))
        elif alter == "removed":  # a module imported only for a write
            (tmp_path / "a" / "cellguard_fw" / "admin.mpy").unlink()
        else:
            (tmp_path / "a" / "cellguard_fw" / "extra.py").write_text("x = 1\n")
        vb.start()
        code, out = cli_out(capsys, "info", "--port", vb.port)
        assert code == 0, out
        boot_line = next(line for line in out.splitlines() if line.startswith("boot "))
        assert boot_line.split(None, 1)[1] == boot_status(5)
        assert "files altered" in boot_line and "output held open" in boot_line
        assert f"{'manifest_sha256':24} {good.sha256}" in out  # the build it claims to be
        held_open(vb)
        if alter != "changed":
            return
        # CLEAR_FAULTS cannot clear it: the condition holds while this build runs.
        state = faults(capsys, vb.port, clear=True)
        assert "firmware" in state["active"] and "firmware" in state["latched"]
        held_open(vb, 1.0)
        # A good deploy removes the cause (into the other slot, confirmed) ...
        code, out = cli_out(capsys, "deploy", "--bundle", str(good.out), "--port", vb.port,
                            "--allow-unsigned", "--json")
        assert code == 0, out
        result = json.loads(out)
        assert (result["result"], result["slot"], result["boot"]) == (
            "deployed", "b", "confirmed")
        # ... and the latch it left is cleared as any latched fault is.
        state = faults(capsys, vb.port)
        assert "firmware" not in state["active"] and "firmware" in state["latched"]
        assert not vb.truth().output_closed
        state = faults(capsys, vb.port, clear=True)
        assert "firmware" not in state["latched"]
        with HilClient(vb.port, min_speed=1.0) as client:
            client.hello(timeout_s=10)
            client.wait_telemetry("the output closed", lambda t: t.state == "active", 5.0)
        assert vb.truth().output_closed


def test_a_rollback_is_refused_by_the_board_and_by_deploy_unless_asked_for(
        builds: dict[str, b.Build], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = builds["0.1.0"], builds["0.2.0"]
    # 0.2.0 confirmed in slot a; then the record switched by hand to 0.1.0 in slot b.
    install(tmp_path, new, "a", {"active": "a", "min": "0.2.0"})
    install(tmp_path, old, "b", {"active": "b", "min": "0.2.0"})
    with VirtualBoard(BOARD, flash=tmp_path) as vb:
        with BoardClient(vb.port) as client:
            info: Info = client.hello(timeout_s=10)
        assert info.boot == boot_status(6) and "rollback refused" in info.boot
        assert (info.firmware_version, info.manifest_sha256) == ("0.1.0", old.sha256)
        held_open(vb, 1.0)
        # deploy refuses the old build before writing anything, and says how to go on.
        before = {p: p.read_bytes() for p in tmp_path.rglob("*.mpy")}
        code, out = cli_out(capsys, "deploy", "--bundle", str(old.out), "--port", vb.port,
                            "--allow-unsigned")
        assert code == 1
        assert "older than the board's minimum version 0.2.0" in out
        assert "--allow-downgrade" in out and "Nothing was written" in out
        assert {p: p.read_bytes() for p in tmp_path.rglob("*.mpy")} == before
        assert json.loads((tmp_path / "slots.json").read_text()) == {"active": "b",
                                                                      "min": "0.2.0"}
        # Asked for, the downgrade goes through a trial with the minimum lowered.
        code, out = cli_out(capsys, "deploy", "--bundle", str(old.out), "--port", vb.port,
                            "--allow-unsigned", "--allow-downgrade", "--json")
        assert code == 0, out
        result = json.loads(out)
        assert (result["result"], result["slot"], result["boot"]) == (
            "deployed", "a", "confirmed")
        assert "minimum version lowered from 0.2.0 to 0.1.0" in result["message"]
        assert json.loads((tmp_path / "slots.json").read_text()) == {"active": "a",
                                                                      "min": "0.1.0"}
        state = faults(capsys, vb.port, clear=True)  # the refused boot's latch
        assert not state["active"] and not state["latched"]
        with HilClient(vb.port, min_speed=1.0) as client:
            client.hello(timeout_s=10)
            client.wait_telemetry("the output closed", lambda t: t.state == "active", 5.0)
        # A newer build is no downgrade: deploy takes it as ever, and raises the minimum.
        code, out = cli_out(capsys, "deploy", "--bundle", str(new.out), "--port", vb.port,
                            "--allow-unsigned", "--json")
        assert code == 0, out
        assert json.loads((tmp_path / "slots.json").read_text()) == {"active": "b",
                                                                      "min": "0.2.0"}
