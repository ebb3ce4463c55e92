"""``cellguard deploy`` against the virtual dev board (docs/firmware.md, "Deploy").

Every deploy here talks to real MicroPython (the virtual Pico or ESP32) over a real pty,
through mpremote's transport. A board "with the old firmware" is set up by writing, in
its flash folder, what a confirmed deploy leaves there (slot ``a``, ``{"active": "a"}``):
the deploys under test then run against a firmware that boots and streams.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from board_harness import set_cell_socs

from cellguard import cli
from cellguard.deploy import build as b
from cellguard.deploy.deploy import DeployError, plan
from cellguard.deploy.deploy import deploy as run_deploy
from cellguard.hil.client import HilClient
from cellguard.link.client import BoardClient, Info
from cellguard.paths import boards_dir, firmware_dir
from cellguard.sim.virtual import VirtualBoard

OLD_OR_NEW = ("confirmed", "on trial", "fell back at this boot")


def _firmware_copy(tmp: Path, edits: dict[str, str]) -> Path:
    """A copy of the firmware with each named module's source prefixed by ``edits``."""
    fw = tmp / "firmware"
    shutil.copytree(firmware_dir(), fw, ignore=shutil.ignore_patterns("__pycache__"))
    for module, text in edits.items():
        path = fw / "cellguard_fw" / module
        path.write_text(text + path.read_text())
    return fw


def _bump(fw: Path, version: str) -> None:
    init = fw / "cellguard_fw" / "__init__.py"
    text = init.read_text()
    assert 'FIRMWARE_VERSION = "0.1.0"' in text
    init.write_text(text.replace('FIRMWARE_VERSION = "0.1.0"', f'FIRMWARE_VERSION = "{version}"'))


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, b.Build]:
    """The firmware as it is; one module changed; several modules and the version."""
    tmp = tmp_path_factory.mktemp("builds")
    one = _firmware_copy(tmp / "one", {"soc.py": "# changed\n"})
    many = _firmware_copy(tmp / "many", {m: "# changed\n\n" for m in
                                         ("app.py", "codec.py", "estimator.py", "config.py")})
    _bump(many, "0.1.1")
    return {
        "old": b.build("pico-4s", tmp / "old"),
        "one": b.build("pico-4s", tmp / "one-build", firmware=one),
        "many": b.build("pico-4s", tmp / "many-build", firmware=many),
        "esp32": b.build("esp32-4s", tmp / "esp32"),
    }


