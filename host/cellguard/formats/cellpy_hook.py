"""What cellpy needs besides ``cellpy_cellguard.yml`` to load a cellguard BDF CSV.

cellpy's ``local_instrument`` loader wants a ``data_point`` column (it indexes
the rows by it) and a ``date_time``, and it sums capacities per cycle from values
that start again at 0 in each cycle (as Arbin's do), while BDF's accumulate
from the start. :func:`cellpy_hook` adds the first two and makes the charging
and discharging capacities and energies count from the start of each cycle; pass
it to ``cellpy.get(..., pre_processor_hook=cellpy_hook)``. It needs only the
DataFrame cellpy hands it (pandas), not the rest of cellguard: copying the
function works as well (docs/logging.md).
"""

from __future__ import annotations

from typing import Any

PER_CYCLE = ("Charging Capacity / Ah", "Discharging Capacity / Ah", "Charging Energy / Wh",
             "Discharging Energy / Wh")
"""BDF columns that cellpy wants counted from the start of each cycle."""


def cellpy_hook(df: Any) -> Any:
    """A copy of the BDF DataFrame ``df`` as cellpy's loader wants it (see the module)."""
    import pandas as pd

    out = df.copy()
    out["data_point"] = range(1, len(out) + 1)
    if "Unix Time / s" in out.columns:
        out["date_time"] = pd.to_datetime(out["Unix Time / s"], unit="s")
    if "Cycle Count / 1" in out.columns:
        cycle = out["Cycle Count / 1"]
        for label in PER_CYCLE:
            if label in out.columns:
                # from the previous cycle's last sample: the interval into a cycle is its own
                before = out[label].shift(1, fill_value=0.0)
                out[label] = out[label] - before.groupby(cycle, sort=False).transform("first")
    return out
