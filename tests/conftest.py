"""Shared fixtures (helpers live in fakes.py, importable as ``fakes``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fakes import FakeBoard

from cellguard.protocol.codec import Frame
from cellguard.sim.flash import FlashModel


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
def flash(monkeypatch: pytest.MonkeyPatch) -> FlashModel:
    """A modelled LittleFS flash mounted at /flash for the firmware under CPython:
    the firmware modules that touch files see it as their ``open`` and ``os``."""
    import cellguard_fw.events
    import cellguard_fw.latches
    import cellguard_fw.lifetime

    fs = FlashModel(mount_point="/flash")
    for module in (cellguard_fw.events, cellguard_fw.latches, cellguard_fw.lifetime):
        monkeypatch.setattr(module, "open", fs.open, raising=False)
        monkeypatch.setattr(module, "os", fs, raising=False)
    return fs


# -- long jobs beside the suite ---------------------------------------------------------
# The HIL suite on the two virtual boards and on the 16S chip board (SoC full cycle
# included) run in their own processes beside the rest of the suite, from the end of
# the collection (tests/hil_background.py); their tests, moved to the end, collect the
# results through the ``virtual_suites`` and ``chip_suite`` fixtures.
BACKGROUND = {  # collecting test -> its module (whose start_suites() starts the runs)
    "test_hil_virtual.py::test_the_whole_hil_suite_is_green_on_both_virtual_boards":
        "test_hil_virtual",
    "test_hil_chip_board.py::test_the_hil_suite_is_green_on_the_16s_chip_board":
        "test_hil_chip_board",
}
_RUNS = pytest.StashKey[dict[str, Any]]()  # module -> its runs, once started


def _background_module(nodeid: str) -> str | None:
    return next((m for test, m in BACKGROUND.items() if nodeid.endswith(test)), None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: _background_module(item.nodeid) is not None)  # stable


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    for item in session.items:
        module = _background_module(item.nodeid)
        if module is not None:
            _runs(session.config, module)


def _runs(config: pytest.Config, module: str) -> Any:
    started = config.stash.setdefault(_RUNS, {})
    if module not in started:
        started[module] = importlib.import_module(module).start_suites()
    return started[module]


def pytest_sessionfinish(session: pytest.Session) -> None:
    for runs in session.config.stash.get(_RUNS, {}).values():
        for run in runs.values():
            run.stop()


@pytest.fixture
def virtual_suites(request: pytest.FixtureRequest) -> Any:
    """The HIL suite's runs on the two virtual boards (``hil_background.SuiteRun`` by
    board), running since the collection ended."""
    return _runs(request.config, "test_hil_virtual")


@pytest.fixture
def chip_suite(request: pytest.FixtureRequest) -> Any:
    """The HIL suite's run on the 16S chip board, running since the collection ended."""
    return _runs(request.config, "test_hil_chip_board")
