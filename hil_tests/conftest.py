"""The HIL suite's target, client and rig: the same tests on a simulated or a real board.

``pytest hil_tests`` runs against a simulated ``sim-4s`` whose firmware runs
under MicroPython; ``--board NAME`` picks another simulated board,
``--runtime cpython`` the other interpreter, ``--virtual`` a virtual dev board
(``--board pico-4s`` or ``esp32-4s``: real MicroPython running the working tree's
firmware from its flash, through ``machine`` and the board file's pins, with the
plant wired to them; ``--sim-speed`` times the host's clock, default
``VIRTUAL_SPEED``), ``--port URL`` a real board (any pyserial URL). Tests use only these fixtures:

- ``client``: a :class:`cellguard.hil.HilClient` on the board's port, HELLO
  answered, clock set, the board ready (output closed). Afterwards the
  configuration is put back and latched faults are cleared, so a real board is
  left as it was found.
- ``rig``: forces plant conditions (:class:`cellguard.hil.Rig`): the
  simulator's plant; lab instruments (``--rig rig.toml``: supplies, loads, a cell
  emulator, a relay card over SCPI; on a simulated board a rig file whose
  resources are ``emulated`` drives instruments emulated against the plant,
  docs/hil.md); on a real board an operator (``--operator -s``), or
  nothing (each stimulus skips its test with what it would need).
- ``limits``: the board's protections and limits as it reports them.
- ``port``: the port, for tools that open it themselves (the logger), the
  board ready as ``client`` leaves it (output closed).

Every test records the board and runtime it ran on (JUnit properties, a
section of its report, the header and the summary).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cellguard.boards import BoardFileError, load_board
from cellguard.errors import CellguardError
from cellguard.hil import (
    VIRTUAL_SPEED,
    BoardLimits,
    HilClient,
    HilError,
    InstrumentRig,
    OperatorRig,
    PortTarget,
    Rig,
    RigSpec,
    SimTarget,
    Target,
    VirtualTarget,
    load_rig,
    restore_config,
)
from cellguard.sim import RUNTIMES
from cellguard.sim.virtual import MCUS

DEFAULT_BOARD = "sim-4s"
DEFAULT_VIRTUAL_BOARD = "pico-4s"
DEFAULT_RUNTIME = "micropython"
READY_S = 15.0  # board time a board may take to close its output (precharge, releases)


@dataclass
class HilOptions:
    port: str | None
    board: str
    runtime: str
    seed: int
    speed: float
    operator: bool
    interactive: bool  # pytest -s: the terminal is the operator's
    virtual: bool = False  # a virtual dev board (real MicroPython, the plant on its pins)
    locked: bool = False  # each simulated board is locked with a key the suite holds
    rig: RigSpec | None = None  # lab instruments (--rig FILE)

    @property
    def simulated(self) -> bool:
        return self.port is None


HIL = pytest.StashKey[HilOptions]()
PROPS = pytest.StashKey[dict[str, str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cellguard HIL", "cellguard hardware-in-the-loop suite")
    group.addoption("--board", default=None,
                    help=f"simulated board: a name in boards/ or a JSON file "
                         f"(default {DEFAULT_BOARD})")
    group.addoption("--runtime", default=None, choices=sorted(RUNTIMES),
                    help=f"firmware interpreter of the simulated board "
                         f"(default {DEFAULT_RUNTIME})")
    group.addoption("--port", default=None,
                    help="run against a real board on this serial port or pyserial URL "
                         "(e.g. /dev/ttyACM0) instead of a simulated one")
    group.addoption("--operator", action="store_true",
                    help="real board: ask the operator at the terminal to set plant "
                         "conditions (needs -s)")
    group.addoption("--virtual", action="store_true",
                    help=f"a virtual dev board: the firmware on its flash under real "
                         f"MicroPython, the plant on its pins (--board: one with an mcu, "
                         f"default {DEFAULT_VIRTUAL_BOARD}; --sim-speed default "
                         f"{VIRTUAL_SPEED:g})")
    group.addoption("--rig", default=None, metavar="RIG.toml",
                    help="lab instruments force plant conditions, as this rig file says "
                         "(docs/hil.md); with --port a real bench, without it a simulated "
                         "board and instruments emulated against its plant (resources "
                         "\"emulated\")")
    group.addoption("--seed", type=int, default=7, help="simulated plant seed (default 7)")
    group.addoption("--locked", action="store_true",
                    help="lock each simulated or virtual board with a key the suite holds "
                         "(its key store: $CELLGUARD_KEYS), so every write goes inside AUTH "
                         "(docs/security.md); a real board is as it is, its key in the store")
    group.addoption("--sim-speed", type=float, default=0.0,
                    help="simulated seconds per wall second (default 0: as fast as it goes; "
                         f"a virtual board: {VIRTUAL_SPEED:g})")


def pytest_configure(config: pytest.Config) -> None:
    port = config.getoption("--port")
    board = config.getoption("--board")
    runtime = config.getoption("--runtime")
    if port and board:
        raise pytest.UsageError("--port (a real board) and --board (a simulated one) "
                                "exclude each other")
    if port and runtime:
        raise pytest.UsageError("--runtime is for simulated boards; a real board runs its "
                                "own MicroPython")
    virtual = bool(config.getoption("--virtual"))
    if virtual and port:
        raise pytest.UsageError("--virtual (a virtual dev board) and --port (a real board) "
                                "exclude each other")
    if virtual and runtime:
        raise pytest.UsageError("--runtime is for simulated boards; a virtual board runs "
                                "real MicroPython")
    rig = None
    if config.getoption("--rig"):
        if virtual or config.getoption("--operator"):
            raise pytest.UsageError("--rig (lab instruments) excludes --virtual and "
                                    "--operator")
        try:
            rig = load_rig(config.getoption("--rig"))
        except HilError as exc:
            raise pytest.UsageError(str(exc)) from None
        if rig.emulated and port:
            raise pytest.UsageError(f"{rig.path}: its instruments are emulated against a "
                                    "simulated board's plant; a real board (--port) needs "
                                    "a rig file of real instruments")
        if not rig.emulated and not port:
            raise pytest.UsageError(f"{rig.path}: real instruments drive a real board: give "
                                    "its --port (or a rig file whose resources are "
                                    "\"emulated\" for a simulated board)")
    default_board = DEFAULT_VIRTUAL_BOARD if virtual else DEFAULT_BOARD
    if not port:
        try:
            spec = load_board(board or default_board)
        except BoardFileError as exc:
            raise pytest.UsageError(str(exc)) from None
        if virtual and spec.get("mcu") not in MCUS:
            raise pytest.UsageError(
                f"board {spec.get('name', board)!r} names no mcu a virtual board emulates "
                f"({', '.join(MCUS)}): choose a board file for one (pico-4s, esp32-4s)")
    speed = float(config.getoption("--sim-speed"))
    if virtual and not speed > 0:
        speed = VIRTUAL_SPEED
    config.stash[HIL] = HilOptions(
        port=port, board=board or default_board, runtime=runtime or DEFAULT_RUNTIME,
        seed=int(config.getoption("--seed")), speed=speed if speed > 0 else math.inf,
        operator=bool(config.getoption("--operator")),
        interactive=config.getoption("capture") == "no", virtual=virtual,
        locked=bool(config.getoption("--locked")), rig=rig,
    )
    if config.stash[HIL].locked and port:
        raise pytest.UsageError("--locked is for simulated and virtual boards; a real board "
                                "is locked or open as it is (cellguard lock)")


def _rig_summary(o: HilOptions) -> str:
    if o.rig is not None:
        where = "emulated against the plant" if o.rig.emulated else "on the bench"
        return f"instruments of rig {o.rig.name!r} ({o.rig.path}), {where}"
    if o.virtual:
        return "the plant wired to the virtual board's pins"
    if o.simulated:
        return "the simulator's plant"
    if o.operator:
        return "an operator at the terminal" if o.interactive else "none (--operator needs -s)"
    return "none: tests that force plant conditions skip (--operator -s asks an operator)"


def pytest_report_header(config: pytest.Config) -> list[str]:
    o = config.stash.get(HIL, None)
    if o is None:
        return []
    if o.virtual:
        return [f"cellguard HIL: virtual board {o.board} (the working tree's firmware on its "
                f"flash, real MicroPython), seed {o.seed}, {o.speed:g}x; rig: "
                f"{_rig_summary(o)}"]
    if o.simulated:
        speed = "as fast as it goes" if math.isinf(o.speed) else f"{o.speed:g}x"
        return [f"cellguard HIL: simulated board {o.board}, firmware under {o.runtime}, "
                f"seed {o.seed}, {speed}{', locked' if o.locked else ''}; rig: "
                f"{_rig_summary(o)}"]
    return [f"cellguard HIL: real board on {o.port}; rig: {_rig_summary(o)}"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    props = config.stash.get(PROPS, None)
    if props is None:
        return
    terminalreporter.write_sep("-", "cellguard HIL")
    terminalreporter.write_line(
        "ran on " + ", ".join(f"{k} {v}" for k, v in props.items() if v))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    report = yield
    props = item.config.stash.get(PROPS, None)
    if props and (report.when == "call" or report.failed):
        report.sections.append(
            ("cellguard HIL", ", ".join(f"{k} {v}" for k, v in props.items() if v)))
    return report


@pytest.fixture(scope="session")
def hil_options(pytestconfig: pytest.Config) -> HilOptions:
    return pytestconfig.stash[HIL]


def _make_rig(o: HilOptions, target: Target) -> Rig:
    if o.rig is not None:
        try:
            return InstrumentRig(target, o.rig)
        except CellguardError as exc:
            pytest.exit(f"cellguard HIL: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
    if o.operator and o.interactive:
        return OperatorRig(target)
    if o.operator:
        return Rig(target, "--operator needs -s (pytest captures the terminal otherwise)")
    return Rig(target)


@pytest.fixture(scope="session")
def _port_target(hil_options: HilOptions) -> Iterator[PortTarget]:
    assert hil_options.port is not None
    target = PortTarget(hil_options.port)
    target.probe()  # a clear error on every test when no board answers
    target.rig = _make_rig(hil_options, target)
    try:
        yield target
    finally:
        if isinstance(target.rig, InstrumentRig):
            target.rig.close()  # currents zero, outputs off, relays at rest
        target.close()


@pytest.fixture(autouse=True)
def _hil_properties(request: pytest.FixtureRequest, hil_options: HilOptions) -> None:
    """Board and runtime of this run: JUnit properties of the test and of the suite."""
    config = request.config
    if PROPS not in config.stash:
        if hil_options.virtual:
            props = {"board": hil_options.board, "runtime": VirtualTarget.runtime,
                     "rig": "virtual board plant", "seed": str(hil_options.seed),
                     "speed": f"{hil_options.speed:g}"}
        elif hil_options.simulated:
            props = {"board": hil_options.board, "runtime": hil_options.runtime,
                     "rig": "simulator" if hil_options.rig is None
                     else f"instruments ({hil_options.rig.name}, emulated)",
                     "seed": str(hil_options.seed)}
        else:
            props = request.getfixturevalue("_port_target").properties()
        if hil_options.locked:
            props["writes"] = "authenticated (locked)"
        config.stash[PROPS] = props
        record_suite = request.getfixturevalue("record_testsuite_property")
        for key, value in props.items():
            record_suite(key, value)
    # What record_property does, without its warning about JUnit's xunit2 schema.
    request.node.user_properties.extend(config.stash[PROPS].items())


@pytest.fixture
def target(request: pytest.FixtureRequest, hil_options: HilOptions) -> Iterator[Target]:
    """A fresh simulated or virtual board per test, or the session's real board."""
    if hil_options.virtual:
        virtual_target = VirtualTarget(hil_options.board, hil_options.seed,
                                       hil_options.speed)
        try:
            if hil_options.locked:
                _lock(virtual_target)
            yield virtual_target
        finally:
            virtual_target.close()
    elif hil_options.simulated:
        sim_target = SimTarget(hil_options.board, hil_options.runtime, hil_options.seed,
                               hil_options.speed)
        bench = None
        try:
            if hil_options.rig is not None:
                from cellguard.hil.bench import EmulatedBench

                bench = EmulatedBench(sim_target.sim, hil_options.rig)
                sim_target.rig = InstrumentRig(sim_target, hil_options.rig, bench)
            if hil_options.locked:
                _lock(sim_target)
            yield sim_target
        finally:
            if isinstance(sim_target.rig, InstrumentRig):
                sim_target.rig.close()
            if bench is not None:
                bench.close()
            sim_target.close()
    else:
        port_target: PortTarget = request.getfixturevalue("_port_target")
        try:
            yield port_target
        finally:
            port_target.close_clients()