def install(flash: Path, build: b.Build, slot: str = "a") -> None:
    """What a confirmed deploy of ``build`` into ``slot`` leaves on a board's flash."""
    for path, data in build.files.items():
        dest = flash / (path if path == "main.py" else f"{slot}/{path}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    (flash / "slots.json").write_text(json.dumps({"active": slot}))


def snapshot(flash: Path) -> dict[str, bytes]:
    return {p.relative_to(flash).as_posix(): p.read_bytes()
            for p in sorted(flash.rglob("*")) if p.is_file()}


def hello(port: str) -> Info:
    with BoardClient(port) as client:
        return client.hello(timeout_s=10)


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = cli.main(["deploy", *args, "--json"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, json.loads(out.out)


# -- the plan, without a board ------------------------------------------------------------
def test_the_plan_writes_the_other_slot_manifest_last_and_copies_what_the_board_has(
        builds: dict[str, b.Build]) -> None:
    old, one = builds["old"], builds["one"]
    files = {f"/a/{p}": b.sha256(d) for p, d in old.files.items() if p != "main.py"}
    files.update({"/main.py": b.sha256(old.files["main.py"]), "/a": "", "/a/cellguard_fw": "",
                  "/b": "", "/b/stray.mpy": "00", "/b/manifest.json": "11",
                  "/a/maintenance": "22"})
    p = plan(one, {"active": "a"}, files)
    assert p.slot == "b" and not p.running
    assert [c.path for c in p.changes if c.action == "send"] == [
        "/b/cellguard_fw/soc.mpy", "/b/manifest.json"]  # the changed module; manifest last
    copies = [c for c in p.changes if c.action == "copy"]
    assert len(copies) == len(one.files) - 3  # the rest: on the board, from slot a
    assert all(c.source == "/a" + c.path[2:] for c in copies)
    assert [c.path for c in p.changes if c.action == "remove"] == ["/b/stray.mpy"]
    assert p.changes[-1].path == "/b/manifest.json"
    assert p.mkdirs == ["/b/cellguard_fw"] and p.stale_flags == ["/a/maintenance"]
    # The same build, running confirmed: nothing to do; on trial: a deploy all the same.
    same = {f"/a/{k}": v for k, v in ((p, b.sha256(d)) for p, d in one.files.items())}
    same["/main.py"] = same.pop("/a/main.py")
    assert plan(one, {"active": "a"}, same).running
    assert not plan(one, {"active": "b", "trial": "a"}, same).running
    # A board without hashlib ("?"): every file is sent.
    unknown = {k: "?" for k in files}
    assert {c.action for c in plan(one, {"active": "a"}, unknown).changes} <= {"send", "remove"}


# -- deploys -----------------------------------------------------------------------------
@pytest.mark.parametrize("board", ["pico-4s", "esp32-4s"])
def test_a_deploy_onto_an_empty_board_boots_the_firmware(
        board: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with VirtualBoard(board, flash=tmp_path) as vb:
        code, out = cli_json(capsys, "--board", board, "--port", vb.port,
                             "--manufactured", "2026-11-02")
        assert code == 0, out
        assert (out["result"], out["slot"], out["boot"], out["reached_by"]) == (
            "deployed", "a", "confirmed", "ctrl_c")
        assert out["manufactured"] == 1_793_577_600  # 2026-11-02 UTC, in the record
        info = hello(vb.port)
        assert info.board == board and info.boot == "confirmed"
        assert info.manifest_sha256 == out["manifest_sha256"]
        manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
        assert manifest["sha256"] == out["manifest_sha256"]
        assert out["files_sent"] == len(manifest["files"]) + 1  # and the manifest
        assert out["files_copied_on_board"] == out["files_removed"] == 0
        assert out["bytes_sent"] == sum(f["size"] for f in manifest["files"]) + len(
            (tmp_path / "a" / "manifest.json").read_bytes())
        for f in manifest["files"]:  # every byte where the build put it
            where = tmp_path / (f["path"] if f["path"] == "main.py" else f"a/{f['path']}")
            assert b.sha256(where.read_bytes()) == f["sha256"], f["path"]
        assert json.loads((tmp_path / "slots.json").read_text()) == {  # confirmed: the
            "active": "a", "min": manifest["firmware_version"]}  # oldest it may boot now
        # It protects: an overcharged cell, read through hal_adc_mux and the board's
        # pins, trips and the output pin opens the plant's switch.
        with HilClient(vb.port, min_speed=1.0) as client:
            client.hello(timeout_s=10)
            client.time_sync()
            client.wait_telemetry("the output closed", lambda t: t.state == "active", 5.0)
            assert vb.truth().output_closed
            mark = client.mark()
            set_cell_socs(vb, [0.5, 1.08, 0.5, 0.5])
            client.wait_event("trip", "cell_overvoltage", 3.0, since=mark)
            assert not vb.truth().output_closed
            assert vb.pins()[vb.board["pins"]["output"]]["level"] == 0
        assert "watchdog" not in vb.resets
        # A later deploy cannot re-date the pack: the first date given stands.
        code, again = cli_json(capsys, "--board", board, "--port", vb.port,
                               "--manufactured", "2027-01-01")
        assert code == 0 and again["result"] == "unchanged", again
        assert again["manufactured"] == 1_793_577_600
        assert "keeps the date of manufacture 2026-11-02" in again["message"]


def test_a_redeploy_with_one_module_changed_sends_only_that_file(
        builds: dict[str, b.Build], tmp_path: Path) -> None:
    install(tmp_path, builds["old"])
    with VirtualBoard("pico-4s", flash=tmp_path) as vb:
        out = run_deploy("pico-4s", vb.port, the_build=builds["one"]).to_dict()
        assert (out["result"], out["slot"], out["boot"], out["reached_by"]) == (
            "deployed", "b", "confirmed", "enter_repl")
        sent = [c["path"] for c in out["changes"] if c["action"] == "send"]
        assert sent == ["/b/cellguard_fw/soc.mpy", "/b/manifest.json"]
        assert out["files_sent"] == 2 and out["files_copied_on_board"] == len(
            builds["one"].files) - 3
        assert out["bytes_sent"] == len(builds["one"].files["cellguard_fw/soc.mpy"]) + len(
            builds["one"].files["manifest.json"])
        assert out["previous_manifest_sha256"] == builds["old"].sha256
        assert hello(vb.port).manifest_sha256 == builds["one"].sha256
        assert json.loads((tmp_path / "slots.json").read_text()) == {"active": "b",
                                                                      "min": "0.1.0"}
        # Again: the board runs it already; nothing moves, the board runs on.
        again = run_deploy("pico-4s", vb.port, the_build=builds["one"]).to_dict()
        assert (again["result"], again["files_sent"], again["files_copied_on_board"]) == (
            "unchanged", 0, 0)


def test_a_dry_run_lists_the_changes_and_writes_nothing(
        builds: dict[str, b.Build], tmp_path: Path) -> None:
    install(tmp_path, builds["old"])
    with VirtualBoard("pico-4s", flash=tmp_path) as vb:
        hello(vb.port)  # the firmware is up and has written its boot event
        before = snapshot(tmp_path)
        out = run_deploy("pico-4s", vb.port, the_build=builds["many"], dry_run=True).to_dict()
        assert out["result"] == "dry_run" and out["slot"] == "b"
        assert {c["path"] for c in out["changes"] if c["action"] == "send"} == {
            f"/b/cellguard_fw/{m}.mpy" for m in ("__init__", "app", "codec", "estimator",
                                                  "config")} | {"/b/manifest.json"}
        info = hello(vb.port)  # reset back into the firmware it ran
        assert info.manifest_sha256 == builds["old"].sha256 and info.boot == "confirmed"
        after = snapshot(tmp_path)
    # The firmware's own data (event log, latches, lifetime record, change log) is its
    # business: it booted twice, each boot is saved in the lifetime record, and the
    # dry run's ENTER_REPL is a write the change log records.
    data = {"events.bin", "latches.bin", "health.bin", "life.0", "life.1", "life.2", "life.3",
            "audit.bin"}
    assert {k: v for k, v in after.items() if k not in data} == {
        k: v for k, v in before.items() if k not in data}
    assert after["events.bin"].startswith(before["events.bin"])  # appended to, at most
    assert after["audit.bin"].startswith(before.get("audit.bin", b""))


def test_a_deploy_reaches_a_board_whose_main_py_crashes_at_import(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("import no_such_module\n")
    with VirtualBoard("pico-4s", flash=tmp_path) as vb:
        with pytest.raises(Exception, match="no cellguard board answered"), \
                BoardClient(vb.port) as client:
            client.hello(timeout_s=1.0)  # it sits at the REPL
        result = run_deploy("pico-4s", vb.port)
        assert (result.result, result.reached_by) == ("deployed", "ctrl_c")
        info = hello(vb.port)
        assert (info.manifest_sha256, info.boot) == (result.manifest_sha256, "confirmed")


def test_a_deploy_while_the_firmware_streams_telemetry(builds: dict[str, b.Build],
                                                      tmp_path: Path) -> None:
    board = json.loads((boards_dir() / "pico-4s.json").read_text())
    board["telemetry_period_ms"] = board["control_period_ms"]  # 10 frames a second
    board_file = tmp_path / "pico-4s.json"
    board_file.write_text(json.dumps(board))
    fast = b.build(str(board_file), tmp_path / "fast", firmware=None)
    flash = tmp_path / "flash"
    install(flash, fast)
    with VirtualBoard(str(board_file), flash=flash) as vb:
        with BoardClient(vb.port) as client:  # it streams, unasked
            deadline, frames = time.monotonic() + 10, 0
            while frames < 5 and time.monotonic() < deadline:
                frames += sum(1 for m in client.receive() if m.name == "telemetry")
        assert frames >= 5
        result = run_deploy("pico-4s", vb.port, the_build=builds["many"])
        assert (result.result, result.reached_by, result.boot) == (
            "deployed", "enter_repl", "confirmed")
        assert hello(vb.port).firmware_version == "0.1.1"


# -- deploys cut short --------------------------------------------------------------------
class Cut(Exception):
    """The deploy stops here (the host died)."""


def _points(seed: int) -> list[tuple[str, int, float]]:
    """Where to cut: (phase, which occurrence, seconds to wait first), chosen by seed."""
    rnd = random.Random(seed)
    return [
        ("mkdir", 0, 0.0),  # the first change: the slot's folders
        ("send", rnd.randrange(1, 12), 0.0),  # a chunk of a module
        ("copy", rnd.randrange(0, 15), 0.0),  # a file copied on the board
        ("switch", 0, 0.0),
        ("switched", 0, 0.0),
        ("hello", 0, rnd.uniform(0.0, 0.6)),  # the new build booting on trial
    ]


@pytest.mark.parametrize("point", _points(14), ids=lambda p: f"{p[0]}-{p[1]}")
def test_a_deploy_cut_short_leaves_the_old_or_the_new_firmware(
        point: tuple[str, int, float], builds: dict[str, b.Build], tmp_path: Path) -> None:
    phase, nth, wait = point
    old, new = builds["old"], builds["many"]
    install(tmp_path, old)
    seen: list[str] = []

    def hook(at: str, detail: str) -> None:
        if at == phase:
            seen.append(detail)
            if len(seen) > nth:
                time.sleep(wait)
                raise Cut(detail)

    with VirtualBoard("pico-4s", flash=tmp_path) as vb:
        with pytest.raises(Cut):
            run_deploy("pico-4s", vb.port, the_build=new, hook=hook)
        port = vb.restart()  # and the power goes
        info = hello(port)
    assert info.manifest_sha256 in (old.sha256, new.sha256), "neither build runs"
    assert info.boot in OLD_OR_NEW
    new_runs = info.manifest_sha256 == new.sha256
    # Before the switch the old one runs, confirmed; after it the new one, or a fallback.
    if phase in ("mkdir", "send", "copy", "switch"):
        assert (new_runs, info.boot) == (False, "confirmed")
    elif phase == "switched":
        assert new_runs and info.boot in ("confirmed", "on trial")
    else:
        assert new_runs or info.boot == "fell back at this boot"


def test_a_deploy_process_killed_during_the_copy_leaves_a_board_that_boots(
        builds: dict[str, b.Build], tmp_path: Path) -> None:
    """The real process, SIGKILLed when its progress shows a seeded file being sent."""
    old = builds["many"]  # on the board; the command deploys the firmware as it is
    install(tmp_path, old)
    nth = random.Random(140).randrange(1, 5)
    with VirtualBoard("pico-4s", flash=tmp_path) as vb:
        proc = subprocess.Popen([sys.executable, "-m", "cellguard.cli", "deploy", "--board",
                                 "pico-4s", "--port", vb.port], stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL)
        assert proc.stderr is not None
        lines = 0
        try:
            for line in proc.stderr:
                lines += line.startswith(b"sending [")
                if lines >= nth:
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert lines >= nth, "the deploy sent no file"
        port = vb.restart()
        info = hello(port)
    assert (info.manifest_sha256, info.boot) == (old.sha256, "confirmed")


# -- what cannot be reached ---------------------------------------------------------------
def test_an_absent_or_busy_port_is_a_clear_error(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["deploy", "--board", "pico-4s", "--port", str(tmp_path / "ttyNONE")]) == 1
    err = capsys.readouterr().err
    assert "no such device" in err and "Traceback" not in err
    with VirtualBoard("pico-4s", flash=tmp_path / "flash") as vb, BoardClient(vb.port):
        assert cli.main(["deploy", "--board", "pico-4s", "--port", vb.port]) == 1
        err = capsys.readouterr().err
        assert "busy" in err and "Traceback" not in err


def test_a_port_where_nothing_answers_names_what_to_try(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        import tty

        tty.setraw(slave)
        with pytest.raises(DeployError) as exc:
            run_deploy("pico-4s", os.ttyname(slave), the_build=None)
    finally:
        os.close(master)
        os.close(slave)
    text = str(exc.value)
    for hint in ("another port", "unplug and replug", "BOOTSEL", "repl_pin",
                 "Nothing was written"):
        assert hint in text, hint


def test_the_quick_start_names_the_deploy_an_engineer_types() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quick and "make test" in quick
    assert "cellguard deploy --board pico-4s --port /dev/ttyACM0" in quick
