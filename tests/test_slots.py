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


def manifest(files: dict[str, bytes], version: str = "0.1.0") -> bytes:
    """``manifest.json`` for ``files`` as `cellguard build` writes it (the fields main.py
    reads: each file's path, size and SHA-256, the set hash, the firmware version)."""
    lines = "".join(f"{hashlib.sha256(files[p]).hexdigest()} {p}\n" for p in sorted(files))
    return json.dumps({
        "format": 1, "firmware_version": version,
        "files": [{"path": p, "size": len(files[p]),
                   "sha256": hashlib.sha256(files[p]).hexdigest()} for p in sorted(files)],
        "sha256": hashlib.sha256(lines.encode()).hexdigest()}).encode()


def build_files(name: str, behaviour: str, version: str = "0.1.0") -> dict[str, bytes]:
    """A build as `cellguard build` lays it out (stand-in modules), and what the stand-in
    firmware does when it runs: "ok" reaches its loop, "crash" raises at import, "hang"
    never reaches its loop (the watchdog resets the board)."""
    files = {"board.json": json.dumps(PICO).encode(),
             "cellguard_fw/app.mpy": f"app of {name}".encode() * 40,
             "cellguard_fw/behaviour": behaviour.encode()}
    files["manifest.json"] = manifest(files, version)
    return files


class Board:
    """``main.py`` booting on a flash model under CPython: ``machine``, ``micropython``,
    ``gc`` and ``cellguard_fw.board_main`` are stand-ins; the stand-in ``run`` does what
    the slot's ``behaviour`` file says. (``gc``: main.py's ``gc.collect()`` frees the
    MicroPython heap before the firmware; CPython's would collect the whole test
    process's heap at every boot, seconds per boot in a worker of the full suite.)"""

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
        gc = types.ModuleType("gc")
        gc.collect = lambda: machine.log.append(("gc_collect",))  # type: ignore[attr-defined]
        bm = types.ModuleType("cellguard_fw.board_main")
        bm.run = self._run  # type: ignore[attr-defined]
        saved = {k: sys.modules.get(k) for k in ("machine", "micropython", "os", "gc",
                                                  "cellguard_fw.board_main")}
        path = list(sys.path)
        sys.modules.update({"machine": machine, "micropython": micro, "os": self.fs,  # type: ignore[dict-item]
                            "gc": gc, "cellguard_fw.board_main": bm})
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
    elif behaviour == "ok":  # confirmed: its version is the minimum from now on
        assert board.record() == {"active": "b", "min": "0.1.0"}
        board.deploy(build_files("newer", "ok"))  # the next deploy goes to slot a
        assert board.record() == {"active": "b", "trial": "a", "min": "0.1.0"}


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
    # The check's garbage freed once the trial is marked, before the firmware runs.
    assert log.index(("gc_collect",)) > log.index(("flash", "rename", "/slots.new"))


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


def mp_slot(slot: str, board_main_py: str, version: str = "0.1.0") -> dict[str, str]:
    """A slot's files for :func:`mp_write`: a stand-in package whose ``board_main`` is
    ``board_main_py`` and a module it does not import, with their manifest."""
    files = {"board.json": json.dumps(PICO).encode(), "cellguard_fw/__init__.py": b"",
             "cellguard_fw/board_main.py": board_main_py.encode(),
             "cellguard_fw/soc.py": b"# a module of the build\n"}
    out = {f"/{slot}/{p}": d.decode() for p, d in files.items()}
    out[f"/{slot}/manifest.json"] = manifest(files, version).decode()
    return out


