"""The A/B slots and test-then-confirm boot (docs/firmware.md, "Slots and fallback").

``firmware/main.py`` booting on the flash model (CPython, ``FlashModel``: power cut at
any operation) and on real MicroPython; ``board_main.run``'s confirm and the boot status
in the event log and INFO (tests/board_harness.py).
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from board_harness import (
    EndOfRun,
    LoopPort,
    Reset,
    ScriptedHal,
    SimClock,
    Watchdog,
    make_board,
    runtime_with_models,
)

from cellguard.deploy.slots import (
    slot_path,
    switch_record,
    switch_source,
    target_slot,
)
from cellguard.link.client import Info, boot_status
from cellguard.link.framing import FrameReader
from cellguard.paths import boards_dir, firmware_dir
from cellguard.protocol.codec import build_payload, encode_frame, parse_payload
from cellguard.protocol.messages import BY_NAME, INFO_1_3
from cellguard.sim.flash import FlashModel, PowerLost
from cellguard.sim.runtime import MicroPythonRuntime
from cellguard_fw import board_main, codec

MAIN = (firmware_dir() / "main.py").read_text()
PICO = json.loads((boards_dir() / "pico-4s.json").read_text())


class BootEnded(Exception):
    """The boot is over: the firmware ran (and the test stops it), reset or lost power."""


class FakeMachine(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("machine")
        self.log: list[Any] = []
        log = self.log

        class Pin:
            IN, OUT, PULL_UP = 0, 1, 1

            def __init__(self, pin: int, mode: int = -1, pull: int = -1,
                         value: int | None = None) -> None:
                log.append(("Pin", pin, mode, value))
                self.pull = pull

            def value(self) -> int:
                return 1

        def reset() -> None:
            log.append(("reset",))
            raise BootEnded("reset")

        self.Pin = Pin  # type: ignore[attr-defined]
        self.reset = reset  # type: ignore[attr-defined]


def build_files(name: str, behaviour: str) -> dict[str, bytes]:
    """A build as `cellguard build` lays it out (stand-in modules), and what the stand-in
    firmware does when it runs: "ok" reaches its loop, "crash" raises at import, "hang"
    never reaches its loop (the watchdog resets the board)."""
    files = {"board.json": json.dumps(PICO).encode(),
             "cellguard_fw/app.mpy": f"app of {name}".encode() * 40,
             "cellguard_fw/behaviour": behaviour.encode()}
    lines = "".join(f"{hashlib.sha256(files[p]).hexdigest()} {p}\n" for p in sorted(files))
    digest = hashlib.sha256(lines.encode()).hexdigest()
    files["manifest.json"] = json.dumps({"format": 1, "sha256": digest}).encode()
    return files


class Board:
    """``main.py`` booting on a flash model under CPython: ``machine``, ``micropython``
    and ``cellguard_fw.board_main`` are stand-ins; the stand-in ``run`` does what the
    slot's ``behaviour`` file says."""

    def __init__(self, fs: FlashModel) -> None:
        self.fs = fs
        self.boots: list[tuple[str, int, str]] = []  # (folder, status, manifest hash)

    def _run(self, board_path: str, boot: bytearray, confirm: Any) -> None:
        folder = board_path[: -len("board.json")]
        self.boots.append((folder, boot[0], bytes(boot[1:]).hex()))
        behaviour = self.fs.files.get(folder + "cellguard_fw/behaviour", b"ok")
        if behaviour == b"crash":
            raise ImportError("no module named 'cellguard_fw.app'")
        if behaviour == b"ok":
            confirm()
        raise BootEnded("watchdog" if behaviour == b"hang" else "stopped in its loop")

    @contextmanager
    def _modules(self) -> Iterator[FakeMachine]:
        machine = FakeMachine()
        micro = types.ModuleType("micropython")
        micro.kbd_intr = lambda c: machine.log.append(("kbd_intr", c))  # type: ignore[attr-defined]
        bm = types.ModuleType("cellguard_fw.board_main")
        bm.run = self._run  # type: ignore[attr-defined]
        saved = {k: sys.modules.get(k) for k in ("machine", "micropython", "os",
                                                  "cellguard_fw.board_main")}
        path = list(sys.path)
        sys.modules.update({"machine": machine, "micropython": micro, "os": self.fs,  # type: ignore[dict-item]
                            "cellguard_fw.board_main": bm})
        try:
            yield machine
        finally:
            for k, v in saved.items():
                if v is None:
                    sys.modules.pop(k, None)
                else:
                    sys.modules[k] = v
            sys.path[:] = path

    def boot(self) -> str:
        """Boot once; return how it ended."""
        with self._modules():
            try:
                exec(compile(MAIN, "main.py", "exec"), {"__name__": "__main__",
                                                        "open": self.fs.open})
            except BootEnded as end:
                return str(end)
            except PowerLost:
                self.fs.reboot()
                return "power lost"
        return "returned"

    def exec_on_board(self, source: str) -> None:
        with self._modules():
            exec(source, {"__name__": "__main__", "open": self.fs.open})

    def write(self, path: str, data: bytes) -> None:
        with self.fs.open(path, "w") as f:
            f.write(data)

    def deploy(self, files: dict[str, bytes]) -> None:
        """What ``cellguard deploy`` does on the board: the build into the slot the record
        does not run, then the one atomic switch."""
        record = self.record()
        slot = target_slot(record)
        for path in sorted(files):
            self.write(slot_path(slot, path), files[path])
        self.exec_on_board(switch_source(switch_record(record)))

    def record(self) -> dict[str, Any]:
        for name in ("/slots.json", "/slots.new"):
            try:
                return dict(json.loads(self.fs.files[name]))
            except (KeyError, ValueError):
                pass
        return {}

    def holds(self, folder: str, files: dict[str, bytes]) -> bool:
        return all(self.fs.files.get(folder + p) == d for p, d in files.items())


