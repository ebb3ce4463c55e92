"""Shared fixtures (helpers live in fakes.py, importable as ``fakes``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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

    fs = FlashModel(mount_point="/flash")
    for module in (cellguard_fw.events, cellguard_fw.latches):
        monkeypatch.setattr(module, "open", fs.open, raising=False)
        monkeypatch.setattr(module, "os", fs)
    return fs
