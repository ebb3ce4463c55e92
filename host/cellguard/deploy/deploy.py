"""``cellguard deploy``: a build onto a board's flash, through the A/B slots.

The steps (docs/firmware.md, "Deploy"):

0. Check the build before anything is sent (docs/security.md, "Signed builds"): its
   ``manifest.sig`` must be a trusted key's signature over ``manifest.json``, and every
   file must match the manifest (no file changed, added or missing). A build without a
   trusted signature is refused unless ``allow_unsigned`` (development); one whose files
   do not match its manifest is refused always.
1. Reach the REPL: HELLO, then ENTER_REPL when the firmware answers (it opens the
   output, leaves the maintenance flag and resets into the REPL); else Ctrl-C, as
   mpremote does, for a board that sits at its REPL (no firmware, or a ``main.py``
   that crashed). Neither: a message naming what to try.
2. Read the board: its boot record and the SHA-256 of every file of the slots and the
   loader, measured on the board (a manifest left by a deploy that was cut short
   could say otherwise).
3. Write the new build into the slot the record does not run: its manifest removed
   first and written last; a file the board holds already (in the other slot) is
   copied on the board; only the others move over the link. Files the build does not
   list in that slot are removed.
4. The one atomic step (:func:`cellguard.deploy.slots.switch_source`), a reset, then
   HELLO: the board must report the firmware version and manifest hash just deployed,
   on trial and then confirmed, or it says it fell back.

Everything on the board goes through mpremote's ``SerialTransport`` (raw REPL
``exec``), pinned in pyproject.toml.
"""

from __future__ import annotations

import ast
import binascii
import contextlib
import io
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CellguardError, NotABoardError, PortError
from ..link.auth import KeyStore
from . import signing, slots
from .build import MANIFEST, Build, build, check_files, read_build

CHUNK = 3072  # bytes per exec when sending: 4 KB of base64 in the raw REPL
REPL_TIMEOUT_S = 20.0  # ENTER_REPL's reset, until the REPL answers
PROBE_S = 1.5  # one attempt at the raw REPL
HELLO_TIMEOUT_S = 30.0  # the reset after the switch, until HELLO is answered
CONFIRM_TIMEOUT_S = 15.0  # a build on trial, until it confirms
SCANNED_DIRS = ("a", "b", "cellguard_fw")  # the slots and a firmware set up by hand
SCANNED_FILES = ("main.py", "board.json", "maintenance", "slots.json", "slots.new")

StepHook = Callable[[str, str], None]
"""Called before each step that changes the board: (``phase``, ``detail``). Phases:
``remove``, ``mkdir``, ``send`` (detail ``path@offset``, before each chunk), ``copy``,
``switch``, ``switched``, ``reset``, ``hello`` (after the reset). Tests raise from it
to cut a deploy short."""

Progress = Callable[[int, int, str], None]
"""(bytes sent so far, bytes to send, the file being sent)."""


class DeployError(CellguardError):
    """A deploy that could not reach the board, or whose board did not come back right."""


class BuildRefused(DeployError):
    """The build is not deployed: unsigned, signed by a key this host does not trust,
    changed after it was signed, or its files do not match its manifest."""


class DowngradeRefused(DeployError):
    """The build is older than the board's minimum version (its boot record's ``"min"``,
    the last confirmed build's version): the board would refuse to boot it. Nothing was
    written; ``allow_downgrade`` deploys it and lowers the minimum."""


Presence = Callable[[bool], None]
"""Called with True when a write to a locked board needs its presence button, False after
(:attr:`cellguard.link.client.BoardClient.presence`)."""