OLD = build_files("old", "ok")


def fresh_board() -> Board:
    """A board whose old build sits in slot a, confirmed."""
    board = Board(FlashModel())
    for path, data in OLD.items():
        board.write(slot_path("a", path), data)
    board.write("/slots.json", b'{"active": "a"}')
    assert board.boot() == "stopped in its loop"
    assert board.boots == [("/a/", 1, json.loads(OLD["manifest.json"])["sha256"])]
    board.boots.clear()
    board.fs.reset_counts()
    return board


def manifest_hash(files: dict[str, bytes]) -> str:
    return str(json.loads(files["manifest.json"])["sha256"])


@pytest.mark.parametrize(("behaviour", "expected"), [
    ("ok", [("/b/", 2), ("/b/", 1), ("/b/", 1)]),
    ("crash", [("/b/", 2), ("/a/", 3), ("/a/", 4)]),
    ("hang", [("/b/", 2), ("/a/", 3), ("/a/", 4)]),
])
def test_a_trial_runs_once_and_confirms_or_falls_back(behaviour: str,
                                                      expected: list[tuple[str, int]]) -> None:
    board = fresh_board()
    new = build_files("new", behaviour)
    board.deploy(new)
    assert board.record() == {"active": "a", "trial": "b"}
    ends = [board.boot() for _ in range(3)]
    assert [(d, s) for d, s, _ in board.boots] == expected
    hashes = {"/a/": manifest_hash(OLD), "/b/": manifest_hash(new)}
    assert all(h == hashes[d] for d, _, h in board.boots)  # INFO's hash is the slot's
    if behaviour == "crash":  # the trial's crash resets the board (not a REPL stop)
        assert ends[0] == "reset"
        assert board.record() == {"active": "a", "failed": "b"}
    elif behaviour == "ok":
        assert board.record() == {"active": "b"}
        board.deploy(build_files("newer", "ok"))  # the next deploy goes to slot a
        assert board.record() == {"active": "b", "trial": "a"}


def run_sequence(board: Board, new: dict[str, bytes], boots: int = 4) -> None:
    """Deploy, then boot; a power cut anywhere ends the deploy or that boot."""
    try:
        board.deploy(new)
    except PowerLost:
        board.fs.reboot()
    for _ in range(boots):
        board.boot()


