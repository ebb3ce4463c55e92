"""Shared fixtures (helpers live in fakes.py, importable as ``fakes``)."""

from __future__ import annotations

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
# The HIL suite on the 16S chip board, SoC full cycle included, is six hours of board
# time (about six minutes here): it runs in its own processes beside the rest of the
# suite, and its test, moved to the end, collects the result through the
# ``chip_suite`` fixture (tests/test_hil_chip_board.py). It starts once the HIL suite
# on the two virtual boards is done: that test, moved to the front, paces two boards
# at 20x against their watchdogs and needs both cores to itself.
CHIP_SUITE = "test_hil_chip_board.py::test_the_hil_suite_is_green_on_the_16s_chip_board"
VIRTUAL_SUITE = "test_hil_virtual.py::test_the_whole_hil_suite_is_green_on_both_virtual_boards"
_CHIP = pytest.StashKey[Any]()
_CHIP_AFTER = pytest.StashKey[str]()  # the test whose end starts it


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: (not item.nodeid.endswith(VIRTUAL_SUITE),
                                 item.nodeid.endswith(CHIP_SUITE)))  # stable otherwise


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    ids = [item.nodeid for item in session.items]
    if not any(i.endswith(CHIP_SUITE) for i in ids):
        return
    first = ids[0]
    if first.endswith(VIRTUAL_SUITE) and len(ids) > 1:
        session.config.stash[_CHIP_AFTER] = first
    else:
        _start_chip_suite(session.config)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if item.config.stash.get(_CHIP_AFTER, None) == item.nodeid:
        _start_chip_suite(item.config)


def _start_chip_suite(config: pytest.Config) -> Any:
    if _CHIP not in config.stash:
        from test_hil_chip_board import ChipSuite

        config.stash[_CHIP] = ChipSuite.start()
    return config.stash[_CHIP]


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(_CHIP, None)
    if run is not None:
        run.stop()


@pytest.fixture
def chip_suite(request: pytest.FixtureRequest) -> Any:
    """The chip board's HIL suite (``test_hil_chip_board.ChipSuite``), running since the
    virtual boards' suite ended (or since the collection, without that test)."""
    return _start_chip_suite(request.config)
