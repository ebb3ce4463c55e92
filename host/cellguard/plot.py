"""Plot a cellguard log: cell voltages, current, SoC and temperatures over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; works without a display
import matplotlib.pyplot as plt

from .errors import LogFileError
from .logfile import LogReader


def plot_log(log: str | Path, out: str | Path, board_id: int | None = None) -> None:
    with LogReader(log) as reader:
        boards = reader.boards()
        if not boards:
            raise LogFileError(f"{log} holds no board yet")
        bid, info = boards[0] if board_id is None else next(
            ((b, i) for b, i in boards if b == board_id), (None, None)
        )
        if bid is None or info is None:
            raise LogFileError(f"{log} has no board {board_id}")
        samples = list(reader.samples(bid))
    if not samples:
        raise LogFileError(f"{log} holds no samples to plot")
    hours = max(samples[-1].t_s - samples[0].t_s, 1.0) >= 2 * 3600
    scale, unit = (3600.0, "h") if hours else (60.0, "min")
    t = [s.t_s / scale for s in samples]
    fig, axes = plt.subplots(4, 1, sharex=True, figsize=(10, 9), constrained_layout=True)
    ax_v, ax_i, ax_soc, ax_t = axes
    for c in range(info.cell_count):
        ax_v.plot(t, [s.cells_v[c] for s in samples], lw=1, label=f"cell {c + 1}")
    ax_v.axhline(info.cell_ov_v, color="red", ls="--", lw=0.8, label="OV limit")
    ax_v.axhline(info.cell_uv_v, color="red", ls=":", lw=0.8, label="UV limit")
    ax_v.set_ylabel("cell voltage (V)")
    ax_v.legend(loc="best", fontsize=7, ncol=3)
    ax_i.plot(t, [s.current_a for s in samples], color="tab:purple", lw=1)
    ax_i.axhline(0, color="grey", lw=0.5)
    ax_i.set_ylabel("current (A)\n+ = charging")
    ax_soc.plot(t, [s.soc_pct for s in samples], color="tab:green", lw=1)
    ax_soc.set_ylabel("SoC (%)")
    ax_soc.set_ylim(-2, 102)
    for c in range(info.temp_count):
        ax_t.plot(t, [s.temps_c[c] for s in samples], lw=1, label=f"sensor {c + 1}")
    ax_t.set_ylabel("temperature (°C)")
    ax_t.set_xlabel(f"board time ({unit})")
    # Shade the spans where a protection had the output open.
    for ax in axes:
        start = None
        for s, x in zip(samples, t, strict=True):
            if s.faults and start is None:
                start = x
            elif not s.faults and start is not None:
                ax.axvspan(start, x, color="red", alpha=0.12, lw=0)
                start = None
        if start is not None:
            ax.axvspan(start, t[-1], color="red", alpha=0.12, lw=0)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{info.board} ({info.unique_id}), {info.chemistry}, {info.cell_count} cells"
                 " — red: output opened by a protection", fontsize=10)
    try:
        fig.savefig(out, dpi=110)
    except OSError as exc:
        raise LogFileError(f"cannot write plot {out}: {exc.strerror}") from None
    finally:
        plt.close(fig)
