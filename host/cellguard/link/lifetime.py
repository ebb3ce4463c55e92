"""The board's lifetime record as the host reads it (LIFETIME, docs/lifetime.md).

The firmware keeps u32 counters in a fixed layout (``firmware/cellguard_fw/lifetime.py``);
this module names them and turns them into SI units. A layout only ever grows by
appending words, so a newer board's record reads here with its extra words ignored."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CellguardError

LAYOUT = 1
"""The counter layout this host knows (LIFETIME's ``layout``)."""
WORDS = 51
"""Counter words in that layout."""
MAS_PER_MAH = 3_600_000  # mA*ms in one mAh (and mW*ms in one mWh)
HARMFUL_KINDS = ("deep_discharge", "overcharge", "overtemperature", "overcurrent",
                 "short_circuit")
"""The harmful-event counters (words 23-27), in order: each counts the edges of its
fault bits (overcharge: cell over-voltage; overtemperature: either temperature
trip; overcurrent: the four over-current trips)."""
SOC_BINS_PCT = (0, 20, 40, 60, 80, 100)
"""The SoC bins' edges (%), the histogram's rows."""
TEMP_BINS_C = (0.0, 25.0, 45.0)
"""The temperature bins' inner edges (°C): below 0, 0-25, 25-45, from 45."""


def _ah(whole: int, milli: int, rest: int) -> float:
    return whole + (milli + rest / MAS_PER_MAH) / 1000.0


@dataclass
class LifetimeRecord:
    """The counters in SI units (Ah, Wh, s). ``seq``: the newest saved record's
    sequence number (0: never saved); the counters are the board's live ones."""

    seq: int
    charge_in_ah: float
    charge_out_ah: float
    energy_in_wh: float
    energy_out_wh: float
    operating_s: float
    rest_s: int
    charging_s: int
    discharging_s: int
    hot_idle_s: int  # above the over-temperature trip, not charging
    hot_charging_s: int  # above the charge over-temperature trip, charging
    cold_idle_s: int
    cold_charging_s: int
    harmful: dict[str, int]
    boots: int
    watchdog_resets: int
    config_changes: int
    histogram_s: list[list[int]] = field(default_factory=list)  # [soc bin][temp bin]
    words: list[int] = field(default_factory=list)  # as read

    @classmethod
    def from_words(cls, layout: int, seq: int, words: list[int]) -> LifetimeRecord:
        if layout != LAYOUT:
            raise CellguardError(f"the board's lifetime record has layout {layout}; this "
                                 f"host reads layout {LAYOUT}: update cellguard")
        if len(words) < WORDS:
            raise CellguardError(f"the board's lifetime record has {len(words)} counters; "
                                 f"layout {LAYOUT} has {WORDS}")
        w = words

        def wh(i: int) -> float:
            return w[i] + (w[i + 1] + (w[i + 2] + w[i + 3] / 1000.0) / MAS_PER_MAH) / 1000.0

        return cls(
            seq=seq, charge_in_ah=_ah(w[0], w[1], w[2]), charge_out_ah=_ah(w[3], w[4], w[5]),
            energy_in_wh=wh(6), energy_out_wh=wh(10), operating_s=w[14] + w[15] / 1000.0,
            rest_s=w[16], charging_s=w[17], discharging_s=w[18],
            hot_idle_s=w[19], hot_charging_s=w[20], cold_idle_s=w[21], cold_charging_s=w[22],
            harmful=dict(zip(HARMFUL_KINDS, w[23:28], strict=True)),
            boots=w[28], watchdog_resets=w[29], config_changes=w[30],
            histogram_s=[list(w[31 + 4 * s:35 + 4 * s]) for s in range(5)],
            words=list(words))