@pytest.mark.parametrize("behaviour", ["ok", "crash", "hang"])
def test_a_deploy_cut_at_every_flash_operation_leaves_a_bootable_board(behaviour: str) -> None:
    """Power lost before each operation of the deploy and the boots after it, in turn:
    every boot runs a whole build, old or new, never neither; a new build that does not
    reach its loop ends up replaced by the old one."""
    new = build_files("new", behaviour)
    whole = fresh_board()
    run_sequence(whole, new)
    total = whole.fs.ops
    assert total > 20
    outcomes = set()
    for cut in range(total + 1):
        board = fresh_board()
        board.fs.fail_after = board.fs.ops + cut
        run_sequence(board, new)
        assert len(board.boots) >= 3, cut  # at most one boot lost to the cut itself
        for folder, status, digest in board.boots:
            build = OLD if folder == "/a/" else new
            assert folder in ("/a/", "/b/") and board.holds(folder, build), (cut, folder)
            assert digest == manifest_hash(build), cut
            assert status in (1, 2, 3, 4), cut
        last = board.boots[-1][0]
        if behaviour != "ok":
            assert last == "/a/", cut
            assert [d for d, _, _ in board.boots].count("/b/") <= 1, cut
        outcomes.add(last)
    assert outcomes == ({"/a/", "/b/"} if behaviour == "ok" else {"/a/"})


def test_a_trial_whose_board_file_does_not_load_falls_back_at_once() -> None:
    board = fresh_board()
    new = build_files("new", "ok")
    new["board.json"] = b'{"pins": '  # cut short
    board.deploy(new)
    assert board.boot() == "stopped in its loop"
    assert board.boots == [("/a/", 3, manifest_hash(OLD))]
    assert board.record() == {"active": "a", "failed": "b"}


def test_main_keeps_its_first_lines_first() -> None:
    """Ctrl-C off, then the outputs off, before any flash write and before the firmware."""
    board = fresh_board()
    board.deploy(build_files("new", "ok"))
    with board._modules() as machine:
        board.fs.on_op = lambda kind, path: machine.log.append(("flash", kind, path))
        with suppress(BootEnded):
            exec(compile(MAIN, "main.py", "exec"), {"__name__": "__main__",
                                                    "open": board.fs.open})
        log = list(machine.log)
    assert log[0] == ("kbd_intr", -1)
    assert log[1] == ("Pin", PICO["pins"]["output"], 1, 0)
    assert ("flash", "rename", "/slots.new") in log[2:]  # marked tried after the outputs


def test_maintenance_leaves_the_trial_untouched() -> None:
    board = fresh_board()
    board.deploy(build_files("new", "ok"))
    board.write("/b/maintenance", b"1")
    with board._modules() as machine:
        exec(compile(MAIN, "main.py", "exec"), {"__name__": "__main__", "open": board.fs.open})
        assert machine.log[-1] == ("kbd_intr", 3)
    assert board.record() == {"active": "a", "trial": "b"}
    assert board.boots == []
    board.boot()
    assert board.boots[0][:2] == ("/b/", 2)


def test_a_board_set_up_by_hand_boots_from_the_root() -> None:
    board = Board(FlashModel())
    board.write("/board.json", json.dumps(PICO).encode())
    board.fs.reset_counts()
    board.boot()
    assert board.boots == [("/", 0, "")]
    assert board.fs.log == []  # nothing written


def test_the_switch_is_one_atomic_rename() -> None:
    board = fresh_board()
    source = switch_source({"active": "a", "trial": "b"})
    board.exec_on_board(source)
    assert board.fs.log[-1] == ("rename", "/slots.new")
    assert board.record() == {"active": "a", "trial": "b"}
    assert target_slot({}) == "a" and target_slot({"active": "a"}) == "b"
    assert target_slot({"active": "b", "failed": "a"}) == "a"
    assert switch_record({"active": "b", "failed": "a"}) == {"active": "b", "trial": "a"}
    assert slot_path("b", "main.py") == "/main.py"
    assert slot_path("b", "cellguard_fw/app.mpy") == "/b/cellguard_fw/app.mpy"