def mp_clear(mp: MicroPythonRuntime) -> None:
    """The slots and the record gone: the next test lays out its own."""
    mp.exec("import os\n"
            "def _rm(p):\n"
            "    try:\n"
            "        for e in os.ilistdir(p):\n"
            "            _rm(p + '/' + e[0]) if e[1] & 0x4000 else os.remove(p + '/' + e[0])\n"
            "        os.rmdir(p)\n"
            "    except OSError:\n"
            "        pass\n"
            "for _p in ('/a', '/b'):\n"
            "    _rm(_p)\n"
            "for _p in ('/slots.json', '/slots.new'):\n"
            "    try:\n"
            "        os.remove(_p)\n"
            "    except OSError:\n"
            "        pass\n")


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
    slot_b = (CRASH if behaviour == "crash"
              else SLOT_RUN.format(behaviour="ok" if behaviour == "ok" else "hang"))
    mp_clear(mp)
    mp_write(mp, {
        "/fw/main.py": MAIN,
        **mp_slot("a", SLOT_RUN.format(behaviour="ok")),
        **mp_slot("b", slot_b),
        "/slots.json": '{"active": "a", "trial": "b"}',
    })
    first = mp_boot(mp)
    second = mp_boot(mp)
    if behaviour == "ok":
        confirmed = {"active": "b", "min": "0.1.0"}
        assert first == [confirmed, [("ran", "/b/board.json", 2, 33)]]
        assert second == [confirmed, [("ran", "/b/board.json", 1, 33)]]
    else:
        ran_b = [] if behaviour == "crash" else [("ran", "/b/board.json", 2, 33)]
        reset = [("reset",)]  # the trial's way out (here the model's reset) resets again
        assert first == [{"active": "a", "trial": "b", "tried": 1}, ran_b + reset]
        assert second == [{"active": "a", "failed": "b"}, [("ran", "/a/board.json", 3, 33)]]


# -- verified at boot (docs/firmware.md): each file against the manifest, the minimum ------
OK_RUN = SLOT_RUN.format(behaviour="ok")


def mp_remove(mp: MicroPythonRuntime, path: str) -> None:
    mp.exec(f"import os\nos.remove({path!r})")


@pytest.mark.parametrize("alter", ["changed", "removed", "unlisted module", "manifest removed",
                                   "set hash", "unlisted beside"])
def test_real_micropython_runs_a_build_with_altered_files_held_open(
        mp: MicroPythonRuntime, alter: str) -> None:
    """A confirmed build whose files no longer match its manifest: main.py says so (status
    5), and the firmware runs only to tell the host (app.py holds the output open)."""
    mp_clear(mp)
    mp_write(mp, {"/fw/main.py": MAIN, **mp_slot("a", OK_RUN),
                  "/slots.json": '{"active": "a", "min": "0.1.0"}'})
    assert mp_boot(mp) == [{"active": "a", "min": "0.1.0"}, [("ran", "/a/board.json", 1, 33)]]
    if alter == "changed":  # the same size, one byte different
        mp_write(mp, {"/a/cellguard_fw/soc.py": "# a module of the bui1d\n"})
    elif alter == "removed":
        mp_remove(mp, "/a/cellguard_fw/soc.py")
    elif alter == "unlisted module":  # it would be imported like any of the build's
        mp_write(mp, {"/a/cellguard_fw/extra.py": "x = 1\n"})
    elif alter == "unlisted beside":  # the slot's folder is on the path: it would stand in
        mp_write(mp, {"/a/time.py": "x = 1\n"})  # for the time module
    elif alter == "set hash":  # the manifest names another build than its files make
        listed = json.loads(mp_slot("a", OK_RUN)["/a/manifest.json"])
        listed["sha256"] = "ab" * 32
        mp_write(mp, {"/a/manifest.json": json.dumps(listed)})
    else:
        mp_remove(mp, "/a/manifest.json")
    record, log = mp_boot(mp)
    assert record == {"active": "a", "min": "0.1.0"}  # no fallback: the record stays
    assert log == [("ran", "/a/board.json", 5, 1 if alter == "manifest removed" else 33)]
    assert boot_status(5).startswith("files altered") and "held open" in boot_status(5)


def test_real_micropython_refuses_a_build_older_than_the_minimum(
        mp: MicroPythonRuntime) -> None:
    mp_clear(mp)
    mp_write(mp, {"/fw/main.py": MAIN, **mp_slot("a", OK_RUN, version="0.9.3"),
                  "/slots.json": '{"active": "a", "min": "0.10.0"}'})
    assert mp_boot(mp)[1] == [("ran", "/a/board.json", 6, 33)]  # 0.9.3 < 0.10.0
    assert "rollback refused" in boot_status(6) and "held open" in boot_status(6)
    mp_write(mp, {"/slots.json": '{"active": "a", "min": "0.9.3"}'})
    assert mp_boot(mp)[1] == [("ran", "/a/board.json", 1, 33)]  # the minimum itself runs
    mp_write(mp, {"/slots.json": '{"active": "a", "min": "0.9.12"}'})
    assert mp_boot(mp)[1] == [("ran", "/a/board.json", 6, 33)]  # numbers, not text


