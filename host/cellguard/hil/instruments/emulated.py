"""Each driver's instrument emulated against a plant (:class:`~.emulation.PlantSide`):
the same dialect as its driver, the instrument's error behaviour (an unknown header
queues -113, a value out of the model's range -222, read by ``SYST:ERR?``), and its
outputs acting on the plant. ``EMULATIONS`` has the same names as ``DRIVERS``.

Only what the drivers use is emulated (plus the common IEEE 488.2 commands the base
answers); anything else is an unknown header, as an instrument without it would say.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from .drivers.keysight_e36xx import RATINGS
from .emulation import EmulatedInstrument, PlantSide

LONG_FORMS = {
    "SOURCE": "SOUR", "CURRENT": "CURR", "VOLTAGE": "VOLT", "LEVEL": "LEV",
    "IMMEDIATE": "IMM", "INPUT": "INP", "STATE": "STAT", "MEASURE": "MEAS",
    "FUNCTION": "FUNC", "OUTPUT": "OUTP", "PROTECTION": "PROT", "LIMIT": "LIM",
    "SYSTEM": "SYST", "ERROR": "ERR", "ROUTE": "ROUT", "CLOSE": "CLOS",
    "BATTERY": "BATT", "LATCH": "LATC", "RANGE": "RANG", "SCALAR": "SCAL",
    "AMPLITUDE": "AMPL", "STATUS": "STAT", "NEXT": "NEXT",
}
DATA_TYPE_ERROR = '-104,"Data type error"'
SETTINGS_CONFLICT = '-221,"Settings conflict"'


def header_key(header: str) -> str:
    """A SCPI header in short form without its optional nodes (``:SOURce:CURRent:LEVel:
    IMMediate?`` -> ``CURR?``), so an emulation matches whichever form was sent."""
    query = header.endswith("?")
    nodes = [LONG_FORMS.get(n, n) for n in header.upper().strip(":").rstrip("?").split(":")]
    if nodes and nodes[0] == "SOUR":
        nodes = nodes[1:]
    nodes = [n for n in nodes if n not in ("LEV", "IMM", "SCAL", "AMPL", "NEXT")]
    if len(nodes) > 1 and nodes[-1] == "STAT" and nodes[-2] in ("INP", "LATC", "OUTP"):
        nodes = nodes[:-1]
    return ":".join(nodes) + ("?" if query else "")


class BadValue(Exception):
    """A command's data the instrument refuses (the error it queues is the argument)."""


