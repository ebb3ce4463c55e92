"""The board's lifetime record as the host reads it (LIFETIME, docs/lifetime.md).

The firmware keeps u32 counters in a fixed layout (``firmware/cellguard_fw/lifetime.py``);
this module names them and turns them into SI units. A layout only ever grows by
appending words: layout 1 is words 0-50, layout 2 adds 51-154. A record of an older
layout reads with the newer fields ``None`` (or empty); a newer board's extra words
are kept in ``words`` and otherwise ignored."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CellguardError

LAYOUT = 2
"""The newest counter layout this host knows (LIFETIME's ``layout``)."""
LAYOUT_WORDS = {1: 51, 2: 155}
"""Counter words in each layout."""
WORDS = LAYOUT_WORDS[LAYOUT]
MAS_PER_MAH = 3_600_000  # mA*ms in one mAh (and mW*ms in one mWh)
UNIX_2020 = 1_577_836_800
"""The board keeps Unix time from 2020 (a MicroPython small int): add this."""
HARMFUL_KINDS = ("deep_discharge", "overcharge", "overtemperature", "overcurrent",
                 "short_circuit")
"""The harmful-event counters (words 23-27), in order: each counts the edges of its
trips, the firmware's or the monitor chip's (overcharge: cell over-voltage, COV;
overtemperature: either temperature trip, OTC/OTD/OTINT/OTF; overcurrent: the four
over-current trips, OCC/OCD1-3; short circuit: SCD)."""
HARMFUL_UNITS = (("V", 1000.0), ("V", 1000.0), ("°C", 10.0), ("A", 1000.0), ("A", 1000.0))
"""Each kind's value on the record (mV, mV, 0.1 °C, mA, mA) as (SI unit, divisor)."""
SOC_BINS_PCT = (0, 20, 40, 60, 80, 100)
"""The SoC bins' edges (%), the histogram's rows."""
TEMP_BINS_C = (0.0, 25.0, 45.0)
"""The temperature bins' inner edges (°C): below 0, 0-25, 25-45, from 45."""
SNAPSHOT_WORDS = 9
SECONDS_PER_MONTH = 30.44 * 86_400


def _ah(whole: int, milli: int, rest: int) -> float:
    return whole + (milli + rest / MAS_PER_MAH) / 1000.0


def _wh(w: list[int], i: int) -> float:
    return w[i] + (w[i + 1] + (w[i + 2] + w[i + 3] / 1000.0) / MAS_PER_MAH) / 1000.0


def _unix(v: int) -> int | None:
    """A board time from 2020 as Unix time (None: the board's clock was not set)."""
    return v + UNIX_2020 if v else None


@dataclass
class LifeTotals:
    """Words 0-30 of a life (this one, or the history of the ended ones): SI units."""

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

    @classmethod
    def from_words(cls, w: list[int], base: int = 0) -> LifeTotals:
        w = w[base:base + 31]
        return cls(
            charge_in_ah=_ah(w[0], w[1], w[2]), charge_out_ah=_ah(w[3], w[4], w[5]),
            energy_in_wh=_wh(w, 6), energy_out_wh=_wh(w, 10),
            operating_s=w[14] + w[15] / 1000.0,
            rest_s=w[16], charging_s=w[17], discharging_s=w[18],
            hot_idle_s=w[19], hot_charging_s=w[20], cold_idle_s=w[21], cold_charging_s=w[22],
            harmful=dict(zip(HARMFUL_KINDS, w[23:28], strict=True)),
            boots=w[28], watchdog_resets=w[29], config_changes=w[30])


@dataclass
class HarmfulRecord:
    """One of the last harmful events the record keeps."""

    kind: str
    operating_s: int  # the pack's operating time at the event
    unix_time: int | None  # None: the board's clock was not set
    value: float  # SI: V (the lowest / highest cell), °C (the hottest sensor), A (|I|)
    unit: str


@dataclass
class HealthSnapshot:
    """A dated state-of-health snapshot from the board's estimator."""

    unix_time: int | None
    operating_s: int
    capacity_ah: float  # relearned (the rated one until a relearn)
    relearns: int  # capacity measurements so far (0: the capacity is the rated one)
    r0_growth_pct: float | None  # 100 = as new (None: no estimator)
    soc_pct: float
    power_w: float  # 10 s discharge power capability at soc_pct (0: no estimator)
    energy_in_wh: int  # the energy counters then (whole Wh)
    energy_out_wh: int


@dataclass
class LifetimeRecord(LifeTotals):
    """The counters in SI units (Ah, Wh, s). ``seq``: the newest saved record's
    sequence number (0: never saved); the counters are the board's live ones.
    Fields after ``histogram_s`` come with layout 2 (``None`` or empty before)."""

    seq: int = 0
    layout: int = LAYOUT
    histogram_s: list[list[int]] = field(default_factory=list)  # [soc bin][temp bin]
    harmful_total: int | None = None
    last_harmful: list[HarmfulRecord] = field(default_factory=list)  # oldest first
    manufactured: int | None = None  # Unix time (None: not given)
    in_service: int | None = None
    identity: str = ""
    lives: int | None = None  # second-life resets so far
    self_discharge_lost_pct: float | None = None  # SoC lost over long rests
    self_discharge_gained_pct: float | None = None
    self_discharge_rest_s: int | None = None
    equivalent_full_cycles: float | None = None  # each save's throughput / 2 x capacity then
    snapshots: list[HealthSnapshot] = field(default_factory=list)  # oldest first
    snapshots_taken: int | None = None
    deploys: int | None = None  # boots of a build other than the last boot's
    history: LifeTotals | None = None  # the ended lives' totals (None: first life)
    words: list[int] = field(default_factory=list)  # as read

    @property
    def self_discharge_pct_per_month(self) -> float | None:
        """SoC lost per month at rest, from the rests measured (None: none yet)."""
        if not self.self_discharge_rest_s or self.self_discharge_lost_pct is None:
            return None
        net = self.self_discharge_lost_pct - (self.self_discharge_gained_pct or 0.0)
        return net / self.self_discharge_rest_s * SECONDS_PER_MONTH

    @classmethod
    def from_words(cls, layout: int, seq: int, words: list[int],  # type: ignore[override]
                   ) -> LifetimeRecord:
        if layout not in LAYOUT_WORDS:
            raise CellguardError(f"the board's lifetime record has layout {layout}; this "
                                 f"host reads layouts 1 to {LAYOUT}: update cellguard")
        need = LAYOUT_WORDS[layout]
        if len(words) < need:
            raise CellguardError(f"the board's lifetime record has {len(words)} counters; "
                                 f"layout {layout} has {need}")
        w = list(words)
        totals = LifeTotals.from_words(w)
        rec = cls(**totals.__dict__, seq=seq, layout=layout,
                  histogram_s=[w[31 + 4 * s:35 + 4 * s] for s in range(5)], words=w)
        if layout >= 2:
            rec._layout_2(w)
        return rec

    def _layout_2(self, w: list[int]) -> None:
        total = w[51] & 0xFFFFFF  # bits 24-28: the kinds active at the last save
        self.harmful_total = total
        for i in range(max(0, total - 4), total):
            kind, op_s, unix, value = w[52 + 4 * (i % 4):56 + 4 * (i % 4)]
            if not 1 <= kind <= len(HARMFUL_KINDS):
                continue
            unit, scale = HARMFUL_UNITS[kind - 1]
            self.last_harmful.append(HarmfulRecord(HARMFUL_KINDS[kind - 1], op_s,
                                                   _unix(unix), value / scale, unit))
        self.manufactured, self.in_service = _unix(w[68]), _unix(w[69])
        raw = b"".join((w[70 + i] & 0xFFFFFF).to_bytes(3, "little") for i in range(8))
        self.identity = raw.rstrip(b"\0").decode("utf-8", errors="replace")
        self.lives = w[78]
        self.self_discharge_lost_pct = w[79] / 100.0
        self.self_discharge_gained_pct = w[80] / 100.0
        self.self_discharge_rest_s = w[81]
        self.equivalent_full_cycles = w[82] / 1000.0
        n = self.snapshots_taken = w[85]
        slots = [86] + [95 + SNAPSHOT_WORDS * ((k - 1) % 3) for k in range(max(1, n - 3), n)]
        for at in slots[:n]:
            s = w[at:at + SNAPSHOT_WORDS]
            self.snapshots.append(HealthSnapshot(
                unix_time=_unix(s[0]), operating_s=s[1], capacity_ah=s[2] / 1000.0,
                relearns=s[3], r0_growth_pct=s[4] / 10.0 if s[4] else None, soc_pct=s[5] / 100.0,
                power_w=float(s[6]), energy_in_wh=s[7], energy_out_wh=s[8]))
        if self.lives:
            self.history = LifeTotals.from_words(w, 122)
        self.deploys = w[153]


def pack_identity(identity: str) -> bytes:
    """The identity as COMMISSION carries it: UTF-8, at most 24 bytes."""
    raw = identity.encode()
    if len(raw) > 24:
        raise CellguardError(f"a pack identity holds at most 24 bytes of UTF-8; "
                             f"{identity!r} has {len(raw)}")
    if b"\0" in raw:
        raise CellguardError("a pack identity cannot hold a NUL character")
    return raw