# -- board_main: confirm after the first full pass; the status in the log and INFO ---------
class Run:
    def __init__(self, tmp_path: Path, boot: bytes | None, **changes: Any) -> None:
        self.board, self.path = make_board(tmp_path, **changes)
        self.clock = SimClock()
        self.hal = ScriptedHal(self.board, self.clock)
        self.port = LoopPort(self.clock)
        self.boot = None if boot is None else bytearray(boot)
        self.confirms: list[int] = []
        self.bms: Any = None

    def confirm(self) -> None:
        self.confirms.append(self.clock.now)

    def go(self, end_ms: int) -> None:
        original = board_main.Bms

        def keep(*args: Any) -> Any:
            self.bms = original(*args)
            return self.bms

        board_main.Bms = keep
        try:
            board_main.run(str(self.path), hal=self.hal, port=self.port, clock=self.clock,
                           wdt=Watchdog(self.clock, end_ms), reset=self._reset,
                           boot=self.boot, confirm=self.confirm)
        except (EndOfRun, Reset):
            pass
        finally:
            board_main.Bms = original

    @staticmethod
    def _reset() -> None:
        raise Reset()

    def frames(self) -> list[tuple[int, dict[str, Any]]]:
        return [(f.msg_type, parse_payload(f.msg_type, f.payload))
                for f in FrameReader().feed(bytes(self.port.tx))]


DIGEST = hashlib.sha256(b"a build").digest()


def hello(minor: int, seq: int = 5) -> bytes:
    return encode_frame(BY_NAME["hello"].msg_id, seq,
                        build_payload("hello", {"host_major": 1, "host_minor": minor}))


def test_confirm_comes_once_after_the_first_control_step(tmp_path: Path) -> None:
    run = Run(tmp_path, bytes([2]) + DIGEST)
    steps: list[int] = []
    run.hal.on_sample = steps.append
    run.go(1000)
    assert len(run.confirms) == 1 and steps and run.confirms[0] >= steps[0]
    assert len(steps) > 5  # the loop went on after it


def test_no_confirm_while_the_step_raises(tmp_path: Path) -> None:
    run = Run(tmp_path, bytes([2]) + DIGEST)

    def boom(now: int) -> None:
        raise RuntimeError("a bug in the step")

    run.hal.on_sample = boom
    run.go(1000)
    assert run.confirms == []


def test_a_fallback_is_in_the_event_log_and_info(tmp_path: Path) -> None:
    run = Run(tmp_path, bytes([3]) + DIGEST)
    run.port.send_at(0, hello(4))
    run.go(500)
    infos = [p for t, p in run.frames() if t == codec.MSG_INFO]
    assert len(infos) == 1
    new = Info.from_wire(infos[0])
    assert new.boot == "fell back at this boot" == boot_status(3)
    assert new.manifest_sha256 == DIGEST.hex()
    assert new.protocol == f"{codec.PROTOCOL_MAJOR}.{codec.PROTOCOL_MINOR}"
    assert run.bms.boot[0] == 3


def test_a_1_3_host_parses_the_info_a_1_4_board_sends_it(tmp_path: Path) -> None:
    from construct import Terminated

    run = Run(tmp_path, bytes([1]) + DIGEST)
    run.port.send_at(0, hello(3))
    run.go(300)
    frame = next(f for f in FrameReader().feed(bytes(run.port.tx))
                 if f.msg_type == codec.MSG_INFO)
    old = (INFO_1_3 + Terminated).parse(frame.payload)  # strict, as a 1.3 host parses
    assert old.board == run.board["name"]


def test_the_boot_event_carries_the_status(tmp_path: Path) -> None:
    from cellguard.link.client import Event

    run = Run(tmp_path, bytes([3]) + DIGEST)
    run.port.send_at(50, encode_frame(BY_NAME["get_events"].msg_id, 7, build_payload(
        "get_events", {"first_index": 0, "max_count": 10})))
    run.go(300)
    page = next(p for t, p in run.frames() if t == codec.MSG_EVENTS)
    assert page["kinds"][0] == codec.EVENT_BOOT and page["values"][0] == 3
    event = Event(index=0, board_time_s=0.0, unix_time=0, kind="boot", code=0, value=3)
    assert event.describe() == "latched: none; build fell back at this boot"
    (tmp_path / "plain").mkdir()
    plain = Run(tmp_path / "plain", None)  # not booted from a slot: value 0, as before
    plain.port.send_at(50, encode_frame(BY_NAME["get_events"].msg_id, 7, build_payload(
        "get_events", {"first_index": 0, "max_count": 10})))
    plain.go(300)
    page = next(p for t, p in plain.frames() if t == codec.MSG_EVENTS)
    assert page["values"][0] == 0