def check_build(b: Build, allow_unsigned: bool = False,
                trusted: dict[str, signing.TrustedKey] | None = None,
                warn: Callable[[str], None] | None = None,
                where: str | None = None) -> signing.Verdict:
    """Whether ``b`` may be deployed: its signature by a trusted key (``trusted``, default
    :func:`cellguard.deploy.signing.trusted_keys`) over its manifest, then every file
    against the manifest. Raises :class:`BuildRefused` naming what is wrong; with
    ``allow_unsigned`` a missing or untrusted signature is only a warning (``warn``), a
    file that does not match the manifest never is."""
    where = where or f"the build in {b.out}"
    if trusted is None:
        trusted = signing.trusted_keys()
    verdict = signing.verify_signature(b.files.get(MANIFEST, b""), b.signature, trusted,
                                       where)
    if not verdict.verified:
        if not allow_unsigned:
            raise BuildRefused(
                f"{verdict.problem}: nothing was deployed. A build is deployed when a "
                "trusted key signed it: `cellguard signing-key new` makes this host a key "
                "that `cellguard build` signs with; `cellguard signing-key trust FILE` "
                "trusts another's public key; --allow-unsigned deploys it anyway "
                "(development only)")
        if warn is not None:
            warn(f"warning: {verdict.problem}; deploying it all the same (--allow-unsigned)")
    problem = check_files(b.files, where)
    if problem:
        raise BuildRefused(f"{problem}: nothing was deployed")
    return verdict


# -- MicroPython run on the board --------------------------------------------------------
_SCAN = """\
import os, json
try:
    import hashlib, binascii
except ImportError:
    hashlib = None
def _h(p):
    if hashlib is None:
        return '?'
    h = hashlib.sha256()
    b = bytearray(1024)
    m = memoryview(b)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            h.update(m[:n])
    return binascii.hexlify(h.digest()).decode()
def _w(d, o):
    for e in list(os.ilistdir(d)):
        p = d + '/' + e[0]
        if e[1] & 0x4000:
            o[p] = ''
            _w(p, o)
        else:
            o[p] = _h(p)
o = {}
for e in list(os.ilistdir('/')):
    p = '/' + e[0]
    if e[1] & 0x4000 and e[0] in %(dirs)r:
        o[p] = ''
        _w(p, o)
    elif not e[1] & 0x4000 and e[0] in %(files)r:
        o[p] = _h(p)
r = {}
for n in ('/slots.json', '/slots.new'):
    try:
        with open(n) as f:
            r = json.load(f)
        break
    except (OSError, ValueError):
        pass
print(repr({'record': r, 'files': o}))
"""

_HELPERS = """\
import os
from binascii import a2b_base64 as _a
def _c(s, d):
    b = bytearray(1024)
    m = memoryview(b)
    with open(s, 'rb') as f:
        with open(d, 'wb') as g:
            while True:
                n = f.readinto(b)
                if not n:
                    break
                g.write(m[:n])
"""


# -- the plan -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One change to the board's flash."""

    action: str  # "send" (over the link), "copy" (on the board), "remove"
    path: str  # on the board
    size: int
    source: str = ""  # "copy": the board's file with the same bytes

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "path": self.path, "size": self.size,
                "source": self.source}


@dataclass
class Plan:
    """What a deploy of ``build`` does to a board in the state ``record``/``files``."""

    build: Build
    record: dict[str, Any]
    files: dict[str, str]  # board path -> SHA-256 hex ("" for a folder, "?" unknown)
    slot: str  # where the build goes
    changes: list[Change]
    mkdirs: list[str]
    unchanged: int  # build files the slot holds already
    stale_flags: list[str]  # maintenance flags left behind: removed before the switch
    running: bool = False  # the board runs this very build, confirmed: nothing to do

    @property
    def sends(self) -> list[Change]:
        return [c for c in self.changes if c.action == "send"]

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)


