"""An accelerated simulated life: the firmware's lifetime record against the plant's truth.

:class:`Life` runs the firmware's simulated board (``cellguard_fw.hal_sim.SimBoard``:
the real ``Bms`` with its protection, coulomb counter and lifetime record,
imported in-process under CPython) against the equivalent-circuit plant
(``plant.py``) and the sensor model (``sensors.py``), with the firmware's files on
the flash model (``flash.py``), for ``days`` simulated days:

- a daily cycle: rest, a constant-current charge (06:00 on even days, 12:00 on
  odd days; the charger stops at 4.15 V on the highest cell), rest, a 1C
  discharge from 17:00 (the load stops at 3.3 V on the lowest cell), rest;
- an ambient temperature in hourly steps: seasons (squeezed into the life when it
  is shorter than a year), day and night, seeded day-to-day weather, cold snaps
  (nights below the chemistry's -20 degC) and hot spells (noon above its 45 degC
  charging limit);
- injected harmful events of each kind the record counts (:data:`KINDS`): a cell
  drained by an internal short below 2.5 V (deep discharge), a charger that does
  not stop (overcharge), a cell held at 68 degC (over-temperature), a 20 A load
  (over-current), a short across the output (short circuit);
- power cycles at seeded random points, half of them tearing the lifetime
  record's save at a random byte (the file left holding the new record's first
  bytes and the old record's rest: a non-atomic file system's worst case; the
  flash model's LittleFS-like commits would keep the old file whole).

The truth is integrated on the host from the plant's own current, terminal
voltage and sensor-position temperatures, never from the firmware's numbers.
What a power cycle loses by design (operation since the record's last save) is
taken out of the truth using the times of the saves, which the host sees on the
flash model; each loss is also measured from the record before and after.

``runtime="micropython"`` runs the same life with the firmware under real
MicroPython (the WebAssembly port, ``runtime.MicroPythonRuntime``; its files in
that interpreter's filesystem, so no flash-wear figures), slower but the same
record word for word.

Acceleration (what makes a year affordable; docs/lifetime.md "Simulated life"):
the firmware runs in-process under CPython; steps are 1 s while current flows, a
temperature is near a limit or an event runs (the board's own 100 ms around a
short circuit or over-current), and up to 60 s in a quiet rest (no current,
the pack settled at an ambient at least 3 K from every temperature limit),
never across a change of the ambient, a scheduled action or the record's save
deadline. The board file is ``sim-4s`` without the EKF estimator (floats each
second; the lifetime record counts the coulomb counter's SoC) and with
telemetry once a minute (nobody listens).
"""

from __future__ import annotations

import heapq
import json
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..boards import load_board
from ..link.lifetime import LifetimeRecord
from ..paths import firmware_dir
from ..protocol.codec import build_payload, encode_frame
from ..protocol.messages import BY_NAME
from .flash import FlashModel, PowerLost
from .plant import RESET_OUTPUTS, Plant
from .sensors import SensorModel

KINDS = ("deep_discharge", "overcharge", "overtemperature", "overcurrent", "short_circuit")
"""The harmful kinds the record counts, in its order (``LifetimeRecord.harmful``)."""

SAVE_INTERVAL_S = 300.0
"""The record's save interval (``lifetime._SAVE_MS``): at most this much operation is
lost at a power cycle."""
RECORD_BYTES = 356
"""The record saved every few minutes (words 0-84, ``lifetime._SIZE``): a torn save
keeps a random number of its bytes below this."""
EVENT_SAVE_S = 10.0
"""... and an event edge is saved this long after it (``lifetime._GAP_MS``)."""

# Temperature limits of the board's chemistry (nmc, degC) the record's times use.
HOT_C = 60.0
HOT_CHARGE_C = 45.0
COLD_C = -20.0
COLD_CHARGE_C = 0.0
LIMITS_C = (COLD_C, COLD_CHARGE_C, HOT_CHARGE_C, HOT_C)
HARM = {"deep_discharge": (2.5, 1.0), "overcharge": (4.25, 1.0), "overtemperature": (60.0, 2.0),
        "overcurrent": (15.0, 0.5), "short_circuit": (45.0, 0.0)}
"""Each harmful kind's limit in the plant (V, V, degC, A discharging, A discharging)
and the trip delay it must last (s): the chemistry's and the board's."""
REST_A = 0.030  # the record's rest current: C/100 of the 3 Ah board

CHARGE_A = 1.5
DISCHARGE_A = -3.0
CHARGE_STOP_V = 4.15
DISCHARGE_STOP_V = 3.30
DAY_MS = 86_400_000
HOUR_MS = 3_600_000

FINE_MS = 100  # the board's control period: around a short circuit or over-current
ACTIVE_MS = 1000  # current flowing, a temperature near a limit, an event running
QUIET_MS = 60_000  # a quiet rest
MARGIN_K = 3.0  # a quiet rest keeps the pack this far from every temperature limit


def life_board() -> dict[str, Any]:
    """``sim-4s`` as the life runs it: no EKF estimator, telemetry once a minute, the
    charge-temperature limits warnings."""
    board = load_board("sim-4s")
    board["estimator"] = "none"
    board["telemetry_period_ms"] = 60_000
    # Charging beyond the charge-temperature limits is reported, not stopped (a
    # board whose charger derates itself): the record then counts hours of it,
    # not only the protection's 2 s trip delay.
    board["severity"] = {"overtemperature_charge": "warning",
                         "undertemperature_charge": "warning"}
    return board


