"""End to end: firmware under MicroPython -> pty -> pyserial -> SQLite -> CSV."""

from __future__ import annotations

import csv
import io
import math
import threading
from pathlib import Path

from cellguard.client import Info
from cellguard.export import export_csv
from cellguard.logfile import LogReader
from cellguard.logger import log_board
from cellguard.sim import SimulatedBoard


def test_logged_cells_match_plant_within_adc_resolution(sim: SimulatedBoard,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "run.sqlite"
    connected = threading.Event()

    # Charge for 20 s, then discharge, so the voltages move while we log.
    def profile(board: SimulatedBoard) -> None:
        if connected.is_set():
            board.plant.requested_current_a = 3.0 if board.time_s % 40 < 20 else -3.0

    sim.tick_hooks.append(profile)

    def on_connect(info: Info) -> None:
        connected.set()
        sim.speed = 20.0

    result = log_board(sim.port, out, duration_s=60.0, on_connect=on_connect, idle_stop_s=10)
    sim.check()

    assert result.lost == 0
    assert result.bad_frames == 0 and result.crc_errors == 0
    with LogReader(out) as reader:
        samples = list(reader.samples())
        assert reader.lost() == 0
    assert samples[-1].t_s - samples[0].t_s >= 60.0
    seqs = [s.seq for s in samples]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "telemetry sequence has a gap"

    # Within one ADC step of the plant, plus the 0.5 mV rounding of the wire's mV.
    tolerance_v = sim.sensors.cell_lsb_v() + 0.0005
    compared = 0
    moving = set()
    for s in samples:
        truth = sim.truth_at(s.board_time_ms)
        assert truth is not None, f"no plant record for board time {s.board_time_ms} ms"
        for logged, true in zip(s.cells_v, truth.cells_v, strict=True):
            assert math.isclose(logged, true, abs_tol=tolerance_v), (
                f"seq {s.seq}: logged {logged:.4f} V, plant {true:.4f} V"
            )
        compared += 1
        moving.add(round(truth.current_a))
    assert compared >= 60
    assert moving >= {3, -3}, "the profile did not both charge and discharge"


def test_export_csv_has_the_documented_columns(sim: SimulatedBoard, tmp_path: Path) -> None:
    out = tmp_path / "run.sqlite"
    sim.speed = 20.0
    log_board(sim.port, out, duration_s=5.0, idle_stop_s=10)
    buf = io.StringIO()
    rows = export_csv(out, buf)
    table = list(csv.reader(io.StringIO(buf.getvalue())))
    header = table[0]
    n = sim.board["cells"]
    m = sim.board["temp_sensors"]
    assert header == (
        ["t_s", "seq", "state", "faults", "pack_v", "current_a", "soc_pct"]
        + [f"cell{i}_v" for i in range(1, n + 1)]
        + [f"temp{i}_c" for i in range(1, m + 1)]
    )
    assert rows == len(table) - 1 >= 6
    first = dict(zip(header, table[1], strict=True))
    truth = sim.truth()
    assert abs(float(first["cell1_v"]) - truth.cells_v[0]) < 0.01
    assert abs(float(first["temp1_c"]) - truth.temperature_c) < 0.5
    assert first["state"] == "active"