@pytest.mark.parametrize("why", ["altered", "older"])
def test_real_micropython_falls_back_from_a_refused_trial_unrun(
        mp: MicroPythonRuntime, why: str) -> None:
    """A trial the check refuses falls back at this very boot, without running (7, 8);
    the record keeps the minimum; the boots after run the old build (4)."""
    mp_clear(mp)
    mp_write(mp, {"/fw/main.py": MAIN, **mp_slot("a", OK_RUN, version="0.2.0"),
                  **mp_slot("b", OK_RUN, version="0.2.1" if why == "altered" else "0.1.9"),
                  "/slots.json": '{"active": "a", "trial": "b", "min": "0.2.0"}'})
    if why == "altered":
        mp_write(mp, {"/b/cellguard_fw/soc.py": "import os\n"})
    first = mp_boot(mp)
    fallback = {"active": "a", "failed": "b", "min": "0.2.0"}
    status = 7 if why == "altered" else 8
    assert first == [fallback, [("ran", "/a/board.json", status, 33)]]
    assert boot_status(status).startswith("fell back at this boot: ")
    assert mp_boot(mp) == [fallback, [("ran", "/a/board.json", 4, 33)]]


def test_a_confirmed_trial_raises_the_minimum_and_a_deploy_carries_it() -> None:
    board = fresh_board()
    board.deploy(build_files("new", "ok", version="0.2.0"))
    board.boot()
    assert board.record() == {"active": "b", "min": "0.2.0"}
    board.deploy(build_files("old again", "ok", version="0.1.0"))  # by hand: a rollback
    assert board.record() == {"active": "b", "trial": "a", "min": "0.2.0"}
    board.boot()
    assert board.boots[-1][:2] == ("/b/", 8)  # refused, unrun: the 0.2.0 build runs
    assert board.record() == {"active": "b", "failed": "a", "min": "0.2.0"}
    # A downgrade asked for (deploy --allow-downgrade) lowers the minimum in the switch.
    assert switch_record(board.record(), "0.1.0") == {"active": "b", "trial": "a",
                                                      "min": "0.1.0"}
    board.exec_on_board(switch_source(switch_record(board.record(), "0.1.0")))
    board.boot()
    assert board.boots[-1][:2] == ("/a/", 2)
    assert board.record() == {"active": "a", "min": "0.1.0"}


def fault_frames(run: Run) -> list[dict[str, Any]]:
    return [p for t, p in run.frames() if t == codec.MSG_FAULT_STATE]


@pytest.mark.parametrize("status", [5, 6])
def test_a_refused_build_holds_its_output_open_and_says_why(tmp_path: Path,
                                                            status: int) -> None:
    run = Run(tmp_path, bytes([status]) + DIGEST)
    get_faults = encode_frame(BY_NAME["get_faults"].msg_id, 8, b"")
    run.port.send_at(0, hello(8))
    run.port.send_at(1000, get_faults)
    run.port.send_at(1500, encode_frame(BY_NAME["clear_faults"].msg_id, 9, b""))
    run.port.send_at(2000, get_faults)
    run.go(4000)
    assert len(run.hal.samples) > 20  # it runs: the host can read why
    assert all(not closed for _, closed in run.hal.outputs_log)  # never closed
    info = Info.from_wire(next(p for t, p in run.frames() if t == codec.MSG_INFO))
    assert info.boot == boot_status(status) and info.manifest_sha256 == DIGEST.hex()
    before, after = fault_frames(run)
    for state in (before, after):  # active while it runs: CLEAR_FAULTS cannot clear it
        assert state["active"] & codec.FAULT_FIRMWARE and state["latched"] & codec.FAULT_FIRMWARE
    assert run.bms.state == codec.STATE_FAULT


def test_a_build_the_check_passed_closes_its_output(tmp_path: Path) -> None:
    run = Run(tmp_path, bytes([1]) + DIGEST)
    run.go(4000)
    assert any(closed for _, closed in run.hal.outputs_log)
    assert not run.bms.faults & codec.FAULT_FIRMWARE