# -- the truth ------------------------------------------------------------------
TRUTH_KEYS = ("charge_in_ah", "charge_out_ah", "energy_in_wh", "energy_out_wh", "operating_s",
              "rest_s", "charging_s", "discharging_s", "hot_idle_s", "hot_charging_s",
              "cold_idle_s", "cold_charging_s")


@dataclass
class Truth:
    """Integrals of the plant's own values over the time the firmware ran."""

    v: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TRUTH_KEYS, 0.0))

    def copy(self) -> Truth:
        return Truth(dict(self.v))

    def minus(self, other: Truth) -> Truth:
        return Truth({k: self.v[k] - other.v[k] for k in TRUTH_KEYS})

    def add(self, other: Truth) -> None:
        for k in TRUTH_KEYS:
            self.v[k] += other.v[k]


# -- the torn save ----------------------------------------------------------------
class LifeFlash(FlashModel):
    """The flash model with a torn save of the lifetime record on demand: armed
    with :meth:`tear` at byte ``k``, the next write of a record file leaves the
    file with the new record's first ``k`` bytes and the old content's rest (same
    length), and the power fails (:class:`PowerLost`)."""

    def __init__(self) -> None:
        super().__init__(mount_point="/flash")
        self.tear_byte: int | None = None
        self.torn = 0
        self.life_saves = 0  # record files closed after a write

    def tear(self, byte: int) -> None:
        self.tear_byte = byte

    def open(self, path: str, mode: str = "r") -> Any:
        f = super().open(path, mode)
        name = self._path(path)
        if "w" in mode and name.endswith((".0", ".1")) and "/life." in name:  # words 0-84
            if self.tear_byte is not None:
                return _TornFile(self, f, self.tear_byte)
            self.life_saves += 1
        return f


class _TornFile:
    """The record's file during a torn save: the save's writes (it streams a record
    in a few) reach the file up to byte ``byte`` of the whole record, in place of the
    old content's first bytes; then the power fails."""

    def __init__(self, fs: LifeFlash, f: Any, byte: int) -> None:
        self.fs = fs
        self.f = f
        self.byte = byte
        self.new = b""

    def write(self, buf: bytes) -> int:
        self.new += bytes(buf)
        if len(self.new) <= self.byte:
            return len(buf)
        fs = self.fs
        path = self.f.path
        old = fs.files.get(path, b"")
        k = self.byte
        data = self.new[:k] + old[k:] if len(old) > k else self.new[:k]
        fs._write_back(path, data, 0)
        fs.tear_byte = None
        fs.torn += 1
        raise PowerLost(f"power lost {k} bytes into the save of {path}")

    def close(self) -> None:
        pass

    def __enter__(self) -> _TornFile:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False