# -- real MicroPython: the real import from the slot, a crash at import, a hang ---------------
SLOT_RUN = """
import machine
def run(board_path, boot=None, confirm=None):
    machine.log.append(("ran", board_path, boot[0], len(boot)))
    if {behaviour!r} == "ok":
        confirm()
    raise machine.Reset()
"""
CRASH = "raise ImportError('a module this build lacks')\n"


@pytest.fixture(scope="module")
def mp() -> Iterator[MicroPythonRuntime]:
    yield from runtime_with_models()


def mp_write(mp: MicroPythonRuntime, files: dict[str, str]) -> None:
    lines = ["import os"]
    for path, text in files.items():
        parts = path.strip("/").split("/")[:-1]
        for k in range(1, len(parts) + 1):
            lines.append(f"try:\n    os.mkdir('/' + {'/'.join(parts[:k])!r})\n"
                         "except OSError:\n    pass")
        lines.append(f"with open({path!r}, 'w') as f:\n    f.write({text!r})")
    mp.exec("\n".join(lines))


def mp_boot(mp: MicroPythonRuntime) -> list[Any]:
    out = mp.exec(
        "import machine, sys\n"
        "del machine.log[:]\n"
        "for _k in [k for k in sys.modules if k.startswith('cellguard_fw')]:\n"
        "    del sys.modules[_k]\n"
        "_path = list(sys.path)\n"
        "try:\n"
        "    with open('/fw/main.py') as f:\n"
        "        exec(f.read(), {'__name__': '__main__'})\n"
        "except machine.Reset:\n"
        "    pass\n"
        "sys.path[:] = _path\n"
        "with open('/slots.json') as f:\n"
        "    print('RECORD', f.read())\n"
        "print('LOG', repr([e for e in machine.log if e[0] in ('ran', 'reset')]))\n")
    lines = out.splitlines()
    log = eval(next(x for x in lines if x.startswith("LOG "))[4:])
    record = json.loads(next(x for x in lines if x.startswith("RECORD "))[7:])
    return [record, [tuple(e) for e in log]]


@pytest.mark.parametrize("behaviour", ["ok", "crash", "hang"])
def test_real_micropython_imports_the_trial_and_falls_back(mp: MicroPythonRuntime,
                                                          behaviour: str) -> None:
    board = json.dumps(PICO)
    manifest = json.dumps({"sha256": "ab" * 32})
    slot_b = (CRASH if behaviour == "crash"
              else SLOT_RUN.format(behaviour="ok" if behaviour == "ok" else "hang"))
    mp_write(mp, {
        "/fw/main.py": MAIN,
        "/a/board.json": board, "/a/manifest.json": manifest,
        "/a/cellguard_fw/__init__.py": "", "/a/cellguard_fw/board_main.py":
            SLOT_RUN.format(behaviour="ok"),
        "/b/board.json": board, "/b/manifest.json": manifest,
        "/b/cellguard_fw/__init__.py": "", "/b/cellguard_fw/board_main.py": slot_b,
        "/slots.json": '{"active": "a", "trial": "b"}',
    })
    first = mp_boot(mp)
    second = mp_boot(mp)
    if behaviour == "ok":
        assert first == [{"active": "b"}, [("ran", "/b/board.json", 2, 33)]]
        assert second == [{"active": "b"}, [("ran", "/b/board.json", 1, 33)]]
    else:
        ran_b = [] if behaviour == "crash" else [("ran", "/b/board.json", 2, 33)]
        reset = [("reset",)]  # the trial's way out (here the model's reset) resets again
        assert first == [{"active": "a", "trial": "b", "tried": 1}, ran_b + reset]
        assert second == [{"active": "a", "failed": "b"}, [("ran", "/a/board.json", 3, 33)]]