def _lock(target: Target) -> None:
    """Give a fresh simulated board a key (cellguard lock): the suite's clients find it
    in the key store and send every write inside AUTH."""
    from cellguard.link.locking import lock

    client = target.connect()
    try:
        client.hello(timeout_s=10)
        lock(client, rotate=client.info is not None and client.info.locked)
    finally:
        target.close_clients()


@pytest.fixture
def rig(target: Target) -> Rig:
    return target.rig


@pytest.fixture
def port(target: Target) -> str:
    """The board's port, for tools that open it themselves (the logger), with the
    board ready as ``client`` leaves it (output closed) and nothing holding the
    port open."""
    c = target.connect()
    try:
        c.hello()
        target.rig.prepare(c)
        _ready(c)
    finally:
        c.close()
    return target.port


def _ready(client: HilClient) -> None:
    """Wait until the board has its output closed; clear what a previous run latched."""
    t = client.next_telemetry()
    if t.faults:
        client.clear_faults()
    client.wait_telemetry("state active (the board ready, its output closed)",
                          lambda t: t.state == "active", READY_S)


@pytest.fixture
def client(target: Target) -> Iterator[HilClient]:
    c = target.connect()
    c.hello()
    c.time_sync()
    target.rig.prepare(c)
    baseline = {e.key: e.value for e in c.config_dump()}
    _ready(c)
    yield c
    # Leave the board as it was found: plant at rest, configuration, no latches.
    try:
        target.rig.restore()
        if not c.is_open:
            c.reconnect(wait_s=5.0)
        restore_config(c, baseline)
        if c.fault_state()["latched"]:
            c.run(max(p.release_delay_ms for p in BoardLimits.read(c).protections.values())
                  / 1000.0 + 2.0)
            c.clear_faults()
    except (CellguardError, AssertionError, OSError) as exc:
        warnings.warn(f"cellguard HIL: could not restore the board after the test: {exc}",
                      stacklevel=1)


@pytest.fixture
def limits(client: HilClient) -> BoardLimits:
    return BoardLimits.read(client)
