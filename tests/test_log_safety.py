"""Data safety of `cellguard log`, end to end: the logger is a real subprocess, the boards
are simulated in this process (firmware under the CPython runtime, for speed).

- SIGKILL mid-run: the file opens, passes integrity_check, holds every committed frame,
  and lacks at most about one second of frames.
- Unplug and replug behind a `--link` path: logging resumes on the same board row, the gap
  is recorded with its reason, no duplicate rows, the other board kept logging; another
  board on that path becomes a new board row.
- A full disk (RLIMIT_FSIZE) or an unwritable place: one clear line, exit 1, what was
  written is kept.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cellguard.boards import load_board
from cellguard.sim import SimulatedBoard
from cellguard.store import UNPLUGGED, LogReader

CLI = [sys.executable, "-m", "cellguard.cli"]
TELEMETRY_MS = 100


def board(name: str) -> dict[str, Any]:
    """sim-4s under another name (the unique id comes from it), telemetry at 10 Hz."""
    b = load_board("sim-4s")
    b["name"] = name
    b["telemetry_period_ms"] = TELEMETRY_MS
    return b


def sim(name: str, speed: float, link: Path | None = None) -> SimulatedBoard:
    return SimulatedBoard(board(name), runtime="cpython", speed=speed, link=link)


def counter(s: SimulatedBoard) -> int:
    """The next telemetry sequence number the firmware will send."""
    runtime: Any = s.runtime
    return int(runtime.firmware.bms.telemetry_seq)


@contextlib.contextmanager
def logger(*args: str, preexec_fn: Callable[[], None] | None = None
           ) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([*CLI, "log", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def committed(path: Path, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """A value from what is committed now (read-only, beside the running writer)."""
    if not path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute(sql, params).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return None


def wait_until(what: str, check: Callable[[], bool], proc: subprocess.Popen[str],
               timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the logger exited ({proc.returncode}) before {what}: {err}")
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.05)


def max_seq(path: Path, board_id: int) -> int:
    value = committed(path, "SELECT MAX(seq) FROM telemetry WHERE board_id = ?", (board_id,))
    return -1 if value is None else int(value)


def stored(path: Path, board_id: int) -> list[int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [r[0] for r in db.execute(
            "SELECT seq FROM telemetry WHERE board_id = ? ORDER BY seq", (board_id,))]


def duplicates(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute(
            "SELECT COUNT(*) FROM (SELECT board_id, boot, seq FROM telemetry "
            "GROUP BY 1, 2, 3 HAVING COUNT(*) > 1)").fetchone()[0])


def integrity(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def test_sigkill_loses_at_most_about_a_second(tmp_path: Path) -> None:
    out = tmp_path / "run.sqlite"
    speed = 4.0
    frames_per_s = speed * 1000 / TELEMETRY_MS  # wall-clock rate of telemetry frames
    with sim("kill", speed) as board_, logger("--port", board_.port, "--out", str(out),
                                              "--quiet") as proc:
        wait_until("a first commit", lambda: max_seq(out, 1) >= 0, proc)
        first = max_seq(out, 1)
        wait_until("a second more", lambda: max_seq(out, 1) > first + frames_per_s, proc)
        seen = max_seq(out, 1)
        time.sleep(0.6)  # somewhere between two commits (where the kill falls only)
        last_commit = max_seq(out, 1)
        sent = counter(board_)  # frames 0 .. sent-1 have left the board
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    with LogReader(out) as reader:  # opens as a cellguard log, WAL and all
        assert [b.board for _, b in reader.boards()] == ["kill"]
        seqs = [s.seq for s in reader.samples()]
    assert integrity(out) == "ok"
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a hole or a duplicate in what was kept"
    assert seqs[-1] >= seen, "a frame that was committed before the kill is gone"
    assert seqs[-1] >= last_commit, "a frame committed right before the kill is gone"
    # What is lost is the tail the logger had not committed yet, and only that: how
    # long that tail is (one commit interval) is proven on a clock of the test's own
    # in test_a_row_is_committed_within_one_commit_interval.
    assert sent - 1 >= seqs[-1]


def test_a_row_is_committed_within_one_commit_interval(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's commit policy on a clock the test moves: rows added less than
    ``commit_interval_s`` after the last commit are not yet in the file (another
    connection does not see them), and the first row added once the interval has
    passed commits them all. So a SIGKILL loses at most one interval of rows."""
    from test_codec_compiled import INFO, count, tele

    from cellguard.store import sqlite as store_sqlite

    now = [100.0]
    monkeypatch.setattr(store_sqlite.time, "monotonic", lambda: now[0])
    path = tmp_path / "a.sqlite"
    w = store_sqlite.LogWriter(path, commit_interval_s=1.0)
    board = w.add_board(INFO)
    w.commit()
    for i, t in enumerate((100.0, 100.4, 100.999)):
        now[0] = t
        w.add(board, tele(i + 1))
        assert count(path) == 0
    w.commit_if_due()
    assert count(path) == 0
    now[0] = 101.0
    w.add(board, tele(4))
    assert count(path) == 4
    now[0] = 101.5
    w.add(board, tele(5))
    w.commit_if_due()
    assert count(path) == 4
    now[0] = 102.0
    w.commit_if_due()  # idle: the interval passes with no new row
    assert count(path) == 5
    w.close()


