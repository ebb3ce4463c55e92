"""HIL suite options: which simulated board and which firmware runtime."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cellguard.sim import RUNTIMES, SimulatedBoard


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cellguard HIL")
    group.addoption("--board", default="sim-4s", help="simulated board name (default sim-4s)")
    group.addoption("--runtime", default="micropython", choices=sorted(RUNTIMES),
                    help="firmware interpreter of the simulated board (default micropython)")


@pytest.fixture
def board_name(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--board"))


@pytest.fixture
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--runtime"))


@pytest.fixture
def sim(board_name: str, runtime: str, record_property: pytest.RecordProperty
        ) -> Iterator[SimulatedBoard]:
    """A free-running simulated board (paced at real time until a test speeds it up)."""
    record_property("board", board_name)
    record_property("runtime", runtime)
    board = SimulatedBoard(board=board_name, runtime=runtime, seed=7, speed=1.0)
    with board:
        yield board
