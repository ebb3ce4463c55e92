"""A rig file (``rig.toml``): which instrument plays which role, at which VISA address,
and what each relay channel is wired to. ``docs/hil.md`` shows one for a real bench.

Roles: ``source`` (a supply: charges), ``sink`` (an electronic load: discharges),
or ``source_sink`` (one bidirectional supply for both); ``cell_emulator``; ``dmm``;
``relay`` with its ``[[relay.channel]]`` wiring. Every role is optional; a test that
needs a role the rig lacks is skipped, naming it.

``resource = "emulated"`` (a simulated board only): the instrument is emulated
against the simulated board's plant and reached through PyVISA on a loopback socket
or a pseudo-terminal (``bench.py``).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import HilError

EMULATED = "emulated"
INSTRUMENT_ROLES = ("source", "sink", "source_sink", "cell_emulator", "dmm")

RELAY_KINDS: dict[str, tuple[str, bool]] = {
    # what a channel does -> (the parameter it needs, or "", the state that applies it)
    "board_power": ("", False),  # closed: the board powered; open: off
    "short_circuit": ("ohms", True),  # closed: a resistor across the pack's output
    "open_wire": ("cell", False),  # open: the sense wire at the top of a cell cut
    "disconnected_temp": ("sensor", False),  # open: a temperature sensor's lead cut
    "shorted_temp": ("sensor", True),  # closed: a temperature sensor's input shorted
}
"""A relay channel's job -> (its parameter, whether *closing* it applies the fault).
At rest every channel is in the other state (board powered, wires connected)."""


@dataclass(frozen=True)
class InstrumentSpec:
    role: str
    driver: str
    resource: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def emulated(self) -> bool:
        return self.resource == EMULATED


@dataclass(frozen=True)
class RelayWiring:
    channel: int
    does: str
    value: float | None = None  # ohms, or a 0-based cell or sensor index

    @property
    def applied_closed(self) -> bool:
        return RELAY_KINDS[self.does][1]

    @property
    def rest_closed(self) -> bool:
        return not self.applied_closed


@dataclass(frozen=True)
class RigSpec:
    name: str
    path: str
    instruments: dict[str, InstrumentSpec]
    relays: list[RelayWiring]
    latency_s: float = 0.5
    power_off_s: float = 2.0
    cell_accuracy_v: float | None = None
    emulator_rest_v: float | None = None  # None: the emulator's channels off at rest

    @property
    def emulated(self) -> bool:
        return any(i.emulated for i in self.instruments.values())

    def relay_for(self, does: str, value: float | None = None) -> RelayWiring | None:
        for r in self.relays:
            if r.does == does and (value is None or r.value is None or r.value == value):
                return r
        return None


def _number(table: dict[str, Any], key: str, where: str, default: float | None = None,
            positive: bool = True) -> float | None:
    value = table.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HilError(f"{where}: {key} must be a number, not {value!r}")
    if positive and value < 0:
        raise HilError(f"{where}: {key} must not be negative, not {value!r}")
    return float(value)


def _relays(table: dict[str, Any], where: str) -> list[RelayWiring]:
    channels = table.get("channel", [])
    if not isinstance(channels, list):
        raise HilError(f"{where}: write each relay channel as a [[relay.channel]] table")
    out: list[RelayWiring] = []
    for k, ch in enumerate(channels):
        at = f"{where}: relay channel {k + 1}"
        if not isinstance(ch, dict):
            raise HilError(f"{at}: not a table")
        unknown = set(ch) - {"channel", "does", "ohms", "cell", "sensor"}
        if unknown:
            raise HilError(f"{at}: unknown key(s) {', '.join(sorted(unknown))}")
        number = ch.get("channel")
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise HilError(f"{at}: channel must be the card's channel number, not {number!r}")
        does = ch.get("does")
        if does not in RELAY_KINDS:
            raise HilError(f"{at}: does must be one of {', '.join(RELAY_KINDS)}, not {does!r}")
        param = RELAY_KINDS[does][0]
        value = None
        if param:
            if param not in ch:
                raise HilError(f"{at}: {does} needs {param}")
            value = _number(ch, param, at)
            if param == "ohms" and not value:
                raise HilError(f"{at}: ohms must be more than 0")
            if param in ("cell", "sensor") and value is not None and value != int(value):
                raise HilError(f"{at}: {param} is a 0-based index, not {value!r}")
        if any(r.channel == number for r in out):
            raise HilError(f"{at}: channel {number} is wired twice")
        out.append(RelayWiring(number, does, value))
    return out


def parse_rig(data: dict[str, Any], path: str = "rig file") -> RigSpec:
    """A rig file's TOML, checked: HilError naming the first thing wrong."""
    known = {"rig", "relay", *INSTRUMENT_ROLES}
    unknown = set(data) - known
    if unknown:
        raise HilError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} (roles: "
                       f"{', '.join(INSTRUMENT_ROLES)}, relay; and [rig])")
    head = data.get("rig", {})
    if not isinstance(head, dict):
        raise HilError(f"{path}: [rig] must be a table")
    if "source_sink" in data and ({"source", "sink"} & set(data)):
        raise HilError(f"{path}: a bidirectional [source_sink] replaces [source] and [sink]; "
                       "give either it or them")
    instruments: dict[str, InstrumentSpec] = {}
    relays: list[RelayWiring] = []
    for role in (*INSTRUMENT_ROLES, "relay"):
        table = data.get(role)
        if table is None:
            continue
        where = f"{path}: [{role}]"
        if not isinstance(table, dict):
            raise HilError(f"{where} must be a table")
        driver, resource = table.get("driver"), table.get("resource")
        if not isinstance(driver, str) or not driver:
            raise HilError(f"{where}: driver is missing (see docs/instruments.md)")
        if not isinstance(resource, str) or not resource:
            raise HilError(f"{where}: resource is missing (a VISA resource string, e.g. "
                           f"TCPIP::192.168.1.20::INSTR, or \"{EMULATED}\")")
        skip = ("driver", "resource", "channel") if role == "relay" else ("driver", "resource")
        options = {k: v for k, v in table.items() if k not in skip}
        instruments[role] = InstrumentSpec(role, driver, resource, options)
        if role == "relay":
            relays = _relays(table, where)
    emulated = {i.emulated for i in instruments.values()}
    any_emulated = True in emulated
    if len(emulated) > 1:
        raise HilError(f"{path}: some instruments are \"{EMULATED}\" and some real; a rig "
                       "is one or the other")
    cells = instruments.get("cell_emulator")
    rest_v = None if cells is None else _number(cells.options, "rest_v", f"{path}: "
                                                "[cell_emulator]")
    accuracy_mv = _number(head, "cell_accuracy_mv", f"{path}: [rig]")
    return RigSpec(
        name=str(head.get("name", Path(path).stem)), path=path, instruments=instruments,
        # an emulated bench acts in the plant step it is told; a real one settles
        relays=relays, latency_s=_number(head, "latency_s", f"{path}: [rig]",
                                         0.0 if any_emulated else 0.5) or 0.0,
        power_off_s=_number(head, "power_off_s", f"{path}: [rig]", 2.0) or 0.0,
        cell_accuracy_v=None if accuracy_mv is None else accuracy_mv / 1000,
        emulator_rest_v=rest_v,
    )


def load_rig(path: str | Path) -> RigSpec:
    """Read and check a rig file: HilError (one line) for a missing or bad one."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise HilError(f"cannot read the rig file {p}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HilError(f"{p}: not valid TOML: {exc}") from None
    return parse_rig(data, str(p))