def plan(b: Build, record: dict[str, Any], files: dict[str, str]) -> Plan:
    """The changes that put ``b`` into the slot ``record`` does not run."""
    if not isinstance(record, dict):
        record = {}
    stale = sorted(p for p in files if p.rsplit("/", 1)[-1] == "maintenance")
    running = slots.running_slot(record)
    wanted = {slots.slot_path(running, p): sha for p, sha in _hashes(b).items()}
    # (A build older than the record's minimum is not running, whatever the files: the
    # board refuses it at boot; a deploy that lowers the minimum goes through a trial.)
    if (set(record) - {"min"} == {"active"} and running
            and not slots.is_downgrade(str(b.manifest.get("firmware_version", "")), record)
            and all(files.get(p) == sha for p, sha in wanted.items())):
        return Plan(b, record, files, running, [], [], len(wanted), stale, running=True)
    slot = slots.target_slot(record)
    target = {slots.slot_path(slot, p): (p, sha) for p, sha in _hashes(b).items()}
    prefix = f"/{slot}/"
    by_hash: dict[str, str] = {}
    for path, sha in sorted(files.items()):  # never from the slot being rewritten
        if sha not in ("", "?") and not path.startswith(prefix) and path not in target:
            by_hash.setdefault(sha, path)
    for path, (_, sha) in target.items():  # the running slot's copy first
        other = slots.slot_path(running, path.split("/", 2)[-1]) if running else ""
        if files.get(other) == sha:
            by_hash[sha] = other
    changes: list[Change] = []
    for path in sorted(files, key=lambda p: (-p.count("/"), p)):
        if path.startswith(prefix) and path not in target and files[path] != "" \
                and path not in stale:
            changes.append(Change("remove", path, 0))
    for path in sorted((p for p in files if p.startswith(prefix) and files[p] == ""),
                       key=lambda p: -p.count("/")):
        if not any(t.startswith(path + "/") for t in target):
            changes.append(Change("remove", path, 0))
    mkdirs = sorted({"/".join(p.split("/")[:i]) for p in target
                     for i in range(2, p.count("/") + 1)} - {p for p in files if files[p] == ""})
    unchanged = 0
    manifest_path = slots.slot_path(slot, MANIFEST)
    for path in sorted(p for p in target if p != manifest_path):
        name, sha = target[path]
        size = len(b.files[name])
        if files.get(path) == sha:
            unchanged += 1
        elif sha in by_hash:
            changes.append(Change("copy", path, size, by_hash[sha]))
        else:
            changes.append(Change("send", path, size))
    loader = slots.slot_path("", slots.LOADER)
    changes.sort(key=lambda c: c.path == loader)  # the loader last: the slot first
    # The manifest goes last: a slot with a manifest holds the whole build it lists.
    if files.get(manifest_path) != target[manifest_path][1] or any(
            c.path.startswith(prefix) for c in changes):
        changes.append(Change("send", manifest_path, len(b.files[MANIFEST])))
    else:
        unchanged += 1
    return Plan(b, record, files, slot, changes, mkdirs, unchanged, stale)


def _hashes(b: Build) -> dict[str, str]:
    from .build import sha256

    return {p: sha256(data) for p, data in b.files.items()}


# -- the board ----------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """mpremote's transport prints what it read when it fails: keep stdout for --json."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _exec(transport: Any, code: str, what: str) -> bytes:
    from mpremote.transport import TransportError, TransportExecError

    try:
        with _quiet():
            return bytes(transport.exec(code))
    except TransportExecError as exc:
        message = str(exc.error_output).strip().splitlines()[-1:] or ["an error"]
        if message[0].rstrip().endswith(("OSError: 28", "ENOSPC")):
            raise DeployError(f"{what}: the board's flash is full ({message[0]})") from None
        raise DeployError(f"{what}: the board said {message[0]}") from None
    except (TransportError, OSError) as exc:
        raise DeployError(f"{what}: lost the board on the port ({exc}); the board still "
                          "boots its previous firmware: run the deploy again") from None


def _open_transport(port: str) -> Any:
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    try:
        with _quiet():
            return SerialTransport(port, baudrate=115200, timeout=0.5)
    except (TransportError, OSError) as exc:
        raise PortError(f"cannot open port {port}: {exc}") from None


