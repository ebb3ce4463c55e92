"""Shared fixtures (helpers live in fakes.py, importable as ``fakes``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fakes import FakeBoard

from cellguard.protocol.codec import Frame


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