def test_unplug_replug_and_another_board_on_the_same_path(tmp_path: Path) -> None:
    out = tmp_path / "run.sqlite"
    link_a, link_b = tmp_path / "by-id-a", tmp_path / "by-id-b"
    with sim("boardA", 5.0, link_a) as a, sim("boardB", 5.0, link_b), \
            logger("--port", str(link_a), "--port", str(link_b), "--out", str(out)) as proc:
        wait_until("both boards logged", lambda: max_seq(out, 1) >= 0 and max_seq(out, 2) >= 0,
                   proc)
        a.unplug()
        unplugged_at = time.time()
        assert not link_a.exists()
        at_unplug = counter(a)
        wait_until("board B logs on while A is away",
                   lambda: (committed(out, "SELECT COUNT(*) FROM telemetry WHERE board_id = 2 "
                                           "AND host_time > ?", (unplugged_at,)) or 0) >= 30,
                   proc)
        b_during = max_seq(out, 2)
        a.replug()
        assert link_a.resolve() == Path(a.port)
        at_replug = counter(a)
        wait_until("board A resumes", lambda: max_seq(out, 1) > at_replug + 5, proc)

        # Now a different board appears behind A's stable path.
        a.unplug()
        a.close()
        with sim("boardC", 5.0, link_a):
            wait_until("board C is logged as a new board",
                       lambda: (committed(out, "SELECT COUNT(*) FROM telemetry WHERE board_id = 3")
                                or 0) > 5, proc)
            c_ids = committed(out, "SELECT unique_id FROM boards WHERE id = 3")
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr

    assert integrity(out) == "ok" and duplicates(out) == 0
    with LogReader(out) as reader:
        boards = {bid: info for bid, info in reader.boards()}
        ports = reader.board_ports()
        gaps_a = list(reader.gaps(board_id=1))
        gaps_b = list(reader.gaps(board_id=2))
        b_host_times = [s.host_time for s in reader.samples(board_id=2)]
        assert reader.lost() == 0
    assert {bid: i.board for bid, i in boards.items()} == {1: "boardA", 2: "boardB", 3: "boardC"}
    assert c_ids == boards[3].unique_id != boards[1].unique_id
    assert ports[1] == ports[3] == str(link_a)

    # Board A: one row, one gap for the replug (then one for the path it lost to board C).
    replug, gone = gaps_a
    assert (replug.reason, gone.reason) == (UNPLUGGED, UNPLUGGED)
    assert replug.duration_s is not None and replug.duration_s > 0
    seqs_a = stored(out, 1)
    before = [s for s in seqs_a if s <= replug.after_seq]
    after = [s for s in seqs_a if s > replug.after_seq]
    assert before == list(range(before[0], replug.after_seq + 1))
    assert after == list(range(replug.after_seq + replug.lost + 1, after[-1] + 1))
    assert replug.after_seq < at_unplug and after[0] >= at_replug  # the gap spans the unplug
    assert replug.lost >= at_replug - at_unplug
    assert gone.after_seq == seqs_a[-1] and gone.lost == 0

    # Board B never stopped: no gap, no hole, and samples while A was away.
    assert gaps_b == []
    seqs_b = stored(out, 2)
    assert seqs_b == list(range(seqs_b[0], seqs_b[-1] + 1)) and seqs_b[-1] >= b_during
    away_from = replug.host_time
    away_to = away_from + (replug.duration_s or 0)
    assert sum(away_from < t < away_to for t in b_host_times) >= 20

    assert "board 1: boardA" in stdout and "1 reconnect (" in stdout
    assert "a different board answered" in stderr and "new board (board 3)" in stderr


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the logger's process only
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_full_disk_ends_the_run_with_one_clear_line(tmp_path: Path) -> None:
    """The file size limit stands in for a full disk: writes fail with EFBIG."""
    out = tmp_path / "run.sqlite"
    with sim("full", 10.0) as board_, logger("--port", board_.port, "--out", str(out), "--quiet",
                                             preexec_fn=_limit_file_size(160 * 1024)) as proc:
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"cellguard: error: cannot write log {out}: "), stderr
    assert "file size limit" in lines[0] and "committed before are kept" in lines[0]
    assert stdout == ""
    assert integrity(out) == "ok"
    with LogReader(out) as reader:
        seqs = [s.seq for s in reader.samples()]
    assert len(seqs) >= 20, "nothing was kept"
    assert seqs == list(range(seqs[0], seqs[-1] + 1))
    assert f"the {len(seqs)} samples committed before are kept" in lines[0]


# A read-only file refuses only a non-root writer (root's writes ignore the mode bits),
# so that case exists only for a non-root run; the other two hold for root as well.
UNWRITABLE = ["under a file", "a folder"] + ([] if os.geteuid() == 0 else ["read-only file"])


@pytest.mark.parametrize("where", UNWRITABLE)
def test_unwritable_log_is_a_clear_error(tmp_path: Path, where: str) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    if where == "under a file":  # refused even for root: the folder is a file
        out, words = a_file / "run.sqlite", "is a file, not a folder"
    elif where == "a folder":
        out, words = tmp_path, "it is a folder"
    else:
        out, words = tmp_path / "ro.sqlite", "cannot write log"
        with sqlite3.connect(out) as db:
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("INSERT INTO meta VALUES ('format', 'cellguard-log'), ('schema', '2')")
        out.chmod(0o444)
    with sim("nowrite", 5.0) as board_:
        proc = subprocess.run([*CLI, "log", "--port", board_.port, "--out", str(out),
                               "--duration", "1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("cellguard: error: cannot write log"), proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert a_file.read_text() == "x"