def _probe_raw_repl(port: str, seconds: float) -> Any | None:
    """Ctrl-C then Ctrl-A, as mpremote does, until the raw REPL answers or time is up."""
    from mpremote.transport import TransportError

    deadline = time.monotonic() + seconds
    while True:
        transport = None
        try:
            transport = _open_transport(port)
            with _quiet():
                transport.enter_raw_repl(soft_reset=False, timeout_overall=PROBE_S)
            return transport
        except (TransportError, PortError, OSError):
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.close()
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def _not_reachable(port: str, why: str) -> DeployError:
    return DeployError(
        f"cannot reach the REPL on {port}: {why}. Try: another port (`cellguard ports` "
        "lists them); unplug and replug the board, or hold the board file's repl_pin low "
        "while it resets (maintenance mode); check MicroPython is on the board (a Pico: "
        "hold BOOTSEL while plugging it in and copy MicroPython's .uf2 onto the drive "
        "that appears; an ESP32: flash MicroPython with esptool). Nothing was written.")


@dataclass
class Reached:
    transport: Any
    how: str  # "enter_repl" (the firmware ran) or "ctrl_c" (the board sat at its REPL)
    info: Any | None  # the firmware's INFO before the deploy, if it answered


def reach_repl(port: str, timeout_s: float = REPL_TIMEOUT_S, keys: KeyStore | None = None,
               presence: Presence | None = None) -> Reached:
    """The board's raw REPL, by ENTER_REPL if its firmware answers HELLO, else Ctrl-C.
    A locked board's ENTER_REPL goes inside AUTH with its key from ``keys`` (default: the
    key store) and needs its presence button (``presence``, default: the person at the
    board is asked on stderr)."""
    from ..link.client import BoardClient, IncompatibleBoard, NoBoardKey
    from ..link.locking import ask_for_presence

    info = None
    incompatible = ""
    with BoardClient(port, keys=keys) as client:  # PortError: absent, busy, no permission
        if presence is None:
            ask_for_presence(client)  # a locked board: ENTER_REPL needs the button too
        else:
            client.presence = presence
        try:
            info = client.hello(timeout_s=1.5)
        except NotABoardError:
            pass
        except IncompatibleBoard as exc:
            incompatible = str(exc)
        if info is not None:
            try:
                client.enter_repl()
            except NoBoardKey as exc:
                raise DeployError(f"{exc}; nothing was written (`cellguard info` shows the "
                                  "board's mode)") from None
            except CellguardError as exc:
                raise DeployError(f"the firmware on {port} answered HELLO but not "
                                  f"ENTER_REPL ({exc}); nothing was written") from None
    if info is not None:
        transport = _probe_raw_repl(port, timeout_s)
        if transport is None:
            raise _not_reachable(port, "the firmware took ENTER_REPL, but no REPL answered "
                                       f"within {timeout_s:g} s of its reset")
        return Reached(transport, "enter_repl", info)
    transport = _probe_raw_repl(port, 2 * PROBE_S)
    if transport is None:
        raise _not_reachable(port, incompatible or "no cellguard firmware answered HELLO "
                             "and no MicroPython REPL answered Ctrl-C")
    return Reached(transport, "ctrl_c", None)