def number(text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadValue(DATA_TYPE_ERROR) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise BadValue(EmulatedInstrument.DATA_OUT_OF_RANGE)
    return value


def flag(text: str) -> bool:
    word = text.strip().upper()
    if word in ("1", "ON"):
        return True
    if word in ("0", "OFF"):
        return False
    raise BadValue(DATA_TYPE_ERROR)


@dataclass(frozen=True)
class Setting:
    """One plain setting of a model, so that a model lists its settings instead of
    writing each one's command and query out: ``KEY <value>`` stores ``parse(value)``
    (which raises :class:`BadValue` for a value the model refuses) in the emulation's
    attribute ``attr``; ``KEY?`` answers ``show`` of it."""

    attr: str
    parse: Callable[[str], object]
    show: Callable[[Any], str]


def numeric(attr: str, low: float, high: float, fmt: str) -> Setting:
    """A number within ``low``..``high`` (-222 beyond it, -104 for no number), answered
    formatted with ``fmt``."""
    return Setting(attr, lambda text: number(text, low, high), lambda value: format(value, fmt))


def boolean(attr: str) -> Setting:
    """A state, 1/ON or 0/OFF (-104 otherwise), answered 1 or 0."""
    return Setting(attr, flag, lambda value: str(int(value)))


def choice(attr: str, words: dict[str, str]) -> Setting:
    """One of ``words`` in any case (-104 otherwise), kept and answered as the name it
    maps to (a long form and its short form name one mode)."""
    def parse(text: str) -> str:
        try:
            return words[text.upper()]
        except KeyError:
            raise BadValue(DATA_TYPE_ERROR) from None
    return Setting(attr, parse, str)


class ScpiEmulation(EmulatedInstrument):
    """A SCPI instrument: ``SYST:ERR?`` pops the queue, a command is dispatched by its
    short-form header (:func:`header_key`) to :meth:`dispatch`, whose default answers
    the model's plain settings (``SETTINGS``); a model answers its special cases (a
    measurement, a setting with a side effect) before handing the rest to it."""

    SETTINGS: ClassVar[dict[str, Setting]] = {}
    """Short-form key (without ``?``) -> the setting it sets and its query answers."""

    def command(self, command: str) -> str | None:
        header, _, arg = command.partition(" ")
        key = header_key(header)
        if key == "SYST:ERR?":
            return self.pop_error()
        try:
            self.poll()
            answer = self.dispatch(key, arg.strip())
        except BadValue as bad:
            self.push_error(str(bad))
            return None
        if answer is NotImplemented:
            self.push_error(self.UNDEFINED_HEADER)
            return None
        return answer if isinstance(answer, str) else None

    def dispatch(self, key: str, arg: str) -> object:
        """Answer (str), act (None) or NotImplemented for a header the model lacks."""
        setting = self.SETTINGS.get(key.rstrip("?"))
        if setting is None:
            return NotImplemented
        if key.endswith("?"):
            return setting.show(getattr(self, setting.attr))
        setattr(self, setting.attr, setting.parse(arg))
        self.apply()
        return None

    def apply(self) -> None:
        """After a setting: the outputs follow the settings (the plant sees them)."""

    def poll(self) -> None:
        """What the instrument does by itself between commands (a cut-off, a trip)."""


class DriveEmulation(ScpiEmulation):
    """An emulated source/sink: its output drives the plant through ``set_drive``, and
    ``MEAS:VOLT?``/``MEAS:CURR?`` read the plant back (the single-output models; one
    with several outputs answers its own measurements)."""

    CURRENT_SIGN: ClassVar[float] = 1.0
    """The measured current against the plant's (into the pack): -1 for a load, which
    reports the current it sinks as positive."""

    def drive(self, amps: float, min_v: float, max_v: float, name: str = "") -> None:
        self.plant.set_drive(name or self.name, amps, min_v, max_v)

    def dispatch(self, key: str, arg: str) -> object:
        if key == "MEAS:VOLT?":
            return f"{self.plant.terminal_voltage_v():.4f}"
        if key == "MEAS:CURR?":
            return f"{self.CURRENT_SIGN * self.plant.drive_current_a(self.name):.4f}"
        return super().dispatch(key, arg)


# -- loads -----------------------------------------------------------------------------
class RigolDl3000Emulation(DriveEmulation):
    """DL3021A: battery-test mode (CC discharge, stops at ``BATT:VST`` when ``BATT:VEN``
    is on: the input turns off), and the fixed CC mode's ``CURR`` level."""

    IDN: ClassVar[str] = "RIGOL TECHNOLOGIES,DL3021A,DL3A000000001,00.01.05.00.01"
    CURRENT_SIGN: ClassVar[float] = -1.0
    MODES = ("FIX", "LIST", "WAV", "BATT", "OCP", "OPP")
    SETTINGS: ClassVar[dict[str, Setting]] = {
        "INP": boolean("on"),
        "FUNC:MODE": choice("mode", {m: m for m in MODES} | {"BATTERY": "BATT"}),
        "CURR": numeric("cc_a", 0.0, 40.0, ".4f"),
        "BATT:VST": numeric("vst", 0.0, 150.0, ".3f"),
        "BATT:VEN": boolean("ven"),
        "BATT:CEN": boolean("cen"),
        "BATT:TEN": boolean("ten"),
    }
    """The battery test's level and range are not here: the range bounds the level and
    switches only with the input off (see :meth:`dispatch`)."""

    def __init__(self, plant: PlantSide, name: str) -> None:
        super().__init__(plant, name)
        self.reset()

    def reset(self) -> None:
        self.on, self.mode, self.range_a = False, "FIX", 40.0
        self.batt_a, self.cc_a, self.vst = 0.0, 0.0, 0.0
        self.ven, self.cen, self.ten = False, True, True  # the test's stop conditions
        self.apply()

    def apply(self) -> None:
        sink = self.batt_a if self.mode == "BATT" else self.cc_a if self.mode == "FIX" else 0.0
        floor = self.vst if self.mode == "BATT" and self.ven else 0.0
        self.drive(-sink if self.on else 0.0, floor, 150.0)

    def poll(self) -> None:
        if (self.on and self.mode == "BATT" and self.ven
                and self.plant.terminal_voltage_v() <= self.vst):
            self.on = False  # the battery test ends: input off
            self.apply()

    def dispatch(self, key: str, arg: str) -> object:
        if key == "BATT:RANG":
            value = number(arg, 0.0, 40.0)
            if self.on:
                raise BadValue(SETTINGS_CONFLICT)
            self.range_a = 4.0 if value <= 4.0 else 40.0
            self.batt_a = min(self.batt_a, self.range_a)
        elif key == "BATT:RANG?":
            return f"{self.range_a:.3f}"
        elif key == "BATT":
            self.batt_a = number(arg, 0.0, self.range_a)
        elif key == "BATT?":
            return f"{self.batt_a:.4f}"
        else:
            return super().dispatch(key, arg)
        self.apply()
        return None


class SiglentSdl1000xEmulation(DriveEmulation):
    """SDL1020X-E in CC: it sinks only above Von when Von Latch is off (latched, Von
    only starts it, so it is no floor)."""

    IDN: ClassVar[str] = "Siglent Technologies,SDL1020X-E,SDL13GCX000001,1.1.1.21R2"
    CURRENT_SIGN: ClassVar[float] = -1.0
    FUNCTIONS: ClassVar[dict[str, str]] = {
        "CURR": "CURRENT", "CURRENT": "CURRENT", "VOLT": "VOLTAGE", "VOLTAGE": "VOLTAGE",
        "POW": "POWER", "POWER": "POWER", "RES": "RESISTANCE", "RESISTANCE": "RESISTANCE",
        "LED": "LED"}
    SETTINGS: ClassVar[dict[str, Setting]] = {
        "INP": boolean("on"),
        "FUNC": choice("function", FUNCTIONS),
        "CURR": numeric("amps", 0.0, 30.0, ".4f"),
        "VOLT:ON": numeric("von", 0.0, 150.0, ".3f"),
        "VOLT:LATC": boolean("latch"),
    }

    def __init__(self, plant: PlantSide, name: str) -> None:
        super().__init__(plant, name)
        self.reset()

    def reset(self) -> None:
        self.on, self.function, self.amps, self.von, self.latch = False, "CURRENT", 0.0, 0.0, True
        self.apply()

    def apply(self) -> None:
        sink = self.amps if self.on and self.function == "CURRENT" else 0.0
        self.drive(-sink, 0.0 if self.latch else self.von, 150.0)



# -- supplies --------------------------------------------------------------------------
class KeysightE36xxEmulation(DriveEmulation):
    """E36312A: three outputs addressed by channel list. Output 1 drives the plant as
    ``name``, output n>1 as ``name/n``. An output's over-voltage protection switches
    it off when the terminal voltage exceeds it."""

    IDN: ClassVar[str] = "Keysight Technologies,E36312A,MY00000001,2.1.0-1.0.4-1.12"
    ERROR_NONE: ClassVar[str] = '+0,"No error"'
    RATED = RATINGS["E36312A"]

    def __init__(self, plant: PlantSide, name: str) -> None:
        super().__init__(plant, name)
        self.reset()

    def reset(self) -> None:
        self.state = {ch: {"VOLT": 0.0, "VOLT:PROT": volts * 1.1, "CURR": 0.0, "OUTP": 0.0}
                      for ch, (volts, _) in self.RATED.items()}
        for ch in self.state:
            self.apply_output(ch)

    def output_name(self, ch: int) -> str:
        return self.name if ch == 1 else f"{self.name}/{ch}"

    def apply_output(self, ch: int) -> None:
        s = self.state[ch]
        self.drive(s["CURR"] if s["OUTP"] else 0.0, 0.0, s["VOLT"], self.output_name(ch))

    def poll(self) -> None:
        for ch, s in self.state.items():
            if s["OUTP"] and self.plant.terminal_voltage_v() > s["VOLT:PROT"]:
                s["OUTP"] = 0.0  # over-voltage protection tripped
                self.apply_output(ch)

    def channel(self, text: str) -> int:
        found = re.fullmatch(r"\(@(\d)\)", text.strip())
        if not found or int(found.group(1)) not in self.state:
            raise BadValue(self.DATA_OUT_OF_RANGE)
        return int(found.group(1))

    def dispatch(self, key: str, arg: str) -> object:
        what = key.rstrip("?")
        if what == "MEAS:VOLT" and key.endswith("?"):
            self.channel(arg)
            return f"{self.plant.terminal_voltage_v():+.8E}"
        if what == "MEAS:CURR" and key.endswith("?"):
            return f"{self.plant.drive_current_a(self.output_name(self.channel(arg))):+.8E}"
        if what not in ("VOLT", "VOLT:PROT", "CURR", "OUTP"):
            return NotImplemented
        if key.endswith("?"):
            value = self.state[self.channel(arg)][what]
            return str(int(value)) if what == "OUTP" else f"{value:+.8E}"
        value_text, _, chans = arg.partition(",")
        ch = self.channel(chans)
        volts, amps = self.RATED[ch]
        if what == "OUTP":
            value = float(flag(value_text))
        else:
            limit = {"VOLT": volts * 1.03, "VOLT:PROT": volts * 1.1, "CURR": amps * 1.03}[what]
            value = number(value_text, 0.0, limit)
        self.state[ch][what] = value
        self.apply_output(ch)
        return None


class SiglentSpd3303xEmulation(DriveEmulation):
    """SPD3303X: CH1 drives the plant as ``name``, CH2 as ``name/2``; the output state
    is bits 4 and 5 of ``SYST:STAT?``; its error texts have no comma."""

    IDN: ClassVar[str] = "Siglent Technologies,SPD3303X,SPD3XIDX000001,1.01.01.02.05,V3.0"
    ERROR_NONE: ClassVar[str] = "0  No Error"
    UNDEFINED_HEADER: ClassVar[str] = "-113  Undefined header"
    DATA_OUT_OF_RANGE: ClassVar[str] = "-222  Data out of range"

    def __init__(self, plant: PlantSide, name: str) -> None:
        super().__init__(plant, name)
        self.reset()

    def reset(self) -> None:
        self.state = {ch: {"VOLT": 0.0, "CURR": 0.0, "on": False} for ch in (1, 2)}
        for ch in self.state:
            self.apply_output(ch)

    def apply_output(self, ch: int) -> None:
        s = self.state[ch]
        self.drive(s["CURR"] if s["on"] else 0.0, 0.0, s["VOLT"],
                   self.name if ch == 1 else f"{self.name}/{ch}")

    def dispatch(self, key: str, arg: str) -> object:
        found = re.fullmatch(r"CH([12]):(VOLT|CURR)(\??)", key)
        if found:
            ch, what = int(found.group(1)), found.group(2)
            if found.group(3):
                return f"{self.state[ch][what]:.3f}"
            self.state[ch][what] = number(arg, 0.0, 32.0 if what == "VOLT" else 3.2)
            self.apply_output(ch)
            return None
        if key == "OUTP":
            found = re.fullmatch(r"CH([12]),(ON|OFF)", arg.upper().replace(" ", ""))
            if not found:
                raise BadValue(DATA_TYPE_ERROR)
            ch = int(found.group(1))
            self.state[ch]["on"] = found.group(2) == "ON"
            self.apply_output(ch)
            return None
        if key == "SYST:STAT?":
            word = (self.state[1]["on"] << 4) | (self.state[2]["on"] << 5) | 0b0100
            return f"0x{word:04X}"
        found = re.fullmatch(r"MEAS:(VOLT|CURR)\?", key)
        if found and arg.upper() in ("CH1", "CH2"):
            if found.group(1) == "VOLT":
                return f"{self.plant.terminal_voltage_v():.3f}"
            ch_name = self.name if arg.upper() == "CH1" else f"{self.name}/2"
            return f"{self.plant.drive_current_a(ch_name):.3f}"
        return NotImplemented


class KoradKa3005pEmulation(DriveEmulation):
    """KA3005P: unterminated commands and answers, no error queue (an unknown command
    or a value out of range is ignored: nothing changes, nothing is answered)."""

    IDN: ClassVar[str] = "KORAD KA3005P V5.8 SN:03379314"
    TERMINATION: ClassVar[str] = ""
    COMMAND = re.compile(
        r"ISET1:(\d+\.\d{3}|\d+(?:\.\d*)?(?=[A-Z*]))|VSET1:(\d+\.\d{2}|\d+(?:\.\d*)?(?=[A-Z*]))"
        r"|ISET1\?|VSET1\?|IOUT1\?|VOUT1\?|STATUS\?|\*IDN\?|(?:OUT|OCP|OVP|BEEP|LOCK)[01]"
        r"|(?:RCL|SAV)[1-5]")
    """One command. A setting's value is complete when it has the digits the protocol
    writes (``ISET1:1.000``, ``VSET1:04.20``) or another command follows it: the real
    supply tells them apart by the pause between them, which a stream cannot show."""
    STARTS = ("ISET1", "VSET1", "IOUT1", "VOUT1", "STATUS", "*IDN", "OUT", "OCP", "OVP",
              "BEEP", "LOCK", "RCL", "SAV")

    def __init__(self, plant: PlantSide, name: str) -> None:
        super().__init__(plant, name)
        self.reset()

    def reset(self) -> None:
        self.iset, self.vset, self.on, self.ocp = 0.0, 0.0, False, False
        self.apply()

    def apply(self) -> None:
        self.drive(self.iset if self.on else 0.0, 0.0, self.vset)

    def split(self, buffer: str) -> tuple[list[str], str]:
        commands: list[str] = []
        while buffer:
            found = self.COMMAND.match(buffer)
            if found:
                commands.append(found.group(0))
                buffer = buffer[found.end():]
                continue
            if any(start.startswith(buffer) or buffer.startswith(start)
                   for start in self.STARTS):
                break  # the start of a command: wait for the rest
            buffer = buffer[1:]  # noise the supply would ignore
        return commands, buffer

    def handle(self, command: str) -> str | None:
        if command.strip().upper() in ("*CLS", "*RST", "*OPC?"):
            self.log.append(command.strip())
            return None  # not in the KA3000 protocol: ignored
        return super().handle(command)

    def command(self, command: str) -> str | None:
        if command.startswith("ISET1:"):
            amps = float(command[6:])
            if amps <= 5.1:
                self.iset = round(amps, 3)
        elif command.startswith("VSET1:"):
            volts = float(command[6:])
            if volts <= 31.0:
                self.vset = round(volts, 2)
        elif command == "ISET1?":
            return f"{self.iset:.3f}"
        elif command == "VSET1?":
            return f"{self.vset:05.2f}"
        elif command == "IOUT1?":
            return f"{min(self.plant.drive_current_a(self.name), 9.999):.3f}"
        elif command == "VOUT1?":
            return f"{min(self.plant.terminal_voltage_v(), 99.99):05.2f}"
        elif command == "STATUS?":
            cv = self.on and self.plant.drive_current_a(self.name) < self.iset - 0.0005
            return chr(int(cv or not self.on) | self.ocp << 5 | self.on << 6)
        elif command in ("OUT0", "OUT1"):
            self.on = command == "OUT1"
        elif command in ("OCP0", "OCP1"):
            self.ocp = command == "OCP1"
        else:
            return None  # no error queue: ignored
        self.apply()
        return None


class ItechItM3400Emulation(DriveEmulation):
    """IT-M3412 in CC priority: a signed current within the voltage limits."""

    IDN: ClassVar[str] = "ITECH Ltd.,IT-M3412,800000000000000001,1.05-1.04"
    SETTINGS: ClassVar[dict[str, Setting]] = {
        "FUNC": choice("function", {"CURR": "CURR", "CURRENT": "CURR",
                                    "VOLT": "VOLT", "VOLTAGE": "VOLT"}),
        "CURR": numeric("amps", -30.6, 30.6, ".4f"),
        "VOLT:LIM": numeric("high", 0.0, 61.2, ".4f"),
        "VOLT:LIM:LOW": numeric("low", 0.0, 61.2, ".4f"),
        "OUTP": boolean("on"),
    }

    def __init__(self, plant: PlantSide, name: str) -> None:
        super().__init__(plant, name)
        self.reset()

    def reset(self) -> None:
        self.function, self.amps, self.on = "VOLT", 0.0, False
        self.high, self.low = 60.0, 0.0
        self.apply()

    def apply(self) -> None:
        amps = self.amps if self.on and self.function == "CURR" else 0.0
        self.drive(amps, self.low, self.high)


# -- cell emulator, meter, relay card --------------------------------------------------
class BloomyAbsEmulation(ScpiEmulation):
    """ABS: cell n (1..8) is the plant's cell n-1; ``OUTP<n> 1`` holds it at the cell's
    voltage setpoint (``set_cell``), ``OUTP<n> 0`` gives it back to the plant."""

    IDN: ClassVar[str] = "Bloomy Controls,ABS,ABS00001,1.4.0"
    CELLS = 8

    def __init__(self, plant: PlantSide, name: str) -> None:
        super().__init__(plant, name)
        self.reset()

    def reset(self) -> None:  # *RST reboots the ABS: every cell off
        self.cells = [{"VOLT": 0.0, "SRC": 0.0, "SNK": 0.0, "on": False}
                      for _ in range(self.CELLS)]
        for k in range(self.CELLS):
            self.plant.set_cell(k, None)

    def dispatch(self, key: str, arg: str) -> object:
        found = re.fullmatch(r"(SOUR|OUTP|MEAS)([1-8])((?::[A-Z]+)*)(\??)", key)
        if not found:
            return NotImplemented
        node, rest, query = found.group(1), found.group(3), found.group(4)
        k = int(found.group(2)) - 1
        cell = self.cells[k]
        if node == "MEAS" and rest == ":VOLT" and query:
            return f"{self.plant.cell_voltage_v(k):.4f}"
        if node == "OUTP" and not rest:
            if query:
                return str(int(cell["on"]))
            cell["on"] = flag(arg)
        elif node == "SOUR" and rest in (":VOLT", ":CURR:SRC", ":CURR:SNK"):
            what = rest.rsplit(":", 1)[1]
            if query:
                return f"{cell[what]:.4f}"
            low = -5.0 if what == "SNK" else 0.0
            cell[what] = number(arg, low, 5.0)
        else:
            return NotImplemented
        self.plant.set_cell(k, cell["VOLT"] if cell["on"] else None)
        return None


class Keysight34461aEmulation(ScpiEmulation):
    """34461A: ``MEAS:VOLT:DC?`` reads the pack's terminal voltage."""

    IDN: ClassVar[str] = "Keysight Technologies,34461A,MY00000008,A.03.01-02.40-03.01-00.52-03-01"
    ERROR_NONE: ClassVar[str] = '+0,"No error"'

    def dispatch(self, key: str, arg: str) -> object:
        if key in ("MEAS:VOLT:DC?", "MEAS:VOLT?"):
            return f"{self.plant.terminal_voltage_v():+.8E}"
        return NotImplemented


class Keysight34970aEmulation(ScpiEmulation):
    """34970A with a 34903A actuator in slot 1 (channels 101..120)."""

    IDN: ClassVar[str] = "Agilent Technologies,34970A,0,13-2-2"
    ERROR_NONE: ClassVar[str] = '+0,"No error"'
    CHANNELS = range(101, 121)

    def __init__(self, plant: PlantSide, name: str) -> None:
        super().__init__(plant, name)
        self.closed: set[int] = set()

    def reset(self) -> None:
        for ch in sorted(self.closed):
            self.plant.set_relay(ch, False)
        self.closed.clear()

    def channels(self, text: str) -> list[int]:
        found = re.fullmatch(r"\(@([\d,:]+)\)", text.replace(" ", ""))
        if not found:
            raise BadValue(DATA_TYPE_ERROR)
        out: list[int] = []
        for part in found.group(1).split(","):
            first, _, last = part.partition(":")
            span = range(int(first), int(last or first) + 1)
            if not span or any(ch not in self.CHANNELS for ch in span):
                raise BadValue(self.DATA_OUT_OF_RANGE)
            out += span
        return out

    def dispatch(self, key: str, arg: str) -> object:
        if key == "ROUT:CLOS?":
            return ",".join(str(int(ch in self.closed)) for ch in self.channels(arg))
        if key in ("ROUT:CLOS", "ROUT:OPEN"):
            close = key == "ROUT:CLOS"
            for ch in self.channels(arg):
                if (ch in self.closed) != close:
                    (self.closed.add if close else self.closed.discard)(ch)
                    self.plant.set_relay(ch, close)
            return None
        return NotImplemented


EMULATIONS: dict[str, type[EmulatedInstrument]] = {
    "rigol-dl3000": RigolDl3000Emulation,
    "siglent-sdl1000x": SiglentSdl1000xEmulation,
    "keysight-e36xx": KeysightE36xxEmulation,
    "siglent-spd3303x": SiglentSpd3303xEmulation,
    "korad-ka3005p": KoradKa3005pEmulation,
    "itech-it-m3400": ItechItM3400Emulation,
    "bloomy-abs": BloomyAbsEmulation,
    "keysight-34461a": Keysight34461aEmulation,
    "keysight-34970a": Keysight34970aEmulation,
}
"""Driver name -> the emulation speaking its dialect (the same names as ``DRIVERS``)."""