# -- the firmware, in one interpreter or the other -------------------------------
class LifeFirmware:
    """The firmware's simulated board as the life drives it. ``step`` returns the
    ``OUT_*`` flags and raises :class:`PowerLost` when a torn save cut the power;
    after it, ``saved`` tells whether a whole record reached the flash, ``since``
    and ``edge`` are the record's save clock (``Lifetime.since``/``edge``)."""

    saved = False
    since = 0
    edge = False

    def step(self, dt_ms: int, codes: bytes, rx: bytes) -> int:
        raise NotImplementedError

    def words(self) -> list[int]:
        raise NotImplementedError

    def seq(self) -> int:
        raise NotImplementedError

    def tear(self, byte: int) -> None:
        """The power fails ``byte`` bytes into the next save of the record."""
        raise NotImplementedError

    def power_cycle(self) -> None:
        raise NotImplementedError

    def flash(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class CPythonLifeFirmware(LifeFirmware):
    """``cellguard_fw`` imported into this process (as ``flash_budget.py`` runs it),
    its files on :class:`LifeFlash`."""

    def __init__(self, board: dict[str, Any]) -> None:
        fw = str(firmware_dir())
        if fw not in sys.path:
            sys.path.insert(0, fw)
        from cellguard_fw.hal_sim import SimBoard

        from .firmware_files import mount_flash

        self.fs = LifeFlash()
        # The firmware's modules see the flash model as their open and os until close():
        # they are this process's modules, which other code (a test suite) shares.
        self.unmount = mount_flash(self.fs)
        self.fw = SimBoard(json.dumps(board), b"\x5e\x11life", "/flash")

    def step(self, dt_ms: int, codes: bytes, rx: bytes) -> int:
        saves = self.fs.life_saves
        _, outputs = self.fw.step(dt_ms, codes, rx)
        self.saved = self.fs.life_saves != saves
        life = self.fw.bms.lifetime
        self.since = life.since
        self.edge = life.edge
        return int(outputs)

    def words(self) -> list[int]:
        return list(self.fw.bms.lifetime.w)

    def seq(self) -> int:
        return int(self.fw.bms.lifetime.seq)

    def tear(self, byte: int) -> None:
        self.fs.tear(byte)

    def power_cycle(self) -> None:
        self.fs.reboot()
        self.fw.port.rx = bytearray()
        self.fw.boot()  # releases the outputs, loads the record, counts the boot

    def flash(self) -> dict[str, Any]:
        fs = self.fs
        return {"erases": fs.erase_count, "programs": fs.program_count,
                "commits": fs.commits, "compactions": fs.compactions,
                "max_block": fs.max_block_erases, "stall_ms": fs.stall_ms,
                "life_saves": fs.life_saves, "torn": fs.torn}

    def close(self) -> None:
        self.unmount()


# The MicroPython side of MicroPythonLifeFirmware: a step that also reports the
# record's save clock, and a torn save (the lifetime module's ``open`` replaced:
# the next record written gets the new record's first bytes and the old file's
# rest, then the "power" fails).
_MP_HELPERS = """
import cellguard_fw.lifetime as _lt
class _Cut(Exception):
    pass
class _Torn:
    def __init__(self, name, k):
        self.name = name
        self.k = k
        self.new = b''
    def __enter__(self):
        return self
    def __exit__(self, *a):
        return False
    def write(self, buf):
        self.new += bytes(buf)
        if len(self.new) <= self.k:
            return len(buf)
        try:
            with open(self.name, 'rb') as f:
                old = f.read()
        except OSError:
            old = b''
        k = self.k
        data = self.new[:k] + old[k:] if len(old) > k else self.new[:k]
        with open(self.name, 'wb') as f:
            f.write(data)
        raise _Cut()
_tear = [-1]
def _open(name, mode='r'):
    if _tear[0] >= 0 and 'w' in mode:
        k = _tear[0]
        _tear[0] = -1
        return _Torn(name, k)
    return open(name, mode)
_lt.open = _open
def _ls(dt, c, r):
    try:
        out = _sim.step_hex(dt, c, r)
    except _Cut:
        return 'CUT'
    l = _sim.bms.lifetime
    return '%s %d %d %d' % (out, l.seq, l.since, 1 if l.edge else 0)
"""


class MicroPythonLifeFirmware(LifeFirmware):
    """The firmware under real MicroPython (the WebAssembly port,
    ``runtime.MicroPythonRuntime``), its files in that interpreter's own
    filesystem (no flash model: no wear figures)."""

    def __init__(self, board: dict[str, Any]) -> None:
        from .runtime import MicroPythonRuntime

        self.board_json = json.dumps(board)
        self.rt = MicroPythonRuntime()
        self.rt.boot(self.board_json, b"\x5e\x11life")
        self.rt.exec(_MP_HELPERS)
        self._seq = 0
        self.torn = 0

    def step(self, dt_ms: int, codes: bytes, rx: bytes) -> int:
        reply = self.rt.exec(f"print(_ls({dt_ms},'{codes.hex()}','{rx.hex()}'))").strip()
        if reply == "CUT":
            self.torn += 1
            raise PowerLost("power lost during the save of the record")
        outputs, seq, since, edge = reply.split()[-4:]  # after the bytes sent (if any)
        self.saved = int(seq) != self._seq
        self._seq = int(seq)
        self.since = int(since)
        self.edge = edge == "1"
        return int(outputs)

    def words(self) -> list[int]:
        text = self.rt.exec("print(' '.join(str(x) for x in _sim.bms.lifetime.w))")
        return [int(x) for x in text.split()]

    def seq(self) -> int:
        return int(self.rt.exec("print(_sim.bms.lifetime.seq)"))

    def tear(self, byte: int) -> None:
        self.rt.exec(f"_tear[0] = {byte}")

    def power_cycle(self) -> None:
        self.rt.boot(self.board_json, b"\x5e\x11life")  # a new Bms: loads the record
        self._seq = self.seq()

    def flash(self) -> dict[str, Any]:
        return {"torn": self.torn}

    def close(self) -> None:
        self.rt.close()


# -- the schedule ------------------------------------------------------------------
@dataclass
class Injection:
    kind: str
    at_ms: int
    window_ms: tuple[int, int] = (0, 0)  # power cycles keep out of it
    seen_in_plant: bool = False  # the plant crossed the kind's limit long enough
    beyond_s: float = 0.0  # plant time beyond the limit
    serviced: bool = False


@dataclass
class Cut:
    at_ms: int
    torn: bool
    byte: int
    off_s: float
    loss_s: float = 0.0  # operating time the record lost (record before - after)
    went_back: list[str] = field(default_factory=list)  # quantities below the last save


@dataclass
class LifeResult:
    days: float
    seed: int
    truth: Truth  # what the plant went through while the firmware ran
    lost: Truth  # ... of it, what power cycles took before it was saved
    record: LifetimeRecord
    injected: dict[str, int]
    seen_in_plant: dict[str, int]
    boots: int
    cuts: list[Cut]
    steps: int
    step_counts: dict[int, int]
    flash: dict[str, Any]
    spurious: dict[str, int]  # harmful crossings in the plant outside the injections
    reload_mismatches: int  # reloads that did not bring back the last saved record
    capacity_ah: float = 3.0  # the board's rated capacity

    @property
    def kept(self) -> Truth:
        """What the record should hold: the truth less what power cycles took."""
        return self.truth.minus(self.lost)

    def efc_truth(self) -> float:
        """Equivalent full cycles of the kept truth: throughput over twice the capacity."""
        k = self.kept.v
        return (k["charge_in_ah"] + k["charge_out_ah"]) / (2.0 * self.capacity_ah)


TOLERANCES = {
    "charge_in_ah": ("rel", 0.01), "charge_out_ah": ("rel", 0.01),
    "energy_in_wh": ("rel", 0.01), "energy_out_wh": ("rel", 0.01),
    "equivalent_full_cycles": ("rel", 0.02),
    "operating_s": ("abs", 1.0),
    "rest_s": ("abs", SAVE_INTERVAL_S), "charging_s": ("abs", SAVE_INTERVAL_S),
    "discharging_s": ("abs", SAVE_INTERVAL_S),
    "hot_idle_s": ("abs", SAVE_INTERVAL_S), "hot_charging_s": ("abs", SAVE_INTERVAL_S),
    "cold_idle_s": ("abs", SAVE_INTERVAL_S), "cold_charging_s": ("abs", SAVE_INTERVAL_S),
}
"""Quantity -> (relative or absolute, bound): throughput 1 %, equivalent full cycles
2 %, the operating time to the second (both count the same milliseconds), every
other time within one save interval."""

@dataclass
class Row:
    quantity: str
    truth: float
    record: float
    tolerance: str
    ok: bool

    @property
    def difference(self) -> float:
        return self.record - self.truth


def agreement(result: LifeResult) -> list[Row]:
    """The record against the truth, quantity by quantity (``TOLERANCES``), then each
    harmful kind, the boots, the worst loss at a power cycle and the reloads."""
    rec = result.record
    kept = result.kept.v
    rows: list[Row] = []
    record_values = {k: float(getattr(rec, k)) for k in TRUTH_KEYS}
    # the board's own count (words 82-84: each save's throughput over twice the
    # capacity then; this life has no estimator, so the rated one), up to its last save
    record_values["equivalent_full_cycles"] = float(rec.equivalent_full_cycles or 0.0)
    truth_values = dict(kept)
    truth_values["equivalent_full_cycles"] = result.efc_truth()
    order = ("charge_in_ah", "charge_out_ah", "energy_in_wh", "energy_out_wh",
             "equivalent_full_cycles", "operating_s", "rest_s", "charging_s", "discharging_s",
             "hot_idle_s", "hot_charging_s", "cold_idle_s", "cold_charging_s")
    for q in order:
        how, bound = TOLERANCES[q]
        t, r = truth_values[q], record_values[q]
        if how == "rel":
            ok = abs(r - t) <= bound * abs(t) and (t > 0 or r == 0)
            tol = f"{bound * 100:g} %"
        else:
            ok = abs(r - t) <= bound
            tol = f"{bound:g} s"
        rows.append(Row(q, t, r, tol, ok))
    for kind in KINDS:
        n = result.injected[kind]
        seen = result.seen_in_plant[kind]
        counted = rec.harmful[kind]
        rows.append(Row(f"harmful: {kind}", float(n), float(counted), "exact",
                        counted == n == seen and not result.spurious[kind]))
    rows.append(Row("boots", float(result.boots), float(rec.boots), "exact",
                    rec.boots == result.boots))
    worst = max((c.loss_s for c in result.cuts), default=0.0)
    rows.append(Row("worst loss at a power cycle, s", SAVE_INTERVAL_S, worst,
                    "<= interval + a step", worst <= SAVE_INTERVAL_S + ACTIVE_MS / 1000))
    back = sum(len(c.went_back) for c in result.cuts)
    rows.append(Row("counters rolled back at a restart", 0.0, float(back), "none", back == 0))
    rows.append(Row("reloads not the last saved record", 0.0,
                    float(result.reload_mismatches), "none", result.reload_mismatches == 0))
    return rows


def format_table(rows: list[Row]) -> list[str]:
    lines = [f"{'quantity':<36}{'truth':>17}{'record':>17}{'difference':>13}"
             f"{'tolerance':>22}  result"]
    for r in rows:
        lines.append(f"{r.quantity:<36}{r.truth:>17,.3f}{r.record:>17,.3f}"
                     f"{r.difference:>+13,.3f}{r.tolerance:>22}  {'PASS' if r.ok else 'FAIL'}")
    return lines


_LABELS = {
    "charge_in_ah": "charge in, Ah", "charge_out_ah": "charge out, Ah",
    "energy_in_wh": "energy in, Wh", "energy_out_wh": "energy out, Wh",
    "equivalent_full_cycles": "equivalent full cycles", "operating_s": "operating time, s",
    "rest_s": "at rest, s", "charging_s": "charging, s", "discharging_s": "discharging, s",
    "hot_idle_s": "above 60 °C not charging, s", "hot_charging_s": "above 45 °C charging, s",
    "cold_idle_s": "below −20 °C not charging, s",
    "cold_charging_s": "below 0 °C charging, s",
    "worst loss at a power cycle, s": "worst loss at a power cycle, s (bound)",
    "counters rolled back at a restart": "quantities below the last save after a restart",
    "reloads not the last saved record": "reloads other than the last saved record"}


def _cell(quantity: str, x: float) -> str:
    if quantity.endswith(("_ah", "_wh")) or quantity == "equivalent_full_cycles":
        return f"{x:,.3f}"
    if quantity.endswith("_s"):
        return f"{x:,.1f}"
    if quantity.startswith("worst"):
        return f"{x:,.3f}"
    return f"{x:,.0f}"


def markdown_table(rows: list[Row]) -> list[str]:
    """The rows as the docs show them (docs/lifetime.md "Simulated life")."""
    lines = ["| quantity | truth | record | difference | tolerance | |",
             "|---|---:|---:|---:|---|---|"]
    for r in rows:
        q = r.quantity
        label = _LABELS.get(q) or (f"{q.replace('_', ' ')} events" if q.startswith("harmful")
                                   else q)
        d = _cell(q, abs(r.difference))
        if d.strip("0.,"):
            d = ("+" if r.difference > 0 else "−") + d
        truth = "300" if q.startswith("worst") else _cell(q, r.truth)
        lines.append(f"| {label} | {truth} | {_cell(q, r.record)} | {d} | "
                     f"{r.tolerance.replace('<=', '≤')} | {'PASS' if r.ok else 'FAIL'} |")
    return lines


# -- the life ----------------------------------------------------------------------
class Life:
    """One simulated life (module docstring). ``days``: its length; ``seed``: the
    weather, the cells' spread, the power cycles; ``cuts_per_day``: power cycles
    (half of them torn saves); ``events``: injections of each harmful kind (spread
    over the life); ``season_days``: the seasons' period (default the life's
    length, a year at most); ``runtime``: ``cpython`` or ``micropython``;
    ``extra_cuts``: plain power cycles (5 s off) at these times (ms), wherever they
    fall."""

    def __init__(self, days: float, seed: int = 1, cuts_per_day: float = 0.5,
                 events: int = 1, season_days: float | None = None,
                 runtime: str = "cpython", extra_cuts: tuple[int, ...] = ()) -> None:
        self.days = days
        self.seed = seed
        self.rng = random.Random(seed)
        self.board = life_board()
        self.capacity_ah = self.board["capacity_mah"] / 1000.0
        self.end_ms = round(days * DAY_MS)
        self.season_days = season_days or (365.0 if days >= 365 else max(days, 1.0))
        self.plant = Plant(self.board, seed=seed, initial_soc_pct=50.0, ambient_c=15.0)
        self.sensors = SensorModel(self.board, seed=seed)
        if runtime not in ("cpython", "micropython"):
            raise ValueError(f"runtime must be cpython or micropython, not {runtime!r}")
        self.runtime = runtime
        self.fw: LifeFirmware = (MicroPythonLifeFirmware(self.board) if runtime == "micropython"
                                 else CPythonLifeFirmware(self.board))
        self.plant.outputs = RESET_OUTPUTS  # the board's first step drives them
        self.t_ms = 0
        self.truth = Truth()
        self.lost = Truth()
        self.saved = Truth()  # the truth when the record was last saved
        self.saved_words: list[int] | None = None  # the record as last saved
        self.reload_mismatches = 0
        self.boots = 1
        self.cuts: list[Cut] = []
        self.steps = 0
        self.step_counts: dict[int, int] = {}
        self.rx = bytearray()
        self.seq = 0
        self.requested_a = 0.0
        self.phase = "rest"
        self.phase_end_ms = 0
        self.charger_faulty = False
        self.blocked_since = -1
        self.fine_until_ms = -1
        self.active_until_ms = -1
        self.watch: Injection | None = None
        self.spurious: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._runs: dict[str, float] = dict.fromkeys(KINDS, 0.0)
        self.weather = self._weather()
        self.injections: list[Injection] = []
        self.actions: list[tuple[int, int, Callable[[], None]]] = []
        self._order = 0
        self._cut_times: list[int] = []
        self._schedule(events, cuts_per_day)
        for at in extra_cuts:
            self._at(at, lambda: self._power_cycle(Cut(self.t_ms, False, -1, 5.0)))

    def record(self) -> LifetimeRecord:
        return LifetimeRecord.from_words(2, self.fw.seq(), self.fw.words())

    def send(self, name: str, values: dict[str, Any] | None = None) -> None:
        """A request from the host, on the next step (as over the serial port)."""
        self.seq = (self.seq + 1) & 0xFFFF
        self.rx += encode_frame(BY_NAME[name].msg_id, self.seq, build_payload(name, values or {}))

    # -- weather ---------------------------------------------------------------------
    def _weather(self) -> list[float]:
        """The ambient of every hour (degC): seasons, day and night, weather, kept
        at least MARGIN_K from every temperature limit except by the cold snaps and
        hot spells added by the schedule."""
        hours = math.ceil(self.days * 24) + 48
        anomaly = 0.0
        out = []
        for h in range(hours):
            day = h // 24
            if h % 24 == 0:
                anomaly = 0.7 * anomaly + self.rng.gauss(0.0, 3.0)
            season = -math.cos(2 * math.pi * (day + 0.5) / self.season_days)
            diurnal = -math.cos(2 * math.pi * ((h % 24) - 4) / 24.0)
            t = 14.0 + 19.0 * season + 7.0 * diurnal + anomaly
            out.append(_keep_clear(min(max(t, -17.0), 41.0)))
        return out

    def ambient(self, t_ms: int) -> float:
        return self.weather[t_ms // HOUR_MS]

    # -- the schedule --------------------------------------------------------------------
    def _at(self, t_ms: int, fn: Callable[[], None]) -> None:
        self._order += 1
        heapq.heappush(self.actions, (t_ms, self._order, fn))

    def _schedule(self, events: int, cuts_per_day: float) -> None:
        n_days = math.ceil(self.days)
        for d in range(n_days):
            base = d * DAY_MS
            charge_h = 6 if d % 2 == 0 else 12
            self._at(base + charge_h * HOUR_MS, lambda: self._start_phase("charge", 5 * HOUR_MS))
            self._at(base + 17 * HOUR_MS, lambda: self._start_phase("discharge", 4 * HOUR_MS))
        # harmful events: ``events`` of each kind, spread over the life
        slots = [d for d in range(n_days)]
        for k, kind in enumerate(KINDS):
            for j in range(events):
                d = slots[(j * len(KINDS) + k) * len(slots) // (events * len(KINDS))]
                self._inject(kind, d)
        # weather extremes: a cold snap in the coldest part of the seasons, a hot spell
        # at noon of the hottest, about one in six days of each season
        # (not on a day with a runaway charger: a cold snap's latched under-temperature
        # fault would keep that morning's charge from happening at all)
        charger_days = {x.at_ms // DAY_MS for x in self.injections if x.kind == "overcharge"}
        cold_days = [d for d in range(n_days)
                     if self._season(d) < -0.7 and d not in charger_days]
        hot_days = [d for d in range(n_days) if self._season(d) > 0.7 and d % 2 == 1]
        for days, snap in ((cold_days, self._cold_snap), (hot_days, self._hot_spell)):
            if days:
                picks = sorted(self.rng.sample(days, max(1, len(days) // 6)))
                for d in picks:
                    snap(d)
        # power cycles at random points, out of the injections' windows
        n_cuts = max(1, round(cuts_per_day * self.days)) if cuts_per_day > 0 else 0
        for j in range(n_cuts):
            for _ in range(1000):
                at = self.rng.randrange(HOUR_MS, self.end_ms - HOUR_MS)
                if all(not (w.window_ms[0] - 15 * 60_000 <= at <= w.window_ms[1] + 15 * 60_000)
                       for w in self.injections) and all(
                        abs(at - c) > HOUR_MS for c in self._cut_times):
                    break
            else:
                continue
            torn = j % 2 == 1
            self._cut_times.append(at)
            byte = self.rng.randrange(0, RECORD_BYTES)
            off_s = self.rng.uniform(1.0, 600.0)
            self._at(at, lambda torn=torn, byte=byte, off_s=off_s: self._cut(torn, byte, off_s))

    def _season(self, d: int) -> float:
        return -math.cos(2 * math.pi * (d + 0.5) / self.season_days)

    def _set_hours(self, d: int, first: int, last: int, value: float) -> None:
        for h in range(d * 24 + first, d * 24 + last):
            if h < len(self.weather):
                self.weather[h] = value

    def _cold_snap(self, d: int) -> None:
        self._set_hours(d, 0, 6, -27.0 - 2.0 * self.rng.random())

    def _hot_spell(self, d: int) -> None:
        self._set_hours(d, 11, 16, 49.0 + 2.0 * self.rng.random())

    def _inject(self, kind: str, d: int) -> None:
        base = d * DAY_MS
        if kind == "short_circuit":
            at = base + 18 * HOUR_MS  # in the discharge
            inj = Injection(kind, at, (at - 60_000, at + 120_000))
            self._at(at, lambda: self._short(inj))
        elif kind == "overcurrent":
            at = base + 18 * HOUR_MS + 40 * 60_000
            inj = Injection(kind, at, (at - 60_000, at + 120_000))
            self._at(at, lambda: self._overcurrent(inj))
        elif kind == "overtemperature":
            at = base + 2 * HOUR_MS
            inj = Injection(kind, at, (at - 60_000, at + 30 * 60_000))
            self._at(at, lambda: self._overtemperature(inj))
        elif kind == "overcharge":
            at = base + (6 if d % 2 == 0 else 12) * HOUR_MS
            inj = Injection(kind, at, (at, at + 5 * HOUR_MS))
            self._at(at + 1, lambda: self._overcharge(inj))
        else:  # deep discharge: after the evening's discharge, the cells low
            at = base + 22 * HOUR_MS
            inj = Injection(kind, at, (at - 60_000, at + HOUR_MS))
            self._at(at, lambda: self._deep_discharge(inj))
        if inj.window_ms[1] > self.end_ms:  # not within the life: left out
            self.actions = [a for a in self.actions if a[0] != at and a[0] != at + 1]
            heapq.heapify(self.actions)
            return
        self.injections.append(inj)

    # -- actions -----------------------------------------------------------------------------
    def _start_phase(self, phase: str, length_ms: int) -> None:
        self.send("clear_faults")  # the user clears what has gone
        self.phase = phase
        self.phase_end_ms = self.t_ms + length_ms
        self.charger_faulty = False
        self.blocked_since = -1

    def _short(self, inj: Injection) -> None:
        self.watch = inj
        self.fine_until_ms = self.t_ms + 60_000
        self.plant.short_circuit_ohm = 0.05
        self._at(self.t_ms + 2000, lambda: setattr(self.plant, "short_circuit_ohm", None))
        self._at(self.t_ms + 40_000, lambda: self._recover(inj))

    def _overcurrent(self, inj: Injection) -> None:
        self.watch = inj
        self.fine_until_ms = self.t_ms + 60_000
        self.overload_until_ms = self.t_ms + 3000
        self._at(self.t_ms + 40_000, lambda: self._recover(inj))

    overload_until_ms = -1

    def _overtemperature(self, inj: Injection) -> None:
        self.watch = inj
        self.active_until_ms = self.t_ms + 25 * 60_000
        self.plant.cell_temperature_override_c[0] = 68.0  # sensor 0 sits on cell 0
        self._at(self.t_ms + 20 * 60_000,
                 lambda: self.plant.cell_temperature_override_c.__setitem__(0, None))
        self._at(self.t_ms + 21 * 60_000, lambda: self._recover(inj))

    def _overcharge(self, inj: Injection) -> None:
        self.watch = inj
        self.charger_faulty = True  # until its charge ends: then recovered

    def _deep_discharge(self, inj: Injection) -> None:
        self.watch = inj
        self.active_until_ms = self.t_ms + HOUR_MS
        self.plant.internal_short_ohm[1] = 2.0

    def _service_cell(self, inj: Injection) -> None:
        """The drained cell is taken out, recharged on the bench to the others' SoC."""
        self.plant.internal_short_ohm.pop(1, None)
        cells = self.plant.cells
        c = cells[1]
        c.soc = sum(x.soc for i, x in enumerate(cells) if i != 1) / (len(cells) - 1)
        c.v_rc1 = c.v_rc2 = 0.0
        self._at(self.t_ms + 30_000, lambda: self._recover(inj))

    def _recover(self, inj: Injection) -> None:
        self.send("clear_faults")
        if self.watch is inj:
            self.watch = None

    def _cut(self, torn: bool, byte: int, off_s: float) -> None:
        if torn:
            self.fw.tear(byte)  # the power fails during the next save of the record
            self.pending_cut = Cut(self.t_ms, True, byte, off_s)
        else:
            self._power_cycle(Cut(self.t_ms, False, -1, off_s))

    pending_cut: Cut | None = None

    def _power_cycle(self, cut: Cut) -> None:
        before = self.record()
        # what the record had not saved is lost: the truth since the last save
        self.lost.add(self.truth.minus(self.saved))
        self.plant.release_outputs()
        self.plant.ambient_c = self.ambient(self.t_ms)
        self.plant.requested_current_a = self.requested_a
        self.plant.step(cut.off_s)  # off: nothing flows, nothing is counted
        self.t_ms += round(cut.off_s * 1000)
        self.rx = bytearray()
        self.fw.power_cycle()
        self.boots += 1
        self.saved = self.truth.copy()
        after = self.record()
        cut.loss_s = before.operating_s - after.operating_s
        if self.saved_words is not None:
            saved = LifetimeRecord.from_words(2, 0, self.saved_words)
            for q in TRUTH_KEYS:
                if getattr(after, q) < getattr(saved, q) - 1e-9:
                    cut.went_back.append(q)
            expect = list(self.saved_words)
            expect[28] += 1  # the boot this reload counts
            if self.fw.words() != expect:
                self.reload_mismatches += 1
        self.cuts.append(cut)
        self.active_until_ms = max(self.active_until_ms, self.t_ms + 20_000)

    # -- stepping ------------------------------------------------------------------------------
    def _controls(self) -> None:
        """The charger and the load: what they ask of the pack now."""
        plant = self.plant
        t = self.t_ms
        if self.phase != "rest" and t >= self.phase_end_ms:
            self.phase = "rest"
        cells_v = plant.cells_v()
        if self.phase == "charge":
            stop = max(cells_v) >= CHARGE_STOP_V and not self.charger_faulty
            if self.charger_faulty:  # it stops only once the BMS has held it a minute
                if plant.current_a < REST_A and self.requested_a > 0:
                    if self.blocked_since < 0:
                        self.blocked_since = t
                else:
                    self.blocked_since = -1
                stop = self.blocked_since >= 0 and t - self.blocked_since >= 60_000
            if stop:
                self.phase = "rest"
                inj = self.watch
                if self.charger_faulty and inj is not None and inj.kind == "overcharge":
                    self._at(t + 600_000, lambda: self._recover(inj))
        elif self.phase == "discharge" and min(cells_v) <= DISCHARGE_STOP_V:
            self.phase = "rest"
        a = CHARGE_A if self.phase == "charge" else DISCHARGE_A if self.phase == "discharge" \
            else 0.0
        if t < self.overload_until_ms:
            a = -20.0
        self.requested_a = a
        plant.requested_current_a = a
        plant.ambient_c = self.ambient(t)

    def _dt(self) -> int:
        t = self.t_ms
        if t < self.fine_until_ms:
            dt = FINE_MS
        elif (self.requested_a != 0.0 or t < self.active_until_ms or self.watch is not None
              or self.plant.current_a != 0.0 or not self._quiet()):
            dt = ACTIVE_MS
        else:
            dt = QUIET_MS
            fw = self.fw
            if fw.since < 300_000:  # the save comes when it would on a board
                dt = min(dt, max(300_000 - fw.since, ACTIVE_MS))
            if fw.edge:
                dt = ACTIVE_MS
        nxt = self.actions[0][0] if self.actions else self.end_ms
        hour = (t // HOUR_MS + 1) * HOUR_MS
        return max(min(dt, nxt - t, hour - t, self.end_ms - t), 1)

    def _quiet(self) -> bool:
        """No temperature limit can be crossed before the ambient next changes: the
        ambient is constant within the hour and the pack's temperatures approach it
        monotonically, so each must be on the ambient's side of every limit (the
        ambient keeps MARGIN_K from them) and at least half a kelvin from it."""
        plant = self.plant
        amb = plant.ambient_c
        for x in plant.sensors_temperature_c():
            for lim in LIMITS_C:
                if abs(x - lim) < 0.5 or (x > lim) != (amb > lim):
                    return False
        return True

    def _step(self, dt_ms: int) -> None:
        plant = self.plant
        dt_s = dt_ms / 1000.0
        i = plant.current_a
        v0 = plant.pack_voltage_v() if i else 0.0
        in0, out0 = plant.charge_in_ah, plant.charge_out_ah
        plant.step(dt_s)
        tr = self.truth.v
        tr["charge_in_ah"] += plant.charge_in_ah - in0
        tr["charge_out_ah"] += plant.charge_out_ah - out0
        if i:
            wh = i * (v0 + plant.pack_voltage_v()) / 2.0 * dt_s / 3600.0
            tr["energy_in_wh" if wh > 0 else "energy_out_wh"] += abs(wh)
        tr["operating_s"] += dt_s
        temps = plant.sensors_temperature_c()
        hot, cold = max(temps), min(temps)
        charging = i >= REST_A
        if abs(i) < REST_A:
            tr["rest_s"] += dt_s
        elif charging:
            tr["charging_s"] += dt_s
        else:
            tr["discharging_s"] += dt_s
        if charging:
            if hot > HOT_CHARGE_C:
                tr["hot_charging_s"] += dt_s
            if cold < COLD_CHARGE_C:
                tr["cold_charging_s"] += dt_s
        else:
            if hot > HOT_C:
                tr["hot_idle_s"] += dt_s
            if cold < COLD_C:
                tr["cold_idle_s"] += dt_s
        self._watch_plant(dt_s, hot)
        codes = self.sensors.codes(plant)
        self.t_ms += dt_ms
        rx = bytes(self.rx)
        self.rx = bytearray()
        try:
            outputs = self.fw.step(dt_ms, codes, rx)
        except PowerLost:
            cut = self.pending_cut
            assert cut is not None
            self.pending_cut = None
            cut.at_ms = self.t_ms
            self._power_cycle(cut)
            return
        plant.outputs = outputs
        if self.fw.saved:  # a whole record reached the flash
            self.saved = self.truth.copy()
            self.saved_words = self.fw.words()
        self.steps += 1
        self.step_counts[dt_ms] = self.step_counts.get(dt_ms, 0) + 1

    def _watch_plant(self, dt_s: float, hot: float) -> None:
        """Did the injected event happen in the plant: its limit crossed for at least
        the protection's trip delay (``HARM``)? A crossing as long outside the
        injection of its kind is counted as spurious (the life's design keeps it 0:
        a short circuit pulls the cells below 2.5 V for one 100 ms step, which no
        protection may count as a deep discharge)."""
        plant = self.plant
        cells_v = plant.cells_v()
        i = plant.current_a
        beyond = {"deep_discharge": min(cells_v) < HARM["deep_discharge"][0],
                  "overcharge": max(cells_v) > HARM["overcharge"][0],
                  "overtemperature": hot > HARM["overtemperature"][0],
                  "overcurrent": -i > HARM["overcurrent"][0],
                  "short_circuit": -i > HARM["short_circuit"][0]}
        inj = self.watch
        for kind, out in beyond.items():
            run = self._runs[kind] + dt_s if out else 0.0
            self._runs[kind] = run
            if not out:
                continue
            if inj is not None and inj.kind == kind:
                inj.beyond_s += dt_s
                if inj.beyond_s >= HARM[kind][1]:
                    inj.seen_in_plant = True
            elif run >= HARM[kind][1] and run - dt_s < HARM[kind][1] and not (
                    kind == "overcurrent" and inj is not None and inj.kind == "short_circuit"):
                self.spurious[kind] += 1
        if inj is not None and inj.kind == "deep_discharge" and not inj.serviced \
                and min(cells_v) < 2.45:
            inj.serviced = True
            self._at(self.t_ms + 60_000, lambda inj=inj: self._service_cell(inj))

    def run(self, progress: Callable[[Life], None] | None = None) -> LifeResult:
        next_report = DAY_MS
        try:
            while self.t_ms < self.end_ms:
                while self.actions and self.actions[0][0] <= self.t_ms:
                    _, _, fn = heapq.heappop(self.actions)
                    fn()
                self._controls()
                self._step(self._dt())
                if progress is not None and self.t_ms >= next_report:
                    next_report += DAY_MS
                    progress(self)
        except BaseException:
            self.fw.close()
            raise
        injected = {k: sum(1 for x in self.injections if x.kind == k) for k in KINDS}
        seen = {k: sum(1 for x in self.injections if x.kind == k and x.seen_in_plant)
                for k in KINDS}
        flash = self.fw.flash()
        record = self.record()
        self.fw.close()
        return LifeResult(self.days, self.seed, self.truth, self.lost, record, injected,
                          seen, self.boots, self.cuts, self.steps, dict(self.step_counts),
                          flash, dict(self.spurious), self.reload_mismatches, self.capacity_ah)


def _keep_clear(t: float) -> float:
    """Move an hourly ambient out of the band MARGIN_K around each limit (to its
    nearer edge), so that the pack crosses a limit briskly, never grazing it."""
    for lim in LIMITS_C:
        if abs(t - lim) < MARGIN_K:
            return lim - MARGIN_K if t < lim else lim + MARGIN_K
    return t
