"""Shared fixtures (helpers live in fakes.py, importable as ``fakes``)."""

from __future__ import annotations

import fcntl
import importlib
import os
import pickle
import signal
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fakes import FakeBoard

from cellguard.deploy.signing import SIGNING_KEY_ENV, TRUSTED_KEYS_ENV, new_key
from cellguard.link.auth import KEYS_ENV
from cellguard.protocol.codec import Frame
from cellguard.sim.flash import FlashModel


def pytest_configure(config: pytest.Config) -> None:
    # Started in the background of a shell without job control (or under nohup), the
    # suite inherits SIGINT ignored, and so would every process a test starts and then
    # stops with Ctrl-C as a user does (`cellguard sim`, `monitor`): Python keeps an
    # ignored SIGINT ignored. The tests need Ctrl-C to work: restore it.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # Board keys: a key store of the suite's own (and its subprocesses'), never the
    # user's. A test that locks a board finds the key there.
    os.environ[KEYS_ENV] = tempfile.mkdtemp(prefix="cellguard-test-keys-")
    # A signing key of the suite's own, so builds are signed and deploys check them as
    # they do for a user (docs/security.md, "Signed builds"), and no trusted key but it.
    signing = Path(tempfile.mkdtemp(prefix="cellguard-test-signing-"))
    os.environ[SIGNING_KEY_ENV] = str(signing / "release.key")
    os.environ[TRUSTED_KEYS_ENV] = str(signing / "trusted")
    new_key()


@pytest.fixture
def fake_board() -> Iterator[Callable[[Callable[[Frame], bytes]], FakeBoard]]:
    boards: list[FakeBoard] = []

    def make(respond: Callable[[Frame], bytes]) -> FakeBoard:
        board = FakeBoard(respond)
        boards.append(board)
        return board

    yield make
    for b in boards:
        b.close()


@pytest.fixture
def flash() -> Iterator[FlashModel]:
    """A modelled LittleFS flash mounted at /flash for the firmware under CPython:
    the firmware modules that touch files see it as their ``open`` and ``os``."""
    from cellguard.sim.firmware_files import mount_flash

    fs = FlashModel(mount_point="/flash")
    unmount = mount_flash(fs)
    yield fs
    unmount()


# -- long jobs beside the suite ---------------------------------------------------------
# The HIL suite on the two virtual boards and on the 16S chip board (SoC full cycle
# included) run in their own processes beside the rest of the suite, from the end of
# the collection (tests/hil_background.py); their tests, moved to the end, collect the
# results through the ``virtual_suites`` and ``chip_suite`` fixtures. Under
# pytest-xdist (``make test``: two workers) the controller starts them, once, in a
# folder it hands to every worker.
BACKGROUND = {  # collecting test -> its module (start_suites(folder), suite_runs(folder))
    "test_hil_virtual.py::test_the_whole_hil_suite_is_green_on_both_virtual_boards":
        "test_hil_virtual",
    "test_hil_chip_board.py::test_the_hil_suite_is_green_on_the_16s_chip_board":
        "test_hil_chip_board",
    "test_hil_rig.py::test_the_hil_suite_is_green_through_the_instrument_rig":
        "test_hil_rig",
}
_FOLDER = pytest.StashKey[Path]()  # where the runs live
_STARTED = pytest.StashKey[dict[str, Any]]()  # module -> its runs, in the starting process
_WORKER_KEY = "cellguard_hil_background"


def _background_module(nodeid: str) -> str | None:
    return next((m for test, m in BACKGROUND.items() if nodeid.endswith(test)), None)


def _folder(config: pytest.Config) -> Path:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # an xdist worker: the controller's folder
        return Path(workerinput[_WORKER_KEY])
    if _FOLDER not in config.stash:
        config.stash[_FOLDER] = Path(tempfile.mkdtemp(prefix="cellguard-hil-background-"))
    return config.stash[_FOLDER]


def _start(config: pytest.Config, nodeids: Iterable[str]) -> None:
    started = config.stash.setdefault(_STARTED, {})
    for nodeid in nodeids:
        module = _background_module(nodeid)
        if module is not None and module not in started:
            started[module] = importlib.import_module(module).start_suites(
                _folder(config) / module)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The HIL suite on the simulated board first (its SoC full cycle is the longest
    # single test here: at the end it kept one worker busy with the other idle), the
    # tests that wait for the background runs last; otherwise as collected (stable).
    items.sort(key=lambda item: (_background_module(item.nodeid) is not None,
                                 not item.nodeid.startswith("hil_tests/")))


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if config.option.collectonly or hasattr(config, "workerinput"):
        return  # an xdist worker: the controller starts them
    if config.pluginmanager.hasplugin("dsession"):
        return  # the xdist controller: it collects nothing itself (below)
    _start(config, (item.nodeid for item in session.items))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: every worker learns where the controller's runs live."""
    node.workerinput[_WORKER_KEY] = str(_folder(node.config))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """xdist: the controller starts the runs once a worker has collected."""
    if not node.config.option.collectonly:
        _start(node.config, ids)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    for runs in config.stash.get(_STARTED, {}).values():
        for run in runs.values():
            run.stop()
    if _FOLDER in config.stash:
        from hil_background import remove

        remove(config.stash[_FOLDER])


def _runs(config: pytest.Config, module: str) -> Any:
    """The module's runs, started here if nothing started them yet (a test run
    directly, e.g. by node id with a selection the collection hooks did not see)."""
    folder = _folder(config) / module
    started = config.stash.get(_STARTED, {})
    if module in started or folder.is_dir():
        return importlib.import_module(module).suite_runs(folder)
    _start(config, [next(t for t, m in BACKGROUND.items() if m == module)])
    return config.stash[_STARTED][module]


T = TypeVar("T")


def shared_result(config: pytest.Config, key: str, compute: Callable[[], T]) -> T:
    """A module fixture's costly result, computed once in the session: pytest-xdist
    spreads a module's tests over both workers, and each would build the module's
    fixtures. The first computes it and leaves it pickled in the session's folder;
    the other waits on the lock and reads it (a failure is not kept: the next one
    computes again, and fails the same way)."""
    folder = _folder(config) / "shared"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.pickle"
    with (folder / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            return pickle.loads(path.read_bytes())  # type: ignore[no-any-return]
        value = compute()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(value))
        tmp.rename(path)
        return value


@pytest.fixture(scope="session")
def shared(request: pytest.FixtureRequest) -> Callable[[str, Callable[[], Any]], Any]:
    """``shared(key, compute)``: :func:`shared_result` in this session."""
    return lambda key, compute: shared_result(request.config, key, compute)


@pytest.fixture
def virtual_suites(request: pytest.FixtureRequest) -> Any:
    """The HIL suite's runs on the two virtual boards (``hil_background.SuiteRun`` by
    board), running since the collection ended."""
    return _runs(request.config, "test_hil_virtual")


@pytest.fixture
def rig_suite(request: pytest.FixtureRequest) -> Any:
    """The HIL suite's run through the emulated instrument rig, running since the
    collection ended."""
    return _runs(request.config, "test_hil_rig")


@pytest.fixture
def chip_suite(request: pytest.FixtureRequest) -> Any:
    """The HIL suite's run on the 16S chip board, running since the collection ended."""
    return _runs(request.config, "test_hil_chip_board")
