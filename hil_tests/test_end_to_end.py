"""End to end: the board -> serial link -> pyserial -> SQLite log -> CSV, with the
logger opening the port itself (``port``) and the rig driving the plant."""

from __future__ import annotations

import csv
import io
import math
import threading
from pathlib import Path
from typing import Any

import pytest

from cellguard.formats.export import export_csv
from cellguard.hil import Rig
from cellguard.link.client import Info
from cellguard.store import LogReader
from cellguard.store.logger import log_board


def test_logged_cells_match_the_plant_within_adc_resolution(port: str, rig: Rig,
                                                            tmp_path: Path) -> None:
    if not rig.observes:
        pytest.skip("compares the log with the plant's truth: needs a simulated board")
    out = tmp_path / "run.sqlite"
    connected = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(info: Info) -> None:
        result["info"] = info
        connected.set()

    def log() -> None:
        try:
            result["log"] = log_board(port, out, duration_s=60.0, on_connect=on_connect,
                                      idle_stop_s=10)
        except BaseException as exc:  # surfaced below
            result["error"] = exc
            connected.set()

    logger = threading.Thread(target=log, name="logger")
    # The profile runs on the board's clock: a simulated board holds where the
    # rig last waited (here: now) until the rig waits again, so the logger's
    # window (60 s from its first sample, which comes once the profile runs)
    # covers the whole profile however late this thread gets to each step.
    rig.wait(0.0)
    logger.start()
    try:
        assert connected.wait(30), "the logger did not connect"
        if "error" not in result:
            # Charge for 20 s, discharge for 20 s, ... at 1C, so the voltages move (or
            # at 80 % of the board's current limits where they are lower: a 100 Ah pack).
            info = result["info"]
            amps = min(info.capacity_ah, 0.8 * info.charge_current_max_a,
                       0.8 * info.discharge_current_max_a)
            for sign in (1, -1, 1):
                rig.set_current(sign * amps)
                rig.wait(20.0)
            rig.set_current(0.0)
            rig.wait(5.0)  # at rest, past the end of the logger's 60 s
    finally:
        rig.set_current(0.0)
        logger.join(timeout=120)
    if "error" in result:
        raise result["error"]
    log = result["log"]
    assert log.lost == 0 and log.bad_frames == 0 and log.crc_errors == 0
    with LogReader(out) as reader:
        samples = list(reader.samples())
        assert reader.lost() == 0
    assert samples[-1].t_s - samples[0].t_s >= 60.0
    seqs = [s.seq for s in samples]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "telemetry sequence has a gap"

    # Within the front end's accuracy (one ADC step of the simulated board's ideal
    # converter; a virtual board's MCU converter errs more), plus the 0.5 mV
    # rounding of the wire's mV.
    tolerance_v = rig.cell_accuracy_v() + 0.0005
    compared = 0
    moving = set()
    for s in samples:
        truth = rig.truth_at(s.board_time_ms)
        if truth is None and not rig.exact_time:
            continue  # next to a step of the current: the rig's clock cannot tell the side
        assert truth is not None, f"no plant record for board time {s.board_time_ms} ms"
        for logged, true in zip(s.cells_v, truth.cells_v, strict=True):
            assert math.isclose(logged, true, abs_tol=tolerance_v), (
                f"seq {s.seq}: logged {logged:.4f} V, plant {true:.4f} V"
            )
        compared += 1
        moving.add(round(truth.current_a / amps))
    assert compared >= (60 if rig.exact_time else 50)
    assert moving >= {1, -1}, "the profile did not both charge and discharge"


def test_export_csv_has_the_documented_columns(port: str, rig: Rig, tmp_path: Path) -> None:
    out = tmp_path / "run.sqlite"
    result = log_board(port, out, duration_s=5.0, idle_stop_s=10)
    buf = io.StringIO()
    rows = export_csv(out, buf)
    table = list(csv.reader(io.StringIO(buf.getvalue())))
    header = table[0]
    n, m = result.info.cell_count, result.info.temp_count
    assert header[:7] == ["t_s", "seq", "state", "faults", "pack_v", "current_a", "soc_pct"]
    assert [h for h in header if h.startswith("cell") and h.endswith("_v")] == [
        f"cell{i}_v" for i in range(1, n + 1)]
    assert [h for h in header if h.startswith("temp") and h.endswith("_c")] == [
        f"temp{i}_c" for i in range(1, m + 1)]
    assert rows == len(table) - 1 >= 5
    first = dict(zip(header, table[1], strict=True))
    assert first["state"] == "active"
    truth = rig.truth()
    if truth is not None:
        assert abs(float(first["cell1_v"]) - truth.cells_v[0]) < 0.01
        assert abs(float(first["temp1_c"]) - truth.temps_c[0]) < 0.5