def read_board(transport: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The board's boot record and the SHA-256 of the files a deploy looks at."""
    out = _exec(transport, _SCAN % {"dirs": SCANNED_DIRS, "files": SCANNED_FILES},
                "reading the board's files")
    try:
        state = ast.literal_eval(out.decode().strip().splitlines()[-1])
        record = state["record"] if isinstance(state["record"], dict) else {}
        return dict(record), {str(k): str(v) for k, v in state["files"].items()}
    except (ValueError, SyntaxError, IndexError, KeyError, TypeError):
        raise DeployError(f"the board's answer to the file scan is not readable: "
                          f"{out[:200]!r}") from None


# -- the deploy ---------------------------------------------------------------------------
@dataclass
class Result:
    board: str
    port: str
    slot: str
    previous_slot: str
    manifest_sha256: str
    firmware_version: str
    previous_manifest_sha256: str
    reached_by: str
    changes: list[Change]
    files_unchanged: int
    bytes_sent: int
    seconds: float
    result: str  # "deployed", "unchanged", "fell_back", "dry_run"
    boot: str = ""  # INFO's boot status after the deploy
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    manufactured: float | None = None  # the record's date of manufacture (Unix time)
    signed_by: str | None = None  # the trusted key whose signature was checked; None: none
    locked_with: int | None = None  # the board's key id after --lock; None: not asked

    def to_dict(self) -> dict[str, Any]:
        count = {a: sum(1 for c in self.changes if c.action == a)
                 for a in ("send", "copy", "remove")}
        return {
            "board": self.board, "port": self.port, "result": self.result,
            "slot": self.slot, "previous_slot": self.previous_slot,
            "manifest_sha256": self.manifest_sha256,
            "firmware_version": self.firmware_version,
            "previous_manifest_sha256": self.previous_manifest_sha256,
            "reached_by": self.reached_by, "boot": self.boot,
            "files_sent": count["send"], "files_copied_on_board": count["copy"],
            "files_removed": count["remove"], "files_unchanged": self.files_unchanged,
            "bytes_sent": self.bytes_sent, "seconds": round(self.seconds, 3),
            "changes": [c.to_dict() for c in self.changes], "message": self.message,
            "manufactured": self.manufactured, "signed_by": self.signed_by,
            "locked_with": self.locked_with,
        }


def _apply(transport: Any, p: Plan, hook: StepHook, progress: Progress | None) -> int:
    """Write the plan onto the board; return the bytes sent."""
    b = p.build
    to_send = sum(c.size for c in p.sends)
    sent = 0
    _exec(transport, _HELPERS, "preparing the board")
    manifest_path = slots.slot_path(p.slot, MANIFEST)
    if p.files.get(manifest_path) not in (None, "") and any(
            c.path == manifest_path for c in p.changes):
        hook("remove", manifest_path)  # the slot holds no whole build from now on
        _exec(transport, f"os.remove({manifest_path!r})", f"removing {manifest_path}")
    for c in p.changes:
        if c.action == "remove" and c.path != manifest_path:
            hook("remove", c.path)
            call = "os.rmdir" if p.files.get(c.path) == "" else "os.remove"
            _exec(transport, f"{call}({c.path!r})", f"removing {c.path}")
    for d in p.mkdirs:
        hook("mkdir", d)
        _exec(transport, f"os.mkdir({d!r})", f"making {d}")
    by_board = {slots.slot_path(p.slot, name): name for name in b.files}
    loader = slots.slot_path("", slots.LOADER)
    for c in p.changes:
        if c.action == "copy":
            hook("copy", c.path)
            _exec(transport, f"_c({c.source!r}, {c.path!r})", f"copying {c.source} to {c.path}")
        elif c.action == "send":
            data = b.files[by_board[c.path]]
            # The loader is outside the slots: written beside, then renamed over.
            dest = c.path + ".new" if c.path == loader else c.path
            _exec(transport, f"f = open({dest!r}, 'wb')\nw = f.write", f"writing {c.path}")
            for at in range(0, len(data), CHUNK):
                hook("send", f"{c.path}@{at}")
                chunk = binascii.b2a_base64(data[at:at + CHUNK], newline=False)
                _exec(transport, f"w(_a({chunk!r}))", f"writing {c.path}")
                sent += len(data[at:at + CHUNK])
                if progress:
                    progress(sent, to_send, c.path)
            _exec(transport, "f.close()", f"writing {c.path}")
            if dest != c.path:
                _exec(transport, f"try:\n os.rename({dest!r}, {c.path!r})\nexcept OSError:\n"
                                 f" os.remove({c.path!r})\n os.rename({dest!r}, {c.path!r})",
                      f"writing {c.path}")
    for flag in p.stale_flags:  # a Ctrl-C caught a boot before main.py removed its flag
        hook("remove", flag)
        _exec(transport, f"os.remove({flag!r})", f"removing {flag}")
    return sent


def _leave(transport: Any, how: str, port: str, hello_timeout_s: float) -> None:
    """Leave the board as it was found, nothing written: back to the firmware it ran
    (reached by ENTER_REPL), or at its REPL."""
    if how == "enter_repl":
        _reset(transport)
        wait_hello(port, hello_timeout_s)
    else:
        with contextlib.suppress(Exception):
            transport.exit_raw_repl()
            transport.close()


def _reset(transport: Any) -> None:
    from mpremote.transport import TransportError

    try:
        with _quiet():
            transport.exec_raw_no_follow("import machine\nmachine.reset()")
    except (TransportError, OSError) as exc:
        raise DeployError(f"resetting the board: {exc}") from None
    finally:
        with contextlib.suppress(Exception):
            transport.close()


def wait_hello(port: str, timeout_s: float = HELLO_TIMEOUT_S,
               confirm_s: float = CONFIRM_TIMEOUT_S) -> Any:
    """The board's INFO once it answers HELLO again (the port may go and come back, as a
    Pico's native USB does at a reset); a build on trial is asked again until it is
    confirmed or ``confirm_s`` has passed."""
    from ..link.client import BoardClient

    deadline = time.monotonic() + timeout_s
    info = None
    last = ""
    while info is None or info.boot == "on trial":
        if time.monotonic() >= deadline:
            break
        try:
            with BoardClient(port) as client:
                info = client.hello(timeout_s=2.0)
                if info.boot == "on trial":
                    deadline = min(deadline, time.monotonic() + confirm_s)
                    time.sleep(0.2)
        except (PortError, NotABoardError) as exc:
            last = str(exc)
            time.sleep(0.2)
    if info is None:
        raise DeployError(f"the board did not answer HELLO within {timeout_s:g} s of the "
                          f"reset ({last}); its next boot runs the new build on trial and "
                          "falls back to the previous one if that fails")
    return info


def deploy(board: str | None, port: str, *, dry_run: bool = False,
           the_build: Build | None = None, bundle: Path | None = None,
           firmware: Path | None = None, hook: StepHook | None = None,
           progress: Progress | None = None, log: Callable[[str], None] | None = None,
           hello_timeout_s: float = HELLO_TIMEOUT_S, allow_unsigned: bool = False,
           trusted: dict[str, signing.TrustedKey] | None = None,
           keys: KeyStore | None = None, presence: Presence | None = None,
           allow_downgrade: bool = False) -> Result:
    """Deploy the firmware for ``board`` (built now and signed with this host's signing
    key, if it has one), or ``the_build``, or the build folder ``bundle``, to ``port``.
    The build is checked first (:func:`check_build`); nothing reaches the board unless it
    passes. ``keys`` and ``presence``: for a locked board (:func:`reach_repl`). A build
    older than the board's minimum version is refused (:class:`DowngradeRefused`) unless
    ``allow_downgrade``, which lowers the minimum to its version in the switch."""
    started = time.monotonic()
    hook = hook or (lambda phase, detail: None)
    say = log or (lambda text: None)
    timings: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        where = None
        if the_build is None and bundle is not None:
            the_build = read_build(bundle)
        elif the_build is None:
            if board is None:
                raise DeployError("name the board to build for, or a build folder to deploy")
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cellguard-")))
            the_build = build(board, tmp / "build", firmware=firmware)
            where = f"the {the_build.board} build made here" + (
                "" if the_build.signed_by else
                f" (this host has no signing key: {signing.default_key_path()})")
        b = the_build
        timings["build_s"] = time.monotonic() - started
        verdict = check_build(b, allow_unsigned, trusted, say, where)
        say(f"{'built' if bundle is None else 'read'} {b.board} firmware "
            f"{b.manifest['firmware_version']}, manifest {b.sha256[:12]}, "
            + (f"signed by trusted key {verdict.signed_by} ({verdict.trusted_as})"
               if verdict.verified else "NOT signed by a trusted key"))
        reached = reach_repl(port, keys=keys, presence=presence)
        transport = reached.transport
        say("reached the REPL " + ("by ENTER_REPL (the firmware stopped, output open)"
                                   if reached.how == "enter_repl" else "by Ctrl-C"))
        timings["reach_s"] = time.monotonic() - started - timings["build_s"]
        try:
            record, files = read_board(transport)
            p = plan(b, record, files)
        except BaseException:
            with contextlib.suppress(Exception):
                transport.close()
            raise
        previous = reached.info.manifest_sha256 if reached.info is not None else ""
        result = Result(b.board, port, p.slot, slots.running_slot(record), b.sha256,
                        str(b.manifest["firmware_version"]), previous, reached.how,
                        p.changes, p.unchanged, 0, 0.0, "dry_run", timings=timings,
                        signed_by=verdict.signed_by)
        version = str(b.manifest["firmware_version"])
        floor = slots.minimum(record)
        lower_to = None
        if slots.is_downgrade(version, record):  # never p.running (plan)
            if not allow_downgrade:
                _leave(transport, reached.how, port, hello_timeout_s)
                raise DowngradeRefused(
                    f"firmware {version} is older than the board's minimum version {floor} "
                    "(the last build it confirmed): the board refuses to boot an older build "
                    "(rollback protection). Nothing was written; --allow-downgrade deploys "
                    "it and lowers the minimum to its version")
            lower_to = version
            say(f"warning: firmware {version} is older than the board's minimum version "
                f"{floor}: deploying it and lowering the minimum (--allow-downgrade)")
            result.message = f"the board's minimum version lowered from {floor} to {version}"
        if dry_run:
            if p.running:
                result.message = "the board runs this build already: nothing to do"
            _leave(transport, reached.how, port, hello_timeout_s)
            result.seconds = time.monotonic() - started
            return result
        try:
            if not p.running:
                result.bytes_sent = _apply(transport, p, hook, progress)
                hook("switch", p.slot)
                _exec(transport, slots.switch_source(slots.switch_record(record, lower_to)),
                      "the switch to the new slot")
                hook("switched", p.slot)
            elif p.stale_flags:
                _apply(transport, p, hook, progress)
        except BaseException:
            with contextlib.suppress(Exception):
                transport.close()
            raise
        timings["copy_s"] = time.monotonic() - started - timings["build_s"] - timings["reach_s"]
        hook("reset", "")
        _reset(transport)
        say("reset; waiting for HELLO")
        hook("hello", "")
        info = wait_hello(port, hello_timeout_s)
        result.boot = info.boot
        result.seconds = time.monotonic() - started
        if info.manifest_sha256 == b.sha256 and info.firmware_version == \
                b.manifest["firmware_version"]:
            result.result = "unchanged" if p.running else "deployed"
            if info.boot == "on trial":
                result.message = (f"the new build is still on trial after "
                                  f"{CONFIRM_TIMEOUT_S:g} s: its control loop has not "
                                  "completed a pass; the next boot falls back")
                result.result = "fell_back"
            return result
        if info.boot.startswith(("fell back", "running the previous")):
            result.result = "fell_back"
            why = info.boot.partition(": ")[2]  # the boot check refused it, unrun
            why = (f"the board refused the new build ({why})" if why
                   else "the new build did not reach its control loop")
            result.message = (f"{why}: the board fell back to the previous one (manifest "
                              f"{info.manifest_sha256[:12] or 'none'}, firmware "
                              f"{info.firmware_version}); `cellguard events` shows the "
                              "boot record")
            return result
        raise DeployError(
            f"the board answers with firmware {info.firmware_version} and manifest "
            f"{info.manifest_sha256 or '(none)'}, not the {b.manifest['firmware_version']} "
            f"and {b.sha256} just deployed (boot: {info.boot or 'not reported'})")
    raise AssertionError("unreachable")  # pragma: no cover


def record_manufacture(result: Result, port: str, manufactured: float,
                       keys: KeyStore | None = None) -> None:
    """Give the board its date of manufacture (the lifetime record keeps the one of the
    first deploy that gave it: a later, different date is refused and the message
    says which one stands)."""
    from ..link.client import BoardClient, BoardRefused

    with BoardClient(port, keys=keys) as client:
        client.hello()
        try:
            client.commission(manufactured=manufactured)
        except BoardRefused as exc:
            if exc.error != "already_set":
                raise
        result.manufactured = client.lifetime().manufactured
    if result.manufactured != int(manufactured):
        kept = time.strftime("%Y-%m-%d", time.gmtime(result.manufactured or 0))
        result.message = (result.message + " " if result.message else "") + (
            f"the board keeps the date of manufacture {kept} of its first deploy")


def lock_after_deploy(result: Result, port: str, keys: KeyStore | None = None) -> None:
    """``--lock``: give the board, now running the deployed build, a key made here
    (:func:`cellguard.link.locking.lock`: kept in the key store by its unique id). A
    board locked already keeps its key, which this host must hold."""
    from ..link.client import BoardClient
    from ..link.locking import lock

    with BoardClient(port, keys=keys) as client:
        info = client.hello()
        if info.locked:
            client.board_key()  # NoBoardKey, naming the key store, if this host lacks it
            result.locked_with = info.key_id
            note = (f"the board was locked already (key {info.key_id}, held in "
                    f"{client.keys.folder}): it keeps that key")
        else:
            key = lock(client)
            result.locked_with = key.key_id
            note = (f"locked board {info.unique_id} with key {key.key_id} (kept in "
                    f"{client.keys.folder}): writes now need it")
    result.message = (result.message + " " if result.message else "") + note


# -- the command --------------------------------------------------------------------------
class ProgressBar:
    """A one-line bar on stderr (a terminal), or a line per file (a pipe)."""

    WIDTH = 30

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = ""
        self.done = False

    def __call__(self, sent: int, total: int, path: str) -> None:
        filled = self.WIDTH * sent // max(total, 1)
        line = (f"sending [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                f"{sent / 1000:.1f}/{total / 1000:.1f} KB  {path}")
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last)))
        elif path != self.last.rsplit(" ", 1)[-1] or sent == total:
            self.stream.write(line + "\n")
        self.last = line
        self.stream.flush()

    def end(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()


def render(r: Result) -> list[str]:
    d = r.to_dict()
    verb = {"deployed": "deployed", "unchanged": "already running", "fell_back":
            "FELL BACK:", "dry_run": "would deploy"}[r.result]
    lines = [f"{verb} {r.board} firmware {r.firmware_version} (manifest "
             f"{r.manifest_sha256[:12]}) {'into' if r.result == 'dry_run' else 'on'} slot "
             f"{r.slot} of {r.port}"]
    for c in r.changes:
        lines.append(f"  {c.action:6} {c.path}" + (f" ({c.size:,} B)" if c.size else "")
                     + (f" from {c.source}" if c.source else ""))
    size = sum(c.size for c in r.changes if c.action == "send")
    lines.append(f"  {d['files_sent']} sent ({size:,} B), "
                 f"{d['files_copied_on_board']} copied on the board, {d['files_removed']} "
                 f"removed, {r.files_unchanged} unchanged; {r.seconds:.1f} s")
    lines.append("  signed by trusted key " + r.signed_by if r.signed_by else
                 "  NOT signed by a trusted key (--allow-unsigned)")
    if r.boot:
        lines.append(f"  boot: {r.boot}")
    if r.message:
        lines.append(f"  {r.message}")
    return lines


def command(args: Any) -> int:
    """``cellguard deploy``."""
    from ..units import to_json

    bar = None if args.json else ProgressBar()

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr)

    def warn(text: str) -> None:
        print(f"cellguard: {text}", file=sys.stderr)  # also under --json: it matters

    def log(text: str) -> None:
        (warn if text.startswith("warning:") else say)(text)

    try:
        result = deploy(args.board, args.port, dry_run=args.dry_run, progress=bar, log=log,
                        bundle=Path(args.bundle) if args.bundle else None,
                        allow_unsigned=args.allow_unsigned,
                        allow_downgrade=args.allow_downgrade)
    finally:
        if bar is not None:
            bar.end()
    ok = result.result in ("deployed", "unchanged")
    if args.manufactured is not None and ok:
        record_manufacture(result, args.port, args.manufactured)
    if args.lock and ok:
        lock_after_deploy(result, args.port)
    elif args.lock and result.result == "fell_back":
        result.message += " The board was not locked: its new build did not run."
    if args.json:
        print(to_json(result.to_dict()))
    else:
        print("\n".join(render(result)))
    return 1 if result.result == "fell_back" else 0
