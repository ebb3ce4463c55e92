"""What an authenticated write costs (``benchmarks/auth_cost.py``), on a short case.

Only what does not depend on the machine is asserted: the frames each write puts on
the wire (two round trips on a locked board, one on an open one), the board time a
write takes on a held board (one control period a frame), that every write was
applied, and the heap under real MicroPython: ``admin.py`` released after each
write, nothing growing from the second write to the tenth. Wall-clock times are
never asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from benchmark_module import load_benchmark

pytestmark = pytest.mark.timeout(300)

HEAP_WRITES = 10


def _cost() -> ModuleType:
    return load_benchmark("auth_cost")


cost = _cost()


@pytest.fixture(scope="module", params=cost.RUNTIMES)
def writes(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """(open, locked): 3 writes to each of two held boards of the runtime."""
    yield cost.measure_writes(request.param, 3)


@pytest.fixture(scope="module")
def heap() -> list[Any]:
    """Open and locked boards under MicroPython, firmware from .py and from .mpy."""
    return cost.heap_runs(HEAP_WRITES, mpy=True)


def test_a_locked_write_takes_two_round_trips(writes: tuple[Any, Any]) -> None:
    open_run, locked_run = writes
    assert open_run.wire_shapes() == {open_run.wire.shape()}  # every write alike: no retry
    assert locked_run.wire_shapes() == {locked_run.wire.shape()}
    o, lk = open_run.wire, locked_run.wire
    assert [n for n, _ in o.sent] == ["set_config"]
    assert [n for n, _ in o.answers] == ["config_value"]
    assert [n for n, _ in lk.sent] == ["get_nonce", "auth"]
    assert [n for n, _ in lk.answers] == ["nonce", "config_value"]
    assert (o.round_trips, lk.round_trips) == (1, 2)
    # AUTH carries the whole write, the nonce and the MAC: more than the write alone.
    assert lk.bytes_out > o.bytes_out + 16 + 32
    assert lk.bytes_in > o.bytes_in


def test_every_write_was_applied(writes: tuple[Any, Any]) -> None:
    for run in writes:
        assert run.writes == 3
        assert run.answered == run.written, run
        assert run.final == run.written[-1]
        assert len(set(run.written)) == 2  # the value changed at every write
        assert run.applied


def test_a_held_board_spends_a_control_period_per_frame(writes: tuple[Any, Any]) -> None:
    open_run, locked_run = writes
    assert open_run.period_ms == locked_run.period_ms > 0
    assert open_run.periods == (1, 1, 1)
    assert locked_run.periods == (2, 2, 2)
    assert set(locked_run.board_ms) == {2 * locked_run.period_ms}


def test_the_heap_does_not_grow_with_authenticated_writes(heap: list[Any]) -> None:
    assert {(h.source, h.mode) for h in heap} == {
        (s, m) for s in (".py", ".mpy") for m in cost.MODES}
    for h in heap:
        assert len(h.writes) == HEAP_WRITES
        assert h.applied, h
        assert h.stays(2) == h.stays(HEAP_WRITES), h  # second write vs tenth
        assert h.names_after(2) == h.names_after(HEAP_WRITES), h
        assert h.name_bytes_after(2) == h.name_bytes_after(HEAP_WRITES), h


def test_admin_is_released_after_each_write(heap: list[Any]) -> None:
    """Handling a write imports admin.py (kilobytes); after collection well under
    1 KB stays: the names it interned and the board's nonce state, not the module."""
    for h in heap:
        assert h.peak > 4096, h  # the measurement sees the import
        assert 0 <= h.stays(1) < 1024, h
        assert h.names_after(1) > 0, h  # the first write interns admin.py's names


def test_a_locked_write_is_two_frames_each_importing_admin(heap: list[Any]) -> None:
    for h in heap:
        want = 2 if h.mode == "locked" else 1
        assert all(len(w.handled) == want for w in h.writes), h
        assert all(x > 0 for w in h.writes for x in w.handled), h


def test_the_report_prints_every_section(writes: tuple[Any, Any], heap: list[Any],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cost.report([writes], heap, cost.host_pieces(calls=5, repeats=1))
    out = capsys.readouterr().out
    for heading in ("Round trips and bytes on the wire", "Time per write on held boards",
                    "Heap on the board: MicroPython", "Interned names (qstrs)", "Conclusion"):
        assert heading in out, out
    assert "a locked write takes 2 round trips instead of 1" in out
    assert "no growth" in out and "GROWING" not in out


def test_main_runs_the_quick_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["--quick", "--no-heap", "--runtime", "cpython"]) == 0
    assert "locked/open" in capsys.readouterr().out
